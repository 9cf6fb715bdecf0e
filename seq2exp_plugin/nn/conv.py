"""Mamba's short causal depthwise convolution followed by SiLU, channels-last.

``causal_conv_silu(x, weight, bias, reverse)`` with ``x (batch, L, d)``, ``weight (d, K)``,
``bias (d,)``::

    y[:, t, c] = silu(bias[c] + sum_k weight[c, k] * x[:, t - (K-1-k), c])    (x = 0 outside)

``reverse=True`` looks at future positions instead (``t + (K-1-k)``): the same as flipping the
sequence, convolving and flipping back. This equals ``silu(conv1d(x^T, padding=K-1)[..., :L])^T``
without transposing the activation.

Three implementations: the compiled CPU kernel (``_cpu_scan.c``, one pass over memory forward
and backward; used for float32/float64 CPU tensors when it builds), Triton kernels
(``triton_conv.py``, fused conv + SiLU forward and backward; used for CUDA tensors when triton
imports) and a PyTorch one (K in-place fused multiply-adds, any device). At 200 kb the pass count is what matters: these tensors are
hundreds of MB and the work per element is a few FLOPs.
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _build
from .scan import _empty, _triton_imports

__all__ = ["causal_conv_silu"]

SMALL_WORK = 1 << 16  # below batch*L*d elements, run the kernel on one thread


def causal_conv_silu(x: Tensor, weight: Tensor, bias: Tensor | None, reverse: bool = False,
                     backend: str | None = None) -> Tensor:
    """Mamba's depthwise causal convolution and SiLU in one pass (module docstring).

    Args:
        x: activations, channels last, ``(batch, L, d)``.
        weight: one filter per channel ``(d, K)``.
        bias: ``(d,)`` or None.
        reverse: look at the following positions instead of the preceding ones.
        backend: "cpu" (the C kernel), "triton" or "torch"; None: triton for CUDA tensors when
            it imports, the C kernel where it applies, else torch.

    Returns:
        A contiguous ``(batch, L, d)`` in x's dtype.
    """
    if backend not in (None, "cpu", "triton", "torch"):
        raise ValueError(f"causal_conv_silu: backend must be 'cpu', 'triton', 'torch' or None, "
                         f"got {backend!r}")
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[-1]:
        raise ValueError(f"causal_conv_silu: need x (batch, L, d) and weight (d, K), got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    if backend == "triton" or (backend is None and x.device.type == "cuda" and _triton_imports()):
        from .triton_conv import causal_conv_silu_triton
        return causal_conv_silu_triton(x, weight, bias, reverse)
    kernel_ok = (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
                 and weight.dtype == x.dtype and (bias is None or bias.dtype == x.dtype))
    if backend == "cpu" or (backend is None and kernel_ok):
        if not kernel_ok:
            raise ValueError("causal_conv_silu backend 'cpu' needs float32/float64 CPU tensors "
                             "of one dtype")
        if _build.load_library() is not None:
            return _ConvSiluFn.apply(x, weight, bias, bool(reverse))
        if backend == "cpu":
            raise RuntimeError(f"causal_conv_silu backend 'cpu' is unavailable: {_build.build_error()}")
    return _conv_silu_torch(x, weight, bias, reverse)


def _conv_silu_torch(x: Tensor, weight: Tensor, bias: Tensor | None, reverse: bool) -> Tensor:
    """K shifted multiply-adds into one buffer, then SiLU in place."""
    k = weight.shape[1]
    length = x.shape[1]
    start = x * weight[:, k - 1] if bias is None else torch.addcmul(bias, x, weight[:, k - 1])
    out = start.contiguous()
    for tap in range(k - 1):
        shift = k - 1 - tap
        if shift >= length:
            continue
        if reverse:
            out[:, : length - shift].addcmul_(x[:, shift:], weight[:, tap])
        else:
            out[:, shift:].addcmul_(x[:, : length - shift], weight[:, tap])
    return F.silu(out, inplace=True)


def _conv_args(x: Tensor, wt: Tensor, bias: Tensor | None, reverse: bool) -> _build.ConvArgs:
    batch, length, dim = x.shape
    args = _build.ConvArgs()
    args.batch, args.len, args.dim, args.width = batch, length, dim, wt.shape[0]
    args.reverse = int(reverse)
    args.nthreads = 1 if batch * length * dim < SMALL_WORK else max(1, torch.get_num_threads())
    args.x, args.x_sb, args.x_st = x.data_ptr(), x.stride(0), x.stride(1)
    args.w = wt.data_ptr()
    args.bias = None if bias is None else bias.data_ptr()
    return args


def _kernel(name: str, dtype: torch.dtype):
    lib = _build.load_library()
    return getattr(lib, f"{name}_{'f64' if dtype == torch.float64 else 'f32'}")


class _ConvSiluFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, reverse):
        if x.stride(-1) != 1:
            x = x.contiguous()
        wt = weight.t().contiguous()  # (K, d): one row per tap, unit stride along channels
        bias_ = None if bias is None else bias.contiguous()
        args = _conv_args(x, wt, bias_, reverse)
        y = _empty(_build.load_library(), *x.shape, dtype=x.dtype)
        args.y = y.data_ptr()
        rc = _kernel("conv_silu_fwd", x.dtype)(ctypes.byref(args))
        if rc != 0:
            raise RuntimeError(f"CPU conv+SiLU forward failed (code {rc})")
        ctx.save_for_backward(x, wt, bias_)
        ctx.reverse = reverse
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        x, wt, bias = ctx.saved_tensors
        gy = gy.contiguous()
        args = _conv_args(x, wt, bias, ctx.reverse)
        gx = _empty(_build.load_library(), *x.shape, dtype=x.dtype)
        gw = torch.empty(args.nthreads, *wt.shape, dtype=torch.float64)
        gb = torch.empty(args.nthreads, x.shape[-1], dtype=torch.float64)
        args.gy, args.gx, args.gw, args.gb = gy.data_ptr(), gx.data_ptr(), gw.data_ptr(), gb.data_ptr()
        rc = _kernel("conv_silu_bwd", x.dtype)(ctypes.byref(args))
        if rc != 0:
            raise RuntimeError(f"CPU conv+SiLU backward failed (code {rc}; 1 = out of memory)")
        grad_w = gw.sum(0).t().to(x.dtype)
        grad_b = gb.sum(0).to(x.dtype) if ctx.has_bias else None
        return gx, grad_w, grad_b, None
