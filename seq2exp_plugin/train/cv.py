"""Cross-validation over gene folds (``seq2exp cv``): every fold x variant trained with the
run's recipe (scaling fitted on that fold's training genes), evaluated on the fold's test genes,
and summarised as per-fold and mean +/- sd MSE, Pearson and Spearman (and the cross-cell-type
Spearman for runs on several cell types; cv.json keeps every metric of each fold).

Folds are K contiguous blocks of genes along the genome (``data.folds``) or the values of a
gene-table column (``data.fold_column``); see :mod:`seq2exp_plugin.data.splits`. Each run goes
to ``OUT/fold<i>/<variant>`` (rerunning resumes or skips finished runs), the tables to
``OUT/cv.tsv``, ``OUT/cv.md`` and ``OUT/cv.json``.

Beside the metrics, each row reports ``outside_range``: how far the furthest test prediction
lies outside the range of that fold's training targets (0 when every prediction is inside), and,
when the project's ``ridge`` ran too, ``mse_over_ridge``: the row's MSE over that fold's ridge
MSE (the summary gives its largest value over folds: a model that is never much worse than a
linear fit on the same signals stays below a small factor on every fold, not only on average).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError, MissingInputError
from .config import PAPER_EPOCHS, VARIANTS, RunConfig

#: What ``seq2exp cv`` trains by default: the model and the project's baselines.
DEFAULT_VARIANTS = ("seq2exp", "seq-signals", "ridge", "promoter-ridge")
CV_METRICS = ("mse", "pearson", "spearman")
#: ... and, when every row has it (runs on several cell types), this one.
CELLTYPE_METRIC = "cross_celltype_spearman"
#: The variant each row's MSE is compared with (``mse_over_ridge``), when it is cross-validated too.
REFERENCE_VARIANT = "ridge"


@dataclass
class FoldResult:
    variant: str
    fold: int
    metrics: dict[str, float]
    n_test: int
    outside_range: float
    checkpoint: str


def run_from_files(out_dir: str | Path, genome: str, tss: str, expression: str, signals: dict[str, str],
                   cell_type: str, halflife: str | None = None, settings: dict | None = None,
                   expression_column: str | None = None, gtf: str | None = None) -> RunConfig:
    """The base run of ``seq2exp cv`` given raw files: writes ``OUT/genes.h5ad`` from the TSS BED,
    the expression table's ``cell_type`` column (or ``expression_column``, named ``cell_type``
    in the table) and the DNase/H3K27ac bigWigs (promoter activity), with only the genes that
    have a target (the others cannot be trained or scored; how many is said), half-life
    features from ``halflife`` or from ``gtf`` and the genome, and ``OUT/base.yaml``, a run configuration reading ``signals`` in their given
    order and training for the paper's :data:`~.config.PAPER_EPOCHS` passes over each fold's
    training genes (unless ``settings`` give ``train.max_steps`` or ``train.epochs``), and
    returns it loaded with ``settings`` (dotted ``key=value`` overrides, as ``--set``). Checks
    every input first."""
    from ..data.genes import build_gene_table

    from ..data.hic import is_powerlaw

    for what, path in {"genome": genome, "TSS table": tss, "expression table": expression,
                       **({"GTF": gtf} if gtf else {}),
                       **{f"signal {k!r}": v for k, v in signals.items() if not is_powerlaw(v)}}.items():
        if not Path(str(path).partition("::")[0]).is_file():
            raise FileNotFoundError(f"{what} not found: {path}")
    missing = [name for name in ("dnase", "h3k27ac") if name not in signals]
    if missing:
        raise InputError(f"--signals needs a {missing[0]!r} bigWig (promoter activity is "
                         f"sqrt(DNase x H3K27ac)); got {list(signals)}")
    genes = Path(out_dir) / "genes.h5ad"  # its folder is made when the table is written
    build_gene_table(tss=tss, expression=expression, cell_types={cell_type: expression_column or cell_type},
                     genome=genome, halflife=halflife, gtf=gtf, scored_only=True,
                     tracks={cell_type: {k: signals[k] for k in ("dnase", "h3k27ac")}}, out=genes)
    import yaml

    from ..atomic import write_text
    from .config import load_config

    base = {"data": {"genes": _absolute(genes), "genome": _absolute(genome),
                     "signals": {k: v if is_powerlaw(v) else _absolute(v) for k, v in signals.items()},
                     "cell_type": cell_type},
            "out_dir": _absolute(out_dir)}
    if not {"train.max_steps", "train.epochs"} & set(settings or {}):
        # the paper's budget in passes over each fold's training genes, whatever their number
        base["train"] = {"epochs": PAPER_EPOCHS}
    write_text(Path(out_dir) / "base.yaml", yaml.safe_dump(base, sort_keys=False))
    return load_config(Path(out_dir) / "base.yaml", settings)


def _absolute(path) -> str:
    """Absolute path, keeping a ``::`` URI suffix (``x.mcool::/resolutions/5000``)."""
    file, sep, suffix = str(path).partition("::")
    return f"{Path(file).resolve()}{sep}{suffix}"


def n_folds(base: RunConfig, folds: int | None) -> int:
    """K: ``folds``, or the number of distinct values of ``data.fold_column``."""
    if base.data.fold_column is None:
        if folds is None or folds < 3:
            raise InputError(f"cross-validation needs --folds >= 3 (or data.fold_column), got {folds}")
        return int(folds)
    from ..data.genes import read_gene_table

    obs = read_gene_table(base.data.genes).obs
    if base.data.fold_column not in obs.columns:
        raise MissingInputError(f"{base.data.genes}: obs column {base.data.fold_column!r} (data.fold_column) not found")
    return int(obs[base.data.fold_column].astype(str).nunique())


def fold_run(base: RunConfig, variant: str, fold: int, folds: int, out_dir: str | Path) -> RunConfig:
    """The run of one (variant, fold)."""
    data = {**base.to_dict()["data"], "fold": int(fold)}
    if base.data.fold_column is None:
        data["folds"] = int(folds)
    return RunConfig.from_dict({**base.to_dict(), "variant": variant, "data": data,
                                "out_dir": str(Path(out_dir) / f"fold{fold}" / variant)})


def check_folds(base: RunConfig, runs: Sequence[RunConfig]) -> None:
    """Refuse, before any training, folds that leave a split of some fold with fewer than 2
    genes with a measured target (the scaling, model selection and test metrics need 2)."""
    from ..data.genes import read_gene_table
    from ..data.splits import SPLIT_OPTIONS, split_labels

    table = read_gene_table(base.data.genes)
    if base.data.cell_type not in table.var_names:
        raise MissingInputError(f"{base.data.genes}: cell type {base.data.cell_type!r} not in the gene table; "
                                f"available: {list(table.var_names)}")
    measured = np.isfinite(np.asarray(table[:, base.data.cell_type].X, dtype=np.float64).ravel())
    for run in runs:
        labels = split_labels(table.obs, source=base.data.genes, **{k: getattr(run.data, k) for k in SPLIT_OPTIONS})
        for split in ("train", "valid", "test"):
            n = int(((labels == split).to_numpy() & measured).sum())
            if n < 2:
                raise InputError(f"{base.data.genes}: {len(runs)} folds of {int(measured.sum())} genes with a "
                                 f"measured target leave {n} {split} gene(s) in fold {run.data.fold}; every split "
                                 f"needs at least 2: use fewer folds")


def evaluate_fold(checkpoint: str | Path) -> tuple[dict[str, float], int, float]:
    """Metrics on the test genes, their count, and the largest excursion of a test prediction
    outside the training targets' range."""
    from .evaluate import load_run, predict_dataset
    from .fit import make_dataset
    from .metrics import celltype_metrics, regression_metrics

    module, run = load_run(str(checkpoint))
    test = make_dataset(run, "test", require_target=True)
    train_targets = make_dataset(run, "train", require_target=True).targets
    predicted = np.array([g.prediction for g in predict_dataset(module.net, test, keep_scores=False,
                                                                progress=False)])
    low, high = float(np.min(train_targets)), float(np.max(train_targets))
    outside = float(np.max(np.maximum(low - predicted, predicted - high), initial=0.0))
    metrics = regression_metrics(predicted, test.targets)
    if hasattr(test, "cell_types"):  # several cell types (data.cell_types)
        metrics.update(celltype_metrics(predicted, test.targets, test.gene_ids, test.cell_types))
    return metrics, len(test), max(outside, 0.0)


def fold_runs(base: RunConfig, out_dir: str | Path, folds: int | None = None,
              variants: Sequence[str] = DEFAULT_VARIANTS) -> list[RunConfig]:
    """Every (fold, variant) run of a cross-validation, all checked before any is trained: the
    variants exist, each run's configuration is valid and every split of every fold has genes
    with a target."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise InputError(f"unknown variant {unknown[0]!r}; choose from {sorted(VARIANTS)}")
    k = n_folds(base, folds)
    runs = [fold_run(base, v, i, k, out_dir) for i in range(k) for v in variants]
    check_folds(base, [run for run in runs if run.variant == variants[0]])
    return runs


def cross_validate(runs: Sequence[RunConfig], out_dir: str | Path,
                   on_result: Callable[[FoldResult], None] | None = None) -> list[FoldResult]:
    """Train and evaluate every run of :func:`fold_runs`; write the tables into ``out_dir``."""
    from .fit import fit

    results = []
    for run in runs:
        fit(run)
        best = Path(run.out_dir) / "checkpoints" / "best.ckpt"
        metrics, n_test, outside = evaluate_fold(best)
        result = FoldResult(run.variant, run.data.fold, metrics, n_test, outside, str(best))
        results.append(result)
        if on_result is not None:
            on_result(result)
    write_results(out_dir, results)
    return results


def cv_metrics(results: Sequence[FoldResult]) -> tuple[str, ...]:
    """The metric columns of the tables: :data:`CV_METRICS`, and :data:`CELLTYPE_METRIC` when
    every row has it."""
    every = bool(results) and all(CELLTYPE_METRIC in r.metrics for r in results)
    return CV_METRICS + ((CELLTYPE_METRIC,) if every else ())


def mse_over_reference(results: Sequence[FoldResult]) -> dict[tuple[str, int], float]:
    """``{(variant, fold): MSE / the REFERENCE_VARIANT's MSE on that fold}`` for the folds where
    the reference ran (empty without it)."""
    reference = {r.fold: r.metrics["mse"] for r in results if r.variant == REFERENCE_VARIANT}
    return {(r.variant, r.fold): r.metrics["mse"] / reference[r.fold]
            for r in results if r.fold in reference and reference[r.fold] > 0}


def summary(results: Sequence[FoldResult]) -> dict[str, dict[str, tuple[float, float]]]:
    """``{variant: {metric: (mean, sd)}}`` over folds (sd with ddof 1; 0 for one fold), plus the
    largest ``outside_range`` and (with the reference) the largest ``mse_over_ridge`` as
    ``(max, 0)``."""
    ratios = mse_over_reference(results)
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for variant in dict.fromkeys(r.variant for r in results):
        rows = [r for r in results if r.variant == variant]
        out[variant] = {}
        for metric in cv_metrics(results):
            values = np.array([r.metrics[metric] for r in rows])
            out[variant][metric] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
        out[variant]["outside_range"] = (max(r.outside_range for r in rows), 0.0)
        mine = [ratio for (v, _), ratio in ratios.items() if v == variant]
        if mine:
            out[variant]["mse_over_ridge"] = (max(mine), 0.0)
    return out


def format_results(results: Sequence[FoldResult]) -> str:
    """Markdown: one row per (fold, variant), then mean +/- sd per variant; with the reference
    variant, a last column of MSE over its MSE (the summary row: the largest over folds)."""
    ratios = mse_over_reference(results)
    metrics = cv_metrics(results)
    columns = ["fold", "model", "test genes", *metrics, "outside range"]
    columns += [f"MSE / {REFERENCE_VARIANT}"] if ratios else []
    rows = []
    for r in sorted(results, key=lambda r: (r.fold, r.variant)):
        ratio = ratios.get((r.variant, r.fold))
        rows.append([r.fold, r.variant, r.n_test, *(f"{r.metrics[m]:.4f}" for m in metrics),
                     f"{r.outside_range:.3f}"] + ([f"{ratio:.2f}" if ratio is not None else "-"] if ratios else []))
    for variant, values in summary(results).items():
        n = sum(r.n_test for r in results if r.variant == variant)
        worst = values.get("mse_over_ridge")
        rows.append(["mean +/- sd", variant, n, *(f"{values[m][0]:.4f} +/- {values[m][1]:.4f}" for m in metrics),
                     f"max {values['outside_range'][0]:.3f}"]
                    + ([f"max {worst[0]:.2f}" if worst else "-"] if ratios else []))
    return "\n".join(["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
                     + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def write_results(out_dir: str | Path, results: Sequence[FoldResult]) -> None:
    """``cv.tsv`` (per fold), ``cv.md`` (the table) and ``cv.json`` (both), atomically."""
    import pandas as pd

    from ..atomic import write_json, write_text

    out_dir = Path(out_dir)
    ratios = mse_over_reference(results)
    rows = [{"fold": r.fold, "variant": r.variant, "n_test": r.n_test, **r.metrics,
             "outside_range": r.outside_range,
             **({"mse_over_ridge": ratios.get((r.variant, r.fold), float("nan"))} if ratios else {}),
             "checkpoint": r.checkpoint} for r in results]
    write_text(out_dir / "cv.tsv", pd.DataFrame(rows).to_csv(sep="\t", index=False, float_format="%.6g"))
    write_text(out_dir / "cv.md", format_results(results) + "\n")
    write_json(out_dir / "cv.json", {"folds": rows, "summary": {
        v: {m: {"mean": mean, "sd": sd} if m in cv_metrics(results) else {"max": mean}
            for m, (mean, sd) in values.items()}
        for v, values in summary(results).items()}})
