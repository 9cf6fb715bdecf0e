"""The real-data benchmark: ``seq2exp cv`` on the two real K562 sets, and element recovery on
chr22 against the ABC model's enhancer-gene links.

    python benchmarks/real_k562.py --out bench_out/real_k562            # the full run (GPU-sized)
    python benchmarks/real_k562.py --out bench_out/real_k562 --quick    # minutes on 2 CPU cores
    python benchmarks/real_k562.py --out bench_out/real_k562_cpu --cpu --sets chr16 --seeds 0 \
        --variants seq2exp promoter-ridge ridge                           # about an hour on 2 cores

Data (``--chr22``, ``--chr16``; default the fixtures ``../shared/fixtures/real/k562_*``, see their
README.md): hg19 chr22 with real DNA, DNase, H3K27ac, Hi-C and RNA-seq TPM; hg38 chr16 with
DNase, H3K27ac and TPM over the whole chromosome, no DNA (an all-N chr16 is written into
``--out``) and no Hi-C (ABC's K562 power-law fit, ``hic=powerlaw:k562``).

1. ``seq2exp cv`` from the files, ``--folds`` contiguous folds balanced on the genes with a TPM,
   once per ``--seeds``: Seq2Exp-learned (the default preset), sequence + signals, the
   hierarchical CNN, ridge and promoter-ridge in one run, Seq2Exp-soft (``preset=soft``: the
   paper's raw inputs) in another; the tool's default length (25 passes) and model, windows of
   ``--window`` bp.
2. Element recovery on chr22: every gene is a test gene of one fold; the learned run's mask over
   its window, the signal-only ranking (the signal Beta's mean), DNase, ABC's candidate elements
   (DNase > 0: its MACS2 peaks +-250 bp) and the distance to the TSS, ranked against the gene's
   ABC-linked elements (AUPRC; the central ``promoter_keep`` bp left out, as for every method).

Writes ``results.md`` and ``results.json`` into ``--out`` (mean +/- sd over seeds of each cv
run's mean test MSE and Spearman, its worst fold over the ridge's, and the recovery table).
``--quick``: one seed, 3 folds, 4 kb windows, a d_model 8 x 1 model for 4 steps, the first
``--genes`` genes of each set (default 120): it checks that everything runs, not what wins.
``--cpu``: all genes at a size 2 CPU cores train (10 kb windows, d_model 16 x 1 layer, 2 passes);
``--sets`` and ``--variants`` choose what runs (recovery needs chr22 and seq2exp; ``seq2exp-soft``
is the soft run), ``--set`` adds run entries to every run (e.g. ``model.promoter_linear=null``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seq2exp_plugin.atomic import write_json, write_text  # noqa: E402
from seq2exp_plugin.cli import main as seq2exp  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures" / "real"
MAIN_VARIANTS = ("seq2exp", "seq-signals", "hierarchical-cnn", "ridge", "promoter-ridge")
CHR16_LENGTH = 90_338_345
#: ``--cpu``: what 2 shared CPU cores train in about 10 minutes per fold (10 kb windows,
#: d_model 16 x 1 layer, 2 passes); the default model and length need a GPU.
CPU = ["data.window=10000", "train.epochs=2", "train.val_every_steps=37",
       *(f"model.{part}.{k}={v}" for part in ("generator", "predictor") for k, v in (("d_model", 16), ("n_layers", 1)))]
QUICK = ["train.max_steps=4", "train.batch_size=4", "train.val_every_steps=4", "train.warmup_steps=1",
         "model.pool_width=200", "model.mask.promoter_keep=200",
         *(f"model.{part}.{k}={v}" for part in ("generator", "predictor")
           for k, v in (("d_model", 8), ("n_layers", 1), ("d_state", 4)))]


def all_n_chr16(out: Path) -> Path:
    """The all-N hg38 chr16 (and its .fai) the chr16 fixture's README describes."""
    path, width = out / "chr16.fa", 60
    if not path.is_file():
        with open(path, "w") as f:
            f.write(">chr16\n" + ("N" * width + "\n") * (CHR16_LENGTH // width) + "N" * (CHR16_LENGTH % width) + "\n")
        Path(f"{path}.fai").write_text(f"chr16\t{CHR16_LENGTH}\t7\t{width}\t{width + 1}\n")
    return path


def data_sets(args, out: Path) -> dict[str, dict]:
    """Per set: genome, TSS BED (the first ``--genes`` genes with --quick), expression, signals."""
    sets = {"chr22": {"genome": args.chr22 / "chr22.fa.gz", "tss": args.chr22 / "tss.bed",
                      "hic": str(args.chr22 / "hic.cool"), "dir": args.chr22},
            "chr16": {"genome": all_n_chr16(out), "tss": args.chr16 / "tss.bed", "hic": "powerlaw:k562",
                      "dir": args.chr16}}
    for name, s in sets.items():
        if args.genes:
            bed = pd.read_csv(s["tss"], sep="\t", header=None).head(args.genes)
            s["tss"] = out / f"{name}.tss.bed"
            bed.to_csv(s["tss"], sep="\t", header=False, index=False)
        d = s["dir"]
        s["signals"] = [f"h3k27ac={d / 'h3k27ac.bw'}", f"dnase={d / 'dnase.bw'}", f"hic={s['hic']}"]
        s["expression"] = d / "expression.tsv"
    return sets


def cross_validate(data: dict, out: Path, variants, settings: list[str], folds: int) -> dict:
    """One ``seq2exp cv`` run; its cv.json (rerunning skips finished fold runs)."""
    argv = ["cv", "--out", str(out), "--genome", str(data["genome"]), "--tss", str(data["tss"]),
            "--expression", str(data["expression"]), "--cell-type", "K562", "--folds", str(folds),
            "--signals", *data["signals"], "--variants", *variants, "--set", *settings]
    if seq2exp(argv) != 0:
        raise SystemExit(f"seq2exp {' '.join(argv)} failed")
    return json.loads((out / "cv.json").read_text())


def recovery(cv_dir: Path, links: Path, dnase: Path) -> pd.DataFrame:
    """AUPRC against ABC's links of each chr22 gene (test gene of its fold) for the learned mask,
    the signal-only ranking, DNase, the candidate elements and the distance to the TSS."""
    from seq2exp_plugin.discover.recovery import compare_methods, track_scores, truth_labels
    from seq2exp_plugin.train.evaluate import load_run, predict_dataset
    from seq2exp_plugin.train.fit import make_dataset

    genes = []
    for checkpoint in sorted(cv_dir.glob("fold*/seq2exp/checkpoints/best.ckpt")):
        module, run = load_run(str(checkpoint))
        genes += list(predict_dataset(module.net, make_dataset(run, "test"), progress=False))
        keep = module.net.config.mask.promoter_keep
    if not genes:
        raise SystemExit(f"{cv_dir}: no fold checkpoint of seq2exp to score")
    windows = [g.window for g in genes]
    abc = pd.read_csv(links, sep="\t")
    truth = pd.DataFrame({"chrom": abc["chr"], "start": abc["start"], "end": abc["end"],
                          "gene_id": abc["TargetGene"].astype(str), "class": "R_ag"})
    labels = truth_labels(truth, windows, exclude_center=keep)
    dnase_scores = track_scores(dnase, windows)
    methods = {"Seq2Exp-learned mask": {g.gene_id: g.score for g in genes},
               "signal-only posterior": {g.gene_id: g.signal_score for g in genes},
               "DNase": dnase_scores,
               "candidate elements (DNase > 0)": {k: (v > 0).astype(np.float32) for k, v in dnase_scores.items()},
               "distance to the TSS": {w.gene_id: w.genomic(-np.abs(np.arange(w.start, w.end) - w.tss)).astype(np.float32)
                                       for w in windows}}
    table = compare_methods(methods, labels)
    table["genes"] = len(genes)
    table["genes_with_links"] = sum(int((labels[g] == 1).any()) for g in labels)
    return table


def mean_sd(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.4f} +/- {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--chr22", type=Path, default=FIXTURES / "k562_chr22_hg19")
    p.add_argument("--chr16", type=Path, default=FIXTURES / "k562_chr16_hg38")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--window", type=int, default=200_000)
    p.add_argument("--genes", type=int, default=None, help="only the first N genes of each TSS file")
    p.add_argument("--sets", nargs="+", choices=("chr22", "chr16"), default=["chr22", "chr16"])
    p.add_argument("--variants", nargs="+", default=[*MAIN_VARIANTS, "seq2exp-soft"],
                   help="default: all (seq2exp-soft: Seq2Exp with preset=soft, a run of its own)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="extra run entries for every run")
    p.add_argument("--quick", action="store_true", help="a tiny setting that checks everything runs")
    p.add_argument("--cpu", action="store_true", help=f"a CPU-sized setting: {' '.join(CPU)}")
    args = p.parse_args(argv)
    settings = [f"data.window={args.window}"]
    if args.quick:
        args.seeds, args.folds, args.genes = args.seeds[:1], 3, args.genes or 120
        settings = ["data.window=4000", *QUICK]
    elif args.cpu:
        settings = CPU
    settings = [*settings, *args.set]
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    sets = data_sets(args, args.out)
    results: dict = {"command": " ".join(sys.argv), "cv": {}, "recovery": {}}
    lines = [f"# Real K562 benchmark\n\n`{results['command']}`\n"]
    main_variants = [v for v in args.variants if v != "seq2exp-soft"]
    runs = ([("main", main_variants, [])] if main_variants else []) + (
        [("soft", ("seq2exp",), ["preset=soft"])] if "seq2exp-soft" in args.variants else [])
    for name, data in sets.items():
        if name not in args.sets:
            continue
        rows: dict[str, list] = {}
        for seed in args.seeds:
            seeded = [*settings, f"train.seed={seed}"]
            for tag, variants, extra in runs:
                summary = cross_validate(data, args.out / name / f"seed{seed}" / tag, variants, [*seeded, *extra],
                                         args.folds)["summary"]
                for variant, m in summary.items():
                    label = "seq2exp-soft" if tag == "soft" else ("seq2exp-learned" if variant == "seq2exp" else variant)
                    rows.setdefault(label, []).append(m)
        results["cv"][name] = rows
        lines += [f"\n## {name}: {args.folds} contiguous folds, seeds {args.seeds}\n",
                  "| model | test MSE | Spearman | worst fold MSE / ridge (main run) |", "|---|---|---|---|"]
        for label, ms in rows.items():
            worst = [m["mse_over_ridge"]["max"] for m in ms if "mse_over_ridge" in m]
            lines.append(f"| {label} | {mean_sd([m['mse']['mean'] for m in ms])} | "
                         f"{mean_sd([m['spearman']['mean'] for m in ms])} | "
                         f"{f'{max(worst):.2f}' if worst else '-'} |")
    if "chr22" not in args.sets or "seq2exp" not in args.variants:
        return finish(args, results, lines, t0)
    tables = [recovery(args.out / "chr22" / f"seed{seed}" / "main", args.chr22 / "abc_links.tsv",
                      args.chr22 / "dnase.bw") for seed in args.seeds]
    auprc = pd.concat([t["auprc"] for t in tables], axis=1)
    results["recovery"] = {"auprc": auprc.to_dict(orient="index"), "prevalence": float(tables[0]["prevalence"].iloc[0]),
                           "genes": int(tables[0]["genes"].iloc[0]),
                           "genes_with_links": int(tables[0]["genes_with_links"].iloc[0])}
    lines += [f"\n## Element recovery on chr22 against ABC's links ({results['recovery']['genes']} genes, "
              f"{results['recovery']['genes_with_links']} with a link in their window; prevalence "
              f"{results['recovery']['prevalence']:.4f})\n", "| ranking | AUPRC |", "|---|---|"]
    lines += [f"| {method} | {mean_sd(row.to_numpy())} |" for method, row in auprc.iterrows()]
    return finish(args, results, lines, t0)


def finish(args, results: dict, lines: list[str], t0: float) -> int:
    """Write results.md and results.json into ``--out`` and print the tables."""
    lines.append(f"\nwall time {time.perf_counter() - t0:.0f} s")
    write_text(args.out / "results.md", "\n".join(lines) + "\n")
    write_json(args.out / "results.json", results)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
