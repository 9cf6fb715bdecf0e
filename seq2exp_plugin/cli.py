"""The ``seq2exp`` command line: one subcommand per task, each thin (parse, call, report).

Adding a command: write ``_add_<name>_parser(subparsers)`` (which ends with
``parser.set_defaults(func=_run_<name>)``) and ``_run_<name>(args) -> int``, and list the
adder in :data:`_PARSERS`. Library imports go inside ``_run_<name>`` so ``seq2exp --help``
stays fast. Expected user errors (bad paths, bad values) are printed as one line and exit 2.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from typing import Callable, Sequence


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def _report(command: str, t0: float) -> None:
    print(f"seq2exp {command}: wall time {time.perf_counter() - t0:.1f} s, "
          f"peak RSS {_peak_rss_mb():.0f} MiB")


# ----------------------------------------------------------------------------------- synth
def _add_synth_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic benchmark with known causal regulatory elements",
        description="Synthetic genome, DNase reads/bigWig, H3K27ac bigWig, Hi-C cooler, TSS, "
                    "expression, half-life features, gene table and per-cell-type ground truth "
                    "(promoter / R_ag / decoy / inactive elements), described by manifest.yaml.",
    )
    p.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    p.add_argument("--preset", choices=("tiny", "bench"), default="tiny",
                   help="tiny: 20 genes, 8 kb windows (seconds); bench: 2,000 genes, 200 kb")
    p.add_argument("--genes", type=int, default=None, help="number of genes (preset default)")
    p.add_argument("--window", type=int, default=None, help="window length in bp (preset default)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--cell-types", nargs="+", default=None, metavar="NAME",
                   help="cell-type names (default: synthA synthB)")
    p.add_argument("--hic-resolution", type=int, default=None,
                   help="Hi-C bin size in bp (default: 5 kb, smaller for short windows)")
    p.add_argument("--no-gene-table", action="store_true", help="do not write genes.h5ad")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty --out")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from .data.synth import SynthParams, generate

    t0 = time.perf_counter()
    params = SynthParams.from_preset(
        args.preset, n_genes=args.genes, window=args.window, seed=args.seed,
        cell_types=tuple(args.cell_types) if args.cell_types else None,
        hic_resolution=args.hic_resolution)
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


# ------------------------------------------------------------------------------------ main
_PARSERS: tuple[Callable, ...] = (_add_synth_parser,)
_USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError)


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _USER_ERRORS as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"seq2exp {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
