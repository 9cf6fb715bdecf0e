"""The synthetic benchmark (`seq2exp synth`): files, determinism, and the causal ground truth."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seq2exp_plugin.data import synth, synth_layout
from seq2exp_plugin.data.synth import SynthParams, generate, load_manifest

CELLS = ("synthA", "synthB")


def _truth(path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t")
    df.columns = [c.lstrip("#") for c in df.columns]
    return df


def _elements(m) -> pd.DataFrame:
    return _truth(m["truth"]["elements"])


def _r2(x, y) -> float:
    return float(np.corrcoef(x, y)[0, 1] ** 2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    generate(out, preset="tiny", seed=0)
    return out


@pytest.fixture(scope="module")
def tiny_same(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny_same"
    generate(out, preset="tiny", seed=0)
    return out


@pytest.fixture(scope="module")
def tiny_other(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny_other"
    generate(out, preset="tiny", seed=1)
    return out


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> Path:
    """The bench preset's settings at a size a test can afford (200 genes, 20 kb windows)."""
    out = tmp_path_factory.mktemp("synth") / "medium"
    generate(out, preset="bench", n_genes=200, window=20000, seed=3, build_genes=False)
    return out


# ---------------------------------------------------------------------------------- files
def test_manifest_lists_existing_files(tiny):
    m = load_manifest(tiny)
    assert m["signals"] == ["h3k27ac", "dnase", "hic"]
    assert m["cell_types"] == list(CELLS)
    assert m["window"] == 8000 and m["seed"] == 0 and m["preset"] == "tiny"
    paths = [m["genome"][k] for k in ("fasta", "fai", "sizes")]
    paths += [m["genes"][k] for k in ("tss", "expression", "halflife", "table")]
    paths += [p for t in m["tracks"].values() for p in t.values()]
    paths += list(m["truth"]["cells"].values()) + [m["truth"]["elements"], m["blacklist"]]
    for p in paths:
        assert os.path.isfile(p), p
    assert m["params"]["n_genes"] == 20 and m["params"]["resolved_hic_resolution"] == 1000
    assert set(m["split"]["valid"]) == {"chr3", "chr21"}
    assert set(m["split"]["test"]) == {"chr22", "chrX"}
    # no temporary directory left beside the output
    assert not [p for p in tiny.parent.iterdir() if p.name.startswith(".")]


def test_manifest_params_give_back_the_parameters_of_the_set(tiny, medium):
    """A reader of a generated set gets its parameters, overrides included (``medium``: the
    bench preset at another size and window), from the manifest: SynthParams.from_dict."""
    assert SynthParams.from_dict(load_manifest(tiny)["params"]) == SynthParams.from_preset("tiny", seed=0)
    params = SynthParams.from_dict(load_manifest(medium)["params"])
    assert params == SynthParams.from_preset("bench", n_genes=200, window=20000, seed=3)
    assert params != SynthParams.from_preset("bench", seed=3)


def test_genome_fasta_sizes_and_tss(tiny):
    import pyfaidx

    m = load_manifest(tiny)
    sizes = pd.read_csv(m["genome"]["sizes"], sep="\t", header=None, names=["chrom", "len"])
    fa = pyfaidx.Fasta(m["genome"]["fasta"], sequence_always_upper=False)
    assert list(fa.keys()) == sizes.chrom.tolist() == list(m["genome"]["chroms"])
    assert {"chr1", "chr2", "chr3", "chr21", "chr22", "chrX"} <= set(fa.keys())
    seq = "".join(str(fa[c][:]) for c in fa.keys())
    assert len(seq) == sizes.len.sum()
    up = seq.upper()
    acgt = sum(up.count(b) for b in "ACGT")
    assert 0.37 < (up.count("G") + up.count("C")) / acgt < 0.45  # human-like GC
    assert up.count("N") > 0 and any(ch.islower() for ch in seq)  # N blocks, soft-masked repeats
    assert up.count("CG") / acgt < 0.025  # CpG depletion (0.04 with no depletion)
    tss = pd.read_csv(m["genes"]["tss"], sep="\t", header=None,
                      names=["chrom", "start", "end", "gene_id", "score", "strand"])
    assert len(tss) == 20 and tss.gene_id.is_unique
    assert (tss.end == tss.start + 1).all() and set(tss.strand) == {"+", "-"}
    half = m["window"] // 2
    nb = m["genome"]["n_block_bp"]
    for r in tss.itertuples():  # every window inside the chromosome and clear of the N blocks
        assert nb <= r.start - half and r.start + half <= m["genome"]["chroms"][r.chrom] - nb
        assert fa[r.chrom][r.start - 5:r.start + 5].seq.isupper()  # promoters are not masked
    # windows overlap: neighbouring TSSs closer than one window, farther than the promoter zone
    for _, g in tss.groupby("chrom"):
        gaps = np.diff(np.sort(g.start.to_numpy()))
        assert ((gaps >= 0.5 * m["window"] - 1) & (gaps <= 0.9 * m["window"] + 1)).all()


def test_expression_and_halflife_tables(tiny):
    m = load_manifest(tiny)
    expr = pd.read_csv(m["genes"]["expression"], sep="\t")
    assert list(expr.columns) == ["gene_id", *CELLS]
    assert (expr[list(CELLS)] > 0).all().all()
    hl = pd.read_csv(m["genes"]["halflife"], sep="\t")
    assert list(hl.columns) == ["gene_id", "UTR5LEN_log10zscore", "CDSLEN_log10zscore",
                                "INTRONLEN_log10zscore", "UTR3LEN_log10zscore", "UTR5GC",
                                "CDSGC", "UTR3GC", "ORFEXONDENSITY"]
    assert hl.gene_id.tolist() == expr.gene_id.tolist()
    assert hl[["UTR5GC", "CDSGC", "UTR3GC"]].apply(lambda c: c.between(0, 1)).all().all()


def test_halflife_features_carry_a_little_signal(medium):
    m = load_manifest(medium)
    hl = pd.read_csv(m["genes"]["halflife"], sep="\t").set_index("gene_id")
    terms = pd.read_csv(m["truth"]["expression_terms"], sep="\t")
    t = terms[terms.cell_type == "synthA"].set_index("gene_id").loc[hl.index]
    X = np.c_[hl.to_numpy(), np.ones(len(hl))]
    coef, *_ = np.linalg.lstsq(X, t.halflife_log10.to_numpy(), rcond=None)
    assert _r2(X @ coef, t.halflife_log10) > 0.999  # a function of the written features
    assert 0.03 < t.halflife_log10.std() < 0.2  # small next to the spread of log-expression
    y = np.log10(t.expression + 1)
    assert t.halflife_log10.std() < 0.5 * y.std()


def test_files_open_with_the_real_readers(tiny):
    import anndata
    import cooler
    import pyBigWig

    m = load_manifest(tiny)
    sizes = m["genome"]["chroms"]
    for cell in CELLS:
        for assay in ("dnase", "h3k27ac"):
            bw = pyBigWig.open(m["tracks"][cell][assay])
            assert bw.isBigWig() and bw.chroms() == sizes
            v = bw.values("chr1", 0, sizes["chr1"], numpy=True)
            assert np.isfinite(v).all() and v.max() > 5
        clr = cooler.Cooler(m["tracks"][cell]["hic"])
        assert clr.binsize == 1000 and dict(clr.chromsizes) == sizes
        assert "weight" in clr.bins().columns
        assert m["hic"][cell]["balance_converged"]
        mat = clr.matrix(balance=False).fetch("chr1")
        d = [np.diagonal(mat, k)[6:-6].mean() for k in range(1, 6)]
        assert d[0] > d[1] > d[2] > d[3] > d[4]  # contacts decay with distance
        assert 0.5 < d[0] / (2 * d[3]) < 2  # roughly as 1/d (k+1 = 2 vs 5)
    ad = anndata.read_h5ad(m["genes"]["table"])
    expr = pd.read_csv(m["genes"]["expression"], sep="\t").set_index("gene_id")
    assert list(ad.var_names) == list(CELLS)
    np.testing.assert_allclose(ad.X, np.log10(expr.loc[ad.obs_names, list(CELLS)] + 1), rtol=1e-5)
    split = dict(zip(ad.obs.chrom, ad.obs.split))
    assert split["chr3"] == "valid" and split["chr22"] == "test" and split["chr1"] == "train"
    assert ad.uns["seq2exp"]["tracks"]["synthA"]["dnase"].startswith(str(tiny))


def ds_target(m, cell, gene_id) -> float:
    expr = pd.read_csv(m["genes"]["expression"], sep="\t").set_index("gene_id")
    return float(np.log10(expr.loc[gene_id, cell] + 1))


def test_project_readers_build_windows(tiny):
    from seq2exp_plugin.data.hic import HiCContacts
    from seq2exp_plugin.data.windows import WindowDataset

    m = load_manifest(tiny)
    cell = "synthA"
    ds = WindowDataset(m["genes"]["table"], m["genome"]["fasta"],
                       {s: m["tracks"][cell][s] for s in m["signals"]}, cell,
                       window=m["window"], blacklist=m["blacklist"])
    item = ds[0]
    L = m["window"]
    seq, sig = np.asarray(item["seq"]), np.asarray(item["signals"])
    assert seq.shape == (4, L) and sig.shape == (3, L)
    assert np.isfinite(sig).all() and sig[1].max() > 5 and sig[2].max() > 0
    assert (seq.sum(axis=0) == 1).all()  # no N inside windows
    assert float(item["target"]) == pytest.approx(float(ds_target(m, cell, item["gene_id"])))
    truth = _truth(m["truth"]["cells"][cell])
    hic = HiCContacts(m["tracks"][cell]["hic"])
    assert hic.resolution == 1000
    prof = hic.contact_to_tss(item["chrom"], int(item["tss"]), int(item["start"]), int(item["end"]))
    assert prof.shape == (L,) and np.isfinite(prof).all() and prof.max() > 0
    bl = pd.read_csv(m["blacklist"], sep="\t", header=None)
    assert len(bl) == 3 and (bl[2] > bl[1]).all()
    assert len(truth)


# ---------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes(tiny, tiny_same):
    import cooler

    files = ["genome.fa", "genome.fa.fai", "genome.sizes", "tss.bed", "expression.tsv",
             "halflife.tsv", "blacklist.bed", "manifest.yaml", "truth/synthA.bed",
             "truth/synthB.bed", "truth/elements.bed", "truth/expression_terms.tsv",
             "truth/synthA.crispr.tsv.gz", "truth/synthB.crispr.tsv.gz"]
    files += [f"{c}/{f}" for c in CELLS for f in ("dnase.bw", "h3k27ac.bw", "dnase_reads.bed.gz")]
    for f in files:
        assert (tiny / f).read_bytes() == (tiny_same / f).read_bytes(), f
    for c in CELLS:
        a = cooler.Cooler(str(tiny / c / "hic.cool"))
        b = cooler.Cooler(str(tiny_same / c / "hic.cool"))
        pd.testing.assert_frame_equal(a.pixels()[:], b.pixels()[:])
        pd.testing.assert_frame_equal(a.bins()[:], b.bins()[:])


def test_different_seed_different_data(tiny, tiny_other):
    import cooler

    for f in ("genome.fa", "tss.bed", "expression.tsv", "truth/synthA.bed", "synthA/dnase.bw"):
        assert (tiny / f).read_bytes() != (tiny_other / f).read_bytes(), f
    a = cooler.Cooler(str(tiny / "synthA" / "hic.cool")).pixels()[:]
    b = cooler.Cooler(str(tiny_other / "synthA" / "hic.cool")).pixels()[:]
    assert len(a) != len(b) or not a.equals(b)


# ----------------------------------------------------------------------------- the truth
@pytest.mark.parametrize("which", ["tiny", "tiny_other"])
def test_every_class_in_every_cell_type(which, request):
    m = load_manifest(request.getfixturevalue(which))
    for cell in CELLS:
        t = _truth(m["truth"]["cells"][cell])
        assert list(t.columns) == list(synth.TRUTH_COLUMNS)
        counts = t["class"].value_counts()
        assert set(counts.index) == {"promoter", "R_ag", "decoy", "inactive"}
        assert counts["promoter"] == m["n_genes"]  # one own promoter per gene
        assert (t[t["class"] == "promoter"].groupby("gene_id").size() == 1).all()
        assert counts.to_dict() == m["truth"]["class_counts"][cell]
        # R_ag: within the gene's window, outside its promoter zone, driving this gene
        r = t[t["class"] == "R_ag"]
        assert (r.driver_of == r.gene_id).all() and (r.effect > 0).all() and (r.contact > 0).all()
        assert (r.distance.abs() >= 1200).all() and (r.distance.abs() < m["window"] // 2).all()
        assert (t[t["class"].isin(["decoy", "inactive"])].effect == 0).all()
        # decoys of each kind: motif-less/CTCF peaks, other genes' promoters and enhancers
        d = t[t["class"] == "decoy"]
        assert {"decoy", "promoter", "enhancer"} <= set(d.kind)
        assert (d[d.kind == "enhancer"].driver_of != d[d.kind == "enhancer"].gene_id).all()


def _mean_signal(bw, rows) -> np.ndarray:
    return np.array([bw.stats(r.chrom, int(r.start), int(r.end), type="mean")[0]
                     for r in rows.itertuples()])


def _background(m, bw) -> float:
    """Mean of a track over non-N sequence at least 600 bp from any element or blacklist."""
    el = _elements(m)
    bl = pd.read_csv(m["blacklist"], sep="\t", header=None, names=["chrom", "start", "end", "n"])
    nb = m["genome"]["n_block_bp"]
    total = n = 0.0
    for chrom, size in m["genome"]["chroms"].items():
        keep = np.zeros(size, bool)
        keep[nb:size - nb] = True
        for df in (el, bl):
            for r in df[df.chrom == chrom].itertuples():
                keep[max(0, r.start - 600):r.end + 600] = False
        v = bw.values(chrom, 0, size, numpy=True)
        total += v[keep].sum()
        n += keep.sum()
    return total / n


@pytest.mark.parametrize("which", ["tiny", "tiny_other"])
def test_truth_matches_the_tracks(which, request):
    """R_ag and decoys carry DNase and H3K27ac well above background; inactive ones do not."""
    import pyBigWig

    m = load_manifest(request.getfixturevalue(which))
    for cell in CELLS:
        t = _truth(m["truth"]["cells"][cell]).drop_duplicates(["name"])
        for assay in ("dnase", "h3k27ac"):
            bw = pyBigWig.open(m["tracks"][cell][assay])
            bg = _background(m, bw)
            assert 0.7 < bg < 1.3, (cell, assay, bg)  # fold over the background depth
            sig = {k: _mean_signal(bw, t[t["class"] == k]) for k in ("R_ag", "decoy", "inactive")}
            assert sig["R_ag"].min() > 4 * bg, (cell, assay)
            assert sig["decoy"].min() > 4 * bg, (cell, assay)
            assert np.median(sig["inactive"]) < 1.5 * bg
            if assay == "dnase":
                assert sig["inactive"].max() < 4 * bg
            assert np.mean(sig["inactive"] < 4 * bg) > 0.9


def _log_odds(seq: str, probs: np.ndarray, strand: str) -> float:
    idx = np.array(["ACGT".index(b) for b in seq.upper()])
    if strand == "-":
        idx = 3 - idx[::-1]
    return float(np.log2(probs[idx, np.arange(len(idx))] / 0.25).sum())


def test_crispr_truth_is_the_truth_in_the_benchmark_format(tiny):
    from seq2exp_plugin.data.crispr import CRISPR_COLUMNS, read_crispr

    m = load_manifest(tiny)
    for cell in CELLS:
        truth = _truth(m["truth"]["cells"][cell])
        crispr = read_crispr(m["truth"]["crispr"][cell], sizes=m["genome"]["chroms"])
        assert list(crispr.columns) == list(CRISPR_COLUMNS)
        tested = truth[truth["class"] != "promoter"].reset_index(drop=True)
        assert len(crispr) == len(tested)
        assert (crispr["chromStart"].to_numpy() == tested["start"].to_numpy()).all()
        assert (crispr["measuredGeneSymbol"].to_numpy() == tested["gene_id"].to_numpy()).all()
        assert (crispr["Regulated"].to_numpy() == (tested["class"] == "R_ag").to_numpy()).all()
        assert crispr["Regulated"].sum() > 0 and (~crispr["Regulated"]).sum() > 0
        tss = pd.read_csv(m["genes"]["tss"], sep="\t", header=None, index_col=3)[1]
        assert (crispr["startTSS"].to_numpy() == tss.loc[crispr["measuredGeneSymbol"]].to_numpy()).all()
        # the effect of a causal element is its share of the gene's expression terms
        terms = pd.read_csv(m["truth"]["expression_terms"], sep="\t")
        terms = terms[terms["cell_type"] == cell].set_index("gene_id")
        pos = crispr["Regulated"].to_numpy()
        share = tested["effect"][pos].to_numpy() / (terms["promoter"] + terms["enhancers"]).loc[
            tested["gene_id"][pos]].to_numpy()
        assert crispr["EffectSize"][pos].to_numpy() == pytest.approx(-share, rel=1e-4)
        powers = crispr[[f"PowerAtEffectSize{x}" for x in (10, 15, 20, 25, 50)]].to_numpy()
        assert (np.diff(powers, axis=1) >= 0).all() and 0.3 < (powers[:, 1] >= 0.8).mean() < 0.9


def test_motifs_are_planted_in_the_genome(tiny):
    """Inactive and R_ag elements carry real JASPAR motif instances; decoys no activators."""
    import pyfaidx

    m = load_manifest(tiny)
    fa = pyfaidx.Fasta(m["genome"]["fasta"])
    el = _elements(m)
    activators = {n for n in synth_layout.MOTIF_IDS} - {"CTCF", "SP1", "NFYA", "TBP"}
    rng = np.random.default_rng(0)
    planted, random = [], []
    for r in el.itertuples():
        names = [] if r.motifs == "." else r.motifs.split(";")
        if r.kind in ("enhancer", "poised"):
            assert names and all(n.split("@")[0] in activators for n in names), r.name
        if r.kind == "decoy":
            assert all(n.split("@")[0] == "CTCF" for n in names), r.name
        for inst in names:
            name, rest = inst.split("@")
            off, strand = int(rest[:-1]), rest[-1]
            probs = synth_layout._load_motif(synth_layout.MOTIF_IDS[name])
            w = probs.shape[1]
            s = r.start + off
            planted.append(_log_odds(fa[r.chrom][s:s + w].seq, probs, strand))
            pos = int(rng.integers(5000, 15000))
            random.append(_log_odds(fa[r.chrom][pos:pos + w].seq, probs, strand))
    planted, random = np.array(planted), np.array(random)
    assert len(planted) > 50
    assert np.mean(planted > 0) > 0.95 and np.mean(random > 0) < 0.3
    assert planted.mean() > random.mean() + 8  # bits
    # cell-type programs: R_ag elements carry their cell type's activators
    for i, cell in enumerate(CELLS):
        own = {n for n, _ in synth_layout.cell_motifs(i)} | {synth_layout.SHARED_ACTIVATOR[0]}
        r = _truth(m["truth"]["cells"][cell])
        r = r[r["class"] == "R_ag"]
        for motifs in r.motifs:
            assert set(motifs.split(",")) & own


def test_cell_types_differ(tiny):
    import pyBigWig

    m = load_manifest(tiny)
    ra = _truth(m["truth"]["cells"]["synthA"])
    rb = _truth(m["truth"]["cells"]["synthB"])
    a = set(ra[ra["class"] == "R_ag"].name)
    b = set(rb[rb["class"] == "R_ag"].name)
    only_a = a - b
    assert only_a and b - a and a & b  # specific to each, and some shared
    bw_a = pyBigWig.open(m["tracks"]["synthA"]["dnase"])
    bw_b = pyBigWig.open(m["tracks"]["synthB"]["dnase"])
    rows = ra[ra.name.isin(only_a)].drop_duplicates("name")
    assert (_mean_signal(bw_a, rows) > 3 * _mean_signal(bw_b, rows) + 1).all()
    expr = pd.read_csv(m["genes"]["expression"], sep="\t")
    assert not np.allclose(expr.synthA, expr.synthB)


def test_expression_is_promoter_plus_causal_elements_only(tiny):
    """expression = scale * (promoter + sum over R_ag of effect) * 10^(half-life + noise)."""
    m = load_manifest(tiny)
    expr = pd.read_csv(m["genes"]["expression"], sep="\t").set_index("gene_id")
    terms = pd.read_csv(m["truth"]["expression_terms"], sep="\t")
    scale = m["params"]["expression_scale"]
    for cell in CELLS:
        t = _truth(m["truth"]["cells"][cell])
        causal = t[t["class"].isin(["promoter", "R_ag"])].groupby("gene_id").effect.sum()
        tt = terms[terms.cell_type == cell].set_index("gene_id").loc[expr.index]
        rebuilt = scale * causal.loc[expr.index] * 10 ** (tt.halflife_log10 + tt.noise_log10)
        np.testing.assert_allclose(expr[cell], rebuilt, rtol=1e-4)
        # decoys are as strong in signal as the causal elements, yet carry no effect
        d, r = t[t["class"] == "decoy"], t[t["class"] == "R_ag"]
        assert d.dnase.median() > 0.7 * r.dnase.median() and (d.effect == 0).all()


def test_silent_genes_have_no_signal_and_no_expression(tiny, tmp_path):
    """silent_fraction switches genes off (as real RNA-seq has them) and changes nothing else."""
    out = tmp_path / "silent"
    generate(out, preset="tiny", seed=0, silent_fraction=0.4, build_genes=False)
    m, base = load_manifest(out), load_manifest(tiny)
    expr = pd.read_csv(m["genes"]["expression"], sep="\t").set_index("gene_id")
    expr0 = pd.read_csv(base["genes"]["expression"], sep="\t").set_index("gene_id")
    assert Path(m["genome"]["fasta"]).read_bytes() == Path(base["genome"]["fasta"]).read_bytes()
    for cell in CELLS:
        off = expr[cell] == 0
        assert 0.1 <= off.mean() <= 0.7 and not (expr0[cell] == 0).any()
        np.testing.assert_array_equal(expr.loc[~off, cell], expr0.loc[~off, cell])
        t = _truth(m["truth"]["cells"][cell])
        own = t[t["class"] == "promoter"].set_index("gene_id")
        assert (own.loc[off[off].index, ["dnase", "h3k27ac", "effect"]] == 0).all().all()
        assert (own.loc[off[~off].index, "dnase"] > 0).all()
        assert not t[t["class"] == "R_ag"].gene_id.isin(off[off].index).any()


def test_causal_truth_predicts_expression_far_better_than_all_peaks(medium):
    """The point of the benchmark: finding R_ag matters; summing every peak does not do it."""
    import pyBigWig

    m = load_manifest(medium)
    expr = pd.read_csv(m["genes"]["expression"], sep="\t").set_index("gene_id")
    scale = m["params"]["expression_scale"]
    for cell in CELLS:
        t = _truth(m["truth"]["cells"][cell])
        y = np.log10(expr[cell] + 1)
        causal = t[t["class"].isin(["promoter", "R_ag"])].groupby("gene_id").effect.sum()
        bw = pyBigWig.open(m["tracks"][cell]["dnase"])
        peaks = t[t["class"].isin(["promoter", "R_ag", "decoy"])].copy()
        peaks["signal"] = _mean_signal(bw, peaks) * (peaks.end - peaks.start)
        all_peaks = peaks.groupby("gene_id").signal.sum().loc[y.index]
        r2_truth = _r2(y, np.log10(scale * causal.loc[y.index] + 1))
        r2_peaks = _r2(y, np.log10(all_peaks))
        assert r2_truth > 0.85, (cell, r2_truth)
        assert r2_peaks < r2_truth - 0.4, (cell, r2_truth, r2_peaks)


def test_hic_loops_mark_causal_pairs_only(tiny):
    import cooler

    m = load_manifest(tiny)
    res = m["hic"]["resolution"]
    for cell in CELLS:
        clr = cooler.Cooler(m["tracks"][cell]["hic"])
        t = _truth(m["truth"]["cells"][cell]).rename(columns={"class": "cls"})
        t = t[t.cls != "promoter"]  # R_ag vs everything else in the window (no loop to it)
        tss = pd.read_csv(m["genes"]["tss"], sep="\t", header=None).set_index(3)[1]
        oe = {"R_ag": [], "other": []}
        mats = {c: clr.matrix(balance=False).fetch(c) for c in m["genome"]["chroms"]}
        for r in t.itertuples():
            mat = mats[r.chrom]
            i, j = (r.start + r.end) // 2 // res, int(tss[r.gene_id]) // res
            k = abs(i - j)
            if k < 2:
                continue
            expected = np.diagonal(mat, k)[5:-5].mean()
            oe["R_ag" if r.cls == "R_ag" else "other"].append(mat[i, j] / expected)
        assert len(oe["R_ag"]) > 5 and len(oe["other"]) > 20
        assert np.mean(oe["R_ag"]) > 1.5 * np.mean(oe["other"])
        assert np.mean(oe["other"]) < 1.5


def test_dnase_track_is_the_coverage_of_the_reads(tiny):
    import pyBigWig

    m = load_manifest(tiny)
    for cell in CELLS:
        reads = pd.read_csv(m["tracks"][cell]["dnase_reads"], sep="\t", header=None,
                            names=["chrom", "start", "end", "name", "score", "strand"])
        assert set(reads.strand) == {"+", "-"} and (reads.end - reads.start == 50).all()
        lam = m["scaling"]["lambda"][cell]["dnase"]
        bw = pyBigWig.open(m["tracks"][cell]["dnase"])
        for chrom, size in m["genome"]["chroms"].items():
            r = reads[reads.chrom == chrom]
            diff = np.zeros(size + 1)
            np.add.at(diff, r.start.to_numpy(), 1)
            np.add.at(diff, r.end.to_numpy(), -1)
            cov = np.cumsum(diff)[:size]
            np.testing.assert_allclose(bw.values(chrom, 0, size, numpy=True) * lam, cov,
                                       atol=1e-4)


def test_reads_are_a_valid_gzip_bed(tiny):
    with gzip.open(tiny / "synthA" / "dnase_reads.bed.gz", "rt") as fh:
        first = fh.readline().rstrip("\n").split("\t")
    assert len(first) == 6 and first[0].startswith("chr") and int(first[2]) > int(first[1])


# ------------------------------------------------------------------------ atomic, CLI, errors
def test_cli_writes_reports_and_refuses_to_overwrite(tmp_path, capsys):
    from seq2exp_plugin.cli import main

    out = tmp_path / "run"
    assert main(["synth", "--out", str(out), "--genes", "12", "--window", "6000", "--seed", "5",
                 "--no-gene-table"]) == 0
    text = capsys.readouterr().out
    assert "wall time" in text and "peak RSS" in text and "12 genes" in text
    m = load_manifest(out)
    assert m["n_genes"] == 12 and m["window"] == 6000 and m["genes"]["table"] is None
    keep = out / "tss.bed"
    before = keep.read_bytes()
    assert main(["synth", "--out", str(out), "--seed", "6", "--no-gene-table"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err
    assert keep.read_bytes() == before  # untouched
    assert main(["synth", "--out", str(out), "--seed", "6", "--force", "--no-gene-table",
                 "--cell-types", "K", "G", "H"]) == 0
    assert keep.read_bytes() != before
    assert load_manifest(out)["cell_types"] == ["K", "G", "H"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left behind


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "write_cooler", boom)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "out", preset="tiny", build_genes=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_refused_before_any_work(tmp_path, capsys):
    from seq2exp_plugin.cli import main

    with pytest.raises(ValueError, match="n_genes"):
        SynthParams.from_preset("tiny", n_genes=3)
    with pytest.raises(ValueError, match="window"):
        SynthParams.from_preset("tiny", window=1000)
    with pytest.raises(ValueError, match="duplicates"):
        SynthParams.from_preset("tiny", cell_types=("a", "a"))
    with pytest.raises(ValueError, match="preset"):
        SynthParams.from_preset("huge")
    with pytest.raises(ValueError, match="seed"):
        SynthParams.from_preset("tiny", seed=-1)
    assert main(["synth", "--out", str(tmp_path / "x"), "--genes", "2"]) == 2
    assert "n_genes" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "no" / "such" / "dir")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path / "y"), "--preset", "huge"])
    assert list(tmp_path.iterdir()) == []
