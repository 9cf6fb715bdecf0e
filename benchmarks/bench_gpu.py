"""GPU benchmark of the Seq2Exp engine: the measurements of issue 8 in one run (not a test).

Prints, side by side:
  check     the triton kernels on this device against float64 on the CPU (values and every
            gradient, several segments): correctness first
  machine   the bounds measured in this run: bf16 GEMM rate (N x N matmul) and device memory
            bandwidth (a large copy)
  scan      selective_scan forward and forward+backward per backend (triton, torch, and cuda
            = mamba_ssm if it imports) at 20 kb and 200 kb (d_inner 256, d_state 16, batch 1)
  forward   Seq2Exp (default size; --preset, default soft: the paper's) inference forward, bf16
            autocast, 200 kb, batch 1 and 8; a preset with a kept-share target (learned) first
            gets the generator bias that meets it, as training does (untrained, it keeps ~80%)
  train     one training step: AdamW, bf16 autocast (what Lightning's precision="bf16-mixed"
            does), per-layer activation checkpointing, 200 kb, batch 8; its FLOPs (torch's
            FlopCounterMode: matmuls) and activation bytes (every non-view op output written
            once and read once), the bound max(FLOPs / GEMM rate, bytes / bandwidth), the
            achieved fraction of that bound, and the projected wall time of the paper's recipe
            (50,000 steps of batch 8 at 200 kb)
Every line has the peak device memory of its call (GPU only).

Times are medians of --repeats calls after one warm-up call (which also compiles the Triton
kernels); a call slower than --slow seconds is timed once.

``--device cpu --tiny`` runs every section with tiny shapes on the CPU in about a minute: the
triton backend then runs under Triton's CPU interpreter (TRITON_INTERPRET=1 is set before
triton is imported), and the model uses the CPU kernels. Its numbers check that the script
works; they say nothing about GPU speed.

Run from a checkout: ``PYTHONPATH=. python benchmarks/bench_gpu.py`` (needs torch, numpy and
triton; imports only seq2exp_plugin.nn and seq2exp_plugin.model).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

PAPER_STEPS, PAPER_BATCH, PAPER_WINDOW = 50_000, 8, 200_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   choices=["cuda", "cpu"])
    p.add_argument("--tiny", action="store_true",
                   help="tiny shapes (a check of the script, e.g. on the CPU)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--slow", type=float, default=5.0,
                   help="a warm-up call slower than this (s) is not repeated")
    p.add_argument("--window", type=int,
                   help="window (bp) of the model sections; default 200,000 (tiny: 2,048)")
    p.add_argument("--sections", default="check,machine,scan,forward,train")
    p.add_argument("--preset", default="soft",
                   help="model preset of the forward and train sections (e.g. learned, the "
                        "default of seq2exp train: its predictor runs on the kept positions)")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p


def sizes(tiny: bool) -> dict:
    if tiny:
        # the interpreter runs an associative scan one element at a time: keep tiles tiny
        return dict(gemm_n=512, copy_mib=64, scan_d=8, scan_n=4, scan_lengths=(32, 96),
                    check_d=5, check_length=70,
                    stack=dict(d_model=16, n_layers=2), window=2048, pool_width=200,
                    forward_batches=(1, 2), train_batch=2)
    return dict(gemm_n=8192, copy_mib=2048, scan_d=256, scan_n=16, check_d=64,
                check_length=4000, scan_lengths=(20_000, 200_000), stack={}, window=200_000,
                pool_width=2000, forward_batches=(1, 8), train_batch=8)


# --------------------------------------------------------------------------- timing
def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(fn, device: str, repeats: int, slow: float) -> dict:
    """Median seconds of fn() after a warm-up, and the peak device memory (GiB) of one call
    above what was allocated before it."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    warm = time.perf_counter() - t0
    times = [warm]
    if warm <= slow:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t0)
    peak = None
    if device == "cuda":
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        sync(device)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    return {"seconds": statistics.median(times), "calls": len(times), "peak_gib": peak}


def fmt(result: dict) -> str:
    peak = "" if result.get("peak_gib") is None else f"  peak {result['peak_gib']:7.2f} GiB"
    return f"{result['seconds'] * 1e3:11.2f} ms ({result['calls']} calls){peak}"


# --------------------------------------------------------------------------- machine
def machine_section(args, sz) -> dict:
    dev = args.device
    n = sz["gemm_n"]
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    gemm = measure(lambda: a @ b, dev, max(args.repeats, 5), args.slow)
    numel = sz["copy_mib"] * 2**20 // 4
    src = torch.empty(numel, device=dev, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    copy = measure(lambda: dst.copy_(src), dev, max(args.repeats, 5), args.slow)
    out = {"gemm_bf16_flops": 2 * n**3 / gemm["seconds"],
           "bandwidth_bytes": 2 * numel * 4 / copy["seconds"], "gemm_n": n,
           "copy_bytes": numel * 4}
    print(f"machine: bf16 GEMM {out['gemm_bf16_flops'] / 1e12:8.1f} TFLOP/s ({n} x {n}); "
          f"memory bandwidth {out['bandwidth_bytes'] / 1e9:8.1f} GB/s (copy of "
          f"{numel * 4 / 2**20:.0f} MiB)")
    return out


# --------------------------------------------------------------------------- scan
def scan_backends(device: str) -> list[str]:
    from seq2exp_plugin.nn.scan import available_backends
    names = ["triton", "torch"]
    if device == "cpu":
        names.insert(1, "cpu")
    elif "cuda" in available_backends():
        names.append("cuda")
    return names


def scan_inputs(d: int, n: int, length: int, device: str, seed: int = 0):
    """Mamba-like inputs in the Mamba block's layout (u, delta, z, B, C: transposes of
    channels-last tensors), float32; requires_grad on every tensor."""
    g = torch.Generator().manual_seed(seed)

    def cl(c):  # (1, c, L) view of a contiguous (1, L, c)
        return torch.randn(1, length, c, generator=g).to(device).transpose(1, 2)

    u, z, B, C = cl(d), cl(d), cl(n), cl(n)
    delta = cl(d) * 0.5 - 1.0
    A = -torch.exp(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d, 1)).to(device)
    D = torch.ones(d, device=device)
    bias = torch.full((d,), -2.0, device=device)
    return [t.detach().requires_grad_() for t in (u, delta, A, B, C, D, z, bias)]


def rel_err(x, ref) -> float:
    return ((x.double().cpu() - ref).abs().max() / ref.abs().max()).item()


def check_section(args, sz) -> dict:
    """The triton kernels on this device against float64 on the CPU (sequential reference
    scan, conv1d), forward and every gradient, with the default tiles and several segments:
    the interpreter tests' check, here on the compiled kernels."""
    from seq2exp_plugin.nn import triton_scan
    from seq2exp_plugin.nn.conv import causal_conv_silu
    from seq2exp_plugin.nn.scan import selective_scan
    dev, d, n, length = args.device, sz["check_d"], sz["scan_n"], sz["check_length"]
    errors = {}
    if dev == "cpu":  # the automatic choice is one segment on the CPU: ask for two
        triton_scan.SEGMENTS = 2
    for reverse in (False, True):
        leaves = scan_inputs(d, n, length, "cpu", seed=1)
        exact = [t.detach().double().requires_grad_() for t in leaves]
        here = [t.detach().to(dev).requires_grad_() for t in leaves]
        gy = torch.randn(1, d, length, dtype=torch.float64)
        outs = {}
        for name, ts, backend in (("ref", exact, "reference"), ("triton", here, "triton")):
            u, delta, A, B, C, D, z, bias = ts
            y = selective_scan(u, delta, A, B, C, D=D, z=z, delta_bias=bias,
                               delta_softplus=True, reverse=reverse, backend=backend)
            outs[name] = [y] + list(torch.autograd.grad(y, ts, gy.to(y)))
        names = ("y", "u", "delta", "A", "B", "C", "D", "z", "delta_bias")
        for k, got, ref in zip(names, outs["triton"], outs["ref"]):
            errors[f"scan reverse={reverse} {k}"] = rel_err(got.detach(), ref.detach())
    x = torch.randn(2, length, d, dtype=torch.float64)
    w, b = torch.randn(d, 4, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    for reverse in (False, True):
        exact = [t.clone().requires_grad_() for t in (x, w, b)]
        here = [t.float().to(dev).requires_grad_() for t in (x, w, b)]
        gy = torch.randn(2, length, d, dtype=torch.float64)
        for name, ts, backend in (("ref", exact, "torch"), ("triton", here, "triton")):
            y = causal_conv_silu(*ts, reverse, backend=backend)
            outs[name] = [y] + list(torch.autograd.grad(y, ts, gy.to(y)))
        for k, got, ref in zip(("y", "x", "weight", "bias"), outs["triton"], outs["ref"]):
            errors[f"conv reverse={reverse} {k}"] = rel_err(got.detach(), ref.detach())
    triton_scan.SEGMENTS = None
    worst = max(errors, key=errors.get)
    print(f"check: triton kernels vs float64 (d {d}, d_state {n}, L {length}, "
          f"{triton_scan.CHUNK}-step chunks): worst relative error {errors[worst]:.1e} "
          f"({worst}); {'OK' if errors[worst] <= 1e-5 else 'ABOVE 1e-5'}")
    return errors


def scan_section(args, sz) -> dict:
    from seq2exp_plugin.nn.scan import selective_scan
    dev, d, n = args.device, sz["scan_d"], sz["scan_n"]
    results = {}
    print(f"scan: d_inner {d}, d_state {n}, batch 1, float32 inputs, D, z, delta_bias, softplus")
    for length in sz["scan_lengths"]:
        u, delta, A, B, C, D, z, bias = scan_inputs(d, n, length, dev)
        gy = torch.randn(1, d, length, device=dev)
        for backend in scan_backends(dev):
            def forward(grad=False):
                with torch.set_grad_enabled(grad):
                    return selective_scan(u, delta, A, B, C, D=D, z=z, delta_bias=bias,
                                          delta_softplus=True, backend=backend)

            def forward_backward():
                forward(grad=True).backward(gy)

            fwd = measure(forward, dev, args.repeats, args.slow)
            both = measure(forward_backward, dev, args.repeats, args.slow)
            results[f"{backend}@{length}"] = {"forward": fwd, "forward_backward": both}
            print(f"  {backend:7s} L={length:7d}  forward {fmt(fwd)}   fwd+bwd {fmt(both)}")
    for length in sz["scan_lengths"]:
        t, ref = results.get(f"triton@{length}"), results.get(f"torch@{length}")
        if t and ref:
            print(f"  triton vs torch at L={length}: forward "
                  f"{ref['forward']['seconds'] / t['forward']['seconds']:.1f}x, fwd+bwd "
                  f"{ref['forward_backward']['seconds'] / t['forward_backward']['seconds']:.1f}x")
    return results


# --------------------------------------------------------------------------- model
def build_model(name: str, sz, device: str, checkpoint: bool):
    from seq2exp_plugin.model.config import preset
    from seq2exp_plugin.model.seq2exp import Seq2ExpModel
    stack = dict(sz["stack"], checkpoint_layers=checkpoint)
    config = preset(name, generator=stack, predictor=stack, pool_width=sz["pool_width"])
    return Seq2ExpModel(config).to(device)


def model_batch(batch: int, length: int, n_signals: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    seq = torch.nn.functional.one_hot(torch.randint(0, 4, (batch, length), generator=g), 4)
    seq = seq.transpose(1, 2).float()
    signals = torch.rand(batch, n_signals, length, generator=g) * 3
    features = torch.randn(batch, 9, generator=g)
    target = torch.rand(batch, generator=g) * 4
    return [t.to(device) for t in (seq, signals, features, target)]


@torch.no_grad()
def match_kept_target(model, seq, signals) -> float | None:
    """Shift the generator's alpha bias until its eval mask keeps the preset's ``kept_target``
    (what training reaches first: the shared bias meets the target), so that a packed predictor
    is timed on a trained model's share of positions, not on an untrained one's (about 80%).
    Returns the share kept, or None for presets without a target."""
    target = model.config.mask.kept_target
    if target is None:
        return None
    was_training = model.training
    model.eval()
    bias = model.generator.head.bias
    low, high = -30.0, 30.0
    for _ in range(20):  # bisection (to 6e-5): the kept share grows with the bias
        bias[0] = (low + high) / 2
        kept = float((model.generator(seq, signals).mask > 0.5).float().mean())
        low, high = (low, float(bias[0])) if kept > target else (float(bias[0]), high)
    model.train(was_training)
    return kept


def autocast(device: str):
    return torch.autocast(device, dtype=torch.bfloat16)


def forward_section(args, sz) -> dict:
    dev = args.device
    model = build_model(args.preset, sz, dev, checkpoint=False).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"forward: Seq2Exp-{args.preset} ({n_params / 1e6:.2f} M parameters), bf16 autocast, "
          f"window {sz['window']}")
    results = {"parameters": n_params}
    for batch in sz["forward_batches"]:
        seq, signals, features, _ = model_batch(batch, sz["window"], model.config.n_signals, dev)
        kept = match_kept_target(model, seq, signals)
        if kept is not None:
            print(f"  generator bias set: the mask keeps {kept:.1%} (the preset's target)")

        def run():
            with torch.no_grad(), autocast(dev):
                model(seq, signals, features)

        results[f"batch{batch}"] = {**measure(run, dev, args.repeats, args.slow), "kept_share": kept}
        print(f"  batch {batch:2d} {fmt(results[f'batch{batch}'])}")
    return results


class ActivationBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """Bytes of every op output that is not a view (written once, read at least once)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and not t._is_view():
                self.bytes += 2 * t.numel() * t.element_size()
        return out


def train_section(args, sz, machine: dict | None) -> dict:
    from seq2exp_plugin.model.seq2exp import seq2exp_loss
    from torch.utils.flop_counter import FlopCounterMode
    dev = args.device
    model = build_model(args.preset, sz, dev, checkpoint=True).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    batch = sz["train_batch"]
    seq, signals, features, target = model_batch(batch, sz["window"], model.config.n_signals, dev)
    kept = match_kept_target(model, seq, signals)
    if kept is not None:
        print(f"  generator bias set: the mask keeps {kept:.1%} (the preset's target)")

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(dev):
            out = model(seq, signals, features)
            loss = seq2exp_loss(out, target, kl_weight=model.config.mask.kl_weight)["loss"]
        loss.backward()
        opt.step()

    timing = measure(step, dev, args.repeats, args.slow)
    flops = FlopCounterMode(display=False)
    with flops:
        step()
    counter = ActivationBytes()
    with counter:
        step()
    result = {"step": timing, "flops": flops.get_total_flops(), "bytes": counter.bytes,
              "batch": batch, "window": sz["window"], "kept_share": kept}
    print(f"train: AdamW step, bf16 autocast, layer checkpointing, batch {batch}, window "
          f"{sz['window']}: {fmt(timing)}")
    print(f"  matmul FLOPs {result['flops'] / 1e12:.3f} T, activation bytes "
          f"{result['bytes'] / 1e9:.2f} GB")
    if machine:
        t_flops = result["flops"] / machine["gemm_bf16_flops"]
        t_bytes = result["bytes"] / machine["bandwidth_bytes"]
        result["bound_seconds"] = max(t_flops, t_bytes)
        result["achieved_fraction"] = result["bound_seconds"] / timing["seconds"]
        print(f"  bound: GEMM {t_flops * 1e3:.2f} ms, memory {t_bytes * 1e3:.2f} ms -> "
              f"{result['bound_seconds'] * 1e3:.2f} ms; achieved fraction "
              f"{result['achieved_fraction']:.3f}")
    scale = (PAPER_BATCH * PAPER_WINDOW) / (batch * sz["window"])
    result["paper_recipe_hours"] = PAPER_STEPS * timing["seconds"] * scale / 3600
    note = "" if scale == 1 else f" (scaled x{scale:.0f} from these tiny shapes: not meaningful)"
    print(f"  paper recipe ({PAPER_STEPS} steps x batch {PAPER_BATCH} x {PAPER_WINDOW} bp): "
          f"{result['paper_recipe_hours']:.1f} h{note}")
    return result


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.device == "cpu":
        # the triton backend on CPU tensors: Triton's interpreter, which triton reads at import
        os.environ.setdefault("TRITON_INTERPRET", "1")
    elif not torch.cuda.is_available():
        print("bench_gpu: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - {"check", "machine", "scan", "forward", "train"}
    if unknown:
        print(f"bench_gpu: unknown sections {sorted(unknown)}", file=sys.stderr)
        return 2
    sz = sizes(args.tiny)
    if args.window:
        sz["window"] = args.window
        sz["pool_width"] = min(sz["pool_width"], args.window)
    if args.tiny and args.device == "cpu":
        args.slow = min(args.slow, 0.3)  # a check of the script: one timed call for most
    torch.manual_seed(0)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = "absent"
    print(f"device {name}; torch {torch.__version__}; triton {triton_version}"
          f"{'; tiny shapes' if args.tiny else ''}"
          f"{'; triton kernels run in the interpreter' if args.device == 'cpu' else ''}")
    results = {"device": name, "torch": torch.__version__, "triton": triton_version,
               "tiny": args.tiny, "preset": args.preset}
    started = time.perf_counter()
    if "check" in sections:
        results["check"] = check_section(args, sz)
    if "machine" in sections:
        results["machine"] = machine_section(args, sz)
    if "scan" in sections:
        results["scan"] = scan_section(args, sz)
    if "forward" in sections:
        results["forward"] = forward_section(args, sz)
    if "train" in sections:
        results["train"] = train_section(args, sz, results.get("machine"))
    results["total_seconds"] = time.perf_counter() - started
    print(f"total {results['total_seconds']:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=lambda o: None if math.isnan(o) else o)
    return 0


if __name__ == "__main__":
    sys.exit(main())
