"""Restricted in-silico mutagenesis (seq2exp_plugin.discover.ism, `seq2exp ism`)."""

import copy
import json
import os
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seq2exp_plugin.discover.ism import select_elements

from conftest import TINY_WINDOW as WINDOW


@pytest.fixture(scope="module")
def trained(tiny_synth, tiny_checkpoint, tiny_rc_run):
    """The session's tiny checkpoint and its data with "-" genes reverse-complemented."""
    synth = Path(tiny_synth)
    run, dataset = tiny_rc_run
    minus = next(str(g) for g, s in zip(dataset.gene_ids, dataset.strands) if s == "-")
    plus = next(str(g) for g, s in zip(dataset.gene_ids, dataset.strands) if s == "+")
    return types.SimpleNamespace(run=run, ckpt=str(tiny_checkpoint),
                                 dataset=dataset, minus=minus, plus=plus, genome=synth / "genome.fa")


def sensitive(ckpt):
    from seq2exp_plugin.train.module import load_module

    module = copy.deepcopy(load_module(ckpt)).eval()
    with torch.no_grad():
        module.net.generator.embedding.weight.mul_(40.0)
        module.net.predictor.seq_embedding.weight.mul_(40.0)
    return module


# ------------------------------------------------------------------------ element selection
def test_select_elements_ranks_clips_and_respects_the_budget():
    score = np.zeros(1000)
    score[100:160] = 0.9   # 60 bp, best
    score[300:340] = 0.7   # 40 bp
    score[600:700] = 0.6   # 100 bp
    score[800:805] = 0.95  # 5 bp: shorter than min_length
    score[450:550] = 1.0   # the "promoter": excluded
    score[130] = 0.99      # peak inside the best element
    els = select_elements(score, top_elements=5, bp_budget=130, threshold=0.5, min_gap=0, min_length=10,
                          exclude=slice(450, 550))
    # the third (flat) element is cut to the 30 bp left, from its highest-scoring (first) base
    assert [(e.start, e.end, e.rank, e.clipped) for e in els] == [(100, 160, 1, False), (300, 340, 2, False),
                                                                  (600, 630, 3, True)]
    assert sum(e.length for e in els) == 130
    assert all(e.positions == list(range(e.start, e.end)) for e in els)
    # the first element alone exceeds a small budget: cut around its peak (130)
    (el,) = select_elements(score, top_elements=5, bp_budget=20, min_length=10, exclude=slice(450, 550))
    assert (el.start, el.end, el.clipped) == (120, 140, True)
    # top-N, promoter on top of the budget, N positions skipped
    scorable = np.ones(1000, bool)
    scorable[105] = False
    els = select_elements(score, top_elements=1, bp_budget=1000, min_length=10, exclude=slice(450, 550),
                          promoter=slice(495, 505), scorable=scorable)
    assert [(e.kind, e.start, e.end) for e in els] == [("element", 100, 160), ("promoter", 495, 505)]
    assert 105 not in els[0].positions and len(els[0].positions) == 59
    assert els[1].mean_score == pytest.approx(1.0)  # the unexcluded score
    assert select_elements(score, top_elements=3, bp_budget=0) == []


# ---------------------------------------------------------------------------------- effects
def test_ism_effects_equal_direct_model_calls_at_the_chosen_positions(trained, tmp_path, monkeypatch):
    from seq2exp_plugin.discover.ism import bind, ism_effects, load_locus

    module = sensitive(trained.ckpt)
    locus = load_locus(trained.dataset, trained.minus)
    positions = [930, 931, 1500, 12]  # any set, any order
    bound = bind(module, locus)
    monkeypatch.chdir(tmp_path)
    ref, deltas, cost = ism_effects(bound, locus.seq, positions, batch_size=5)
    assert cost["bases"] == 4 and cost["model_calls"] == 13 and cost["seconds"] > 0
    mutants, ref_idx = [], locus.seq.argmax(0)
    for p in positions:
        for b in range(4):
            m = locus.seq.clone()
            m[:, p] = 0
            m[b, p] = 1
            mutants.append(m)
    t = {k: getattr(locus, k)[None] for k in ("signals", "features", "blacklist")}
    with torch.no_grad():
        n = len(mutants)
        preds = module.net(torch.stack(mutants), t["signals"].expand(n, -1, -1), t["features"].expand(n, -1),
                           t["blacklist"].expand(n, -1)).expression.reshape(len(positions), 4)
        want_ref = module.net(locus.seq[None], t["signals"], t["features"], t["blacklist"]).expression
    want = (preds - want_ref).numpy()
    assert ref == pytest.approx(float(want_ref), abs=1e-6)
    assert np.abs(want).max() > 1e-4
    np.testing.assert_allclose(deltas, want, rtol=1e-4, atol=2e-6)
    assert np.all(deltas[np.arange(4), ref_idx[positions].numpy()] == 0)
    assert os.listdir(tmp_path) == []  # nothing (lightning_logs) left in the working directory
    assert torch.get_float32_matmul_precision() == "highest"  # gReLU's "medium" undone
    with pytest.raises(ValueError, match="outside the window"):
        ism_effects(bound, locus.seq, [WINDOW])
    # mask_mode="fixed": the predictor alone, on the reference window's mask
    fixed = bind(module, locus, "fixed")
    with torch.no_grad():
        ref_mask = module.net.generator(locus.seq[None], t["signals"], t["blacklist"]).mask
        want = module.net.predictor(mutants[1][None], t["signals"], t["features"], ref_mask)
        assert float(fixed(mutants[1][None])) == pytest.approx(float(want), abs=1e-6)


def test_minus_strand_table_has_genome_coordinates_and_plus_strand_bases(trained, tmp_path, monkeypatch):
    from seq2exp_plugin.data.genome import Genome
    from seq2exp_plugin.discover.ism import ism_gene, load_locus, reference_mask

    module = sensitive(trained.ckpt)
    genome = Genome(trained.genome)
    monkeypatch.chdir(tmp_path)
    for gene in (trained.minus, trained.plus):
        locus = load_locus(trained.dataset, gene)
        score = reference_mask(module, locus)
        result = ism_gene(module, locus, score, threshold=None, top_fraction=0.02, bp_budget=6, top_elements=2,
                          min_gap=0, min_length=1, exclude=slice(900, 1100), batch_size=16)
        table = result.table()
        assert len(table) == 3 * len(result.positions) and 0 < len(result.positions) <= 6
        for row in table.itertuples():
            assert genome.sequence(row.chrom, row.pos - 1, row.pos).upper() == row.ref  # pos is 1-based
            assert row.alt != row.ref
            expected_index = locus.end - row.pos if locus.reverse else row.pos - 1 - locus.start
            assert row.window_index == expected_index
        assert locus.reverse == (gene == trained.minus)
        gpos, max_abs, mean = result.per_position()
        by_pos = table.assign(a=table.delta.abs()).groupby("pos").agg(a=("a", "max"), m=("delta", "mean"))
        np.testing.assert_allclose(max_abs, by_pos.loc[gpos + 1, "a"].to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(mean, by_pos.loc[gpos + 1, "m"].to_numpy(), rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------------------------- the CLI
def test_ism_cli_end_to_end(trained, tmp_path):
    import pyBigWig

    from seq2exp_plugin.cli import main

    out = tmp_path / "ism"
    argv = ["ism", trained.ckpt, "--gene", trained.minus, "--out", str(out), "--top-fraction", "0.03",
            "--bp-budget", "30", "--top-elements", "2", "--min-gap", "0", "--min-length", "2",
            "--promoter-bp", "4", "--batch-size", "32", "--data", "rc_minus_strand=true"]
    assert main(argv) == 0
    names = sorted(os.listdir(out))
    assert names == sorted(["ism.tsv", "elements.bed", "summary.json", f"{trained.minus}.max_abs_delta.bw",
                            f"{trained.minus}.mean_delta.bw", f"{trained.minus}.element1.png"])
    table = pd.read_csv(out / "ism.tsv", sep="\t")
    bed = pd.read_csv(out / "elements.bed", sep="\t")
    assert list(table.columns[:6]) == ["gene_id", "element", "chrom", "pos", "ref", "alt"]
    assert set(bed["kind"]) == {"element", "promoter"}
    elements = bed[bed["kind"] == "element"]
    assert elements["bases_scored"].sum() <= 30 and len(elements) <= 2
    assert (bed[bed["kind"] == "promoter"]["end"] - bed[bed["kind"] == "promoter"]["start"]).tolist() == [4]
    # every mutated base lies in a BED interval (BED 0-based half-open, TSV 1-based)
    inside = np.zeros(len(table), bool)
    for r in bed.itertuples():
        inside |= (table["pos"].to_numpy() - 1 >= r.start) & (table["pos"].to_numpy() - 1 < r.end)
    assert inside.all()
    assert len(table) == 3 * bed["bases_scored"].sum()
    summary = json.loads((out / "summary.json").read_text())
    gene = summary["genes"][0]
    assert gene["bases_scored"] == bed["bases_scored"].sum()
    assert gene["model_calls"] == 3 * gene["bases_scored"] + 1
    assert gene["full_window"]["model_calls"] > gene["model_calls"]
    with pyBigWig.open(str(out / f"{trained.minus}.max_abs_delta.bw")) as bw:
        per_pos = table.assign(a=table["delta"].abs()).groupby(["chrom", "pos"])["a"].max()
        for (chrom, pos), value in per_pos.items():
            assert bw.values(chrom, pos - 1, pos)[0] == pytest.approx(value, rel=1e-5, abs=1e-9)
        chrom = table["chrom"].iloc[0]
        first = int(table["pos"].min()) - 1
        assert np.isnan(bw.values(chrom, first - 1, first)[0])  # unscored positions: no data
    assert (out / f"{trained.minus}.element1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ism_outputs_are_atomic(trained, tmp_path, monkeypatch, capsys):
    import seq2exp_plugin.discover.ism_run as ism_run
    from seq2exp_plugin.cli import main

    out = tmp_path / "ism"
    argv = ["ism", trained.ckpt, "--gene", trained.plus, "--out", str(out), "--top-fraction", "0.03",
            "--bp-budget", "5", "--min-gap", "0", "--min-length", "1", "--batch-size", "32"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ism_run, "plot_element", interrupted)  # dies while writing the outputs
    assert main(argv) == 130  # Ctrl-C: one line, no traceback
    assert capsys.readouterr().err.strip() == "seq2exp ism: interrupted; unfinished outputs were removed"
    assert os.listdir(tmp_path) == []  # no output folder, no temporary one
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(argv) == 2  # an existing, non-empty output: refused before any work
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["ism", trained.ckpt, "--gene", "NOT_A_GENE", "--out", str(tmp_path / "x")]) == 2
    assert "NOT_A_GENE" in capsys.readouterr().err


def test_bound_model_predicts_in_process_whatever_workers_grelu_asks_for(trained, tmp_path, monkeypatch):
    """gReLU's ISM_predict asks for one loader worker by default; the bound model predicts in
    this process (a forked worker of a process running torch's threads can hang)."""
    from grelu.lightning import LightningModel

    from seq2exp_plugin.discover.ism import bind, load_locus

    seen = []
    real = LightningModel.make_predict_loader

    def spy(self, dataset, num_workers=1, **kwargs):
        seen.append(num_workers)
        return real(self, dataset, num_workers=num_workers, **kwargs)

    monkeypatch.setattr(LightningModel, "make_predict_loader", spy)
    monkeypatch.chdir(tmp_path)
    locus = load_locus(trained.dataset, trained.minus)
    bound = bind(sensitive(trained.ckpt), locus)
    preds = bound.predict_on_dataset(locus.seq[None], num_workers=3, batch_size=1)
    assert seen == [0] and np.asarray(preds).size == 1
