"""``seq2exp links``: enhancer-gene links from a checkpoint's masks, in the ABC / ENCODE-rE2G format.

One row per (element, gene whose window holds it): how much that gene's mask keeps the element,
where it lies relative to the TSS, the element's signals as the model reads them and the gene's
predicted expression. Elements are the user's candidate regions (``--elements``: ABC candidate
regions, ENCODE cCREs, DNase peaks; BED3+) clipped to each window, or without them the runs the
mask keeps (the elements BED of ``seq2exp predict``: :func:`~seq2exp_plugin.discover.regions.call_elements`).

Columns (:data:`LINK_COLUMNS`), named as the EngreitzLab CRISPR_comparison pipeline reads ABC and
ENCODE-rE2G predictions: ``chr start end`` (the element, 0-based half-open), ``name``
(``<gene>|<chr>:<start>-<end>``), ``class`` (ABC's element classes, :class:`GeneAnnotation`:
``promoter`` within ``PROMOTER_BP`` of any TSS of the gene table, else ``genic`` when it overlaps
a gene body, else ``intergenic``; a gene table without gene bodies gives ``promoter``/``distal``),
``TargetGene`` (the gene table's symbol, else its id), ``TargetGeneTSS`` (0-based),
``TargetGeneEnsemblID`` (the gene table's id), ``CellType``, ``distance`` (|element centre -
TSS|, bp), ``Score`` (mean mask score = posterior mean over the element's bases in the
window), ``mask_max``, ``kept_fraction`` (share of its bases with score >= ``threshold``),
``mean_<signal>`` per model signal (bigWig: the track's mean; Hi-C: the model's contact-to-TSS
track, ``log10(1 + contact)`` by default), ``TargetGenePredictedExpression`` (log10(expr + 1)).

Written into ``out`` atomically (a temporary folder renamed when complete):
``links.tsv.gz`` (the table, gzipped TSV), ``links.bedpe`` (element -> TSS arcs a genome browser
draws: IGV reads BEDPE; score = 1000 x Score), ``links.interact.bed`` and ``interact.as`` (the
same arcs in UCSC's interact format, bed5+13, sorted for ``bedToBigBed``: :func:`interact_line`),
``windows.bed`` (every gene's window, so that ``seq2exp benchmark-links`` tells a tested pair
outside every window from one inside a window where no element was linked) and
``summary.json``. Genes stream in genomic order and each gene's rows are written as soon as it is
predicted, so memory does not grow with the genes (the interact file is sorted one chromosome
at a time).
"""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import atomic_output_dir, check_output_dir, write_json
from ..data.bed import read_bed
from ..data.genome import resolve_chrom
from ..errors import InputError
from ..train.evaluate import GenePrediction, predict_dataset
from .predict import MASKED_VARIANTS, open_genes
from .regions import call_elements, elements_to_genomic

__all__ = ["INTERACT_AS", "LINK_COLUMNS", "PROMOTER_BP", "CandidateElements", "GeneAnnotation", "gene_links",
           "interact_line", "links_to_directory"]

#: An element within this many bp of any TSS is a promoter (ABC's TSS +- 500 bp).
PROMOTER_BP = 500

#: UCSC's autoSql schema of the interact format (bed5+13), written beside ``links.interact.bed``
#: for ``bedToBigBed -as=interact.as -type=bed5+13``.
INTERACT_AS = """table interact
"Interaction between two regions"
    (
    string chrom;        "Chromosome of the lower region"
    uint chromStart;     "Start of the lower region"
    uint chromEnd;       "End of the upper region"
    string name;         "Name of the item: <gene>|<chr>:<start>-<end>"
    uint score;          "Score from 0-1000: 1000 x the link score"
    double value;        "The link score (mean mask score over the element)"
    string exp;          "Experiment: the cell type"
    string color;        "Item color (r,g,b, #RRGGBB or 0)"
    string sourceChrom;  "Chromosome of the source region (the element)"
    uint sourceStart;    "Start of the source region"
    uint sourceEnd;      "End of the source region"
    string sourceName;   "Name of the source region"
    string sourceStrand; "Orientation of the source region (. if not applicable)"
    string targetChrom;  "Chromosome of the target region (the gene's TSS)"
    uint targetStart;    "Start of the target region"
    uint targetEnd;      "End of the target region"
    string targetName;   "Name of the target region (the gene)"
    string targetStrand; "Orientation of the target region (the gene's strand)"
    )
"""

LINK_COLUMNS = ("chr", "start", "end", "name", "class", "TargetGene", "TargetGeneTSS", "TargetGeneEnsemblID",
                "CellType", "distance", "Score", "mask_max", "kept_fraction")


class CandidateElements:
    """Candidate regions (BED3+) for :func:`gene_links`, indexed per chromosome.

    Args:
        path: BED file (plain or gzip).
        sizes: chromosome sizes of the model's genome; an element past the end of its
            chromosome is refused (another assembly), elements on chromosomes the genome lacks
            are left out with one warning that counts them.
    """

    def __init__(self, path: str | os.PathLike, sizes: dict[str, int]):
        table = read_bed(path, what="--elements BED")
        if table.empty:
            raise InputError(f"--elements {path}: no elements")
        self.index: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.longest = 1
        absent: dict[str, int] = {}
        for chrom, rows in table.groupby("chrom", sort=False):
            try:
                name = resolve_chrom(str(chrom), sizes)
            except KeyError:
                absent[str(chrom)] = len(rows)
                continue
            starts, ends = rows["start"].to_numpy(np.int64), rows["end"].to_numpy(np.int64)
            if ends.max() > sizes[name]:
                i = int(np.argmax(ends))
                raise InputError(f"--elements {path}: element {chrom}:{starts[i]}-{ends[i]} ends beyond "
                                 f"{name} ({sizes[name]:,} bp in the model's genome); is it of another "
                                 f"genome assembly?")
            order = np.argsort(starts, kind="stable")
            self.index[name] = (starts[order], ends[order])
            self.longest = max(self.longest, int((ends - starts).max()))
        if absent:
            warnings.warn(f"--elements {path}: {sum(absent.values())} elements on {len(absent)} chromosome(s) "
                          f"not in the model's genome left out ({', '.join(sorted(absent)[:5])})")
        if not self.index:
            raise InputError(f"--elements {path}: no element lies on a chromosome of the model's genome")
        self.n = sum(len(s) for s, _ in self.index.values())

    def in_window(self, chrom: str, start: int, end: int) -> list[tuple[int, int]]:
        """Elements overlapping ``[start, end)``, clipped to it, sorted by start."""
        starts, ends = self.index.get(chrom, (np.empty(0, np.int64), np.empty(0, np.int64)))
        a = int(np.searchsorted(starts, start - self.longest, side="left"))
        b = int(np.searchsorted(starts, end, side="left"))
        keep = ends[a:b] > start
        return [(max(int(s), start), min(int(e), end)) for s, e in zip(starts[a:b][keep], ends[a:b][keep])]


class GeneAnnotation:
    """ABC's element classes from the gene table: every gene's TSS and, where the table has
    them (``gene_start``/``gene_end``, written by ``seq2exp genes --gtf``), its body.

    Args:
        obs: the gene table's ``obs``.
        source: named in the warning when the table has no gene bodies.
    """

    def __init__(self, obs, source: str = "gene table"):
        from ..data.genes import BODY_COLUMNS

        self.has_bodies = all(c in obs.columns for c in BODY_COLUMNS)
        if not self.has_bodies:
            warnings.warn(f"{source}: no gene bodies (gene_start/gene_end; `seq2exp genes --gtf` writes them): "
                          f"link classes are promoter/distal, not promoter/genic/intergenic")
        chroms = obs["chrom"].astype(str).to_numpy()
        self.tss = {c: np.sort(obs["tss"].to_numpy(np.int64)[chroms == c]) for c in np.unique(chroms)}
        self.bodies: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if self.has_bodies:
            starts, ends = obs["gene_start"].to_numpy(np.int64), obs["gene_end"].to_numpy(np.int64)
            for c in np.unique(chroms):
                keep = (chroms == c) & (starts >= 0) & (ends > starts)
                order = np.argsort(starts[keep], kind="stable")
                # running maximum of the ends: of the bodies starting before an element's end, one
                # overlaps the element iff their largest end passes the element's start
                self.bodies[c] = (starts[keep][order], np.maximum.accumulate(ends[keep][order]))

    def classify(self, chrom: str, start: int, end: int) -> str:
        """``promoter`` (within ``PROMOTER_BP`` of any TSS), else ``genic`` (overlaps a gene body) or
        ``intergenic``; without gene bodies ``distal``."""
        tss = self.tss.get(chrom, np.empty(0, np.int64))
        i = int(np.searchsorted(tss, start - PROMOTER_BP, side="left"))
        if i < len(tss) and tss[i] < end + PROMOTER_BP:
            return "promoter"
        if not self.has_bodies:
            return "distal"
        starts, reach = self.bodies.get(chrom, (np.empty(0, np.int64), np.empty(0, np.int64)))
        j = int(np.searchsorted(starts, end, side="left"))  # bodies starting before the element ends
        return "genic" if j and reach[j - 1] > start else "intergenic"


def gene_links(gene: GenePrediction, elements: Sequence[tuple[int, int]], readers: Sequence,
               threshold: float, cell: str, symbol: str, annotation: GeneAnnotation) -> list[tuple]:
    """The link rows of one gene (:data:`LINK_COLUMNS`, then ``mean_<signal>``, then the predicted
    expression).

    Args:
        gene: its prediction; ``gene.score`` (L,) is the per-bp mask score in window order.
        elements: genomic ``(start, end)`` inside the gene's window.
        readers: the dataset's signal readers (bigWig ``values`` or Hi-C ``contact_to_tss``),
            in channel order.
        threshold: a base is kept when its score is >= this.
        cell, symbol: the CellType and TargetGene columns.
        annotation: the genes that give the class column.
    """
    record = gene.window
    score = record.genomic(np.asarray(gene.score, dtype=np.float64))
    rows = []
    for start, end in elements:
        seg = score[start - record.start: end - record.start]
        signals = []
        for reader in readers:
            values = (reader.contact_to_tss(gene.chrom, gene.tss, start, end) if hasattr(reader, "contact_to_tss")
                      else reader.values(gene.chrom, start, end))
            signals.append(float(np.mean(values)))
        centre = (start + end) // 2
        rows.append((gene.chrom, start, end, f"{symbol}|{gene.chrom}:{start}-{end}",
                     annotation.classify(gene.chrom, start, end),
                     symbol, gene.tss, gene.gene_id, cell, abs(centre - gene.tss), float(seg.mean()),
                     float(seg.max()), float((seg >= threshold).mean()), *signals, gene.prediction))
    return rows


def _format(row: tuple) -> str:
    return "\t".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row) + "\n"


def _bedpe(row: tuple) -> str:
    chrom, start, end, name, tss, score = row[0], row[1], row[2], row[3], row[6], row[10]
    return f"{chrom}\t{start}\t{end}\t{chrom}\t{tss}\t{tss + 1}\t{name}\t{int(round(1000 * score))}\t.\t.\n"


def interact_line(row: tuple, strand: str) -> str:
    """A link row as a UCSC interact line (bed5+13): the element is the source, the gene's TSS
    (1 bp, on the gene's strand) the target; chromStart/chromEnd span both; score = 1000 x Score
    clipped to 0..1000, value = Score, exp = the cell type."""
    chrom, start, end, name, symbol, tss, cell, score = row[0], row[1], row[2], row[3], row[5], row[6], row[8], row[10]
    return (f"{chrom}\t{min(start, tss)}\t{max(end, tss + 1)}\t{name}\t{min(max(int(round(1000 * score)), 0), 1000)}"
            f"\t{score:.6g}\t{cell}\t0\t{chrom}\t{start}\t{end}\t{chrom}:{start}-{end}\t.\t{chrom}\t{tss}\t{tss + 1}"
            f"\t{symbol}\t{strand}\n")


def _sort_interact(parts: Path, out: Path) -> None:
    """Concatenate the per-chromosome parts sorted as bedToBigBed wants (chromosome names in byte
    order, then start, end); one chromosome in memory at a time."""
    with open(out, "w") as fh:
        for part in sorted(parts.iterdir(), key=lambda p: bytes.fromhex(p.name)):
            lines = part.read_text().splitlines(keepends=True)
            lines.sort(key=lambda line: tuple(int(v) for v in line.split("\t", 3)[1:3]))
            fh.writelines(lines)
            part.unlink()
    parts.rmdir()


def _symbols(obs) -> dict[str, str]:
    """gene id -> symbol from the gene table (the id where the table has no symbol)."""
    if "symbol" not in obs:
        return {}
    return {str(g): str(s) for g, s in zip(obs.index, obs["symbol"]) if str(s) not in ("", "nan", "None", ".")}


def links_to_directory(
    checkpoint: str,
    out: str | Path,
    gene_ids: Sequence[str] | None = None,
    split: str | None = None,
    elements: str | os.PathLike | None = None,
    data_overrides: dict[str, Any] | None = None,
    threshold: float = 0.5,
    min_gap: int = 0,
    min_length: int = 1,
    batch_size: int = 1,
    num_workers: int = 0,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Links of the selected genes (``gene_ids``, else a ``split``, else all) into ``out``
    (see the module docstring); returns the summary."""
    out = check_output_dir(out, force, "--out")
    module, run, dataset, sizes, order = open_genes(checkpoint, data_overrides, split, gene_ids, threshold)
    if run.variant not in MASKED_VARIANTS:
        raise InputError(f"{checkpoint}: links need a mask; variant {run.variant!r} has none "
                         f"(use one of {', '.join(MASKED_VARIANTS)})")
    from ..data.genes import read_gene_table

    candidates = CandidateElements(elements, sizes) if elements is not None else None
    obs = read_gene_table(run.data.genes).obs
    symbols, annotation = _symbols(obs), GeneAnnotation(obs, str(run.data.genes))
    cell = run.data.cell_type
    names = list(dataset.signal_names)
    readers = dataset.extractor.signals
    header = [*LINK_COLUMNS, *(f"mean_{n}" for n in names), "TargetGenePredictedExpression"]
    n_links = n_genes = n_linked = 0
    with atomic_output_dir(out, force=force) as tmp:
        with gzip.open(tmp / "links.tsv.gz", "wt", compresslevel=6) as table, \
                open(tmp / "links.bedpe", "w") as arcs, open(tmp / "windows.bed", "w") as windows:
            table.write("\t".join(header) + "\n")
            parts = tmp / "interact.parts"  # one file per chromosome (hex name), sorted at the end
            parts.mkdir()
            for gene in predict_dataset(module.net, dataset, batch_size, num_workers, progress=progress, order=order):
                record = gene.window
                chrom = resolve_chrom(gene.chrom, sizes, str(run.data.genome))
                lo, hi = max(record.start, 0), min(record.end, sizes[chrom])
                symbol = symbols.get(gene.gene_id, gene.gene_id)
                windows.write(f"{gene.chrom}\t{lo}\t{hi}\t{symbol}\t{gene.gene_id}\t{gene.strand}\t{gene.tss}\n")
                if candidates is not None:
                    found = candidates.in_window(chrom, lo, hi)
                else:
                    called = call_elements(gene.score, threshold, min_gap, min_length)
                    found = [(s, e) for s, e, _ in elements_to_genomic(called, record, sizes[chrom])]
                rows = gene_links(gene, found, readers, threshold, cell, symbol, annotation)
                table.writelines(_format(r) for r in rows)
                arcs.writelines(_bedpe(r) for r in rows)
                if rows:
                    with open(parts / gene.chrom.encode().hex(), "a") as fh:
                        fh.writelines(interact_line(r, gene.strand) for r in rows)
                n_genes += 1
                n_links += len(rows)
                n_linked += bool(rows)
        _sort_interact(parts, tmp / "links.interact.bed")
        (tmp / "interact.as").write_text(INTERACT_AS)
        summary = {"checkpoint": str(checkpoint), "variant": run.variant, "cell_type": cell,
                   "window": run.data.window, "elements": str(elements) if elements else "mask runs",
                   "threshold": threshold, "n_genes": n_genes, "n_genes_with_links": n_linked,
                   "n_links": n_links, "columns": header,
                   "classes": "promoter/genic/intergenic" if annotation.has_bodies else "promoter/distal"}
        if candidates is not None:
            summary["n_candidate_elements"] = candidates.n
        write_json(tmp / "summary.json", summary)
    return summary
