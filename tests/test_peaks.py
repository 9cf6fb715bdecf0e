"""MACS3 peaks (seq2exp_plugin.discover.peaks, `seq2exp peaks`): calls on the synthetic benchmark,
bdgpeakcall against an independent threshold-and-merge of the same track, the missing-MACS3 error,
atomic outputs, and the per-bp peak mask."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seq2exp_plugin.cli import main
from seq2exp_plugin.data.blacklist import IntervalMask
from seq2exp_plugin.data.synth import generate, load_manifest
from seq2exp_plugin.discover import peaks as P
from seq2exp_plugin.discover.recovery import read_truth

needs_macs3 = pytest.mark.skipif(P._find_spec("MACS3") is None, reason="MACS3 not installed")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_peaks") / "tiny"
    generate(out, preset="tiny", seed=0)
    return load_manifest(out)


@pytest.fixture(scope="module")
def reads_peaks(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("peaks") / "synthA"
    return P.call_peaks_on_reads(tiny["tracks"]["synthA"]["dnase_reads"], out, genome=tiny["genome"]["fasta"])


def _overlap_fraction(mask_fn, df) -> np.ndarray:
    return np.array([mask_fn(r.chrom, r.start, r.end).mean() for r in df.itertuples()])


def _unique_elements(truth: pd.DataFrame) -> pd.DataFrame:
    return truth.drop_duplicates(["chrom", "start", "end"]).reset_index(drop=True)


# ------------------------------------------------------------------------------ callpeak
@needs_macs3
def test_callpeak_finds_open_elements_not_closed_ones(tiny, reads_peaks):
    res = reads_peaks
    assert res.narrowpeak.name == "peaks.narrowPeak" and res.narrowpeak.is_file()
    assert res.n_peaks > 20
    log = res.log.read_text()
    assert "callpeak" in log and "--nomodel" in log and "--shift -100" in log
    # -g is the genome's total length from its .fai
    total = sum(tiny["genome"]["chroms"].values())
    assert f"-g {total}" in log

    truth = _unique_elements(read_truth(tiny["truth"]["cells"]["synthA"]))
    mask = lambda c, s, e: peak_mask(res.out, c, s, e)  # noqa: E731 - the directory form
    frac = _overlap_fraction(mask, truth)
    open_ = truth["class"].isin(["R_ag", "decoy"]).to_numpy()
    closed = (truth["class"] == "inactive").to_numpy()
    assert open_.sum() > 20 and closed.sum() > 10
    # most open elements are hit, closed ones never
    assert np.mean(frac[open_] > 0) >= 0.8
    assert np.mean(frac[open_]) >= 0.7
    assert frac[closed].max() == 0.0

    # and the peaks themselves sit on real signal: open elements, promoters or blacklisted artefacts
    peaks = P.read_narrowpeak(res.narrowpeak)
    from seq2exp_plugin.data.blacklist import Blacklist

    known = pd.concat([truth.loc[~closed, ["chrom", "start", "end"]],
                       pd.read_csv(tiny["blacklist"], sep="\t", header=None, usecols=[0, 1, 2],
                                   names=["chrom", "start", "end"])])
    known_path = Path(res.out).parent / "known.bed"
    known.to_csv(known_path, sep="\t", header=False, index=False)
    hit = _overlap_fraction(lambda c, s, e: Blacklist(known_path).mask(c, s, e), peaks)
    assert np.mean(hit > 0) >= 0.9


@needs_macs3
def test_callpeak_other_cell_type_opens_other_elements(tiny, reads_peaks, tmp_path):
    """Elements inactive in synthA but open in synthB are found from synthB's reads."""
    resB = P.call_peaks_on_reads(tiny["tracks"]["synthB"]["dnase_reads"], tmp_path / "B",
                                 genome_size=sum(tiny["genome"]["chroms"].values()))
    ta = _unique_elements(read_truth(tiny["truth"]["cells"]["synthA"]))
    tb = read_truth(tiny["truth"]["cells"]["synthB"])
    open_b = set(map(tuple, tb.loc[tb["class"].isin(["R_ag", "decoy"]), ["chrom", "start", "end"]].to_numpy()))
    in_b = np.array([tuple(x) in open_b for x in ta[["chrom", "start", "end"]].to_numpy()], dtype=bool)
    sel = ta[(ta["class"] == "inactive").to_numpy() & in_b]
    assert len(sel) >= 3
    fb = _overlap_fraction(lambda c, s, e: peak_mask(resB.narrowpeak, c, s, e), sel)
    fa = _overlap_fraction(lambda c, s, e: peak_mask(reads_peaks.narrowpeak, c, s, e), sel)
    assert np.mean(fb > 0) >= 0.8 and fa.max() == 0.0


# --------------------------------------------------------------------------- bdgpeakcall
def _reference_calls(values: np.ndarray, cutoff: float, min_length: int, max_gap: int) -> np.ndarray:
    """Independent reference of bdgpeakcall's rule: positions above the cut-off, gaps of at most
    ``max_gap`` bp filled, regions shorter than ``min_length`` dropped; as a 0/1 per-bp vector."""
    keep = values >= cutoff
    out = np.zeros(len(values), dtype=bool)
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return out
    breaks = np.flatnonzero(np.diff(idx) > max_gap + 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    for s, e in zip(starts, ends):
        if e - s >= min_length:
            out[s:e] = True
    return out


@needs_macs3
def test_bdgpeakcall_on_bigwig_matches_threshold_and_merge(tiny, tmp_path):
    import pyBigWig

    bw_path = tiny["tracks"]["synthA"]["dnase"]
    res = P.call_peaks_on_signal(bw_path, tmp_path / "bdg", cutoff=4.0, min_length=200, max_gap=30)
    assert res.mode == "bdgpeakcall" and res.n_peaks > 20
    assert not list((tmp_path / "bdg").glob("*.bdg"))  # the bedGraph is not left behind
    bw = pyBigWig.open(str(bw_path))
    inter = union = 0
    for chrom, n in bw.chroms().items():
        v = np.nan_to_num(np.asarray(bw.values(chrom, 0, n, numpy=True), dtype=np.float64))
        ref = _reference_calls(v, 4.0, 200, 30)
        got = peak_mask(res.narrowpeak, chrom, 0, n).astype(bool)
        inter += int((ref & got).sum())
        union += int((ref | got).sum())
    assert union > 5000
    assert inter / union > 0.99  # measured: identical


def test_bigwig_to_bedgraph_round_trip(tiny, tmp_path):
    import pyBigWig

    bw_path = tiny["tracks"]["synthA"]["h3k27ac"]
    n_lines = P.bigwig_to_bedgraph(bw_path, tmp_path / "x.bdg", drop_zeros=False, chunk=10_000)
    df = pd.read_csv(tmp_path / "x.bdg", sep="\t", header=None, names=["chrom", "start", "end", "value"])
    assert len(df) == n_lines > 0
    bw = pyBigWig.open(str(bw_path))
    for chrom, n in bw.chroms().items():
        want = np.asarray(bw.values(chrom, 0, n, numpy=True), dtype=np.float64)
        got = np.full(n, np.nan)
        sub = df[df["chrom"] == chrom]
        for s, e, x in zip(sub["start"], sub["end"], sub["value"]):
            got[s:e] = x
        np.testing.assert_allclose(got, want, rtol=1e-5, equal_nan=True)
    # zero runs are dropped when asked
    P.bigwig_to_bedgraph(bw_path, tmp_path / "nz.bdg", drop_zeros=True)
    nz = pd.read_csv(tmp_path / "nz.bdg", sep="\t", header=None)
    assert (nz[3] != 0).all() and len(nz) <= n_lines


# -------------------------------------------------------------------------- missing MACS3
def test_missing_macs3_executable_gives_install_hint(tiny, tmp_path, monkeypatch):
    fake_bin = tmp_path / "env" / "bin"
    fake_bin.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(fake_bin / "python"))
    with pytest.raises(P.MACS3NotFoundError) as info:
        P.call_peaks_on_reads(tiny["tracks"]["synthA"]["dnase_reads"], tmp_path / "out",
                              genome=tiny["genome"]["fasta"])
    assert P.INSTALL_HINT in str(info.value) and 'seq2exp-plugin[peaks]' in str(info.value)
    assert isinstance(info.value, ImportError)
    assert not (tmp_path / "out").exists()


def test_missing_macs3_module_gives_install_hint_in_cli(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(P, "_find_spec", lambda name: None)
    rc = main(["peaks", "--bigwig", tiny["tracks"]["synthA"]["dnase"], "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert 'pip install "seq2exp-plugin[peaks]"' in err
    assert not (tmp_path / "o").exists()
    assert not list(tmp_path.glob(".o.*"))


# ------------------------------------------------------------------------------ atomicity
@needs_macs3
def test_failed_macs3_run_leaves_nothing(tiny, tmp_path):
    # a FASTA is not a BED file: MACS3 fails while parsing
    with pytest.raises(P.MACS3Error, match="callpeak failed"):
        P.call_peaks_on_reads(tiny["genome"]["fasta"], tmp_path / "out", fmt="BED", genome_size=100_000)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_run_leaves_nothing(tiny, tmp_path, monkeypatch):
    seen = {}

    def interrupted(args, workdir, log):
        (Path(workdir) / "macs3_peaks.narrowPeak").write_text("chr1\t0\t10\n")  # partial output
        log.write_text("started\n")
        seen["workdir"] = Path(workdir)
        raise KeyboardInterrupt

    monkeypatch.setattr(P, "_run_macs3", interrupted)
    monkeypatch.setattr(P, "find_macs3", lambda: Path(sys.executable))
    with pytest.raises(KeyboardInterrupt):
        P.call_peaks_on_reads(tiny["tracks"]["synthA"]["dnase_reads"], tmp_path / "out", genome_size=1000)
    assert seen["workdir"].parent == tmp_path  # it was staged beside the output...
    assert list(tmp_path.iterdir()) == []       # ...and removed


def test_existing_output_refused_before_work_and_replaced_with_force(tiny, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    calls = []

    def fake(args, workdir, log):
        calls.append(args)
        log.write_text("fake\n")
        (Path(workdir) / "macs3_peaks.narrowPeak").write_text("chr1\t100\t200\tp1\t10\t.\t1\t1\t1\t50\n")

    monkeypatch.setattr(P, "_run_macs3", fake)
    monkeypatch.setattr(P, "find_macs3", lambda: Path(sys.executable))
    reads = tiny["tracks"]["synthA"]["dnase_reads"]
    with pytest.raises(FileExistsError, match="not empty"):
        P.call_peaks_on_reads(reads, out, genome_size=1000)
    assert calls == [] and (out / "old.txt").read_text() == "keep me"
    res = P.call_peaks_on_reads(reads, out, genome_size=1000, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["macs3.log", "peaks.narrowPeak"]
    assert res.n_peaks == 1 and res.total_bp == 100
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    # the arguments MACS3 got: DNase defaults, q-value, genome size, format from the extension
    a = calls[0]
    assert a[0] == "callpeak" and a[a.index("-f") + 1] == "BED" and a[a.index("-g") + 1] == "1000"
    assert a[a.index("--shift") + 1] == "-100" and a[a.index("--extsize") + 1] == "200"
    assert a[a.index("-q") + 1] == "0.05" and a[a.index("--keep-dup") + 1] == "all"


def test_bad_arguments_raise_before_work(tiny, tmp_path):
    reads = tiny["tracks"]["synthA"]["dnase_reads"]
    with pytest.raises(FileNotFoundError, match="nope"):
        P.call_peaks_on_reads(tmp_path / "nope.bed", tmp_path / "o", genome_size=1000)
    with pytest.raises(ValueError, match="genome"):
        P.call_peaks_on_reads(reads, tmp_path / "o")
    with pytest.raises(ValueError, match="q-value"):
        P.call_peaks_on_reads(reads, tmp_path / "o", genome_size=1000, qvalue=0)
    with pytest.raises(ValueError, match="genome size"):
        P.call_peaks_on_reads(reads, tmp_path / "o", genome_size="human")
    with pytest.raises(ValueError, match="format"):
        P.call_peaks_on_reads(reads, tmp_path / "o", genome_size=1000, fmt="VCF")
    assert list(tmp_path.iterdir()) == []


def test_genome_size(tiny):
    total = sum(tiny["genome"]["chroms"].values())
    assert P.macs3_genome_size(tiny["genome"]["fasta"]) == str(total)
    assert P.macs3_genome_size(tiny["genome"]["fai"]) == str(total)
    assert P.macs3_genome_size(tiny["genome"]["sizes"]) == str(total)
    assert P.macs3_genome_size(None, "hs") == "hs"
    assert P.macs3_genome_size(tiny["genome"]["fasta"], "2.7e9") == "2700000000"


# ------------------------------------------------------------------------------ peak mask
def peak_mask(path, chrom, start, end):
    """The baseline's per-bp peak mask, as the window dataset reads it."""
    return IntervalMask(P.resolve_peaks_path(path), what="peak file").mask(chrom, start, end).astype(np.float32)


def test_peaks_path_resolves_directories(tmp_path):
    f = tmp_path / P.PEAKS_FILE
    f.write_text("chr1\t10\t20\tp1\t5\t.\t1\t1\t1\t3\n")
    assert P.resolve_peaks_path(tmp_path) == f and P.resolve_peaks_path(f) == f
    with pytest.raises(FileNotFoundError, match="missing.bed"):
        P.resolve_peaks_path(tmp_path / "missing.bed")


@needs_macs3
def test_cli_peaks_reads(tiny, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["peaks", "--reads", tiny["tracks"]["synthA"]["dnase_reads"], "--genome", tiny["genome"]["fai"],
               "--qvalue", "0.01", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "peaks" in text and "wall time" in text and "peak RSS" in text
    assert (out / "peaks.narrowPeak").is_file() and "-q 0.01" in (out / "macs3.log").read_text()
    rc = main(["peaks", "--reads", tiny["tracks"]["synthA"]["dnase_reads"], "--genome", tiny["genome"]["fai"],
               "--out", str(out)])
    assert rc == 2 and "exists" in capsys.readouterr().err
