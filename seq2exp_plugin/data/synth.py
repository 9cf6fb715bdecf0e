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
    h_g      = half-life effect (log10) of the 8 Xpresso-style features, see synth_layout.halflife()
    y        = log10(expr + 1)

A share ``silent_fraction`` of genes is silent in each cell type (drawn independently per
cell type): their promoter and their own enhancers are closed there (no signal, A = 0), so
``expr = 0``, as for the genes a real cell line does not express.

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

Code: :mod:`~seq2exp_plugin.data.synth_layout` holds this model (parameters, layout, expression,
truth), :mod:`~seq2exp_plugin.data.synth_files` renders the genome and the tracks, and this
module writes the benchmark directory.

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
    truth/<cell>.crispr.tsv.gz  the same pairs (but the gene's own promoter) as a CRISPRi screen
                           reports them, EPCrisprBenchmark columns (seq2exp_plugin.data.crispr):
                           Regulated TRUE for R_ag, powers drawn (synth_layout.crispr_truth)
    truth/elements.bed     one row per element: kind, anchor/target gene, planted motifs
                           (name@offset strand), and per cell type open/activity/peak heights
    truth/expression_terms.tsv  gene_id, cell_type, promoter, enhancers, halflife_log10,
                           noise_log10, expression (expression = scale * (promoter + enhancers)
                           * 10^(halflife_log10 + noise_log10))
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import atomic_output_dir, check_output_dir
from ..errors import InputError
from .synth_files import simulate_reads, write_bigwig, write_cooler, write_genome, write_reads_bed
from .synth_layout import (CHROMOSOMES, CLASSES, DECOY_MOTIF, JASPAR_RELEASE, PROMOTER_MOTIFS,
                           SHARED_ACTIVATOR, SIGNALS, TRUTH_COLUMNS, Layout, SynthParams, cell_motifs,
                           crispr_truth, expression_terms, halflife, make_layout, truth_table)

__all__ = ["CLASSES", "SIGNALS", "TRUTH_COLUMNS", "SynthParams", "generate", "load_manifest"]


# ------------------------------------------------------------------------------ writers
def _write_tsv(df: pd.DataFrame, path: Path, header: bool = True) -> None:
    gz = {"method": "gzip", "mtime": 0} if path.suffix == ".gz" else None  # byte-identical per seed
    df.to_csv(path, sep="\t", index=False, header=header, float_format="%.6g",
              lineterminator="\n", compression=gz)


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
    feats, _ = halflife(p, len(genes))
    feats.insert(0, "gene_id", genes.gene_id.to_numpy())
    _write_tsv(feats, tmp / "halflife.tsv")
    _write_tsv(layout.blacklist.assign(name=[f"BL{i + 1}" for i in range(len(layout.blacklist))]),
               tmp / "blacklist.bed", header=False)

    (tmp / "truth").mkdir()
    for cell, df in truths.items():
        _write_truth(tmp / "truth" / f"{cell}.bed", df)
        _write_tsv(crispr_truth(df, terms, cell, p.seed), tmp / "truth" / f"{cell}.crispr.tsv.gz")
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
            write_bigwig(d / f"{assay}.bw", layout, reads, lam)
            if assay == "dnase":
                write_reads_bed(d / "dnase_reads.bed.gz", layout, reads)
            del reads
        hic_info[cell] = write_cooler(d / "hic.cool", layout, cell)

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
                  "crispr": {cell: f"truth/{cell}.crispr.tsv.gz" for cell in p.cell_types},
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
        raise InputError(f"{path} is not a seq2exp synth manifest (format: seq2exp-synth)")
    root = path.parent

    def ab(x: str | None) -> str | None:
        return None if x is None else str(root / x)

    for key in ("fasta", "fai", "sizes"):
        m["genome"][key] = ab(m["genome"][key])
    for key in ("tss", "expression", "halflife", "table"):
        m["genes"][key] = ab(m["genes"][key])
    m["tracks"] = {cell: {k: ab(v) for k, v in t.items()} for cell, t in m["tracks"].items()}
    m["truth"]["cells"] = {cell: ab(v) for cell, v in m["truth"]["cells"].items()}
    m["truth"]["crispr"] = {cell: ab(v) for cell, v in m["truth"].get("crispr", {}).items()}
    for key in ("elements", "expression_terms"):
        m["truth"][key] = ab(m["truth"][key])
    m["blacklist"] = ab(m["blacklist"])
    m["root"] = str(root)
    return m
