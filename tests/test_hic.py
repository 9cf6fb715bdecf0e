"""Hi-C contact-to-TSS profiles: cooler (raw/balanced, mcool URIs), bedpe, bedgraph, .hic import,
ABC-style post-processing, checked against matrices read directly with cooler."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
import warnings

import numpy as np
import pytest

from seq2exp_plugin.data.hic import HiCContacts, worker_start_method


def expected_profile(mat_row: np.ndarray, tss: int, start: int, end: int, res: int, chrom_len: int,
                     transform=lambda x, d: np.log10(1 + x)) -> np.ndarray:
    """Independent reference: loop over the bins, painting each bin's span of the window."""
    out = np.zeros(end - start, dtype=np.float64)
    tb = tss // res
    for b in range(len(mat_row)):
        lo, hi = max(b * res, start, 0), min((b + 1) * res, end, chrom_len)
        if hi > lo:
            out[lo - start : hi - start] = transform(float(np.nan_to_num(mat_row[b])), abs(b - tb) * res)
    return out


def test_cool_raw_matches_matrix(data_world):
    h = HiCContacts(data_world.cool, balance=False)
    assert h.resolution == data_world.res
    m = data_world.mats["chr1"]
    n = data_world.track_sizes["chr1"]
    for tss, s, e in [(5_500, 3_000, 8_000), (700, -1_300, 2_700), (29_500, 27_000, 31_000), (12_345, 0, 30_000)]:
        got = h.contact_to_tss("1", tss, s, e)  # alias "1" -> "chr1"
        assert got.shape == (e - s,) and got.dtype == np.float32
        ref = expected_profile(m[tss // data_world.res], tss, s, e, data_world.res, n)
        np.testing.assert_allclose(got, ref, rtol=1e-6)
    # off-chromosome positions are exactly 0, on-chromosome positions with contacts are not
    got = h.contact_to_tss("chr1", 700, -1_300, 2_700)
    assert (got[:1_300] == 0).all() and (got[1_300:] > 0).all()


def test_cool_balanced_and_transforms(data_world):
    import cooler

    clr = cooler.Cooler(str(data_world.cool_balanced))
    w = clr.bins()[:]["weight"].to_numpy()
    raw = data_world.mats["chr2"]
    off = int(np.flatnonzero(clr.bins()[:]["chrom"].to_numpy() == "chr2")[0])
    wc = w[off : off + raw.shape[0]]
    bal = raw * wc[:, None] * wc[None, :]
    n, res = data_world.track_sizes["chr2"], data_world.res
    tss, s, e = 9_400, 4_000, 15_000
    h = HiCContacts(data_world.cool_balanced)  # balance=True uses 'weight'
    np.testing.assert_allclose(h.contact_to_tss("chr2", tss, s, e),
                               expected_profile(bal[tss // res], tss, s, e, res, n), rtol=1e-5)
    # matrix read directly with cooler agrees too
    direct = clr.matrix(balance=True).fetch(("chr2", 9_000, 10_000), ("chr2", 4_000, 15_000))[0]
    np.testing.assert_allclose(bal[9, 4:15], direct, rtol=1e-6)

    gamma, pc = 0.87, 0.5
    h2 = HiCContacts(data_world.cool_balanced, powerlaw_gamma=gamma, pseudocount=pc)
    tr = lambda x, d: np.log10(1 + x * (max(d, res) / res) ** gamma + pc)  # noqa: E731
    np.testing.assert_allclose(h2.contact_to_tss("chr2", tss, s, e),
                               expected_profile(bal[tss // res], tss, s, e, res, n, tr), rtol=1e-5)
    h3 = HiCContacts(data_world.cool_balanced, log1p=False, diagonal="max_neighbors")
    row = bal[tss // res].copy()
    row[tss // res] = max(row[tss // res - 1], row[tss // res + 1])
    np.testing.assert_allclose(h3.contact_to_tss("chr2", tss, s, e),
                               expected_profile(row, tss, s, e, res, n, lambda x, d: x), rtol=1e-5)
    # diagonal fix also when the window does not include the neighbours
    v = h3.contact_to_tss("chr2", tss, 9_000, 10_000)
    np.testing.assert_allclose(v, row[9], rtol=1e-5)


def test_cool_errors(data_world, tmp_path):
    with pytest.raises(KeyError, match=r"weight.*balance=False"):
        HiCContacts(data_world.cool)  # no weights in the raw file
    h = HiCContacts(data_world.cool, balance=False)
    with pytest.raises(KeyError, match=r"chrM.*hic\.cool"):
        h.contact_to_tss("chrM", 10, 0, 100)
    hz = HiCContacts(data_world.cool, balance=False, allow_missing_chroms=True)
    assert (hz.contact_to_tss("chrM", 10, 0, 100) == 0).all()
    with pytest.raises(ValueError, match="outside the chromosome"):
        h.contact_to_tss("chr1", 40_000, 39_000, 41_000)
    with pytest.raises(FileNotFoundError, match="missing.cool"):
        HiCContacts(tmp_path / "missing.cool")
    with pytest.raises(ValueError, match="resolution is 1000"):
        HiCContacts(data_world.cool, balance=False, resolution=5000)
    with pytest.raises(ValueError, match="format"):
        HiCContacts(data_world.dnase_bw)


def test_mcool_uri_and_resolution(data_world, tmp_path):
    import cooler

    mc = tmp_path / "x.mcool"
    cooler.zoomify_cooler(str(data_world.cool), str(mc), resolutions=[1000, 2000], chunksize=10_000_000)
    h = HiCContacts(f"{mc}::/resolutions/2000", balance=False, log1p=False)
    assert h.resolution == 2000
    direct = cooler.Cooler(f"{mc}::/resolutions/2000").matrix(balance=False).fetch(("chr1", 4000, 6000),
                                                                                  ("chr1", 0, 30_000))[0]
    got = h.contact_to_tss("chr1", 5_000, 0, 30_000)
    np.testing.assert_allclose(got[::2000], direct)
    h1 = HiCContacts(mc, resolution=1000, balance=False)
    assert h1.resolution == 1000
    with pytest.raises(ValueError, match=r"resolution 5000 not available.*\[1000, 2000\]"):
        HiCContacts(mc, balance=False)


def test_bedpe_matches_cool(data_world, tmp_path):
    import cooler

    clr = cooler.Cooler(str(data_world.cool))
    pix = clr.pixels(join=True)[:]
    p = tmp_path / "c.bedpe"
    lines = ["chrom1\tstart1\tend1\tchrom2\tstart2\tend2\tcount\n"]  # header line is skipped
    for r in pix.itertuples(index=False):
        # write half of the pairs in the lower-triangle orientation
        if (r.start1 // 1000) % 2:
            lines.append(f"{r.chrom2}\t{r.start2}\t{r.end2}\t{r.chrom1}\t{r.start1}\t{r.end1}\t{r.count}\n")
        else:
            lines.append(f"{r.chrom1}\t{r.start1}\t{r.end1}\t{r.chrom2}\t{r.start2}\t{r.end2}\t{r.count}\n")
    p.write_text("".join(lines))
    hb = HiCContacts(p)
    hc = HiCContacts(data_world.cool, balance=False)
    assert hb.resolution == hc.resolution == 1000
    for chrom, tss, s, e in [("chr1", 5_500, 0, 12_000), ("2", 19_900, 15_000, 22_000)]:
        np.testing.assert_allclose(hb.contact_to_tss(chrom, tss, s, e), hc.contact_to_tss(chrom, tss, s, e), rtol=1e-6)
    bad = tmp_path / "bad.bedpe"
    bad.write_text("chr1\t0\t1000\tchr1\t0\t1000\t5\nchr1\t0\t1000\tchr1\t1000\tx\t5\n")
    with pytest.raises(ValueError, match=r"bad\.bedpe, line 2"):
        HiCContacts(bad)


def test_bedgraph_profiles(tmp_path):
    p = tmp_path / "v.bedgraph"
    p.write_text("chr3\t0\t100\t50\t9\nchr3\t100\t200\t50\t99\nchr3\t0\t200\t150\t0\n")
    h = HiCContacts(p)
    v = h.contact_to_tss("3", 50, -10, 210)
    ref = np.zeros(220)
    ref[10:110] = np.log10(10)
    ref[110:210] = np.log10(100)
    np.testing.assert_allclose(v, ref, rtol=1e-6)
    assert (h.contact_to_tss("chr3", 150, 0, 200) == 0).all()
    with pytest.raises(KeyError, match="TSS chr3:77"):
        h.contact_to_tss("chr3", 77, 0, 10)
    p4 = tmp_path / "w.bg"
    p4.write_text("chr3\t10\t20\t3\n")
    v4 = HiCContacts(p4, log1p=False).contact_to_tss("chr3", 999, 0, 30)
    assert v4[10:20].tolist() == [3.0] * 10 and v4[:10].sum() == 0 and v4[20:].sum() == 0


def write_hic(path, mats: dict, sizes: dict, res: int, resolutions=None) -> Path:
    """A .hic file (hictkpy's writer) from dense symmetric per-chromosome matrices."""
    import hictkpy
    import pandas as pd

    writer = hictkpy.hic.FileWriter(str(path), sizes, resolutions or [res])
    frames = []
    for c, m in mats.items():
        i, j = np.nonzero(np.triu(m))
        frames.append(pd.DataFrame({"chrom1": c, "start1": i * res, "end1": np.minimum((i + 1) * res, sizes[c]),
                                    "chrom2": c, "start2": j * res, "end2": np.minimum((j + 1) * res, sizes[c]),
                                    "count": m[i, j].astype(np.int32)}))
    writer.add_pixels(pd.concat(frames, ignore_index=True))
    writer.finalize()
    return Path(path)


def test_hic_reader_against_the_same_contacts_in_cool(data_world, tmp_path):
    path = write_hic(tmp_path / "x.hic", data_world.mats, data_world.track_sizes, data_world.res,
                     resolutions=[data_world.res, 2 * data_world.res])
    h = HiCContacts(path, resolution=data_world.res, normalization="NONE", log1p=False)
    assert h.chrom_sizes == data_world.track_sizes and h.resolution == data_world.res
    hc = HiCContacts(data_world.cool, balance=False, log1p=False)
    for chrom, tss, s, e in [("chr1", 5_500, 0, 12_000), ("chr2", 19_500, 12_000, 21_000), ("1", 300, -700, 3_000),
                             ("chr1", 29_900, 25_000, 31_000)]:
        got = h.contact_to_tss(chrom, tss, s, e)
        np.testing.assert_array_equal(got, hc.contact_to_tss(chrom, tss, s, e))
    assert got.max() > 0
    processed = dict(diagonal="max_neighbors", powerlaw_gamma=0.87)  # the same post-processing
    np.testing.assert_allclose(HiCContacts(path, resolution=data_world.res, normalization="NONE", **processed)
                               .contact_to_tss("chr2", 7_300, 0, 20_000),
                               HiCContacts(data_world.cool, balance=False, **processed)
                               .contact_to_tss("chr2", 7_300, 0, 20_000), rtol=1e-6)
    coarse = HiCContacts(path, resolution=2 * data_world.res, normalization="NONE", log1p=False)
    assert coarse.contact_to_tss("chr1", 5_500, 0, 12_000).sum() > 0
    with pytest.raises(ValueError, match=r"resolution 5000 not available; available: \[1000, 2000\]"):
        HiCContacts(path)
    with pytest.raises(ValueError, match=r"normalization 'KR' not in the file"):
        HiCContacts(path, resolution=data_world.res)  # the default KR: this file has no weights
    with pytest.raises(KeyError, match=r"chrM.*x\.hic"):
        h.contact_to_tss("chrM", 0, 0, 10)
    again = pickle.loads(pickle.dumps(h))
    np.testing.assert_array_equal(again.contact_to_tss("chr1", 5_500, 0, 12_000),
                                  hc.contact_to_tss("chr1", 5_500, 0, 12_000))
    from operator import methodcaller

    from torch.utils.data import DataLoader  # DataLoader workers, each with its own handle

    locus = ("chr2", 7_300, 0, 12_000)
    assert worker_start_method(2) == "forkserver"  # hictkpy is loaded: forking can deadlock
    rows = list(DataLoader([h] * 3, batch_size=None, num_workers=2,
                           multiprocessing_context=worker_start_method(2),
                           collate_fn=methodcaller("contact_to_tss", *locus)))
    for row in rows:
        np.testing.assert_array_equal(row, hc.contact_to_tss(*locus))


def test_pickle(data_world):
    h = HiCContacts(data_world.cool, balance=False)
    a = h.contact_to_tss("chr1", 5_000, 0, 10_000)
    h2 = pickle.loads(pickle.dumps(h))
    np.testing.assert_array_equal(h2.contact_to_tss("chr1", 5_000, 0, 10_000), a)


# ---- the real GM12878 .cool (hg19, 2 Mb bins, read-only, no weights) ----------------------------
def test_real_cool_against_cooler(real_paths):
    import cooler

    clr = cooler.Cooler(str(real_paths.cool))
    res = clr.binsize
    n = int(clr.chromsizes["chr2"])
    h = HiCContacts(real_paths.cool, balance=False, log1p=False)
    assert h.resolution == res == 2_000_000
    for tss, s, e in [(11_000_000, 0, 20_000_000), (150_123_456, 140_000_000, 160_500_000),
                      (242_500_000, 236_000_000, 246_000_000)]:
        tb = tss // res
        direct = clr.matrix(balance=False).fetch(("chr2", tb * res, min(tb * res + res, n)), ("chr2", 0, n))[0]
        got = h.contact_to_tss("2", tss, s, e)  # "2" resolved to "chr2"
        ref = expected_profile(direct.astype(float), tss, s, e, res, n, lambda x, d: x)
        np.testing.assert_array_equal(got, ref.astype(np.float32))
        assert got.max() > 0
    # positions past the chromosome end are zero
    got = h.contact_to_tss("chr2", 242_500_000, 242_000_000, 246_000_000)
    assert (got[n - 242_000_000 :] == 0).all()
    # default log10(1 + x)
    hl = HiCContacts(real_paths.cool, balance=False)
    np.testing.assert_allclose(hl.contact_to_tss("chr2", 11_000_000, 0, 20_000_000),
                               np.log10(1 + h.contact_to_tss("chr2", 11_000_000, 0, 20_000_000)), rtol=1e-6)
    with pytest.raises(KeyError, match="weight"):
        HiCContacts(real_paths.cool)  # this file has no balancing weights


def test_real_cool_balanced_copy(real_paths, tmp_path):
    import cooler

    cp = tmp_path / "gm.cool"
    shutil.copy(real_paths.cool, cp)
    cp.chmod(0o644)
    with warnings.catch_warnings():  # empty chromosomes (chrM, chrY) give "mean of empty slice"
        warnings.simplefilter("ignore", RuntimeWarning)
        cooler.balance_cooler(cooler.Cooler(str(cp)), store=True, cis_only=True)
    clr = cooler.Cooler(str(cp))
    h = HiCContacts(cp, log1p=False)
    res, n = clr.binsize, int(clr.chromsizes["chr2"])
    tss = 101_000_000
    tb = tss // res
    direct = clr.matrix(balance=True).fetch(("chr2", tb * res, tb * res + res), ("chr2", 0, n))[0]
    got = h.contact_to_tss("chr2", tss, 80_000_000, 120_000_000)
    ref = expected_profile(direct, tss, 80_000_000, 120_000_000, res, n, lambda x, d: x)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert np.isfinite(got).all()


# ---------------------------------------------------------------------------------- power law
@pytest.mark.parametrize("spec, gamma, scale", [("powerlaw", 0.87, -4.80 + 11.63 * 0.87),
                                                 ("powerlaw:abc", 0.87, -4.80 + 11.63 * 0.87),
                                                 ("powerlaw:k562", 1.02424, 5.95945),
                                                 ("powerlaw:gamma=0.5,scale=2", 0.5, 2.0)])
def test_powerlaw_contact_is_abc_formula(spec, gamma, scale):
    """Every position's contact is ABC's exp(scale - gamma ln(max(d, 5000) + 1)) of its distance to
    the TSS, then log10(1 + x) as a Hi-C track; computed here one position at a time with math."""
    import math

    tss, start, end = 20_000, 8_000, 32_000
    got = HiCContacts(spec).contact_to_tss("chr7", tss, start, end)
    want = [math.log10(1 + math.exp(scale - gamma * math.log(max(abs(p - tss), 5000) + 1)))
            for p in range(start, end)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    raw = HiCContacts(spec, log1p=False).contact_to_tss("chr7", tss, tss + 10_000, tss + 10_001)
    assert raw[0] == pytest.approx(math.exp(scale - gamma * math.log(10_001)), rel=1e-6)


def test_powerlaw_any_chromosome_and_off_start():
    h = HiCContacts("powerlaw:k562")
    assert h.has_chrom("chrUn_xyz") and "power law" in h.describe()
    x = h.contact_to_tss("chr1", 1_000, -500, 1_500)
    assert (x[:500] == 0).all() and (x[500:] > 0).all()


@pytest.mark.parametrize("spec", ["powerlaw:gamma=1", "powerlaw:hg19", "powerlaw:gamma=-1,scale=2",
                                  "powerlaw:gamma=1,scale=2,x=3"])
def test_powerlaw_bad_spec(spec):
    with pytest.raises(ValueError, match="powerlaw:gamma=G,scale=S"):
        HiCContacts(spec)


def test_powerlaw_in_a_run_config(tmp_path):
    """``data.signals.hic: powerlaw`` is not a path: the YAML's folder is not prefixed, and the
    window dataset reads the contact from the formula."""
    from seq2exp_plugin.train.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text("data: {genes: g.h5ad, signals: {h3k27ac: a.bw, dnase: b.bw, hic: 'powerlaw:k562'}}\n")
    run = load_config(path)
    assert run.data.signals["hic"] == "powerlaw:k562"
    assert run.data.signals["dnase"] == str(tmp_path / "b.bw")


def test_a_damaged_cool_is_refused_naming_the_file(real_paths, tmp_path):
    raw = Path(real_paths.cool).read_bytes()
    (tmp_path / "truncated.cool").write_bytes(raw[: len(raw) // 2])
    damaged = bytearray(raw)
    damaged[2000:2400] = bytes(400)  # an object header of the HDF5 file zeroed
    (tmp_path / "damaged.cool").write_bytes(bytes(damaged))
    for name in ("truncated.cool", "damaged.cool"):
        with pytest.raises(ValueError, match=rf"{name}: not a readable cooler file \(damaged or truncated\?\): "):
            HiCContacts(tmp_path / name, balance=False)
