"""The synthetic benchmark's files from a :class:`~seq2exp_plugin.data.synth_layout.Layout`:
the genome (FASTA), simulated DNase/H3K27ac reads and their bigWig coverage, Hi-C (cooler).

The laws are described in :mod:`seq2exp_plugin.data.synth`.
"""

from __future__ import annotations

import gzip
import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .synth_layout import _S_CELL, _S_GENOME, SIGNALS, Layout, SynthParams, _rng

# FASTA: codes 0-3 are ACGT, 4 is N; lower case marks soft-masked repeats
_CODE_N = 4
_LETTERS = np.frombuffer(b"ACGTNacgtn", dtype=np.uint8)
_LINE = 60


# ------------------------------------------------------------------------------- genome
def _chrom_sequence(layout: Layout, chrom: str, rng: np.random.Generator,
                    families: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes (0-3 ACGT, 4 N) and soft-mask flags of one chromosome."""
    p = layout.params
    n = layout.sizes[chrom]
    nb = p.n_block_bp
    n_blocks = -(-n // p.gc_block)
    gc = np.clip(rng.normal(p.gc, p.gc_sd, n_blocks), 0.3, 0.6).astype(np.float32)
    seq = np.empty(n, dtype=np.uint8)
    chunk = p.gc_block * max(1, (1 << 23) // p.gc_block)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        g = np.repeat(gc[s // p.gc_block:-(-e // p.gc_block)], p.gc_block)[: e - s]
        u = rng.random(e - s, dtype=np.float32)
        seq[s:e] = np.where(u < g / 2, 1, np.where(u < g, 2, np.where(u < (1 + g) / 2, 0, 3)))
    _deplete_cpg(seq, rng, p.cpg_keep)
    lower = np.zeros(n, dtype=bool)
    # interspersed repeats (diverged copies of a few consensus families), soft-masked
    L = p.repeat_length
    n_copies = int(p.repeat_fraction * (n - 2 * nb) / L)
    if n_copies and n - 2 * nb > L:
        starts = rng.integers(nb, n - nb - L, n_copies)
        fam = rng.integers(0, len(families), n_copies)
        for s0 in range(0, n_copies, 20000):
            st, fm = starts[s0:s0 + 20000], fam[s0:s0 + 20000]
            copies = families[fm].copy()
            mut = rng.random(copies.shape) < p.repeat_divergence
            copies[mut] = rng.integers(0, 4, int(mut.sum()), dtype=np.uint8)
            minus = rng.random(len(st)) < 0.5
            copies[minus] = 3 - copies[minus, ::-1]
            pos = st[:, None] + np.arange(L)[None, :]
            seq[pos] = copies
            lower[pos] = True
        # simple (CA)n / poly-A repeats
        n_simple = max(1, (n - 2 * nb) // 20000)
        for st, ln, kind in zip(rng.integers(nb, n - nb - 100, n_simple),
                                rng.integers(20, 80, n_simple), rng.integers(0, 2, n_simple)):
            unit = np.array([0, 1] if kind == 0 else [0], dtype=np.uint8)
            seq[st:st + ln] = np.resize(unit, ln)
            lower[st:st + ln] = True
    # elements: uppercase; promoters CpG-island-like; planted motif instances
    for el in layout.elements:
        if el.chrom != chrom:
            continue
        lower[el.start:el.end] = False
        if el.kind == "promoter":
            g = p.promoter_gc
            u = rng.random(el.end - el.start)
            seq[el.start:el.end] = np.where(u < g / 2, 1, np.where(u < g, 2,
                                            np.where(u < (1 + g) / 2, 0, 3)))
        for _, off, _, codes in el.motifs:
            seq[el.start + off:el.start + off + len(codes)] = codes
    seq[:nb] = _CODE_N
    seq[n - nb:] = _CODE_N
    lower[:nb] = False
    lower[n - nb:] = False
    return seq, lower


def _deplete_cpg(seq: np.ndarray, rng: np.random.Generator, keep: float) -> None:
    idx = np.flatnonzero((seq[:-1] == 1) & (seq[1:] == 2))
    hit = idx[rng.random(len(idx)) >= keep]
    to_t = rng.random(len(hit)) < 0.5
    seq[hit[to_t]] = 3  # CG -> TG
    seq[hit[~to_t] + 1] = 0  # CG -> CA


def write_genome(layout: Layout, fasta: Path) -> float:
    """Write the FASTA (60 bp lines, soft-masked repeats) and return its GC fraction (non-N)."""
    p = layout.params
    rng = _rng(p.seed, _S_GENOME)
    fam = rng.random((p.repeat_families, p.repeat_length))
    families = np.where(fam < 0.2, 1, np.where(fam < 0.4, 2, np.where(fam < 0.7, 0, 3)))
    families = families.astype(np.uint8)
    gc_count = acgt = 0
    with open(fasta, "wb") as fh:
        for chrom in layout.chroms:
            seq, lower = _chrom_sequence(layout, chrom, rng, families)
            counts = np.bincount(seq, minlength=5)
            gc_count += int(counts[1] + counts[2])
            acgt += int(counts[:4].sum())
            letters = _LETTERS[seq + 5 * lower.astype(np.uint8)]
            del seq, lower
            fh.write(f">{chrom}\n".encode())
            n_full = len(letters) // _LINE
            block = np.empty((n_full, _LINE + 1), dtype=np.uint8)
            block[:, :_LINE] = letters[: n_full * _LINE].reshape(n_full, _LINE)
            block[:, _LINE] = ord("\n")
            fh.write(block.tobytes())
            rest = letters[n_full * _LINE:]
            if len(rest):
                fh.write(rest.tobytes() + b"\n")
            del letters, block
    return gc_count / max(acgt, 1)


# ------------------------------------------------------------------------------ signals
def _background_reads(p: SynthParams, rng, size: int, lam: float, length: int
                       ) -> np.ndarray:
    nb, blk = p.n_block_bp, p.background_block
    span0, span1 = nb, size - nb - length
    if span1 <= span0:
        return np.zeros(0, np.int64)
    edges = np.arange(span0, span1, blk)
    widths = np.minimum(edges + blk, span1) - edges
    rate = lam * widths * rng.lognormal(0, p.background_sd, len(edges)) / length
    counts = rng.poisson(rate)
    starts = np.repeat(edges, counts) + (rng.random(counts.sum()) *
                                         np.repeat(widths, counts)).astype(np.int64)
    return starts


def simulate_reads(layout: Layout, cell: str, assay: str) -> dict[str, tuple[np.ndarray, ...]]:
    """Reads (DNase) or fragments (H3K27ac) per chromosome: sorted (starts, ends, strand)."""
    p = layout.params
    c = p.cell_types.index(cell)
    k = SIGNALS.index(assay)
    rng = _rng(p.seed, _S_CELL + c, k)
    if assay == "dnase":
        lam, length, sd_frac = p.dnase_lambda, p.dnase_read_length, 0.25
    else:
        lam, length, sd_frac = p.h3k27ac_lambda, p.h3k27ac_fragment, 0.35
    out = {}
    for chrom in layout.chroms:
        size = layout.sizes[chrom]
        parts = [_background_reads(p, rng, size, lam, length)]
        els = [e for e in layout.elements if e.chrom == chrom]
        if els:
            mids = np.array([(e.start + e.end) / 2 for e in els])
            sds = np.array([(e.end - e.start) * sd_frac for e in els])
            h = np.array([(e.dnase if assay == "dnase" else e.h3k27ac)[c] for e in els])
            # coverage at the centre of n reads ~ N(mid, sd): n * length / (sd sqrt(2 pi))
            n = rng.poisson(h * lam * sds * math.sqrt(2 * math.pi) / length)
            centres = np.repeat(mids, n) + rng.normal(0, 1, n.sum()) * np.repeat(sds, n)
            parts.append(np.round(centres - length / 2).astype(np.int64))
        bl = layout.blacklist[layout.blacklist.chrom == chrom]
        for r in bl.itertuples():
            n = rng.poisson(p.blacklist_height * lam * (r.end - r.start) / length)
            parts.append(rng.integers(r.start, max(r.start + 1, r.end - length), n))
        starts = np.concatenate(parts)
        starts = np.sort(np.clip(starts, p.n_block_bp, size - p.n_block_bp - length))
        if assay == "h3k27ac":
            lengths = np.clip(np.round(rng.normal(length, 20, len(starts))), 100, 250)
            ends = starts + lengths.astype(np.int64)
        else:
            ends = starts + length
        strand = rng.random(len(starts)) < 0.5
        out[chrom] = (starts, ends, strand)
    return out


def coverage_runs(starts: np.ndarray, ends: np.ndarray, size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact per-bp coverage of intervals as runs (start, end, value) tiling ``[0, size)``."""
    pos = np.concatenate([starts, ends, [0, size]])
    delta = np.concatenate([np.ones(len(starts), np.int64), -np.ones(len(ends), np.int64),
                            [0, 0]])
    order = np.argsort(pos, kind="stable")
    pos, cum = pos[order], np.cumsum(delta[order])
    last = np.r_[pos[1:] != pos[:-1], True]  # coverage after all events at a position
    bpos, bval = pos[last], cum[last]
    keep = np.r_[True, bval[1:] != bval[:-1]]  # merge runs of equal value
    bpos, bval = bpos[keep], bval[keep]
    run_start, run_end = bpos, np.r_[bpos[1:], size]
    ok = run_end > run_start
    return run_start[ok], run_end[ok], bval[ok]


def write_bigwig(path: Path, layout: Layout, reads: dict, scale: float) -> None:
    import pyBigWig

    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([(c, layout.sizes[c]) for c in layout.chroms])
    for chrom in layout.chroms:
        s, e, _ = reads[chrom]
        rs, re_, val = coverage_runs(s, e, layout.sizes[chrom])
        bw.addEntries([chrom] * len(rs), rs.astype(np.int64), ends=re_.astype(np.int64),
                      values=val.astype(np.float64) / scale)
    bw.close()


def write_reads_bed(path: Path, layout: Layout, reads: dict) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                 mtime=0, compresslevel=4) as gz:
        for chrom in layout.chroms:
            s, e, strand = reads[chrom]
            df = pd.DataFrame({"chrom": chrom, "start": s, "end": e, "name": ".", "score": 0,
                               "strand": np.where(strand, "+", "-")})
            buf = io.StringIO()
            df.to_csv(buf, sep="\t", header=False, index=False)
            gz.write(buf.getvalue().encode())


def write_cooler(path: Path, layout: Layout, cell: str) -> dict[str, Any]:
    import cooler

    p = layout.params
    c = p.cell_types.index(cell)
    rng = _rng(p.seed, _S_CELL + c, SIGNALS.index("hic"))
    res = p.resolution
    K = -(-p.window // res) + 2  # diagonals kept: the contacts a window can see
    bins_list, pix_list, offset = [], [], 0
    loops: dict[str, list[tuple[int, int, float]]] = {}
    for el in layout.elements:
        if el.kind == "enhancer" and el.open[c]:
            tss = int(layout.genes.tss[el.gene])
            loops.setdefault(el.chrom, []).append(((el.start + el.end) // 2 // res, tss // res,
                                                   el.contact))
    biases = []
    for chrom in layout.chroms:
        size = layout.sizes[chrom]
        nbins = -(-size // res)
        starts = np.arange(nbins, dtype=np.int64) * res
        bins_list.append(pd.DataFrame({"chrom": chrom, "start": starts,
                                       "end": np.minimum(starts + res, size)}))
        bias = rng.lognormal(0, p.hic_bias_sd, nbins)
        n_only = (starts + res <= p.n_block_bp) | (starts >= size - p.n_block_bp)
        bias[n_only] = 0.0
        biases.append(bias)
        i = np.repeat(np.arange(nbins), K + 1)
        k = np.tile(np.arange(K + 1), nbins)
        ok = i + k < nbins
        i, k = i[ok], k[ok]
        j = i + k
        mean = p.hic_depth * bias[i] * bias[j] / (k + 1.0)
        if chrom in loops:
            li = np.array([[min(a, b), max(a, b)] for a, b, _ in loops[chrom]])
            lw = np.array([w for _, _, w in loops[chrom]])
            # pixel index of (lo, hi) in the band: rows before lo, then diagonal offset
            row_len = np.minimum(K + 1, nbins - np.arange(nbins))
            row_start = np.concatenate([[0], np.cumsum(row_len)])
            flat = row_start[li[:, 0]] + (li[:, 1] - li[:, 0])
            valid = (li[:, 1] - li[:, 0]) <= K
            np.add.at(mean, flat[valid], p.hic_depth * p.hic_loop * lw[valid]
                      * (bias[li[valid, 0]] > 0) * (bias[li[valid, 1]] > 0))
        counts = rng.poisson(mean)
        nz = counts > 0
        pix_list.append((i[nz] + offset, j[nz] + offset, counts[nz]))
        offset += nbins
    # sparse far-cis and trans contacts between random bins (weighted by their biases): real
    # maps have them, and without them the matrix is block-banded and ICE cannot converge
    bias = np.concatenate(biases)
    n_far = int(rng.poisson(p.hic_far * offset / 2))
    prob = bias / bias.sum()
    a, b = rng.choice(offset, n_far, p=prob), rng.choice(offset, n_far, p=prob)
    pix_list.append((np.minimum(a, b), np.maximum(a, b), np.ones(n_far, np.int64)))
    b1 = np.concatenate([x[0] for x in pix_list]).astype(np.int64)
    b2 = np.concatenate([x[1] for x in pix_list]).astype(np.int64)
    cnt = np.concatenate([x[2] for x in pix_list]).astype(np.int64)
    key, inv = np.unique(b1 * offset + b2, return_inverse=True)
    pixels = pd.DataFrame({"bin1_id": key // offset, "bin2_id": key % offset,
                           "count": np.bincount(inv, weights=cnt).astype(np.int32)})
    bins = pd.concat(bins_list, ignore_index=True)
    cooler.create_cooler(str(path), bins, pixels, ordered=True, assembly="synth",
                         metadata={"generator": "seq2exp synth", "seed": int(p.seed),
                                   "cell_type": cell})
    info: dict[str, Any] = {"resolution": res, "n_pixels": int(len(pixels)), "balanced": False}
    if p.hic_balance:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, stats = cooler.balance_cooler(cooler.Cooler(str(path)), store=True,
                                             max_iters=p.hic_balance_iters)
        info["balanced"] = True
        info["balance_converged"] = bool(stats.get("converged", False))
        info["balance_var"] = float(stats.get("var", float("nan")))
    return info
