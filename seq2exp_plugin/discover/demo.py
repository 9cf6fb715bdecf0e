"""``seq2exp demo``: the whole job on the bundled demo (``model_zoo/Seq2Exp/Demo``).

Predicts every demo gene with the Demo weights (expression, mask bigWig, element BED, plots
with the ground truth drawn; see :mod:`seq2exp_plugin.discover.predict`), then scores how well
the mask finds the causal elements against the synthetic ground truth, next to ranking by
DNase alone, and reports what the generator adds over the signal Beta alone
(:mod:`seq2exp_plugin.discover.recovery`).
"""

from __future__ import annotations

from pathlib import Path

from ..train.config import load_config
from ..atomic import write_json
from ..train.evaluate import GenePrediction
from ..train.variants import model_config
from .predict import predict_to_directory
from .recovery import generator_recovery, recovery_metrics, track_scores, truth_labels

#: Where the editable checkout keeps the model zoo (the README's set-up installs it so).
DEFAULT_ZOO = Path(__file__).resolve().parents[2] / "model_zoo"


def demo_entry(zoo: str | Path | None = None) -> Path:
    entry = Path(zoo or DEFAULT_ZOO) / "Seq2Exp" / "Demo"
    for name in ("best.ckpt", "train.yaml", "data/manifest.yaml"):
        if not (entry / name).is_file():
            raise FileNotFoundError(
                f"demo file {entry / name} not found: run from a clone of seq2exp-plugin installed "
                f"with `pip install -e .`, or pass --zoo PATH/TO/model_zoo")
    return entry


def run_demo(out: str | Path, zoo: str | Path | None = None, max_plots: int = 12,
             force: bool = False, progress: bool = True) -> dict:
    """Predict the demo genes into ``out`` and return the element-recovery comparison."""
    entry = demo_entry(zoo)
    run = load_config(entry / "train.yaml")  # the demo's data paths, resolved from its folder
    data = run.to_dict()["data"]
    truth = entry / "data" / "truth" / f"{run.data.cell_type}.bed"
    genes: list[GenePrediction] = []
    out = predict_to_directory(
        str(entry / "best.ckpt"), out, data_overrides=data, max_plots=max_plots, truth=str(truth),
        force=force, progress=progress, on_gene=genes.append)
    recovery = element_recovery(genes, run, truth)
    write_json(out / "recovery.json", recovery)
    return recovery


def element_recovery(genes: list[GenePrediction], run, truth: Path) -> dict:
    """AUPRC of each gene's own mask score and of DNase against that gene's causal elements."""
    windows = [g.window for g in genes]
    labels = truth_labels(truth, windows, exclude_center=model_config(run).mask.promoter_keep)
    methods = {
        "Seq2Exp mask": {g.gene_id: g.score for g in genes},
        "DNase": track_scores(run.data.signals_of(run.data.cell_type)["dnase"], windows),
    }
    out = {name: {k: recovery_metrics(scores, labels)[k] for k in ("auprc", "prevalence")}
           for name, scores in methods.items()}
    if genes and genes[0].sequence_score is not None:
        # blacklisted positions left out: the mask is 0 there by rule, the signals are not
        out["generator"] = generator_recovery(genes, truth, exclude_center=model_config(run).mask.promoter_keep,
                                              blacklist=run.data.blacklist)
    return out
