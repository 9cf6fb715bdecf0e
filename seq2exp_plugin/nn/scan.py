"""The selective scan of Mamba-1, with interchangeable backends.

(Over 500 lines on purpose: the one reference recurrence, its custom backward and the dispatch to
every backend stay together, so that each backend is checked against the same definition.)

One public function, :func:`selective_scan`, with the argument conventions of
``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``::

    u, delta, z: (batch, d, L)      A: (d, n)      B, C: (batch, n, L)      D, delta_bias: (d,)

For each batch b, channel d, state n and step t (t = L-1 .. 0 when ``reverse``)::

    dt = delta[b, d, t] + delta_bias[d];   dt = softplus(dt) if delta_softplus
    h[n] = exp(dt * A[d, n]) * h[n] + dt * B[b, n, t] * u[b, d, t]
    y[b, d, t] = sum_n C[b, n, t] * h[n] + D[d] * u[b, d, t];   y *= silu(z[b, d, t]) if z given

``reverse=True`` equals flip(L) -> scan -> flip(L). Gradients flow to every tensor argument.

Backends (``backend=`` argument, else the ``SEQ2EXP_SCAN_BACKEND`` environment variable, else
automatic):

* ``"triton"``: this package's Triton kernels (``triton_scan.py``, forward and backward,
  chunked parallel scan, reverse without flipped copies; inputs float32/bfloat16/float16,
  states and sums float32). Automatic for CUDA tensors when triton imports; CPU tensors only
  under Triton's interpreter (``TRITON_INTERPRET=1``, used by the tests).
* ``"cuda"``: mamba_ssm's CUDA kernel (imported lazily, only here; reverse by flipping).
  Automatic for CUDA tensors when triton does not import but mamba_ssm does.
* ``"cpu"``: this package's C kernel (``_cpu_scan.c``, forward and backward), compiled at first
  use and cached (see ``_build.py``). Automatic for CPU tensors; if it cannot be built, the
  automatic choice falls back to ``"torch"`` with a one-time warning. Fastest with the
  channels-last layout the Mamba block produces (u, delta, z: ``.transpose(1, 2)`` views of
  contiguous (batch, L, d); B, C of (batch, L, n)); other layouts are copied. Returns y as a
  (batch, d, L) view of a contiguous (batch, L, d) tensor, and gradients in their inputs'
  layouts. The backward keeps the state every ``CK_EVERY`` steps (not the whole history).
* ``"torch"``: a pure-PyTorch two-level chunked scan, stable in float32 (cumulative products
  of decays <= 1, no log-space cumsums), any device; autograd through it with memory
  bounded by checkpointing blocks of ``TORCH_BLOCK`` steps.

Mixed or low-precision inputs are computed in float32 (float64 if any input is float64) and
y is returned in u's dtype; the cuda backend leaves dtypes to mamba_ssm; the triton backend
reads float32/bfloat16/float16 as given and computes in float32 (float64 too).
* ``"reference"``: a sequential loop over t (vectorised over batch, d, n) in the dtype it is
  given: the independent reference for tests (float64) and benchmarks.
"""

from __future__ import annotations

import ctypes
import math
import os
import time
import warnings

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as _checkpoint

from . import _build

__all__ = ["selective_scan", "available_backends", "BACKENDS", "ENV_VAR", "kernel_exp",
           "kernel_softplus", "kernel_exp_rate", "kernel_info"]

BACKENDS = ("triton", "cuda", "cpu", "torch", "reference")
ENV_VAR = "SEQ2EXP_SCAN_BACKEND"

CK_EVERY = 32          # CPU kernel: state checkpoint interval (steps) kept for the backward
MAX_STATES = 64        # CPU kernel: largest d_state it handles
SMALL_WORK = 1 << 17   # CPU kernel: below batch*d*L*n, run on one thread
TORCH_BLOCK = 2048     # torch backend: steps per checkpointed block (bounds autograd memory)
TORCH_SEGMENT = 128    # torch backend: steps per segment (small tensors stay in cache)
TORCH_SUBCHUNK = 8     # torch backend: steps per sub-chunk inside a segment

_mamba = {"tried": False, "fn": None}
_triton = {"tried": False, "ok": False}
_warned_fallback = False


# --------------------------------------------------------------------------- public API
def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   reverse=False, backend=None):
    """Mamba-1's selective scan, on the backend chosen for these tensors (module docstring).

    Args:
        u: inputs ``(batch, d, L)``.
        delta: step sizes before ``delta_bias`` and softplus, ``(batch, d, L)``.
        A: state decay rates ``(d, n)`` (negative).
        B, C: input and output projections of the state, ``(batch, n, L)``.
        D: skip connection ``(d,)``; None: none.
        z: gate ``(batch, d, L)``, the output multiplied by ``silu(z)``; None: no gate.
        delta_bias: added to ``delta`` ``(d,)``; None: none.
        delta_softplus: apply softplus to the step sizes.
        reverse: scan from the last position to the first (no flipped copies).
        backend: "triton", "cuda", "cpu", "torch" or "reference"; None: ``SEQ2EXP_SCAN_BACKEND``
            or automatic.

    Returns:
        y ``(batch, d, L)`` in u's dtype.
    """
    _check_args(u, delta, A, B, C, D, z, delta_bias)
    name = _resolve_backend(backend, u.device)
    if name == "auto-cpu":
        name = "cpu" if A.shape[1] <= MAX_STATES else "torch"
    return _IMPLS[name](u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), bool(reverse))


def available_backends() -> list[str]:
    """The backends usable in this process (mamba_ssm is never imported without a CUDA device).

    Returns:
        Backend names, in the order the automatic choice prefers them.
    """
    out = []
    if torch.cuda.is_available() and _triton_imports():
        out.append("triton")
    if torch.cuda.is_available() and _load_mamba_scan_fn() is not None:
        out.append("cuda")
    if _build.load_library() is not None:
        out.append("cpu")
    out += ["torch", "reference"]
    return out


# --------------------------------------------------------------------------- dispatch
def _resolve_backend(backend, device) -> str:
    source = "backend argument"
    name = backend
    if name is None:
        name = os.environ.get(ENV_VAR) or None
        source = f"environment variable {ENV_VAR}"
    if name is not None:
        key = str(name).strip().lower()
        if key == "auto":
            name = None
        elif key not in BACKENDS:
            raise ValueError(f"unknown selective-scan backend {name!r} (from the {source}); "
                             f"choose one of {', '.join(BACKENDS)} or 'auto'")
        else:
            return key
    return _auto_backend(device.type)


def _auto_backend(device_type: str) -> str:
    if device_type == "cuda":
        if _triton_imports():
            return "triton"
        return "cuda" if _load_mamba_scan_fn() is not None else "torch"
    if device_type == "cpu":
        if _build.load_library() is not None:
            return "auto-cpu"
        _warn_fallback()
        return "torch"
    return "torch"


def _warn_fallback() -> None:
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn("seq2exp_plugin: the CPU selective-scan kernel is unavailable "
                      f"({_build.build_error()}); using the slower pure-PyTorch scan instead",
                      RuntimeWarning, stacklevel=4)


def _triton_imports() -> bool:
    """Whether triton imports (tried once; the kernels module itself is imported on use)."""
    if not _triton["tried"]:
        _triton["tried"] = True
        try:
            import triton  # noqa: F401
            _triton["ok"] = True
        except Exception:  # ImportError, or a broken install
            _triton["ok"] = False
    return _triton["ok"]


def _load_mamba_scan_fn():
    """mamba_ssm's selective_scan_fn, imported on first call; None if it does not import."""
    if not _mamba["tried"]:
        _mamba["tried"] = True
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        except Exception:  # ImportError, or its CUDA extension failing to load
            selective_scan_fn = None
        _mamba["fn"] = selective_scan_fn
    return _mamba["fn"]


def _check_args(u, delta, A, B, C, D, z, delta_bias) -> None:
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"selective_scan: {name} must be a tensor, got {type(t).__name__}")
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, d, L), got shape {tuple(u.shape)}")
    batch, d, L = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"selective_scan: A must be (d={d}, n), got shape {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("selective_scan: complex A is not supported (Mamba-1 real A only)")
    n = A.shape[1]
    expect = {"delta": (delta, (batch, d, L)), "B": (B, (batch, n, L)), "C": (C, (batch, n, L)),
              "z": (z, (batch, d, L)), "D": (D, (d,)), "delta_bias": (delta_bias, (d,))}
    for name, (t, shape) in expect.items():
        if t is None:
            continue
        if tuple(t.shape) != shape:
            raise ValueError(f"selective_scan: {name} must have shape {shape}, "
                             f"got {tuple(t.shape)}")
        if t.device != u.device:
            raise ValueError(f"selective_scan: {name} is on {t.device}, u on {u.device}")
    for name, t in (("A", A),):
        if t.device != u.device:
            raise ValueError(f"selective_scan: {name} is on {t.device}, u on {u.device}")


def _compute_dtype(*ts) -> torch.dtype:
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in ts) \
        else torch.float32


def _cast(t, dtype):
    return None if t is None else (t if t.dtype == dtype else t.to(dtype))


# --------------------------------------------------------------------------- cuda adapter
def _scan_cuda(u, delta, A, B, C, D, z, delta_bias, softplus, reverse):
    fn = _load_mamba_scan_fn()
    if fn is None:
        raise RuntimeError("selective_scan backend 'cuda' needs mamba_ssm with its CUDA "
                           "extension (pip install 'seq2exp-plugin[cuda]') and CUDA tensors")
    if reverse:
        u, delta, B, C = u.flip(-1), delta.flip(-1), B.flip(-1), C.flip(-1)
        z = None if z is None else z.flip(-1)
    # mamba_ssm's kernel wants float32 A, D and delta_bias (u, delta, B, C may be bf16/fp16).
    y = fn(u, delta, _cast(A, torch.float32), B, C, D=_cast(D, torch.float32), z=z,
           delta_bias=_cast(delta_bias, torch.float32), delta_softplus=softplus)
    return y.flip(-1) if reverse else y


# --------------------------------------------------------------------------- CPU kernel
_lanes_cache: dict = {}


def _lanes(lib, dtype) -> int:
    key = dtype
    if key not in _lanes_cache:
        fn = lib.scan_simd_lanes_f64 if dtype == torch.float64 else lib.scan_simd_lanes_f32
        _lanes_cache[key] = int(fn())
    return _lanes_cache[key]


def _channels_last(x):
    """(batch, c, L) tensor with unit stride along c (a view if it already has one)."""
    if x is None or x.shape[1] <= 1 or x.stride(1) == 1:
        return x
    return x.transpose(1, 2).contiguous().transpose(1, 2)


def _same_layout(shape, a, b) -> bool:
    return all(sa == sb for n, sa, sb in zip(shape, a, b) if n != 1)


def _is_dense(shape, stride) -> bool:
    dims = sorted((st, n) for n, st in zip(shape, stride) if n != 1)
    expected = 1
    for st, n in dims:
        if st != expected:
            return False
        expected *= n
    return True


def _to_layout(g, stride):
    """g with the given strides (a copy if needed; contiguous if those strides are not dense)."""
    if g is None or _same_layout(g.shape, g.stride(), stride):
        return g
    if _is_dense(g.shape, stride):
        out = torch.empty_strided(g.shape, stride, dtype=g.dtype, device=g.device)
        out.copy_(g)
        return out
    return g.contiguous()


def _tptr(t, tdim: int, L: int, reverse: bool):
    """Data pointer and element stride along time; reversed time points at t = L-1."""
    st = t.stride(tdim)
    ptr = t.data_ptr()
    if reverse and L > 0:
        ptr += (L - 1) * st * t.element_size()
        st = -st
    return ptr, st


HUGEPAGE_MIN_BYTES = 8 << 20


def _empty(lib, *shape, dtype):
    """torch.empty, with transparent huge pages requested for large buffers before their
    first touch (Linux; a no-op elsewhere): page faults on fresh outputs otherwise cost a
    large fraction of the scan itself."""
    t = torch.empty(*shape, dtype=dtype)
    nbytes = t.numel() * t.element_size()
    if nbytes >= HUGEPAGE_MIN_BYTES:
        lib.scan_advise_hugepages(t.data_ptr(), nbytes)
    return t


def _nthreads(batch, d, L, n) -> int:
    return 1 if batch * d * L * n < SMALL_WORK else max(1, torch.get_num_threads())


def _groups(batch: int, nvec: int, nth: int) -> int:
    if nth <= 1:
        return 1
    return max(1, min(nvec, nth // math.gcd(batch, nth)))


def _fill_inputs(args, u, delta, z, B, C, At, D, bias, softplus, reverse, nth):
    batch, d, L = u.shape
    args.batch, args.dim, args.len, args.nstate = batch, d, L, At.shape[0]
    args.nthreads, args.ck_every, args.softplus = nth, CK_EVERY, int(softplus)
    args.u, args.u_st = _tptr(u, 2, L, reverse)
    args.u_sb = u.stride(0)
    args.delta, args.dl_st = _tptr(delta, 2, L, reverse)
    args.dl_sb = delta.stride(0)
    if z is not None:
        args.z, args.z_st = _tptr(z, 2, L, reverse)
        args.z_sb = z.stride(0)
    args.B, args.B_st = _tptr(B, 2, L, reverse)
    args.B_sb = B.stride(0)
    args.C, args.C_st = _tptr(C, 2, L, reverse)
    args.C_sb = C.stride(0)
    args.A = At.data_ptr()
    args.D = None if D is None else D.data_ptr()
    args.bias = None if bias is None else bias.data_ptr()


def _kernel_fn(lib, name, dtype):
    return getattr(lib, f"{name}_{'f64' if dtype == torch.float64 else 'f32'}")


class _CpuScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, bias, softplus, reverse):
        lib = _build.load_library()
        batch, d, L = u.shape
        n = A.shape[1]
        dtype = u.dtype
        ctx.layouts = [None if t is None else t.stride() for t in (u, delta, A, B, C, D, z, bias)]
        u_, dl_, z_ = _channels_last(u), _channels_last(delta), _channels_last(z)
        B_, C_ = _channels_last(B), _channels_last(C)
        At = A.t().contiguous()
        D_ = None if D is None else D.contiguous()
        bias_ = None if bias is None else bias.contiguous()
        nth = _nthreads(batch, d, L, n)
        need_grad = any(ctx.needs_input_grad[:8])
        y = _empty(lib, batch, L, d, dtype=dtype)
        ck = _empty(lib, batch, -(-L // CK_EVERY), n, d, dtype=dtype) if need_grad else None
        args = _build.ScanArgs()
        _fill_inputs(args, u_, dl_, z_, B_, C_, At, D_, bias_, softplus, reverse, nth)
        args.ck = None if ck is None else ck.data_ptr()
        args.y, args.y_st = _tptr(y, 1, L, reverse)
        args.y_sb = y.stride(0)
        rc = _kernel_fn(lib, "scan_fwd", dtype)(ctypes.byref(args))
        if rc != 0:
            raise RuntimeError(f"CPU selective-scan forward failed (code {rc}; "
                               f"1 = out of memory, 2 = bad sizes)")
        if need_grad:
            ctx.save_for_backward(u_, dl_, At, B_, C_, D_, z_, bias_, ck)
        ctx.softplus, ctx.reverse = softplus, reverse
        return y.transpose(1, 2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        u, dl, At, B, C, D, z, bias, ck = ctx.saved_tensors
        lib = _build.load_library()
        batch, d, L = u.shape
        n = At.shape[0]
        dtype = u.dtype
        gy = _channels_last(gy.to(dtype))
        nth = _nthreads(batch, d, L, n)
        nvec = -(-d // _lanes(lib, dtype))
        G = _groups(batch, nvec, nth)
        gu = _empty(lib, batch, L, d, dtype=dtype)
        gdl = _empty(lib, batch, L, d, dtype=dtype)
        gz = _empty(lib, batch, L, d, dtype=dtype) if z is not None else None
        gB = _empty(lib, G, batch, L, n, dtype=dtype)
        gC = _empty(lib, G, batch, L, n, dtype=dtype)
        gA = torch.empty(d, n, dtype=dtype)
        gD = torch.empty(d, dtype=dtype) if D is not None else None
        gb = torch.empty(d, dtype=dtype) if bias is not None else None
        args = _build.ScanArgs()
        _fill_inputs(args, u, dl, z, B, C, At, D, bias, ctx.softplus, ctx.reverse, nth)
        args.groups = G
        args.ck = ck.data_ptr()
        rev = ctx.reverse
        args.gy, args.gy_st = _tptr(gy, 2, L, rev)
        args.gy_sb = gy.stride(0)
        args.gu, args.gu_st = _tptr(gu, 1, L, rev)
        args.gu_sb = gu.stride(0)
        args.gdelta, args.gd_st = _tptr(gdl, 1, L, rev)
        args.gd_sb = gdl.stride(0)
        if gz is not None:
            args.gz, args.gz_st = _tptr(gz, 1, L, rev)
            args.gz_sb = gz.stride(0)
        args.gB, args.gB_st = _tptr(gB, 2, L, rev)
        args.gB_sg, args.gB_sb = gB.stride(0), gB.stride(1)
        args.gC, args.gC_st = _tptr(gC, 2, L, rev)
        args.gC_sg, args.gC_sb = gC.stride(0), gC.stride(1)
        args.gA = gA.data_ptr()
        args.gD = None if gD is None else gD.data_ptr()
        args.gbias = None if gb is None else gb.data_ptr()
        rc = _kernel_fn(lib, "scan_bwd", dtype)(ctypes.byref(args))
        if rc != 0:
            raise RuntimeError(f"CPU selective-scan backward failed (code {rc}; "
                               f"1 = out of memory, 2/3 = bad sizes)")
        # the kernel summed the channel groups into gB[0], gC[0] and the batch into gA, gD, gb
        grads = [gu.transpose(1, 2), gdl.transpose(1, 2), gA, gB[0].transpose(1, 2),
                 gC[0].transpose(1, 2), gD, None if gz is None else gz.transpose(1, 2), gb]
        out = []
        for i, (g, layout) in enumerate(zip(grads, ctx.layouts)):
            out.append(_to_layout(g, layout) if g is not None and ctx.needs_input_grad[i]
                       else None)
        return (*out, None, None)


def _scan_cpu(u, delta, A, B, C, D, z, delta_bias, softplus, reverse):
    lib = _build.load_library()
    if lib is None:
        raise RuntimeError(f"selective_scan backend 'cpu' is unavailable: {_build.build_error()}")
    if u.device.type != "cpu":
        raise ValueError(f"selective_scan backend 'cpu' needs CPU tensors, got {u.device}")
    if A.shape[1] > MAX_STATES:
        raise ValueError(f"selective_scan backend 'cpu' handles d_state <= {MAX_STATES}, "
                         f"got {A.shape[1]}")
    dtype = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    out_dtype = u.dtype
    y = _CpuScanFn.apply(*(_cast(t, dtype) for t in (u, delta, A, B, C, D, z, delta_bias)),
                         softplus, reverse)
    return y if y.dtype == out_dtype else y.to(out_dtype)


# --------------------------------------------------------------------------- pure PyTorch
def _torch_segment(dt, u, A, B, C, h0, reverse: bool):
    """Scan one segment from state h0: returns (y (batch, d, S), final state (batch, d, n)).

    Two levels: sub-chunks of T steps are scanned in parallel (a loop over the T steps of
    all sub-chunks at once), then the carries between sub-chunks are chained, and each step
    gets its sub-chunk's incoming state times the cumulative product of its decays. Every
    product involves only decays exp(dt A) <= 1, so nothing overflows in float32.
    """
    if reverse:
        dt, u, B, C = dt.flip(-1), u.flip(-1), B.flip(-1), C.flip(-1)
    batch, d, S = dt.shape
    n = A.shape[1]
    T = min(TORCH_SUBCHUNK, S)
    m = -(-S // T)
    pad = m * T - S
    if pad:  # dt = 0 steps: decay 1, input 0 -> the state passes through unchanged
        dt, u, B, C = (F.pad(t, (0, pad)) for t in (dt, u, B, C))

    def time_major(t, c):  # (batch, c, m*T) -> (T, m, batch, c), contiguous
        return t.reshape(batch, c, m, T).permute(3, 2, 0, 1).contiguous()

    dt_p, u_p, B_p, C_p = time_major(dt, d), time_major(u, d), time_major(B, n), time_major(C, n)
    dA = torch.exp(dt_p.unsqueeze(-1) * A)                      # (T, m, batch, d, n)
    x = (dt_p * u_p).unsqueeze(-1) * B_p.unsqueeze(-2)          # (T, m, batch, d, n)
    # unbind (not x[k]): one backward node for all steps instead of T full-size scatters
    xs, dAs = x.unbind(0), dA.unbind(0)
    hs = [xs[0]]
    for k in range(1, T):
        hs.append(torch.addcmul(xs[k], dAs[k], hs[-1]))
    hloc = torch.stack(hs)                                      # state from 0 at sub-chunk start
    P = torch.cumprod(dA, dim=0)                                # decay since sub-chunk start
    h_end, P_end = hs[-1].unbind(0), P[T - 1].unbind(0)
    carry = [h0]
    for i in range(m - 1):
        carry.append(torch.addcmul(h_end[i], P_end[i], carry[-1]))
    h = torch.addcmul(hloc, P, torch.stack(carry))             # (T, m, batch, d, n)
    y = (h * C_p.unsqueeze(-2)).sum(-1)                         # (T, m, batch, d)
    y = y.permute(2, 3, 1, 0).reshape(batch, d, m * T)[..., :S]
    if reverse:
        y = y.flip(-1)
    return y, h[T - 1, m - 1]


def _split_sizes(L: int, S: int, reverse: bool) -> list[int]:
    """Sizes of windows of at most S steps covering [0, L) in order; for reverse the partial
    window is first (windows aligned on the end, so that reverse equals flip-scan-flip)."""
    full, rest = divmod(L, S)
    if reverse:
        return ([rest] if rest else []) + [S] * full
    return [S] * full + ([rest] if rest else [])


def _scan_windows(fn, dt, u, A, B, C, h, S: int, reverse: bool, ckpt: bool = False):
    """Apply fn(dt, u, A, B, C, h, reverse) -> (y, h) to windows of S steps, last first when
    reverse. torch.split, not slicing: one backward node per tensor, not one full-size
    scatter per window (which made the backward quadratic in L)."""
    sizes = _split_sizes(dt.shape[-1], S, reverse)
    parts = [t.split(sizes, -1) for t in (dt, u, B, C)]
    ys = [None] * len(sizes)
    for i in (reversed(range(len(sizes))) if reverse else range(len(sizes))):
        args = (parts[0][i], parts[1][i], A, parts[2][i], parts[3][i], h, reverse)
        if ckpt:
            ys[i], h = _checkpoint(fn, *args, use_reentrant=False)
        else:
            ys[i], h = fn(*args)
    return ys, h


def _torch_block(dt, u, A, B, C, h, reverse: bool):
    """Scan a block segment by segment from state h; returns (y (batch, d, S), final state)."""
    ys, h = _scan_windows(_torch_segment, dt, u, A, B, C, h, TORCH_SEGMENT, reverse)
    return torch.cat(ys, -1), h


def _scan_torch(u, delta, A, B, C, D, z, delta_bias, softplus, reverse):
    dtype = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    out_dtype = u.dtype
    u, delta, A, B, C, D, z, delta_bias = (_cast(t, dtype)
                                           for t in (u, delta, A, B, C, D, z, delta_bias))
    batch, d, L = u.shape
    n = A.shape[1]
    dt = delta if delta_bias is None else delta + delta_bias[:, None]
    if softplus:
        dt = F.softplus(dt)
    use_ckpt = torch.is_grad_enabled() and any(t.requires_grad for t in (dt, u, A, B, C))
    # blocks are multiples of the segment length, so segments line up as in one long block
    S = max(TORCH_SEGMENT, TORCH_BLOCK // TORCH_SEGMENT * TORCH_SEGMENT)
    ys, _ = _scan_windows(_torch_block, dt, u, A, B, C, u.new_zeros(batch, d, n), S, reverse,
                          ckpt=use_ckpt)
    y = torch.cat(ys, -1) if ys else u.new_zeros(batch, d, 0)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y if y.dtype == out_dtype else y.to(out_dtype)


# --------------------------------------------------------------------------- reference
def _scan_reference(u, delta, A, B, C, D, z, delta_bias, softplus, reverse):
    """Sequential loop over t, vectorised over (batch, d, n), in the dtype it is given."""
    batch, d, L = u.shape
    n = A.shape[1]
    dt = delta if delta_bias is None else delta + delta_bias[:, None]
    if softplus:
        dt = F.softplus(dt)
    # unbind (not indexing per step): one backward node per tensor instead of L full-size
    # scatters, so the backward stays linear in L
    dts, dtus = dt.unsqueeze(-1).unbind(-2), (dt * u).unsqueeze(-1).unbind(-2)  # (b, d, 1)
    Bs, Cs = B.unsqueeze(1).unbind(-1), C.unsqueeze(1).unbind(-1)               # (b, 1, n)
    h = u.new_zeros(batch, d, n)
    ys = [None] * L
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        h = torch.exp(dts[t] * A) * h + dtus[t] * Bs[t]
        ys[t] = (h * Cs[t]).sum(-1)
    y = torch.stack(ys, -1) if L else u.new_zeros(batch, d, 0)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y


# --------------------------------------------------------------------------- triton adapter
def _scan_triton(u, delta, A, B, C, D, z, delta_bias, softplus, reverse):
    if not _triton_imports():
        raise RuntimeError("selective_scan backend 'triton' needs the triton package "
                           "(pip install triton; Linux)")
    from .triton_scan import selective_scan_triton
    return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, softplus, reverse)


_IMPLS = {"cuda": _scan_cuda, "triton": _scan_triton, "cpu": _scan_cpu, "torch": _scan_torch,
          "reference": _scan_reference}


# --------------------------------------------------------------------------- kernel probes
def _kernel_elementwise(name: str, x: torch.Tensor) -> torch.Tensor:
    lib = _build.load_library()
    if lib is None:
        raise RuntimeError(f"CPU scan kernel unavailable: {_build.build_error()}")
    x = x.detach().contiguous()
    y = torch.empty_like(x)
    _kernel_fn(lib, name, x.dtype)(x.data_ptr(), y.data_ptr(), x.numel())
    return y


def kernel_exp(x: torch.Tensor) -> torch.Tensor:
    """exp(x) with the CPU kernel's vectorised exp, to check it against torch.

    Args:
        x: float32 or float64 CPU tensor, any shape.

    Returns:
        exp(x), a new contiguous tensor of x's shape and dtype.
    """
    return _kernel_elementwise("scan_exp_array", x)


def kernel_softplus(x: torch.Tensor) -> torch.Tensor:
    """softplus(x) as the CPU kernel computes it, to check it against torch.

    Args:
        x: float32 or float64 CPU tensor, any shape.

    Returns:
        softplus(x), a new contiguous tensor of x's shape and dtype.
    """
    return _kernel_elementwise("scan_softplus_array", x)


def kernel_exp_rate(threads: int | None = None, seconds: float = 0.5,
                    dtype: torch.dtype = torch.float32) -> float:
    """Throughput of the CPU kernel's vectorised exp on L1-resident data: a machine rate for
    the speed benchmark's bound, not a scan speed.

    Args:
        threads: threads to run (default: torch's).
        seconds: run at least this long.
        dtype: float32 or float64.

    Returns:
        Exponentials per second, all threads together.
    """
    lib = _build.load_library()
    if lib is None:
        raise RuntimeError(f"CPU scan kernel unavailable: {_build.build_error()}")
    threads = threads or torch.get_num_threads()
    fn = _kernel_fn(lib, "scan_exp_bench", dtype)
    reps = 64
    while True:
        t0 = time.perf_counter()
        done = fn(threads, reps)
        el = time.perf_counter() - t0
        if el >= seconds or reps > 1 << 30:
            return done / el
        reps = int(reps * max(2.0, 1.2 * seconds / max(el, 1e-6)))


def kernel_info() -> dict:
    """Where the CPU kernel library is and how wide its vectors are, for benchmark reports.

    Returns:
        ``{"available": False, "error": ...}``, or its path, SIMD lanes per dtype, compiler and
        state checkpoint interval.
    """
    lib = _build.load_library()
    if lib is None:
        return {"available": False, "error": _build.build_error()}
    return {"available": True, "path": str(_build.library_path()),
            "lanes_f32": int(lib.scan_simd_lanes_f32()),
            "lanes_f64": int(lib.scan_simd_lanes_f64()),
            "compiler": _build.find_compiler(), "ck_every": CK_EVERY}
