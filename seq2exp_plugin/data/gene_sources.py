"""Readers of what a gene table is built from: TSS BEDs, GTFs, expression and half-life tables.

Each reader checks its file before any work and names the file, column or gene in its errors.
Tables are read from TSV/CSV paths or DataFrames; gene ids match with or without a version
suffix (``ENSG...5`` = ``ENSG...``). The table these feed: :mod:`seq2exp_plugin.data.genes`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError, MissingInputError
from .bed import open_text, read_bed
from .genome import normalize_chrom

__all__ = [
    "HALFLIFE_FEATURES",
    "DEFAULT_SPLIT",
    "SPLITS",
    "read_tss_bed",
    "read_gtf",
    "gtf_gene_tss",
    "read_expression_table",
    "read_halflife_table",
    "align_gene_ids",
    "strip_gene_version",
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
DEFAULT_SPLIT = {"valid": ["chr3", "chr21"], "test": ["chr22", "chrX"]}
SPLITS = ("train", "valid", "test")
#: The gene-id column of expression and half-life tables: ours, or EPInformer's (the paper's
#: expression table is keyed by ``ENSID``).
_GENE_ID_COLUMNS = ("gene_id", "ENSID")
_SYMBOL_COLUMNS = ("symbol", "gene_name", "Gene name")
_CHOOSE_COLUMNS = "only some columns: --expression-columns CELL=COLUMN, cell_types= in Python"


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
    Returns gene_id, symbol, chrom, tss, strand, gene_start, gene_end (the gene body, 0-based
    half-open, which ``seq2exp links`` needs to call an element genic).
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
         "tss": tss.astype(np.int64), "strand": genes["strand"].values,
         "gene_start": genes["start"].to_numpy(np.int64), "gene_end": genes["end"].to_numpy(np.int64)}
    )


def strip_gene_version(gid: str) -> str:
    """Drop a trailing ".<digits>" version (Ensembl/GENCODE style ids)."""
    head, dot, tail = gid.rpartition(".")
    return head if dot and head and tail.isdigit() else gid


def align_gene_ids(ids: Sequence[str], other: Sequence[str]) -> np.ndarray:
    """Row of each ``ids`` element in ``other`` (exact match first, then both sides without an
    Ensembl version suffix, e.g. "ENSG01.3" ~ "ENSG01"); -1 if absent."""
    exact = {g: i for i, g in enumerate(other)}
    stripped: dict[str, int] = {}
    for i, g in enumerate(other):
        stripped.setdefault(strip_gene_version(g), i)
    out = np.full(len(ids), -1, dtype=np.int64)
    for k, g in enumerate(ids):
        j = exact.get(g)
        if j is None:
            j = stripped.get(strip_gene_version(g), -1)
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


def read_expression_table(expression, cell_types: Sequence[str] | Mapping[str, str] | None = None
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


def read_halflife_table(halflife) -> tuple[pd.DataFrame, str]:
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
