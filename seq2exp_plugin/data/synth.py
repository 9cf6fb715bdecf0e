"""Synthetic benchmark with known causal regulatory elements, written in real file formats.

The generator embodies the causal story of the paper (section 3.1, Figure 1) so that a learned
mask can be judged against ground truth:

- ``R_g``  elements that *could* regulate a gene: they carry real JASPAR activator motifs
  (sampled from the position frequency matrices, release :data:`JASPAR_RELEASE`);
- ``R_m``  elements seen by measurement: DNase/H3K27ac peaks;
- ``R_ag`` the causal ones: motif-bearing, open and acetylated in the cell type, looping to
  the TSS in Hi-C. Only they (and the promoter) enter the expression.

Relative to one gene in one cell type every element in its window gets one class
(``truth/<cell>.bed``): ``promoter`` (its own TSS), ``R_ag``, ``decoy`` (signal without causal
effect on this gene: motif-less/CTCF peaks, other genes' promoters, other genes' enhancers with
only distance-decay contact to this TSS) or ``inactive`` (activator motifs, closed in this cell
type: the other cell type's enhancers and poised elements).

Generative model (``p`` = :class:`SynthParams`; LN(s) = exp(N(0, s^2)))::

    P_g      = (1 + promoter_motif_gain * n_promoter_motifs_g) * LN(promoter_sd)
    pi_gc    = LN(promoter_cell_sd)                                  promoter use per cell
    A_ec     = activity_scale * n_motifs_e * LN(activity_sd)_e * LN(activity_cell_sd)_ec
               if c is in the element's program (open), else 0
    w_eg     = LN(contact_sd)                                        loop to the target TSS
    E_gc     = pi_gc * P_g + sum_{e in R_ag(g, c)} A_ec * w_eg
    expr_gc  = expression_scale * E_gc * 10^(h_g + eps_gc),  eps ~ N(0, noise_sd^2)
    h_g      = half-life effect (log10) of the 8 Xpresso-style features, see _halflife()
    y        = log10(expr + 1)

Signals: peak height (fold change over background) of an open element
``peak_min + peak_scale * (A / activity_scale)^peak_exponent * LN(peak_sd)`` (decoys draw a
pseudo-activity from the same law, so signal strength alone cannot tell them apart; promoters
use ``pi * P``). DNase: simulated reads (``dnase_reads.bed.gz``) = background reads with a
10 kb-block LN(background_sd) rate + reads around each peak; ``dnase.bw`` is exactly their
per-bp coverage divided by the background depth ``lambda = dnase_lambda`` (mean background
coverage, stored in the manifest), so background is ~1 and peaks are fold changes over it.
H3K27ac is made the same way from wider ChIP fragments (not written). Hi-C
(cooler, one resolution): Poisson counts with mean
``hic_depth * b_i * b_j / (|i - j| + 1)`` plus ``hic_depth * hic_loop * w_eg`` at each
(R_ag element bin, TSS bin) pair, within ``window / resolution + 2`` diagonals, plus
``hic_far`` single contacts per bin between random bins (far cis and trans); balanced
(cooler ICE) weights stored.

Everything is deterministic per seed: each component draws from its own stream
``np.random.default_rng([seed, stream])``; text files, bigWigs and the reads are byte-identical
for the same seed (the HDF5 files carry creation dates; their arrays are identical).

Output (``generate(out, ...)`` / ``seq2exp synth --out DIR``; built in a temporary directory
beside ``DIR`` and renamed into place)::

    manifest.yaml          format: seq2exp-synth, version, preset, seed, window, n_genes,
                           cell_types, signals [h3k27ac, dnase, hic], genome {fasta, fai, sizes,
                           chroms, gc_fraction, n_block_bp}, split {train, valid, test},
                           genes {tss, expression, halflife, table}, tracks {<cell>: {h3k27ac,
                           dnase, hic, dnase_reads}}, blacklist, truth {cells {<cell>: bed},
                           columns, classes, elements, expression_terms, class_counts},
                           scaling {lambda {<cell>: {dnase, h3k27ac}}}, hic {resolution,
                           <cell>: balance info}, motifs, dropped_elements, params (all of
                           SynthParams). Paths are relative to the manifest's directory;
                           :func:`load_manifest` makes them absolute.
    genome.fa(.fai) genome.sizes   chr1..chr6 (train), chr3+chr21 (valid), chr22+chrX (test)
    tss.bed                BED6: chrom, tss, tss + 1, gene_id, 0, strand
    expression.tsv         gene_id + one raw expression column per cell type
    halflife.tsv           gene_id + the 8 Xpresso half-life feature columns
    genes.h5ad             seq2exp_plugin.data.genes.build_gene_table on the files above
    blacklist.bed          chrom, start, end, name (artefact regions with strong signal)
    <cell>/dnase.bw, <cell>/h3k27ac.bw, <cell>/dnase_reads.bed.gz (BED6), <cell>/hic.cool
    truth/<cell>.bed       one row per (gene, element overlapping its window): chrom, start,
                           end, name, score, strand, gene_id, class, effect, driver_of, kind,
                           motifs, dnase, h3k27ac, contact, distance (element centre - TSS)
    truth/elements.bed     one row per element: kind, anchor/target gene, planted motifs
                           (name@offset strand), and per cell type open/activity/peak heights
    truth/expression_terms.tsv  gene_id, cell_type, promoter, enhancers, halflife_log10,
                           noise_log10, expression (expression = scale * (promoter + enhancers)
                           * 10^(halflife_log10 + noise_log10))
"""

from __future__ import annotations

import bisect
import dataclasses
import gzip
import io
import math
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_output_dir, check_output_dir

#: Signal tracks in the order the model reads them (SPEC section 1).
SIGNALS = ("h3k27ac", "dnase", "hic")

#: Chromosomes, share of the genes, and split (paper: valid chr3+chr21, test chr22+chrX).
CHROMOSOMES = (
    ("chr1", 0.18, "train"),
    ("chr2", 0.16, "train"),
    ("chr3", 0.10, "valid"),
    ("chr4", 0.13, "train"),
    ("chr5", 0.12, "train"),
    ("chr6", 0.11, "train"),
    ("chr21", 0.05, "valid"),
    ("chr22", 0.06, "test"),
    ("chrX", 0.09, "test"),
)

JASPAR_RELEASE = "JASPAR2024"
#: Cell-type activator programs; cell type i uses group ``i % 4``.
ACTIVATOR_GROUPS = (
    ("erythroid", (("GATA1", "MA0035.5"), ("TAL1::TCF3", "MA0091.2"))),
    ("myeloid", (("SPI1", "MA0080.7"), ("CEBPB", "MA0466.4"))),
    ("hepatic", (("HNF4A", "MA0114.5"), ("FOXA2", "MA0047.4"))),
    ("myogenic", (("MEF2C", "MA0497.2"), ("MYOD1", "MA0499.3"))),
)
#: Activator used by enhancers of every program (AP-1).
SHARED_ACTIVATOR = ("FOS::JUN", "MA0099.4")
#: Core-promoter motifs: their count sets part of the promoter strength.
PROMOTER_MOTIFS = (("SP1", "MA0079.5"), ("NFYA", "MA0060.4"), ("TBP", "MA0108.3"))
#: Non-activator motif carried by half of the decoy peaks (insulator sites are strong DNase peaks).
DECOY_MOTIF = ("CTCF", "MA0139.2")

#: Every planted motif: name -> JASPAR matrix id.
MOTIF_IDS = dict([m for _, grp in ACTIVATOR_GROUPS for m in grp]
                 + [SHARED_ACTIVATOR, *PROMOTER_MOTIFS, DECOY_MOTIF])

CLASSES = ("promoter", "R_ag", "decoy", "inactive")
TRUTH_COLUMNS = (
    "chrom", "start", "end", "name", "score", "strand", "gene_id", "class", "effect",
    "driver_of", "kind", "motifs", "dnase", "h3k27ac", "contact", "distance",
)

# Random streams (one per component, so changing one part leaves the others unchanged).
_S_LAYOUT, _S_GENOME, _S_EXPR, _S_HALFLIFE, _S_CELL = 1, 2, 3, 4, 100
_CODE_N = 4
_LETTERS = np.frombuffer(b"ACGTNacgtn", dtype=np.uint8)
_LINE = 60


@dataclass
class SynthParams:
    """All knobs of the generator (written to the manifest). See the module docstring."""

    preset: str = "tiny"
    n_genes: int = 20
    window: int = 8000
    seed: int = 0
    cell_types: tuple[str, ...] = ("synthA", "synthB")
    # layout ---------------------------------------------------------------------------
    #: Distance between consecutive TSSs, as a fraction of the window (so windows overlap).
    gene_spacing: tuple[float, float] = (0.5, 0.9)
    #: No element of a gene lies closer than this to its TSS (the model keeps the central 2 kb).
    min_tss_distance: int = 1200
    #: Element-to-TSS distance: min_tss_distance + Exponential(scale * window / 2).
    distance_scale: float = 0.33
    element_width: tuple[int, int] = (200, 400)
    promoter_width: int = 500
    #: Minimal free gap between any two elements (keeps signal of one off its neighbour).
    element_gap: int = 500
    #: Per gene: 1 + Poisson(enhancers), Poisson(poised), Poisson(decoys).
    enhancers_per_gene: float = 1.0
    poised_per_gene: float = 0.7
    decoys_per_gene: float = 1.0
    #: Probability that an enhancer is active in every cell type (else in one).
    p_shared: float = 0.2
    motifs_per_element: tuple[int, int] = (1, 4)
    #: Fraction of decoys carrying CTCF motifs (others carry no planted motif).
    p_ctcf_decoy: float = 0.5
    #: Blacklisted artefact regions (high signal everywhere): count, width as window fraction.
    n_blacklist: int = 3
    blacklist_width: tuple[float, float] = (0.05, 0.1)
    blacklist_height: float = 40.0
    # expression -----------------------------------------------------------------------
    promoter_sd: float = 0.8
    promoter_motif_gain: float = 0.5
    promoter_cell_sd: float = 0.3
    activity_scale: float = 2.0
    activity_sd: float = 0.5
    activity_cell_sd: float = 0.2
    contact_sd: float = 0.35
    expression_scale: float = 10.0
    #: Expression noise, log10 units.
    noise_sd: float = 0.08
    # signals --------------------------------------------------------------------------
    dnase_lambda: float = 1.0
    dnase_read_length: int = 50
    h3k27ac_lambda: float = 0.8
    h3k27ac_fragment: int = 170
    background_block: int = 10000
    background_sd: float = 0.25
    peak_min: float = 8.0
    peak_scale: float = 8.0
    peak_exponent: float = 0.7
    peak_sd: float = 0.35
    # Hi-C -----------------------------------------------------------------------------
    #: Bin size; None = the largest of 5000/2000/1000/500/250 with >= 8 bins per window.
    hic_resolution: int | None = None
    hic_depth: float = 100.0
    hic_loop: float = 0.5
    hic_bias_sd: float = 0.15
    #: Far-cis/trans contacts per bin (uniform between random bins).
    hic_far: float = 20.0
    hic_balance: bool = True
    #: ICE iterations allowed (cooler's tolerance 1e-5 on the marginal variance).
    hic_balance_iters: int = 1000
    # genome ---------------------------------------------------------------------------
    gc: float = 0.42
    gc_sd: float = 0.025
    gc_block: int = 50000
    cpg_keep: float = 0.25
    promoter_gc: float = 0.6
    repeat_fraction: float = 0.08
    repeat_length: int = 300
    repeat_families: int = 4
    repeat_divergence: float = 0.15
    #: N block at each chromosome end (bp); None = min(10000, window // 2).
    n_block: int | None = None

    def __post_init__(self) -> None:
        self.cell_types = tuple(str(c) for c in self.cell_types)
        self.gene_spacing = tuple(float(x) for x in self.gene_spacing)
        self.element_width = tuple(int(x) for x in self.element_width)
        self.motifs_per_element = tuple(int(x) for x in self.motifs_per_element)
        self.blacklist_width = tuple(float(x) for x in self.blacklist_width)
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {sorted(PRESETS)}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.n_genes < len(CHROMOSOMES):
            raise ValueError(
                f"n_genes must be >= {len(CHROMOSOMES)} (one per chromosome), got {self.n_genes}")
        if self.window < 4000:
            raise ValueError(f"window must be >= 4000 bp, got {self.window}")
        if not self.cell_types:
            raise ValueError("cell_types is empty")
        if len(set(self.cell_types)) != len(self.cell_types):
            raise ValueError(f"cell_types has duplicates: {self.cell_types}")
        for c in self.cell_types:
            if not c or not all(ch.isalnum() or ch in "_-." for ch in c) or c in ("truth",):
                raise ValueError(f"cell type name {c!r} must be a plain name ([A-Za-z0-9_.-])")
        lo, hi = self.gene_spacing
        if not 0 < lo <= hi < 1:
            raise ValueError(f"gene_spacing must satisfy 0 < lo <= hi < 1 (windows overlap), got "
                             f"{self.gene_spacing}")
        if self.window // 2 - self.min_tss_distance < self.element_width[1] + 100:
            raise ValueError(f"window {self.window} leaves no room for elements beyond "
                             f"min_tss_distance {self.min_tss_distance}")
        if self.hic_resolution is not None and self.hic_resolution < 1:
            raise ValueError(f"hic_resolution must be positive, got {self.hic_resolution}")

    @property
    def resolution(self) -> int:
        if self.hic_resolution is not None:
            return int(self.hic_resolution)
        for res in (5000, 2000, 1000, 500, 250):
            if self.window // res >= 8:
                return res
        return 250

    @property
    def n_block_bp(self) -> int:
        return int(self.n_block) if self.n_block is not None else min(10000, self.window // 2)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        out["resolved_hic_resolution"] = self.resolution
        out["resolved_n_block"] = self.n_block_bp
        return out

    @classmethod
    def from_preset(cls, preset: str = "tiny", **overrides: Any) -> "SynthParams":
        """The preset's values, with any non-None ``overrides`` (e.g. ``n_genes``, ``window``)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        kw = dict(PRESETS[preset])
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(preset=preset, **kw)


#: tiny: seconds, for tests; bench: >= 2,000 genes at 200 kb (one gene per 50-150 kb).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(n_genes=20, window=8000, gene_spacing=(0.5, 0.9), enhancers_per_gene=1.0,
                 poised_per_gene=0.7, decoys_per_gene=1.0, n_blacklist=3),
    "bench": dict(n_genes=2000, window=200_000, gene_spacing=(0.25, 0.75),
                  enhancers_per_gene=1.5, poised_per_gene=1.0, decoys_per_gene=1.5,
                  n_blacklist=20, blacklist_width=(0.005, 0.015)),
}


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *stream])


# ------------------------------------------------------------------------------- motifs
@lru_cache(maxsize=None)
def _load_motif(matrix_id: str) -> np.ndarray:
    """Probability matrix ``(4, width)`` (A, C, G, T) of a JASPAR motif, pseudocount 0.5 %."""
    from pyjaspar import jaspardb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        motif = jaspardb(release=JASPAR_RELEASE).fetch_motif_by_id(matrix_id)
    if motif is None:
        raise KeyError(f"JASPAR motif {matrix_id} not found in {JASPAR_RELEASE}")
    counts = np.array([list(motif.counts[b]) for b in "ACGT"], dtype=np.float64)
    probs = counts / counts.sum(axis=0, keepdims=True)
    probs = (probs + 0.005) / (1 + 4 * 0.005)
    return probs


def _sample_motif(rng: np.random.Generator, probs: np.ndarray, strand: str) -> np.ndarray:
    cum = np.cumsum(probs, axis=0)
    r = rng.random(probs.shape[1])
    codes = np.minimum((r[None, :] > cum).sum(axis=0), 3).astype(np.uint8)
    if strand == "-":
        codes = (3 - codes[::-1]).astype(np.uint8)
    return codes


def cell_motifs(cell_index: int) -> tuple[tuple[str, str], ...]:
    """Activator motifs (name, JASPAR id) of the program of cell type ``cell_index``."""
    return ACTIVATOR_GROUPS[cell_index % len(ACTIVATOR_GROUPS)][1]


# ------------------------------------------------------------------------------- layout
class _Occupancy:
    """Non-overlapping intervals on one chromosome, with a minimal gap between them."""

    def __init__(self, gap: int) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.gap = gap

    def free(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.starts, start)
        if i > 0 and self.ends[i - 1] + self.gap > start:
            return False
        if i < len(self.starts) and self.starts[i] < end + self.gap:
            return False
        return True

    def add(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)


@dataclass
class _Element:
    eid: str
    chrom: str
    start: int
    end: int
    kind: str  # promoter | enhancer | poised | decoy
    gene: int  # promoter's gene / enhancer's target / anchor gene of poised and decoys
    open: np.ndarray  # (n_cells,) bool
    activity: np.ndarray  # (n_cells,) A_ec (0 where closed); pseudo-activity for decoys
    contact: float = 0.0  # w_eg to the target TSS (enhancers only)
    motifs: list = field(default_factory=list)  # [(name, offset, strand, codes)]
    dnase: np.ndarray | None = None  # (n_cells,) peak height, 0 where closed
    h3k27ac: np.ndarray | None = None


@dataclass
class Layout:
    """Chromosomes, genes and elements of one synthetic genome (in memory)."""

    params: SynthParams
    chroms: list[str]
    sizes: dict[str, int]
    genes: pd.DataFrame  # gene_id, chrom, tss, strand, split, promoter_strength, n_promoter_motifs
    elements: list[_Element]
    blacklist: pd.DataFrame  # chrom, start, end
    dropped: int = 0


def _allocate_genes(n: int) -> list[int]:
    weights = np.array([w for _, w, _ in CHROMOSOMES])
    base = np.ones(len(weights), dtype=int)
    rest = n - base.sum()
    share = weights / weights.sum() * rest
    alloc = base + np.floor(share).astype(int)
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    for i in order[: n - alloc.sum()]:
        alloc[i] += 1
    return alloc.tolist()


def _peak_height(p: SynthParams, rng: np.random.Generator, strength: np.ndarray) -> np.ndarray:
    noise = rng.lognormal(0.0, p.peak_sd, size=strength.shape)
    return np.where(strength > 0,
                    p.peak_min + p.peak_scale * np.power(strength, p.peak_exponent) * noise, 0.0)


def make_layout(p: SynthParams) -> Layout:
    """Place genes and elements, draw programs, motifs, activities, contacts and peak heights."""
    rng = _rng(p.seed, _S_LAYOUT)
    n_cells = len(p.cell_types)
    half = p.window // 2
    flank = p.n_block_bp + half + p.window // 4
    chroms, sizes, gene_rows = [], {}, []
    for (chrom, _, split), n in zip(CHROMOSOMES, _allocate_genes(p.n_genes)):
        gaps = rng.uniform(*p.gene_spacing, size=n - 1) * p.window
        tss = flank + np.concatenate([[0.0], np.cumsum(gaps)]).round().astype(np.int64)
        strands = rng.choice(np.array(["+", "-"]), size=n)
        chroms.append(chrom)
        sizes[chrom] = int(tss[-1] + flank)
        for t, s in zip(tss, strands):
            gene_rows.append((chrom, int(t), str(s), split))
    genes = pd.DataFrame(gene_rows, columns=["chrom", "tss", "strand", "split"])
    genes.insert(0, "gene_id", [f"SYNG{i + 1:05d}" for i in range(len(genes))])
    n_genes = len(genes)

    # promoters (core-promoter motifs set part of the strength P_g)
    prom_probs = [_load_motif(mid) for _, mid in PROMOTER_MOTIFS]
    has_pm = rng.random((n_genes, len(PROMOTER_MOTIFS))) < 0.5
    n_pm = has_pm.sum(axis=1)
    strength = (1 + p.promoter_motif_gain * n_pm) * rng.lognormal(0, p.promoter_sd, n_genes)
    genes["n_promoter_motifs"] = n_pm
    genes["promoter_strength"] = strength
    pi = rng.lognormal(0, p.promoter_cell_sd, (n_genes, n_cells))

    occ = {c: _Occupancy(p.element_gap) for c in chroms}
    elements: list[_Element] = []
    for g in genes.itertuples():
        w = p.promoter_width
        up = int(w * 0.7)
        start = g.tss - up if g.strand == "+" else g.tss - (w - up)
        el = _Element(f"P{g.Index + 1:05d}", g.chrom, start, start + w, "promoter", g.Index,
                      np.ones(n_cells, bool), pi[g.Index] * strength[g.Index])
        for k, (name, _) in enumerate(PROMOTER_MOTIFS):
            if has_pm[g.Index, k]:
                strand = str(rng.choice(["+", "-"]))
                slot = w // len(PROMOTER_MOTIFS)
                off = k * slot + int(rng.integers(0, slot - prom_probs[k].shape[1]))
                el.motifs.append((name, off, strand, _sample_motif(rng, prom_probs[k], strand)))
        occ[g.chrom].add(el.start, el.end)
        elements.append(el)

    def place(gi: int, width: int) -> tuple[int, int] | None:
        chrom, tss = genes.chrom[gi], int(genes.tss[gi])
        for _ in range(50):
            d = p.min_tss_distance + rng.exponential(p.distance_scale * half)
            if d + width > half - 50:
                continue
            start = int(tss + d) if rng.random() < 0.5 else int(tss - d - width)
            if occ[chrom].free(start, start + width):
                occ[chrom].add(start, start + width)
                return start, start + width
        return None

    dropped = 0
    # blacklisted artefacts: inside gene windows, outside every promoter keep zone
    bl_rows = []
    for gi in rng.choice(n_genes, size=min(p.n_blacklist, n_genes), replace=False):
        width = int(np.clip(rng.uniform(*p.blacklist_width) * p.window, 300, 5000))
        pos = place(int(gi), width)
        if pos is None:
            dropped += 1
            continue
        bl_rows.append((genes.chrom[gi], *pos))
    blacklist = pd.DataFrame(bl_rows, columns=["chrom", "start", "end"])

    # counts per gene; guarantee every class in every cell type
    n_enh = 1 + rng.poisson(p.enhancers_per_gene, n_genes)
    n_poised = rng.poisson(p.poised_per_gene, n_genes)
    n_decoy = rng.poisson(p.decoys_per_gene, n_genes)
    n_poised[0] = max(n_poised[0], 1)
    n_decoy[0] = max(n_decoy[0], 1)
    programs = []  # per enhancer: tuple of cell indices
    for _ in range(int(n_enh.sum())):
        if n_cells == 1 or rng.random() < p.p_shared:
            programs.append(tuple(range(n_cells)))
        else:
            programs.append((int(rng.integers(n_cells)),))
    for c in range(min(n_cells, len(programs))):  # each cell type: >= 1 specific enhancer
        if n_cells > 1 and not any(pr == (c,) for pr in programs):
            programs[c] = (c,)

    def motif_set(program: tuple[int, ...]) -> list[tuple[str, str]]:
        pool = [SHARED_ACTIVATOR]
        for c in program:
            pool.extend(m for m in cell_motifs(c) if m not in pool)
        return pool

    def add_motifs(el: _Element, pool: list[tuple[str, str]], n: int,
                   first: tuple[str, str] | None = None) -> None:
        width = el.end - el.start
        slot = width // n
        for k in range(n):
            name, mid = first if (k == 0 and first) else pool[int(rng.integers(len(pool)))]
            probs = _load_motif(mid)
            strand = str(rng.choice(["+", "-"]))
            off = k * slot + int(rng.integers(0, max(1, slot - probs.shape[1])))
            el.motifs.append((name, off, strand, _sample_motif(rng, probs, strand)))

    lo_m, hi_m = p.motifs_per_element
    counter = {"enhancer": 0, "poised": 0, "decoy": 0}
    prefix = {"enhancer": "E", "poised": "Q", "decoy": "D"}

    def new_element(kind: str, gi: int) -> _Element | None:
        width = int(rng.integers(p.element_width[0], p.element_width[1] + 1))
        pos = place(gi, width)
        if pos is None:
            return None
        counter[kind] += 1
        return _Element(f"{prefix[kind]}{counter[kind]:06d}", str(genes.chrom[gi]), pos[0],
                        pos[1], kind, gi, np.zeros(n_cells, bool), np.zeros(n_cells))

    k_enh = 0
    for gi in range(n_genes):
        for _ in range(int(n_enh[gi])):
            program = programs[k_enh]
            k_enh += 1
            el = new_element("enhancer", gi)
            if el is None:
                dropped += 1
                continue
            n_m = int(rng.integers(lo_m, hi_m + 1))
            # an enhancer of several cell types starts with the shared activator (AP-1), so
            # each of its cell types has a motif it can read
            add_motifs(el, motif_set(program), n_m,
                       SHARED_ACTIVATOR if len(program) > 1 else None)
            u = rng.lognormal(0, p.activity_sd)
            v = rng.lognormal(0, p.activity_cell_sd, n_cells)
            el.open[list(program)] = True
            el.activity = np.where(el.open, p.activity_scale * n_m * u * v, 0.0)
            el.contact = float(rng.lognormal(0, p.contact_sd))
            elements.append(el)
    for gi in range(n_genes):
        for _ in range(int(n_poised[gi])):
            el = new_element("poised", gi)
            if el is None:
                dropped += 1
                continue
            program = (int(rng.integers(n_cells)),)
            add_motifs(el, motif_set(program), int(rng.integers(lo_m, hi_m + 1)))
            elements.append(el)
        for _ in range(int(n_decoy[gi])):
            el = new_element("decoy", gi)
            if el is None:
                dropped += 1
                continue
            n_m = int(rng.integers(lo_m, hi_m + 1))  # pseudo-activity drawn like an enhancer's
            if rng.random() < p.p_ctcf_decoy:
                add_motifs(el, [DECOY_MOTIF], int(rng.integers(1, 3)))
            u = rng.lognormal(0, p.activity_sd)
            v = rng.lognormal(0, p.activity_cell_sd, n_cells)
            el.open[:] = True
            el.activity = p.activity_scale * n_m * u * v
            elements.append(el)

    for el in elements:
        rel = el.activity / p.activity_scale if el.kind != "promoter" else el.activity
        rel = np.where(el.open, rel, 0.0)
        el.dnase = _peak_height(p, rng, rel)
        el.h3k27ac = _peak_height(p, rng, rel)
    elements.sort(key=lambda e: (chroms.index(e.chrom), e.start))
    return Layout(p, chroms, sizes, genes, elements, blacklist, dropped)


# --------------------------------------------------------------------------- expression
def _halflife(p: SynthParams, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Eight Xpresso-style mRNA half-life features and their log10 effect on expression."""
    rng = _rng(p.seed, _S_HALFLIFE)
    corr = np.eye(5)
    corr[1, 2] = corr[2, 1] = 0.4  # CDS and intron length
    corr[1, 4] = corr[4, 1] = -0.5  # CDS length and ORF exon density
    z = rng.multivariate_normal(np.zeros(5), corr, size=n)
    feats = pd.DataFrame({
        "UTR5LEN_log10zscore": z[:, 0],
        "CDSLEN_log10zscore": z[:, 1],
        "INTRONLEN_log10zscore": z[:, 2],
        "UTR3LEN_log10zscore": z[:, 3],
        "UTR5GC": rng.beta(12, 8, n),
        "CDSGC": rng.beta(26, 24, n),
        "UTR3GC": rng.beta(17, 23, n),
        "ORFEXONDENSITY_log10zscore": z[:, 4],
    })
    effect = (-0.06 * feats["UTR3LEN_log10zscore"] + 0.04 * feats["ORFEXONDENSITY_log10zscore"]
              - 0.03 * feats["INTRONLEN_log10zscore"] + 0.3 * (feats["CDSGC"] - 0.52)).to_numpy()
    return feats, effect


def expression_terms(layout: Layout) -> pd.DataFrame:
    """Per gene and cell type: promoter term, enhancer sum, half-life and noise (log10), expr."""
    p = layout.params
    n_genes, n_cells = len(layout.genes), len(p.cell_types)
    promoter = np.zeros((n_genes, n_cells))
    enhancers = np.zeros((n_genes, n_cells))
    for el in layout.elements:
        if el.kind == "promoter":
            promoter[el.gene] = el.activity
        elif el.kind == "enhancer":
            enhancers[el.gene] += el.activity * el.contact
    _, hl = _halflife(p, n_genes)
    noise = _rng(p.seed, _S_EXPR).normal(0, p.noise_sd, (n_genes, n_cells))
    expr = p.expression_scale * (promoter + enhancers) * 10 ** (hl[:, None] + noise)
    rows = []
    for c, cell in enumerate(p.cell_types):
        rows.append(pd.DataFrame({
            "gene_id": layout.genes.gene_id, "cell_type": cell, "promoter": promoter[:, c],
            "enhancers": enhancers[:, c], "halflife_log10": hl, "noise_log10": noise[:, c],
            "expression": expr[:, c]}))
    return pd.concat(rows, ignore_index=True)


def truth_table(layout: Layout, cell: str) -> pd.DataFrame:
    """Every element overlapping each gene's window, classed relative to that gene (BED6+)."""
    p = layout.params
    c = p.cell_types.index(cell)
    els = layout.elements
    genes = layout.genes
    by_chrom: dict[str, list[int]] = {}
    for i, el in enumerate(els):
        by_chrom.setdefault(el.chrom, []).append(i)
    starts = {ch: np.array([els[i].start for i in idx]) for ch, idx in by_chrom.items()}
    ends = {ch: np.array([els[i].end for i in idx]) for ch, idx in by_chrom.items()}
    # elements are sorted and disjoint: ends are sorted too
    rows = []
    for g in genes.itertuples():
        w0 = g.tss - p.window // 2
        w1 = w0 + p.window
        idx = by_chrom.get(g.chrom, [])
        if not idx:
            continue
        a = int(np.searchsorted(ends[g.chrom], w0, side="right"))
        b = int(np.searchsorted(starts[g.chrom], w1, side="left"))
        for i in idx[a:b]:
            el = els[i]
            causal = el.kind == "enhancer" and el.open[c] and el.gene == g.Index
            if el.kind == "promoter" and el.gene == g.Index:
                cls, effect = "promoter", float(el.activity[c])
            elif causal:
                cls, effect = "R_ag", float(el.activity[c] * el.contact)
            elif el.open[c]:
                cls, effect = "decoy", 0.0
            else:  # closed here: enhancers of other programs and poised elements (motifs)
                cls, effect = "inactive", 0.0
            driver = "."
            if el.kind == "enhancer" and el.open[c]:
                driver = genes.gene_id[el.gene]
            elif el.kind == "promoter":
                driver = genes.gene_id[el.gene]
            motifs = ",".join(m[0] for m in el.motifs) or "."
            contact = el.contact if causal else 0.0
            strand = genes.strand[el.gene] if el.kind == "promoter" else "."
            rows.append((el.chrom, el.start, el.end, el.eid, 0, strand, g.gene_id, cls,
                         effect, driver, el.kind, motifs, float(el.dnase[c]),
                         float(el.h3k27ac[c]), contact, (el.start + el.end) // 2 - g.tss))
    return pd.DataFrame(rows, columns=list(TRUTH_COLUMNS))


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


def _write_bigwig(path: Path, layout: Layout, reads: dict, scale: float) -> None:
    import pyBigWig

    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([(c, layout.sizes[c]) for c in layout.chroms])
    for chrom in layout.chroms:
        s, e, _ = reads[chrom]
        rs, re_, val = coverage_runs(s, e, layout.sizes[chrom])
        bw.addEntries([chrom] * len(rs), rs.astype(np.int64), ends=re_.astype(np.int64),
                      values=val.astype(np.float64) / scale)
    bw.close()


def _write_reads_bed(path: Path, layout: Layout, reads: dict) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                 mtime=0, compresslevel=4) as gz:
        for chrom in layout.chroms:
            s, e, strand = reads[chrom]
            df = pd.DataFrame({"chrom": chrom, "start": s, "end": e, "name": ".", "score": 0,
                               "strand": np.where(strand, "+", "-")})
            buf = io.StringIO()
            df.to_csv(buf, sep="\t", header=False, index=False)
            gz.write(buf.getvalue().encode())


def _write_cooler(path: Path, layout: Layout, cell: str) -> dict[str, Any]:
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


# ------------------------------------------------------------------------------ writers
def _write_tsv(df: pd.DataFrame, path: Path, header: bool = True) -> None:
    df.to_csv(path, sep="\t", index=False, header=header, float_format="%.6g",
              lineterminator="\n")


def _write_truth(path: Path, df: pd.DataFrame) -> None:
    with open(path, "w") as fh:
        fh.write("#" + "\t".join(TRUTH_COLUMNS) + "\n")
        df.to_csv(fh, sep="\t", index=False, header=False, float_format="%.6g",
                  lineterminator="\n")


def _elements_table(layout: Layout) -> pd.DataFrame:
    p = layout.params
    rows = []
    for el in layout.elements:
        strand = layout.genes.strand[el.gene] if el.kind == "promoter" else "."
        row = {"chrom": el.chrom, "start": el.start, "end": el.end, "name": el.eid, "score": 0,
               "strand": strand, "kind": el.kind, "gene_id": layout.genes.gene_id[el.gene],
               "motifs": ";".join(f"{m[0]}@{m[1]}{m[2]}" for m in el.motifs) or ".",
               "contact": el.contact}
        for c, cell in enumerate(p.cell_types):
            row[f"open_{cell}"] = int(el.open[c])
            row[f"activity_{cell}"] = float(el.activity[c]) if el.kind != "decoy" else 0.0
            row[f"dnase_{cell}"] = float(el.dnase[c])
            row[f"h3k27ac_{cell}"] = float(el.h3k27ac[c])
        rows.append(row)
    return pd.DataFrame(rows)


def _build_gene_table(tmp: Path, final: Path, cells: tuple[str, ...]) -> bool:
    """``genes.h5ad`` through the project's builder; provenance paths point at ``final``."""
    try:
        from seq2exp_plugin.data.genes import build_gene_table, write_gene_table
    except ImportError as err:  # the module is written by another engineer
        if getattr(err, "name", "") != "seq2exp_plugin.data.genes":
            raise
        warnings.warn("seq2exp_plugin.data.genes is not available: genes.h5ad not written")
        return False
    adata = build_gene_table(
        tss=tmp / "tss.bed",
        expression=tmp / "expression.tsv",
        tracks={cell: {"dnase": tmp / cell / "dnase.bw", "h3k27ac": tmp / cell / "h3k27ac.bw"}
                for cell in cells},
        halflife=tmp / "halflife.tsv",
        split=None,
        out=None,
    )
    # the builder records absolute source paths: make them those of the renamed directory
    prefix = os.path.abspath(tmp)

    def moved(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: moved(v) for k, v in x.items()}
        if isinstance(x, str) and x.startswith(prefix):
            return str(final) + x[len(prefix):]
        return x

    adata.uns["seq2exp"] = moved(dict(adata.uns.get("seq2exp", {})))
    write_gene_table(adata, tmp / "genes.h5ad")
    return True


def _check_classes(truths: dict[str, pd.DataFrame]) -> None:
    for cell, df in truths.items():
        missing = [c for c in CLASSES if not (df["class"] == c).any()]
        if missing:
            raise RuntimeError(f"synthetic cell type {cell} has no {missing} elements; "
                               "use more genes or a larger window")


def _write_all(tmp: Path, final: Path, p: SynthParams, build_genes: bool) -> dict[str, Any]:
    import pyfaidx
    import yaml

    layout = make_layout(p)
    truths = {cell: truth_table(layout, cell) for cell in p.cell_types}
    _check_classes(truths)

    gc = write_genome(layout, tmp / "genome.fa")
    pyfaidx.Faidx(str(tmp / "genome.fa")).close()
    with open(tmp / "genome.sizes", "w") as fh:
        for chrom in layout.chroms:
            fh.write(f"{chrom}\t{layout.sizes[chrom]}\n")

    genes = layout.genes
    tss = pd.DataFrame({"chrom": genes.chrom, "start": genes.tss, "end": genes.tss + 1,
                        "name": genes.gene_id, "score": 0, "strand": genes.strand})
    _write_tsv(tss, tmp / "tss.bed", header=False)
    terms = expression_terms(layout)
    expr = terms.pivot(index="gene_id", columns="cell_type", values="expression")
    expr = expr.loc[genes.gene_id, list(p.cell_types)].reset_index()
    expr.columns.name = None
    _write_tsv(expr, tmp / "expression.tsv")
    feats, _ = _halflife(p, len(genes))
    feats.insert(0, "gene_id", genes.gene_id.to_numpy())
    _write_tsv(feats, tmp / "halflife.tsv")
    _write_tsv(layout.blacklist.assign(name=[f"BL{i + 1}" for i in range(len(layout.blacklist))]),
               tmp / "blacklist.bed", header=False)

    (tmp / "truth").mkdir()
    for cell, df in truths.items():
        _write_truth(tmp / "truth" / f"{cell}.bed", df)
    _write_tsv(terms, tmp / "truth" / "expression_terms.tsv")
    el = _elements_table(layout)
    with open(tmp / "truth" / "elements.bed", "w") as fh:
        fh.write("#" + "\t".join(el.columns) + "\n")
        el.to_csv(fh, sep="\t", index=False, header=False, float_format="%.6g",
                  lineterminator="\n")

    lambdas: dict[str, dict[str, float]] = {}
    hic_info: dict[str, Any] = {}
    for cell in p.cell_types:
        d = tmp / cell
        d.mkdir()
        lambdas[cell] = {}
        for assay in ("dnase", "h3k27ac"):
            reads = simulate_reads(layout, cell, assay)
            lam = p.dnase_lambda if assay == "dnase" else p.h3k27ac_lambda
            lambdas[cell][assay] = lam
            _write_bigwig(d / f"{assay}.bw", layout, reads, lam)
            if assay == "dnase":
                _write_reads_bed(d / "dnase_reads.bed.gz", layout, reads)
            del reads
        hic_info[cell] = _write_cooler(d / "hic.cool", layout, cell)

    wrote_table = build_genes and _build_gene_table(tmp, final, p.cell_types)

    n_class = {cell: {k: int((df["class"] == k).sum()) for k in CLASSES}
               for cell, df in truths.items()}
    manifest = {
        "format": "seq2exp-synth",
        "version": 1,
        "note": "paths are relative to this file's directory",
        "preset": p.preset,
        "seed": int(p.seed),
        "window": int(p.window),
        "n_genes": int(len(genes)),
        "cell_types": list(p.cell_types),
        "signals": list(SIGNALS),
        "genome": {"fasta": "genome.fa", "fai": "genome.fa.fai", "sizes": "genome.sizes",
                   "chroms": {c: int(layout.sizes[c]) for c in layout.chroms},
                   "gc_fraction": round(float(gc), 4),
                   "n_block_bp": p.n_block_bp},
        "split": {s: [c for c, _, sp in CHROMOSOMES if sp == s]
                  for s in ("train", "valid", "test")},
        "genes": {"tss": "tss.bed", "expression": "expression.tsv", "halflife": "halflife.tsv",
                  "table": "genes.h5ad" if wrote_table else None},
        "tracks": {cell: {"h3k27ac": f"{cell}/h3k27ac.bw", "dnase": f"{cell}/dnase.bw",
                          "hic": f"{cell}/hic.cool", "dnase_reads": f"{cell}/dnase_reads.bed.gz"}
                   for cell in p.cell_types},
        "blacklist": "blacklist.bed",
        "truth": {"cells": {cell: f"truth/{cell}.bed" for cell in p.cell_types},
                  "columns": list(TRUTH_COLUMNS),
                  "classes": list(CLASSES),
                  "elements": "truth/elements.bed",
                  "expression_terms": "truth/expression_terms.tsv",
                  "class_counts": n_class},
        "scaling": {
            "dnase": "dnase.bw = per-bp coverage of dnase_reads.bed.gz / lambda (background depth)",
            "h3k27ac": "h3k27ac.bw = per-bp coverage of simulated fragments / lambda",
            "lambda": {cell: {k: float(v) for k, v in lam.items()}
                       for cell, lam in lambdas.items()},
            "expression": "log10(expression + 1) is the model target",
        },
        "hic": {"resolution": p.resolution, **{cell: info for cell, info in hic_info.items()}},
        "motifs": {
            "jaspar_release": JASPAR_RELEASE,
            "activators": {cell: [f"{n} {m}" for n, m in cell_motifs(i)] + [
                f"{SHARED_ACTIVATOR[0]} {SHARED_ACTIVATOR[1]}"]
                for i, cell in enumerate(p.cell_types)},
            "promoter": [f"{n} {m}" for n, m in PROMOTER_MOTIFS],
            "decoy": f"{DECOY_MOTIF[0]} {DECOY_MOTIF[1]}",
        },
        "dropped_elements": int(layout.dropped),
        "params": p.to_dict(),
    }
    with open(tmp / "manifest.yaml", "w") as fh:
        yaml.safe_dump(manifest, fh, sort_keys=False)
    return manifest


def generate(out: str | os.PathLike, params: SynthParams | None = None, *, force: bool = False,
             build_genes: bool = True, **overrides: Any) -> dict[str, Any]:
    """Write the synthetic benchmark to ``out`` atomically and return its manifest.

    ``params`` defaults to ``SynthParams.from_preset(overrides.pop("preset", "tiny"),
    **overrides)``. The data are built in a temporary directory beside ``out`` and renamed
    into place at the end; an existing non-empty ``out`` is refused unless ``force``.
    """
    if params is None:
        params = SynthParams.from_preset(overrides.pop("preset", "tiny"), **overrides)
    elif overrides:
        raise TypeError("give either params or keyword overrides, not both")
    out = check_output_dir(Path(out).absolute(), force, "--out")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"parent directory of {out} does not exist: {out.parent}")
    with atomic_output_dir(out, force=force) as tmp:
        manifest = _write_all(tmp, out, params, build_genes)
    return manifest


def load_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``manifest.yaml`` (the file or its directory), with every path made absolute."""
    import yaml

    path = Path(path)
    if path.is_dir():
        path = path / "manifest.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no synth manifest at {path}")
    with open(path) as fh:
        m = yaml.safe_load(fh)
    if not isinstance(m, dict) or m.get("format") != "seq2exp-synth":
        raise ValueError(f"{path} is not a seq2exp synth manifest (format: seq2exp-synth)")
    root = path.parent

    def ab(x: str | None) -> str | None:
        return None if x is None else str(root / x)

    for key in ("fasta", "fai", "sizes"):
        m["genome"][key] = ab(m["genome"][key])
    for key in ("tss", "expression", "halflife", "table"):
        m["genes"][key] = ab(m["genes"][key])
    m["tracks"] = {cell: {k: ab(v) for k, v in t.items()} for cell, t in m["tracks"].items()}
    m["truth"]["cells"] = {cell: ab(v) for cell, v in m["truth"]["cells"].items()}
    for key in ("elements", "expression_terms"):
        m["truth"][key] = ab(m["truth"][key])
    m["blacklist"] = ab(m["blacklist"])
    m["root"] = str(root)
    return m
