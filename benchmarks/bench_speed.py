"""Speed benchmarks for seq2exp_plugin (not a test: it prints what it measured).

Sections, chosen with flags (no flag = all sections):
  --machine  machine rates for a "machine bound": fp32 GEMM FLOP/s (torch) and the exp rate
             of the CPU scan kernel's vectorised exp
  --scan     the selective scan, per backend and length: forward and forward+backward
             throughput (bp/s), peak memory, and the ratios the project bars are about
  --model    the full Seq2Exp-soft model (default size): inference forward and a training
             step (batch 1) per window length, bp/s, peak RSS and the achieved fraction of
             the machine bound (matmul FLOPs / GEMM rate + scan exps / exp rate, both
             measured in the same run)
  --packed   the default preset's packed predictor (it runs on the kept positions only):
             a training step of a batch, its rows one per call, all in one call, and in
             groups up to the CPU's budget of positions (what the model does), side by side
  --bound    the model bound to one locus for gReLU's ISM (Seq2Exp-soft, default size): a
             batch of mutated windows in one no-grad call against the calls of
             CPU_INFERENCE_POSITIONS positions it now makes, side by side: time and peak memory
  --celltypes  one training step (the training module's own loss and backward, default
             preset ``learned``) of a batch of one cell type (its genes, shared head, MSE)
             against a batch of the same number of examples over two cell types (half the
             genes, each with both cell types' signals; hybrid loss), with the shared head and
             with one output per cell type (``model.celltype_head``), side by side: time per
             step and peak memory

To add a section: write ``run_<name>_section(args) -> dict`` and
``print_<name>_section(result)``, register both in SECTIONS, and add its own options in
``build_parser`` (they can be prefixed, e.g. ``--model-length``).

Times are the best of --repeats calls after a warm-up, with the allocator in its steady
state (as in a training loop). Peak memory comes from one more call of its own: the peak
resident set size (RSS) of this process during the call minus its RSS just before (Linux:
VmHWM, reset through /proc/self/clear_refs after a gc and malloc_trim, so that freed heap
pages cannot be silently reused); inputs are allocated before and do not count, outputs
and everything kept for the backward do.

Example:
  python benchmarks/bench_speed.py --threads 2
  python benchmarks/bench_speed.py --scan --lengths 2000,20000 --backends cpu,reference
  python benchmarks/bench_speed.py --model --model-lengths 20000,200000
  python benchmarks/bench_speed.py --packed --packed-lengths 20000,200000 --packed-batch 4
  python benchmarks/bench_speed.py --bound --bound-lengths 200000 --bound-batch 4
  python benchmarks/bench_speed.py --celltypes --celltypes-lengths 10000 --celltypes-batch 4
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

try:  # run from a checkout without installing
    import seq2exp_plugin  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seq2exp_plugin.nn import scan  # noqa: E402


# --------------------------------------------------------------------------- measuring helpers
def _libc():
    try:
        return ctypes.CDLL(None)
    except OSError:  # pragma: no cover
        return None


_LIBC = _libc()


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure_peak(fn):
    """Run fn(); return (result, peak RSS increase in bytes, or None where not measurable)."""
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
    base = _rss_bytes()
    ok = base is not None and _reset_hwm()
    out = fn()
    peak = _hwm_bytes() if ok else None
    return out, (None if peak is None else max(0, peak - base))


def best_time(fn, repeats: int):
    """(best seconds over `repeats` calls of fn, the result of the best call)."""
    best, res = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        el = time.perf_counter() - t0
        if el < best:
            best, res = el, out
        del out
    return best, res


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


# --------------------------------------------------------------------------- machine rates
def measure_gemm_flops(m: int = 200_000, k: int = 128, n: int = 512, threads: int = 2,
                       repeats: int = 5) -> float:
    """fp32 GEMM rate of torch on this machine, FLOP/s (best of `repeats`): an (m x k) @ (k x n)
    product written into a preallocated output, on `threads` threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(m, k, generator=g)
        b = torch.randn(k, n, generator=g)
        c = torch.empty(m, n)
        torch.matmul(a, b, out=c)  # warm-up, faults the output in
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t0)
        return 2.0 * m * k * n / best
    finally:
        torch.set_num_threads(old)


def measure_exp_rate(threads: int = 2, seconds: float = 1.0, repeats: int = 3) -> float:
    """Rate (exps/s, all threads together, best of `repeats`) of the vectorised float32 exp
    used by the CPU scan kernel, on L1-resident data (one multiply + one exp per value)."""
    return max(scan.kernel_exp_rate(threads, seconds) for _ in range(repeats))


def run_machine_section(args) -> dict:
    gemm = measure_gemm_flops(threads=args.threads)
    try:
        exp_rate = measure_exp_rate(threads=args.threads)
        exp_rate_1 = measure_exp_rate(threads=1)
    except RuntimeError as exc:
        exp_rate = exp_rate_1 = None
        print(f"# exp rate not measured: {exc}")
    return {"gemm_flops": gemm, "gemm_shape": "(200000x128) @ (128x512), fp32",
            "exp_rate": exp_rate, "exp_rate_1thread": exp_rate_1, "threads": args.threads}


def print_machine_section(res: dict) -> None:
    print("\n== machine rates ==")
    print(f"torch fp32 GEMM {res['gemm_shape']}, {res['threads']} threads: "
          f"{res['gemm_flops'] / 1e9:8.1f} GFLOP/s")
    if res["exp_rate"] is not None:
        print(f"CPU scan kernel vectorised exp (float32), {res['threads']} threads: "
              f"{res['exp_rate'] / 1e9:8.2f} G exp/s   (1 thread: "
              f"{res['exp_rate_1thread'] / 1e9:.2f} G exp/s)")


# --------------------------------------------------------------------------- scan
def scan_inputs(L: int, d: int = 256, n: int = 16, batch: int = 1, seed: int = 0,
                requires_grad: bool = False) -> dict:
    """Mamba-like scan inputs in the layout the Mamba block produces (channels-last views):
    S4D-real A = -(1..n), dt_bias = softplus^-1 of dt log-uniform in [1e-3, 1e-1], D = 1."""
    g = torch.Generator().manual_seed(seed)

    def cl(c):  # (batch, c, L) view of a contiguous (batch, L, c) tensor
        return torch.randn(batch, L, c, generator=g).transpose(1, 2)

    dt = torch.exp(torch.rand(d, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    ins = {"u": cl(d), "delta": cl(d) * 0.5, "A": -torch.arange(1, n + 1.0).repeat(d, 1),
           "B": cl(n), "C": cl(n), "D": torch.ones(d), "z": cl(d),
           "delta_bias": dt + torch.log(-torch.expm1(-dt))}
    if requires_grad:
        for v in ins.values():
            v.requires_grad_()
    return ins


def _call(backend, ins):
    return scan.selective_scan(ins["u"], ins["delta"], ins["A"], ins["B"], ins["C"], D=ins["D"],
                               z=ins["z"], delta_bias=ins["delta_bias"], delta_softplus=True,
                               backend=backend)


def bench_scan_case(backend: str, L: int, d: int, n: int, batch: int, repeats: int) -> dict:
    """Forward (no grad) and forward+backward times (best of `repeats` after a warm-up call)
    and peak memory (one more call each) for one case."""
    ins = scan_inputs(L, d, n, batch)

    def fwd_call():
        with torch.no_grad():
            _call(backend, ins)

    warm = backend == "cpu" or L <= 50_000  # the long torch/reference runs need none
    if warm:
        fwd_call()  # warm-up: kernel load, allocator
    fwd, _ = best_time(fwd_call, repeats)
    _, peak_fwd = measure_peak(fwd_call)
    ins = scan_inputs(L, d, n, batch, requires_grad=True)
    gy = torch.randn(batch, L, d, generator=torch.Generator().manual_seed(1)).transpose(1, 2)

    def clear():
        for v in ins.values():
            v.grad = None

    def step():
        t0 = time.perf_counter()
        y = _call(backend, ins)
        t1 = time.perf_counter()
        y.backward(gy)
        return t1 - t0, time.perf_counter() - t1

    if warm:
        step()
    fb, f_g, bwd = math.inf, math.inf, math.inf
    for _ in range(repeats):
        clear()
        t0 = time.perf_counter()
        tf, tb = step()
        el = time.perf_counter() - t0
        if el < fb:
            fb, f_g, bwd = el, tf, tb
    clear()  # so that the gradients' memory counts in the peak below
    _, peak_fb = measure_peak(step)
    return {"backend": backend, "L": L, "d": d, "n": n, "batch": batch, "repeats": repeats,
            "threads": torch.get_num_threads(),
            "fwd_s": fwd, "fwd_bwd_s": fb, "fwd_with_grad_s": f_g, "bwd_s": bwd,
            "fwd_bp_per_s": batch * L / fwd, "fwd_bwd_bp_per_s": batch * L / fb,
            "peak_fwd_bytes": peak_fwd, "peak_fwd_bwd_bytes": peak_fb,
            "load_average": load_average()}


def run_scan_section(args) -> dict:
    torch.set_num_threads(args.threads)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "cpu" in backends and "cpu" not in scan.available_backends():
        print(f"# cpu kernel unavailable, skipped: {scan.kernel_info().get('error')}")
        backends.remove("cpu")
    lengths = [int(x) for x in args.lengths.split(",")]
    ref_lengths = [int(x) for x in args.ref_lengths.split(",")]
    rows = []
    for backend in backends:
        for L in (ref_lengths if backend == "reference" else lengths):
            reps = args.repeats if (L <= 20_000 or backend == "cpu") else 1  # long runs: 1
            # The reference and torch backends are sequences of small torch ops (the reference
            # works on batch*d*n values per step, below torch's parallel grain): measure them
            # on 1 thread too; ratios use a backend's faster run.
            thread_counts = [args.threads]
            if backend in ("reference", "torch"):
                thread_counts = sorted({1, args.threads})
            if backend == "reference":
                reps = 1 if L > 2000 else args.repeats
            for th in thread_counts:
                torch.set_num_threads(th)
                row = bench_scan_case(backend, L, args.d, args.n, args.batch, reps)
                rows.append(row)
                print(f"# done {backend:9s} L={L:>7d} threads {th}: fwd {row['fwd_s']:.4f} s, "
                      f"fwd+bwd {row['fwd_bwd_s']:.4f} s (load {load_average()})", flush=True)
            torch.set_num_threads(args.threads)
    by = {}
    for r in rows:  # fastest forward per (backend, L)
        key = (r["backend"], r["L"])
        if key not in by or r["fwd_s"] < by[key]["fwd_s"]:
            by[key] = r
    ratios = {}
    Lr = args.ratio_length
    if ("cpu", Lr) in by and ("reference", Lr) in by:
        ref = by[("reference", Lr)]
        ratios["cpu_fwd_speedup_vs_fp32_reference"] = {
            "L": Lr, "value": ref["fwd_s"] / by[("cpu", Lr)]["fwd_s"], "bar": ">= 100",
            "note": f"reference on its faster thread count ({ref['threads']})"}
    for (b, L), r in by.items():
        if b == "cpu":
            ratios[f"cpu_bwd_over_fwd_L{L}"] = {"L": L, "value": r["bwd_s"] / r["fwd_s"],
                                                "bar": "<= 5"}
    return {"rows": rows, "ratios": ratios, "kernel": scan.kernel_info(),
            "threads": args.threads}


def _fmt_bytes(b) -> str:
    return "n/a" if b is None else f"{b / 2 ** 20:9.1f}"


def print_scan_section(res: dict) -> None:
    print("\n== selective scan (d={d}, n={n}, batch {b}, float32, channels-last inputs, D, z, "
          "delta_bias, softplus; {t} threads unless the thr column says otherwise) ==".format(
              d=res["rows"][0]["d"] if res["rows"] else "?", n=res["rows"][0]["n"] if res["rows"] else "?",
              b=res["rows"][0]["batch"] if res["rows"] else "?", t=res["threads"]))
    print("peak MiB = peak RSS increase during the call (VmHWM), inputs excluded")
    hdr = (f"{'backend':10s} {'thr':>3s} {'L':>8s} {'fwd s':>9s} {'fwd bp/s':>11s} {'peak MiB':>9s} "
           f"{'fwd+bwd s':>10s} {'bwd s':>9s} {'f+b bp/s':>11s} {'peak MiB':>9s} {'bwd/fwd':>8s}")
    print(hdr)
    print("-" * len(hdr))
    name = {"cpu": "cpu-kernel", "torch": "torch", "reference": "ref-fp32"}
    for r in res["rows"]:
        print(f"{name.get(r['backend'], r['backend']):10s} {r['threads']:3d} {r['L']:8d} {r['fwd_s']:9.4f} "
              f"{r['fwd_bp_per_s']:11.4g} {_fmt_bytes(r['peak_fwd_bytes'])} "
              f"{r['fwd_bwd_s']:10.4f} {r['bwd_s']:9.4f} {r['fwd_bwd_bp_per_s']:11.4g} "
              f"{_fmt_bytes(r['peak_fwd_bwd_bytes'])} {r['bwd_s'] / r['fwd_s']:8.2f}")
    print("(bwd s = the backward call alone; bwd/fwd = bwd s over the no-grad forward)")
    for key, v in res["ratios"].items():
        note = f"; {v['note']}" if "note" in v else ""
        print(f"{key}: {v['value']:.1f}x (L={v['L']}, bar {v['bar']}{note})")
    k = res.get("kernel", {})
    if k.get("available"):
        print(f"kernel: {k['lanes_f32']} float32 lanes per vector, compiler {k['compiler']}, "
              f"checkpoint every {k['ck_every']} steps, {k['path']}")


# --------------------------------------------------------------------------- full model
def stack_cost_per_bp(cfg) -> tuple[float, float]:
    """(matmul FLOPs, scan exponentials) per bp of one forward pass of a BiMamba stack.

    Per layer: the tied in/out projections once, then per direction x_proj and dt_proj
    (matmuls) and d_inner * d_state exponentials exp(dt * A) in the scan. Element-wise work
    (conv taps, norms, gating) is left out: the bound is what the matmuls and exps alone cost.
    """
    d, e, n = cfg.d_model, cfg.expand * cfg.d_model, cfg.d_state
    r = cfg.dt_rank or math.ceil(d / 16)
    dirs = 2 if cfg.bidirectional else 1
    flops = 2 * d * 2 * e + 2 * e * d + dirs * (2 * e * (r + 2 * n) + 2 * r * e)
    exps = dirs * e * n
    return cfg.n_layers * flops, cfg.n_layers * exps


def model_cost_per_bp(config) -> tuple[float, float]:
    """(matmul FLOPs, exps) per bp of a Seq2Exp forward: generator and predictor stacks plus
    their per-bp embeddings and the generator's Beta head (the pooled MLP head is per gene)."""
    g_flops, g_exps = stack_cost_per_bp(config.generator)
    p_flops, p_exps = stack_cost_per_bp(config.predictor)
    embed = 2 * 4 * config.generator.d_model + 2 * config.generator.d_model * 2
    embed += 2 * (4 + config.n_signals) * config.predictor.d_model
    rc = 2 if config.generator.rc_equivariant else 1
    rc_p = 2 if config.predictor.rc_equivariant else 1
    return rc * g_flops + rc_p * p_flops + embed, rc * g_exps + rc_p * p_exps


def model_inputs(L: int, config, batch: int = 1, seed: int = 0) -> dict:
    """Random one-hot DNA, positive fold-change-like signals, features and a target."""
    g = torch.Generator().manual_seed(seed)
    seq = torch.nn.functional.one_hot(torch.randint(0, 4, (batch, L), generator=g), 4)
    signals = torch.rand(batch, config.n_signals, L, generator=g) * 3
    return {"seq": seq.float().transpose(1, 2).contiguous(), "signals": signals,
            "features": torch.randn(batch, config.n_features, generator=g),
            "target": torch.rand(batch, generator=g) * 4}


def bench_model_case(L: int, repeats: int, checkpoint_layers: bool, gemm: float,
                     exp_rate: float | None) -> dict:
    from seq2exp_plugin.model.config import Seq2ExpConfig
    from seq2exp_plugin.model.seq2exp import Seq2ExpModel, seq2exp_loss

    config = Seq2ExpConfig()
    config.generator.checkpoint_layers = config.predictor.checkpoint_layers = checkpoint_layers
    torch.manual_seed(0)
    model = Seq2ExpModel(config)
    ins = model_inputs(L, config)

    def forward():
        model.eval()
        with torch.no_grad():
            return model(ins["seq"], ins["signals"], ins["features"]).expression

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step():
        model.train()
        opt.zero_grad(set_to_none=True)
        out = model(ins["seq"], ins["signals"], ins["features"])
        loss = seq2exp_loss(out, ins["target"], config.mask.kl_weight)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.detach()

    flops, exps = model_cost_per_bp(config)
    bound_fwd = L * flops / gemm + (L * exps / exp_rate if exp_rate else 0.0)
    # a training step does at least the forward's matmuls three times (forward, and the two
    # gradient products of the backward) and its exps once (kept, not recomputed)
    bound_train = 3 * L * flops / gemm + (L * exps / exp_rate if exp_rate else 0.0)
    row = {"L": L, "params": sum(p.numel() for p in model.parameters()),
           "checkpoint_layers": checkpoint_layers, "matmul_flops_per_bp": flops,
           "exps_per_bp": exps, "bound_fwd_s": bound_fwd, "bound_train_s": bound_train}
    forward()  # warm-up: kernel load, allocator
    row["fwd_s"], _ = best_time(forward, repeats)
    _, row["fwd_peak_bytes"] = measure_peak(forward)
    row["fwd_rss_bytes"] = _hwm_bytes()
    train_step()
    row["train_s"], _ = best_time(train_step, max(1, repeats - 1))
    _, row["train_peak_bytes"] = measure_peak(train_step)
    row["train_rss_bytes"] = _hwm_bytes()
    row["fwd_bp_per_s"] = L / row["fwd_s"]
    row["train_bp_per_s"] = L / row["train_s"]
    row["fwd_bound_fraction"] = bound_fwd / row["fwd_s"]
    row["train_bound_fraction"] = bound_train / row["train_s"]
    row["load_average"] = load_average()
    return row


def run_model_section(args) -> dict:
    torch.set_num_threads(args.threads)
    machine = run_machine_section(args)
    rows = []
    for L in (int(x) for x in args.model_lengths.split(",")):
        reps = args.repeats if L <= 20_000 else max(1, args.repeats - 1)
        row = bench_model_case(L, reps, args.checkpoint_layers or L > 50_000,
                               machine["gemm_flops"], machine["exp_rate"])
        rows.append(row)
        print(f"# done model L={L}: forward {row['fwd_s']:.2f} s, training step "
              f"{row['train_s']:.2f} s (load {load_average()})", flush=True)
    return {"machine": machine, "rows": rows, "threads": args.threads}


def print_model_section(res: dict) -> None:
    m = res["machine"]
    print("\n== full model: Seq2Exp-soft, default size, batch 1, float32, "
          f"{res['threads']} threads ==")
    print(f"machine rates measured in this run: GEMM {m['gemm_flops'] / 1e9:.1f} GFLOP/s, "
          f"exp {m['exp_rate'] / 1e9 if m['exp_rate'] else float('nan'):.2f} G/s")
    if res["rows"]:
        r = res["rows"][0]
        print(f"{r['params']:,} parameters; per bp: {r['matmul_flops_per_bp'] / 1e6:.2f} MFLOP "
              f"of matmuls and {r['exps_per_bp']:,} scan exps (forward)")
    print("peak RSS = the process's peak resident set during the call (VmHWM, model and "
          "inputs included); +MiB = its increase over the RSS just before")
    hdr = (f"{'L':>8s} {'ckpt':>4s} {'fwd s':>7s} {'fwd bp/s':>9s} {'bound s':>7s} "
           f"{'of bound':>8s} {'RSS GiB':>7s} {'+MiB':>7s} | {'train s':>7s} {'bp/s':>8s} "
           f"{'bound s':>7s} {'of bound':>8s} {'RSS GiB':>7s} {'+MiB':>7s}")
    print(hdr)
    print("-" * len(hdr))
    for r in res["rows"]:
        def gib(b):
            return float("nan") if b is None else b / 2 ** 30

        def mib(b):
            return float("nan") if b is None else b / 2 ** 20
        print(f"{r['L']:8d} {'yes' if r['checkpoint_layers'] else 'no':>4s} {r['fwd_s']:7.2f} "
              f"{r['fwd_bp_per_s']:9.0f} {r['bound_fwd_s']:7.2f} {r['fwd_bound_fraction']:8.0%} "
              f"{gib(r['fwd_rss_bytes']):7.2f} {mib(r['fwd_peak_bytes']):7.0f} | "
              f"{r['train_s']:7.2f} {r['train_bp_per_s']:8.0f} {r['bound_train_s']:7.2f} "
              f"{r['train_bound_fraction']:8.0%} {gib(r['train_rss_bytes']):7.2f} "
              f"{mib(r['train_peak_bytes']):7.0f}")
    print("bars: forward at 200 kb >= 40% of the bound with peak RSS <= 6 GiB; "
          "training step at 200 kb in 16 GiB (ckpt = per-layer activation checkpointing)")


def warm_time_and_peak(fn, repeats: int) -> tuple[float, int | None]:
    """One warm-up call, then the best time of ``repeats`` calls and the peak memory of one."""
    fn()
    seconds, _ = best_time(fn, repeats)
    _, peak = measure_peak(fn)
    return seconds, peak


def bench_packed_case(L: int, batch: int, kept: float, repeats: int) -> dict:
    from seq2exp_plugin.model.config import preset
    from seq2exp_plugin.model.predictor import Seq2ExpPredictor

    config = preset("learned")
    torch.manual_seed(0)
    predictor = Seq2ExpPredictor(config)
    ins = model_inputs(L, config, batch)
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(batch, L, generator=g) < kept).float()
    centre = L // 2
    mask[:, centre - config.mask.promoter_keep // 2:centre + config.mask.promoter_keep // 2] = 1
    mask.requires_grad_(True)

    def train_step():
        predictor.zero_grad(set_to_none=True)
        predictor(ins["seq"], ins["signals"], ins["features"], mask).sum().backward()

    default = Seq2ExpPredictor.cpu_packed_positions
    row = {"L": L, "batch": batch, "kept_per_row": int(mask.detach().sum() / batch),
           "budget": default}
    for name, budget in (("per_row", 0), ("one_call", None), ("grouped", default)):
        predictor.cpu_packed_positions = budget
        row[f"{name}_s"], row[f"{name}_peak_bytes"] = warm_time_and_peak(train_step, repeats)
    row["load_average"] = load_average()
    return row


def over_lengths(args, lengths: str, name: str, case) -> dict:
    """``case(L)`` for every window length of the comma-separated ``lengths``."""
    torch.set_num_threads(args.threads)
    rows = []
    for L in (int(x) for x in lengths.split(",")):
        rows.append(case(L))
        print(f"# done {name} L={L} (load {load_average()})", flush=True)
    return {"rows": rows, "threads": args.threads}


def run_packed_section(args) -> dict:
    return over_lengths(args, args.packed_lengths, "packed", lambda L: bench_packed_case(
        L, args.packed_batch, args.packed_kept,
        args.repeats if L <= 50_000 else max(1, args.repeats - 1)))


def print_packed_section(res: dict) -> None:
    print("\n== packed predictor (preset learned, default size): one training step, float32, "
          f"{res['threads']} threads ==")
    hdr = (f"{'L':>8s} {'batch':>5s} {'kept/row':>8s} | {'per row s':>9s} {'one call s':>10s} "
           f"{'grouped s':>9s} | {'+MiB per row':>12s} {'one call':>8s} {'grouped':>8s}")
    print(hdr)
    print("-" * len(hdr))
    for r in res["rows"]:
        mib = [float("nan") if r[f"{k}_peak_bytes"] is None else r[f"{k}_peak_bytes"] / 2 ** 20
               for k in ("per_row", "one_call", "grouped")]
        print(f"{r['L']:8d} {r['batch']:5d} {r['kept_per_row']:8d} | {r['per_row_s']:9.3f} "
              f"{r['one_call_s']:10.3f} {r['grouped_s']:9.3f} | {mib[0]:12.0f} {mib[1]:8.0f} "
              f"{mib[2]:8.0f}")
    if res["rows"]:
        print(f"grouped = rows together up to {res['rows'][0]['budget']:,} positions per call "
              "(the model's CPU default; on a GPU the whole batch is one call)")


def bench_bound_case(L: int, batch: int, repeats: int) -> dict:
    from seq2exp_plugin.adapters.grelu import BoundSignals, Seq2ExpModel
    from seq2exp_plugin.model import batch as batch_module
    from seq2exp_plugin.model.config import preset

    torch.manual_seed(0)
    model = Seq2ExpModel(**preset("soft").to_dict()).eval()
    ins = model_inputs(L, model.config, batch)
    bound = BoundSignals(model, ins["signals"][0], ins["features"][0])
    default = batch_module.CPU_INFERENCE_POSITIONS

    def forward():
        with torch.no_grad():
            return bound(ins["seq"])

    row = {"L": L, "batch": batch, "positions_per_call": default}
    for name, budget in (("one_call", batch * L), ("split", default)):
        batch_module.CPU_INFERENCE_POSITIONS = budget
        try:
            row[f"{name}_s"], row[f"{name}_peak_bytes"] = warm_time_and_peak(forward, repeats)
        finally:
            batch_module.CPU_INFERENCE_POSITIONS = default
    row["load_average"] = load_average()
    return row


def run_bound_section(args) -> dict:
    return over_lengths(args, args.bound_lengths, "bound", lambda L: bench_bound_case(
        L, args.bound_batch, max(1, args.repeats - 1)))


def print_bound_section(res: dict) -> None:
    print("\n== model bound to a locus (gReLU ISM), Seq2Exp-soft, default size: a no-grad batch, "
          f"float32, {res['threads']} threads ==")
    hdr = f"{'L':>8s} {'batch':>5s} | {'one call s':>10s} {'+MiB':>7s} | {'split s':>8s} {'+MiB':>7s}"
    print(hdr)
    print("-" * len(hdr))
    for r in res["rows"]:
        mib = [float("nan") if r[f"{k}_peak_bytes"] is None else r[f"{k}_peak_bytes"] / 2 ** 20
               for k in ("one_call", "split")]
        print(f"{r['L']:8d} {r['batch']:5d} | {r['one_call_s']:10.2f} {mib[0]:7.0f} | "
              f"{r['split_s']:8.2f} {mib[1]:7.0f}")
    if res["rows"]:
        print(f"split = calls of at most {res['rows'][0]['positions_per_call']:,} positions "
              "(CPU_INFERENCE_POSITIONS, what the bound model does on the CPU)")


def celltypes_batch(L: int, config, examples: int, n_cells: int) -> dict:
    """A training batch of ``examples`` examples: ``examples // n_cells`` genes, each with the
    signals, features and target of every one of ``n_cells`` cell types (consecutive, as the
    training sampler keeps a gene's cell types together)."""
    genes = examples // n_cells
    ins = model_inputs(L, config, examples)
    return {**ins, "seq": ins["seq"][:genes].repeat_interleave(n_cells, 0),
            "gene_id": [f"g{i // n_cells}" for i in range(examples)],
            "cell_type_index": torch.arange(examples) % n_cells}


def bench_celltypes_case(L: int, examples: int, preset_name: str, repeats: int) -> dict:
    from seq2exp_plugin.train.config import RunConfig
    from seq2exp_plugin.train.module import Seq2ExpLightning

    settings = (("one_cell_type", ["A"], "mse", False), ("two_shared", ["A", "B"], "hybrid", False),
                ("two_per_celltype", ["A", "B"], "hybrid", True))
    steps, kept = {}, {}
    for name, cells, loss, head in settings:
        run = RunConfig.from_dict({"preset": preset_name, "model": {"celltype_head": head},
                                   "data": {"cell_types": cells} if len(cells) > 1 else {"cell_type": cells[0]},
                                   "train": {"loss": loss}})
        torch.manual_seed(0)
        module = Seq2ExpLightning.from_run_config(run).train()
        batch = celltypes_batch(L, module.net.config, examples, len(cells))
        steps[name] = _training_step(module, batch)
        with torch.no_grad():  # what a packed predictor's cost follows: the positions kept
            torch.manual_seed(1)
            mask = module.step(batch)["mask"]
        kept[name] = None if mask is None else int((mask > 0.5).sum()) // examples
    row = {"L": L, "examples": examples, "preset": preset_name,
           **{f"{name}_kept": n for name, n in kept.items()}}
    for step in steps.values():  # warm-up
        step()
    # rounds over the settings, so that a change of load on shared cores reaches all of them
    for name in steps:
        row[f"{name}_s"] = math.inf
    for _ in range(repeats):
        for name, step in steps.items():
            row[f"{name}_s"] = min(row[f"{name}_s"], best_time(step, 1)[0])
    for name, step in steps.items():
        row[f"{name}_peak_bytes"] = measure_peak(step)[1]
    row["load_average"] = load_average()
    return row


def _training_step(module, batch: dict):
    """One training step of the training module on ``batch``: its loss, then the backward."""
    def step():
        torch.manual_seed(1)  # the same mask draw at every call
        module.zero_grad(set_to_none=True)
        module.step(batch)["loss"].backward()
    return step


def run_celltypes_section(args) -> dict:
    return over_lengths(args, args.celltypes_lengths, "celltypes", lambda L: bench_celltypes_case(
        L, args.celltypes_batch, args.celltypes_preset, args.repeats))


def print_celltypes_section(res: dict) -> None:
    rows = res["rows"]
    preset_name = rows[0]["preset"] if rows else "?"
    print(f"\n== several cell types: one training step (preset {preset_name}, default size, float32, "
          f"{res['threads']} threads), the same number of examples ==")
    names = (("one_cell_type", "1 cell type"), ("two_shared", "2, shared"), ("two_per_celltype", "2, per-cell"))
    hdr = f"{'L':>8s} {'examples':>8s} | " + " | ".join(f"{label:>12s} s {'+MiB':>6s}" for _, label in names)
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        cells = []
        for key, _ in names:
            peak = r[f"{key}_peak_bytes"]
            cells.append(f"{r[f'{key}_s']:14.3f} {float('nan') if peak is None else peak / 2 ** 20:6.0f}")
        print(f"{r['L']:8d} {r['examples']:8d} | " + " | ".join(cells))
        print(f"{'':17s}   kept positions per example: "
              + ", ".join(str(r[f"{key}_kept"]) for key, _ in names))
    print("1 cell type: as many genes as examples, shared head, MSE; 2: half the genes x 2 cell "
          "types, hybrid loss (w = 1), shared head or one output per cell type")


SECTIONS = {
    "machine": (run_machine_section, print_machine_section),
    "scan": (run_scan_section, print_scan_section),
    "model": (run_model_section, print_model_section),
    "packed": (run_packed_section, print_packed_section),
    "bound": (run_bound_section, print_bound_section),
    "celltypes": (run_celltypes_section, print_celltypes_section),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--machine", action="store_true", help="machine rates (GEMM, exp)")
    p.add_argument("--scan", action="store_true", help="selective-scan backends")
    p.add_argument("--threads", type=int, default=2, help="torch / kernel threads (default 2)")
    p.add_argument("--json", type=Path, help="also write the results here")
    g = p.add_argument_group("scan")
    g.add_argument("--backends", default="cpu,torch,reference")
    g.add_argument("--lengths", default="2000,20000,200000", help="L for cpu and torch")
    g.add_argument("--ref-lengths", default="2000,20000", help="L for the fp32 reference")
    g.add_argument("--ratio-length", type=int, default=20000,
                   help="L of the cpu-vs-reference forward speed ratio")
    g.add_argument("--d", type=int, default=256, help="channels (Mamba d_inner)")
    g.add_argument("--n", type=int, default=16, help="states (d_state)")
    g.add_argument("--batch", type=int, default=1)
    g.add_argument("--repeats", type=int, default=3, help="best of this many (fewer for long runs)")
    g = p.add_argument_group("model")
    g.add_argument("--model", action="store_true", help="the full Seq2Exp-soft model")
    g.add_argument("--model-lengths", default="20000,200000", help="window lengths (bp)")
    g.add_argument("--checkpoint-layers", action="store_true",
                   help="activation checkpointing at every length (always on above 50 kb)")
    g = p.add_argument_group("packed")
    g.add_argument("--packed", action="store_true", help="the default preset's packed predictor")
    g.add_argument("--packed-lengths", default="20000,50000,200000", help="window lengths (bp)")
    g.add_argument("--packed-batch", type=int, default=8, help="genes per batch")
    g.add_argument("--packed-kept", type=float, default=0.08,
                   help="share of each window kept besides the promoter")
    g = p.add_argument_group("bound")
    g.add_argument("--bound", action="store_true", help="the locus-bound model of gReLU's ISM")
    g.add_argument("--bound-lengths", default="20000,200000", help="window lengths (bp)")
    g.add_argument("--bound-batch", type=int, default=4, help="mutated windows per batch")
    g = p.add_argument_group("celltypes")
    g.add_argument("--celltypes", action="store_true",
                   help="a batch of two cell types against one of one, the same number of examples")
    g.add_argument("--celltypes-lengths", default="10000", help="window lengths (bp)")
    g.add_argument("--celltypes-batch", type=int, default=4, help="examples per batch (even)")
    g.add_argument("--celltypes-preset", default="learned", help="model preset")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    chosen = [name for name in SECTIONS if getattr(args, name, False)] or list(SECTIONS)
    print(f"# seq2exp_plugin speed benchmark: torch {torch.__version__}, python "
          f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"threads {args.threads}, load average {load_average()}")
    results = {"sections": {}, "argv": sys.argv if argv is None else argv}
    for name in chosen:
        run, show = SECTIONS[name]
        res = run(args)
        results["sections"][name] = res
        show(res)
    print(f"\n# load average at the end: {load_average()} "
          "(other processes on these cores slow every number above)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
