"""Gene table: builder (BED/GTF TSS, expression, promoter activity, half-life features, split),
schema validation, atomic writing, errors."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from seq2exp_plugin.data.gene_sources import assign_split, read_tss_bed
from seq2exp_plugin.data.genes import (
    HALFLIFE_FEATURES,
    build_gene_table,
    gene_features,
    read_gene_table,
    validate_gene_table,
)


def promoter_ref(world, chrom, tss, hw=500):
    """Independent reference from the arrays written into the bigWigs (zero-padded)."""
    c = "chr" + chrom if not chrom.startswith("chr") else chrom

    def mean(arr):
        out = np.zeros(2 * hw)
        s, e = max(tss - hw, 0), min(tss + hw, len(arr))
        out[s - (tss - hw) : e - (tss - hw)] = arr[s:e]
        return out.mean()

    return np.sqrt(mean(world.dnase[c]) * mean(world.h3k27ac[c]))


def test_built_table_contents(data_world):
    a = read_gene_table(data_world.genes)
    assert list(a.obs_names) == ["G1", "G2", "G3", "G4", "G5"]
    assert list(a.var_names) == ["K562", "GM12878"]
    obs = a.obs
    assert obs["tss"].tolist() == [r[1] for r in data_world.tss_rows]  # (start + end) // 2 of 1-bp BED
    assert obs["tss"].dtype == np.int64
    assert obs["chrom"].tolist() == ["1", "1", "1", "chr2", "chr2"]  # as written in the BED
    assert obs["strand"].tolist() == ["+", "-", "+", "-", "+"]
    assert obs["split"].tolist() == ["train", "train", "train", "valid", "valid"]  # "chr2" given as valid
    assert obs["symbol"].tolist() == obs["gene_id"].tolist()
    assert a.X.dtype == np.float32
    expr = data_world.expr.set_index("gene_id")
    for j, ct in enumerate(a.var_names):
        for i, g in enumerate(a.obs_names):
            if g in expr.index:
                assert a.X[i, j] == pytest.approx(np.log10(expr.loc[g, ct] + 1), rel=1e-6)
            else:
                assert np.isnan(a.X[i, j])  # G5 has no expression
    feats = a.obsm["features"]
    assert list(feats.columns) == list(HALFLIFE_FEATURES) + ["promoter_activity:K562", "promoter_activity:GM12878"]
    for g, chrom, tss in zip(a.obs_names, obs["chrom"], obs["tss"]):
        assert feats.loc[g, "promoter_activity:K562"] == pytest.approx(promoter_ref(data_world, chrom, int(tss)), rel=1e-5)
    assert (feats[list(HALFLIFE_FEATURES)].to_numpy() == 0).all()  # no half-life source given
    f = gene_features(a, "GM12878")
    assert f.shape == (5, 9) and f.dtype == np.float32
    np.testing.assert_allclose(f[:, 8], feats["promoter_activity:GM12878"].to_numpy(), rtol=1e-6)
    prov = a.uns["seq2exp"]
    assert list(prov["promoter_window"]) == [-500, 500]
    assert str(prov["tracks"]["K562"]["dnase"]).endswith("dnase.bw")
    with pytest.raises(KeyError, match="HeLa"):
        gene_features(a, "HeLa")


def test_promoter_window_clipped_at_chrom_start(data_world):
    tss = pd.DataFrame({"chrom": ["chr1"], "start": [100], "end": [101], "gene_id": ["E"], "strand": ["+"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = build_gene_table(tss, pd.DataFrame({"gene_id": ["E"], "K562": [1.0]}), {"K562": data_world.tracks["K562"]})
    assert a.obsm["features"].loc["E", "promoter_activity:K562"] == pytest.approx(promoter_ref(data_world, "chr1", 100), rel=1e-5)


def test_split_assignment_aliases():
    got = assign_split(["3", "chr21", "X", "chr22", "1", "MT", "chr3"])
    assert got.tolist() == ["valid", "valid", "test", "test", "train", "train", "valid"]
    assert assign_split(["chr5", "5", "2"], {"test": ["5"]}).tolist() == ["test", "test", "train"]
    with pytest.raises(ValueError, match="both"):
        assign_split(["1"], {"valid": ["chr1"], "test": ["1"]})
    with pytest.raises(ValueError, match="split names"):
        assign_split(["1"], {"holdout": ["chr1"]})


def test_real_xpresso_bed(real_paths):
    t = read_tss_bed(real_paths.bed)
    assert len(t) == 18_413 and t["gene_id"].is_unique
    raw = pd.read_csv(real_paths.bed, sep="\t", header=None)
    np.testing.assert_array_equal(t["tss"].to_numpy(), raw[1].to_numpy() + 10_000)  # 20 kb windows
    row = t.set_index("gene_id").loc["ENSG00000035115"]
    assert (row["chrom"], row["tss"], row["strand"]) == ("2", 264_031, "-")


def test_write_is_atomic_and_roundtrips(data_world, tmp_path):
    out = tmp_path / "sub" / "t.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = build_gene_table(data_world.tss_bed, data_world.expression, data_world.tracks, out=out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["t.h5ad"]  # no temporary left behind
    b = read_gene_table(out)
    np.testing.assert_array_equal(np.isnan(a.X), np.isnan(b.X))
    np.testing.assert_allclose(np.nan_to_num(a.X), np.nan_to_num(b.X))
    pd.testing.assert_frame_equal(a.obsm["features"], b.obsm["features"])
    assert b.obs["split"].tolist() == ["train"] * 5  # default split: chr2 is train


def test_input_errors(data_world, tmp_path):
    W = data_world
    with pytest.raises(FileNotFoundError, match="nope.bed"):
        build_gene_table(tmp_path / "nope.bed", W.expression, W.tracks)
    bad = tmp_path / "bad.bed"
    bad.write_text("1\t10\t11\tA\t0\t+\n1\t1x\t12\tB\t0\t+\n")
    with pytest.raises(ValueError, match=r"bad\.bed, line 2.*start"):
        build_gene_table(bad, W.expression, W.tracks)
    bad.write_text("1\t10\t11\tA\t0\n")
    with pytest.raises(ValueError, match=r"bad\.bed, line 1.*columns"):
        build_gene_table(bad, W.expression, W.tracks)
    bad.write_text("1\t10\t11\tA\t0\t+\n1\t20\t21\tA\t0\t+\n")
    with pytest.raises(ValueError, match="duplicated gene_id 'A'"):
        build_gene_table(bad, W.expression, W.tracks)
    with pytest.raises(KeyError, match="'gene_id'"):
        build_gene_table(W.tss_bed, pd.DataFrame({"gene": ["G1"], "K562": [1.0]}), W.tracks)
    with pytest.raises(ValueError, match="negative"):
        build_gene_table(W.tss_bed, pd.DataFrame({"gene_id": ["G1"], "K562": [-1.0]}), W.tracks)
    with pytest.raises(ValueError, match="'K562' is not numeric"):
        build_gene_table(W.tss_bed, pd.DataFrame({"gene_id": ["G1"], "K562": ["high"]}), W.tracks)
    with pytest.raises(KeyError, match="GM12878"):
        build_gene_table(W.tss_bed, W.expression, {"K562": W.tracks["K562"]})
    with pytest.raises(FileNotFoundError, match="gone.bw"):
        build_gene_table(W.tss_bed, W.expression, {ct: {"dnase": tmp_path / "gone.bw", "h3k27ac": W.h3k27ac_bw}
                                                   for ct in ("K562", "GM12878")})
    mt = tmp_path / "mt.bed"
    mt.write_text("MT\t10\t11\tA\t0\t+\n")
    with pytest.raises(KeyError, match=r"MT.*dnase\.bw"):  # chrM missing from the tracks
        build_gene_table(mt, W.expression, W.tracks)
    far = tmp_path / "far.bed"
    far.write_text("chr2\t25000\t25001\tFAR\t0\t+\n")
    with pytest.raises(ValueError, match=r"'FAR'.*beyond the end of chr2"):
        build_gene_table(far, W.expression, W.tracks, genome=W.fasta)


def test_validate_gene_table_names_missing_parts(data_world):
    a = read_gene_table(data_world.genes)
    validate_gene_table(a)
    b = a.copy()
    del b.obs["strand"]
    with pytest.raises(KeyError, match="'strand'"):
        validate_gene_table(b, "x.h5ad")
    c = a.copy()
    c.obsm["features"] = c.obsm["features"].drop(columns=["promoter_activity:K562"])
    with pytest.raises(KeyError, match="promoter_activity:K562"):
        validate_gene_table(c)
    d = a.copy()
    d.obs["tss"] = d.obs["tss"].astype(float)
    with pytest.raises(ValueError, match="'tss' must be integer"):
        validate_gene_table(d)
    e = a.copy()
    e.obs["split"] = "holdout"
    with pytest.raises(ValueError, match="split"):
        validate_gene_table(e)
    f = a.copy()
    f.obs["gene_start"] = 0  # a gene body needs both ends
    with pytest.raises(KeyError, match="'gene_start' without 'gene_end'"):
        validate_gene_table(f)
    f.obs["gene_end"] = 1.5
    with pytest.raises(ValueError, match="'gene_end' must be integer"):
        validate_gene_table(f)


def test_halflife_table(data_world):
    hl = pd.DataFrame({"gene_id": ["G1", "G2", "G3"], **{c: [1.0 + k, 2.0 + k, 3.0 + k] for k, c in enumerate(HALFLIFE_FEATURES)}})
    with pytest.warns(UserWarning, match="2 genes missing"):
        a = build_gene_table(data_world.tss_bed, data_world.expression, data_world.tracks, halflife=hl)
    f = a.obsm["features"]
    assert f.loc["G2", "CDSLEN_log10zscore"] == pytest.approx(3.0)
    assert f.loc["G5", "UTR5LEN_log10zscore"] == pytest.approx(2.0)  # column mean
    with pytest.raises(KeyError, match="UTR3GC"):
        build_gene_table(data_world.tss_bed, data_world.expression, data_world.tracks,
                         halflife=hl.drop(columns=["UTR3GC"]))


def test_halflife_file_as_epinformer_writes_it(data_world, tmp_path):
    """EPInformer's mRNA_halflife_features.csv (the paper's features): comma-separated, extra
    columns, raw ORFEXONDENSITY; a file without that column is refused naming it."""
    values = {c: [0.1 * k, 0.2 * k, 0.3 * k] for k, c in enumerate(HALFLIFE_FEATURES, start=1)}
    epinformer = pd.DataFrame({"chrom": ["1", "1", "2"], "TSS": [1000, 5000, 9000], "gene_id": ["G1", "G2", "G3"],
                               "Gene name": ["A", "B", "C"], "Gene description": ["a, b", "c", "d"], **values})
    epinformer.to_csv(tmp_path / "mRNA_halflife_features.csv", index=False)
    with pytest.warns(UserWarning, match="2 genes missing"):
        table = build_gene_table(data_world.tss_bed, data_world.expression, data_world.tracks,
                                 halflife=tmp_path / "mRNA_halflife_features.csv", out=tmp_path / "new.h5ad")
    assert table.obsm["features"].loc["G3", "ORFEXONDENSITY"] == pytest.approx(2.4)
    renamed = epinformer.rename(columns={"ORFEXONDENSITY": "ORFEXONDENSITY_log10zscore"})
    with pytest.raises(ValueError, match="ORFEXONDENSITY"):
        build_gene_table(data_world.tss_bed, data_world.expression, data_world.tracks, halflife=renamed)


GTF = """\
#!genome-build test
chr1\tt\tgene\t1201\t5000\t.\t+\t.\tgene_id "GA.3"; gene_name "ALPHA";
chr1\tt\ttranscript\t1201\t5000\t.\t+\t.\tgene_id "GA.3"; transcript_id "TA1"; gene_name "ALPHA";
chr1\tt\texon\t1201\t1400\t.\t+\t.\tgene_id "GA.3"; transcript_id "TA1";
chr1\tt\texon\t2101\t2500\t.\t+\t.\tgene_id "GA.3"; transcript_id "TA1";
chr1\tt\texon\t3001\t5000\t.\t+\t.\tgene_id "GA.3"; transcript_id "TA1";
chr1\tt\tCDS\t1301\t1400\t.\t+\t0\tgene_id "GA.3"; transcript_id "TA1";
chr1\tt\tCDS\t2101\t2500\t.\t+\t0\tgene_id "GA.3"; transcript_id "TA1";
chr1\tt\tCDS\t3001\t3300\t.\t+\t0\tgene_id "GA.3"; transcript_id "TA1";
chr1\tt\tstop_codon\t3301\t3303\t.\t+\t0\tgene_id "GA.3"; transcript_id "TA1";
chr1\tt\ttranscript\t1201\t3000\t.\t+\t.\tgene_id "GA.3"; transcript_id "TA2";
chr1\tt\texon\t1201\t3000\t.\t+\t.\tgene_id "GA.3"; transcript_id "TA2";
chr1\tt\tCDS\t1301\t1500\t.\t+\t0\tgene_id "GA.3"; transcript_id "TA2";
chr2\tt\tgene\t5001\t9000\t.\t-\t.\tgene_id "GB"; gene_name "BETA";
chr2\tt\texon\t5001\t9000\t.\t-\t.\tgene_id "GB"; transcript_id "TB1";
chr2\tt\tCDS\t5001\t8000\t.\t-\t0\tgene_id "GB"; transcript_id "TB1";
chr2\tt\texon\t5001\t5500\t.\t-\t.\tgene_id "GB"; transcript_id "TB2"; tag "basic"; tag "Ensembl_canonical";
chr2\tt\texon\t7001\t9000\t.\t-\t.\tgene_id "GB"; transcript_id "TB2"; tag "basic"; tag "Ensembl_canonical";
chr2\tt\tCDS\t5401\t5500\t.\t-\t0\tgene_id "GB"; transcript_id "TB2"; tag "Ensembl_canonical";
chr2\tt\tCDS\t7001\t7600\t.\t-\t0\tgene_id "GB"; transcript_id "TB2"; tag "Ensembl_canonical";
chr1\tt\texon\t20001\t20500\t.\t+\t.\tgene_id "GC"; transcript_id "TC1"; gene_name "GAMMA";
"""


def test_gtf_tss_symbols_and_halflife(data_world, tmp_path):
    gtf = tmp_path / "a.gtf"
    gtf.write_text(GTF)
    expr = pd.DataFrame({"gene_id": ["GA", "GB", "GC"], "K562": [1.0, 2.0, 3.0]})
    a = build_gene_table(None, expr, {"K562": data_world.tracks["K562"]}, gtf=gtf, genome=data_world.fasta)
    assert list(a.obs_names) == ["GA.3", "GB", "GC"]
    assert a.obs["symbol"].tolist() == ["ALPHA", "BETA", "GAMMA"]
    assert a.obs["tss"].tolist() == [1200, 8999, 20000]  # gene start (+), end - 1 (-); GC from its exons
    assert a.obs["gene_start"].tolist() == [1200, 5000, 20000] and a.obs["gene_end"].tolist() == [5000, 9000, 20500]
    out = tmp_path / "bodies.h5ad"  # TSSs from a BED: the bodies of the genes the GTF has, -1 for the others
    (tmp_path / "tss.bed").write_text("chr1\t1300\t1301\tGA\t0\t+\nchr2\t100\t101\tGX\t0\t+\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_gene_table(tmp_path / "tss.bed", pd.DataFrame({"gene_id": ["GA", "GX"], "K562": [1.0, 2.0]}),
                         {"K562": data_world.tracks["K562"]}, gtf=gtf, out=out)
    b = read_gene_table(out)
    assert b.obs["gene_start"].tolist() == [1200, -1] and b.obs["gene_end"].tolist() == [5000, -1]
    np.testing.assert_allclose(a.X[:, 0], np.log10(np.array([1.0, 2.0, 3.0]) + 1), rtol=1e-6)  # GA.3 ~ GA

    s1, s2 = data_world.seqs["chr1"], data_world.seqs["chr2"]

    def gc(s):
        s = s.upper()
        return (s.count("G") + s.count("C")) / sum(s.count(b) for b in "ACGT")

    # TA1 (longest CDS) for GA; TB2 (Ensembl_canonical) for GB; GC non-coding
    lengths = {  # as log10 z-scores
        "UTR5LEN": [100, 1400, 0], "CDSLEN": [803, 700, 0], "INTRONLEN": [1200, 1500, 0], "UTR3LEN": [1697, 400, 0],
    }
    as_they_are = {  # the ORF's junction density and the GC fractions
        "ORFEXONDENSITY": [3 / 0.8, 2 / 0.7, np.nan],  # coding exons per kb, stop codon excluded
        "UTR5GC": [gc(s1[1200:1300]), gc(s2[7600:9000]), np.nan],
        "CDSGC": [gc(s1[1300:1400] + s1[2100:2500] + s1[3000:3303]), gc(s2[5400:5500] + s2[7000:7600]), np.nan],
        "UTR3GC": [gc(s1[3303:5000]), gc(s2[5000:5400]), np.nan],
    }
    f = a.obsm["features"]
    for name, vals in lengths.items():
        v = np.log10(np.asarray(vals, float) + 0.1)
        z = (v - np.nanmean(v)) / np.nanstd(v)
        z = np.where(np.isnan(z), 0.0, z)
        np.testing.assert_allclose(f[f"{name}_log10zscore"].to_numpy(), z, rtol=1e-5, atol=1e-6, err_msg=name)
    for name, vals in as_they_are.items():
        v = np.asarray(vals, float)
        v = np.where(np.isnan(v), np.nanmean(v), v)
        np.testing.assert_allclose(f[name].to_numpy(), v, rtol=1e-5, err_msg=name)
    assert "GTF" in a.uns["seq2exp"]["halflife_source"]


def test_cli_reads_the_named_columns_of_an_epinformer_table(data_world, tmp_path, capsys):
    """EPInformer's expression table: ENSID, CAGE columns named otherwise, other columns of any kind."""
    from seq2exp_plugin.cli import main

    W = data_world
    plain = pd.read_csv(W.expression, sep="\t")
    cells = [c for c in plain.columns if c != "gene_id"]
    table = pd.DataFrame({"ENSID": plain["gene_id"], "Gene name": "a, b",
                          **{f"{c}_CAGE_128*3_sum": plain[c] for c in cells}, **{f"Actual_{c}": -1.0 for c in cells}})
    table.to_csv(tmp_path / "gene_expr.csv", index=False)
    tracks = [f"{ct}:dnase={t['dnase']},h3k27ac={t['h3k27ac']}" for ct, t in W.tracks.items()]
    common = ["genes", "--tss", str(W.tss_bed), "--tracks", *tracks]
    assert main([*common, "--expression", str(W.expression), "--out", str(tmp_path / "plain.h5ad")]) == 0
    assert main([*common, "--expression", str(tmp_path / "gene_expr.csv"), "--out", str(tmp_path / "epi.h5ad"),
                 "--expression-columns", *(f"{c}={c}_CAGE_128*3_sum" for c in cells)]) == 0
    ours, theirs = read_gene_table(tmp_path / "epi.h5ad"), read_gene_table(tmp_path / "plain.h5ad")
    assert list(ours.var_names) == list(theirs.var_names) == cells
    np.testing.assert_array_equal(ours.X, theirs.X)
    assert main([*common, "--expression", str(tmp_path / "gene_expr.csv"), "--out", str(tmp_path / "bad.h5ad")]) == 2
    assert "Actual_" in capsys.readouterr().err  # every column a cell type: the log column is refused


def test_cli_warnings_are_one_line_each(data_world, tmp_path):
    """As the errors: ``seq2exp genes: warning: ...``, without Python's file:line and source line."""
    import subprocess
    import sys

    W = data_world
    tracks = [f"{ct}:dnase={t['dnase']},h3k27ac={t['h3k27ac']}" for ct, t in W.tracks.items()]
    done = subprocess.run([sys.executable, "-m", "seq2exp_plugin.cli", "genes", "--tss", str(W.tss_bed),
                           "--expression", str(W.expression), "--tracks", *tracks, "--out", str(tmp_path / "g.h5ad")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "default"}, timeout=300)
    assert done.returncode == 0, done.stderr
    unscored = [f"seq2exp genes: warning: 1 of 5 genes of {W.tss_bed} have no {ct} value in {W.expression}: "
                "kept with a NaN target (training, folds and metrics leave them out)" for ct in W.tracks]
    assert done.stderr.splitlines() == [*unscored, "seq2exp genes: warning: no half-life features (give a half-life "
                                        "table - --halflife, halflife= - or a GTF and the genome): using zeros"]


def test_cli_builds_the_gene_table(data_world, tmp_path, capsys):
    from seq2exp_plugin.cli import main

    W = data_world
    out = tmp_path / "genes.h5ad"
    tracks = [f"{ct}:dnase={t['dnase']},h3k27ac={t['h3k27ac']}" for ct, t in W.tracks.items()]
    assert main(["genes", "--tss", str(W.tss_bed), "--expression", str(W.expression), "--tracks", *tracks,
                 "--valid", "chr2", "--test", "chrX", "--out", str(out)]) == 0
    table = read_gene_table(out)
    assert list(table.obs_names) == ["G1", "G2", "G3", "G4", "G5"]
    assert list(table.obs["split"]) == ["train", "train", "train", "valid", "valid"]
    assert table.X[0, list(table.var_names).index("K562")] == pytest.approx(np.log10(11.0))
    assert "5 genes x 2 cell types" in capsys.readouterr().out
    assert main(["genes", "--tss", str(W.tss_bed), "--expression", str(W.expression),
                 "--tracks", "K562:dnase=x.bw", "--out", str(tmp_path / "bad.h5ad")]) == 2
    assert not (tmp_path / "bad.h5ad").exists()


def test_bad_values_inside_good_tables(data_world, tmp_path):
    """n/a half-lives become the column mean with a warning that counts them; infinite ones,
    non-finite features of a gene table and a header without rows are refused, named."""
    W = data_world
    hl = pd.DataFrame({"gene_id": ["G1", "G2", "G3"], **{c: [1.0, 2.0, 3.0] for c in HALFLIFE_FEATURES}})
    (tmp_path / "hl.tsv").write_text(hl.to_csv(sep="\t", index=False).replace("\t2.0", "\tn/a", 3))
    with pytest.warns(UserWarning) as seen:
        table = build_gene_table(W.tss_bed, W.expression, W.tracks, halflife=tmp_path / "hl.tsv")
    assert any("hl.tsv: 3 missing value(s) (empty or n/a) replaced by their column's mean: "
               f"{HALFLIFE_FEATURES[0]} 1, {HALFLIFE_FEATURES[1]} 1, {HALFLIFE_FEATURES[2]} 1" in str(w.message)
               for w in seen)
    assert table.obsm["features"].loc["G2", HALFLIFE_FEATURES[0]] == pytest.approx(2.0)  # mean of 1 and 3
    with pytest.raises(ValueError, match=f"column '{HALFLIFE_FEATURES[4]}' of gene 'G3' is infinite"):
        build_gene_table(W.tss_bed, W.expression, W.tracks,
                         halflife=hl.assign(**{HALFLIFE_FEATURES[4]: [1.0, 2.0, np.inf]}))
    (tmp_path / "header_only.tsv").write_text("gene_id\tK562\n")
    with pytest.raises(ValueError, match=r"header_only.tsv: no rows, only a header \(\['gene_id', 'K562'\]\)"):
        build_gene_table(W.tss_bed, tmp_path / "header_only.tsv", W.tracks)
    bad = read_gene_table(W.genes)
    bad.obsm["features"].iloc[1, 2] = np.nan
    column = bad.obsm["features"].columns[2]
    with pytest.raises(ValueError, match=f"x.h5ad: obsm\\['features'\\] column '{column}' is nan for gene "
                                         f"'{bad.obs_names[1]}' \\(1 genes\\)"):
        validate_gene_table(bad, "x.h5ad")
