"""CPU inference speed under three settings of glibc's allocator (not a test: it prints what it
measured).

Every tensor of a 200 kb window is hundreds of MB. glibc's malloc serves blocks that large by
mmap and gives them back by munmap when freed, so each one is faulted in, page by page and
zeroed, every time it is allocated again: at 200 kb that is most of the forward's time. Two
environment settings, read when the process starts, change this without touching the code:

  default      as the process starts
  hugepages    GLIBC_TUNABLES=glibc.malloc.hugetlb=1: mmapped blocks use transparent huge pages
               (512 times fewer faults; memory is still given back)
  heap         MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<8 GiB>: large blocks come from the heap
               and stay there for reuse (no faults after the first call; the process keeps
               its peak memory)

Each setting runs in a fresh child process of this script (one after the other, same inputs):
the best of --repeats calls of the model's inference forward after one warm-up call, and the
process's peak resident set (VmHWM).

Example:
  python benchmarks/bench_allocator.py --length 200000 --batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {
    "default": {},
    "hugepages": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    "heap": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(8 << 30)},
}
_CLEARED = ("GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def measure(args) -> dict:
    """In this process: the model's inference forward, best of ``args.repeats``, and VmHWM."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from seq2exp_plugin.model.config import preset
    from seq2exp_plugin.model.seq2exp import Seq2ExpModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = preset(args.preset)
    model = Seq2ExpModel(config).eval()
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, args.length)
    seq = torch.nn.functional.one_hot(torch.randint(0, 4, shape, generator=g), 4)
    seq = seq.float().transpose(1, 2).contiguous()
    signals = torch.rand(args.batch, config.n_signals, args.length, generator=g) * 3
    features = torch.randn(args.batch, config.n_features, generator=g)
    times = []
    with torch.no_grad():
        for _ in range(args.repeats + 1):  # the first call warms up
            start = time.perf_counter()
            model(seq, signals, features)
            times.append(time.perf_counter() - start)
    status = Path("/proc/self/status").read_text()
    hwm_kib = int(status.split("VmHWM:")[1].split()[0])
    return {"forward_s": min(times[1:]), "peak_rss_gib": hwm_kib / 2 ** 20,
            "environment": {k: os.environ[k] for k in _CLEARED if k in os.environ}}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--length", type=int, default=200_000, help="window (bp)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--preset", default="soft",
                   help="model preset (default soft: the paper's, whose cost does not depend on "
                        "the mask; an untrained learned model keeps nearly every position)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--settings", default=",".join(SETTINGS), help="which settings, in this order")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return {}
    forwarded = ["--length", str(args.length), "--batch", str(args.batch), "--preset", args.preset,
                 "--threads", str(args.threads), "--repeats", str(args.repeats)]
    rows = {}
    for name in args.settings.split(","):
        env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
        env.update(SETTINGS[name])
        out = subprocess.run([sys.executable, __file__, "--child", *forwarded], env=env,
                             check=True, capture_output=True, text=True).stdout
        rows[name] = json.loads(out.strip().splitlines()[-1])
        print(f"# done {name}: {rows[name]['forward_s']:.2f} s", flush=True)
    base = rows.get("default", next(iter(rows.values())))["forward_s"]
    print(f"\nSeq2Exp ({args.preset}) inference forward, {args.length:,} bp x batch {args.batch}, "
          f"float32, {args.threads} threads; best of {args.repeats} after a warm-up")
    print(f"{'setting':>10s} {'forward s':>9s} {'speed-up':>8s} {'peak RSS GiB':>12s}")
    for name, row in rows.items():
        print(f"{name:>10s} {row['forward_s']:9.2f} {base / row['forward_s']:8.2f} "
              f"{row['peak_rss_gib']:12.2f}")
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
