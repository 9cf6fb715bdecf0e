"""Per-gene features computed from files: promoter activity from DNase and H3K27ac bigWigs,
and the 8 mRNA half-life features from a GTF and the genome (Xpresso's definitions)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd

from .gene_sources import HALFLIFE_FEATURES, align_gene_ids, read_gtf, strip_gene_version
from .genome import Genome
from .tracks import BigWigTrack

__all__ = ["PROMOTER_HALF_WIDTH", "compute_promoter_activity", "halflife_features_from_gtf"]

#: Promoter activity is read over ``[tss - 500, tss + 500)``.
PROMOTER_HALF_WIDTH = 500


def compute_promoter_activity(
    chroms: Sequence[str],
    tss: Sequence[int],
    dnase: BigWigTrack,
    h3k27ac: BigWigTrack,
    half_width: int = PROMOTER_HALF_WIDTH,
) -> np.ndarray:
    """``float32 (n,)``: ``sqrt(mean DNase * mean H3K27ac)`` over ``[tss - half_width, tss + half_width)``."""
    out = np.empty(len(chroms), dtype=np.float32)
    for i, (c, t) in enumerate(zip(chroms, tss)):
        t = int(t)
        d = dnase.mean(c, t - half_width, t + half_width)
        h = h3k27ac.mean(c, t - half_width, t + half_width)
        out[i] = np.sqrt(max(d * h, 0.0))
    return out


def _merge(segs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    segs = sorted(segs)
    out: list[list[int]] = []
    for s, e in segs:
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _clip(segs, lo, hi):
    return [(max(s, lo), min(e, hi)) for s, e in segs if min(e, hi) > max(s, lo)]


def _seglen(segs) -> int:
    return int(sum(e - s for s, e in segs))


def halflife_features_from_gtf(gtf, genome: Genome | str | os.PathLike, gene_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The 8 Xpresso mRNA half-life features computed from a GTF and the genome.

    One transcript per gene: the one tagged ``Ensembl_canonical`` if any, else the coding
    transcript with the longest CDS (ties: longest exonic length, then transcript id), else the
    transcript with the longest exonic length. On that transcript (CDS = ``CDS`` + ``stop_codon``
    records; ORF = [first CDS base, last CDS base]):

    - UTR5LEN / UTR3LEN: exonic bp upstream / downstream of the ORF in transcription direction;
      CDSLEN: CDS bp; INTRONLEN: transcript span minus exonic bp.
    - UTR5GC / CDSGC / UTR3GC: (G + C) / (A + C + G + T) of those regions (N excluded).
    - ORFEXONDENSITY: CDS exons per kb of CDS (``CDS`` records only, stop codon excluded), raw,
      as Xpresso's ``generate_training_input.pl`` computes the values EPInformer's table (the
      paper's source) holds; its record lengths are 1 bp short each, lengths here are exact.
    - ``*_log10zscore``: ``log10(x + 0.1)`` (Xpresso's ``setup_training_files.py``) then z-scored
      across the genes returned (population sd; 0 where sd = 0).

    Missing values (gene absent from the GTF, empty region for a GC fraction) are filled with the
    column mean after the transform (i.e. 0 for z-scored columns).
    Returns a DataFrame indexed by gene_id with the :data:`HALFLIFE_FEATURES` columns.
    """
    if not isinstance(gtf, pd.DataFrame):
        gtf = read_gtf(gtf)
    if not isinstance(genome, Genome):
        genome = Genome(genome)
    tx = gtf[gtf["feature"].isin(["exon", "CDS", "stop_codon", "transcript"])]
    tx = tx[tx["transcript_id"] != ""]
    if gene_ids is not None:  # only the genes asked for (exact or version-less match)
        want = {str(g) for g in gene_ids} | {strip_gene_version(str(g)) for g in gene_ids}
        gid = tx["gene_id"].astype(str)
        tx = tx[gid.isin(want) | gid.map(strip_gene_version).isin(want)]
    # collect segments per (gene, transcript) in one pass (plain Python: much faster than
    # pandas groupby on large GTFs)
    per_tx: dict[tuple[str, str], dict] = {}
    for gid_, tid_, feat, st, en, chrom_, strand_, tags in zip(
        tx["gene_id"].astype(str), tx["transcript_id"].astype(str), tx["feature"], tx["start"], tx["end"],
        tx["chrom"].astype(str), tx["strand"], tx["tags"].astype(str)
    ):
        rec = per_tx.get((gid_, tid_))
        if rec is None:
            rec = per_tx[(gid_, tid_)] = {"exon": [], "cds": [], "coding_exons": [], "chrom": chrom_,
                                          "strand": strand_, "canonical": False}
        if feat == "exon":
            rec["exon"].append((int(st), int(en)))
        elif feat in ("CDS", "stop_codon"):
            rec["cds"].append((int(st), int(en)))
            if feat == "CDS":
                rec["coding_exons"].append((int(st), int(en)))
        if "Ensembl_canonical" in tags.split(";"):
            rec["canonical"] = True
    chosen: dict[str, tuple] = {}
    for (gid_, tid_), rec in per_tx.items():
        exons = _merge(rec["exon"])
        if not exons:
            continue
        cds = _merge(rec["cds"])
        key = (rec["canonical"], _seglen(cds), _seglen(exons))
        cur = chosen.get(gid_)
        if cur is None or key > cur[0] or (key == cur[0] and tid_ < cur[1]):
            chosen[gid_] = (key, tid_, rec["chrom"], rec["strand"], exons, cds, _merge(rec["coding_exons"]))
    raw: dict[str, dict[str, float]] = {}
    for gid, best in chosen.items():
        _, _, chrom, strand, exons, cds, coding_exons = best
        lo, hi = exons[0][0], exons[-1][1]
        if cds:
            orf_lo, orf_hi = cds[0][0], cds[-1][1]
            left, right = _clip(exons, lo, orf_lo), _clip(exons, orf_hi, hi)
        else:
            orf_lo = orf_hi = None
            left, right = [], []
        utr5, utr3 = (left, right) if strand == "+" else (right, left)
        cds_len, coding_bp = _seglen(cds), _seglen(coding_exons)

        def gc(segs):
            if not segs:
                return np.nan
            s = "".join(genome.sequence(chrom, a, b) for a, b in segs).upper()
            acgt = sum(s.count(b) for b in "ACGT")
            return (s.count("G") + s.count("C")) / acgt if acgt else np.nan

        raw[gid] = {
            "UTR5LEN": _seglen(utr5), "CDSLEN": cds_len, "INTRONLEN": (hi - lo) - _seglen(exons),
            "UTR3LEN": _seglen(utr3), "UTR5GC": gc(utr5), "CDSGC": gc(cds), "UTR3GC": gc(utr3),
            "ORFEXONDENSITY": len(coding_exons) * 1000.0 / coding_bp if coding_bp else np.nan,
        }
    ids = list(raw) if gene_ids is None else [str(g) for g in gene_ids]
    df = pd.DataFrame.from_dict(raw, orient="index")
    if df.empty:
        df = pd.DataFrame(columns=["UTR5LEN", "CDSLEN", "INTRONLEN", "UTR3LEN", "UTR5GC", "CDSGC", "UTR3GC", "ORFEXONDENSITY"])
    rows = align_gene_ids(ids, [str(x) for x in df.index])
    df = df.reindex(columns=["UTR5LEN", "CDSLEN", "INTRONLEN", "UTR3LEN", "UTR5GC", "CDSGC", "UTR3GC", "ORFEXONDENSITY"])
    vals = np.full((len(ids), 8), np.nan)
    ok = rows >= 0
    vals[ok] = df.to_numpy(dtype=np.float64)[rows[ok]]
    out = pd.DataFrame(index=pd.Index(ids, name="gene_id"))
    names = ["UTR5LEN", "CDSLEN", "INTRONLEN", "UTR3LEN", "UTR5GC", "CDSGC", "UTR3GC", "ORFEXONDENSITY"]
    for j, (name, col) in enumerate(zip(names, HALFLIFE_FEATURES)):
        v = vals[:, j]
        if col.endswith("_log10zscore"):
            v = np.log10(v + 0.1)
            m = np.nanmean(v) if np.isfinite(v).any() else 0.0
            sd = np.nanstd(v) if np.isfinite(v).any() else 0.0
            v = (v - m) / sd if sd > 0 else v - m
            v = np.where(np.isnan(v), 0.0, v)
        else:
            m = np.nanmean(v) if np.isfinite(v).any() else 0.0
            v = np.where(np.isnan(v), m, v)
        out[col] = v.astype(np.float32)
    return out
