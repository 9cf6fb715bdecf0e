#!/usr/bin/env python
"""Rebuild the Seq2Exp/Demo Kipoi entry: synthetic data, small weights, the test expectation.

    python model_zoo/Seq2Exp/Demo/build_demo.py

Runtime: dominated by 100 CPU training steps (about 7.5 CPU-minutes; 15 min wall measured on a
2-core machine shared with other jobs, a few minutes when idle).

1. ``seq2exp synth`` (fixed seed, one cell type, the Demo row's window of ../models.tsv) writes
   ``Demo/data/`` (genome, gene table, bigWigs, cooler, blacklist, ground truth; about 1 MB);
   the provenance paths inside ``genes.h5ad`` are made relative to that folder.
2. ``Demo/train.yaml`` is written (a small model of the ``learned`` preset; paths relative to it) and
   ``seq2exp train`` runs it for a short CPU run in a temporary folder.
3. Its ``best.ckpt`` (lowest validation MSE) becomes ``Demo/best.ckpt``, without absolute paths:
   the data paths relative to ``Demo/``, no run folder, no training state (loops, callbacks,
   optimizer), so the entry works from any copy of the repository.
4. ``kipoi test Seq2Exp/Demo --source dir -o ...`` (from model_zoo/) writes the inputs and
   predictions of the dataloader's example genes to ``Demo/test_expect.h5``, the entry's
   ``test.expect``; a final ``kipoi test Seq2Exp/Demo --source dir`` checks the entry against it.

Everything runs in subprocesses of the current Python (the ``seq2exp`` and ``kipoi`` command
lines as users run them). Outputs are replaced only once each step has succeeded.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

DEMO = Path(__file__).resolve().parent
GROUP = DEMO.parent
ZOO = GROUP.parent

SEED = 2025
N_GENES = 48
#: Small Seq2Exp of the project's default preset ``learned``: 2-layer bidirectional Mamba stacks
#: of width 16 (about 17k parameters), without the promoter-ridge path the preset gained after
#: this checkpoint was built (``promoter_linear``; the bundled weights have none).
MODEL = {
    "generator": {"d_model": 16, "n_layers": 2, "d_state": 8},
    "predictor": {"d_model": 16, "n_layers": 2, "d_state": 8},
    "pool_width": 1000,
    "head_hidden": 32,
    "mask": {"promoter_keep": 500, "kept_target": 0.06},
    "signal_transform": "log1p",
    "promoter_linear": None,
}
TRAIN = {
    "max_steps": 100,
    "batch_size": 4,
    "lr": 0.002,
    "warmup_steps": 16,
    "warmup_start_lr": 0.0001,
    "min_lr": 0.0002,
    "val_every_steps": 20,
    "seed": SEED,
    "progress_bar": False,
}


def demo_row() -> dict[str, str]:
    with open(GROUP / "models.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["model"] == "Demo":
                return row
    raise SystemExit(f"{GROUP / 'models.tsv'}: no Demo row")


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, check=True)


def relative(value, folder: Path):
    """``value`` (nested dicts, lists) with every path under ``folder`` made relative to it."""
    prefix = str(folder.resolve()) + os.sep
    if isinstance(value, dict):
        return {k: relative(v, folder) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(relative(v, folder) for v in value)
    if isinstance(value, str) and value.startswith(prefix):
        return value[len(prefix):]
    return value


def absolute_paths(value) -> list[str]:
    """The strings in ``value`` (nested dicts, lists; keys too) that are absolute paths."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in absolute_paths(k) + absolute_paths(v)]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in absolute_paths(v)]
    return [value] if isinstance(value, str) and os.path.isabs(value) else []


def relative_provenance(table: Path) -> None:
    """Rewrite the absolute paths that ``seq2exp synth`` records in the gene table's
    ``uns["seq2exp"]`` as paths relative to the table's folder (the repository stays portable)."""
    import anndata

    from seq2exp_plugin.data.genes import write_gene_table

    adata = anndata.read_h5ad(table)
    adata.uns["seq2exp"] = relative(dict(adata.uns.get("seq2exp", {})), table.parent)
    write_gene_table(adata, table)


#: What inference reads from a checkpoint (Lightning's loop, callback and optimizer states hold
#: the training folder's paths and serve only a resumed run).
PORTABLE_KEYS = ("epoch", "global_step", "pytorch-lightning_version", "state_dict", "hparams_name",
                 "hyper_parameters", "data_params", "performance")


def portable_checkpoint(trained: Path, bundled: Path) -> None:
    """Write ``trained`` as the bundled checkpoint: its stored data paths relative to the
    checkpoint's folder (``load_run`` and the Kipoi dataloader read them from there), no run
    folder, and no other path of the machine that built it."""
    import torch

    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    kept = {k: checkpoint[k] for k in PORTABLE_KEYS if k in checkpoint}
    run = kept["hyper_parameters"]["train_params"]["seq2exp"]
    run["data"] = relative(run["data"], bundled.parent)
    run["out_dir"] = "."
    left = absolute_paths(kept)
    if left:
        raise SystemExit(f"{trained}: absolute paths left in the checkpoint: {left[:3]}")
    tmp = bundled.with_name(f".{bundled.name}.tmp")
    torch.save(kept, tmp)
    os.replace(tmp, bundled)


def write_train_config(window: int, cell_type: str) -> Path:
    config = {
        "variant": "seq2exp",
        "preset": "learned",
        "model": MODEL,
        "data": {
            "genes": "data/genes.h5ad",
            "genome": "data/genome.fa",
            "signals": {"h3k27ac": f"data/{cell_type}/h3k27ac.bw", "dnase": f"data/{cell_type}/dnase.bw",
                        "hic": f"data/{cell_type}/hic.cool"},
            "cell_type": cell_type,
            "window": window,
            "blacklist": "data/blacklist.bed",
            "num_workers": 0,
        },
        "train": TRAIN,
        "out_dir": "~/seq2exp-runs/Demo",  # build_demo.py trains in a temporary folder instead
        "scaling": "auto",
    }
    path = DEMO / "train.yaml"
    header = ("# Seq2Exp/Demo training configuration, written by build_demo.py (paths relative to this\n"
              "# file). Rerun: python model_zoo/Seq2Exp/Demo/build_demo.py\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + yaml.safe_dump(config, sort_keys=False))
    os.replace(tmp, path)
    return path


def step_overrides(steps: int) -> list[str]:
    """``--set`` entries for a run of ``steps`` steps (warm-up and validation scaled down)."""
    if steps == TRAIN["max_steps"]:
        return []
    if steps < 1:
        raise SystemExit("--steps must be >= 1")
    return [f"train.max_steps={steps}", f"train.warmup_steps={min(TRAIN['warmup_steps'], steps // 10)}",
            f"train.val_every_steps={min(TRAIN['val_every_steps'], steps)}"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=TRAIN["max_steps"], help="training steps")
    parser.add_argument("--keep-run", default=None, help="copy the training folder here")
    args = parser.parse_args(argv)

    row = demo_row()
    window, cell_type = int(row["window"]), row["cell_type"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    timings = {}
    t0 = time.perf_counter()

    # 1. data
    run([sys.executable, "-m", "seq2exp_plugin.cli", "synth", "--out", DEMO / "data", "--seed", SEED,
         "--genes", N_GENES, "--window", window, "--cell-types", cell_type, "--force"], env=env)
    relative_provenance(DEMO / "data" / "genes.h5ad")
    timings["data"] = time.perf_counter() - t0

    # 2-3. weights
    t1 = time.perf_counter()
    config = write_train_config(window, cell_type)
    with tempfile.TemporaryDirectory(prefix="seq2exp-demo-") as tmp:
        out = Path(tmp) / "run"
        run([sys.executable, "-m", "seq2exp_plugin.cli", "train", config, "--restart",
             "--set", f"out_dir={out}", *step_overrides(args.steps)], env=env)
        best = out / "checkpoints" / "best.ckpt"
        if not best.is_file():
            raise SystemExit(f"training wrote no {best}")
        portable_checkpoint(best, DEMO / "best.ckpt")
        if args.keep_run:
            shutil.copytree(out, args.keep_run, dirs_exist_ok=True)
    timings["train"] = time.perf_counter() - t1

    # 4. test expectation, then the test itself (kipoi runs from model_zoo/, --source dir)
    t2 = time.perf_counter()
    exe = shutil.which("kipoi", path=os.path.dirname(sys.executable))
    kipoi = [exe] if exe else [sys.executable, "-c", "from kipoi.__main__ import main; main()"]
    with tempfile.TemporaryDirectory(prefix="seq2exp-demo-") as tmp:
        expect = Path(tmp) / "test_expect.h5"
        run([*kipoi, "test", "Seq2Exp/Demo", "--source", "dir", "-o", expect], cwd=ZOO, env=env)
        shutil.copyfile(expect, DEMO / ".test_expect.h5.tmp")
        os.replace(DEMO / ".test_expect.h5.tmp", DEMO / "test_expect.h5")
    run([*kipoi, "test", "Seq2Exp/Demo", "--source", "dir"], cwd=ZOO, env=env)
    timings["kipoi test"] = time.perf_counter() - t2

    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    print("build_demo: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
          + f"; total {time.perf_counter() - t0:.0f} s; Demo/ holds {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
