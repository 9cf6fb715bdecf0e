"""bigWig tracks: per-bp values, NaN/gaps/off-chromosome -> 0, aliases, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from seq2exp_plugin.data.tracks import BigWigTrack


def padded(arr: np.ndarray, start: int, end: int) -> np.ndarray:
    out = np.zeros(end - start, dtype=np.float32)
    s, e = max(start, 0), min(end, len(arr))
    if e > s:
        out[s - start : e - start] = arr[s:e]
    return out


def test_values_every_position(data_world):
    t = BigWigTrack(data_world.dnase_bw)
    assert t.chrom_sizes == data_world.track_sizes
    for chrom, s, e in [("chr1", 0, 30_000), ("chr1", 123, 4567), ("chr2", 400, 700), ("chr2", 4900, 6100)]:
        v = t.values(chrom, s, e)
        assert v.shape == (e - s,) and v.dtype == np.float32
        np.testing.assert_allclose(v, data_world.dnase[chrom][s:e], rtol=1e-6)


def test_nan_and_gaps_are_zero(data_world):
    t = BigWigTrack(data_world.dnase_bw)
    v = t.values("chr2", 450, 650)
    assert not np.isnan(v).any()
    assert (v[50:150] == 0).all()  # stored NaN
    assert (v[:50] > 0).all() and (v[150:] > 0).all()
    assert (t.values("chr2", 5000, 6000) == 0).all()  # no entries
    assert t.values("chr2", 4999, 5000)[0] > 0


def test_padding_and_aliases(data_world):
    t = BigWigTrack(data_world.h3k27ac_bw)
    ref = data_world.h3k27ac["chr1"]
    n = len(ref)
    np.testing.assert_allclose(t.values("1", -20, 30), padded(ref, -20, 30), rtol=1e-6)
    np.testing.assert_allclose(t.values("chr1", n - 10, n + 15), padded(ref, n - 10, n + 15), rtol=1e-6)
    assert (t.values("chr1", n + 5, n + 50) == 0).all()
    np.testing.assert_allclose(t.mean("chr1", -500, 500), padded(ref, -500, 500).mean(), rtol=1e-5)


def test_missing_chrom_and_file(data_world, tmp_path):
    t = BigWigTrack(data_world.dnase_bw)
    with pytest.raises(KeyError, match=r"chrM.*dnase\.bw"):
        t.values("chrM", 0, 10)
    t2 = BigWigTrack(data_world.dnase_bw, allow_missing_chroms=True)
    v = t2.values("MT", 0, 10)
    assert v.shape == (10,) and (v == 0).all()
    with pytest.raises(KeyError, match="chr9"):
        t.values("chr9", 0, 10)
    with pytest.raises(FileNotFoundError, match="absent.bw"):
        BigWigTrack(tmp_path / "absent.bw")
    bogus = tmp_path / "bogus.bw"
    bogus.write_text("not a bigwig\n")
    with pytest.raises(ValueError, match="bogus.bw"):
        BigWigTrack(bogus)


def test_pickle_reopen(data_world):
    t = BigWigTrack(data_world.dnase_bw)
    a = t.values("chr1", 100, 200)
    t2 = pickle.loads(pickle.dumps(t))
    assert t2._opened is None
    np.testing.assert_array_equal(t2.values("chr1", 100, 200), a)


def _write_bigwig(path, tracks: dict[str, np.ndarray], size: int) -> None:
    import pyBigWig

    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([(c, size) for c in tracks])
    for chrom, values in tracks.items():
        bw.addEntries(chrom, 0, values=values.astype(np.float64), span=1, step=1)
    bw.close()


def test_background_counts_nan_as_no_data_on_every_chromosome(tmp_path):
    """NaN on part of a chromosome or on all of one: the background is the mean over the bp of
    the chromosomes holding data, the finite values summed (uncovered bp and NaN count 0)."""
    size = 20_000
    a = np.full(12_000, 2.0)
    b = np.full(15_000, 3.0)
    b[100:700] = np.nan
    c = np.full(500, np.nan)  # a chromosome of NaN only: no data
    _write_bigwig(tmp_path / "nan.bw", {"chr1": a, "chr2": b, "chr3": c}, size)
    expected = (np.nansum(a) + np.nansum(b)) / (2 * size)  # chr3 holds no data
    track = BigWigTrack(tmp_path / "nan.bw")
    assert track.background() == pytest.approx(expected, rel=1e-6)
    assert (track.values("chr2", 90, 110) == np.r_[np.full(10, 3.0), np.zeros(10)]).all()


def test_an_infinite_value_is_refused_with_the_file_and_position(tmp_path, monkeypatch):
    """pyBigWig cannot write inf, so the handle of a good file is replaced by one that reads it."""
    _write_bigwig(tmp_path / "inf.bw", {"chr1": np.ones(1000)}, 1000)
    track = BigWigTrack(tmp_path / "inf.bw")

    class InfiniteAt37:
        def values(self, chrom, start, end, numpy=True):
            v = np.ones(end - start)
            v[37 - start] = np.inf
            return v

        def stats(self, chrom, start, end, type):
            return [1.0 if type == "coverage" else np.inf]

        def intervals(self, chrom):
            return ((0, 37, 1.0), (37, 38, np.inf), (38, 1000, 1.0))

    monkeypatch.setattr(track, "_handle", lambda: InfiniteAt37())
    with pytest.raises(ValueError, match=r"inf.bw: infinite value at chr1:37 \(0-based\)"):
        track.values("chr1", 10, 50)
    with pytest.raises(ValueError, match=r"inf.bw: infinite value at chr1:37 \(0-based\)"):
        track.background()
