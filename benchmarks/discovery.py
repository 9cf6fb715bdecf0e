"""The discovery benchmark: the paper's Tables 1-2 and element recovery, on synthetic data whose
causal elements are known.

One command does everything on this 2-core CPU machine::

    python benchmarks/discovery.py --out bench_out/discovery

1. ``seq2exp synth`` (a medium preset: genes at realistic density, windows of ``--window`` bp);
2. ``seq2exp peaks``: MACS3 callpeak on the simulated DNase reads of the cell type (only when
   ``--variants`` includes ``peak-mask``; MACS3 is the ``peaks`` extra:
   ``pip install -e ".[peaks]"``);
3. ``seq2exp train`` for every variant on the training chromosomes, model selection on the
   validation chromosomes, once per training seed (``--seeds``, default 0 1 2; the synthetic
   data stays that of ``--seed``), with the fitted scaling of ``seq2exp train`` (``--scaling
   none``: raw values): Seq2Exp-learned (preset ``learned``, the project's default; ``--mask``,
   ``--model`` and ``--train KEY=VALUE`` override its configuration for experiments), Seq2Exp-soft, Seq2Exp-hard,
   Seq2Exp-retrain (top 10% of the soft generator), sequence only, sequence + signals (no mask),
   the predictor on the MACS3 peak mask, the hierarchical CNN on 128-bp binned signals, the
   ExPecto-style ridge;
4. ``seq2exp evaluate`` on the test chromosomes (chr22, chrX): MSE, MAE, Pearson, Spearman, mask
   ratio;
5. element recovery on the test genes against the ground truth (R_ag elements of each gene;
   promoters excluded): AUPRC of the per-bp score and precision/recall at each method's own
   mask ratio, for the Seq2Exp masks, the MACS3 peak mask and thresholded DNase; and what each
   generator adds (``generator_metrics``): the mask's AUPRC next to the signal-only ranking and
   the generator's own Beta mean on the same positions, causal vs decoy among bases inside
   signal peaks, the kept fraction;
6. rankings without a learned generator (no training; ``--ceilings-only`` stops there): each
   track, the signal Beta, its odds times Hi-C, and an oracle DNA reader;
7. enhancer-gene links (``seq2exp links``) of every masked variant on the test genes, scored by
   ``seq2exp benchmark-links`` against the synthetic truth in CRISPR-benchmark format (test genes'
   pairs, default filters) beside the ABC-like, DNase, H3K27ac and distance baselines.

Every table gives mean +/- sd over the training seeds. ``--quick``: one seed, Seq2Exp-learned,
Seq2Exp-soft and sequence + signals only (no peak mask, no baselines). ``--links-quick``: the
enhancer-gene links comparison (issue 22's bar) at a CPU size, 3 seeds of Seq2Exp-learned,
Seq2Exp-soft and the MACS3 peak mask with Mamba stacks of d_model 16 x 1 layer and 100 steps
(:data:`LINKS_QUICK`; options given explicitly win): 3.8 min of CPU, 8.6 min wall on 2 shared
cores with ``OMP_NUM_THREADS=1`` (benchmarks/results/links_quick.md).

Writes ``results.md``, ``results.json`` and ``recovery.png`` into ``--out`` and prints the wall
time. Every variant gets the same model size, steps and learning rate (``--steps``, ``--lr``);
the Mamba baselines read their masks (none, or MACS3 peaks) with Seq2Exp-learned's pooling
(``kept_pool``; ``--no-kept-pool``: the paper's centre only), so only the mask differs.

Sizing: the defaults (400 genes of the ``tiny`` preset's design at 4 kb windows, Mamba stacks of
d_model 32 x 2 layers, 400 steps of batch 8, 3 seeds of the default variants) run in about 20
minutes on 2 cores, ``--quick`` in about 8. The paper's 200 kb windows and 1.1 M-parameter
model take about 36 s per training step here, so they do not fit a CPU budget. More steps do
not help at this data size: 1,200 steps overfit the 279 training genes (benchmarks/README.md,
run H4).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

SIGNALS = ("h3k27ac", "dnase", "hic")
#: Every variant the benchmark knows (``--variants``).
ALL_VARIANTS = ("seq2exp-learned", "seq2exp-soft", "seq2exp-hard", "seq2exp-retrain", "seq-only",
                "seq-signals", "peak-mask", "hierarchical-cnn", "ridge")
#: The default run: Seq2Exp (the project's preset and the paper's soft run) against every
#: baseline of issue 9's bar; about 20 minutes on 2 cores for 3 seeds. Add seq2exp-hard,
#: seq2exp-retrain or seq-only with --variants.
DEFAULT_VARIANTS = ("seq2exp-learned", "seq2exp-soft", "seq-signals", "peak-mask", "hierarchical-cnn", "ridge")
#: Variants whose generator is scored by generator_metrics.
GENERATOR_VARIANTS = ("seq2exp-learned", "seq2exp-soft", "seq2exp-hard")
#: --quick: the learned generator against the paper's soft one and the unmasked predictor.
QUICK_VARIANTS = ("seq2exp-learned", "seq2exp-soft", "seq-signals")
#: --links-quick: the masked variants whose links the bar compares, at a size whose 3 seeds fit
#: well within 30 min of CPU on 2 shared cores (measured: 3.8 min; a training step of batch 8 at
#: 4 kb takes 1.1-1.3 s at d_model 32 x 2 layers, 0.3 s at 16 x 1); the ABC-like, DNase, H3K27ac
#: and distance baselines need no training.
LINKS_QUICK = {"variants": ["seq2exp-learned", "seq2exp-soft", "peak-mask"], "d_model": 16, "layers": 1,
               "steps": 100}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench_out/discovery")
    p.add_argument("--genes", type=int, default=400, help="synthetic genes")
    p.add_argument("--window", type=int, default=4_000, help="window length (bp)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="training seeds (one run of every variant each; the report gives mean +/- sd; "
                        "default 0 1 2, --quick: 0)")
    p.add_argument("--quick", action="store_true",
                   help=f"a short check: one training seed unless --seeds, variants "
                        f"{', '.join(QUICK_VARIANTS)} (no peak mask, no baselines)")
    p.add_argument("--links-quick", action="store_true",
                   help="the enhancer-gene links comparison at a CPU size (3 seeds in about 4 min of CPU): "
                        + ", ".join(f"{k} {' '.join(v) if isinstance(v, list) else v}" for k, v in LINKS_QUICK.items())
                        + " unless given")
    p.add_argument("--cell-type", default="synthA")
    p.add_argument("--steps", type=int, default=400, help="training steps per variant")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d-state", type=int, default=8)
    p.add_argument("--dt-min", type=float, default=1e-4, help="initial Mamba step sizes (long memory)")
    p.add_argument("--dt-max", type=float, default=1e-2)
    p.add_argument("--promoter", type=int, default=500, help="central bp always kept / pooled")
    p.add_argument("--hard-preset", default="hard-packed",
                   help="model preset of Seq2Exp-hard, also used by the MACS3 peak-mask predictor "
                        "(the same predictor reads both masks)")
    p.add_argument("--mask-token", action=argparse.BooleanOptionalAction, default=True,
                   help="masked predictors read a learned embedding at masked-out positions "
                        "(MaskConfig.mask_token)")
    p.add_argument("--kept-pool", action=argparse.BooleanOptionalAction, default=True,
                   help="the Mamba baselines (sequence only, sequence + signals, MACS3 peak mask) "
                        "pool their kept positions as Seq2Exp-learned's predictor does "
                        "(Seq2ExpConfig.kept_pool), so only the mask differs; Seq2Exp-soft/-hard "
                        "stay the paper's")
    p.add_argument("--kl-weight", type=float, default=None,
                   help="weight of the KL term of the Seq2Exp variants (default: the preset's, 0.01)")
    p.add_argument("--signal-scale", type=float, default=None,
                   help="k of the signal Beta of Seq2Exp-soft/-retrain (default: the preset's, 10)")
    p.add_argument("--learned-preset", default="learned", help="model preset of Seq2Exp-learned")
    p.add_argument("--mask", nargs="+", default=[], metavar="KEY=VALUE",
                   help="MaskConfig overrides of Seq2Exp-learned (experiments), e.g. kept_target=0.05")
    p.add_argument("--model", nargs="+", default=[], metavar="KEY=VALUE",
                   help="Seq2ExpConfig overrides of Seq2Exp-learned, e.g. generator_signals=true")
    p.add_argument("--scaling", choices=("auto", "none"), default="auto",
                   help="the fitted input/target scaling of `seq2exp train` (auto), or the paper's raw values")
    p.add_argument("--train", nargs="+", default=[], metavar="KEY=VALUE",
                   help="TrainConfig overrides of Seq2Exp-learned, e.g. generator_lr_scale=10")
    p.add_argument("--ceilings-only", action="store_true",
                   help="only the rankings without a learned generator (signals, oracle DNA reader)")
    p.add_argument("--workers", type=int, default=0, help="data-loader workers (0: in the training process)")
    p.add_argument("--variants", nargs="+", default=None, choices=ALL_VARIANTS, metavar="VARIANT",
                   help="default: " + ", ".join(DEFAULT_VARIANTS) + " (--quick: " + ", ".join(QUICK_VARIANTS)
                        + "); also: " + ", ".join(v for v in ALL_VARIANTS if v not in DEFAULT_VARIANTS))
    args = p.parse_args(argv)
    if args.quick and args.links_quick:
        p.error("--quick and --links-quick are two different short runs; give one")
    if args.links_quick:
        for key, value in LINKS_QUICK.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    if args.seeds is None:
        args.seeds = [0] if args.quick else [0, 1, 2]
    if args.variants is None:
        args.variants = list(QUICK_VARIANTS if args.quick else DEFAULT_VARIANTS)
    if "seq2exp-retrain" in args.variants and "seq2exp-soft" not in args.variants:
        p.error("seq2exp-retrain needs seq2exp-soft (its generator)")
    args.mask, args.model, args.train = ({k: yaml.safe_load(v) for k, _, v in (a.partition("=") for a in pairs)}
                                         for pairs in (args.mask, args.model, args.train))
    return args


def synth(args, out: Path) -> dict:
    from seq2exp_plugin.data.synth import SynthParams, generate, load_manifest

    target = out / "synth"
    if (target / "manifest.yaml").is_file():
        manifest = load_manifest(target)
        if (manifest["n_genes"], manifest["window"], manifest["seed"]) == (args.genes, args.window, args.seed):
            return manifest
    generate(target, SynthParams.from_preset("tiny", n_genes=args.genes, window=args.window, seed=args.seed),
             force=True)
    return load_manifest(target)


def peaks(manifest: dict, cell: str, out: Path) -> Path:
    from seq2exp_plugin.discover.peaks import call_peaks_on_reads

    target = out / f"peaks_{cell}"
    if not (target / "peaks.narrowPeak").is_file():
        call_peaks_on_reads(manifest["tracks"][cell]["dnase_reads"], target,
                            genome=manifest["genome"]["fai"], force=True)
    return target / "peaks.narrowPeak"


def run_config(args, manifest: dict, cell: str, variant: str, out: Path, peaks_file: Path | None,
               seed: int) -> dict:
    stack = {"d_model": args.d_model, "n_layers": args.layers, "d_state": args.d_state,
             "dt_min": args.dt_min, "dt_max": args.dt_max}
    model = {"generator": stack, "predictor": stack, "pool_width": args.promoter,
             "mask": {"promoter_keep": args.promoter, "mask_token": args.mask_token,
                      **({} if args.kl_weight is None else {"kl_weight": args.kl_weight})},
             "signal_transform": "log1p"}
    if args.signal_scale is not None and variant in ("seq2exp-soft", "seq2exp-retrain"):
        model["mask"] = {**model["mask"], "signal_scale": args.signal_scale}
    if args.kept_pool and variant in ("seq-only", "seq-signals", "peak-mask"):
        model["kept_pool"] = True
    if variant == "seq2exp-learned":  # the preset's own mask token, KL weight; then --mask, --model
        model["mask"] = {"promoter_keep": args.promoter, **args.mask}
        model.update(args.model)
    presets = {"seq2exp-hard": args.hard_preset, "peak-mask": args.hard_preset,
               "seq2exp-learned": args.learned_preset}
    config = {
        "variant": "retrain" if variant == "seq2exp-retrain" else
                   "seq2exp" if variant.startswith("seq2exp") else variant,
        "preset": presets.get(variant, "soft"),
        "model": model,
        "data": {"genes": manifest["genes"]["table"], "genome": manifest["genome"]["fasta"],
                 "signals": {s: manifest["tracks"][cell][s] for s in SIGNALS}, "cell_type": cell,
                 "window": args.window, "blacklist": manifest["blacklist"], "num_workers": args.workers},
        "train": {"max_steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                  "warmup_steps": max(1, args.steps // 10), "warmup_start_lr": args.lr / 50,
                  "min_lr": args.lr / 10, "val_every_steps": max(1, args.steps // 6), "seed": seed,
                  "progress_bar": False},
        "out_dir": str(out / "runs" / variant),
        "scaling": args.scaling,
    }
    if variant == "seq2exp-learned":
        config["train"].update(args.train)
    if variant == "peak-mask":
        config["data"]["peaks"] = str(peaks_file)
    if variant == "seq2exp-retrain":
        config["generator_checkpoint"] = str(out / "runs" / "seq2exp-soft" / "checkpoints" / "best.ckpt")
    return config


def train_all(args, manifest: dict, cell: str, out: Path, peaks_file: Path | None,
              seed: int) -> dict[str, float]:
    from seq2exp_plugin.train.config import RunConfig
    from seq2exp_plugin.train.fit import fit

    timings = {}
    for variant in args.variants:
        config = run_config(args, manifest, cell, variant, out, peaks_file, seed)
        best = Path(config["out_dir"]) / "checkpoints" / "best.ckpt"
        if best.is_file() and (Path(config["out_dir"]) / "config.yaml").is_file():
            done = yaml.safe_load((Path(config["out_dir"]) / "config.yaml").read_text())
            wanted = yaml.safe_load(yaml.safe_dump(RunConfig.from_dict(config).to_dict(), sort_keys=False))
            if "scaling" not in wanted["model"]:  # what training fitted is not part of the request
                done["model"].pop("scaling", None)
            if done == wanted:
                print(f"[{variant}] reusing {best}", flush=True)
                continue
        print(f"[{variant}] training {args.steps} steps ...", flush=True)
        t0 = time.perf_counter()
        fit(RunConfig.from_dict(config), resume=False)
        timings[variant] = time.perf_counter() - t0
        print(f"[{variant}] {timings[variant]:.0f} s", flush=True)
    return timings


def evaluate_all(args, out: Path) -> tuple[dict, dict]:
    """Test metrics per variant, and the per-bp scores of the masked variants on test genes:
    ``scores[variant] = {"mask"|"signal"|"sequence": {gene: array}}``."""
    from seq2exp_plugin.train.evaluate import load_run, predict_dataset
    from seq2exp_plugin.train.fit import make_dataset
    from seq2exp_plugin.train.metrics import regression_metrics

    metrics, scores = {}, {}
    for variant in args.variants:
        module, run = load_run(str(out / "runs" / variant / "checkpoints" / "best.ckpt"))
        dataset = make_dataset(run, "test", require_target=True)
        genes = list(predict_dataset(module.net, dataset, batch_size=args.batch_size, progress=False))
        values = regression_metrics(np.array([g.prediction for g in genes]), np.array([g.target for g in genes]))
        if genes[0].score is not None:
            values["mask_ratio"] = float(np.mean([(g.score >= 0.5).mean() for g in genes]))
            scores[variant] = {"mask": {g.gene_id: g.score for g in genes}}
        if genes[0].sequence_score is not None:
            scores[variant]["sequence"] = {g.gene_id: g.sequence_score for g in genes}
            scores[variant]["signal"] = {g.gene_id: g.signal_score for g in genes}
        values["n_genes"] = len(genes)
        metrics[variant] = values
        print(f"[{variant}] test MSE {values['mse']:.4f}  Pearson {values['pearson']:.4f}", flush=True)
    return metrics, scores


class Truth:
    """Labels of the test genes (R_ag elements; causal vs decoy inside peaks) and the baselines'
    scores, computed once for every seed."""

    def __init__(self, manifest: dict, cell: str, peaks_file: Path | None, window: int, promoter: int) -> None:
        from seq2exp_plugin.data.genes import read_gene_table
        from seq2exp_plugin.discover.recovery import (
            causal_vs_decoy_labels, gene_windows, peak_scores, read_truth, track_scores, truth_labels,
        )

        table = read_gene_table(manifest["genes"]["table"])
        windows = gene_windows(table.obs[table.obs["split"] == "test"], window=window)
        truth = read_truth(manifest["truth"]["cells"][cell])
        self.labels = truth_labels(truth, windows, exclude_center=promoter, blacklist=manifest["blacklist"])
        self.peak_labels = causal_vs_decoy_labels(truth, windows, exclude_center=promoter,
                                                  blacklist=manifest["blacklist"])
        self.baselines = {"DNase (thresholded)": track_scores(manifest["tracks"][cell]["dnase"], windows)}
        if peaks_file is not None:
            self.baselines["MACS3 peak mask"] = peak_scores(peaks_file, windows)


def signal_ceilings(args, manifest: dict, cell: str, out: Path, peaks_file: Path | None, truth: Truth) -> dict:
    """What rankings without a learned generator reach on the test genes (no training): each
    signal track as the model reads it, the signal Beta's mean, its odds alpha2 / beta2 times
    the Hi-C contact (the last track), and an oracle DNA reader - the signal Beta with every decoy that DNA can tell
    apart (motif-less or CTCF decoys, other genes' promoters) set to 0, the best a generator
    reading DNA alone can do to the decoys: the other decoys are other genes' enhancers, whose
    motifs are those of causal ones."""
    import torch

    from seq2exp_plugin.discover.recovery import read_truth, recovery_metrics, truth_labels
    from seq2exp_plugin.model.config import MaskConfig
    from seq2exp_plugin.model.mask import signal_beta
    from seq2exp_plugin.train.config import RunConfig
    from seq2exp_plugin.train.fit import make_dataset

    dataset = make_dataset(RunConfig.from_dict(run_config(args, manifest, cell, "seq-signals", out, peaks_file, 0)),
                           "test", require_target=True)
    rows = read_truth(manifest["truth"]["cells"][cell])
    readable = rows[(rows["class"] == "decoy") & (rows["kind"] != "enhancer")]
    tracks: dict[str, dict] = {}
    for i, gene in enumerate(dataset.gene_ids):
        signals = dataset.get_numpy(i)["signals"]
        for name, values in zip(dataset.signal_names, signals):
            tracks.setdefault(name, {})[gene] = values
        alpha2, beta2 = signal_beta(torch.from_numpy(np.ascontiguousarray(signals))[None], MaskConfig(),
                                    tuple(dataset.signal_names))
        tracks.setdefault("signal Beta mean", {})[gene] = (alpha2 / (alpha2 + beta2))[0].numpy()
        tracks.setdefault("signal Beta odds x Hi-C", {})[gene] = (alpha2 / beta2)[0].numpy() * signals[-1]
    from seq2exp_plugin.discover.recovery import gene_windows
    from seq2exp_plugin.data.genes import read_gene_table

    table = read_gene_table(manifest["genes"]["table"])
    wins = gene_windows(table.obs[table.obs["split"] == "test"], window=args.window)
    dna_readable = truth_labels(readable, wins, ("decoy",), exclude_center=0)
    tracks["oracle DNA reader (signal Beta)"] = {g: np.where(dna_readable[g] == 1, 0.0, v)
                                                 for g, v in tracks["signal Beta mean"].items()}
    return {name: {"auprc": recovery_metrics(values, truth.labels)["auprc"],
                   "causal_vs_decoy": recovery_metrics(values, truth.peak_labels)["auprc"]}
            for name, values in tracks.items()}


def recovery(truth: Truth, scores: dict) -> tuple[dict, dict]:
    """Element recovery on the test genes: per method AUPRC and precision/recall at its own mask
    ratio; per Seq2Exp generator what it adds over the signals (generator_metrics)."""
    from seq2exp_plugin.discover.recovery import generator_metrics, recovery_metrics

    scored = {g: lab >= 0 for g, lab in truth.labels.items()}
    methods = {f"{VARIANT_NAMES[v]} (mask score)": scores[v]["mask"] for v in scores if v in GENERATOR_VARIANTS}
    methods.update(truth.baselines)

    def own_ratio(name: str, values: dict) -> float:
        cut = 5.0 if name.startswith("DNase") else 0.5  # DNase: at the MACS3-like fold change of 5
        return float(np.mean(np.concatenate([v[scored[g]] >= cut for g, v in values.items()])))

    results = {}
    for name, values in methods.items():
        ratio = own_ratio(name, values)
        m = recovery_metrics(values, truth.labels, kept_fraction=max(ratio, 1e-6))
        results[name] = {"auprc": m["auprc"], "prevalence": m["prevalence"], "mask_ratio": ratio,
                         "precision": m["at_fraction"]["precision"], "recall": m["at_fraction"]["recall"]}
    generators = {v: generator_metrics(s["mask"], s["signal"], s["sequence"], truth.labels, truth.peak_labels)
                  for v, s in scores.items() if v in GENERATOR_VARIANTS}
    return results, generators


#: Variants with a mask, whose links are scored (the MACS3 peak mask's links are its peaks).
LINK_VARIANTS = ("seq2exp-learned", "seq2exp-soft", "seq2exp-hard", "peak-mask")


def link_benchmark(args, manifest: dict, cell: str, out: Path) -> dict:
    """AUPRC and precision at 70% recall of each masked variant's links and of the baselines,
    against the truth's CRISPR pairs of the test genes (``{predictor: {auprc, precision_at_70_recall}}``)."""
    import pandas as pd

    from seq2exp_plugin.data.genes import read_gene_table
    from seq2exp_plugin.discover.link_benchmark import benchmark_links
    from seq2exp_plugin.discover.links import links_to_directory

    obs = read_gene_table(manifest["genes"]["table"]).obs
    crispr = pd.read_csv(manifest["truth"]["crispr"][cell], sep="\t")
    test_pairs = out / "crispr_test.tsv.gz"
    crispr[crispr["measuredGeneSymbol"].isin(obs.index[obs["split"] == "test"])].to_csv(
        test_pairs, sep="\t", index=False)
    predictions = []
    for variant in (v for v in LINK_VARIANTS if v in args.variants):
        target = out / "links" / variant
        links_to_directory(str(out / "runs" / variant / "checkpoints" / "best.ckpt"), target, split="test",
                           force=True, progress=False)
        predictions.append(f"{VARIANT_NAMES[variant]}={target / 'links.tsv.gz'}")
    if not predictions:
        return {}
    tracks = manifest["tracks"][cell]
    with warnings.catch_warnings():  # unpredicted pairs are counted in the summary
        warnings.simplefilter("ignore")
        summary = benchmark_links(predictions, test_pairs, out / "link_benchmark", dnase=tracks["dnase"],
                                  h3k27ac=tracks["h3k27ac"], hic=tracks["hic"], force=True)
    return {m["predictor"]: {k: m[k] for k in ("auprc", "precision_at_70_recall", "prevalence")}
            for m in summary["metrics"] if m["distance_bin"] == "all"}


VARIANT_NAMES = {"seq2exp-learned": "Seq2Exp-learned", "seq2exp-soft": "Seq2Exp-soft",
                 "seq2exp-hard": "Seq2Exp-hard", "seq2exp-retrain": "Seq2Exp-retrain",
                 "seq-only": "Sequence only (Caduceus)", "seq-signals": "Sequence + signals, no mask",
                 "peak-mask": "MACS3 peak mask", "hierarchical-cnn": "Hierarchical CNN (signals)",
                 "ridge": "ExPecto-style ridge (signals)"}
GENERATOR_COLUMNS = {"auprc": "mask AUPRC", "auprc_signal": "signal-only AUPRC",
                     "auprc_sequence": "generator-only AUPRC", "gain": "gain over signals",
                     "causal_vs_decoy": "causal vs decoy", "causal_vs_decoy_signal": "causal vs decoy, signals",
                     "kept_fraction": "kept (score >= 0.5)"}


def mean_sd(per_seed: list[dict]) -> dict:
    """``{row: {column: (mean, sd)}}`` over seeds of ``[{row: {column: value}}]`` (sd: n - 1)."""
    out = {}
    for row in per_seed[0]:
        out[row] = {}
        for col, value in per_seed[0][row].items():
            if isinstance(value, (int, float)):
                values = np.array([seed[row][col] for seed in per_seed], dtype=float)
                out[row][col] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
    return out


def _cell(stat: tuple[float, float], percent: bool = False) -> str:
    mean, sd = stat
    return f"{100 * mean:.2f}% +/- {100 * sd:.2f}" if percent else f"{mean:.4f} +/- {sd:.4f}"


def write_report(out: Path, args, per_seed: list[dict], ceilings: dict, timings: dict, wall: float) -> None:
    from seq2exp_plugin.atomic import write_json
    from seq2exp_plugin.train.metrics import METRIC_NAMES

    expression = mean_sd([r["expression"] for r in per_seed])
    rec = mean_sd([r["recovery"] for r in per_seed])
    generators = mean_sd([r["generators"] for r in per_seed]) if per_seed[0]["generators"] else {}
    n = len(per_seed)
    lines = [
        "# Discovery benchmark (synthetic data with known causal elements)", "",
        f"Command: `python benchmarks/discovery.py {' '.join(sys.argv[1:])}`", "",
        f"{args.genes} genes, {args.window:,} bp windows, cell type {args.cell_type}, data seed {args.seed}; "
        f"every Mamba variant: d_model {args.d_model}, {args.layers} layers, d_state {args.d_state}, "
        f"{args.steps} steps of batch {args.batch_size}, lr {args.lr}, mask token "
        f"{'on' if args.mask_token else 'off'}, kept-position pooling of the Mamba baselines "
        f"{'on' if args.kept_pool else 'off'} (Seq2Exp-learned: preset {args.learned_preset!r}"
        f"{', ' + str(args.mask) if args.mask else ''}{', ' + str(args.model) if args.model else ''}). Mean +/- sd over training seeds "
        f"{args.seeds} ({n}). Wall time {wall / 60:.1f} min.", "",
        "## Expression on the test chromosomes (chr22, chrX)", "",
        "| model | " + " | ".join([*METRIC_NAMES, "mask_ratio"]) + " |", "|---" * (len(METRIC_NAMES) + 2) + "|",
    ]
    for v, m in expression.items():
        cells = [_cell(m[c]) for c in METRIC_NAMES] + [_cell(m["mask_ratio"], True) if "mask_ratio" in m else "-"]
        lines.append(f"| {VARIANT_NAMES.get(v, v)} | " + " | ".join(cells) + " |")
    if generators:
        lines += ["", "## What the generator adds (test genes; promoters excluded)", "",
                  "Mask AUPRC against the signal-only ranking (the signal Beta's mean: the posterior of a "
                  "constant generator) and the generator's own Beta mean, on the same positions; causal vs "
                  "decoy: AUPRC among bases inside signal peaks (R_ag vs decoy elements, random = "
                  f"{per_seed[0]['generators'][next(iter(per_seed[0]['generators']))]['decoy_prevalence']:.3f}).", "",
                  "| generator | " + " | ".join(GENERATOR_COLUMNS.values()) + " |",
                  "|---" * (len(GENERATOR_COLUMNS) + 1) + "|"]
        for v, m in generators.items():
            cells = [_cell(m[c], c == "kept_fraction") for c in GENERATOR_COLUMNS]
            lines.append(f"| {VARIANT_NAMES[v]} | " + " | ".join(cells) + " |")
    lines += ["", "## Element recovery on the test genes (R_ag elements; promoters excluded)", "",
              "| method | AUPRC | prevalence | own mask ratio | precision | recall |", "|---|---|---|---|---|---|"]
    for name, r in rec.items():
        lines.append(f"| {name} | {_cell(r['auprc'])} | {r['prevalence'][0]:.4f} | {_cell(r['mask_ratio'], True)} | "
                     f"{_cell(r['precision'])} | {_cell(r['recall'])} |")
    links = mean_sd([r["links"] for r in per_seed]) if per_seed[0]["links"] else {}
    if links:
        lines += ["", "## Enhancer-gene links against the synthetic CRISPR truth (test genes)", "",
                  "`seq2exp links` of each masked model (elements = the runs its mask keeps; Score = mean mask "
                  "score) scored by `seq2exp benchmark-links` on the truth's pairs of the test genes "
                  "(R_ag = regulated; decoys and inactive elements not; negatives with < 80% power at a 15% "
                  f"effect dropped; random = {next(iter(links.values()))['prevalence'][0]:.3f}).", "",
                  "| predictor | AUPRC | precision at 70% recall |", "|---|---|---|"]
        lines += [f"| {k} | {_cell(v['auprc'])} | {_cell(v['precision_at_70_recall'])} |" for k, v in links.items()]
    lines += ["", "## Rankings without a learned generator (test genes; no training)", "",
              "| ranking | AUPRC | causal vs decoy |", "|---|---|---|"]
    lines += [f"| {k} | {v['auprc']:.4f} | {v['causal_vs_decoy']:.4f} |" for k, v in ceilings.items()]
    lines += ["", "Training time per variant and seed (s): " + "; ".join(
        f"seed {seed}: " + ", ".join(f"{k} {v:.0f}" for k, v in t.items()) for seed, t in timings.items())]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    write_json(out / "results.json", {"args": vars(args), "per_seed": dict(zip(map(str, args.seeds), per_seed)),
                                      "ceilings": ceilings,
                                      "train_seconds": {str(k): v for k, v in timings.items()},
                                      "wall_seconds": wall})
    _plot(out / "recovery.png", expression, rec)


def _plot(path: Path, expression: dict, rec: dict) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), dpi=110)
    ax1, ax2 = fig.subplots(1, 2)
    labels = [VARIANT_NAMES.get(k, k) for k in expression]
    ax1.barh(labels, [m["mse"][0] for m in expression.values()], xerr=[m["mse"][1] for m in expression.values()],
             color="tab:blue")
    ax1.set_xlabel("test MSE (lower is better)")
    ax1.invert_yaxis()
    ax2.barh(list(rec), [r["auprc"][0] for r in rec.values()], xerr=[r["auprc"][1] for r in rec.values()],
             color="tab:red")
    ax2.axvline(next(iter(rec.values()))["prevalence"][0], color="grey", ls=":", label="random")
    ax2.set_xlabel("element-recovery AUPRC (higher is better)")
    ax2.invert_yaxis()
    ax2.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = synth(args, out)
    print(f"synthetic data: {manifest['n_genes']} genes ({time.perf_counter() - t0:.0f} s)", flush=True)
    # MACS3 (the `peaks` extra) only for the variant that reads its peaks
    peaks_file = peaks(manifest, args.cell_type, out) if "peak-mask" in args.variants else None
    truth = Truth(manifest, args.cell_type, peaks_file, args.window, args.promoter)
    ceilings = signal_ceilings(args, manifest, args.cell_type, out, peaks_file, truth)
    print("rankings without a learned generator:\n" + "\n".join(
        f"  {k}: AUPRC {v['auprc']:.4f}, causal vs decoy {v['causal_vs_decoy']:.4f}" for k, v in ceilings.items()),
        flush=True)
    if args.ceilings_only:
        return 0
    per_seed, timings = [], {}
    for seed in args.seeds:
        seed_out = out / f"seed{seed}"
        timings[seed] = train_all(args, manifest, args.cell_type, seed_out, peaks_file, seed)
        metrics, scores = evaluate_all(args, seed_out)
        rec, generators = recovery(truth, scores)
        links = link_benchmark(args, manifest, args.cell_type, seed_out)
        per_seed.append({"expression": metrics, "recovery": rec, "generators": generators, "links": links})
        print(f"[seed {seed}] links AUPRC: " + ", ".join(f"{k} {v['auprc']:.4f}" for k, v in links.items()), flush=True)
        for v, g in generators.items():
            print(f"[seed {seed}] {v}: " + ", ".join(f"{k} {g[k]:.4f}" for k in GENERATOR_COLUMNS), flush=True)
    wall = time.perf_counter() - t0
    write_report(out, args, per_seed, ceilings, timings, wall)
    print((out / "results.md").read_text())
    print(f"discovery benchmark: wall time {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
