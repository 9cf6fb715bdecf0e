"""The ``triton`` backend of :func:`~seq2exp_plugin.nn.scan.selective_scan` (GPU kernels).

Imported only when that backend is used: this module imports triton at the top. Semantics,
shapes and argument names are those of ``scan.selective_scan``.

One program per (batch, block of ``BLOCK_D`` channels) walks the sequence in chunks of
``CHUNK`` positions. Inside a chunk the recurrence ``h = a * h + b`` is a parallel
``tl.associative_scan`` over (decay, input) pairs on a (channels, states, positions) tile; the
state carried into the next chunk is the tile's last column. ``reverse`` only changes which
memory position a scan step reads (``L-1-s`` for step ``s``): no flipped copies.

Batch x channel blocks can be too few programs for a GPU (batch 1 x 256 channels: 64), so the
sequence is also split into segments scanned in parallel: a first pass scans each segment
from a zero state, keeping its end state and the sum of its step sizes (its total decay is
exp(A * sum dt)); a small kernel chains those into each segment's true entry state; the second
pass scans each segment again from it. The backward splits the adjoint recurrence the same way.

The forward stores the state entering each chunk (``batch x chunks x d x n`` floats) when a
backward will follow. The backward walks the chunks last to first, recomputes each chunk's
states from its saved entry state, and runs the adjoint recurrence
``g_h[s] = C[s] * g_y[s] + exp(dt[s+1] A) * g_h[s+1]`` as a reverse associative scan. The
shifted terms (the state before step ``s`` and the decay of step ``s+1``) come from loads at
positions ``s-1`` and ``s+1`` rather than from register shifts. Gradients of B and C (sums over
channels) and of A, D and delta_bias (sums over batch and positions) are accumulated with
atomic adds into float32 buffers.

Inputs may be float32, bfloat16 or float16 (float64 is computed in float32); every state, sum
and accumulation is float32. Outputs and gradients come back in their inputs' dtypes.

Under ``TRITON_INTERPRET=1`` (set before this module is imported) the same kernels run on CPU
tensors through Triton's interpreter: that is how the tests check them without a GPU.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

__all__ = ["selective_scan_triton", "interpreted"]

CHUNK = 32     # positions per associative scan (power of two)
BLOCK_D = 4    # channels per program (power of two); tiles are BLOCK_D x d_state x CHUNK
NUM_WARPS = 4  # with these tiles and d_state 16, no register spills on sm_90
               # (tests/test_triton_compile.py)
# Segments: a sequence is split into segments scanned in parallel (first from a zero state,
# then again from the chained true entry state): batch 1 x 256 channels alone is only 64
# programs. SEGMENTS = None chooses about PROGRAMS_PER_SM programs per multiprocessor, with
# segments of at least MIN_SEGMENT_CHUNKS chunks; an integer forces that many (tests).
SEGMENTS = None
PROGRAMS_PER_SM = 4
MIN_SEGMENT_CHUNKS = 16


def interpreted() -> bool:
    """Whether this module's kernels were decorated under Triton's CPU interpreter."""
    return _INTERPRETED


_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


# --------------------------------------------------------------------------- device helpers
@triton.jit
def _linear_combine(a1, b1, a2, b2):
    """Compose h -> a1 h + b1, then h -> a2 h + b2 (element 1 is the earlier step)."""
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _softplus(x):
    """log(1 + exp(x)) without overflow, accurate for very negative x (log1p by Goldberg's
    rounding correction: the interpreter has no log1p)."""
    e = tl.exp(-tl.abs(x))
    one_e = 1.0 + e
    log1p_e = tl.where(one_e == 1.0, e, tl.log(one_e) * (e / (one_e - 1.0)))
    return tl.maximum(x, 0.0) + log1p_e


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tile(ptr, rows, pos, mask, s_row, s_t):
    """A (rows, positions) tile of a (row, time) array with strides s_row, s_t, as float32."""
    return tl.load(ptr + rows[:, None] * s_row + pos[None, :] * s_t, mask=mask,
                   other=0.0).to(tl.float32)


@triton.jit
def _channel_block(A_ptr, d, n, BLOCK_D: tl.constexpr, NP: tl.constexpr):
    """This program's channels (axis 1 of the grid), the states, their masks, and A."""
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, NP)
    mask_d = offs_d < d
    mask_dn = mask_d[:, None] & (offs_n < n)[None, :]
    offs_dn = offs_d[:, None] * n + offs_n[None, :]
    A = tl.load(A_ptr + offs_dn, mask=mask_dn, other=0.0)
    return offs_d, offs_n, mask_d, mask_dn, offs_dn, A


@triton.jit
def _step_size(delta_ptr, bias, offs_d, pos, mask, sb, sd, st, HAS_BIAS: tl.constexpr,
               SOFTPLUS: tl.constexpr):
    """dt at (channels, positions) and its pre-softplus value; 0 where masked (identity step)."""
    raw = _tile(delta_ptr + sb, offs_d, pos, mask, sd, st)
    if HAS_BIAS:
        raw = raw + bias[:, None]
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    return tl.where(mask, dt, 0.0), raw


# --------------------------------------------------------------------------- forward
@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, y_ptr, ck_ptr,
    h0_ptr, hend_ptr, sdt_ptr,
    d, n, L, chunks_per_seg,
    u_sb, u_sd, u_st, dl_sb, dl_sd, dl_st, B_sb, B_sn, B_st, C_sb, C_sn, C_st,
    z_sb, z_sd, z_st, y_sb, y_sd, y_st,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr, SAVE_CK: tl.constexpr,
    LOCAL: tl.constexpr, HAS_H0: tl.constexpr,
    BLOCK_D: tl.constexpr, NP: tl.constexpr, CHUNK: tl.constexpr,
):
    """Scan segment ``program_id(2)`` (``chunks_per_seg`` chunks) of one batch row and block
    of channels. ``LOCAL``: from a zero state, store only the final state and the sum of dt
    (first pass of a segmented scan); else from the state in ``h0`` (or zero) store y and,
    with ``SAVE_CK``, the state entering each chunk."""
    b = tl.program_id(0).to(tl.int64)  # 64-bit offsets: batch x L x d can pass 2^31
    seg, n_seg = tl.program_id(2), tl.num_programs(2)
    offs_d, offs_n, mask_d, mask_dn, offs_dn, A = _channel_block(A_ptr, d, n, BLOCK_D, NP)
    mask_n = offs_n < n
    offs_c = tl.arange(0, CHUNK)
    bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0) if HAS_BIAS else None
    Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0) if HAS_D else None
    if HAS_H0:
        h = tl.load(h0_ptr + (b * n_seg + seg) * d * n + offs_dn, mask=mask_dn, other=0.0)
    else:
        h = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
    sdt = tl.zeros((BLOCK_D,), dtype=tl.float32)
    n_chunks = tl.cdiv(L, CHUNK)
    c_begin = seg * chunks_per_seg
    for c in range(c_begin, tl.minimum(c_begin + chunks_per_seg, n_chunks)):
        if SAVE_CK:  # state entering chunk c, laid out (batch, chunk, d, n)
            tl.store(ck_ptr + (b * n_chunks + c) * d * n + offs_dn, h, mask=mask_dn)
        s = c * CHUNK + offs_c
        mask_s = s < L
        pos = (L - 1 - s) if REVERSE else s
        m_ds = mask_d[:, None] & mask_s[None, :]
        m_ns = mask_n[:, None] & mask_s[None, :]
        dt, _ = _step_size(delta_ptr, bias, offs_d, pos, m_ds, b * dl_sb, dl_sd, dl_st,
                           HAS_BIAS, SOFTPLUS)
        u = _tile(u_ptr + b * u_sb, offs_d, pos, m_ds, u_sd, u_st)
        Bt = _tile(B_ptr + b * B_sb, offs_n, pos, m_ns, B_sn, B_st)
        decay = tl.exp(dt[:, None, :] * A[:, :, None])             # (BLOCK_D, NP, CHUNK)
        inp = (dt * u)[:, None, :] * Bt[None, :, :]
        prod, local = tl.associative_scan((decay, inp), 2, _linear_combine)
        hs = local + prod * h[:, :, None]
        if LOCAL:
            sdt += tl.sum(dt, axis=1)
        else:
            Ct = _tile(C_ptr + b * C_sb, offs_n, pos, m_ns, C_sn, C_st)
            y = tl.sum(hs * Ct[None, :, :], axis=1)                  # (BLOCK_D, CHUNK)
            if HAS_D:
                y += Dv[:, None] * u
            if HAS_Z:
                z = _tile(z_ptr + b * z_sb, offs_d, pos, m_ds, z_sd, z_st)
                y = y * z * _sigmoid(z)
            tl.store(y_ptr + b * y_sb + offs_d[:, None] * y_sd + pos[None, :] * y_st,
                     y.to(y_ptr.dtype.element_ty), mask=m_ds)
        # masked steps are identities, so the last column is the state after the chunk
        h = tl.sum(tl.where(offs_c[None, None, :] == CHUNK - 1, hs, 0.0), axis=2)
    if LOCAL:
        tl.store(hend_ptr + (b * n_seg + seg) * d * n + offs_dn, h, mask=mask_dn)
        tl.store(sdt_ptr + (b * n_seg + seg) * d + offs_d, sdt, mask=mask_d)


@triton.jit
def _segment_carry_kernel(end_ptr, sum_ptr, A_ptr, out_ptr, n_seg, d, n,
                          BACKWARD: tl.constexpr, BLOCK_D: tl.constexpr, NP: tl.constexpr):
    """Chain the segments of a segmented scan: ``out[j]`` = what enters segment j, where a
    segment maps x to ``exp(A * sum[j]) * x + end[j]``; walked last to first for the adjoint."""
    b = tl.program_id(0).to(tl.int64)  # 64-bit offsets: batch x L x d can pass 2^31
    offs_d, _, mask_d, mask_dn, offs_dn, A = _channel_block(A_ptr, d, n, BLOCK_D, NP)
    carry = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
    for i in range(0, n_seg):
        j = (n_seg - 1 - i) if BACKWARD else i
        tl.store(out_ptr + (b * n_seg + j) * d * n + offs_dn, carry, mask=mask_dn)
        end = tl.load(end_ptr + (b * n_seg + j) * d * n + offs_dn, mask=mask_dn, other=0.0)
        total = tl.load(sum_ptr + (b * n_seg + j) * d + offs_d, mask=mask_d, other=0.0)
        carry = tl.exp(total[:, None] * A) * carry + end


# --------------------------------------------------------------------------- backward
@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, ck_ptr, gy_ptr,
    gu_ptr, gdl_ptr, gz_ptr, gB_ptr, gC_ptr, gA_ptr, gD_ptr, gbias_ptr,
    g0_ptr, gend_ptr, sdt_ptr,
    d, n, L, chunks_per_seg,
    u_sb, u_sd, u_st, dl_sb, dl_sd, dl_st, B_sb, B_sn, B_st, C_sb, C_sn, C_st,
    z_sb, z_sd, z_st, gy_sb, gy_sd, gy_st, gu_sb, gu_sd, gu_st, gdl_sb, gdl_sd, gdl_st,
    gz_sb, gz_sd, gz_st,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr, LOCAL: tl.constexpr, HAS_G0: tl.constexpr,
    BLOCK_D: tl.constexpr, NP: tl.constexpr, CHUNK: tl.constexpr,
):
    """Backward over segment ``program_id(2)``, its chunks last to first. ``LOCAL``: only the
    adjoint recurrence from zero, storing the adjoint at the segment's first step and the sum
    of the decays' dt (first pass of a segmented backward); else every gradient, starting
    from the adjoint in ``g0`` (or zero) after the segment."""
    b = tl.program_id(0).to(tl.int64)  # 64-bit offsets: batch x L x d can pass 2^31
    seg, n_seg = tl.program_id(2), tl.num_programs(2)
    offs_d, offs_n, mask_d, mask_dn, offs_dn, A = _channel_block(A_ptr, d, n, BLOCK_D, NP)
    mask_n = offs_n < n
    offs_c = tl.arange(0, CHUNK)
    bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0) if HAS_BIAS else None
    Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0) if HAS_D else None
    gA = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
    gD = tl.zeros((BLOCK_D,), dtype=tl.float32)
    gbias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    sdt = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_G0:  # adjoint of the state after this segment's last step
        gh_next = tl.load(g0_ptr + (b * n_seg + seg) * d * n + offs_dn, mask=mask_dn, other=0.0)
    else:
        gh_next = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
    n_chunks = tl.cdiv(L, CHUNK)
    c_begin = seg * chunks_per_seg
    c_end = tl.minimum(c_begin + chunks_per_seg, n_chunks)
    for i in range(0, c_end - c_begin):
        c = c_end - 1 - i
        s = c * CHUNK + offs_c
        mask_s = s < L
        pos = (L - 1 - s) if REVERSE else s
        m_ds = mask_d[:, None] & mask_s[None, :]
        m_ns = mask_n[:, None] & mask_s[None, :]
        Ct = _tile(C_ptr + b * C_sb, offs_n, pos, m_ns, C_sn, C_st)
        gy = _tile(gy_ptr + b * gy_sb, offs_d, pos, m_ds, gy_sd, gy_st)
        gyp = gy  # gradient of the output before the z gate
        if HAS_Z:
            z = _tile(z_ptr + b * z_sb, offs_d, pos, m_ds, z_sd, z_st)
            sig = _sigmoid(z)
            gyp = gy * z * sig
        # --- adjoint states: g_h[s] = C[s] g_y[s] + decay[s+1] g_h[s+1], a reverse scan
        pos_n = (pos - 1) if REVERSE else (pos + 1)
        m_ds_n = m_ds & (s + 1 < L)[None, :]
        dt_n, _ = _step_size(delta_ptr, bias, offs_d, pos_n, m_ds_n, b * dl_sb, dl_sd, dl_st,
                             HAS_BIAS, SOFTPLUS)
        prod, local = tl.associative_scan(
            (tl.exp(dt_n[:, None, :] * A[:, :, None]), gyp[:, None, :] * Ct[None, :, :]),
            2, _linear_combine, reverse=True)
        gh = local + prod * gh_next[:, :, None]
        gh_next = tl.sum(tl.where(offs_c[None, None, :] == 0, gh, 0.0), axis=2)
        if LOCAL:
            sdt += tl.sum(dt_n, axis=1)
        else:
            # --- states before each step: a scan of the previous steps from the saved state
            # entering the chunk (identity at the chunk start)
            h0 = tl.load(ck_ptr + (b * n_chunks + c) * d * n + offs_dn, mask=mask_dn, other=0.0)
            m_prev = offs_c > 0
            pos_p = (pos + 1) if REVERSE else (pos - 1)
            m_ds_p = m_ds & m_prev[None, :]
            dt_p, _ = _step_size(delta_ptr, bias, offs_d, pos_p, m_ds_p, b * dl_sb, dl_sd,
                                 dl_st, HAS_BIAS, SOFTPLUS)
            u_p = _tile(u_ptr + b * u_sb, offs_d, pos_p, m_ds_p, u_sd, u_st)
            B_p = _tile(B_ptr + b * B_sb, offs_n, pos_p, m_ns & m_prev[None, :], B_sn, B_st)
            prod, local = tl.associative_scan(
                (tl.exp(dt_p[:, None, :] * A[:, :, None]),
                 (dt_p * u_p)[:, None, :] * B_p[None, :, :]),
                2, _linear_combine)
            h_prev = local + prod * h0[:, :, None]                   # (BLOCK_D, NP, CHUNK)
            # --- this step
            dt, raw = _step_size(delta_ptr, bias, offs_d, pos, m_ds, b * dl_sb, dl_sd, dl_st,
                                 HAS_BIAS, SOFTPLUS)
            u = _tile(u_ptr + b * u_sb, offs_d, pos, m_ds, u_sd, u_st)
            Bt = _tile(B_ptr + b * B_sb, offs_n, pos, m_ns, B_sn, B_st)
            decay = tl.exp(dt[:, None, :] * A[:, :, None])
            hs = decay * h_prev + (dt * u)[:, None, :] * Bt[None, :, :]
            if HAS_Z:
                y = tl.sum(hs * Ct[None, :, :], axis=1)
                if HAS_D:
                    y += Dv[:, None] * u
                gz = gy * y * sig * (1.0 + z * (1.0 - sig))
                tl.store(gz_ptr + b * gz_sb + offs_d[:, None] * gz_sd + pos[None, :] * gz_st,
                         gz.to(gz_ptr.dtype.element_ty), mask=m_ds)
            # --- gradients
            ghB = tl.sum(gh * Bt[None, :, :], axis=1)                # (BLOCK_D, CHUNK)
            g_decay = gh * decay * h_prev                            # d loss / d log(decay)
            gdt = u * ghB + tl.sum(g_decay * A[:, :, None], axis=1)
            gA += tl.sum(g_decay * dt[:, None, :], axis=2)
            gu = dt * ghB
            if HAS_D:
                gu += Dv[:, None] * gyp
                gD += tl.sum(gyp * u, axis=1)
            graw = gdt * _sigmoid(raw) if SOFTPLUS else gdt
            graw = tl.where(m_ds, graw, 0.0)
            gbias += tl.sum(graw, axis=1)
            tl.store(gu_ptr + b * gu_sb + offs_d[:, None] * gu_sd + pos[None, :] * gu_st,
                     gu.to(gu_ptr.dtype.element_ty), mask=m_ds)
            tl.store(gdl_ptr + b * gdl_sb + offs_d[:, None] * gdl_sd + pos[None, :] * gdl_st,
                     graw.to(gdl_ptr.dtype.element_ty), mask=m_ds)
            gBt = tl.sum(gh * (dt * u)[:, None, :], axis=0)          # (NP, CHUNK)
            gCt = tl.sum(gyp[:, None, :] * hs, axis=0)
            offs_bc = (b * n + offs_n[:, None]) * L + pos[None, :]    # (batch, n, L) buffers
            tl.atomic_add(gB_ptr + offs_bc, gBt, mask=m_ns)
            tl.atomic_add(gC_ptr + offs_bc, gCt, mask=m_ns)
    if LOCAL:
        tl.store(gend_ptr + (b * n_seg + seg) * d * n + offs_dn, gh_next, mask=mask_dn)
        tl.store(sdt_ptr + (b * n_seg + seg) * d + offs_d, sdt, mask=mask_d)
    else:
        tl.atomic_add(gA_ptr + offs_dn, gA, mask=mask_dn)
        if HAS_D:
            tl.atomic_add(gD_ptr + offs_d, gD, mask=mask_d)
        if HAS_BIAS:
            tl.atomic_add(gbias_ptr + offs_d, gbias, mask=mask_d)


# --------------------------------------------------------------------------- autograd
def _strides3(t):
    return (0, 0, 0) if t is None else tuple(t.stride())


def _low_precision(t):
    """t if its dtype is one the kernels read, else a float32 copy (float64, integers)."""
    if t is None or t.dtype in (torch.float32, torch.bfloat16, torch.float16):
        return t
    return t.float()


def _f32(t):
    return None if t is None else t.detach().float().contiguous()


@functools.lru_cache(maxsize=None)
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _segmentation(batch: int, d: int, L: int, device: torch.device) -> tuple[int, int]:
    """(segments, chunks per segment): split the sequence so that batch x channel blocks x
    segments programs fill the GPU (one segment on the CPU unless ``SEGMENTS`` says)."""
    n_chunks = triton.cdiv(L, CHUNK)
    if SEGMENTS is not None:
        n_seg = SEGMENTS
    elif device.type == "cuda":
        programs = batch * triton.cdiv(d, BLOCK_D)
        n_seg = triton.cdiv(PROGRAMS_PER_SM * _multiprocessors(device.index or 0), programs)
        n_seg = min(n_seg, max(1, n_chunks // MIN_SEGMENT_CHUNKS))
    else:
        n_seg = 1
    per_seg = triton.cdiv(n_chunks, max(1, n_seg))
    return triton.cdiv(n_chunks, per_seg), per_seg


class _TritonScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, bias, softplus, reverse):
        batch, d, L = u.shape
        n = A.shape[1]
        A32, D32, bias32 = _f32(A), _f32(D), _f32(bias)
        u_, dl_, B_, C_, z_ = (_low_precision(t) for t in (u, delta, B, C, z))
        need_grad = any(ctx.needs_input_grad[:8])
        ctx.tiles = dict(BLOCK_D=BLOCK_D, NP=triton.next_power_of_2(n), CHUNK=CHUNK,
                         num_warps=NUM_WARPS)
        ctx.flags = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=bias is not None,
                         SOFTPLUS=softplus, REVERSE=reverse)
        y = torch.empty_like(u_)
        ck = (torch.empty(batch, triton.cdiv(L, CHUNK), d, n, device=u.device,
                          dtype=torch.float32) if need_grad else None)
        if L > 0:
            n_seg, per_seg = _segmentation(batch, d, L, u.device)
            grid = (batch, triton.cdiv(d, BLOCK_D), n_seg)

            def launch(h0, hend, sdt, local):
                _scan_fwd_kernel[grid](
                    u_, dl_, A32, B_, C_, D32, z_, bias32, y, ck, h0, hend, sdt,
                    d, n, L, per_seg,
                    *u_.stride(), *dl_.stride(), *B_.stride(), *C_.stride(), *_strides3(z_),
                    *y.stride(), SAVE_CK=need_grad and not local, LOCAL=local,
                    HAS_H0=h0 is not None, **ctx.flags, **ctx.tiles)

            h0 = None
            if n_seg > 1:  # segments from zero, then chain their end states
                hend = torch.empty(batch, n_seg, d, n, device=u.device, dtype=torch.float32)
                sdt = torch.empty(batch, n_seg, d, device=u.device, dtype=torch.float32)
                launch(None, hend, sdt, True)
                h0 = _chain_segments(hend, sdt, A32, backward=False, tiles=ctx.tiles)
            launch(h0, None, None, False)
        if need_grad:
            ctx.save_for_backward(u_, dl_, A32, B_, C_, D32, z_, bias32, ck)
        ctx.dtypes = [None if t is None else t.dtype for t in (u, delta, A, B, C, D, z, bias)]
        return y if y.dtype == u.dtype else y.to(u.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        u, dl, A, B, C, D, z, bias, ck = ctx.saved_tensors
        batch, d, L = u.shape
        n = A.shape[1]
        dev = u.device
        gu, gdl = torch.empty_like(u), torch.empty_like(dl)
        gz = torch.empty_like(z) if z is not None else None
        gB = torch.zeros(batch, n, L, device=dev, dtype=torch.float32)
        gC = torch.zeros(batch, n, L, device=dev, dtype=torch.float32)
        gA = torch.zeros(d, n, device=dev, dtype=torch.float32)
        gD = torch.zeros(d, device=dev, dtype=torch.float32) if D is not None else None
        gb = torch.zeros(d, device=dev, dtype=torch.float32) if bias is not None else None
        if L > 0:
            n_seg, per_seg = _segmentation(batch, d, L, dev)
            grid = (batch, triton.cdiv(d, BLOCK_D), n_seg)

            def launch(g0, gend, sdt, local):
                _scan_bwd_kernel[grid](
                    u, dl, A, B, C, D, z, bias, ck, gy, gu, gdl, gz, gB, gC, gA, gD, gb,
                    g0, gend, sdt, d, n, L, per_seg,
                    *u.stride(), *dl.stride(), *B.stride(), *C.stride(), *_strides3(z),
                    *gy.stride(), *gu.stride(), *gdl.stride(), *_strides3(gz),
                    LOCAL=local, HAS_G0=g0 is not None, **ctx.flags, **ctx.tiles)

            g0 = None
            if n_seg > 1:  # adjoints from zero per segment, then chain them last to first
                gend = torch.empty(batch, n_seg, d, n, device=dev, dtype=torch.float32)
                sdt = torch.empty(batch, n_seg, d, device=dev, dtype=torch.float32)
                launch(None, gend, sdt, True)
                g0 = _chain_segments(gend, sdt, A, backward=True, tiles=ctx.tiles)
            launch(g0, None, None, False)
        else:
            gu.zero_(), gdl.zero_()
            if gz is not None:
                gz.zero_()
        grads = (gu, gdl, gA, gB, gC, gD, gz, gb)
        out = [None if g is None or not need else g.to(dtype)
               for g, need, dtype in zip(grads, ctx.needs_input_grad[:8], ctx.dtypes)]
        return (*out, None, None)


def _chain_segments(end, total, A, backward: bool, tiles: dict):
    """What enters each segment, given each segment's result from zero (``end``) and the sum
    of its steps' dt (``total``); see ``_segment_carry_kernel``."""
    batch, n_seg, d, n = end.shape
    out = torch.empty_like(end)
    _segment_carry_kernel[(batch, triton.cdiv(d, tiles["BLOCK_D"]))](
        end, total, A, out, n_seg, d, n, BACKWARD=backward, BLOCK_D=tiles["BLOCK_D"],
        NP=tiles["NP"], num_warps=tiles["num_warps"])
    return out


def selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, softplus, reverse):
    """The scan on the Triton kernels (CUDA tensors, or CPU tensors under the interpreter).

    Args:
        u, delta, A, B, C, D, z, delta_bias, softplus, reverse: as
            :func:`~seq2exp_plugin.nn.scan.selective_scan` (``softplus`` is its
            ``delta_softplus``).

    Returns:
        y ``(batch, d, L)`` in u's dtype.
    """
    if u.device.type != "cuda" and not _INTERPRETED:
        raise ValueError(f"selective_scan backend 'triton' needs CUDA tensors, got {u.device} "
                         "(CPU tensors run only under TRITON_INTERPRET=1, set before import)")
    return _TritonScanFn.apply(u, delta, A, B, C, D, z, delta_bias, softplus, reverse)
