"""Mask scores -> elements BED and bigWig (seq2exp_plugin.discover.regions)."""

from __future__ import annotations

import numpy as np
import pytest

from seq2exp_plugin.discover.regions import (
    ElementWriter,
    MaskWriter,
    RegionWriter,
    WindowRecord,
    call_elements,
    elements_to_genomic,
    read_chrom_sizes,
    read_elements_bed,
    top_fraction_threshold,
    write_mask_bigwig,
)
from seq2exp_plugin.data.windows import window_to_genomic


# ------------------------------------------------------------------------------- elements
def test_call_elements_threshold_gap_and_length():
    s = np.zeros(40)
    s[2:5] = 0.9      # 3 bp
    s[7:10] = 0.6     # 3 bp, gap of 2 to the first
    s[20:21] = 0.99   # 1 bp alone
    s[30:36] = 0.5    # exactly at the threshold: kept
    s[33] = np.nan    # NaN never kept
    got = call_elements(s, threshold=0.5)
    assert [(e.start, e.end) for e in got] == [(2, 5), (7, 10), (20, 21), (30, 33), (34, 36)]
    assert got[0].score == pytest.approx(0.9) and got[1].score == pytest.approx(0.6)
    # gaps of <= 2 bp merged (mean over the merged span, gap included)
    got = call_elements(s, threshold=0.5, min_gap=2)
    assert [(e.start, e.end) for e in got] == [(2, 10), (20, 21), (30, 36)]
    assert got[0].score == pytest.approx((3 * 0.9 + 3 * 0.6) / 8)
    # gap of 1 does not merge a gap of 2
    assert [(e.start, e.end) for e in call_elements(s, 0.5, min_gap=1)][:2] == [(2, 5), (7, 10)]
    # short elements dropped after merging
    got = call_elements(s, threshold=0.5, min_gap=2, min_length=4)
    assert [(e.start, e.end) for e in got] == [(2, 10), (30, 36)]
    assert call_elements(np.zeros(10), 0.5) == []
    # elements are plain tuples (start, end, score)
    start, end, score = call_elements(s, 0.95)[0]
    assert (start, end) == (20, 21) and score == pytest.approx(0.99)


def test_call_elements_top_fraction():
    s = np.linspace(0, 1, 100)  # top 10% = indices 90..99
    got = call_elements(s, threshold=None, top_fraction=0.1)
    assert [(e.start, e.end) for e in got] == [(90, 100)]
    assert top_fraction_threshold(s, 0.1) == pytest.approx(s[90])
    # top_fraction overrides the threshold
    assert call_elements(s, threshold=0.0, top_fraction=0.05)[0].start == 95
    with pytest.raises(ValueError):
        call_elements(s, top_fraction=0.0)
    with pytest.raises(ValueError):
        call_elements(s, threshold=None)
    with pytest.raises(ValueError):
        call_elements(s.reshape(10, 10))


def test_window_to_genomic_forward_and_reverse():
    # forward: index i is start + i
    assert window_to_genomic(2, 5, 100, 120) == (102, 105)
    # reversed: index i is end - 1 - i, so [2, 5) covers genomic 117, 116, 115 -> [115, 118)
    assert window_to_genomic(2, 5, 100, 120, reverse=True) == (115, 118)
    with pytest.raises(ValueError):
        window_to_genomic(15, 25, 100, 120)
    rec = WindowRecord("G", "chr1", 100, 120, "-", reverse=True)
    assert rec.to_genomic(0, 20) == (100, 120)
    vals = np.arange(20)
    g = rec.genomic(vals)
    # element [2, 5) in window order holds values 2..4, which are genomic positions 117..115
    gs, ge = rec.to_genomic(2, 5)
    np.testing.assert_array_equal(np.sort(g[gs - 100: ge - 100]), [2, 3, 4])
    with pytest.raises(ValueError, match="20 bp"):
        rec.genomic(np.zeros(19))
    # conversion clips to the chromosome and sorts
    rec2 = WindowRecord("G", "chr1", -5, 15, "-", reverse=True)
    els = call_elements(np.r_[np.ones(3), np.zeros(14), np.ones(3)], 0.5)
    # window [0, 3) -> genomic [12, 15), cut at the chromosome end 14; [17, 20) -> [-5, -2): gone
    assert elements_to_genomic(els, rec2, chrom_size=14) == [(12, 14, 1.0)]


def test_reverse_window_from_the_dataset_maps_back(tmp_path):
    """An element called on a reverse-complemented window of WindowExtractor lands on the genomic
    interval where the signal really is."""
    import pyBigWig

    from seq2exp_plugin.data.windows import WindowExtractor

    n = 5000
    rng = np.random.default_rng(0)
    (tmp_path / "g.fa").write_text(">chr1\n" + "".join(rng.choice(list("ACGT"), n)) + "\n")
    sig = np.zeros(n)
    sig[1200:1300] = 5.0
    sig[3100:3140] = 7.0
    bw = pyBigWig.open(str(tmp_path / "s.bw"), "w")
    bw.addHeader([("chr1", n)])
    bw.addEntries("chr1", 0, values=sig.tolist(), span=1, step=1)
    bw.close()
    ex = WindowExtractor(tmp_path / "g.fa", {"s": tmp_path / "s.bw"}, window=3000, rc_minus_strand=True)
    for strand in ("+", "-"):
        w = ex("chr1", 2000, strand)
        item = {"gene_id": "G", "chrom": "chr1", "start": w["start"], "end": w["end"], "strand": strand, "tss": 2000}
        rec = WindowRecord.from_item(item, rc_minus_strand=True)
        assert rec.reverse == (strand == "-")
        els = call_elements(w["signals"][0], threshold=1.0)
        assert elements_to_genomic(els, rec) == [(1200, 1300, 5.0), (3100, 3140, 7.0)]


# ---------------------------------------------------------------------------------- sizes
def test_read_chrom_sizes(tmp_path):
    (tmp_path / "g.fa").write_text(">chrA\nACGTACGTAC\n>chrB\nACG\n")
    (tmp_path / "g.sizes").write_text("chrA\t10\nchrB\t3\n")
    (tmp_path / "g.fa.fai").write_text("chrA\t10\t6\t10\t11\nchrB\t3\t23\t3\t4\n")
    assert read_chrom_sizes(tmp_path / "g.sizes") == {"chrA": 10, "chrB": 3}
    assert read_chrom_sizes(tmp_path / "g.fa.fai") == {"chrA": 10, "chrB": 3}
    assert read_chrom_sizes(tmp_path / "g.fa") == {"chrA": 10, "chrB": 3}
    (tmp_path / "bad.sizes").write_text("chrA\tten\n")
    with pytest.raises(ValueError, match="line 1"):
        read_chrom_sizes(tmp_path / "bad.sizes")
    with pytest.raises(FileNotFoundError):
        read_chrom_sizes(tmp_path / "missing.sizes")


# ---------------------------------------------------------------------------------- bigWig
def _read_bw(path, chrom, n):
    import pyBigWig

    bw = pyBigWig.open(str(path))
    try:
        return np.asarray(bw.values(chrom, 0, n, numpy=True), dtype=np.float64), bw.chroms()
    finally:
        bw.close()


def test_mask_bigwig_max_combines_overlapping_windows(tmp_path):
    sizes = {"chr1": 300, "chr2": 100}
    rng = np.random.default_rng(1)
    recs = [
        (WindowRecord("A", "chr1", 10, 110, "+"), rng.random(100).astype(np.float32)),
        (WindowRecord("B", "chr1", 60, 160, "-", reverse=True), rng.random(100).astype(np.float32)),
        (WindowRecord("C", "1", 250, 350, "+"), rng.random(100).astype(np.float32)),   # alias, runs off the end
        (WindowRecord("D", "chr2", -20, 80, "-", reverse=True), rng.random(100).astype(np.float32)),  # off the start
    ]
    path = write_mask_bigwig(recs, sizes, tmp_path / "mask.bw")
    # independent expectation: genomic arrays, NaN = no window, max where windows overlap
    want = {c: np.full(n, np.nan) for c, n in sizes.items()}
    for rec, sc in recs:
        chrom = "chr1" if rec.chrom == "1" else rec.chrom
        g = sc[::-1] if rec.reverse else sc
        for i, v in enumerate(g):
            p = rec.start + i
            if 0 <= p < sizes[chrom]:
                want[chrom][p] = v if np.isnan(want[chrom][p]) else max(want[chrom][p], v)
    for chrom, n in sizes.items():
        got, chroms = _read_bw(path, chrom, n)
        assert chroms == sizes
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want[chrom]))
        np.testing.assert_allclose(got, want[chrom], rtol=0, atol=1e-7, equal_nan=True)
    # the overlap really took the max of two different windows
    ov = slice(60, 110)
    a = recs[0][1][50:100]
    b = recs[1][1][::-1][0:50]
    got, _ = _read_bw(path, "chr1", 300)
    np.testing.assert_allclose(got[ov], np.maximum(a, b), atol=1e-7)
    assert not np.allclose(a, b)


def test_mask_bigwig_rounding_and_zero_scores(tmp_path):
    sizes = {"chr1": 50}
    sc = np.r_[np.zeros(10), np.full(10, 0.123456), np.full(5, 0.5)].astype(np.float32)
    path = write_mask_bigwig([(WindowRecord("A", "chr1", 5, 30), sc)], sizes, tmp_path / "r.bw", decimals=3)
    got, _ = _read_bw(path, "chr1", 50)
    assert np.isnan(got[:5]).all() and np.isnan(got[30:]).all()
    np.testing.assert_allclose(got[5:15], 0.0)  # a real 0 score is data, not "no data"
    np.testing.assert_allclose(got[15:25], 0.123, atol=1e-6)
    import pyBigWig

    bw = pyBigWig.open(str(path))
    assert len(bw.intervals("chr1")) == 3  # runs of equal values stored once
    bw.close()


def test_mask_bigwig_mixed_entry_kinds(tmp_path, monkeypatch):
    """Compressible chunks are stored as runs, per-bp ones as fixed steps; both read back exactly."""
    monkeypatch.setattr(MaskWriter, "_CHUNK", 100)
    sc = np.r_[np.full(150, 0.25), np.random.default_rng(0).random(150)].astype(np.float32)
    path = write_mask_bigwig([(WindowRecord("g", "chr1", 50, 350), sc)], {"chr1": 1000}, tmp_path / "m.bw")
    got, _ = _read_bw(path, "chr1", 1000)
    np.testing.assert_array_equal(got[50:350], sc.astype(np.float64))
    assert np.isnan(got[:50]).all() and np.isnan(got[350:]).all()


def test_mask_writer_atomic(tmp_path):
    sizes = {"chr1": 100}
    target = tmp_path / "m.bw"
    with pytest.raises(RuntimeError):
        with MaskWriter(target, sizes) as w:
            w.add(WindowRecord("A", "chr1", 0, 10), np.ones(10))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    w = MaskWriter(target, sizes)
    with pytest.raises(ValueError, match="NaN"):
        w.add(WindowRecord("A", "chr1", 0, 10), np.full(10, np.nan))
    with pytest.raises(KeyError, match="chr9"):
        w.add(WindowRecord("A", "chr9", 0, 10), np.ones(10))
    with pytest.raises(ValueError, match="9 scores"):
        w.add(WindowRecord("A", "chr1", 0, 10), np.ones(9))
    w.abort()
    assert list(tmp_path.iterdir()) == []
    write_mask_bigwig([], sizes, target)
    assert target.is_file()
    with pytest.raises(FileExistsError):
        MaskWriter(target, sizes)
    assert [p.name for p in tmp_path.iterdir()] == ["m.bw"]


# ------------------------------------------------------------------------------------ BED
def test_element_writer_bed(tmp_path):
    sizes = {"chr1": 1000, "chr10": 500, "chr2": 800}
    path = tmp_path / "el.bed"
    s1 = np.zeros(100)
    s1[10:20] = 0.8
    s1[50:60] = 1.0
    s2 = np.zeros(100)
    s2[5:15] = 0.6
    with ElementWriter(path, threshold=0.5, sizes=sizes) as w:  # windows in `sort -k1,1` order
        rows_a = w.add(WindowRecord("GA", "chr1", 200, 300, "+", tss=250), s1)
        w.add(WindowRecord("GC", "chr10", 0, 100, "+"), s1)
        rows_b = w.add(WindowRecord("GB", "chr2", 0, 100, "-", reverse=True, tss=50), s2)
        with pytest.raises(ValueError, match="'GD'.*sorted by chromosome and start"):
            w.add(WindowRecord("GD", "chr10", 50, 150, "+"), s1)
    assert [r[3] for r in rows_a] == ["GA:1", "GA:2"]
    df = read_elements_bed(path)
    assert path.read_text().startswith("#chrom\tstart\tend\tname\tscore\tstrand")
    # sorted like `sort -k1,1 -k2,2n`: chr1 < chr10 < chr2
    assert df["chrom"].tolist() == ["chr1", "chr1", "chr10", "chr10", "chr2"]
    a = df[df["gene_id"] == "GA"]
    assert a[["start", "end"]].values.tolist() == [[210, 220], [250, 260]]
    assert a["score"].tolist() == [800, 1000] and a["mean_score"].tolist() == [0.8, 1.0]
    assert a["distance"].tolist() == [215 - 250, 255 - 250]
    b = df[df["gene_id"] == "GB"].iloc[0]
    # reversed window [5, 15) -> genomic [100 - 15, 100 - 5)
    assert (b["start"], b["end"], b["strand"], b["name"]) == (85, 95, "-", "GB:1")
    assert rows_b[0][1:3] == (85, 95)
    assert not list(tmp_path.glob(".*"))
    with pytest.raises(FileExistsError):
        ElementWriter(path)


def test_region_writer_both_files(tmp_path):
    sizes = tmp_path / "g.sizes"
    sizes.write_text("chr1\t1000\n")
    sc = np.zeros(200)
    sc[20:40] = 0.9
    with RegionWriter(sizes, bigwig=tmp_path / "a.bw", bed=tmp_path / "a.bed", threshold=0.5) as w:
        rows = w.add(WindowRecord("G", "chr1", 100, 300), sc)
    assert rows[0][1:3] == (120, 140)
    got, _ = _read_bw(tmp_path / "a.bw", "chr1", 1000)
    np.testing.assert_allclose(got[100:300], sc, atol=1e-7)
    assert len(read_elements_bed(tmp_path / "a.bed")) == 1
    with pytest.raises(ZeroDivisionError):
        with RegionWriter(sizes, bigwig=tmp_path / "b.bw", bed=tmp_path / "b.bed") as w:
            w.add(WindowRecord("G", "chr1", 100, 300), sc)
            1 / 0
    assert not (tmp_path / "b.bw").exists() and not (tmp_path / "b.bed").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bed", "a.bw", "g.sizes"]
