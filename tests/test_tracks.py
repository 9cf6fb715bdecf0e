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
