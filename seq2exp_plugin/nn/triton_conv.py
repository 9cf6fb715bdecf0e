"""The ``triton`` backend of :func:`~seq2exp_plugin.nn.conv.causal_conv_silu` (GPU kernels).

Imported only when that backend is used (this module imports triton). Semantics are those of
``conv.causal_conv_silu``: ``x (batch, L, d)`` channels-last, ``weight (d, K)``, ``bias (d,)``,
``y = silu(bias + sum_k weight[:, k] * x[t -/+ (K-1-k)])``.

One program per (batch, block of positions, block of channels); each reads its K shifted tiles
of x from memory (neighbouring programs share them through the cache), sums in float32 and
applies SiLU before the single store. The backward is one kernel as well: the gradient at x[t]
gathers the pre-activation gradients of the K outputs that read x[t], recomputing those
pre-activations instead of storing them; weight and bias gradients are reduced per program
and added atomically into float32 buffers. ``reverse`` flips the direction of the shifts, so
nothing is copied. x and y may be float32, bfloat16 or float16.

Under ``TRITON_INTERPRET=1`` (set before triton is imported) the kernels run on CPU tensors.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = ["causal_conv_silu_triton", "interpreted"]

BLOCK_L = 32   # positions per program (power of two)
BLOCK_D = 64   # channels per program (power of two); 64 bf16 channels = one 128-byte line
NUM_WARPS = 8  # with these tiles, no register spills on sm_90 (tests/test_triton_compile.py)

_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def interpreted() -> bool:
    """Whether this module's kernels were decorated under Triton's CPU interpreter."""
    return _INTERPRETED


@triton.jit
def _pre_activation(x_ptr, w_ptr, bias_ptr, b, t, c, mask_c, L, x_sb, x_st,
                    K: tl.constexpr, HAS_BIAS: tl.constexpr, REVERSE: tl.constexpr,
                    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
    """bias + sum_k w[:, k] x[t -/+ (K-1-k)] at positions t (BLOCK_L,) x channels c, float32."""
    acc = tl.zeros((BLOCK_L, BLOCK_D), dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + c, mask=mask_c, other=0.0).to(tl.float32)[None, :]
    for k in tl.static_range(K):
        src = (t + (K - 1 - k)) if REVERSE else (t - (K - 1 - k))
        m = ((src >= 0) & (src < L))[:, None] & mask_c[None, :]
        xv = tl.load(x_ptr + b * x_sb + src[:, None] * x_st + c[None, :], mask=m, other=0.0)
        w = tl.load(w_ptr + c * K + k, mask=mask_c, other=0.0).to(tl.float32)
        acc += xv.to(tl.float32) * w[None, :]
    return acc


@triton.jit
def _conv_fwd_kernel(x_ptr, w_ptr, bias_ptr, y_ptr, L, d, x_sb, x_st,
                     K: tl.constexpr, HAS_BIAS: tl.constexpr, REVERSE: tl.constexpr,
                     BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)  # 64-bit offsets: batch x L x d can pass 2^31
    t = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    c = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_c = c < d
    pre = _pre_activation(x_ptr, w_ptr, bias_ptr, b, t, c, mask_c, L, x_sb, x_st,
                          K, HAS_BIAS, REVERSE, BLOCK_L, BLOCK_D)
    y = pre / (1.0 + tl.exp(-pre))
    m = (t < L)[:, None] & mask_c[None, :]
    tl.store(y_ptr + (b * L + t[:, None]) * d + c[None, :], y.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _conv_bwd_kernel(x_ptr, w_ptr, bias_ptr, gy_ptr, gx_ptr, gw_ptr, gb_ptr, L, d, x_sb, x_st,
                     gy_sb, gy_st, K: tl.constexpr, HAS_BIAS: tl.constexpr,
                     REVERSE: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)  # 64-bit offsets: batch x L x d can pass 2^31
    t = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    c = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_c = c < d
    gx = tl.zeros((BLOCK_L, BLOCK_D), dtype=tl.float32)
    for k in tl.static_range(K):
        # x[t] enters output p through tap k; g_pre[p] = g_y[p] silu'(pre[p])
        p = (t - (K - 1 - k)) if REVERSE else (t + (K - 1 - k))
        m = ((p >= 0) & (p < L))[:, None] & mask_c[None, :]
        pre = _pre_activation(x_ptr, w_ptr, bias_ptr, b, p, c, mask_c, L, x_sb, x_st,
                              K, HAS_BIAS, REVERSE, BLOCK_L, BLOCK_D)
        gy = tl.load(gy_ptr + b * gy_sb + p[:, None] * gy_st + c[None, :], mask=m,
                     other=0.0).to(tl.float32)
        sig = 1.0 / (1.0 + tl.exp(-pre))
        g_pre = tl.where(m, gy * sig * (1.0 + pre * (1.0 - sig)), 0.0)
        w = tl.load(w_ptr + c * K + k, mask=mask_c, other=0.0).to(tl.float32)
        gx += g_pre * w[None, :]
        if k == K - 1:  # p = t: this program's own outputs give the weight and bias gradients
            for j in tl.static_range(K):
                src = (t + (K - 1 - j)) if REVERSE else (t - (K - 1 - j))
                ms = ((src >= 0) & (src < L))[:, None] & mask_c[None, :]
                xv = tl.load(x_ptr + b * x_sb + src[:, None] * x_st + c[None, :], mask=ms,
                             other=0.0).to(tl.float32)
                tl.atomic_add(gw_ptr + c * K + j, tl.sum(g_pre * xv, axis=0), mask=mask_c)
            if HAS_BIAS:
                tl.atomic_add(gb_ptr + c, tl.sum(g_pre, axis=0), mask=mask_c)
    m = (t < L)[:, None] & mask_c[None, :]
    tl.store(gx_ptr + (b * L + t[:, None]) * d + c[None, :], gx.to(gx_ptr.dtype.element_ty),
             mask=m)


def _grid(batch, L, d):
    return (batch, triton.cdiv(L, BLOCK_L), triton.cdiv(d, BLOCK_D))


class _TritonConvSiluFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, reverse):
        if x.stride(-1) != 1:
            x = x.contiguous()
        batch, L, d = x.shape
        w = weight.contiguous()
        y = torch.empty(batch, L, d, device=x.device, dtype=x.dtype)
        if x.numel():
            _conv_fwd_kernel[_grid(batch, L, d)](
                x, w, bias, y, L, d, x.stride(0), x.stride(1), K=w.shape[1],
                HAS_BIAS=bias is not None, REVERSE=reverse, BLOCK_L=BLOCK_L, BLOCK_D=BLOCK_D,
                num_warps=NUM_WARPS)
        ctx.save_for_backward(x, w, bias)
        ctx.reverse = reverse
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        x, w, bias = ctx.saved_tensors
        batch, L, d = x.shape
        if gy.stride(-1) != 1:
            gy = gy.contiguous()
        gx = torch.empty(batch, L, d, device=x.device, dtype=x.dtype)
        gw = torch.zeros(w.shape, device=x.device, dtype=torch.float32)
        gb = torch.zeros(d, device=x.device, dtype=torch.float32) if bias is not None else None
        if x.numel():
            _conv_bwd_kernel[_grid(batch, L, d)](
                x, w, bias, gy, gx, gw, gb, L, d, x.stride(0), x.stride(1), gy.stride(0),
                gy.stride(1), K=w.shape[1], HAS_BIAS=bias is not None, REVERSE=ctx.reverse,
                BLOCK_L=BLOCK_L, BLOCK_D=BLOCK_D, num_warps=NUM_WARPS)
        else:
            gx.zero_()
        return gx, gw.to(w.dtype), None if gb is None else gb.to(bias.dtype), None


def causal_conv_silu_triton(x, weight, bias, reverse):
    """The conv + SiLU on the Triton kernels (CUDA tensors, or CPU ones under the interpreter).

    Args:
        x, weight, bias, reverse: as :func:`~seq2exp_plugin.nn.conv.causal_conv_silu`.

    Returns:
        ``(batch, L, d)`` in x's dtype.
    """
    if x.device.type != "cuda" and not _INTERPRETED:
        raise ValueError(f"causal_conv_silu backend 'triton' needs CUDA tensors, got {x.device} "
                         "(CPU tensors run only under TRITON_INTERPRET=1, set before import)")
    return _TritonConvSiluFn.apply(x, weight, bias, bool(reverse))
