"""CRISPRi enhancer-gene benchmark files (EngreitzLab ``EPCrisprBenchmark_*.tsv.gz`` format).

One row per tested (element, gene) pair: the element ``chrom chromStart chromEnd`` (0-based
half-open), the gene (``measuredGeneSymbol``, optionally ``measuredGeneEnsemblId``) and its TSS
(``chrTSS startTSS endTSS``), whether perturbing the element changed the gene (``Regulated``,
TRUE/FALSE) and the screen's power to see an effect of a given size (``PowerAtEffectSize<N>``),
as in the ENCODE K562 ensemble (Fulco 2019, Gasperini 2019, Schraivogel 2020). ``seq2exp synth``
writes its ground truth in this format too (:data:`CRISPR_COLUMNS`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .bed import open_text
from .genome import resolve_chrom

__all__ = ["CRISPR_COLUMNS", "REQUIRED_COLUMNS", "read_crispr", "parse_bool"]

#: The columns of EPCrisprBenchmark_ensemble_data_GRCh38.tsv.gz, in its order.
CRISPR_COLUMNS = ("chrom", "chromStart", "chromEnd", "name", "EffectSize", "chrTSS", "startTSS", "endTSS",
                  "measuredGeneSymbol", "Significant", "pValueAdjusted", "PowerAtEffectSize10",
                  "PowerAtEffectSize15", "PowerAtEffectSize20", "PowerAtEffectSize25", "PowerAtEffectSize50",
                  "ValidConnection", "CellType", "Reference", "Regulated", "Dataset")

#: What scoring a predictor needs: the element, the gene, its TSS (for distance) and the label.
REQUIRED_COLUMNS = ("chrom", "chromStart", "chromEnd", "measuredGeneSymbol", "startTSS", "endTSS", "Regulated")

_TRUE, _FALSE = {"true", "t", "1", "yes"}, {"false", "f", "0", "no"}


def parse_bool(values: pd.Series, what: str) -> np.ndarray:
    """TRUE/FALSE text (R's spelling, any case; 1/0) as booleans; ``ValueError`` naming the
    first other value and ``what`` (file and column)."""
    text = values.astype(str).str.strip().str.lower()
    bad = ~text.isin(_TRUE | _FALSE)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{what}: expected TRUE or FALSE, found {values.iloc[i]!r} (data row {i + 1})")
    return text.isin(_TRUE).to_numpy()


def read_crispr(path: str | os.PathLike, sizes: dict[str, int] | None = None) -> pd.DataFrame:
    """A CRISPR benchmark file (TSV, plain or gzip) with checked columns and coordinates.

    Args:
        path: the file.
        sizes: chromosome sizes of the genome the predictions were made on; an element or TSS
            beyond the end of its chromosome is an error (the file is of another assembly).
            Chromosomes absent from ``sizes`` are kept (the caller counts them).

    Returns:
        The table, ``Regulated`` (and ``ValidConnection``, if present) as booleans.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--crispr: CRISPR benchmark file not found: {path}")
    with open_text(path) as fh:
        table = pd.read_csv(fh, sep="\t", dtype={"chrom": str, "chrTSS": str, "measuredGeneSymbol": str})
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"--crispr {path}: missing column(s) {', '.join(missing)} (an EPCrisprBenchmark file "
                         f"has {' '.join(CRISPR_COLUMNS)}); found {' '.join(map(str, table.columns[:12]))}")
    if table.empty:
        raise InputError(f"--crispr {path}: no tested pairs")
    for col in ("chromStart", "chromEnd", "startTSS", "endTSS"):
        if not pd.api.types.is_numeric_dtype(table[col]) or table[col].isna().any():
            raise InputError(f"--crispr {path}: column {col} must hold whole numbers (no NA)")
        table[col] = table[col].astype(np.int64)
    bad = (table["chromStart"] < 0) | (table["chromEnd"] <= table["chromStart"])
    if bad.any():
        r = table[bad].iloc[0]
        raise InputError(f"--crispr {path}: invalid element {r['chrom']}:{r['chromStart']}-{r['chromEnd']}")
    table["Regulated"] = parse_bool(table["Regulated"], f"--crispr {path}, column Regulated")
    if "ValidConnection" in table.columns:
        # the pipeline's filters write a reason instead of TRUE; anything but TRUE is not valid
        table["ValidConnection"] = table["ValidConnection"].astype(str).str.strip().str.upper() == "TRUE"
    if sizes is not None:
        _check_coordinates(table, sizes, path)
    return table


def _check_coordinates(table: pd.DataFrame, sizes: dict[str, int], path: Path) -> None:
    for chrom, rows in table.groupby("chrom", sort=False):
        try:
            name = resolve_chrom(str(chrom), sizes)
        except KeyError:
            continue
        last = int(max(rows["chromEnd"].max(), rows["endTSS"].max()))
        if last > sizes[name]:
            raise InputError(f"--crispr {path}: {chrom} coordinates reach {last:,} but {name} has {sizes[name]:,} bp "
                             f"in the genome; is the file of another genome assembly (e.g. GRCh38 against hg19)?")
