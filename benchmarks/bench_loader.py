"""Throughput of the TSS-window loader (WindowDataset + DataLoader) at L = 200 kb.

Builds its own synthetic inputs of realistic density (a FASTA, two bigWigs with ENCODE-like
variable-length intervals, a 5 kb .cool with contacts up to 2 Mb, a gene table), then times
``DataLoader(WindowDataset(...), num_workers=W)`` and prints windows/s and peak RSS.

    python benchmarks/bench_loader.py                   # defaults: 3 x 40 Mb, 2 workers
    python benchmarks/bench_loader.py --workers 0 2 --n-windows 200 --bgzip
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def build_inputs(root: Path, chrom_mb: float, n_chroms: int, n_genes: int, bgzip: bool, seed: int = 0):
    import cooler
    import pandas as pd
    import pyBigWig

    from seq2exp_plugin.data.genes import build_gene_table

    rng = np.random.default_rng(seed)
    sizes = {f"chr{i + 1}": int(chrom_mb * 1e6) + i * 1000 for i in range(n_chroms)}
    t0 = time.perf_counter()
    # FASTA (60 bp lines), optionally bgzip
    fa = root / ("genome.fa.gz" if bgzip else "genome.fa")
    lut = np.frombuffer(b"ACGT", dtype=np.uint8)
    if bgzip:
        from Bio import bgzf

        fh = bgzf.BgzfWriter(str(fa), "wb")
    else:
        fh = open(fa, "wb")
    with fh:
        for c, n in sizes.items():
            fh.write(f">{c}\n".encode())
            seq = lut[rng.integers(0, 4, n)]
            pad = (-n) % 60
            lines = np.concatenate([seq, np.full(pad, ord("N"), np.uint8)]).reshape(-1, 60)
            body = np.concatenate([lines, np.full((lines.shape[0], 1), ord("\n"), np.uint8)], axis=1).tobytes()
            if pad:
                body = body[: -(pad + 1)] + b"\n"
            fh.write(body)
    # bigWigs: variable-length intervals (10-200 bp), 80% of the genome covered
    bws = {}
    for name in ("dnase", "h3k27ac"):
        path = root / f"{name}.bw"
        bw = pyBigWig.open(str(path), "w")
        bw.addHeader(list(sizes.items()))
        for c, n in sizes.items():
            lens = rng.integers(10, 200, n // 50)
            starts = np.cumsum(np.concatenate([[0], lens[:-1]]))
            keep = (starts + lens <= n) & (rng.random(len(lens)) < 0.8)
            s, ln = starts[keep], lens[keep]
            bw.addEntries([c] * len(s), s.tolist(), ends=(s + ln).tolist(),
                          values=rng.gamma(1.0, 1.0, len(s)).tolist())
        bw.close()
        bws[name] = path
    # .cool at 5 kb, contacts to 2 Mb with power-law decay
    res = 5000
    bins, pix, off = [], [], 0
    for c, n in sizes.items():
        nb = -(-n // res)
        st = np.arange(nb) * res
        bins.append(pd.DataFrame({"chrom": c, "start": st, "end": np.minimum(st + res, n)}))
        for d in range(0, 400):
            i = np.arange(nb - d)
            cnt = rng.poisson(100.0 / (1 + d) ** 0.9, len(i))
            k = cnt > 0
            pix.append(pd.DataFrame({"bin1_id": i[k] + off, "bin2_id": i[k] + d + off, "count": cnt[k]}))
        off += nb
    bins = pd.concat(bins, ignore_index=True)
    pix = pd.concat(pix, ignore_index=True).sort_values(["bin1_id", "bin2_id"]).reset_index(drop=True)
    cool = root / "hic.cool"
    cooler.create_cooler(str(cool), bins, pix, ordered=True)
    # genes
    rows = []
    for g in range(n_genes):
        c = list(sizes)[g % n_chroms]
        t = int(rng.integers(0, sizes[c]))
        rows.append((c, t, t + 1, f"GENE{g:05d}", 0, "+-"[g % 2]))
    pd.DataFrame(rows).to_csv(root / "tss.bed", sep="\t", header=False, index=False)
    expr = pd.DataFrame({"gene_id": [r[3] for r in rows], "K562": rng.gamma(1.0, 10.0, n_genes)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_gene_table(root / "tss.bed", expr, {"K562": {"dnase": bws["dnase"], "h3k27ac": bws["h3k27ac"]}},
                         out=root / "genes.h5ad")
    build_s = time.perf_counter() - t0
    sizes_mb = {p.name: p.stat().st_size / 1e6 for p in root.iterdir() if p.is_file()}
    return fa, bws, cool, root / "genes.h5ad", build_s, sizes_mb


def _vm_hwm_mb(pid) -> float:
    """Peak resident set (VmHWM) of a live process, in MB (Linux)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=200_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--n-windows", type=int, default=200)
    ap.add_argument("--chrom-mb", type=float, default=40.0)
    ap.add_argument("--n-chroms", type=int, default=3)
    ap.add_argument("--bgzip", action="store_true", help="bgzip the FASTA (slower random access)")
    ap.add_argument("--rc", action="store_true", help="rc_minus_strand=True")
    ap.add_argument("--dir", type=Path, default=None, help="keep the inputs there (default: a temp dir, removed)")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    import torch

    from seq2exp_plugin.data.windows import WindowDataset

    torch.set_num_threads(1)
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_loader_"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SEQ2EXP_CACHE_DIR", str(root / "cache"))
    if args.build_only:
        _, _, _, _, build_s, sizes_mb = build_inputs(root, args.chrom_mb, args.n_chroms,
                                                     max(args.n_windows, 50), args.bgzip)
        print(f"inputs built in {build_s:.1f} s under {root}: "
              + ", ".join(f"{k} {v:.1f} MB" for k, v in sorted(sizes_mb.items())))
        return 0
    try:
        # build in a child process so the peak RSS printed below is the loader's alone
        cmd = [sys.executable, str(Path(__file__).resolve()), "--build-only", "--dir", str(root),
               "--chrom-mb", str(args.chrom_mb), "--n-chroms", str(args.n_chroms),
               "--n-windows", str(args.n_windows)] + (["--bgzip"] if args.bgzip else [])
        subprocess.run(cmd, check=True)
        fa = root / ("genome.fa.gz" if args.bgzip else "genome.fa")
        bws = {"dnase": root / "dnase.bw", "h3k27ac": root / "h3k27ac.bw"}
        cool, genes = root / "hic.cool", root / "genes.h5ad"
        signals = {"h3k27ac": bws["h3k27ac"], "dnase": bws["dnase"], "hic": cool}
        for w in args.workers:
            ds = WindowDataset(genes, fa, signals, "K562", window=args.window, rc_minus_strand=args.rc,
                               hic_options={"balance": False})
            n = min(args.n_windows, len(ds))
            sub = torch.utils.data.Subset(ds, list(range(n)))
            dl = torch.utils.data.DataLoader(sub, batch_size=args.batch_size, num_workers=w, shuffle=False)
            t0 = time.perf_counter()
            first = None
            count = 0
            worker_peak = 0.0
            it = iter(dl)
            for k, b in enumerate(it):
                count += len(b["gene_id"])
                if first is None:
                    first = time.perf_counter() - t0
                if k % 10 == 0 or count >= n - args.batch_size:
                    for p in getattr(it, "_workers", []):
                        worker_peak = max(worker_peak, _vm_hwm_mb(p.pid))
            dt = time.perf_counter() - t0
            steady = (count - args.batch_size) / max(dt - first, 1e-9) if count > args.batch_size else float("nan")
            me = _vm_hwm_mb(os.getpid())
            print(f"window={args.window} workers={w} batch={args.batch_size} fasta={'bgzip' if args.bgzip else 'plain'}: "
                  f"{count} windows in {dt:.2f} s = {count / dt:.1f} windows/s "
                  f"(first batch {first:.2f} s, steady {steady:.1f} windows/s); "
                  f"peak RSS main {me:.0f} MB" + (f", per worker {worker_peak:.0f} MB" if w else ""))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
