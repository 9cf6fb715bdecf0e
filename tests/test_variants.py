"""Variant effects in TSS-centred windows (seq2exp_plugin.discover.variants, `seq2exp variants`)."""

import gzip
import json
import os
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seq2exp_plugin.discover.variants import Variant, read_variants

from conftest import TINY_WINDOW as WINDOW
_COMP = str.maketrans("ACGTN", "TGCAN")


@pytest.fixture(scope="module")
def trained(tiny_synth, tiny_checkpoint, tiny_rc_run):
    """The session's tiny checkpoint, its data with "-" genes reverse-complemented, and the
    genome read by hand (an independent reference for the windows)."""
    synth = Path(tiny_synth)
    run, dataset = tiny_rc_run
    genes = pd.DataFrame({"gene_id": [str(g) for g in dataset.gene_ids], "chrom": list(dataset.chroms),
                          "tss": dataset.tss, "strand": list(dataset.strands)})
    fasta = {}
    name = None
    for line in (synth / "genome.fa").read_text().splitlines():  # the FASTA read by hand
        if line.startswith(">"):
            name = line[1:].split()[0]
            fasta[name] = []
        else:
            fasta[name].append(line)
    fasta = {k: "".join(v).upper() for k, v in fasta.items()}
    return types.SimpleNamespace(run=run, ckpt=str(tiny_checkpoint),
                                 dataset=dataset, genes=genes, fasta=fasta)


def snv_at(fasta, chrom, p0):
    """A real SNV at the first A/C/G/T base from 0-based ``p0`` on (alt: the next base in ACGT)."""
    while fasta[chrom][p0] not in "ACGT":
        p0 += 1
    ref = fasta[chrom][p0]
    return (chrom, p0 + 1, ref, "ACGT"[("ACGT".index(ref) + 1) % 4])


def write_tsv(path, rows, ids=None):
    df = pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt"])
    if ids is not None:
        df.insert(0, "id", ids)
    df.to_csv(path, sep="\t", index=False)
    return path


def one_hot(text):
    x = torch.zeros(4, len(text))
    for i, b in enumerate(text):
        if b in "ACGT":
            x["ACGT".index(b), i] = 1.0
    return x


def hand_window(fasta, chrom, tss, strand, edit=None):
    """The model's window built from the FASTA text: [tss - L//2, +L), N off the chromosome,
    the edit (0-based position, alt) applied on the + strand, reverse-complemented for "-"."""
    start = tss - WINDOW // 2
    text = "".join(fasta[chrom][p] if 0 <= p < len(fasta[chrom]) else "N" for p in range(start, start + WINDOW))
    if edit is not None:
        p0, alt = edit
        text = text[: p0 - start] + alt + text[p0 - start + len(alt):]
    if strand == "-":
        text = text.translate(_COMP)[::-1]
    return one_hot(text)


# ---------------------------------------------------------------------------------- reading
def test_read_vcf_and_table(tmp_path):
    vcf = tmp_path / "v.vcf.gz"
    with gzip.open(vcf, "wt") as fh:
        fh.write("##fileformat=VCFv4.2\n##contig=<ID=chr1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                 "chr1\t10\trs1\tA\tG,T\t.\t.\t.\nchr1\t20\t.\tc\tCA\t.\t.\t.\nchr2\t5\tsv\tA\t<DEL>\t.\t.\t.\n")
    got = read_variants(vcf)
    assert got == [Variant("chr1", 10, "A", "G", "rs1:G"), Variant("chr1", 10, "A", "T", "rs1:T"),
                   Variant("chr1", 20, "C", "CA", ""), Variant("chr2", 5, "A", "<DEL>", "sv")]
    assert [v.kind for v in got] == ["SNV", "SNV", "indel", "unsupported"]
    assert got[2].label == "chr1:20:C>CA" and got[0].start == 9 and got[0].end == 10
    tsv = write_tsv(tmp_path / "v.tsv", [("chr1", 3, "ag", "TC")], ids=["x1"])
    assert read_variants(tsv) == [Variant("chr1", 3, "AG", "TC", "x1")]
    (tmp_path / "bad.tsv").write_text("chrom\tpos\tref\talt\nchr1\t0\tA\tG\n")
    with pytest.raises(ValueError, match=r"bad.tsv, line 2: pos must be >= 1"):
        read_variants(tmp_path / "bad.tsv")
    (tmp_path / "cols.tsv").write_text("chrom\tposition\tref\talt\n")
    with pytest.raises(KeyError, match=r"missing \['pos'\]"):
        read_variants(tmp_path / "cols.tsv")


# ---------------------------------------------------------------------------------- effects
def test_delta_equals_two_direct_model_calls_on_hand_built_windows(trained):
    """+ and - strand genes (reverse-complemented windows): an SNV and an MNV each."""
    from seq2exp_plugin.discover.variants import check_reference, variant_effects
    from seq2exp_plugin.train.module import load_module

    module = load_module(trained.ckpt)
    net = module.net
    with torch.no_grad():  # DNA-sensitive weights: effects far above float noise
        net.generator.embedding.weight.mul_(40.0)
        net.predictor.seq_embedding.weight.mul_(40.0)
    variants, expected = [], {}
    for strand in ("+", "-"):
        g = trained.genes[trained.genes.strand == strand].iloc[0]
        for offset, length in ((-37, 1), (12, 2)):
            p0 = int(g.tss) + offset
            ref = trained.fasta[g.chrom][p0:p0 + length]
            alt = "".join("ACGT"[("ACGT".index(b) + 2) % 4] for b in ref)
            v = Variant(g.chrom, p0 + 1, ref, alt, f"{g.gene_id}{offset:+d}")
            variants.append(v)
            expected[(v.label, g.gene_id)] = (g, p0, alt)
    check_reference(variants, trained.dataset.extractor.genome)
    results, not_scored = variant_effects(net, trained.dataset, variants, progress=False)
    assert not_scored.empty
    ids = list(trained.dataset.gene_ids)
    checked = 0
    for row in results.itertuples():
        if (row.variant_id, row.gene_id) not in expected:
            continue  # the same variant inside another gene's window
        g, p0, alt = expected[(row.variant_id, row.gene_id)]
        item = trained.dataset[ids.index(g.gene_id)]
        t = {k: torch.as_tensor(np.asarray(item[k]))[None] for k in ("signals", "features", "blacklist")}
        ref_w = hand_window(trained.fasta, g.chrom, int(g.tss), g.strand)
        alt_w = hand_window(trained.fasta, g.chrom, int(g.tss), g.strand, edit=(p0, alt))
        assert torch.equal(ref_w, torch.as_tensor(np.asarray(item["seq"])))  # same reference window
        with torch.no_grad():
            out_ref = net(ref_w[None], t["signals"], t["features"], t["blacklist"])
            out_alt = net(alt_w[None], t["signals"], t["features"], t["blacklist"])
        assert row.delta == pytest.approx(float(out_alt.expression - out_ref.expression), abs=1e-6)
        assert abs(row.delta) > 1e-5
        index = np.arange(p0, p0 + len(alt)) - (int(g.tss) - WINDOW // 2)
        if g.strand == "-":
            index = WINDOW - 1 - index
        assert row.window_index == index.min()
        d_mask = (out_alt.mask.score - out_ref.mask.score)[0]
        assert row.delta_mask_at_variant == pytest.approx(float(d_mask[index].mean()), abs=1e-6)
        assert row.mean_abs_delta_mask == pytest.approx(float(d_mask.abs().mean()), abs=1e-7)
        sign = -1 if g.strand == "-" else 1
        assert row.distance_to_tss == sign * (p0 - int(g.tss))
        checked += 1
    assert checked == 4


def test_reference_mismatch_names_the_variant_before_model_work(trained, tmp_path, monkeypatch):
    import seq2exp_plugin.discover.variants as variants_module
    from seq2exp_plugin.cli import main

    g = trained.genes.iloc[0]
    good = snv_at(trained.fasta, g.chrom, int(g.tss) + 5)
    chrom, pos, ref, alt = snv_at(trained.fasta, g.chrom, int(g.tss) + 9)
    bad = (chrom, pos, alt, ref)  # ref and alt swapped: the stated ref is not the genome's
    path = write_tsv(tmp_path / "v.tsv", [good, bad], ids=["ok1", "rsBAD"])

    def no_model_work(*args, **kwargs):
        raise AssertionError("model work before the reference check")

    monkeypatch.setattr(variants_module, "variant_effects", no_model_work)
    with pytest.raises(ValueError, match=r"variant rsBAD: reference allele .* does not match the genome"):
        variants_module.run_variants(trained.ckpt, path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert main(["variants", trained.ckpt, "--variants", str(path), "--out", str(tmp_path / "o2")]) == 2


def test_out_of_window_and_indels_are_reported_and_cli_writes_everything(trained, tmp_path):
    import anndata

    from seq2exp_plugin.cli import main

    plus = trained.genes[trained.genes.strand == "+"].iloc[0]
    minus = trained.genes[trained.genes.strand == "-"].iloc[0]
    far_chrom = plus.chrom
    far = max(0, int(trained.genes[trained.genes.chrom == far_chrom].tss.min()) - 3 * WINDOW)
    rows = [snv_at(trained.fasta, plus.chrom, int(plus.tss) - 100),
            snv_at(trained.fasta, minus.chrom, int(minus.tss) + 250),
            snv_at(trained.fasta, far_chrom, far),  # outside every window
            (plus.chrom, int(plus.tss) - 50 + 1, trained.fasta[plus.chrom][int(plus.tss) - 50], "ACG")]  # indel
    path = write_tsv(tmp_path / "v.tsv", rows, ids=["in_plus", "in_minus", "far", "ins"])
    out = tmp_path / "out"
    assert main(["variants", trained.ckpt, "--variants", str(path), "--out", str(out), "--h5ad",
                 "--data", "rc_minus_strand=true"]) == 0
    assert sorted(os.listdir(out)) == ["not_scored.tsv", "summary.json", "variants.h5ad", "variants.tsv"]
    res = pd.read_csv(out / "variants.tsv", sep="\t")
    skipped = pd.read_csv(out / "not_scored.tsv", sep="\t")
    assert set(res["variant_id"]) == {"in_plus", "in_minus"}
    assert {(r.variant_id, r.gene_id) for r in res.itertuples()} >= {("in_plus", plus.gene_id),
                                                                      ("in_minus", minus.gene_id)}
    reasons = dict(zip(skipped["variant_id"], skipped["reason"]))
    assert set(reasons) == {"far", "ins"}
    assert "outside every" in reasons["far"] and reasons["ins"].startswith("indel")
    minus_row = res[(res.variant_id == "in_minus") & (res.gene_id == minus.gene_id)].iloc[0]
    assert minus_row.window_index == WINDOW - 1 - (int(minus.tss) + 250 - (int(minus.tss) - WINDOW // 2))
    assert minus_row.distance_to_tss == -250  # upstream in the direction of transcription
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variants"] == 4 and summary["not_scored"] == 2 and summary["pairs_scored"] == len(res)
    adata = anndata.read_h5ad(out / "variants.h5ad")
    for r in res.itertuples():
        assert adata[r.variant_id, r.gene_id].X[0, 0] == pytest.approx(r.delta, rel=1e-5, abs=1e-9)
    assert np.isnan(adata.X).sum() == adata.n_obs * adata.n_vars - len(res)
    # nearest: one gene per variant; --genes restricts the candidates
    out2 = tmp_path / "nearest"
    assert main(["variants", trained.ckpt, "--variants", str(path), "--out", str(out2), "--window-genes",
                 "nearest", "--genes", plus.gene_id]) == 0
    res2 = pd.read_csv(out2 / "variants.tsv", sep="\t")
    start = int(plus.tss) - WINDOW // 2
    inside = {vid for vid, r in zip(["in_plus", "in_minus", "far"], rows)
              if r[0] == plus.chrom and start <= r[1] - 1 < start + WINDOW}
    assert "in_plus" in inside
    assert sorted(res2["variant_id"]) == sorted(inside) and set(res2["gene_id"]) == {plus.gene_id}
    skipped2 = pd.read_csv(out2 / "not_scored.tsv", sep="\t")
    assert set(skipped2["variant_id"]) == {"in_plus", "in_minus", "far", "ins"} - inside


def test_a_variant_listed_twice_is_scored_once_with_a_warning(tmp_path):
    vcf = tmp_path / "twice.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n"
                   "chr1\t10\trs1\tA\tG\nchr1\t12\t.\tC\tT\n1\t10\trs1_again\tA\tG\nchr1\t10\trs1\tA\tG\n")
    with pytest.warns(UserWarning, match=r"twice.vcf: 2 duplicate record\(s\) of a variant already listed "
                                         r"\(e.g. 1:10 A>G\); each variant is scored once"):
        got = read_variants(vcf)
    assert got == [Variant("chr1", 10, "A", "G", "rs1"), Variant("chr1", 12, "C", "T", "")]
