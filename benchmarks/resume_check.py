"""Kill-and-resume check of ``seq2exp train``: interrupted runs, rerun, against one uninterrupted run.

Trains a tiny Seq2Exp on ``seq2exp synth --preset tiny`` data for ``--steps`` steps (validation
every ``--val-every``, seed 7) once without interruption, then once per ``--stop`` step: stopped
just before that step (as a kill there would), rerun (resumes from ``last.ckpt``), and compares
the final ``last.ckpt`` weights. Prints, per stop, the step resumed from, how many tensors differ
and the largest difference; then reruns the finished run and reports whether it trained again.

    python benchmarks/resume_check.py                  # 40 steps, val every 10, stops 20 25 30 39
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--val-every", type=int, default=10)
    parser.add_argument("--stop", type=int, nargs="+", default=[20, 25, 30, 39])
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    import pytorch_lightning as pl
    import torch

    from seq2exp_plugin.data.synth import SynthParams, generate
    from seq2exp_plugin.train.config import RunConfig
    from seq2exp_plugin.train.fit import fit

    class Stop(pl.Callback):
        def __init__(self, at: int) -> None:
            self.at = at

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == self.at:
                raise RuntimeError("stopped")  # the process dies here: nothing more is saved

    root = Path(args.workdir or tempfile.mkdtemp(prefix="resume_check."))
    root.mkdir(parents=True, exist_ok=True)
    synth = root / "synth"
    if not synth.is_dir():
        generate(synth, SynthParams.from_preset("tiny", seed=3))
    stack = {"d_model": 8, "n_layers": 1, "d_state": 4}

    def run(name: str) -> RunConfig:
        return RunConfig.from_dict({
            "model": {"generator": stack, "predictor": stack, "pool_width": 200,
                      "mask": {"promoter_keep": 200}, "signal_transform": "log1p"},
            "data": {"genes": str(synth / "genes.h5ad"), "genome": str(synth / "genome.fa"),
                     "signals": {s: str(synth / "synthA" / f"{s}.{'cool' if s == 'hic' else 'bw'}")
                                 for s in ("h3k27ac", "dnase", "hic")},
                     "cell_type": "synthA", "window": 2000, "num_workers": 0},
            "train": {"max_steps": args.steps, "batch_size": 2, "warmup_steps": 4,
                      "val_every_steps": args.val_every, "seed": 7, "progress_bar": False},
            "out_dir": str(root / name),
        })

    def last(name: str) -> dict:
        return torch.load(root / name / "checkpoints" / "last.ckpt", weights_only=True)

    fit(run("whole"), resume=False)
    reference = last("whole")["state_dict"]
    for stop in args.stop:
        name = f"stop{stop}"
        try:
            fit(run(name), resume=False, callbacks=[Stop(stop)])
        except RuntimeError as err:
            assert str(err) == "stopped", err
        resumed_from = last(name)["global_step"]
        fit(run(name))
        weights = last(name)["state_dict"]
        differ = [k for k in reference if not torch.equal(reference[k], weights[k])]
        worst = max((float((reference[k] - weights[k]).abs().max()) for k in differ), default=0.0)
        print(f"stopped before step {stop}: resumed from step {resumed_from}; "
              f"{len(differ)} of {len(reference)} tensors differ (max abs difference {worst:.3g})")
    again = fit(run("whole"))
    print(f"rerun of the finished run: {'no-op' if again is None else 'trained again'}; last.ckpt step "
          f"{last('whole')['global_step']}")


if __name__ == "__main__":
    main()
