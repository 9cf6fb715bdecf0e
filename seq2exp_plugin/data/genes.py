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

  Optional, written when a GTF is given: ``gene_start``, ``gene_end`` (int, the gene body from
  the GTF's gene record, 0-based half-open; -1 for a gene the GTF lacks). ``seq2exp links``
  reads them to call an element genic.

- ``var`` index = cell-type names (no "/"). ``X`` = float32 ``(n_genes, n_cell_types)``
  = ``log10(expression + 1)``, NaN where unknown.
- ``obsm["features"]`` = DataFrame (index = obs_names): the 8 mRNA half-life columns
  :data:`HALFLIFE_FEATURES` followed by one ``promoter_activity:<cell type>`` column per cell
  type, ``sqrt(mean DNase over [tss-500, tss+500) * mean H3K27ac over [tss-500, tss+500))``
  (bigWig means with uncovered/NaN positions counted as 0; a negative product counts as 0).
  :func:`gene_features` gives the model's 9 features for one cell type.
- ``uns["seq2exp"]``: provenance (``schema_version``, source files, TSS rule, promoter window
  ``[-500, 500]``, split chromosomes, how half-life features were obtained).

Builder: :func:`build_gene_table`, from the files :mod:`seq2exp_plugin.data.gene_sources` reads
and the features :mod:`seq2exp_plugin.data.gene_features` computes (half-life features from a GTF,
when no table is given, follow Xpresso's definitions on one transcript per gene).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..errors import InputError, MissingInputError
from .gene_features import PROMOTER_HALF_WIDTH, compute_promoter_activity, halflife_features_from_gtf
from .gene_sources import (DEFAULT_SPLIT, HALFLIFE_FEATURES, SPLITS, align_gene_ids, assign_split, gtf_gene_tss,
                           read_expression_table, read_gtf, read_halflife_table, read_tss_bed)
from .genome import Genome
from .tracks import BigWigTrack

__all__ = [
    "HALFLIFE_FEATURES",
    "PROMOTER_HALF_WIDTH",
    "DEFAULT_SPLIT",
    "OBS_COLUMNS",
    "BODY_COLUMNS",
    "SCHEMA_VERSION",
    "build_gene_table",
    "read_gene_table",
    "write_gene_table",
    "validate_gene_table",
    "gene_features",
    "promoter_activity_column",
]

SCHEMA_VERSION = 1
OBS_COLUMNS = ("gene_id", "symbol", "chrom", "tss", "strand", "split")
#: Optional obs columns: the gene body (0-based half-open; -1 where unknown).
BODY_COLUMNS = ("gene_start", "gene_end")


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
    body = [c for c in BODY_COLUMNS if c in obs.columns]
    if body and body != list(BODY_COLUMNS):
        raise MissingInputError(f"{source}: obs has {body[0]!r} without {({*BODY_COLUMNS} - {*body}).pop()!r}")
    for col in body:
        if not pd.api.types.is_integer_dtype(obs[col].dtype):
            raise InputError(f"{source}: obs column {col!r} must be integer, got {obs[col].dtype}")
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
    expr, expr_source, cell_types, expr_symbols = read_expression_table(expression, cell_types)
    extra_cts = [ct for ct in (tracks or {}) if ct not in cell_types]
    for ct in extra_cts:
        if "/" in str(ct):
            raise InputError(f"tracks: cell type {ct!r} contains '/', which HDF5 cannot store")
    _validate_tracks(tracks, cell_types, expr_source)
    all_cts = list(cell_types) + extra_cts
    hl_df = hl_source = None
    if halflife is not None:
        hl_df, hl_source = read_halflife_table(halflife)
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
            rows = align_gene_ids(genes["gene_id"].tolist(), g["gene_id"].tolist())
            sym = genes["symbol"].to_numpy(dtype=object)
            sym[rows >= 0] = g["symbol"].to_numpy(dtype=object)[rows[rows >= 0]]
            genes["symbol"] = sym
            for col in ("gene_start", "gene_end"):
                genes[col] = np.where(rows >= 0, g[col].to_numpy(np.int64)[np.maximum(rows, 0)], -1)
    else:
        genes = gtf_gene_tss(gtf_df, str(gtf))
        tss_source = os.path.abspath(gtf) if not isinstance(gtf, pd.DataFrame) else "GTF (DataFrame)"
        tss_rule = "GTF gene record: start on '+', end - 1 on '-' (0-based)"
    if tss is not None and gtf_df is None and expr_symbols is not None:
        rows = align_gene_ids(genes["gene_id"].tolist(), expr["gene_id"].tolist())
        sym = genes["symbol"].to_numpy(dtype=object)
        sym[rows >= 0] = expr_symbols.to_numpy(dtype=object)[rows[rows >= 0]]
        genes["symbol"] = sym
    if scored_only:
        rows = align_gene_ids(genes["gene_id"].tolist(), expr["gene_id"].tolist())
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
    rows = align_gene_ids(ids, expr["gene_id"].tolist())
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
        hrows = align_gene_ids(ids, hl_df["gene_id"].tolist())
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
    if gtf_df is not None:
        obs["gene_start"], obs["gene_end"] = (genes[c].to_numpy(np.int64) for c in ("gene_start", "gene_end"))
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
