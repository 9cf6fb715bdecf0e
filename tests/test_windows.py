"""WindowDataset / WindowExtractor: contents checked against independent computations, reverse
complement, validation errors, DataLoader workers, and the real hg38 chr2 genes."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from seq2exp_plugin.data.genes import build_gene_table, gene_features, read_gene_table
from seq2exp_plugin.data.windows import WindowDataset, WindowExtractor, loader_workers, window_bounds

L = 4_000
COMP = {"A": "T", "C": "G", "G": "C", "T": "A"}


def naive_one_hot(s: str) -> np.ndarray:
    out = np.zeros((4, len(s)), dtype=np.float32)
    for i, ch in enumerate(s.upper()):
        if ch in "ACGT":
            out["ACGT".index(ch), i] = 1.0
    return out


def padded_seq(seq: str, start: int, end: int) -> str:
    return "".join(seq[p] if 0 <= p < len(seq) else "N" for p in range(start, end))


def revcomp(s: str) -> str:
    return "".join(COMP.get(c, "N") for c in reversed(s.upper()))


def padded(arr, start, end):
    out = np.zeros(end - start, dtype=np.float32)
    s, e = max(start, 0), min(end, len(arr))
    if e > s:
        out[s - start : e - start] = arr[s:e]
    return out


def hic_ref(world, chrom, tss, start, end):
    row = world.mats[chrom][tss // world.res]
    n = world.track_sizes[chrom]
    out = np.zeros(end - start)
    for k, p in enumerate(range(start, end)):
        if 0 <= p < n:
            out[k] = np.log10(1 + row[p // world.res])
    return out


def blacklist_ref(chrom, start, end):
    ivs = {"chr1": [(3000, 3200)], "chr2": [(100, 150)]}[chrom]
    pos = np.arange(start, end)
    m = np.zeros(end - start, bool)
    for s, e in ivs:
        m |= (pos >= s) & (pos < e)
    return m


def make_ds(world, **kw):
    signals = {"h3k27ac": world.h3k27ac_bw, "dnase": world.dnase_bw, "hic": world.cool}
    kw.setdefault("hic_options", {"balance": False})
    return WindowDataset(world.genes, world.fasta_gz, signals, "K562", window=L, blacklist=world.blacklist, **kw)


def test_items_match_independent_computation(data_world):
    W = data_world
    ds = make_ds(W)
    assert len(ds) == 5 and ds.signal_names == ("h3k27ac", "dnase", "hic")
    table = read_gene_table(W.genes)
    feats = gene_features(table, "K562")
    for i in range(len(ds)):
        it = ds[i]
        g = it["gene_id"]
        row = table.obs.loc[g]
        chrom = "chr" + row["chrom"] if not row["chrom"].startswith("chr") else row["chrom"]
        tss = int(row["tss"])
        s, e = tss - L // 2, tss - L // 2 + L
        assert (it["start"], it["end"], it["tss"], it["strand"], it["chrom"]) == (s, e, tss, row["strand"], row["chrom"])
        assert it["tss_index"] == L // 2
        assert it["seq"].dtype == torch.float32 and it["seq"].shape == (4, L)
        np.testing.assert_array_equal(it["seq"].numpy(), naive_one_hot(padded_seq(W.seqs[chrom], s, e)))
        assert it["signals"].shape == (3, L) and it["signals"].dtype == torch.float32
        np.testing.assert_allclose(it["signals"][0].numpy(), padded(W.h3k27ac[chrom], s, e), rtol=1e-6)
        np.testing.assert_allclose(it["signals"][1].numpy(), padded(W.dnase[chrom], s, e), rtol=1e-6)
        np.testing.assert_allclose(it["signals"][2].numpy(), hic_ref(W, chrom, tss, s, e), rtol=1e-6)
        np.testing.assert_array_equal(it["blacklist"].numpy(), blacklist_ref(chrom, s, e))
        assert it["blacklist"].dtype == torch.bool
        np.testing.assert_array_equal(it["features"].numpy(), feats[list(table.obs_names).index(g)])
        x = table.X[list(table.obs_names).index(g), 0]
        assert (np.isnan(x) and torch.isnan(it["target"])) or it["target"].item() == pytest.approx(x)
    # G3's window starts before the chromosome: N and zero signal there
    it = ds[2]
    assert it["start"] == 700 - L // 2 < 0
    off = -it["start"]
    assert it["seq"][:, :off].sum() == 0 and it["signals"][:, :off].abs().sum() == 0
    assert (it["seq"][:, off:].sum(0) == 1).sum() > 0.9 * (L - off)


def test_reverse_complement_minus_strand(data_world):
    W = data_world
    fwd = make_ds(W)
    rc = make_ds(W, rc_minus_strand=True)
    for i in range(len(fwd)):
        a, b = fwd.get_numpy(i), rc.get_numpy(i)
        assert (a["start"], a["end"]) == (b["start"], b["end"])  # same genomic window
        chrom = "chr" + a["chrom"] if not a["chrom"].startswith("chr") else a["chrom"]
        if a["strand"] == "-":
            ref = revcomp(padded_seq(W.seqs[chrom], a["start"], a["end"]))
            np.testing.assert_array_equal(b["seq"], naive_one_hot(ref))
            np.testing.assert_array_equal(b["signals"], a["signals"][:, ::-1])
            np.testing.assert_array_equal(b["blacklist"], a["blacklist"][::-1])
            assert b["tss_index"] == L - 1 - L // 2
            # the TSS base: index tss_index of the RC window is the complement of the genomic TSS base
            tss_base = W.seqs[chrom][a["tss"]].upper()
            assert b["seq"][:, b["tss_index"]].argmax() == "ACGT".index(COMP[tss_base])
        else:
            np.testing.assert_array_equal(b["seq"], a["seq"])
            np.testing.assert_array_equal(b["signals"], a["signals"])
            assert b["tss_index"] == L // 2


def test_selection(data_world):
    W = data_world
    ds = make_ds(W, split="valid")
    assert list(ds.gene_ids) == ["G4", "G5"]
    ds = make_ds(W, gene_ids=["G5", "G1", "G4"], split=["valid"])
    assert list(ds.gene_ids) == ["G5", "G4"]
    ds = make_ds(W, require_target=True)
    assert "G5" not in list(ds.gene_ids) and len(ds) == 4
    with pytest.raises(KeyError, match="'G99'"):
        make_ds(W, gene_ids=["G1", "G99"])
    with pytest.raises(ValueError, match="no genes"):
        make_ds(W, split="test")
    with pytest.raises(IndexError):
        ds.get_numpy(10)


def _table_with(world, gene, **changes):
    a = read_gene_table(world.genes)
    for k, v in changes.items():
        col = a.obs[k].to_numpy().copy()
        col[list(a.obs_names).index(gene)] = v
        a.obs[k] = col
    return a


def test_validation_errors(data_world, tmp_path):
    W = data_world
    sig = {"h3k27ac": W.h3k27ac_bw, "dnase": W.dnase_bw}
    with pytest.raises(KeyError, match="HeLa"):
        WindowDataset(W.genes, W.fasta, sig, "HeLa", window=L)
    with pytest.raises(FileNotFoundError, match="absent.h5ad"):
        WindowDataset(tmp_path / "absent.h5ad", W.fasta, sig, "K562", window=L)
    with pytest.raises(FileNotFoundError, match="absent.fa"):
        WindowDataset(W.genes, tmp_path / "absent.fa", sig, "K562", window=L)
    with pytest.raises(FileNotFoundError, match="absent.bw"):
        WindowDataset(W.genes, W.fasta, {"dnase": tmp_path / "absent.bw"}, "K562", window=L)
    with pytest.raises(ValueError, match="unknown type"):
        WindowDataset(W.genes, W.fasta, {"dnase": W.expression}, "K562", window=L)
    bad = _table_with(W, "G2", chrom="chr9")
    with pytest.raises(KeyError, match=r"'G2'.*chr9.*genome\.fa"):
        WindowDataset(bad, W.fasta, sig, "K562", window=L)
    far = _table_with(W, "G1", tss=30_000)
    with pytest.raises(ValueError, match=r"'G1'.*TSS 30000.*outside chromosome '1'"):
        WindowDataset(far, W.fasta, sig, "K562", window=L)
    mt = _table_with(W, "G3", chrom="MT", tss=500)
    with pytest.raises(KeyError, match=r"'G3'.*signal 'h3k27ac'.*h3k27ac\.bw"):
        WindowDataset(mt, W.fasta, sig, "K562", window=L)
    ds = WindowDataset(mt, W.fasta, {**sig, "hic": W.cool}, "K562", window=L, allow_missing_chroms=True,
                       hic_options={"balance": False}, gene_ids=["G3"])
    it = ds[0]
    assert it["signals"].abs().sum() == 0  # zeros on a chromosome the tracks lack
    np.testing.assert_array_equal(it["seq"].numpy(), naive_one_hot(padded_seq(W.seqs["chrM"], 500 - L // 2, 500 + L // 2)))


def test_dataloader_two_workers(data_world):
    W = data_world
    ds = make_ds(W, rc_minus_strand=True)
    dl = torch.utils.data.DataLoader(ds, batch_size=2, shuffle=False, **loader_workers(2))  # as train/predict
    batches = list(dl)
    assert [len(b["gene_id"]) for b in batches] == [2, 2, 1]
    b0 = batches[0]
    assert b0["seq"].shape == (2, 4, L) and b0["signals"].shape == (2, 3, L) and b0["features"].shape == (2, 9)
    assert b0["blacklist"].dtype == torch.bool and b0["target"].shape == (2,)
    for bi, b in enumerate(batches):
        for j, g in enumerate(b["gene_id"]):
            ref = ds[bi * 2 + j]
            assert ref["gene_id"] == g
            torch.testing.assert_close(b["seq"][j], ref["seq"])
            torch.testing.assert_close(b["signals"][j], ref["signals"])
            assert int(b["start"][j]) == ref["start"]


def test_extractor_is_framework_free(data_world):
    ex = WindowExtractor(data_world.fasta, {"dnase": data_world.dnase_bw}, window=100)
    w = ex("chr1", 50, "+")
    assert isinstance(w["seq"], np.ndarray) and w["seq"].shape == (4, 100)
    assert (w["start"], w["end"]) == window_bounds(50, 100) == (0, 100)
    assert window_bounds(10, 5) == (8, 13)  # odd L: TSS at index 2


# ---- real data: the 7 chr2 genes of the Xpresso TSS BED inside the hg38 chr2 slice --------------
def _read_chr2(path):
    with gzip.open(path, "rt") as fh:
        return "".join(line.strip() for line in fh if not line.startswith(">"))


@pytest.fixture(scope="module")
def real_world(real_paths, tmp_path_factory, seq2exp_cache):
    import pyBigWig

    root = tmp_path_factory.mktemp("real_windows")
    bed = pd.read_csv(real_paths.bed, sep="\t", header=None, names=["chrom", "start", "end", "gene_id", "score", "strand"],
                      dtype={"chrom": str})
    tss = bed["start"] + 10_000
    inside = bed[(bed["chrom"] == "2") & (tss - 100_000 >= 0) & (tss + 100_000 <= real_paths.chr2_length)]
    sub = pd.concat([inside, pd.DataFrame([{"chrom": "2", "start": 40_000, "end": 60_000, "gene_id": "NBLOCK",
                                            "score": 0, "strand": "+"}])], ignore_index=True)
    sub.to_csv(root / "tss.bed", sep="\t", header=False, index=False)
    # synthetic DNase-like track over the real chr2 slice (1 kb steps)
    n = real_paths.chr2_length
    rng = np.random.default_rng(7)
    starts = np.arange(0, n, 1000)
    vals = rng.gamma(1.0, 1.0, len(starts))
    bw = pyBigWig.open(str(root / "dnase.bw"), "w")
    bw.addHeader([("chr2", n)])
    bw.addEntries(["chr2"] * len(starts), starts.tolist(), ends=np.minimum(starts + 1000, n).tolist(), values=vals.tolist())
    bw.close()
    per_bp = np.repeat(vals, 1000)[:n].astype(np.float32)
    expr = pd.DataFrame({"gene_id": sub["gene_id"], "K562": np.arange(len(sub), dtype=float)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_gene_table(root / "tss.bed", expr, {"K562": {"dnase": root / "dnase.bw", "h3k27ac": root / "dnase.bw"}},
                         genome=real_paths.fasta, out=root / "genes.h5ad")
    return dict(root=root, inside=inside, chr2=_read_chr2(real_paths.fasta), dnase=per_bp)


def test_real_chr2_windows(real_paths, real_world):
    inside = real_world["inside"]
    assert len(inside) == 7 and set(inside["strand"]) == {"+", "-"}
    Lr = 200_000
    ds = WindowDataset(real_world["root"] / "genes.h5ad", real_paths.fasta,
                       {"dnase": real_world["root"] / "dnase.bw", "hic": real_paths.cool}, "K562", window=Lr,
                       gene_ids=list(inside["gene_id"]), rc_minus_strand=True, hic_options={"balance": False})
    chr2 = real_world["chr2"]
    for i in range(len(ds)):
        it = ds.get_numpy(i)
        assert it["chrom"] == "2"  # BED spelling kept; FASTA "chr2" resolved
        s, e = it["start"], it["end"]
        assert 0 <= s and e <= real_paths.chr2_length and e - s == Lr
        ref = chr2[s:e]
        if it["strand"] == "-":
            ref = revcomp(ref)
            np.testing.assert_array_equal(it["signals"][0], real_world["dnase"][s:e][::-1])
        else:
            np.testing.assert_array_equal(it["signals"][0], real_world["dnase"][s:e])
        # vectorised independent encoding of the reference string
        codes = np.frombuffer(ref.upper().encode(), dtype=np.uint8)
        expect = np.stack([(codes == ord(b)).astype(np.float32) for b in "ACGT"])
        np.testing.assert_array_equal(it["seq"], expect)
        # Hi-C: hg19 2 Mb bins; the 200 kb window sits in at most 2 bins, the TSS bin contact is its self-contact
        assert it["signals"].shape == (2, Lr) and (it["signals"][1] > 0).all()


def test_real_chr2_n_block(real_paths, real_world):
    ds = WindowDataset(real_world["root"] / "genes.h5ad", real_paths.fasta, {}, "K562", window=200_000,
                       gene_ids=["NBLOCK"])
    it = ds[0]
    assert (it["start"], it["tss"]) == (-50_000, 50_000)
    col = it["seq"].sum(0)
    assert col[: 50_000 + 10_000].sum() == 0  # off the chromosome, then hg38's 10 kb N block
    assert (col[60_000:] == 1).all()
    assert it["signals"].shape == (0, 200_000)


def test_peak_mask_follows_the_window_and_the_strand(data_world, tmp_path):
    """The peak-mask baseline's ``mask``: 1 inside the peaks, flipped like the signals."""
    W = data_world
    peaks = tmp_path / "peaks.narrowPeak"
    peaks.write_text("chr1\t3100\t3300\tp1\t500\t.\t5.0\t-1\t3.0\t100\nchr2\t90\t120\tp2\t500\t.\t5.0\t-1\t3.0\t15\n")
    fwd, rc = make_ds(W, peaks=peaks), make_ds(W, peaks=peaks, rc_minus_strand=True)
    assert "mask" not in make_ds(W).get_numpy(0)
    seen_minus, covered = False, 0.0
    for i in range(len(fwd)):
        a, b = fwd.get_numpy(i), rc.get_numpy(i)
        chrom = "chr" + a["chrom"] if not a["chrom"].startswith("chr") else a["chrom"]
        pos = np.arange(a["start"], a["end"])
        ivs = {"chr1": [(3100, 3300)], "chr2": [(90, 120)]}[chrom]
        expected = np.zeros(L, np.float32)
        for s, e in ivs:
            expected[(pos >= s) & (pos < e)] = 1.0
        np.testing.assert_array_equal(a["mask"], expected)
        covered += expected.sum()
        flipped = a["strand"] == "-"
        seen_minus |= flipped
        np.testing.assert_array_equal(b["mask"], expected[::-1] if flipped else expected)
    assert seen_minus and covered > 0 and fwd[0]["mask"].dtype == torch.float32
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\tx\t10\n")
    with pytest.raises(ValueError, match=r"bad.bed, line 1"):
        make_ds(W, peaks=bad)
