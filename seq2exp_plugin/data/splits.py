"""Which genes train, validate and test: the gene table's split column, gene lists, or folds.

Rules (the options of a run's ``data`` section; :data:`SPLIT_OPTIONS`):

- default: the ``obs`` column ``split_column`` ("split": the chromosome split ``seq2exp genes``
  writes), values "train", "valid", "test".
- ``test_genes`` / ``valid_genes``: files of gene ids (one per line, first field; ``#``
  comments) or lists. Listed genes are test (valid); every other gene keeps its
  ``split_column`` label, with "test" turned into "train" when ``test_genes`` is given.
- ``folds = K`` (>= 3) and ``fold = i``: genes sorted along the genome (chromosomes in natural
  order, then TSS) are cut into K contiguous blocks of equal size; block ``i`` is test, block
  ``(i + 1) % K`` valid, the rest train. Contiguous blocks keep neighbouring genes, which share
  regulatory elements and signal, on the same side. With a cell type, the blocks are cut on the
  genes with a target (the ones trained and scored): a gene without one joins the block of the
  nearest scored gene before it along the genome (the first block for those before any).
- ``fold_column`` with ``fold = i``: the sorted distinct values of that ``obs`` column are the
  folds (e.g. a column of fold numbers or chromosome names); value ``i`` is test, value
  ``i + 1`` (cyclically) valid.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import InputError, MissingInputError

__all__ = ["SPLIT_OPTIONS", "split_labels", "genes_of_split", "read_gene_list", "is_default_split"]

#: The run's ``data`` fields that choose the split.
SPLIT_OPTIONS = ("split_column", "folds", "fold", "fold_column", "valid_genes", "test_genes")
_LABELS = ("train", "valid", "test")


def is_default_split(split_column: str = "split", folds: int = 0, fold: int = 0,
                     fold_column: str | None = None, valid_genes=None, test_genes=None) -> bool:
    """True when the table's own ``split`` column decides (the behaviour before these options)."""
    return split_column == "split" and not folds and fold_column is None and not valid_genes and not test_genes


def read_gene_list(source: str | Path | Sequence[str], what: str = "gene list") -> list[str]:
    """Gene ids from a file (first field per line, ``#`` comments) or a list."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{what} not found: {path}")
        ids = [line.split()[0] for line in path.read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
        if not ids:
            raise InputError(f"{what} {path}: no gene ids")
        return ids
    return [str(g) for g in source]


def _chrom_key(chrom: str) -> tuple[int, int | str]:
    name = re.sub(r"^chr", "", str(chrom), flags=re.IGNORECASE)
    return (0, int(name)) if name.isdigit() else (1, name)


def genome_order(obs: pd.DataFrame) -> np.ndarray:
    """Row indices of ``obs`` sorted by (chromosome in natural order, TSS, gene id)."""
    keys = [(_chrom_key(c), int(t), str(g)) for c, t, g in zip(obs["chrom"], obs["tss"], obs.index)]
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


def contiguous_blocks(order: np.ndarray, folds: int, scored: np.ndarray | None = None) -> list[np.ndarray]:
    """``folds`` contiguous blocks of the rows in genome ``order``, equal in scored rows
    (``scored``: bool per row; None: every row counts); an unscored row joins the block of the
    scored row before it."""
    if scored is None:
        return np.array_split(order, folds)
    counted = np.asarray(scored, dtype=bool)[order]
    rank = np.maximum(np.cumsum(counted) - 1, 0)  # the scored row at or before each position
    edges = np.cumsum([len(b) for b in np.array_split(np.arange(max(int(counted.sum()), 1)), folds)])
    block = np.searchsorted(edges, rank, side="right")
    return [order[block == k] for k in range(folds)]


def split_labels(obs: pd.DataFrame, split_column: str = "split", folds: int = 0, fold: int = 0,
                 fold_column: str | None = None, valid_genes=None, test_genes=None,
                 source: str = "gene table", scored: np.ndarray | None = None) -> pd.Series:
    """"train"/"valid"/"test" per gene (index = gene ids) under the rules of the module docstring;
    ``scored`` (bool per gene: has a target) balances contiguous folds on the scored genes."""
    if folds and fold_column is not None:
        raise InputError("data.folds and data.fold_column are exclusive: give one of them")
    if (folds or fold_column is not None) and (valid_genes or test_genes):
        raise InputError("data.folds/fold_column and data.valid_genes/test_genes are exclusive")
    ids = obs.index.astype(str)
    labels = pd.Series("train", index=ids, dtype=object)
    if folds:
        if int(folds) < 3:
            raise InputError(f"data.folds must be >= 3 (a test, a validation and a training fold), got {folds}")
        if not 0 <= int(fold) < int(folds):
            raise InputError(f"data.fold must be in 0..{int(folds) - 1}, got {fold}")
        blocks = contiguous_blocks(genome_order(obs), int(folds), scored)
        labels.iloc[blocks[int(fold)]] = "test"
        labels.iloc[blocks[(int(fold) + 1) % int(folds)]] = "valid"
        return labels
    if fold_column is not None:
        if fold_column not in obs.columns:
            raise MissingInputError(f"{source}: obs column {fold_column!r} (data.fold_column) not found; "
                           f"columns: {list(obs.columns)}")
        values = obs[fold_column].astype(str).to_numpy()
        distinct = sorted(set(values), key=lambda v: (0, int(v)) if v.lstrip("-").isdigit() else (1, v))
        if len(distinct) < 3:
            raise InputError(f"{source}: obs column {fold_column!r} has {len(distinct)} distinct value(s); "
                             "folds need at least 3 (test, validation, training)")
        if not 0 <= int(fold) < len(distinct):
            raise InputError(f"data.fold must be in 0..{len(distinct) - 1} (the values of "
                             f"{fold_column!r}: {distinct}), got {fold}")
        labels[values == distinct[int(fold)]] = "test"
        labels[values == distinct[(int(fold) + 1) % len(distinct)]] = "valid"
        return labels
    if split_column not in obs.columns:
        raise MissingInputError(f"{source}: obs column {split_column!r} (data.split_column) not found; "
                       f"columns: {list(obs.columns)}")
    labels[:] = obs[split_column].astype(str).to_numpy()
    bad = ~labels.isin(_LABELS)
    if bad.any():
        raise InputError(f"{source}: obs column {split_column!r} must hold {_LABELS}; gene "
                         f"{labels.index[bad][0]!r} has {labels[bad].iloc[0]!r}")
    known = set(ids)
    for label, listed in (("test", test_genes), ("valid", valid_genes)):
        if not listed:
            continue
        genes = read_gene_list(listed, f"data.{label}_genes")
        missing = [g for g in genes if g not in known]
        if missing:
            raise MissingInputError(f"data.{label}_genes: gene {missing[0]!r} not in {source} "
                           f"({len(missing)} of {len(genes)} missing)")
        if label == "test":
            labels[labels == "test"] = "train"
        labels[genes] = label
    return labels


def genes_of_split(genes, split: str, cell_type: str | None = None, **options) -> list[str] | None:
    """Gene ids of ``split`` under ``options`` (:data:`SPLIT_OPTIONS`); ``None`` when the table's
    own ``split`` column decides (the dataset then filters by it directly). ``cell_type``: folds
    balanced on the genes with a target for it."""
    if is_default_split(**options):
        return None
    from .genes import read_gene_table

    adata = read_gene_table(genes) if isinstance(genes, (str, Path)) else genes
    scored = None
    if cell_type is not None and cell_type in adata.var_names:
        scored = np.isfinite(np.asarray(adata[:, cell_type].X, dtype=np.float64).reshape(-1))
    labels = split_labels(adata.obs, source=str(genes) if isinstance(genes, (str, Path)) else "gene table",
                          scored=scored, **options)
    return labels.index[labels == split].tolist()
