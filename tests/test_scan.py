"""Tests of seq2exp_plugin.nn.scan: every backend against an independent float64 reference.

Relative error is max|x - ref| / max|ref| over a whole tensor (output or gradient).
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from seq2exp_plugin.nn import _build, scan
from seq2exp_plugin.nn.scan import selective_scan

REPO = Path(__file__).resolve().parents[1]
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
TOL = 1e-5

HAVE_KERNEL = _build.load_library() is not None
needs_kernel = pytest.mark.skipif(not HAVE_KERNEL,
                                  reason=f"CPU scan kernel not built: {_build.build_error()}")

OPTIONS = {  # name: (use D, use z, use delta_bias, delta_softplus)
    "all": (True, True, True, True),
    "none": (False, False, False, False),
    "D_bias": (True, False, True, False),
    "z_softplus": (False, True, False, True),
}


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def make_inputs(batch, d, n, L, opts="all", seed=0, dtype=torch.float64, regime="mamba"):
    """Deterministic inputs (float64 master copies). regime 'mamba': Mamba-like step sizes;
    'large': delta up to 10 and A down to -20 in half the channels, tiny steps in the other
    half (so outputs keep a long memory too)."""
    use_D, use_z, use_bias, softplus = OPTIONS[opts]
    g = torch.Generator().manual_seed(seed)
    r = functools.partial(torch.randn, generator=g, dtype=torch.float64)
    u = r(batch, d, L)
    B, C = r(batch, n, L), r(batch, n, L)
    if regime == "mamba":
        delta = r(batch, d, L) * 0.5 + (-1.0 if softplus else 0.3)
        delta = delta if softplus else delta.abs() * 0.3 + 0.01
        A = -torch.rand(d, n, generator=g, dtype=torch.float64) * 4 - 0.05
    else:
        big = torch.rand(batch, d, L, generator=g, dtype=torch.float64) * 10
        small = torch.rand(batch, d, L, generator=g, dtype=torch.float64) * 0.05
        half = (torch.arange(d) < d // 2)[None, :, None]
        delta = torch.where(half, big, small)
        A = -torch.rand(d, n, generator=g, dtype=torch.float64) * 19.5 - 0.5
    D = r(d) if use_D else None
    z = r(batch, d, L) if use_z else None
    bias = (r(d) * 0.2 if softplus else r(d).abs() * 0.1) if use_bias else None  # dt > 0
    out = dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=bias)
    return {k: (None if v is None else v.to(dtype)) for k, v in out.items()}, softplus


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """Same values, unit stride along dim 1 (a view of a contiguous (batch, L, c) tensor)."""
    return t.transpose(1, 2).contiguous().transpose(1, 2)


@contextlib.contextmanager
def torch_threads(n):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run(backend, inputs, softplus, reverse, gy, layout="contiguous", grads=True):
    # The torch and reference backends are many small ops: one thread is faster for them
    # here, and far steadier when other processes share the cores.
    with torch_threads(1 if backend in ("torch", "reference") else torch.get_num_threads()):
        return _run(backend, inputs, softplus, reverse, gy, layout, grads)


def _run(backend, inputs, softplus, reverse, gy, layout, grads):
    ins = {}
    for k, v in inputs.items():
        if v is None:
            ins[k] = None
            continue
        v = v.detach().clone()
        if layout == "channels_last" and v.dim() == 3:
            v = channels_last(v)
        ins[k] = v.requires_grad_(grads)
    y = selective_scan(ins["u"], ins["delta"], ins["A"], ins["B"], ins["C"], D=ins["D"],
                       z=ins["z"], delta_bias=ins["delta_bias"], delta_softplus=softplus,
                       reverse=reverse, backend=backend)
    if grads:
        y.backward(gy.to(y.dtype))
    return y.detach(), {k: (None if v is None else v.grad) for k, v in ins.items()}, ins


@functools.lru_cache(maxsize=None)
def reference(batch, d, n, L, opts, reverse, seed=0, regime="mamba"):
    inputs, softplus = make_inputs(batch, d, n, L, opts, seed, regime=regime)
    gy = torch.randn(batch, d, L, generator=torch.Generator().manual_seed(seed + 1),
                     dtype=torch.float64)
    y, grads, _ = run("reference", inputs, softplus, reverse, gy)
    return inputs, softplus, gy, y, grads


def check_against_reference(backend, batch, d, n, L, opts, reverse, layout="contiguous",
                            regime="mamba", tol=TOL):
    inputs, softplus, gy, y_ref, g_ref = reference(batch, d, n, L, opts, reverse, regime=regime)
    f32 = {k: (None if v is None else v.float()) for k, v in inputs.items()}
    y, grads, _ = run(backend, f32, softplus, reverse, gy, layout)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    errs = {"y": rel_err(y, y_ref)}
    for k in NAMES:
        if g_ref[k] is None:
            assert grads[k] is None
            continue
        assert grads[k] is not None and torch.isfinite(grads[k]).all(), k
        errs[k] = rel_err(grads[k], g_ref[k])
    bad = {k: e for k, e in errs.items() if not e <= tol}
    assert not bad, f"{backend} {opts} reverse={reverse} {layout}: rel. errors {bad}"
    return errs


# --------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("opts", list(OPTIONS))
@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=needs_kernel), "torch"])
def test_backend_matches_reference(backend, opts, reverse, layout):
    # d = 20 is not a multiple of the SIMD width (8 or 16 lanes): full and partial channel
    # vectors; n = 16: the unrolled-state path
    check_against_reference(backend, 2, 20, 16, 300, opts, reverse, layout)


@needs_kernel
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("opts", ["all", "none"])
@pytest.mark.parametrize("n", [5, 8])
def test_cpu_other_state_counts(n, opts, reverse):
    # n = 5: the kernel's generic (runtime d_state) path, n = 8: its second unrolled path;
    # L not a multiple of the checkpoint interval
    check_against_reference("cpu", 3, 33, n, 203, opts, reverse, "channels_last")


@pytest.mark.parametrize("opts", ["all", "D_bias"])
@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=needs_kernel), "torch"])
def test_large_steps_long_sequence(backend, opts):
    # delta up to 10, A down to -20 (decays to exp(-200)) next to tiny steps; L = 2000
    check_against_reference(backend, 2, 32, 16, 2000, opts, False, "channels_last",
                            regime="large")


@needs_kernel
@pytest.mark.parametrize("nthreads", [2, 3])
def test_cpu_thread_partitions(monkeypatch, nthreads):
    # several threads on a small problem: channel groups per batch (partial gB/gC sums)
    monkeypatch.setattr(scan, "_nthreads", lambda *a: nthreads)
    for batch in (1, 2, 3):
        check_against_reference("cpu", batch, 40, 16, 150, "all", batch == 2, "channels_last")


def test_torch_backend_float32_no_overflow_long_sequence():
    # Strong decay (dt * A down to -200 per step) over several segments and sub-chunks:
    # a log-space cumulative sum would overflow exp() to inf here.
    batch, d, n, L = 1, 8, 4, 5000
    g = torch.Generator().manual_seed(3)
    u = torch.randn(batch, d, L, generator=g, dtype=torch.float64)
    B = torch.randn(batch, n, L, generator=g, dtype=torch.float64)
    C = torch.randn(batch, n, L, generator=g, dtype=torch.float64)
    delta = torch.rand(batch, d, L, generator=g, dtype=torch.float64) * 5 + 5
    delta[:, : d // 2] = 0.01  # half the channels remember for hundreds of steps
    A = -torch.rand(d, n, generator=g, dtype=torch.float64) * 10 - 10
    A[: d // 2] = -torch.rand(d // 2, n, generator=g, dtype=torch.float64) * 0.1
    with torch_threads(1):
        y_ref = selective_scan(u, delta, A, B, C, backend="reference")
        y = selective_scan(u.float(), delta.float(), A.float(), B.float(), C.float(),
                           backend="torch")
    assert torch.isfinite(y).all()
    assert rel_err(y, y_ref) <= TOL


# --------------------------------------------------------------------------- reverse and layout
@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=needs_kernel), "torch"])
def test_reverse_equals_flip_scan_flip(backend):
    # L = 2200: two blocks of the torch backend, the partial one first when reversed
    inputs, softplus = make_inputs(2, 24, 16, 2200, "all", seed=5, dtype=torch.float32)
    gy = torch.randn(2, 24, 2200, generator=torch.Generator().manual_seed(6))
    y_rev, g_rev, _ = run(backend, inputs, softplus, True, gy, "channels_last")
    flipped = {k: (None if v is None else (v.flip(-1) if v.dim() == 3 else v))
               for k, v in inputs.items()}
    y_flip, g_flip, _ = run(backend, flipped, softplus, False, gy.flip(-1), "channels_last")
    exact = backend == "cpu"  # same operations in the same order: bitwise equal
    check = torch.equal if exact else (lambda a, b: torch.allclose(a, b, rtol=1e-5, atol=1e-6))
    assert check(y_rev, y_flip.flip(-1))
    for k in NAMES:
        a, b = g_rev[k], g_flip[k]
        if a is None:
            continue
        assert check(a, b.flip(-1) if a.dim() == 3 else b), k


@needs_kernel
def test_cpu_layouts_and_output_strides():
    inputs, softplus = make_inputs(2, 40, 16, 120, "all", seed=7, dtype=torch.float32)
    gy = torch.randn(2, 40, 120, generator=torch.Generator().manual_seed(8))
    results = {}
    for layout in ("channels_last", "contiguous"):
        ins = {k: (channels_last(v) if layout == "channels_last" and v.dim() == 3
                   else v.clone()).requires_grad_() for k, v in inputs.items()}
        y = selective_scan(ins["u"], ins["delta"], ins["A"], ins["B"], ins["C"], D=ins["D"],
                           z=ins["z"], delta_bias=ins["delta_bias"], delta_softplus=softplus,
                           backend="cpu")
        # y is a (batch, d, L) view of a contiguous (batch, L, d) tensor, whatever the input
        assert y.shape == (2, 40, 120) and y.transpose(1, 2).is_contiguous()
        # autograd.grad, not .grad: AccumulateGrad would re-layout gradients of leaves itself
        grads = torch.autograd.grad(y, [ins[k] for k in NAMES], gy)
        for k, g in zip(NAMES, grads):
            assert g.stride() == ins[k].stride(), (layout, k)  # layout of the input
        results[layout] = (y.detach(), grads)
    (y_cl, g_cl), (y_c, g_c) = results["channels_last"], results["contiguous"]
    assert torch.equal(y_cl, y_c)
    for k, a, b in zip(NAMES, g_cl, g_c):
        assert torch.equal(a, b), k


@needs_kernel
def test_cpu_accepts_strided_slices_and_expanded_grad():
    # u and z as slices of one (batch, L, 2d) projection, as in the Mamba block
    g = torch.Generator().manual_seed(9)
    batch, d, n, L = 2, 24, 16, 100
    xz = torch.randn(batch, L, 2 * d, generator=g)
    u, z = xz[..., :d].transpose(1, 2), xz[..., d:].transpose(1, 2)
    delta = torch.rand(batch, L, d, generator=g).transpose(1, 2)
    bc = torch.randn(batch, L, 2 * n, generator=g)
    B, C = bc[..., :n].transpose(1, 2), bc[..., n:].transpose(1, 2)
    A = -torch.rand(d, n, generator=g) - 0.1
    y = selective_scan(u, delta, A, B, C, z=z, backend="cpu")
    y_ref = selective_scan(u.double(), delta.double(), A.double(), B.double(), C.double(),
                           z=z.double(), backend="reference")
    assert rel_err(y, y_ref) <= TOL
    xz.requires_grad_()
    u, z = xz[..., :d].transpose(1, 2), xz[..., d:].transpose(1, 2)
    selective_scan(u, delta, A, B, C, z=z, backend="cpu").sum().backward()  # stride-0 grad
    xz64 = xz.detach().double().requires_grad_()
    selective_scan(xz64[..., :d].transpose(1, 2), delta.double(), A.double(), B.double(),
                   C.double(), z=xz64[..., d:].transpose(1, 2), backend="reference").sum().backward()
    assert rel_err(xz.grad, xz64.grad) <= TOL


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=needs_kernel), "torch"])
def test_empty_sequence(backend):
    inputs, softplus = make_inputs(2, 5, 3, 0, "all", dtype=torch.float32)
    y, grads, _ = run(backend, inputs, softplus, False, torch.zeros(2, 5, 0))
    assert y.shape == (2, 5, 0)
    for k in NAMES:  # zero, or None where autograd saw no use of the input
        assert grads[k] is None or (grads[k].shape == inputs[k].shape and not grads[k].any()), k
    if backend == "cpu":
        assert all(grads[k] is not None for k in NAMES)


# --------------------------------------------------------------------------- float64 kernel
@needs_kernel
@pytest.mark.parametrize("case", [
    dict(batch=2, d=3, n=2, L=13, opts="all", reverse=False),
    dict(batch=2, d=3, n=2, L=13, opts="all", reverse=True),
    dict(batch=1, d=9, n=16, L=11, opts="z_softplus", reverse=False),
    dict(batch=2, d=9, n=16, L=10, opts="D_bias", reverse=True),
])
def test_cpu_gradcheck_float64(monkeypatch, case):
    # small chunks (several per sequence, the last one partial) and two threads
    monkeypatch.setattr(scan, "CK_EVERY", 4)
    monkeypatch.setattr(scan, "_nthreads", lambda *a: 2)
    inputs, softplus = make_inputs(case["batch"], case["d"], case["n"], case["L"], case["opts"],
                                   seed=11)
    names = [k for k in NAMES if inputs[k] is not None]
    tensors = [inputs[k].clone().requires_grad_() for k in names]

    def f(*ts):
        kw = dict(zip(names, ts))
        return selective_scan(kw["u"], kw["delta"], kw["A"], kw["B"], kw["C"], D=kw.get("D"),
                              z=kw.get("z"), delta_bias=kw.get("delta_bias"),
                              delta_softplus=softplus, reverse=case["reverse"], backend="cpu")

    assert torch.autograd.gradcheck(f, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)


@needs_kernel
def test_cpu_float64_forward_precision():
    inputs, softplus, gy, y_ref, g_ref = reference(2, 20, 16, 300, "all", False)
    y, grads, _ = run("cpu", inputs, softplus, False, gy, "channels_last")
    assert y.dtype == torch.float64
    assert rel_err(y, y_ref) <= 1e-12
    for k in NAMES:
        assert rel_err(grads[k], g_ref[k]) <= 1e-12, k


@needs_kernel
def test_kernel_exp_and_softplus_accuracy():
    # The kernel computes exp(x) as 2^(x log2 e): rounding x log2 e costs |x| ulp-ish, the
    # same order as rounding the argument dt * A itself; the polynomial is good to ~1 ulp.
    for dtype, ulp in ((torch.float32, 2 ** -23), (torch.float64, 2 ** -52)):
        x = torch.linspace(-80.0, 10.0, 200_001, dtype=torch.float64).to(dtype)
        got, want = scan.kernel_exp(x).double(), torch.exp(x.double())
        bound = 2.5 * ulp * x.double().abs().clamp(min=1)
        assert ((got - want).abs() / want <= bound).all(), dtype
        x = torch.linspace(-40.0, 40.0, 200_001, dtype=torch.float64).to(dtype)
        got, want = scan.kernel_softplus(x).double(), F.softplus(x.double(), threshold=1000)
        bound = 4 * ulp * x.double().abs().clamp(min=1)
        assert ((got - want).abs() / want <= bound).all(), dtype
    tiny = scan.kernel_exp(torch.tensor([-200.0, -1000.0, float("nan")]))
    assert tiny[0] <= 1e-37 and tiny[1] <= 1e-37 and torch.isnan(tiny[2])


# --------------------------------------------------------------------------- memory
def saved_bytes(backend, L, d=32, n=16):
    inputs, softplus = make_inputs(1, d, n, L, "all", seed=12, dtype=torch.float32)
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run(backend, inputs, softplus, False, torch.ones(1, d, L), "channels_last", grads=False)
        ins = {k: (None if v is None else channels_last(v) if v.dim() == 3 else v)
               for k, v in inputs.items()}
        for v in ins.values():
            if v is not None:
                v.requires_grad_()
        selective_scan(ins["u"], ins["delta"], ins["A"], ins["B"], ins["C"], D=ins["D"],
                       z=ins["z"], delta_bias=ins["delta_bias"], delta_softplus=softplus,
                       backend=backend)
    return total[0]


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=needs_kernel), "torch"])
def test_backward_does_not_store_state_history(backend):
    # What autograd keeps must scale like L * d (inputs, a few per-channel tensors,
    # checkpoints every few steps), not L * d * n like the state history.
    L, d, n = 1024, 64, 64
    history = L * d * n * 4  # float32 state for every step
    assert saved_bytes(backend, L, d, n) < 0.2 * history  # measured: cpu 0.11, torch 0.14


# --------------------------------------------------------------------------- cuda adapter
def test_cuda_adapter_passes_mamba_arguments(monkeypatch):
    inputs, softplus = make_inputs(2, 6, 4, 50, "all", seed=13, dtype=torch.float32)
    inputs["D"] = inputs["D"].double()  # the adapter must hand mamba_ssm float32 D, A, bias
    calls = []

    def fake_selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                               delta_softplus=False, return_last_state=False):
        calls.append(dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias,
                          delta_softplus=delta_softplus, return_last_state=return_last_state))
        assert u.shape == delta.shape == z.shape == (2, 6, 50)
        assert B.shape == C.shape == (2, 4, 50) and A.shape == (6, 4)
        assert A.dtype == D.dtype == delta_bias.dtype == torch.float32
        assert not return_last_state
        return scan._scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, False)

    monkeypatch.setattr(scan, "_load_mamba_scan_fn", lambda: fake_selective_scan_fn)
    gy = torch.randn(2, 6, 50, generator=torch.Generator().manual_seed(14))
    for reverse in (False, True):
        calls.clear()
        y, grads, ins = run("cuda", inputs, softplus, reverse, gy)
        assert len(calls) == 1
        c = calls[0]
        assert c["delta_softplus"] is softplus
        flip = (lambda t: t.flip(-1)) if reverse else (lambda t: t)
        for k in ("u", "delta", "B", "C", "z"):
            assert torch.equal(c[k], flip(inputs[k])), k  # reverse = flip, scan, flip
        for k in ("A", "D", "delta_bias"):
            assert torch.equal(c[k], inputs[k].float()), k
        y_ref, g_ref, _ = run("reference", inputs, softplus, reverse, gy)
        assert rel_err(y, y_ref) <= 1e-6
        for k in NAMES:
            assert rel_err(grads[k], g_ref[k]) <= 1e-6, k


def test_auto_backend_choice(monkeypatch):
    monkeypatch.setattr(scan, "_triton_imports", lambda: False)  # with triton: test_scan_triton
    monkeypatch.setattr(scan, "_load_mamba_scan_fn", lambda: (lambda *a, **k: None))
    assert scan._auto_backend("cuda") == "cuda"
    monkeypatch.setattr(scan, "_load_mamba_scan_fn", lambda: None)
    assert scan._auto_backend("cuda") == "torch"
    assert scan._auto_backend("mps") == "torch"
    if HAVE_KERNEL:
        assert scan._auto_backend("cpu") == "auto-cpu"


MAMBA_GUARD = textwrap.dedent("""
    import sys
    attempts = []
    class Guard:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "mamba_ssm":
                attempts.append(name)
                raise ImportError("mamba_ssm blocked by test")
            return None
    sys.meta_path.insert(0, Guard())
""")


def test_cpu_path_never_imports_mamba_ssm():
    code = MAMBA_GUARD + textwrap.dedent("""
        import torch
        from seq2exp_plugin.nn import scan
        u = torch.randn(1, 8, 64); A = -torch.rand(8, 4)
        B = torch.randn(1, 4, 64); C = torch.randn(1, 4, 64)
        for backend in (None, "cpu", "torch", "reference"):
            if backend == "cpu" and "cpu" not in scan.available_backends():
                continue
            x = u.clone().requires_grad_()
            scan.selective_scan(x, u.abs(), A, B, C, backend=backend).sum().backward()
        assert not attempts, attempts
        assert "mamba_ssm" not in sys.modules
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr


def test_cpu_path_never_imports_mamba_ssm_in_process(monkeypatch):
    attempts = []

    class Guard:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "mamba_ssm":
                attempts.append(name)
            return None

    monkeypatch.setattr(sys, "meta_path", [Guard(), *sys.meta_path])
    monkeypatch.setattr(scan, "_mamba", {"tried": False, "fn": None})
    inputs, softplus = make_inputs(1, 8, 4, 40, "all", dtype=torch.float32)
    run(None, inputs, softplus, False, torch.ones(1, 8, 40))
    scan.available_backends()
    assert not attempts and "mamba_ssm" not in sys.modules


# --------------------------------------------------------------------------- backend selection
def test_backend_override_by_argument_and_env(monkeypatch):
    used = []
    for name in scan.BACKENDS:
        monkeypatch.setitem(scan._IMPLS, name, lambda *a, _n=name: used.append(_n) or a[0])
    u = torch.randn(1, 4, 10)
    args = (u, u, -torch.ones(4, 2), torch.randn(1, 2, 10), torch.randn(1, 2, 10))
    monkeypatch.delenv(scan.ENV_VAR, raising=False)
    selective_scan(*args, backend="reference")
    selective_scan(*args, backend="TORCH")
    monkeypatch.setenv(scan.ENV_VAR, "reference")
    selective_scan(*args)
    selective_scan(*args, backend="torch")  # the argument wins over the environment
    monkeypatch.setenv(scan.ENV_VAR, "cuda")
    selective_scan(*args)
    assert used == ["reference", "torch", "reference", "torch", "cuda"]
    monkeypatch.setenv(scan.ENV_VAR, "auto")
    selective_scan(*args)
    assert used[-1] == ("cpu" if HAVE_KERNEL else "torch")


def test_unknown_backend_is_a_clear_error(monkeypatch):
    u = torch.randn(1, 4, 10)
    args = (u, u, -torch.ones(4, 2), torch.randn(1, 2, 10), torch.randn(1, 2, 10))
    monkeypatch.delenv(scan.ENV_VAR, raising=False)
    with pytest.raises(ValueError, match=r"unknown selective-scan backend 'jax'.*triton, cuda, cpu"):
        selective_scan(*args, backend="jax")
    monkeypatch.setenv(scan.ENV_VAR, "numba")
    with pytest.raises(ValueError, match=f"'numba'.*{scan.ENV_VAR}"):
        selective_scan(*args)


def test_shape_errors_name_the_argument():
    u = torch.randn(2, 4, 10)
    A, B = -torch.ones(4, 3), torch.randn(2, 3, 10)
    with pytest.raises(ValueError, match="delta"):
        selective_scan(u, u[:, :, :9], A, B, B)
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(u, u, -torch.ones(5, 3), B, B)
    with pytest.raises(ValueError, match="C must"):
        selective_scan(u, u, A, B, torch.randn(2, 2, 10))
    with pytest.raises(ValueError, match="delta_bias"):
        selective_scan(u, u, A, B, B, delta_bias=torch.zeros(3))


# --------------------------------------------------------------------------- build and fallback
@pytest.fixture
def fresh_build_state(monkeypatch, tmp_path):
    saved = dict(_build._state)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _build.reset()
    yield tmp_path
    _build._state.clear()
    _build._state.update(saved)


def test_fallback_to_torch_without_compiler(monkeypatch, fresh_build_state):
    monkeypatch.setenv("CC", str(fresh_build_state / "no-such-compiler"))
    monkeypatch.setattr(scan, "_warned_fallback", False)
    monkeypatch.delenv(scan.ENV_VAR, raising=False)
    inputs, softplus = make_inputs(1, 8, 4, 30, "all", dtype=torch.float32)
    gy = torch.ones(1, 8, 30)
    with pytest.warns(RuntimeWarning, match="CPU selective-scan kernel is unavailable"):
        y, _, _ = run(None, inputs, softplus, False, gy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only once per process
        y2, _, _ = run(None, inputs, softplus, False, gy)
    y_ref, _, _ = run("reference", inputs, softplus, False, gy)
    assert torch.allclose(y, y_ref, rtol=1e-5, atol=1e-6) and torch.equal(y, y2)
    assert "cpu" not in scan.available_backends()
    with pytest.raises(RuntimeError, match="no C compiler"):
        run("cpu", inputs, softplus, False, gy)


@needs_kernel
def test_build_is_cached_and_safe_under_concurrency(tmp_path):
    code = textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("b", {str(REPO / 'seq2exp_plugin/nn/_build.py')!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        print(m.build())
    """)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1
    cache = tmp_path / "seq2exp_plugin"
    assert [p.name for p in cache.iterdir()] == [Path(paths.pop()).name]  # no temp leftovers
    # a second build finds the cached library without compiling
    no_compile = code.replace("print(m.build())", textwrap.dedent('''
        def refuse(*a):
            raise RuntimeError("recompiled")
        m._compile = refuse
        print(m.build())'''))
    res = subprocess.run([sys.executable, "-c", no_compile], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == str(next(cache.iterdir())), res.stderr
