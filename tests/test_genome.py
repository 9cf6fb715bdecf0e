"""Genome reader: one-hot, padding, aliases, indexes for read-only FASTAs, fork/pickle safety."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

from seq2exp_plugin.data.genome import (
    Genome,
    chrom_aliases,
    normalize_chrom,
    one_hot_encode,
    resolve_chrom,
    reverse_complement,
    reverse_complement_one_hot,
)

BASES = "ACGT"


def naive_one_hot(s: str) -> np.ndarray:
    """Independent reference: loop over letters."""
    out = np.zeros((4, len(s)), dtype=np.float32)
    for i, ch in enumerate(s.upper()):
        if ch in BASES:
            out[BASES.index(ch), i] = 1.0
    return out


def read_fasta_plain(path) -> dict:
    """Independent FASTA parser (gzip via the stdlib)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    seqs, name, buf = {}, None, []
    with opener(path, "rt") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith(">"):
                if name is not None:
                    seqs[name] = "".join(buf)
                name, buf = line[1:].split()[0], []
            elif line:
                buf.append(line)
    if name is not None:
        seqs[name] = "".join(buf)
    return seqs


def test_aliases():
    assert chrom_aliases("chr1") == ["chr1", "1"]
    assert chrom_aliases("2") == ["2", "chr2"]
    assert set(chrom_aliases("chrM")) == {"chrM", "MT", "M", "chrMT"}
    assert resolve_chrom("MT", {"chrM": 1}) == "chrM"
    assert resolve_chrom("chrX", ["X", "Y"]) == "X"
    assert normalize_chrom("chr3") == normalize_chrom("3") == "3"
    with pytest.raises(KeyError, match="chr9.*myfile"):
        resolve_chrom("chr9", ["1"], "myfile")


def test_one_hot_encode_matches_naive():
    s = "ACGTNacgtnRYxA"
    np.testing.assert_array_equal(one_hot_encode(s), naive_one_hot(s))
    assert one_hot_encode(s).dtype == np.float32
    assert reverse_complement("AACGTn") == "nACGTT"
    oh = one_hot_encode("AACGTN")
    np.testing.assert_array_equal(reverse_complement_one_hot(oh), one_hot_encode(reverse_complement("AACGTN")))


@pytest.mark.parametrize("which", ["fasta", "fasta_gz"])
def test_genome_windows(data_world, which):
    g = Genome(getattr(data_world, which))
    assert g.chrom_sizes == data_world.sizes
    ref = data_world.seqs["chr1"]
    # plain window, soft-masked region, N block, IUPAC code
    for s, e in [(50, 250), (990, 1110), (1995, 2005), (0, 30_000)]:
        x = g.one_hot("chr1", s, e)
        assert x.shape == (4, e - s) and x.dtype == np.float32
        np.testing.assert_array_equal(x, naive_one_hot(ref[s:e]))
    assert g.one_hot("chr1", 100, 200).sum() == 100  # lower case counted
    assert g.one_hot("chr1", 1000, 1100).sum() == 0  # N block
    assert g.one_hot("chr1", 2000, 2001).sum() == 0  # 'R'
    assert g.sequence("chr1", 100, 105) == ref[100:105]  # case kept in sequence()


def test_genome_padding_and_aliases(data_world):
    g = Genome(data_world.fasta)
    ref = data_world.seqs["chr2"]
    x = g.one_hot("2", -10, 20)  # alias + off the start
    assert x.shape == (4, 30)
    assert x[:, :10].sum() == 0
    np.testing.assert_array_equal(x[:, 10:], naive_one_hot(ref[:20]))
    n = len(ref)
    y = g.one_hot("chr2", n - 5, n + 7)  # off the end
    np.testing.assert_array_equal(y[:, :5], naive_one_hot(ref[-5:]))
    assert y[:, 5:].sum() == 0
    assert g.one_hot("chr2", n + 10, n + 20).sum() == 0  # entirely off
    assert g.sequence("chr2", -3, 2) == "NNN" + ref[:2]
    assert g.chrom_length("MT") == data_world.sizes["chrM"]  # MT -> chrM


def test_genome_errors(data_world, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fa"):
        Genome(tmp_path / "nope.fa")
    g = Genome(data_world.fasta)
    with pytest.raises(KeyError, match=r"chr7.*genome\.fa.*chr1"):
        g.one_hot("chr7", 0, 10)
    plain_gz = tmp_path / "plain.fa.gz"
    with gzip.open(plain_gz, "wt") as fh:
        fh.write(">chr1\nACGT\n")
    with pytest.raises(ValueError, match="bgzip"):
        Genome(plain_gz)


def test_index_built_in_cache_not_next_to_fasta(fasta_writer, tmp_path, monkeypatch):
    d = tmp_path / "ro"
    d.mkdir()
    fa = fasta_writer(d / "g.fa.gz", {"chr1": "ACGTACGTNN" * 20}, bgzip=True)
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEQ2EXP_CACHE_DIR", str(cache))
    d.chmod(0o555)
    try:
        g = Genome(fa)
        assert g.sequence("1", 0, 12) == "ACGTACGTNNAC"
    finally:
        d.chmod(0o755)
    assert sorted(p.name for p in d.iterdir()) == ["g.fa.gz"]  # nothing written next to the FASTA
    assert {p.name for p in cache.rglob("*") if p.is_file()} == {"g.fa.gz.fai", "g.fa.gz.gzi"}


def test_pickle_and_fork(data_world):
    g = Genome(data_world.fasta_gz)
    before = g.one_hot("chr1", 10, 500)
    g2 = pickle.loads(pickle.dumps(g))
    assert g2._opened is None  # handle not pickled, reopened on use
    np.testing.assert_array_equal(g2.one_hot("chr1", 10, 500), before)
    g._opened_by = -1  # as if in a forked child: must reopen, not reuse the parent's handle
    old = g._opened
    np.testing.assert_array_equal(g.one_hot("chr1", 10, 500), before)
    assert g._opened is not old


# ---- the real hg38 chr2 slice (bgzip, read-only directory) -------------------------------------
def test_real_chr2_slice(real_paths, seq2exp_cache):
    g = Genome(real_paths.fasta)
    assert g.chrom_sizes == {"chr2": real_paths.chr2_length}
    ref = read_fasta_plain(real_paths.fasta)["chr2"]
    assert len(ref) == real_paths.chr2_length
    # the N block at the start of chr2 (hg38: first 10,000 bp)
    first_base = next(i for i, c in enumerate(ref) if c not in "Nn")
    assert first_base == 10_000
    x = g.one_hot("2", -100, 10_100)
    assert x[:, : 100 + first_base].sum() == 0
    assert (x[:, 100 + first_base :].sum(axis=0) == 1).all()
    rng = np.random.default_rng(0)
    for s in rng.integers(0, real_paths.chr2_length - 5000, 5):
        s = int(s)
        np.testing.assert_array_equal(g.one_hot("chr2", s, s + 5000), naive_one_hot(ref[s : s + 5000]))
    # soft-masked lower case exists in this region and is encoded
    seq = g.sequence("chr2", 10_000, 10_060)
    assert any(c.islower() for c in seq)
    assert g.one_hot("chr2", 10_000, 10_060).sum() == 60
    # end of the slice pads with N
    y = g.one_hot("2", real_paths.chr2_length - 10, real_paths.chr2_length + 10)
    assert y[:, 10:].sum() == 0 and y[:, :10].sum() == 10


def test_existing_sidecar_index_is_used(fasta_writer, tmp_path, monkeypatch):
    import pyfaidx

    fa = fasta_writer(tmp_path / "s.fa", {"chrA": "ACGT" * 30, "chrB": "GG"})
    pyfaidx.Faidx(str(fa)).close()  # writes s.fa.fai next to it, as samtools faidx would
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEQ2EXP_CACHE_DIR", str(cache))
    g = Genome(fa)
    assert g._fai == str(fa) + ".fai"
    assert not cache.exists()  # nothing built
    assert g.chrom_sizes == {"chrA": 120, "chrB": 2}
    assert g.sequence("chrB", 0, 3) == "GGN"
