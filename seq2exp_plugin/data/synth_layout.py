"""The synthetic benchmark's generative model: parameters, where elements and genes lie, what
drives each gene's expression, and the ground truth per gene and cell type.

(Over 500 lines on purpose: the generative model is one piece - layout, expression and truth
are drawn from the same random streams, so splitting it would scatter one model's parameters.)

:mod:`seq2exp_plugin.data.synth` describes the model and writes it out;
:mod:`seq2exp_plugin.data.synth_files` renders the genome and the signal tracks.
"""

from __future__ import annotations

import bisect
import dataclasses
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError


#: Signal tracks in the order the model reads them (the paper's and the authors' code's).
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
_S_LAYOUT, _S_GENOME, _S_EXPR, _S_HALFLIFE, _S_SILENT, _S_CRISPR, _S_CELL = 1, 2, 3, 4, 5, 6, 100


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
    #: Share of genes silent in each cell type: promoter and own enhancers closed there, no
    #: signal, expression 0. Real RNA-seq has about 40% of protein-coding genes off in a cell
    #: line, which makes the target bimodal; 0 keeps every gene on.
    silent_fraction: float = 0.0
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
            raise InputError(f"unknown preset {self.preset!r}; choose from {sorted(PRESETS)}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.n_genes < len(CHROMOSOMES):
            raise InputError(
                f"n_genes must be >= {len(CHROMOSOMES)} (one per chromosome), got {self.n_genes}")
        if self.window < 4000:
            raise InputError(f"window must be >= 4000 bp, got {self.window}")
        if not self.cell_types:
            raise InputError("cell_types is empty")
        if len(set(self.cell_types)) != len(self.cell_types):
            raise InputError(f"cell_types has duplicates: {self.cell_types}")
        for c in self.cell_types:
            if not c or not all(ch.isalnum() or ch in "_-." for ch in c) or c in ("truth",):
                raise InputError(f"cell type name {c!r} must be a plain name ([A-Za-z0-9_.-])")
        lo, hi = self.gene_spacing
        if not 0 < lo <= hi < 1:
            raise InputError(f"gene_spacing must satisfy 0 < lo <= hi < 1 (windows overlap), got "
                             f"{self.gene_spacing}")
        if self.window // 2 - self.min_tss_distance < self.element_width[1] + 100:
            raise InputError(f"window {self.window} leaves no room for elements beyond "
                             f"min_tss_distance {self.min_tss_distance}")
        if not 0 <= self.silent_fraction < 1:
            raise InputError(f"silent_fraction must be in [0, 1), got {self.silent_fraction}")
        if self.hic_resolution is not None and self.hic_resolution < 1:
            raise InputError(f"hic_resolution must be positive, got {self.hic_resolution}")

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
    def from_dict(cls, values: dict[str, Any]) -> "SynthParams":
        """The parameters :meth:`to_dict` wrote (a manifest's ``params``), resolved values left out."""
        return cls(**{k: v for k, v in values.items() if not k.startswith("resolved_")})

    @classmethod
    def from_preset(cls, preset: str = "tiny", **overrides: Any) -> "SynthParams":
        """The preset's values, with any non-None ``overrides`` (e.g. ``n_genes``, ``window``)."""
        if preset not in PRESETS:
            raise InputError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
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

    # silent genes (own stream: the rest of the layout does not depend on silent_fraction)
    silent = _rng(p.seed, _S_SILENT).random((n_genes, n_cells)) < p.silent_fraction
    for el in elements:
        if el.kind in ("promoter", "enhancer"):
            el.open = el.open & ~silent[el.gene]
            el.activity = np.where(el.open, el.activity, 0.0)

    for el in elements:
        rel = el.activity / p.activity_scale if el.kind != "promoter" else el.activity
        rel = np.where(el.open, rel, 0.0)
        el.dnase = _peak_height(p, rng, rel)
        el.h3k27ac = _peak_height(p, rng, rel)
    elements.sort(key=lambda e: (chroms.index(e.chrom), e.start))
    return Layout(p, chroms, sizes, genes, elements, blacklist, dropped)


# --------------------------------------------------------------------------- expression
def halflife(p: SynthParams, n: int) -> tuple[pd.DataFrame, np.ndarray]:
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
        "ORFEXONDENSITY": z[:, 4],
    })
    effect = (-0.06 * feats["UTR3LEN_log10zscore"] + 0.04 * feats["ORFEXONDENSITY"]
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
    _, hl = halflife(p, n_genes)
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


#: Effect sizes (fraction of expression lost) of the benchmark's power columns.
POWER_EFFECTS = (10, 15, 20, 25, 50)


def crispr_truth(truth: pd.DataFrame, terms: pd.DataFrame, cell: str, seed: int) -> pd.DataFrame:
    """The truth of one cell type as a CRISPRi screen would report it (EPCrisprBenchmark columns,
    :data:`seq2exp_plugin.data.crispr.CRISPR_COLUMNS`): one tested pair per (gene, element in its
    window) except the gene's own promoter.

    Args:
        truth: :func:`truth_table` of ``cell``.
        terms: :func:`expression_terms` (the promoter and enhancer terms of each gene).
        cell: the cell type.
        seed: the benchmark's seed (the draws below use their own stream).

    Returns:
        ``Regulated`` TRUE exactly for the gene's ``R_ag`` elements (decoys and inactive
        elements FALSE), also ``Significant``; ``EffectSize`` = -(the element's term) / (promoter
        + enhancer terms) for them, the fraction of expression that silencing it removes (noise
        N(0, 0.02) for the others). Powers: ``1 - exp(-(x / s)^2)`` at effect size ``x`` with a
        per-pair sensitivity ``s ~ 0.1 * LN(0.5)``, so about 60% of pairs have 80% power at a
        15% effect (the benchmark's filter of negatives).
    """
    from .crispr import CRISPR_COLUMNS

    rng = _rng(seed, _S_CRISPR, list(dict.fromkeys(terms["cell_type"])).index(cell))
    tested = truth[truth["class"] != "promoter"].reset_index(drop=True)
    mine = terms[terms["cell_type"] == cell].set_index("gene_id")
    total = (mine["promoter"] + mine["enhancers"]).reindex(tested["gene_id"]).to_numpy()
    regulated = (tested["class"] == "R_ag").to_numpy()
    n = len(tested)
    effect = np.where(regulated, -tested["effect"].to_numpy() / np.maximum(total, 1e-12), rng.normal(0.0, 0.02, n))
    padj = np.where(regulated, 10.0 ** -rng.uniform(2, 6, n), rng.uniform(0.05, 1.0, n))
    sensitivity = 0.1 * rng.lognormal(0.0, 0.5, n)
    tss = ((tested["start"] + tested["end"]) // 2 - tested["distance"]).to_numpy()
    out = pd.DataFrame({
        "chrom": tested["chrom"], "chromStart": tested["start"], "chromEnd": tested["end"],
        "name": tested["gene_id"] + "|" + tested["chrom"] + ":" + tested["start"].astype(str) + "-"
        + tested["end"].astype(str) + ":" + tested["name"],
        "EffectSize": effect, "chrTSS": tested["chrom"], "startTSS": tss, "endTSS": tss + 1,
        "measuredGeneSymbol": tested["gene_id"], "Significant": np.where(regulated, "TRUE", "FALSE"),
        "pValueAdjusted": padj,
        **{f"PowerAtEffectSize{x}": 1.0 - np.exp(-((x / 100) / sensitivity) ** 2) for x in POWER_EFFECTS},
        "ValidConnection": "TRUE", "CellType": cell, "Reference": f"seq2exp synth seed {seed}",
        "Regulated": np.where(regulated, "TRUE", "FALSE"), "Dataset": "seq2exp_synth"})
    return out[list(CRISPR_COLUMNS)]
