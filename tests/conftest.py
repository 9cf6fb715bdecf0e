"""Shared pytest fixtures."""

from __future__ import annotations

import os
import types
from pathlib import Path

import numpy as np
import pytest

# Triton kernels run on CPU tensors only under its interpreter, and triton reads this variable
# when it is first imported (Lightning imports it): set here, before any test module loads.
# Nothing else is affected: the package uses triton only for CUDA tensors or when asked.
os.environ.setdefault("TRITON_INTERPRET", "1")

# ================================================================================================
# Data readers and windows (tests/test_genome.py, test_tracks.py, test_hic.py, test_genes.py,
# test_windows.py): a tiny synthetic genome world written with pyfaidx-compatible FASTA,
# pyBigWig, cooler and anndata, plus the paths of the real fixtures.
# ================================================================================================
def _find_real_dir() -> Path:
    repo = Path(__file__).resolve().parents[1]
    candidates = [os.environ.get("SEQ2EXP_REAL_FIXTURES"), repo.parent / "shared" / "fixtures" / "real",
                  repo / "shared" / "fixtures" / "real"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return repo.parent / "shared" / "fixtures" / "real"


REAL_DIR = _find_real_dir()
REAL_FASTA = REAL_DIR / "hg38_chr2_1-2333275.fa.gz"
REAL_TSS_BED = REAL_DIR / "hg38_promoters_cage_corrected.bed"
REAL_COOL = REAL_DIR / "hg19.GM12878-MboI.matrix.2000kb.cool"
REAL_CHR2_LENGTH = 2_333_275

REAL_K562_CHR22 = REAL_DIR / "k562_chr22_hg19"
REAL_K562_CHR16 = REAL_DIR / "k562_chr16_hg38"

WORLD_SIZES = {"chr1": 30_000, "chr2": 20_000, "chrM": 1_000}  # FASTA; tracks/Hi-C lack chrM
WORLD_RES = 1_000  # Hi-C bin size


def need_real(*paths: Path) -> None:
    """Skip a test whose real fixtures are absent - but fail it where ``CI`` is set: there the
    fixtures must be present, and a silent skip would hide that the tests on real data never ran."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        message = f"real fixtures not found under {REAL_DIR}: {', '.join(p.name for p in missing)}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set: get ../shared/fixtures or set SEQ2EXP_REAL_FIXTURES)",
                        pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def real_paths():
    need_real(REAL_FASTA, REAL_TSS_BED, REAL_COOL)
    return types.SimpleNamespace(fasta=REAL_FASTA, bed=REAL_TSS_BED, cool=REAL_COOL, dir=REAL_DIR,
                                 chr2_length=REAL_CHR2_LENGTH)


@pytest.fixture(scope="session")
def real_k562_chr22() -> Path:
    """``k562_chr22_hg19/``: real hg19 chr22 DNA, K562 DNase/H3K27ac/Hi-C, TPM, ABC links (its README)."""
    need_real(*(REAL_K562_CHR22 / f for f in ("chr22.fa.gz", "dnase.bw", "h3k27ac.bw", "hic.cool",
                                             "tss.bed", "expression.tsv", "abc_links.tsv")))
    return REAL_K562_CHR22


@pytest.fixture(scope="session")
def real_k562_chr16() -> Path:
    """``k562_chr16_hg38/``: K562 DNase/H3K27ac over the whole hg38 chr16, TSS, TPM (no DNA, no Hi-C)."""
    need_real(*(REAL_K562_CHR16 / f for f in ("dnase.bw", "h3k27ac.bw", "tss.bed", "expression.tsv",
                                             "blacklist.bed")))
    return REAL_K562_CHR16


@pytest.fixture(scope="session")
def seq2exp_cache(tmp_path_factory):
    """Point the package's index cache at a temporary folder for the session."""
    d = tmp_path_factory.mktemp("seq2exp_cache")
    old = os.environ.get("SEQ2EXP_CACHE_DIR")
    os.environ["SEQ2EXP_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("SEQ2EXP_CACHE_DIR", None)
    else:
        os.environ["SEQ2EXP_CACHE_DIR"] = old


def load_benchmark(name: str) -> types.ModuleType:
    """``benchmarks/<name>.py`` as a module (benchmarks/ is not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_fasta(path, seqs: dict, width: int = 60, bgzip: bool = False) -> Path:
    text = "".join(
        f">{name}\n" + "".join(s[i : i + width] + "\n" for i in range(0, len(s), width)) for name, s in seqs.items()
    ).encode()
    path = Path(path)
    if bgzip:
        from Bio import bgzf

        with bgzf.BgzfWriter(str(path), "wb") as fh:
            fh.write(text)
    else:
        path.write_bytes(text)
    return path


@pytest.fixture(scope="session")
def fasta_writer():
    """``write_fasta(path, {name: seq}, width=60, bgzip=False)`` for tests that need their own FASTA."""
    return write_fasta


def write_bigwig_per_bp(path, arrays: dict, sizes: dict) -> Path:
    """bigWig with one value per bp (NaN stored as NaN); regions given as [start, end) -> skipped if
    arrays[chrom] holds None there (use a masked array: masked = no entry)."""
    import pyBigWig

    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([(c, int(n)) for c, n in sizes.items()])
    for c in sizes:
        if c not in arrays:
            continue
        a = arrays[c]
        mask = np.ma.getmaskarray(a)
        vals = np.ma.getdata(a).astype(np.float64)
        # write runs of unmasked positions
        i = 0
        n = len(vals)
        while i < n:
            if mask[i]:
                i += 1
                continue
            j = i
            while j < n and not mask[j]:
                j += 1
            bw.addEntries(c, i, values=vals[i:j].tolist(), span=1, step=1)
            i = j
    bw.close()
    return Path(path)


def write_cool(path, mats: dict, sizes: dict, res: int) -> Path:
    """A .cool file from dense symmetric per-chromosome matrices (intra-chromosomal only)."""
    import cooler
    import pandas as pd

    bins = []
    offsets = {}
    off = 0
    for c, n in sizes.items():
        nb = -(-n // res)
        starts = np.arange(nb) * res
        bins.append(pd.DataFrame({"chrom": c, "start": starts, "end": np.minimum(starts + res, n)}))
        offsets[c] = off
        off += nb
    bins = pd.concat(bins, ignore_index=True)
    pix = []
    for c, m in mats.items():
        i, j = np.nonzero(np.triu(m))
        pix.append(pd.DataFrame({"bin1_id": i + offsets[c], "bin2_id": j + offsets[c], "count": m[i, j].astype(np.int64)}))
    pix = pd.concat(pix, ignore_index=True).sort_values(["bin1_id", "bin2_id"]).reset_index(drop=True)
    cooler.create_cooler(str(path), bins, pix, ordered=True)
    return Path(path)


@pytest.fixture(scope="session")
def data_world(tmp_path_factory, seq2exp_cache):
    """Tiny synthetic inputs with known contents.

    - genome.fa / genome.fa.gz (bgzip): chr1 30 kb, chr2 20 kb, chrM 1 kb; chr1[100:200] lower
      case, chr1[1000:1100] N, chr1[2000] 'R'.
    - dnase.bw: per-bp values on chr1/chr2; chr2[500:600) NaN, chr2[5000:6000) no entries.
      h3k27ac.bw: per-bp values (chr1, chr2). Neither has chrM.
    - hic.cool (1 kb bins, raw) and hic_balanced.cool (with 'weight'); dense matrices in ``mats``.
    - blacklist.bed, tss.bed (chrom spelled "1" / "chr2"), expression.tsv, genes.h5ad.
    """
    import pandas as pd

    from seq2exp_plugin.data.genes import build_gene_table

    root = tmp_path_factory.mktemp("data_world")
    rng = np.random.default_rng(1234)
    seqs = {c: "".join(rng.choice(list("ACGT"), n)) for c, n in WORLD_SIZES.items()}
    s1 = list(seqs["chr1"])
    s1[100:200] = [b.lower() for b in s1[100:200]]
    s1[1000:1100] = ["N"] * 100
    s1[2000] = "R"
    seqs["chr1"] = "".join(s1)
    fasta = write_fasta(root / "genome.fa", seqs)
    fasta_gz = write_fasta(root / "genome.fa.gz", seqs, bgzip=True)

    track_sizes = {c: n for c, n in WORLD_SIZES.items() if c != "chrM"}
    dnase = {c: rng.gamma(2.0, 1.0, n).astype(np.float32) for c, n in track_sizes.items()}
    dn_written = {c: np.ma.masked_array(v.astype(np.float64), mask=np.zeros(len(v), bool)) for c, v in dnase.items()}
    dn_written["chr2"][500:600] = np.nan
    dn_written["chr2"].mask[5000:6000] = True
    dnase_expected = {c: v.copy() for c, v in dnase.items()}
    dnase_expected["chr2"][500:600] = 0.0
    dnase_expected["chr2"][5000:6000] = 0.0
    write_bigwig_per_bp(root / "dnase.bw", dn_written, track_sizes)
    k27 = {c: rng.gamma(1.0, 2.0, n).astype(np.float32) for c, n in track_sizes.items()}
    write_bigwig_per_bp(root / "h3k27ac.bw", {c: np.ma.masked_array(v.astype(np.float64)) for c, v in k27.items()},
                        track_sizes)

    mats = {}
    for c, n in track_sizes.items():
        nb = -(-n // WORLD_RES)
        i, j = np.meshgrid(np.arange(nb), np.arange(nb), indexing="ij")
        lam = 200.0 / (1.0 + np.abs(i - j)) ** 1.0
        m = rng.poisson(lam)
        m = np.triu(m) + np.triu(m, 1).T
        mats[c] = m.astype(np.int64)
    cool = write_cool(root / "hic.cool", mats, track_sizes, WORLD_RES)
    cool_bal = write_cool(root / "hic_balanced.cool", mats, track_sizes, WORLD_RES)
    import cooler

    cooler.balance_cooler(cooler.Cooler(str(cool_bal)), store=True, cis_only=True)

    (root / "blacklist.bed").write_text("chr1\t3000\t3100\nchr1\t3050\t3200\tmerged\nchr2\t100\t150\n")
    tss_rows = [
        ("1", 5_000, 5_001, "G1", 0, "+"),
        ("1", 15_000, 15_001, "G2", 0, "-"),
        ("1", 700, 701, "G3", 0, "+"),          # window runs off the chromosome start
        ("chr2", 18_500, 18_501, "G4", 0, "-"),  # window runs off the chromosome end
        ("chr2", 10_000, 10_001, "G5", 0, "+"),
    ]
    (root / "tss.bed").write_text("".join("\t".join(map(str, r)) + "\n" for r in tss_rows))
    expr = pd.DataFrame({"gene_id": ["G1", "G2", "G3", "G4"], "K562": [10.0, 0.0, 99.0, 3.5],
                         "GM12878": [1.0, 2.0, 3.0, 4.0]})
    expr.to_csv(root / "expression.tsv", sep="\t", index=False)
    tracks = {ct: {"dnase": str(root / "dnase.bw"), "h3k27ac": str(root / "h3k27ac.bw")} for ct in ("K562", "GM12878")}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_gene_table(str(root / "tss.bed"), str(root / "expression.tsv"), tracks, genome=str(fasta),
                         split={"valid": ["chr2"], "test": []}, out=root / "genes.h5ad")
    return types.SimpleNamespace(
        root=root, seqs=seqs, fasta=fasta, fasta_gz=fasta_gz, sizes=dict(WORLD_SIZES), track_sizes=track_sizes,
        dnase_bw=root / "dnase.bw", h3k27ac_bw=root / "h3k27ac.bw", dnase=dnase_expected, h3k27ac=k27,
        cool=cool, cool_balanced=cool_bal, mats=mats, res=WORLD_RES, blacklist=root / "blacklist.bed",
        tss_bed=root / "tss.bed", tss_rows=tss_rows, expression=root / "expression.tsv", expr=expr,
        tracks=tracks, genes=root / "genes.h5ad",
    )


# ================================================================================================


# ================================================================================================
# Training and prediction (tests/test_train.py, test_predict.py, ...): tiny synthetic data from
# `seq2exp synth`, a tiny model configuration, and one short training run shared by the session.
# ================================================================================================
TINY_STACK = {"d_model": 8, "n_layers": 1, "d_state": 4}
TINY_WINDOW = 2000


def write_train_config(synth: Path, directory: Path, **extra) -> Path:
    """A `seq2exp train` YAML for the tiny synth data (``extra``: ``"train.max_steps": 2``...)."""
    import yaml

    from seq2exp_plugin.typed_config import set_entries

    cell = "synthA"
    config = {
        "variant": "seq2exp",
        "preset": "soft",
        "scaling": "auto",  # a paper preset reads raw inputs unless told; these tiny runs scale them
        "model": {"generator": TINY_STACK, "predictor": TINY_STACK, "pool_width": 200,
                  "mask": {"promoter_keep": 200}, "signal_transform": "log1p"},
        "data": {"genes": str(synth / "genes.h5ad"), "genome": str(synth / "genome.fa"),
                 "signals": {s: str(synth / cell / f"{s}.{'cool' if s == 'hic' else 'bw'}")
                             for s in ("h3k27ac", "dnase", "hic")},
                 "cell_type": cell, "window": TINY_WINDOW, "blacklist": str(synth / "blacklist.bed"),
                 "num_workers": 0},
        "train": {"max_steps": 6, "batch_size": 2, "warmup_steps": 2, "val_every_steps": 3,
                  "progress_bar": False},
        "out_dir": str(directory / "run"),
    }
    set_entries(config, extra, "write_train_config")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def per_cell_type_checkpoint(path: Path, cell_types=("synthA", "synthB", "synthC"), window: int = 2000) -> Path:
    """The bundled Demo checkpoint (a shared head, trained on synthA) as one with a per-cell-type
    head over ``cell_types``, run on ``window`` bp: its last layer's output once per cell type,
    scaled by 1, 1.5, 2... so that each cell type's prediction differs. Cheaper than training one;
    the adapters only need the outputs told apart."""
    import torch

    demo = Path(__file__).resolve().parents[1] / "model_zoo" / "Seq2Exp" / "Demo"
    checkpoint = torch.load(demo / "best.ckpt", weights_only=True)
    params, names = checkpoint["hyper_parameters"], list(cell_types)
    params["model_params"].update(celltype_head=True, cell_types=names)
    run = params["train_params"]["seq2exp"]
    run["model"].update(celltype_head=True, cell_types=names)
    run["data"]["window"] = window
    # the Demo's paths are relative to its folder
    run["data"].update({k: str(demo / v) for k, v in run["data"].items() if k in ("genes", "genome", "blacklist")})
    if len(names) > 1:
        run["data"].update(cell_types=names, signals={k: str(demo / v).replace("synthA", "{cell_type}")
                                                      for k, v in run["data"]["signals"].items()})
    for key in ("weight", "bias"):
        name = f"model.net.predictor.head.4.{key}"
        last = checkpoint["state_dict"][name]
        checkpoint["state_dict"][name] = torch.cat([last * (1 + 0.5 * k) for k in range(len(names))])
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """`seq2exp synth --preset tiny --seed 3` output (two cell types, ground truth)."""
    from seq2exp_plugin.data.synth import SynthParams, generate

    out = tmp_path_factory.mktemp("synth") / "tiny"
    generate(out, SynthParams.from_preset("tiny", seed=3))
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_synth, tmp_path_factory) -> Path:
    """best.ckpt of a 4-step Seq2Exp-soft run on ``tiny_synth`` (cell type synthA)."""
    from seq2exp_plugin.train.config import load_config
    from seq2exp_plugin.train.fit import fit

    directory = tmp_path_factory.mktemp("tiny_run")
    run = load_config(write_train_config(tiny_synth, directory,
                                         **{"train.max_steps": 4, "train.val_every_steps": 4}))
    fit(run)
    return Path(run.out_dir) / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="session")
def tiny_rc_run(tiny_checkpoint):
    """``(run, dataset)`` of ``tiny_checkpoint`` with its "-" genes reverse-complemented (what
    ``--data rc_minus_strand=true`` gives ``seq2exp ism`` and ``seq2exp variants``)."""
    from seq2exp_plugin.train.evaluate import load_run
    from seq2exp_plugin.train.fit import make_dataset

    _, run = load_run(str(tiny_checkpoint), {"rc_minus_strand": True})
    return run, make_dataset(run, None)
