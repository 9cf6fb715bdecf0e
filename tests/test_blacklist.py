"""Blacklist BED -> per-bp masks; malformed BED errors name file and line."""

from __future__ import annotations

import numpy as np
import pytest

from seq2exp_plugin.data.blacklist import Blacklist


def test_blacklist_mask(data_world):
    bl = Blacklist(data_world.blacklist)
    m = bl.mask("1", 2900, 3300)  # alias "1" -> "chr1"; overlapping intervals merged
    assert m.dtype == bool and m.shape == (400,)
    expected = np.zeros(400, bool)
    expected[100:300] = True  # [3000, 3200)
    np.testing.assert_array_equal(m, expected)
    m2 = bl.mask("chr2", 120, 200)
    np.testing.assert_array_equal(m2, np.arange(120, 200) < 150)
    assert not bl.mask("chr2", -50, 100).any()
    assert not bl.mask("chrM", 0, 100).any()  # chromosome not mentioned: nothing excluded


def test_blacklist_random_against_naive(tmp_path):
    rng = np.random.default_rng(3)
    ivs = [(int(s), int(s + rng.integers(1, 300))) for s in rng.integers(0, 10_000, 40)]
    (tmp_path / "b.bed").write_text("#header\ntrack name=x\n" + "".join(f"chr5\t{s}\t{e}\n" for s, e in ivs))
    bl = Blacklist(tmp_path / "b.bed")
    naive = np.zeros(12_000, bool)
    for s, e in ivs:
        naive[s:e] = True
    for s, e in [(0, 12_000), (500, 900), (9_000, 11_500)]:
        np.testing.assert_array_equal(bl.mask("5", s, e), naive[s:e])


def test_blacklist_malformed(tmp_path):
    p = tmp_path / "bad.bed"
    p.write_text("chr1\t10\t20\nchr1\tx10\t20\n")
    with pytest.raises(ValueError, match=r"bad\.bed, line 2.*integer"):
        Blacklist(p)
    p.write_text("chr1\t10\n")
    with pytest.raises(ValueError, match=r"bad\.bed, line 1.*columns"):
        Blacklist(p)
    p.write_text("chr1\t30\t20\n")
    with pytest.raises(ValueError, match=r"bad\.bed, line 1"):
        Blacklist(p)
    with pytest.raises(FileNotFoundError, match="gone.bed"):
        Blacklist(tmp_path / "gone.bed")
