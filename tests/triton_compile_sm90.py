"""Compile the package's Triton kernels for an sm_90 GPU (H100/H200) without one, and report
each kernel's registers and spill stack (``cuobjdump -res-usage`` on the cubin).

Run as a script in a process WITHOUT ``TRITON_INTERPRET`` (tests/test_triton_compile.py does):
the interpreter accepts programs that the compiler rejects, so this is the check that the
kernels are valid Triton for a real GPU. Prints one JSON object: {variant: {"regs", "stack"}}.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from seq2exp_plugin.nn import triton_conv, triton_scan

TARGET = GPUTarget("cuda", 90, 32)
FLOAT32_POINTERS = {"A_ptr", "D_ptr", "bias_ptr", "ck_ptr", "gB_ptr", "gC_ptr", "gA_ptr",
                    "gD_ptr", "gbias_ptr", "w_ptr", "gw_ptr", "gb_ptr", "h0_ptr", "hend_ptr",
                    "sdt_ptr", "g0_ptr", "gend_ptr", "end_ptr", "sum_ptr", "out_ptr"}


def signature(fn, constexprs, activation):
    """Pointers: float32 for parameters and float32 buffers, ``activation`` for the rest."""
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = "*fp32" if name in FLOAT32_POINTERS else activation
        else:
            sig[name] = "i32"
    return sig


def resource_usage(kernel) -> dict:
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                             "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as fh:
        fh.write(kernel.asm["cubin"])
        fh.flush()
        out = subprocess.run([cuobjdump, "-res-usage", fh.name], capture_output=True,
                             text=True, check=True).stdout
    regs, stack = re.search(r"REG:(\d+)\s+STACK:(\d+)", out).groups()
    return {"regs": int(regs), "stack": int(stack)}


def variants():
    scan_tiles = dict(BLOCK_D=triton_scan.BLOCK_D, NP=16, CHUNK=triton_scan.CHUNK)
    conv_tiles = dict(BLOCK_L=triton_conv.BLOCK_L, BLOCK_D=triton_conv.BLOCK_D)
    for options in (True, False):  # every optional input given / none (None pointers)
        opt = dict(HAS_D=options, HAS_Z=options, HAS_BIAS=options, SOFTPLUS=options)
        none = {} if options else {"D_ptr": None, "z_ptr": None, "bias_ptr": None,
                                   "gD_ptr": None, "gz_ptr": None, "gbias_ptr": None}
        for local in (False, True):  # second / first pass of a segmented scan
            fwd = dict(opt, REVERSE=False, SAVE_CK=not local, LOCAL=local, HAS_H0=not local)
            bwd = dict(opt, REVERSE=True, LOCAL=local, HAS_G0=not local)
            yield (f"scan_fwd options={options} local={local}", triton_scan._scan_fwd_kernel,
                   dict(fwd, **scan_tiles), none, triton_scan.NUM_WARPS)
            yield (f"scan_bwd options={options} local={local}", triton_scan._scan_bwd_kernel,
                   dict(bwd, **scan_tiles), none, triton_scan.NUM_WARPS)
    yield ("segment_carry", triton_scan._segment_carry_kernel,
           dict(BACKWARD=True, BLOCK_D=triton_scan.BLOCK_D, NP=16), {}, triton_scan.NUM_WARPS)
    conv = dict(K=4, HAS_BIAS=True, REVERSE=True, **conv_tiles)
    yield "conv_fwd", triton_conv._conv_fwd_kernel, conv, {}, triton_conv.NUM_WARPS
    yield "conv_bwd", triton_conv._conv_bwd_kernel, conv, {}, triton_conv.NUM_WARPS


def main() -> int:
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("unset TRITON_INTERPRET to compile", file=sys.stderr)
        return 2
    report = {}
    for name, fn, constexprs, none_pointers, num_warps in variants():
        consts = {**constexprs, **{k: v for k, v in none_pointers.items() if k in fn.arg_names}}
        src = ASTSource(fn, signature(fn, consts, "*bf16"), consts)
        kernel = triton.compile(src, target=TARGET, options={"num_warps": num_warps})
        report[name] = resource_usage(kernel)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
