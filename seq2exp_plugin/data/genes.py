"""The gene table: one AnnData (``.h5ad``) holding genes, their TSS, targets and extra features.

Schema (checked by :func:`validate_gene_table`)
------------------------------------------------
- ``obs`` index = ``gene_id`` (unique strings). ``obs`` columns:

  ========  ==========================================================================
  gene_id   same as the index
  symbol    gene name (GTF ``gene_name``; else an expression-table ``symbol`` column;
            else the gene_id)
  chrom     chromosome as written in the source ("2" or "chr2"); readers resolve aliases
  tss       int, 0-based TSS position
  strand    "+" or "-"
  split     "train", "valid" or "test" (by chromosome)
  ========  ==========================================================================

- ``var`` index = cell-type names (no "/"). ``X`` = float32 ``(n_genes, n_cell_types)``
  = ``log10(expression + 1)``, NaN where unknown.
- ``obsm["features"]`` = DataFrame (index = obs_names): the 8 mRNA half-life columns
  :data:`HALFLIFE_FEATURES` followed by one ``promoter_activity:<cell type>`` column per cell
  type, ``sqrt(mean DNase over [tss-500, tss+500) * mean H3K27ac over [tss-500, tss+500))``
  (bigWig means with uncovered/NaN positions counted as 0; a negative product counts as 0).
  :func:`gene_features` gives the model's 9 features for one cell type.
- ``uns["seq2exp"]``: provenance (``schema_version``, source files, TSS rule, promoter window
  ``[-500, 500]``, split chromosomes, how half-life features were obtained).

Builder: :func:`build_gene_table`. Half-life features computed from a GTF (when no table is
given) follow Xpresso's definitions on one transcript per gene (see
:func:`halflife_features_from_gtf`).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError, MissingInputError
from .bed import open_text, read_bed
from .genome import Genome, normalize_chrom
from .tracks import BigWigTrack

__all__ = [
    "HALFLIFE_FEATURES",
    "PROMOTER_HALF_WIDTH",
    "DEFAULT_SPLIT",
    "OBS_COLUMNS",
    "SCHEMA_VERSION",
    "build_gene_table",
    "read_gene_table",
    "write_gene_table",
    "validate_gene_table",
    "gene_features",
    "promoter_activity_column",
    "compute_promoter_activity",
    "read_tss_bed",
    "read_gtf",
    "gtf_gene_tss",
    "halflife_features_from_gtf",
    "assign_split",
]

#: The 8 mRNA half-life features, named and defined as in EPInformer's
#: ``mRNA_halflife_features.csv`` (the paper's source, Appendix A.3): four region lengths as
#: log10 z-scores, three GC fractions and the ORF's exon density (coding exons per kb), raw.
HALFLIFE_FEATURES = (
    "UTR5LEN_log10zscore",
    "CDSLEN_log10zscore",
    "INTRONLEN_log10zscore",
    "UTR3LEN_log10zscore",
    "UTR5GC",
    "CDSGC",
    "UTR3GC",
    "ORFEXONDENSITY",
)
PROMOTER_HALF_WIDTH = 500
DEFAULT_SPLIT = {"valid": ["chr3", "chr21"], "test": ["chr22", "chrX"]}
OBS_COLUMNS = ("gene_id", "symbol", "chrom", "tss", "strand", "split")
SPLITS = ("train", "valid", "test")
SCHEMA_VERSION = 1
#: The gene-id column of expression and half-life tables: ours, or EPInformer's (the paper's
#: expression table is keyed by ``ENSID``).
_GENE_ID_COLUMNS = ("gene_id", "ENSID")
_SYMBOL_COLUMNS = ("symbol", "gene_name", "Gene name")
_CHOOSE_COLUMNS = "only some columns: --expression-columns CELL=COLUMN, cell_types= in Python"


def promoter_activity_column(cell_type: str) -> str:
    return f"promoter_activity:{cell_type}"


# ----------------------------------------------------------------------------------------------
# validation and access
# ----------------------------------------------------------------------------------------------
def validate_gene_table(adata, source: str = "gene table") -> None:
    """Check ``adata`` against the schema; raise ``KeyError`` naming a missing column, ``ValueError`` otherwise."""
    obs = adata.obs
    for col in OBS_COLUMNS:
        if col not in obs.columns:
            raise MissingInputError(f"{source}: obs column {col!r} missing (schema needs {list(OBS_COLUMNS)})")
    if not obs.index.is_unique:
        dup = obs.index[obs.index.duplicated()][:5].tolist()
        raise InputError(f"{source}: gene ids (obs index) are not unique, e.g. {dup}")
    if not (obs["gene_id"].astype(str).values == obs.index.astype(str).values).all():
        raise InputError(f"{source}: obs['gene_id'] differs from the obs index")
    tss = obs["tss"]
    if not pd.api.types.is_integer_dtype(tss.dtype):
        raise InputError(f"{source}: obs column 'tss' must be integer, got {tss.dtype}")
    if len(tss) and int(tss.min()) < 0:
        bad = obs.index[tss.values < 0][0]
        raise InputError(f"{source}: gene {bad!r} has a negative tss")
    strand = obs["strand"].astype(str)
    bad = ~strand.isin(["+", "-"])
    if bad.any():
        g = obs.index[bad.values][0]
        raise InputError(f"{source}: obs column 'strand' must be '+' or '-'; gene {g!r} has {strand[bad].iloc[0]!r}")
    split = obs["split"].astype(str)
    bad = ~split.isin(SPLITS)
    if bad.any():
        g = obs.index[bad.values][0]
        raise InputError(f"{source}: obs column 'split' must be one of {SPLITS}; gene {g!r} has {split[bad].iloc[0]!r}")
    if adata.X is None or adata.X.shape != (adata.n_obs, adata.n_vars):
        raise InputError(f"{source}: X must be (n_genes, n_cell_types) = ({adata.n_obs}, {adata.n_vars})")
    if "features" not in adata.obsm:
        raise MissingInputError(f"{source}: obsm['features'] missing")
    feats = adata.obsm["features"]
    if not isinstance(feats, pd.DataFrame):
        raise InputError(f"{source}: obsm['features'] must be a pandas DataFrame")
    needed = list(HALFLIFE_FEATURES) + [promoter_activity_column(c) for c in adata.var_names]
    for col in needed:
        if col not in feats.columns:
            raise MissingInputError(f"{source}: obsm['features'] column {col!r} missing")
    try:
        values = feats[needed].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{source}: obsm['features'] must hold numbers only ({needed})") from None
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(f"{source}: obsm['features'] column {needed[col]!r} is {values[row, col]} for gene "
                         f"{obs.index[row]!r} ({int(bad[:, col].sum())} genes); features must be finite numbers")


def gene_features(adata, cell_type: str) -> np.ndarray:
    """``float32 (n_genes, 9)``: the 8 half-life features then ``promoter_activity:<cell_type>``."""
    if cell_type not in adata.var_names:
        raise MissingInputError(f"cell type {cell_type!r} not in the gene table; available: {list(adata.var_names)}")
    feats = adata.obsm["features"]
    cols = list(HALFLIFE_FEATURES) + [promoter_activity_column(cell_type)]
    missing = [c for c in cols if c not in feats.columns]
    if missing:
        raise MissingInputError(f"obsm['features'] column {missing[0]!r} missing")
    return np.ascontiguousarray(feats[cols].to_numpy(dtype=np.float32))


def read_gene_table(path: str | os.PathLike):
    """Read and validate a gene table ``.h5ad``; string obs columns come back as plain ``str``."""
    import anndata

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gene table not found: {path}")
    try:
        adata = anndata.read_h5ad(path)
    except OSError as exc:  # h5py: not an HDF5 file, truncated...
        raise InputError(f"gene table {path}: not a readable .h5ad file ({exc}); build one with "
                         f"`seq2exp genes`") from None
    for col in ("gene_id", "symbol", "chrom", "strand", "split"):
        if col in adata.obs.columns:
            adata.obs[col] = adata.obs[col].astype(str).astype(object)
    validate_gene_table(adata, str(path))
    return adata


def write_gene_table(adata, out: str | os.PathLike) -> Path:
    """Write ``adata`` to ``out`` atomically (temporary name in the same folder, then rename)."""
    from ..atomic import atomic_file

    out = Path(out)
    with atomic_file(out) as tmp:
        adata.write_h5ad(tmp)
    return out


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------
def read_tss_bed(path) -> pd.DataFrame:
    """TSS BED (``chrom start end gene_id score strand``) -> DataFrame gene_id, chrom, tss, strand.

    TSS = ``(start + end) // 2``: a 1-bp BED gives ``start``; the 20 kb Xpresso windows give
    ``start + 10000``.
    """
    if isinstance(path, pd.DataFrame):
        df = path.copy()
        source = "TSS table"
        for col in ("chrom", "start", "end", "gene_id", "strand"):
            if col not in df.columns:
                raise MissingInputError(f"{source}: column {col!r} missing")
        for col in ("start", "end"):
            if not pd.api.types.is_integer_dtype(df[col].dtype):
                raise InputError(f"{source}: column {col!r} must be integer")
    else:
        source = str(path)
        df = read_bed(path, ("chrom", "start", "end", "gene_id", "score", "strand"), what="TSS BED")
    strand = df["strand"].astype(str)
    bad = ~strand.isin(["+", "-"])
    if bad.any():
        i = int(np.flatnonzero(bad.values)[0])
        raise InputError(f"{source}: gene {df['gene_id'].iloc[i]!r} has strand {strand.iloc[i]!r} (need '+' or '-')")
    out = pd.DataFrame(
        {
            "gene_id": df["gene_id"].astype(str).values,
            "chrom": df["chrom"].astype(str).values,
            "tss": ((df["start"].astype("int64") + df["end"].astype("int64")) // 2).values,
            "strand": strand.values,
        }
    )
    _check_unique(out["gene_id"], source)
    return out


def _check_unique(ids: pd.Series, source: str) -> None:
    dup = ids[ids.duplicated()]
    if len(dup):
        raise InputError(f"{source}: duplicated gene_id {dup.iloc[0]!r} ({len(dup)} duplicates)")


_ATTR = re.compile(r'(\S+)\s+"([^"]*)"')


def read_gtf(path, features: Sequence[str] = ("gene", "transcript", "exon", "CDS", "stop_codon")) -> pd.DataFrame:
    """GTF (plain or gzip) -> DataFrame with chrom, feature, start (0-based), end, strand, gene_id,
    transcript_id, gene_name, tags (";"-joined ``tag`` attributes). Only ``features`` are kept."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GTF not found: {path}")
    keep = set(features)
    rows = []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip() or line.startswith("#"):
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) < 9:
                raise InputError(f"{path}, line {lineno}: a GTF line needs 9 tab-separated columns, found {len(f)}")
            if f[2] not in keep:
                continue
            try:
                start, end = int(f[3]) - 1, int(f[4])
            except ValueError:
                raise InputError(f"{path}, line {lineno}: start/end are not integers: {f[3]!r} {f[4]!r}") from None
            attrs: dict[str, str] = {}
            tags = []
            for k, v in _ATTR.findall(f[8]):
                if k == "tag":
                    tags.append(v)
                elif k not in attrs:
                    attrs[k] = v
            if "gene_id" not in attrs:
                raise InputError(f"{path}, line {lineno}: attribute 'gene_id' missing")
            rows.append(
                (f[0], f[2], start, end, f[6], attrs["gene_id"], attrs.get("transcript_id", ""),
                 attrs.get("gene_name", ""), ";".join(tags))
            )
    return pd.DataFrame(
        rows,
        columns=["chrom", "feature", "start", "end", "strand", "gene_id", "transcript_id", "gene_name", "tags"],
    )


def gtf_gene_tss(gtf: pd.DataFrame, source: str = "GTF") -> pd.DataFrame:
    """One TSS per gene from a parsed GTF: the gene record's start (+) or end - 1 (-), 0-based.

    Genes without a ``gene`` record use the span of their transcripts (or exons).
    Returns gene_id, symbol, chrom, tss, strand.
    """
    genes = gtf[gtf["feature"] == "gene"]
    rest = gtf[~gtf["gene_id"].isin(set(genes["gene_id"]))]
    if len(rest):
        span = rest.groupby("gene_id", sort=False).agg(
            chrom=("chrom", "first"), start=("start", "min"), end=("end", "max"),
            strand=("strand", "first"), gene_name=("gene_name", "first"),
        ).reset_index()
        genes = pd.concat([genes[span.columns], span], ignore_index=True)
    genes = genes.drop_duplicates("gene_id")
    bad = ~genes["strand"].isin(["+", "-"])
    if bad.any():
        raise InputError(f"{source}: gene {genes['gene_id'][bad].iloc[0]!r} has no strand")
    tss = np.where(genes["strand"].values == "+", genes["start"].values, genes["end"].values - 1)
    sym = genes["gene_name"].astype(str).values
    sym = np.where(sym == "", genes["gene_id"].values, sym)
    return pd.DataFrame(
        {"gene_id": genes["gene_id"].astype(str).values, "symbol": sym, "chrom": genes["chrom"].astype(str).values,
         "tss": tss.astype(np.int64), "strand": genes["strand"].values}
    )


def _strip_version(gid: str) -> str:
    """Drop a trailing ".<digits>" version (Ensembl/GENCODE style ids)."""
    head, dot, tail = gid.rpartition(".")
    return head if dot and head and tail.isdigit() else gid


def _align(ids: Sequence[str], other: Sequence[str]) -> np.ndarray:
    """Row of each ``ids`` element in ``other`` (exact match first, then both sides without an
    Ensembl version suffix, e.g. "ENSG01.3" ~ "ENSG01"); -1 if absent."""
    exact = {g: i for i, g in enumerate(other)}
    stripped: dict[str, int] = {}
    for i, g in enumerate(other):
        stripped.setdefault(_strip_version(g), i)
    out = np.full(len(ids), -1, dtype=np.int64)
    for k, g in enumerate(ids):
        j = exact.get(g)
        if j is None:
            j = stripped.get(_strip_version(g), -1)
        out[k] = j
    return out


def _read_table(obj, what: str) -> tuple[pd.DataFrame, str]:
    """A per-gene table (a DataFrame, or a TSV / CSV file) and its name for messages, its gene
    ids in ``gene_id`` whichever of :data:`_GENE_ID_COLUMNS` holds them."""
    if isinstance(obj, pd.DataFrame):
        df, source = obj.copy(), f"{what} (DataFrame)"
    else:
        path = Path(obj)
        if not path.is_file():
            raise FileNotFoundError(f"{what} not found: {path}")
        sep = "," if path.name.lower().endswith((".csv", ".csv.gz")) else "\t"
        try:
            with open_text(path) as fh:  # names the file when it is not text
                df, source = pd.read_csv(fh, sep=sep), str(path)
        except pd.errors.EmptyDataError:
            raise InputError(f"{what} {path} is empty (a header line with 'gene_id' expected)") from None
        except pd.errors.ParserError as exc:
            raise InputError(f"{what} {path}: not a {'comma' if sep == ',' else 'tab'}-separated table "
                             f"({exc})") from None
    if df.empty:
        raise InputError(f"{source}: no rows, only a header ({list(df.columns)[:10]}); one row per gene expected")
    ids = next((c for c in _GENE_ID_COLUMNS if c in df.columns), None)
    if ids is None:
        raise MissingInputError(f"{source}: no gene id column ({' or '.join(map(repr, _GENE_ID_COLUMNS))}); "
                       f"columns: {list(df.columns)[:10]}")
    return df.rename(columns={ids: "gene_id"}), source


def _read_expression(expression, cell_types: Sequence[str] | Mapping[str, str] | None = None
                     ) -> tuple[pd.DataFrame, str, list[str], pd.Series | None]:
    """The table, its name, its cell-type columns and its symbols. ``cell_types``: only these
    columns, or ``{cell type: column}`` (other columns are then ignored, whatever they hold)."""
    df, source = _read_table(expression, "expression table")
    if cell_types is not None:
        columns = dict(cell_types) if isinstance(cell_types, Mapping) else {c: c for c in cell_types}
        for cell, column in columns.items():
            if column not in df.columns:
                raise MissingInputError(f"{source}: no column {column!r} for cell type {cell!r}; "
                               f"columns: {list(df.columns)[:20]}")
        symbols = [c for c in _SYMBOL_COLUMNS if c in df.columns and c not in columns.values()]
        df = df[["gene_id", *symbols, *columns.values()]]
        df.columns = ["gene_id", *symbols, *columns]
    df["gene_id"] = df["gene_id"].astype(str)
    _check_unique(df["gene_id"], source)
    symbols = None
    for c in _SYMBOL_COLUMNS:
        if c in df.columns:
            symbols = df[c].astype(str)
            break
    cell_types = [c for c in df.columns if c != "gene_id" and c not in _SYMBOL_COLUMNS]
    if not cell_types:
        raise InputError(f"{source}: no cell-type columns besides 'gene_id'")
    for c in cell_types:
        if "/" in str(c):
            raise InputError(f"{source}: cell type {c!r} contains '/', which HDF5 cannot store")
        if not pd.api.types.is_numeric_dtype(df[c].dtype):
            raise InputError(f"{source}: column {c!r} is not numeric (raw expression per cell type expected; "
                             f"{_CHOOSE_COLUMNS})")
        vals = df[c].to_numpy(dtype=np.float64)
        if np.nanmin(vals, initial=0.0) < 0:
            raise InputError(f"{source}: column {c!r} has negative values (raw, non-log expression expected; "
                             f"{_CHOOSE_COLUMNS})")
        if np.isinf(vals).any():  # NaN means not measured; infinity is a broken file
            raise InputError(f"{source}: column {c!r} of gene {df['gene_id'][np.isinf(vals)].iloc[0]!r} is infinite")
    return df, source, cell_types, symbols


def _read_halflife(halflife) -> tuple[pd.DataFrame, str]:
    df, source = _read_table(halflife, "half-life feature table")
    for col in ("gene_id",) + HALFLIFE_FEATURES:
        if col not in df.columns:
            raise MissingInputError(f"{source}: column {col!r} missing")
    for col in HALFLIFE_FEATURES:
        if not pd.api.types.is_numeric_dtype(df[col].dtype):
            raise InputError(f"{source}: column {col!r} is not numeric")
    df["gene_id"] = df["gene_id"].astype(str)
    _check_unique(df["gene_id"], source)
    values = df[list(HALFLIFE_FEATURES)].to_numpy(dtype=np.float64)
    if np.isinf(values).any():
        row, col = np.argwhere(np.isinf(values))[0]
        raise InputError(f"{source}: column {HALFLIFE_FEATURES[col]!r} of gene {df['gene_id'].iloc[row]!r} is infinite")
    missing = {c: int(n) for c, n in zip(HALFLIFE_FEATURES, np.isnan(values).sum(axis=0)) if n}
    if missing:
        warnings.warn(f"{source}: {sum(missing.values())} missing value(s) (empty or n/a) replaced by their "
                      f"column's mean: {', '.join(f'{c} {n}' for c, n in missing.items())}", stacklevel=3)
    return df, source


def assign_split(chroms: Sequence[str], split: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
    """"train"/"valid"/"test" per chromosome (aliases matched); default :data:`DEFAULT_SPLIT`."""
    split = DEFAULT_SPLIT if split is None else split
    lookup: dict[str, str] = {}
    for name, chrom_list in split.items():
        if name not in SPLITS:
            raise InputError(f"split names must be in {SPLITS}, got {name!r}")
        if isinstance(chrom_list, str):
            chrom_list = [chrom_list]
        for c in chrom_list:
            key = normalize_chrom(c)
            if key in lookup and lookup[key] != name:
                raise InputError(f"chromosome {c!r} is in both {lookup[key]!r} and {name!r} splits")
            lookup[key] = name
    return np.array([lookup.get(normalize_chrom(c), "train") for c in chroms], dtype=object)


# ----------------------------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------------------------
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
        want = {str(g) for g in gene_ids} | {_strip_version(str(g)) for g in gene_ids}
        gid = tx["gene_id"].astype(str)
        tx = tx[gid.isin(want) | gid.map(_strip_version).isin(want)]
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
    rows = _align(ids, [str(x) for x in df.index])
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


# ----------------------------------------------------------------------------------------------
# builder
# ----------------------------------------------------------------------------------------------
def _validate_tracks(tracks, cell_types, expr_source: str = "the expression table"):
    if not isinstance(tracks, Mapping):
        raise InputError("tracks must be a mapping {cell_type: {'dnase': path, 'h3k27ac': path}}")
    for ct in cell_types:
        if ct not in tracks:
            chosen = " ".join(f"{c}={c}" for c in tracks if c in cell_types) or "CELL=COLUMN"
            raise MissingInputError(f"tracks: no entry for cell type {ct!r}, a column of {expr_source} (tracks for "
                           f"{list(tracks)}); give its tracks, or read only the columns of your cell types: "
                           f"--expression-columns {chosen} (cell_types= in Python)")
    for ct, d in tracks.items():
        if not isinstance(d, Mapping):
            raise InputError(f"tracks[{ct!r}] must be a mapping with keys 'dnase' and 'h3k27ac'")
        for k in ("dnase", "h3k27ac"):
            if k not in d:
                raise MissingInputError(f"tracks[{ct!r}]: key {k!r} missing")
            if not Path(d[k]).is_file():
                raise FileNotFoundError(f"tracks[{ct!r}][{k!r}]: bigWig file not found: {d[k]}")


def build_gene_table(tss, expression, tracks, halflife=None, gtf=None, genome=None, split=None, out=None,
                     cell_types=None, scored_only=False):
    """Build the gene table (see the module docstring for the schema).

    Parameters
    ----------
    tss : BED path (``chrom start end gene_id score strand``; TSS = ``(start + end) // 2``) or a
        DataFrame with those columns; or ``None`` to take one TSS per gene from ``gtf`` (the gene
        record's start on "+", end - 1 on "-", 0-based).
    expression : TSV/CSV path or DataFrame: gene ids (``gene_id`` or ``ENSID``) + one column of
        raw expression per cell type (an optional ``symbol``/``gene_name``/``Gene name`` column
        is used for symbols). Genes absent from
        it get NaN; its genes absent from the TSS set are dropped (with a warning).
    tracks : ``{cell_type: {"dnase": bigWig, "h3k27ac": bigWig}}``; every expression cell type
        needs an entry; cell types only in ``tracks`` are added with NaN expression.
    halflife : TSV/DataFrame with ``gene_id`` + the 8 :data:`HALFLIFE_FEATURES`; if ``None`` and
        ``gtf`` and ``genome`` are given they are computed (:func:`halflife_features_from_gtf`);
        otherwise zeros (with a warning). Genes missing from the table get the column mean.
    gtf : GTF path (symbols, TSS when ``tss`` is None, half-life features).
    genome : FASTA path or :class:`Genome` (GC content; TSS checked inside the chromosome).
    split : ``{"valid": [...], "test": [...]}`` chromosomes (aliases matched), the rest "train";
        default :data:`DEFAULT_SPLIT`.
    out : write the table there (``.h5ad``, atomically).
    cell_types : only these columns of ``expression``, or ``{cell type: column}`` (default: every
        column but the gene ids and symbols, each a cell type).
    scored_only : leave out, before any check of their chromosomes, the genes without an
        expression value in any cell type (with a warning saying how many): a genome-wide TSS
        file then serves tracks of a few chromosomes when only their genes are measured.
    """
    import anndata

    # ---- validate every input before any work
    if out is not None:
        from ..atomic import check_writable_file

        check_writable_file(out, "output gene table")
    if tss is None and gtf is None:
        raise InputError("build_gene_table needs tss (a BED) or gtf")
    if gtf is not None and not isinstance(gtf, pd.DataFrame) and not Path(gtf).is_file():
        raise FileNotFoundError(f"GTF not found: {gtf}")
    if genome is not None and not isinstance(genome, Genome):
        genome = Genome(genome)
    expr, expr_source, cell_types, expr_symbols = _read_expression(expression, cell_types)
    extra_cts = [ct for ct in (tracks or {}) if ct not in cell_types]
    for ct in extra_cts:
        if "/" in str(ct):
            raise InputError(f"tracks: cell type {ct!r} contains '/', which HDF5 cannot store")
    _validate_tracks(tracks, cell_types, expr_source)
    all_cts = list(cell_types) + extra_cts
    hl_df = hl_source = None
    if halflife is not None:
        hl_df, hl_source = _read_halflife(halflife)
    split_map = DEFAULT_SPLIT if split is None else split
    assign_split([], split_map)  # validates split names / overlaps

    gtf_df = None
    if gtf is not None:
        gtf_df = gtf if isinstance(gtf, pd.DataFrame) else read_gtf(gtf)
    if tss is not None:
        genes = read_tss_bed(tss)
        tss_source = "TSS table (DataFrame)" if isinstance(tss, pd.DataFrame) else os.path.abspath(tss)
        tss_rule = "(start + end) // 2 of the BED interval"
        genes["symbol"] = genes["gene_id"]
        if gtf_df is not None:
            g = gtf_gene_tss(gtf_df, str(gtf))
            rows = _align(genes["gene_id"].tolist(), g["gene_id"].tolist())
            sym = genes["symbol"].to_numpy(dtype=object)
            sym[rows >= 0] = g["symbol"].to_numpy(dtype=object)[rows[rows >= 0]]
            genes["symbol"] = sym
    else:
        genes = gtf_gene_tss(gtf_df, str(gtf))
        tss_source = os.path.abspath(gtf) if not isinstance(gtf, pd.DataFrame) else "GTF (DataFrame)"
        tss_rule = "GTF gene record: start on '+', end - 1 on '-' (0-based)"
    if tss is not None and gtf_df is None and expr_symbols is not None:
        rows = _align(genes["gene_id"].tolist(), expr["gene_id"].tolist())
        sym = genes["symbol"].to_numpy(dtype=object)
        sym[rows >= 0] = expr_symbols.to_numpy(dtype=object)[rows[rows >= 0]]
        genes["symbol"] = sym
    if scored_only:
        rows = _align(genes["gene_id"].tolist(), expr["gene_id"].tolist())
        values = expr[cell_types].to_numpy(dtype=np.float64)[np.maximum(rows, 0)]
        keep = (rows >= 0) & np.isfinite(values).any(axis=1)
        if not keep.all():
            warnings.warn(f"left out {int((~keep).sum())} of {len(genes)} genes of {tss_source} without a "
                          f"{'/'.join(map(str, cell_types))} value in {expr_source}", stacklevel=2)
        genes = genes[keep].reset_index(drop=True)
    if len(genes) == 0:
        raise InputError(f"{tss_source}: no genes" + (f" with a value in {expr_source}" if scored_only else ""))
    neg = genes["tss"].values < 0
    if neg.any():
        raise InputError(f"{tss_source}: gene {genes['gene_id'][neg].iloc[0]!r} has a negative TSS")

    # chromosomes present in the genome and in every track; TSS inside the chromosome
    chroms = genes["chrom"].astype(str).tolist()
    track_objs = {ct: {k: BigWigTrack(tracks[ct][k]) for k in ("dnase", "h3k27ac")} for ct in all_cts}
    for c in sorted(set(chroms)):
        for ct in all_cts:
            for k, trk in track_objs[ct].items():
                if not trk.has_chrom(c):
                    n = chroms.count(c)
                    raise MissingInputError(
                        f"chromosome {c!r} ({n} genes) not found in {trk.path} (tracks[{ct!r}][{k!r}]); "
                        f"available: {list(trk.chrom_sizes)[:8]}; leave that chromosome's genes out of "
                        f"{tss_source} to go on without them"
                    )
                name = trk.resolve(c)
                length = trk.chrom_sizes.get(name) if name is not None else None
                sel = (genes["chrom"].values == c) & (genes["tss"].values >= (length or np.inf))
                if sel.any():
                    raise InputError(
                        f"gene {genes['gene_id'][sel].iloc[0]!r}: TSS {int(genes['tss'][sel].iloc[0])} is beyond "
                        f"the end of {c} ({length} bp in the header of {trk.path})"
                    )
        if genome is not None:
            length = genome.chrom_length(c)  # KeyError names FASTA and chromosome
            sel = (genes["chrom"].values == c) & (genes["tss"].values >= length)
            if sel.any():
                raise InputError(
                    f"gene {genes['gene_id'][sel].iloc[0]!r}: TSS {int(genes['tss'][sel].iloc[0])} is beyond "
                    f"the end of {c} ({length} bp in {genome.path})"
                )

    # ---- expression -> X
    ids = genes["gene_id"].tolist()
    rows = _align(ids, expr["gene_id"].tolist())
    X = np.full((len(ids), len(all_cts)), np.nan, dtype=np.float32)
    ok = rows >= 0
    raw = expr[cell_types].to_numpy(dtype=np.float64)
    X[ok, : len(cell_types)] = np.log10(raw[rows[ok]] + 1.0).astype(np.float32)
    if not ok.any():
        raise InputError(f"{expr_source}: no gene_id matches a gene of {tss_source} "
                         f"(e.g. {expr['gene_id'].iloc[0]!r} vs {ids[0]!r})")
    n_unused = len(expr) - len(set(rows[ok].tolist()))
    if n_unused:
        warnings.warn(f"{expr_source}: dropped {n_unused} gene(s) not in the TSS set", stacklevel=2)
    for k, ct in enumerate(cell_types):
        unscored = int(np.isnan(X[:, k]).sum())
        if unscored:
            warnings.warn(f"{unscored} of {len(ids)} genes of {tss_source} have no {ct} value in {expr_source}: "
                          "kept with a NaN target (training, folds and metrics leave them out)", stacklevel=2)

    # ---- half-life features
    if hl_df is not None:
        hrows = _align(ids, hl_df["gene_id"].tolist())
        hl = np.full((len(ids), 8), np.nan)
        hl[hrows >= 0] = hl_df[list(HALFLIFE_FEATURES)].to_numpy(dtype=np.float64)[hrows[hrows >= 0]]
        n_missing = int((hrows < 0).sum())
        if n_missing:
            warnings.warn(f"{hl_source}: {n_missing} genes missing; their half-life features are the column means", stacklevel=2)
        means = np.nanmean(np.where(np.isfinite(hl), hl, np.nan), axis=0) if np.isfinite(hl).any() else np.zeros(8)
        means = np.nan_to_num(means)
        hl = np.where(np.isfinite(hl), hl, means[None, :])
        hl_how = hl_source
    elif gtf_df is not None and genome is not None:
        hl = halflife_features_from_gtf(gtf_df, genome, ids)[list(HALFLIFE_FEATURES)].to_numpy(dtype=np.float64)
        hl_how = "computed from GTF + genome (halflife_features_from_gtf)"
    else:
        warnings.warn("no half-life features (give a half-life table - --halflife, halflife= - or a GTF "
                      "and the genome): using zeros", stacklevel=2)
        hl = np.zeros((len(ids), 8))
        hl_how = "zeros"

    # ---- promoter activity per cell type
    feats = pd.DataFrame(hl.astype(np.float32), columns=list(HALFLIFE_FEATURES), index=pd.Index(ids))
    for ct in all_cts:
        feats[promoter_activity_column(ct)] = compute_promoter_activity(
            chroms, genes["tss"].values, track_objs[ct]["dnase"], track_objs[ct]["h3k27ac"]
        )
    for ct in all_cts:
        for trk in track_objs[ct].values():
            trk.close()

    obs = pd.DataFrame(
        {
            "gene_id": np.asarray(ids, dtype=object),
            "symbol": genes["symbol"].astype(str).to_numpy(dtype=object),
            "chrom": np.asarray(chroms, dtype=object),
            "tss": genes["tss"].to_numpy(dtype=np.int64),
            "strand": genes["strand"].astype(str).to_numpy(dtype=object),
            "split": assign_split(chroms, split_map),
        },
        index=pd.Index(ids, name=None),
    )
    adata = anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index([str(c) for c in all_cts])))
    adata.obsm["features"] = feats.set_axis(adata.obs_names, axis=0)
    adata.uns["seq2exp"] = {
        "schema_version": SCHEMA_VERSION,
        "tss_source": tss_source,
        "tss_rule": tss_rule,
        "expression_source": expr_source,
        "expression_transform": "log10(x + 1)",
        "halflife_source": hl_how,
        "gtf": "" if gtf is None else (os.path.abspath(gtf) if not isinstance(gtf, pd.DataFrame) else "GTF (DataFrame)"),
        "genome": "" if genome is None else os.path.abspath(genome.path),
        "tracks": {ct: {k: os.path.abspath(tracks[ct][k]) for k in ("dnase", "h3k27ac")} for ct in all_cts},
        "promoter_window": [-PROMOTER_HALF_WIDTH, PROMOTER_HALF_WIDTH],
        "promoter_activity": "sqrt(mean DNase * mean H3K27ac) over [tss-500, tss+500)",
        "split": {k: [str(c) for c in ([v] if isinstance(v, str) else v)] for k, v in split_map.items()},
    }
    validate_gene_table(adata, "built gene table")
    if out is not None:
        write_gene_table(adata, out)
    return adata
