"""Peak memory of ``seq2exp predict`` against the number of genes (it should stay flat).

Writes a synthetic genome with ``--genes`` genes (``seq2exp synth``, tiny preset), trains a tiny
Seq2Exp on ``--window`` bp windows for two steps, then predicts every gene into a fresh folder
and prints the process's peak RSS after gene 1, ``--at`` and the last one.

    python benchmarks/predict_memory.py                       # 1,200 genes, 2 kb windows
    python benchmarks/predict_memory.py --genes 400 --at 50
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import warnings
from pathlib import Path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=1200)
    parser.add_argument("--window", type=int, default=2000)
    parser.add_argument("--at", type=int, default=100, help="the early gene the growth is measured from")
    parser.add_argument("--workdir", default=None, help="keep the inputs here (default: a temporary folder)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    from seq2exp_plugin.data.synth import SynthParams, generate
    from seq2exp_plugin.discover.predict import predict_to_directory
    from seq2exp_plugin.train.config import RunConfig
    from seq2exp_plugin.train.fit import fit

    root = Path(args.workdir or tempfile.mkdtemp(prefix="predict_memory."))
    root.mkdir(parents=True, exist_ok=True)
    synth = root / "synth"
    if not synth.is_dir():
        generate(synth, SynthParams.from_preset("tiny", n_genes=args.genes, seed=1))  # genes 4-7 kb apart
    stack = {"d_model": 8, "n_layers": 1, "d_state": 4}
    cell = "synthA"
    run = RunConfig.from_dict({
        "model": {"generator": stack, "predictor": stack, "pool_width": 200,
                  "mask": {"promoter_keep": 200}, "signal_transform": "log1p"},
        "data": {"genes": str(synth / "genes.h5ad"), "genome": str(synth / "genome.fa"),
                 "signals": {s: str(synth / cell / f"{s}.{'cool' if s == 'hic' else 'bw'}")
                             for s in ("h3k27ac", "dnase", "hic")},
                 "cell_type": cell, "window": args.window, "num_workers": 0},
        "train": {"max_steps": 2, "batch_size": 2, "warmup_steps": 1, "val_every_steps": 2,
                  "progress_bar": False},
        "out_dir": str(root / "run"),
    })
    fit(run)
    marks: dict[int, float] = {}
    count = 0

    def on_gene(_gene) -> None:
        nonlocal count
        count += 1
        if count in (1, args.at) or count % 100 == 0:
            marks[count] = peak_rss_mib()

    predict_to_directory(str(root / "run" / "checkpoints" / "last.ckpt"), root / "pred", force=True,
                         max_plots=0, progress=False, on_gene=on_gene)
    first, early, last = marks[1], marks[args.at], marks[count]
    print(f"predict over {count} genes, {args.window} bp windows: peak RSS {first:.1f} MiB after gene 1, "
          f"{early:.1f} MiB after gene {args.at}, {last:.1f} MiB after gene {count}: "
          f"+{100 * (last - early) / early:.2f}% from gene {args.at} to {count}")
    print("peak RSS per 100 genes (MiB): " + ", ".join(f"{k}: {v:.1f}" for k, v in sorted(marks.items())))


if __name__ == "__main__":
    main()
