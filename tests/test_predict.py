"""`seq2exp predict`: expression table, mask bigWig, element BED, plots - all from one model run."""

import json
import re

import anndata
import pandas as pd
import pyBigWig
import pytest

from seq2exp_plugin.cli import main
from seq2exp_plugin.discover.predict import predict_to_directory
from seq2exp_plugin.discover.regions import call_elements, read_elements_bed
from seq2exp_plugin.train.evaluate import load_run, predict_dataset
from seq2exp_plugin.train.fit import make_dataset


def test_predict_writes_consistent_outputs(tiny_synth, tiny_checkpoint, tmp_path):
    out = tmp_path / "pred"
    genes = ["SYNG00001", "SYNG00002", "SYNG00003"]
    assert main(["predict", str(tiny_checkpoint), "--out", str(out), "--genes", *genes, "--plots", "2",
                 "--truth", str(tiny_synth / "truth" / "synthA.bed")]) == 0
    module, run = load_run(str(tiny_checkpoint))
    direct = {g.gene_id: g for g in predict_dataset(module.net, make_dataset(run, None, gene_ids=genes),
                                                    progress=False)}
    table = pd.read_csv(out / "expression.tsv", sep="\t")
    assert list(table["gene_id"]) == genes
    for row in table.itertuples():
        assert row.predicted == pytest.approx(direct[row.gene_id].prediction, rel=1e-5)
    adata = anndata.read_h5ad(out / "expression.h5ad")
    assert list(adata.var_names) == ["synthA"] and adata.X[:, 0] == pytest.approx(table["predicted"].to_numpy(), rel=1e-5)
    # bigWig: max over overlapping windows of the soft mask, at 3 decimals
    expected: dict[tuple[str, int], float] = {}
    for gene in direct.values():
        values = gene.score[::-1] if gene.reverse_complemented else gene.score
        for offset, value in enumerate(values):
            key = (gene.chrom, gene.start + offset)
            expected[key] = max(expected.get(key, -1.0), float(value))
    with pyBigWig.open(str(out / "mask.synthA.bw")) as bw:
        for (chrom, pos), value in list(expected.items())[::97]:
            if pos >= 0:
                assert bw.values(chrom, pos, pos + 1)[0] == pytest.approx(value, abs=1e-3)
    # elements: runs of score >= 0.5, named by gene
    elements = read_elements_bed(out / "elements.synthA.bed")
    first = direct[genes[0]]
    runs = call_elements(first.score if not first.reverse_complemented else first.score[::-1], threshold=0.5)
    mine = elements[elements["gene_id"] == genes[0]]
    assert len(mine) == len(runs) > 0
    assert list(mine["start"]) == sorted(first.start + r.start for r in runs)
    most_expressed = table.sort_values("observed", ascending=False)["gene_id"][:2]  # not the first 2
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(f"{g}.png" for g in most_expressed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_genes"] == 3 and set(summary["metrics"]) >= {"mse", "pearson"}
    # with a truth: what the generator adds, on the same genes
    from seq2exp_plugin.discover.recovery import generator_recovery

    want = generator_recovery(list(direct.values()), tiny_synth / "truth" / "synthA.bed",
                              exclude_center=module.net.config.mask.promoter_keep, blacklist=run.data.blacklist)
    assert summary["generator"] == pytest.approx(want, nan_ok=True)


def test_evaluate_with_truth_reports_what_the_generator_adds(tiny_synth, tiny_checkpoint, tmp_path, capsys):
    from seq2exp_plugin.discover.recovery import generator_recovery

    truth = tiny_synth / "truth" / "synthA.bed"
    assert main(["evaluate", str(tiny_checkpoint), "--split", "train", "--truth", str(truth),
                 "--json", str(tmp_path / "m.json")]) == 0
    assert "causal_vs_decoy" in capsys.readouterr().out
    got = json.loads((tmp_path / "m.json").read_text())
    module, run = load_run(str(tiny_checkpoint))
    genes = list(predict_dataset(module.net, make_dataset(run, "train"), progress=False))
    want = generator_recovery(genes, truth, exclude_center=module.net.config.mask.promoter_keep,
                              blacklist=run.data.blacklist)
    assert {k[len("generator_"):]: v for k, v in got.items() if k.startswith("generator_")} == pytest.approx(
        want, nan_ok=True)
    assert main(["evaluate", str(tiny_checkpoint), "--truth", str(tmp_path / "none.bed")]) != 0


def test_predict_is_atomic_and_refuses_to_overwrite(tiny_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "pred"
    import seq2exp_plugin.discover.predict as predict_module

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(predict_module, "plot_gene", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        predict_to_directory(str(tiny_checkpoint), out, gene_ids=["SYNG00001"], progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written
    monkeypatch.undo()
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert main(["predict", str(tiny_checkpoint), "--out", str(out), "--genes", "SYNG00001"]) == 2
    assert (out / "keep.txt").read_text() == "user data"


def test_predict_unknown_gene_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    assert main(["predict", str(tiny_checkpoint), "--out", str(tmp_path / "p"), "--genes", "NOPE"]) == 2
    assert "NOPE" in capsys.readouterr().err


def test_streamed_outputs_equal_the_whole_set_computed_at_once(tiny_checkpoint, tmp_path):
    """Genes asked for out of genomic order, with overlapping windows on both strands: the
    streamed bigWig and BED equal the maximum / element calls computed from all genes at once."""
    import numpy as np

    module, run = load_run(str(tiny_checkpoint))
    table = anndata.read_h5ad(run.data.genes)
    table.obs.loc["SYNG00002", "tss"] = 10_600  # window overlaps SYNG00001's ("-") by 1.4 kb
    table.obs.loc["SYNG00003", "tss"] = 11_100  # and SYNG00002's by 1.5 kb
    genes_path = tmp_path / "genes.h5ad"
    table.write_h5ad(genes_path)
    genes = ["SYNG00015", "SYNG00003", "SYNG00001", "SYNG00004", "SYNG00002", "SYNG00016"]
    out = tmp_path / "pred"
    assert main(["predict", str(tiny_checkpoint), "--out", str(out), "--genes", *genes,
                 "--data", f"genes={genes_path}", "--plots", "0"]) == 0
    _, run = load_run(str(tiny_checkpoint), {"genes": str(genes_path)})
    direct = list(predict_dataset(module.net, make_dataset(run, None, gene_ids=genes), progress=False))
    assert list(pd.read_csv(out / "expression.tsv", sep="\t")["gene_id"]) == genes
    expected: dict[str, dict[int, float]] = {}
    want_rows = []
    for gene in direct:
        values = gene.score[::-1] if gene.reverse_complemented else gene.score
        track = expected.setdefault(gene.chrom, {})
        for offset, value in enumerate(values):
            track[gene.start + offset] = max(track.get(gene.start + offset, -1.0), float(value))
        for n, run_ in enumerate(sorted(call_elements(values, threshold=0.5)), start=1):
            want_rows.append((gene.chrom, gene.start + run_.start, gene.start + run_.end, f"{gene.gene_id}:{n}"))
    assert len(expected["chr1"]) == 12_100 - 9_000 < 3 * 2000  # three overlapping windows
    with pyBigWig.open(str(out / "mask.synthA.bw")) as bw:
        for chrom, track in expected.items():
            positions = np.array(sorted(track))
            got = np.array([bw.values(chrom, int(p), int(p) + 1)[0] for p in positions])
            np.testing.assert_allclose(got, np.round([track[p] for p in positions], 3), atol=1e-6)
            intervals = bw.intervals(chrom)
            assert intervals[0][0] == positions[0] and intervals[-1][1] == positions[-1] + 1
    elements = read_elements_bed(out / "elements.synthA.bed")
    rows = list(zip(elements["chrom"], elements["start"], elements["end"], elements["name"]))
    assert rows == sorted(want_rows, key=lambda r: (r[0], r[1], r[2], r[3])) and len(rows) > 0


def test_predict_keeps_no_per_bp_scores_of_finished_genes(tiny_checkpoint, tmp_path):
    """Memory flat in the number of genes: once a gene is written, its per-bp mask is freed."""
    import gc
    import weakref

    refs, alive = [], []

    def on_gene(gene):
        gc.collect()
        alive.append(sum(ref() is not None for ref in refs))
        refs.append(weakref.ref(gene.score))

    genes = [f"SYNG{i:05d}" for i in range(1, 11)]
    predict_to_directory(str(tiny_checkpoint), tmp_path / "pred", gene_ids=genes, max_plots=0,
                         progress=False, on_gene=on_gene)
    assert len(alive) == 10 and max(alive) <= 1, alive


def test_plots_go_to_the_most_informative_genes():
    from types import SimpleNamespace

    import numpy as np

    from seq2exp_plugin.discover.predict import informative_genes

    dataset = SimpleNamespace(gene_ids=np.array(["silent", "high", "unknown-active", "mid", "unknown"]),
                              targets=np.array([0.0, 3.0, np.nan, 1.0, np.nan], dtype=np.float32),
                              features=np.array([[0.0], [5.0], [80.0], [2.0], [1.0]], dtype=np.float32))
    assert informative_genes(dataset, 4) == ["high", "mid", "silent", "unknown-active"]
    assert informative_genes(dataset, 0) == []


def test_cpu_inference_batches_stay_within_the_position_budget(tiny_checkpoint, monkeypatch):
    """``predict_dataset`` on the CPU asks for at most CPU_INFERENCE_POSITIONS positions per
    model call whatever ``batch_size`` says; the predictions do not change."""
    from seq2exp_plugin.model import batch as batch_module

    module, run = load_run(str(tiny_checkpoint))
    dataset = make_dataset(run, None)
    sizes = []
    hook = module.net.register_forward_hook(lambda net, args, out: sizes.append(args[0].shape[0]))
    try:
        whole = [g.prediction for g in predict_dataset(module.net, dataset, batch_size=5, progress=False)]
        assert max(sizes) == 5
        monkeypatch.setattr(batch_module, "CPU_INFERENCE_POSITIONS", 2 * dataset.window)
        sizes.clear()
        split = [g.prediction for g in predict_dataset(module.net, dataset, batch_size=5, progress=False)]
        assert max(sizes) == 2 and len(split) == len(dataset) > 5
    finally:
        hook.remove()
    assert split == pytest.approx(whole, rel=1e-5, abs=1e-6)


def test_data_tracks_in_another_order_than_the_checkpoints_are_refused(tiny_checkpoint, tmp_path, capsys):
    """predict, ISM, variants and evaluate read a checkpoint through load_run: the data's signal
    tracks must be the model's, by name and in its order (each channel has its own weights)."""
    _, run = load_run(str(tiny_checkpoint))
    tracks = dict(run.data.signals)
    shuffled = {name: tracks[name] for name in reversed(list(tracks))}
    with pytest.raises(ValueError, match=re.escape(f"the data: signal tracks {list(shuffled)}, but "
                                                   f"the model reads {list(tracks)}")):
        load_run(str(tiny_checkpoint), {"signals": shuffled})
    renamed = {("atac" if name == "dnase" else name): path for name, path in tracks.items()}
    code = main(["predict", str(tiny_checkpoint), "--out", str(tmp_path / "p"),
                 "--data", f"signals={json.dumps(renamed)}"])
    assert code == 2 and f"but the model reads {list(tracks)}" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
