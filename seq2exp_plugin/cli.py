"""The ``seq2exp`` command line: one subcommand per task, each thin (parse, call, report).

One file of about 800 lines on purpose: a parser and a runner per command, no logic of their own,
so every command's options can be read (and the README's command table generated) in one place.

Adding a command: write ``_add_<name>_parser(subparsers)`` (which ends with
``parser.set_defaults(func=_run_<name>)``) and ``_run_<name>(args) -> int``, and list the
adder in :data:`_PARSERS`. Library imports go inside ``_run_<name>`` so ``seq2exp --help``
stays fast. Bad input (:class:`~seq2exp_plugin.errors.InputError`, or an ``OSError`` such as a
missing or unwritable file) is printed as one line and exits 2; any other exception is a bug in
this package and is printed with its traceback (exit 1). ``SEQ2EXP_DEBUG=1`` shows the traceback
of bad input too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence

from .atomic import Terminated, stop_on_signals
from .errors import USER_ERRORS, InputError
from .typed_config import parse_assignments


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum`` (argparse names the option in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}")
        return value

    return parse


def _fraction(text: str) -> float:
    """An argparse type: a number in (0, 1] (a mask score or a fraction)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def _device(gpu_index_only: bool) -> Callable[[str], str]:
    """An argparse type: ``cpu`` or a GPU this machine has (an index; or a torch device name
    unless ``gpu_index_only``), so that a bad device fails before the model is loaded."""

    def parse(text: str) -> str:
        import torch

        name = f"cuda:{text}" if text.isdigit() else text
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            device = None
        if device is None or (gpu_index_only and name != "cpu" and not text.isdigit()):
            raise argparse.ArgumentTypeError(f"expected cpu or a GPU index{'' if gpu_index_only else ' or a torch device'}"
                                             f", got {text!r}")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"no CUDA device {text!r} on this machine "
                                             f"({torch.cuda.device_count()} visible)")
        return text

    return parse


def _report(command: str, t0: float) -> None:
    print(f"seq2exp {command}: wall time {time.perf_counter() - t0:.1f} s, "
          f"peak RSS {_peak_rss_mb():.0f} MiB")


# ----------------------------------------------------------------------------------- synth
def _add_out_dir(p, default: str | None = None) -> None:
    """``--out`` (an output folder, written atomically: it must not exist or be empty) and
    ``--force`` (replace a non-empty one)."""
    if default is None:
        p.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    else:
        p.add_argument("--out", default=default, help=f"output directory (default {default})")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty --out")


def _add_data_overrides(p, example: str) -> None:
    """``--data KEY=VALUE ...``: data entries of the checkpoint's run to replace."""
    p.add_argument("--data", nargs="+", default=[], metavar="KEY=VALUE",
                   help=f"replace data entries of the checkpoint, e.g. {example}")


def _add_synth_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic benchmark with known causal regulatory elements",
        description="Synthetic genome, DNase reads/bigWig, H3K27ac bigWig, Hi-C cooler, TSS, "
                    "expression, half-life features, gene table and per-cell-type ground truth "
                    "(promoter / R_ag / decoy / inactive elements), described by manifest.yaml.",
    )
    _add_out_dir(p)
    p.add_argument("--preset", choices=("tiny", "bench"), default="tiny",
                   help="tiny: 20 genes, 8 kb windows (seconds); bench: 2,000 genes, 200 kb")
    p.add_argument("--genes", type=int, default=None, help="number of genes (preset default)")
    p.add_argument("--window", type=int, default=None, help="window length in bp (preset default)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--cell-types", nargs="+", default=None, metavar="NAME",
                   help="cell-type names (default: synthA synthB)")
    p.add_argument("--hic-resolution", type=int, default=None,
                   help="Hi-C bin size in bp (default: 5 kb, smaller for short windows)")
    p.add_argument("--silent-fraction", type=float, default=None,
                   help="share of genes silent in each cell type (no promoter or enhancer "
                        "signal, expression 0), as in real RNA-seq; default 0")
    p.add_argument("--no-gene-table", action="store_true", help="do not write genes.h5ad")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from .data.synth import SynthParams, generate

    t0 = time.perf_counter()
    params = SynthParams.from_preset(
        args.preset, n_genes=args.genes, window=args.window, seed=args.seed,
        cell_types=tuple(args.cell_types) if args.cell_types else None,
        hic_resolution=args.hic_resolution, silent_fraction=args.silent_fraction)
    manifest = generate(args.out, params, force=args.force,
                        build_genes=not args.no_gene_table)
    counts = manifest["truth"]["class_counts"]
    sizes = manifest["genome"]["chroms"]
    print(f"seq2exp synth: wrote {args.out} ({manifest['n_genes']} genes, window "
          f"{manifest['window']} bp, {len(sizes)} chromosomes, {sum(sizes.values()):,} bp, "
          f"Hi-C {manifest['hic']['resolution']} bp bins, seed {manifest['seed']})")
    for cell, c in counts.items():
        print(f"  {cell}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    _report("synth", t0)
    return 0


# ----------------------------------------------------------------------------------- genes
def _parse_tracks(items: Sequence[str]) -> dict:
    """``CELL:dnase=PATH,h3k27ac=PATH`` -> ``{CELL: {"dnase": PATH, "h3k27ac": PATH}}``."""
    tracks = {}
    for item in items:
        cell, sep, rest = item.partition(":")
        pairs = dict(p.partition("=")[::2] for p in rest.split(",") if p)
        if not sep or not cell or set(pairs) != {"dnase", "h3k27ac"} or not all(pairs.values()):
            raise InputError(f"--tracks expects CELL:dnase=PATH,h3k27ac=PATH, got {item!r}")
        tracks[cell] = pairs
    return tracks


def _add_genes_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "genes", help="build the gene table (.h5ad) from TSSs, expression and tracks",
        description="The AnnData gene table `seq2exp train` reads: obs = genes (TSS, strand, "
                    "chromosome split), var = cell types, X = log10(expression + 1), "
                    "obsm['features'] = 8 mRNA half-life features + promoter activity per cell type.")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--tss", help="TSS BED: chrom start end gene_id score strand (TSS = (start+end)//2)")
    where.add_argument("--gtf", help="GTF: one TSS per gene record (also gives half-life features with --genome)")
    p.add_argument("--expression", required=True,
                   help="TSV/CSV with gene ids (gene_id or ENSID) and one raw-expression column per "
                        "cell type (e.g. CAGE)")
    p.add_argument("--expression-columns", nargs="+", default=None, metavar="CELL=COLUMN",
                   help="read only these columns, each as the named cell type, e.g. "
                        "K562='K562_CAGE_128*3_sum' in EPInformer's table (default: every column "
                        "but the gene ids and symbols, each a cell type)")
    p.add_argument("--tracks", nargs="+", required=True, metavar="CELL:dnase=BW,h3k27ac=BW",
                   help="bigWigs for the promoter-activity feature, one item per cell type")
    p.add_argument("--halflife", default=None,
                   help="TSV/CSV: gene ids + the 8 half-life columns (EPInformer's tables as they are)")
    p.add_argument("--genome", default=None, help="FASTA (half-life features from --gtf)")
    p.add_argument("--valid", nargs="+", default=["chr3", "chr21"], help="validation chromosomes")
    p.add_argument("--test", nargs="+", default=["chr22", "chrX"], help="test chromosomes")
    p.add_argument("--out", required=True, help="output .h5ad (written atomically)")
    p.set_defaults(func=_run_genes)


def _run_genes(args: argparse.Namespace) -> int:
    import numpy as np

    from .data.genes import build_gene_table

    t0 = time.perf_counter()
    columns = (_parse_named(args.expression_columns, "--expression-columns", "COLUMN")
               if args.expression_columns else None)
    table = build_gene_table(tss=args.tss, expression=args.expression, tracks=_parse_tracks(args.tracks),
                             halflife=args.halflife, gtf=args.gtf, genome=args.genome,
                             split={"valid": args.valid, "test": args.test}, out=args.out, cell_types=columns)
    counts = table.obs["split"].value_counts().to_dict()
    scored = np.isfinite(np.asarray(table.X, dtype=np.float64)).sum(axis=0)
    print(f"seq2exp genes: wrote {args.out}: {table.n_obs} genes x {table.n_vars} cell types "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())}); with expression: "
          + ", ".join(f"{ct} {int(n)}" for ct, n in zip(table.var_names, scored)))
    _report("genes", t0)
    return 0


# ----------------------------------------------------------------------------------- train
def _add_train_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train Seq2Exp or a baseline from a YAML configuration",
        description="Train with PyTorch Lightning (the paper's recipe by default). Writes "
                    "OUT/config.yaml, OUT/checkpoints/{best,last}.ckpt and OUT/logs/; running the "
                    "same command again resumes from last.ckpt.")
    p.add_argument("config", help="YAML run configuration (see seq2exp_plugin.train.config)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override configuration entries, e.g. train.max_steps=100 out_dir=runs/x")
    p.add_argument("--restart", dest="restart", action="store_true",
                   help="start over: delete the checkpoints and logs a previous run left in out_dir "
                        "(needed to reuse an out_dir with a different configuration)")
    p.add_argument("--folds", type=_count(3), default=None, metavar="K",
                   help="hold out genes by K contiguous folds along the genome (data.folds) ...")
    p.add_argument("--fold", type=_count(0), default=None, metavar="I",
                   help="... with fold I as test and fold I+1 as validation (data.fold)")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from .train.config import load_config
    from .train.fit import fit

    t0 = time.perf_counter()
    folds = {f"data.{k}": v for k, v in (("folds", args.folds), ("fold", args.fold)) if v is not None}
    run = load_config(args.config, {**parse_assignments(args.set), **folds})
    if fit(run, resume=not args.restart) is None:
        return 0  # a finished run: fit said so
    from .train.module import checkpoint_metric

    print(f"seq2exp train: checkpoints in {run.out_dir}/checkpoints "
          f"(best.ckpt = lowest {checkpoint_metric(run.train)})")
    _report("train", t0)
    return 0


# -------------------------------------------------------------------------------- evaluate
def _add_evaluate_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="MSE, MAE, Pearson, Spearman and mask ratio of a checkpoint on a split",
        description="Evaluate a checkpoint written by `seq2exp train` on the genes of one split "
                    "of its gene table (data paths from the checkpoint unless overridden).")
    p.add_argument("checkpoint")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--split", default="test", choices=("train", "valid", "test"),
                       help="the genes of this split of the run (its folds or gene lists, if any)")
    which.add_argument("--genes", nargs="+", default=None, metavar="GENE_ID", help="these genes instead")
    which.add_argument("--genes-file", default=None, metavar="FILE",
                       help="the genes listed in FILE (one id per line) instead")
    _add_data_overrides(p, "genes=other.h5ad window=20000")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.add_argument("--truth", default=None,
                   help="ground-truth BED (seq2exp synth truth/<cell>.bed): also report what the "
                        "generator adds (mask, signal-only and generator AUPRC; causal vs decoy)")
    p.add_argument("--batch-size", type=_count(1), default=1)
    p.add_argument("--num-workers", type=_count(0), default=0)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .atomic import check_writable_file, write_json
    from .data.splits import read_gene_list
    from .train.evaluate import evaluate, format_table, load_run
    from .train.fit import make_dataset

    t0 = time.perf_counter()
    if args.json:
        check_writable_file(args.json, "--json")
    if args.truth and not os.path.isfile(args.truth):
        raise FileNotFoundError(f"--truth: ground-truth BED not found: {args.truth}")
    module, run = load_run(args.checkpoint, parse_assignments(args.data))
    genes = read_gene_list(args.genes_file, "--genes-file") if args.genes_file else args.genes
    split = None if genes else args.split
    dataset = make_dataset(run, split, gene_ids=genes)
    if len(dataset) == 0:
        raise InputError(f"{run.data.genes}: no genes in split {args.split!r}")
    name = args.split if split else f"{len(dataset)} listed genes"
    per_gene: list = []
    if args.truth and run.variant not in ("seq2exp", "retrain"):
        raise InputError(f"--truth: generator metrics need a Seq2Exp checkpoint, not variant {run.variant!r}")
    metrics = evaluate(module.net, dataset, args.batch_size, args.num_workers,
                       on_gene=per_gene.append if args.truth else None)
    if args.truth:
        from .discover.recovery import generator_recovery

        added = generator_recovery(per_gene, args.truth, exclude_center=module.net.config.mask.promoter_keep,
                                   blacklist=run.data.blacklist)
        metrics.update({f"generator_{k}": v for k, v in added.items()})
    print(format_table({f"{run.variant} ({name})": metrics}))
    if args.truth:
        print("what the generator adds (AUPRC against the truth's R_ag elements, promoters excluded):")
        for key in ("auprc", "auprc_signal", "auprc_sequence", "gain", "causal_vs_decoy",
                    "causal_vs_decoy_signal", "kept_fraction"):
            print(f"  {key:<24} {metrics['generator_' + key]:.4f}")
    if args.json:
        write_json(args.json, {"checkpoint": args.checkpoint, "split": split,
                               "genes": list(dataset.gene_ids) if genes else None, **metrics})
    _report("evaluate", t0)
    return 0


# -------------------------------------------------------------------------------------- cv
def _parse_named(items: Sequence[str], option: str, value: str = "PATH") -> dict:
    """``NAME=VALUE`` items of ``option`` -> ``{NAME: VALUE}`` in the given (channel) order."""
    named = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name or not text:
            raise InputError(f"{option} expects NAME={value}, got {item!r}")
        named[name] = text
    return named


def _add_cv_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "cv", help="cross-validate Seq2Exp and the baselines over gene folds: files in, table out",
        description="Train every variant on every gene fold (K contiguous blocks of genes along the "
                    "genome, or the values of a gene-table column) with the input/target scaling "
                    "fitted on each fold's training genes, evaluate on the fold's test genes, and "
                    "write OUT/cv.md, cv.tsv, cv.json: per-fold and mean +/- sd MSE, Pearson, "
                    "Spearman, and (with the ridge) each model's MSE over the ridge's per fold. "
                    "Start from a run configuration, or from raw files (--genome --tss "
                    "--expression --signals --cell-type: the gene table is built into OUT first, "
                    "and each fold trains the paper's 25 passes over its training genes, "
                    "train.epochs=25, unless --set gives train.max_steps or train.epochs).")
    p.add_argument("config", nargs="?", default=None, help="a `seq2exp train` YAML (else the file options)")
    p.add_argument("--out", required=True, help="output directory (one run per fold/variant inside)")
    p.add_argument("--folds", type=_count(3), default=5, help="K contiguous gene folds (default 5)")
    p.add_argument("--fold-column", default=None,
                   help="take the folds from this gene-table column instead (data.fold_column)")
    p.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                   help="default: seq2exp seq-signals ridge promoter-ridge")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override run entries, e.g. train.max_steps=2000 model.predictor.d_model=64")
    g = p.add_argument_group("from files (instead of CONFIG)")
    g.add_argument("--genome", help="genome FASTA")
    g.add_argument("--tss", help="TSS BED: chrom start end gene_id score strand")
    g.add_argument("--expression", help="TSV/CSV: gene ids (gene_id or ENSID) + raw expression per cell type")
    g.add_argument("--cell-type", help="the cell type to predict: its expression column, and its name")
    g.add_argument("--expression-column", default=None, metavar="COLUMN",
                   help="the expression column when it is not named after the cell type, e.g. "
                        "'K562_CAGE_128*3_sum' in EPInformer's table")
    g.add_argument("--signals", nargs="+", metavar="NAME=PATH",
                   help="tracks in channel order, e.g. h3k27ac=k27.bw dnase=dnase.bw hic=k562.hic "
                        "(bigWig; Hi-C .hic/.cool/.mcool, or hic=powerlaw[:k562] without Hi-C: ABC's "
                        "power law of the distance to the TSS); dnase and h3k27ac are required")
    g.add_argument("--halflife", default=None,
                   help="TSV/CSV: gene ids + the 8 half-life columns (EPInformer's tables as they are)")
    g.add_argument("--gtf", default=None,
                   help="GTF: half-life features computed with --genome (instead of --halflife), symbols")
    p.set_defaults(func=_run_cv)


def _run_cv(args: argparse.Namespace) -> int:
    from .atomic import check_writable_dir
    from .train.config import load_config
    from .train.cv import DEFAULT_VARIANTS, cross_validate, fold_runs, format_results, run_from_files

    t0 = time.perf_counter()
    check_writable_dir(args.out, "--out")
    settings = parse_assignments(args.set)
    if args.fold_column:
        settings["data.fold_column"] = args.fold_column
    files = (args.genome, args.tss, args.expression, args.cell_type, args.signals)
    if args.config is not None and (any(files) or args.halflife or args.gtf):
        raise InputError("give either CONFIG or --genome/--tss/--expression/--cell-type/--signals "
                         "(with --halflife or --gtf)")
    if args.config is None and not all(files):
        raise InputError("without CONFIG, --genome, --tss, --expression, --cell-type and --signals are required")
    fresh = not Path(args.out).exists()
    try:  # every input and every fold checked before any training
        if args.config is not None:
            base = load_config(args.config, {**settings, "out_dir": str(Path(args.out).resolve())})
        else:
            base = run_from_files(args.out, args.genome, args.tss, args.expression,
                                  _parse_named(args.signals, "--signals"), args.cell_type,
                                  halflife=args.halflife, settings=settings,
                                  expression_column=args.expression_column, gtf=args.gtf)
        runs = fold_runs(base, args.out, None if args.fold_column else args.folds,
                         args.variants or DEFAULT_VARIANTS)
    except BaseException:
        if fresh:  # refused (or stopped) before any training: no folder left behind
            shutil.rmtree(args.out, ignore_errors=True)
        raise

    def report(result) -> None:
        m = result.metrics
        across = (f", cross-cell-type Spearman {m['cross_celltype_spearman']:.4f} over "
                  f"{m['cross_celltype_genes']} genes" if "cross_celltype_spearman" in m else "")
        print(f"seq2exp cv: fold {result.fold} {result.variant}: MSE {m['mse']:.4f}, Pearson "
              f"{m['pearson']:.4f}, Spearman {m['spearman']:.4f}{across} ({result.n_test} test "
              f"{'examples' if across else 'genes'})", flush=True)

    results = cross_validate(runs, args.out, on_result=report)
    print(format_results(results))
    print(f"seq2exp cv: wrote {args.out}/cv.md, cv.tsv, cv.json")
    _report("cv", t0)
    return 0


# ----------------------------------------------------------------------------------- peaks
def _add_peaks_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "peaks",
        help="call MACS3 peaks (DNase reads or a signal bigWig) for the peak-mask baseline",
        description="MACS3 peak calling into a new directory: OUT/peaks.narrowPeak plus OUT/macs3.log "
                    "(written in a temporary directory and renamed when done). With --reads: "
                    "`macs3 callpeak` (DNase defaults --nomodel --shift -100 --extsize 200 "
                    "--keep-dup all, q < 0.05); with --bigwig: `macs3 bdgpeakcall` on the track "
                    "(converted to bedGraph) with --cutoff. Needs MACS3: "
                    'pip install "seq2exp-plugin[peaks]".',
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--reads", nargs="+", metavar="FILE",
                     help="DNase reads/cut sites (BED, BAM, ...; plain or gzip): callpeak mode")
    src.add_argument("--bigwig", metavar="FILE", help="a signal bigWig: bdgpeakcall mode")
    _add_out_dir(p)
    g = p.add_argument_group("callpeak (--reads)")
    g.add_argument("--control", nargs="+", metavar="FILE", default=None, help="control reads (optional)")
    g.add_argument("--format", default=None, help="MACS3 -f (default: BED for .bed[.gz], BAM for .bam, "
                                                   "else AUTO)")
    g.add_argument("--genome", default=None, help="genome FASTA, .fai or .sizes: -g = its total length")
    g.add_argument("--genome-size", default=None,
                   help="MACS3 -g instead: a number (2.7e9) or hs/mm/ce/dm (overrides --genome)")
    g.add_argument("--qvalue", type=_fraction, default=0.05, help="q-value cut-off (default 0.05)")
    g.add_argument("--pvalue", type=_fraction, default=None, help="p-value cut-off (replaces --qvalue)")
    g.add_argument("--shift", type=int, default=-100, help="--shift for --nomodel (default -100)")
    g.add_argument("--extsize", type=_count(1), default=200, help="--extsize for --nomodel (default 200)")
    g.add_argument("--model", action="store_true", help="let MACS3 build its fragment model "
                                                        "(no --nomodel/--shift/--extsize)")
    g.add_argument("--keep-dup", default="all", help="--keep-dup (default all: DNase cut sites)")
    b = p.add_argument_group("bdgpeakcall (--bigwig)")
    b.add_argument("--cutoff", type=float, default=5.0, help="signal cut-off on the track's scale (default 5)")
    b.add_argument("--min-length", type=_count(1), default=200, help="minimum peak length in bp (default 200)")
    b.add_argument("--max-gap", type=_count(0), default=30, help="maximum gap merged inside a peak (default 30)")
    p.add_argument("--macs3-arg", action="append", default=[], metavar="ARG",
                   help="extra argument passed to MACS3 as is (repeat; use --macs3-arg=--flag)")
    p.set_defaults(func=_run_peaks)


def _run_peaks(args: argparse.Namespace) -> int:
    from .discover.peaks import (MACS3Error, MACS3NotFoundError, call_peaks_on_reads,
                                 call_peaks_on_signal, macs3_genome_size)

    t0 = time.perf_counter()
    try:
        if args.reads:
            gsize = macs3_genome_size(args.genome, args.genome_size)
            print(f"seq2exp peaks: macs3 callpeak on {len(args.reads)} read file(s), genome size "
                  f"{gsize}, {'p' if args.pvalue is not None else 'q'} < "
                  f"{args.pvalue if args.pvalue is not None else args.qvalue} ...", flush=True)
            res = call_peaks_on_reads(
                args.reads, args.out, genome_size=gsize, control=args.control, fmt=args.format,
                qvalue=args.qvalue, pvalue=args.pvalue, shift=args.shift, extsize=args.extsize,
                nomodel=not args.model, keep_dup=args.keep_dup, extra_args=args.macs3_arg,
                force=args.force)
        else:
            print(f"seq2exp peaks: macs3 bdgpeakcall on {args.bigwig} (cutoff {args.cutoff:g}, "
                  f"min length {args.min_length}, max gap {args.max_gap}) ...", flush=True)
            res = call_peaks_on_signal(
                args.bigwig, args.out, cutoff=args.cutoff, min_length=args.min_length,
                max_gap=args.max_gap, extra_args=args.macs3_arg, force=args.force)
    except (MACS3NotFoundError, MACS3Error) as err:
        print(f"seq2exp peaks: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, MACS3NotFoundError) else 1
    print(f"seq2exp peaks: {res.summary()} (log {res.log})")
    _report("peaks", t0)
    return 0


# --------------------------------------------------------------------------------- predict
def _add_predict_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="expression, mask bigWig, element BED and plots for a set of genes",
        description="Predict with a checkpoint written by `seq2exp train`. OUT gets expression.tsv "
                    "and .h5ad, mask.<cell>.bw (per-bp mask score), elements.<cell>.bed (discovered "
                    "elements), plots/<gene>.png and summary.json; it is written atomically.")
    p.add_argument("checkpoint")
    _add_out_dir(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--genes", nargs="+", default=None, metavar="GENE_ID", help="these genes")
    which.add_argument("--split", choices=("train", "valid", "test"), default=None,
                       help="the genes of one split (default: every gene of the table)")
    p.add_argument("--threshold", type=float, default=0.5, help="mask value that keeps a bp (0.5)")
    p.add_argument("--plots", type=_count(0), default=20,
                   help="plot this many genes, the most expressed first (20)")
    p.add_argument("--truth", default=None, help="ground-truth BED to draw (seq2exp synth truth/<cell>.bed)")
    p.add_argument("--peaks", default=None, help="MACS3 peaks to draw (narrowPeak or `seq2exp peaks` folder)")
    p.add_argument("--cell-types", nargs=2, default=None, metavar=("A", "B"),
                   help="predict two cell types of the model side by side (signal paths with {cell_type}): "
                        "both masks, difference.bw (A - B), differential.bed (elements kept in one only); "
                        "--truth/--peaks then hold {cell_type} (docs/celltypes.md)")
    _add_mask_run_options(p)
    p.set_defaults(func=_run_predict)


def _add_mask_run_options(p) -> None:
    """The options `predict` and `links` share: data overrides, element calls, batching, --force."""
    _add_data_overrides(p, "genes=other.h5ad")
    p.add_argument("--min-gap", type=_count(0), default=0, help="merge called elements closer than this (bp)")
    p.add_argument("--min-length", type=_count(1), default=1, help="drop called elements shorter than this (bp)")
    p.add_argument("--batch-size", type=_count(1), default=1)
    p.add_argument("--num-workers", type=_count(0), default=0)


def _run_predict(args: argparse.Namespace) -> int:
    from .discover.differential import predict_differential
    from .discover.predict import predict_to_directory

    t0 = time.perf_counter()
    options = dict(gene_ids=args.genes, split=args.split, data_overrides=parse_assignments(args.data),
                   threshold=args.threshold, min_gap=args.min_gap, min_length=args.min_length,
                   max_plots=args.plots, truth=args.truth, peaks=args.peaks, batch_size=args.batch_size,
                   num_workers=args.num_workers, force=args.force)
    if args.cell_types is not None:
        out = predict_differential(args.checkpoint, args.out, args.cell_types, **options)
    else:
        out = predict_to_directory(args.checkpoint, args.out, **options)
    print(f"seq2exp predict: wrote {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    _report("predict", t0)
    return 0


# ----------------------------------------------------------------------------------- links
def _add_links_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "links", help="enhancer-gene links (ABC / ENCODE-rE2G columns) from a checkpoint's masks",
        description="One row per (element, gene whose window holds it): the gene's mask score over the "
                    "element (mean, max, kept fraction), distance to the TSS, the element's mean "
                    "signals, the gene's predicted expression. Elements: --elements (candidate regions, "
                    "cCREs, DNase peaks) or the runs the mask keeps. OUT gets links.tsv.gz (ABC / "
                    "ENCODE-rE2G column names), links.bedpe and links.interact.bed + interact.as (arcs: "
                    "IGV's BEDPE, UCSC's interact for bedToBigBed), windows.bed and summary.json, "
                    "atomically. Score them with `seq2exp benchmark-links`.")
    p.add_argument("checkpoint")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--split", choices=("train", "valid", "test", "all"), default=None,
                       help="the genes of one split of the run (all: every gene of the table)")
    which.add_argument("--genes", nargs="+", default=None, metavar="GENE_ID", help="these genes")
    which.add_argument("--genes-file", default=None, metavar="FILE", help="the genes listed in FILE (one id per line)")
    _add_out_dir(p)
    p.add_argument("--elements", default=None, metavar="BED",
                   help="candidate elements (BED3+; default: the runs of bases the mask keeps)")
    p.add_argument("--threshold", type=_fraction, default=0.5,
                   help="mask value that keeps a bp: element calls and kept_fraction (0.5)")
    _add_mask_run_options(p)
    p.set_defaults(func=_run_links)


def _run_links(args: argparse.Namespace) -> int:
    from .data.splits import read_gene_list
    from .discover.links import links_to_directory

    t0 = time.perf_counter()
    genes = read_gene_list(args.genes_file, "--genes-file") if args.genes_file else args.genes
    split = None if args.split in (None, "all") else args.split
    summary = links_to_directory(
        args.checkpoint, args.out, gene_ids=genes, split=split, elements=args.elements,
        data_overrides=parse_assignments(args.data), threshold=args.threshold, min_gap=args.min_gap,
        min_length=args.min_length, batch_size=args.batch_size, num_workers=args.num_workers, force=args.force)
    print(f"seq2exp links: {summary['n_links']} links for {summary['n_genes_with_links']} of "
          f"{summary['n_genes']} genes ({summary['elements']}; classes {summary['classes']}); wrote "
          f"{args.out}: links.tsv.gz, links.bedpe, links.interact.bed, interact.as, windows.bed, summary.json")
    _report("links", t0)
    return 0


def _add_benchmark_links_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "benchmark-links", help="score enhancer-gene predictions against a CRISPRi benchmark (AUPRC, baselines)",
        description="Overlap each tested element of a CRISPRi benchmark (EPCrisprBenchmark columns; "
                    "`seq2exp synth` writes truth/<cell>.crispr.tsv.gz) with the predicted elements of its "
                    "gene (maximum score over overlaps; none: score 0, counted), and report AUPRC, "
                    "precision at 70%% recall and its threshold, overall and per distance bin (0-10 kb, "
                    "10-100 kb, >100 kb), for every predictions file (ABC / ENCODE-rE2G columns, e.g. "
                    "`seq2exp links`' links.tsv.gz or ABC's EnhancerPredictionsFull.txt) and the baselines "
                    "(distance; with --dnase/--h3k27ac/--hic: DNase, H3K27ac, ABC-like activity x contact). "
                    "OUT gets metrics.tsv/.md, pairs.tsv.gz, pr_curve.png, summary.json, atomically.")
    p.add_argument("predictions", nargs="+", metavar="[NAME=]PRED",
                   help="predictions files (gzipped or plain TSV); score column Score, else ABC.Score")
    p.add_argument("--crispr", required=True, metavar="FILE", help="the CRISPR benchmark (EPCrisprBenchmark TSV)")
    _add_out_dir(p)
    p.add_argument("--extra-columns", nargs="+", default=[], metavar="COLUMN",
                   help="also score these columns of the predictions files that have them (e.g. powerlaw.Score)")
    p.add_argument("--dnase", default=None, metavar="BW", help="DNase bigWig (DNase and ABC-like baselines)")
    p.add_argument("--h3k27ac", default=None, metavar="BW", help="H3K27ac bigWig (H3K27ac and ABC-like baselines)")
    p.add_argument("--hic", default=None, metavar="FILE", help="Hi-C (.cool/.mcool/.hic): contact of the ABC-like baseline")
    p.add_argument("--elements", default=None, metavar="BED",
                   help="candidate elements: the ABC-like denominator sums over them (within --max-distance "
                        "of the TSS) besides the gene's tested elements")
    p.add_argument("--max-distance", type=_count(1), default=5_000_000,
                   help="candidate elements farther from the TSS are not in the ABC-like sum (bp, default 5 Mb)")
    p.add_argument("--genome", default=None, metavar="FASTA_OR_SIZES",
                   help="the predictions' genome (FASTA, .fai or .sizes): tested pairs beyond a chromosome's end "
                        "are refused (another assembly)")
    p.add_argument("--all-connections", action="store_true",
                   help="keep pairs whose ValidConnection is not TRUE (default: drop them)")
    p.add_argument("--power-column", default="PowerAtEffectSize15",
                   help="drop negatives whose power in this column is below --min-power (default PowerAtEffectSize15)")
    p.add_argument("--min-power", type=float, default=0.8, help="(default 0.8; 0 keeps every negative)")
    p.set_defaults(func=_run_benchmark_links)


def _run_benchmark_links(args: argparse.Namespace) -> int:
    from .discover.link_benchmark import benchmark_links

    t0 = time.perf_counter()
    summary = benchmark_links(
        args.predictions, args.crispr, args.out, extra_columns=args.extra_columns, dnase=args.dnase,
        h3k27ac=args.h3k27ac, hic=args.hic, elements=args.elements, genome=args.genome,
        all_connections=args.all_connections, power_column=args.power_column or None, min_power=args.min_power,
        max_distance=args.max_distance, force=args.force)
    print(f"seq2exp benchmark-links: {summary['n_pairs']} tested pairs ({summary['n_positive']} regulated) "
          f"after the filters (dropped: {summary['filters']['dropped']})")
    for name, counts in summary["unpredicted"].items():
        print(f"  {name}: {counts['predicted']} pairs predicted; score 0: {counts['outside_windows']} outside every "
              f"window, {counts['in_window_no_element']} in a window without a linked element")
    print((Path(args.out) / "metrics.md").read_text(), end="")
    print(f"seq2exp benchmark-links: wrote {args.out}: metrics.tsv, metrics.md, pairs.tsv.gz, pr_curve.png, summary.json")
    _report("benchmark-links", t0)
    return 0


# ------------------------------------------------------------------------------------- ism
def _add_ism_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "ism", help="in-silico mutagenesis of the elements a gene's mask selected (gReLU's ISM)",
        description="Mutate every base of the top mask-selected elements of a gene (within a bp "
                    "budget; optionally the central promoter) to the 3 other bases and predict "
                    "with gReLU's ISMDataset + predict_on_dataset on the model bound to the gene's "
                    "signals. By default the generator reads each mutated sequence (the mask is "
                    "recomputed); --mask-mode fixed holds the reference mask. Writes OUT/ism.tsv "
                    "(chrom, pos 1-based, ref, alt on the + strand, delta = alt - ref prediction), "
                    "OUT/elements.bed, OUT/<gene>.max_abs_delta.bw, OUT/<gene>.mean_delta.bw, "
                    "OUT/<gene>.element<k>.png and OUT/summary.json (with the cost), atomically.")
    p.add_argument("checkpoint")
    p.add_argument("--gene", nargs="+", required=True, metavar="GENE_ID", help="gene id(s) of the gene table")
    _add_out_dir(p)
    p.add_argument("--top-elements", type=_count(1), default=5, help="at most this many elements (default 5)")
    p.add_argument("--bp-budget", type=_count(0), default=500,
                   help="bases mutated in the elements at most (default 500; 3 model calls each)")
    p.add_argument("--promoter-bp", type=_count(0), default=0,
                   help="also mutate the central N bp (promoter/TSS), on top of the budget (default 0)")
    p.add_argument("--threshold", type=_fraction, default=0.5, help="element = mask score >= this (default 0.5)")
    p.add_argument("--top-fraction", type=_fraction, default=None,
                   help="element = the window's top fraction of mask scores instead of --threshold")
    p.add_argument("--min-gap", type=_count(0), default=20, help="merge elements closer than this (bp, default 20)")
    p.add_argument("--min-length", type=_count(1), default=10, help="drop elements shorter than this (bp, default 10)")
    p.add_argument("--mask-mode", choices=("recompute", "fixed"), default="recompute",
                   help="recompute: the generator sees the mutated DNA (default); fixed: reference mask")
    p.add_argument("--batch-size", type=_count(1), default=64)
    p.add_argument("--device", type=_device(gpu_index_only=True), default="cpu",
                   help="cpu, or a GPU index for gReLU's trainer (default cpu)")
    p.add_argument("--plot-elements", type=_count(0), default=1, help="PNG for the top N elements (default 1)")
    _add_data_overrides(p, "genome=other.fa")
    p.set_defaults(func=_run_ism)


def _run_ism(args: argparse.Namespace) -> int:
    from .discover.ism_run import run_ism

    t0 = time.perf_counter()
    if args.bp_budget == 0 and args.promoter_bp == 0:
        raise InputError("--bp-budget 0 and --promoter-bp 0 leave no base to mutate")
    device = int(args.device) if str(args.device).isdigit() else args.device
    summary = run_ism(
        args.checkpoint, args.gene, args.out, top_elements=args.top_elements, bp_budget=args.bp_budget,
        promoter_bp=args.promoter_bp, threshold=None if args.top_fraction else args.threshold,
        top_fraction=args.top_fraction, min_gap=args.min_gap, min_length=args.min_length,
        mask_mode=args.mask_mode, batch_size=args.batch_size, devices=device,
        plot_elements=args.plot_elements, data_overrides=parse_assignments(args.data), force=args.force)
    for g in summary["genes"]:
        full = g["full_window"]
        print(f"seq2exp ism: {g['gene_id']}: {len(g['elements'])} element(s), {g['bases_scored']} bases, "
              f"{g['model_calls']} model calls in {g['seconds']:.1f} s "
              f"({1000 * g['seconds_per_model_call']:.1f} ms/call); full window: {full['bases']} bases, "
              f"{full['model_calls']} calls, ~{full['seconds_extrapolated']:.0f} s (extrapolated)")
    print(f"seq2exp ism: wrote {args.out} (ism.tsv: pos 1-based, delta = alt - ref prediction)")
    _report("ism", t0)
    return 0


# -------------------------------------------------------------------------------- variants
def _add_variants_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "variants", help="effects of variants on predicted expression and on the mask (TSS-centred windows)",
        description="For every (variant, gene) whose TSS-centred window contains the variant: "
                    "predict the reference and the alternate window; delta = alt - ref, and the "
                    "change of the mask score (mean |delta| over the window and at the variant). "
                    "Reference alleles are checked against the genome first. Writes "
                    "OUT/variants.tsv, OUT/not_scored.tsv (outside every window, indels, ...), "
                    "OUT/summary.json (and OUT/variants.h5ad), atomically.")
    p.add_argument("checkpoint")
    p.add_argument("--variants", required=True, metavar="VCF_OR_TSV",
                   help="a VCF (.vcf/.vcf.gz) or a TSV with columns chrom, pos (1-based), ref, alt [, id]")
    _add_out_dir(p)
    p.add_argument("--genes", nargs="+", default=None, metavar="GENE_ID",
                   help="candidate genes (default: every gene of the checkpoint's gene table)")
    p.add_argument("--window-genes", choices=("auto", "nearest"), default="auto",
                   help="auto: pair each variant with every candidate gene whose window contains it "
                        "(default); nearest: with the nearest such TSS only")
    p.add_argument("--h5ad", action="store_true", help="also write variants x genes as OUT/variants.h5ad")
    p.add_argument("--batch-size", type=_count(1), default=16)
    p.add_argument("--device", type=_device(gpu_index_only=False), default="cpu", help="torch device (default cpu)")
    _add_data_overrides(p, "genome=other.fa")
    p.set_defaults(func=_run_variants)


def _run_variants(args: argparse.Namespace) -> int:
    from .discover.variants import run_variants

    t0 = time.perf_counter()
    summary = run_variants(
        args.checkpoint, args.variants, args.out, gene_ids=args.genes, window_genes=args.window_genes,
        batch_size=args.batch_size, device=args.device, h5ad=args.h5ad,
        data_overrides=parse_assignments(args.data), force=args.force)
    print(f"seq2exp variants: {summary['variants']} variants, {summary['pairs_scored']} (variant, gene) "
          f"pairs scored over {summary['genes_with_variants']} genes; {summary['not_scored']} not scored")
    for reason, n in summary["not_scored_by_reason"].items():
        print(f"  not scored ({n}): {reason}")
    print(f"seq2exp variants: wrote {args.out} (pos 1-based, delta = alt - ref prediction)")
    _report("variants", t0)
    return 0


# ------------------------------------------------------------------------------------ demo
def _add_demo_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="predict and discover on the bundled demo data (model_zoo/Seq2Exp/Demo)",
        description="Runs `seq2exp predict` with the Demo weights on every bundled demo gene "
                    "(expression, mask bigWig, element BED, plots with the ground truth) and "
                    "scores how well the mask finds the causal elements, next to DNase alone.")
    _add_out_dir(p, default="demo_out")
    p.add_argument("--zoo", default=None, help="the model_zoo folder (default: this checkout's)")
    p.add_argument("--plots", type=_count(0), default=12, help="plot at most this many genes (12)")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .discover.demo import run_demo

    t0 = time.perf_counter()
    recovery = run_demo(args.out, zoo=args.zoo, max_plots=args.plots, force=args.force)
    print(f"seq2exp demo: wrote {args.out}/ (expression.tsv, mask and elements per cell type, plots/)")
    print("element recovery against the ground truth (AUPRC of the per-bp score; random = prevalence):")
    generator = recovery.pop("generator", None)
    for name, values in recovery.items():
        print(f"  {name:<14} AUPRC {values['auprc']:.3f}   (prevalence {values['prevalence']:.3f})")
    if generator:
        print(f"  what the generator adds: {generator['gain']:+.3f} AUPRC over the signals alone; "
              f"causal vs decoy inside peaks {generator['causal_vs_decoy']:.3f} "
              f"(signals alone {generator['causal_vs_decoy_signal']:.3f}, random "
              f"{generator['decoy_prevalence']:.3f}); {100 * generator['kept_fraction']:.1f}% kept")
    _report("demo", t0)
    return 0


# ------------------------------------------------------------------------------------ main
_PARSERS: tuple[Callable, ...] = (_add_demo_parser, _add_synth_parser, _add_genes_parser, _add_train_parser,
                                  _add_evaluate_parser, _add_cv_parser,
                                  _add_predict_parser, _add_links_parser, _add_benchmark_links_parser,
                                  _add_peaks_parser, _add_ism_parser, _add_variants_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2exp",
        description="Seq2Exp: gene expression from DNA and epigenomic signals, with the "
                    "regulatory elements it discovers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in _PARSERS:
        add(sub)
    return parser


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Warnings as ``seq2exp COMMAND: warning: ...`` lines, like the errors, not as Python's
    ``file:line: UserWarning`` followed by a line of source code."""
    import warnings

    def one_line(message, category, filename, lineno, line=None) -> str:
        kind = "warning" if category is UserWarning else category.__name__
        return f"seq2exp {command}: {kind}: {message}\n"

    previous, warnings.formatwarning = warnings.formatwarning, one_line
    try:
        yield
    finally:
        warnings.formatwarning = previous


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand. Exit status: 0 done, 2 bad input (one line on stderr, no traceback),
    1 a bug (its traceback and a request to report it), 130 Ctrl-C, 143 SIGTERM; temporary
    outputs are removed in every case."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with stop_on_signals(), _one_line_warnings(args.command):
            return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if os.environ.get("SEQ2EXP_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        print(f"seq2exp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seq2exp {args.command}: interrupted; unfinished outputs were removed", file=sys.stderr)
        return 130
    except Terminated:
        print(f"seq2exp {args.command}: terminated (SIGTERM); unfinished outputs were removed", file=sys.stderr)
        return 143
    except Exception as err:
        traceback.print_exc()
        print(f"seq2exp {args.command}: internal error ({type(err).__name__}): this is a bug in "
              f"seq2exp-plugin, not a problem with your input; please report it with the "
              f"traceback above", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
