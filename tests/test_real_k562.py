"""Real K562 biology end to end (``../shared/fixtures/real/k562_*``, see their README.md).

- hg19 chr22: real soft-masked bgzip DNA, DNase, H3K27ac, Hi-C and TPM through ``seq2exp genes``
  -> ``train`` (a tiny Seq2Exp-learned, a few steps, 4 kb windows) -> ``predict`` -> ``ism`` on a
  minus-strand gene -> ``variants`` at real positions.
- hg38 chr16: ``seq2exp cv`` from files, with the all-N chr16 its README describes and ABC's
  power-law contact in place of the Hi-C it lacks.

Without the fixtures these tests skip, and fail where ``CI`` is set (conftest ``need_real``).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from seq2exp_plugin.cli import main

from conftest import TINY_STACK

WINDOW = 4000
MINUS_GENE = "CECR6"  # "-" strand, TSS 17,602,256 (0-based), in the real-DNA stretch of chr22
TINY_MODEL = {"generator": TINY_STACK, "predictor": TINY_STACK, "pool_width": 200, "mask": {"promoter_keep": 200}}


def _tss(bed: Path) -> pd.DataFrame:
    return pd.read_csv(bed, sep="\t", header=None, names=["chrom", "start", "end", "gene_id", "score", "strand"])


@pytest.fixture(scope="module")
def chr22_run(real_k562_chr22, tmp_path_factory):
    """The gene table of chr22 (``seq2exp genes``) and a 4-step Seq2Exp-learned run on it,
    contiguous folds (3, test fold 0), minus-strand genes reverse-complemented."""
    d, out = real_k562_chr22, tmp_path_factory.mktemp("k562_chr22")
    assert main(["genes", "--tss", str(d / "tss.bed"), "--expression", str(d / "expression.tsv"),
                 "--expression-columns", "K562=K562",
                 "--tracks", f"K562:dnase={d / 'dnase.bw'},h3k27ac={d / 'h3k27ac.bw'}",
                 "--out", str(out / "genes.h5ad")]) == 0
    config = {"variant": "seq2exp", "preset": "learned", "model": TINY_MODEL,
              "data": {"genes": "genes.h5ad", "genome": str(d / "chr22.fa.gz"),
                       "signals": {"h3k27ac": str(d / "h3k27ac.bw"), "dnase": str(d / "dnase.bw"),
                                   "hic": str(d / "hic.cool")},
                       "cell_type": "K562", "window": WINDOW, "folds": 3, "fold": 0,
                       "rc_minus_strand": True, "num_workers": 0},
              "train": {"max_steps": 4, "batch_size": 4, "warmup_steps": 1, "val_every_steps": 4,
                        "progress_bar": False},
              "out_dir": "run"}
    (out / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(out / "run.yaml")]) == 0
    return out, out / "run" / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def chr22_dna(real_k562_chr22) -> str:
    """chr22 of the bgzip FASTA read with gzip alone (an independent reference for the windows)."""
    with gzip.open(real_k562_chr22 / "chr22.fa.gz", "rt") as fh:
        return "".join(line.strip() for line in fh if not line.startswith(">"))


def test_genes_counts_and_asks_for_columns(real_k562_chr22, chr22_run, tmp_path, capsys):
    """86 of the 111 genes have a TPM: the table keeps the others with NaN and says so; the
    PRO-seq column is not a cell type with tracks: the error says how to choose columns."""
    import anndata

    d = real_k562_chr22
    table = anndata.read_h5ad(chr22_run[0] / "genes.h5ad")
    assert table.n_obs == 111 and int(np.isfinite(table.X).sum()) == 86
    args = ["genes", "--tss", str(d / "tss.bed"), "--expression", str(d / "expression.tsv"),
            "--tracks", f"K562:dnase={d / 'dnase.bw'},h3k27ac={d / 'h3k27ac.bw'}"]
    assert main([*args, "--out", str(tmp_path / "g.h5ad")]) == 2
    assert "--expression-columns K562=K562" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="25 of 111 genes .* kept with a NaN target"):
        assert main([*args, "--expression-columns", "K562=K562", "--out", str(tmp_path / "g.h5ad")]) == 0
    assert "with expression: K562 86" in capsys.readouterr().out


def test_chr22_folds_are_balanced_on_scored_genes(chr22_run):
    from seq2exp_plugin.train.config import load_config
    from seq2exp_plugin.train.fit import make_dataset

    run = load_config(chr22_run[0] / "run.yaml")
    sizes = sorted(len(make_dataset(run, split, require_target=True)) for split in ("train", "valid", "test"))
    assert sizes == [28, 29, 29]  # 86 scored genes in 3 blocks (was 24-32 when the 25 NaN counted)


def test_chr22_predict_writes_readable_tracks(chr22_run, tmp_path):
    import pyBigWig

    out = tmp_path / "pred"
    genes = ["IL17RA", MINUS_GENE]
    assert main(["predict", str(chr22_run[1]), "--out", str(out), "--genes", *genes, "--plots", "0"]) == 0
    windows = {"IL17RA": 17_565_848, MINUS_GENE: 17_602_256}
    bw = pyBigWig.open(str(out / "mask.K562.bw"))
    assert bw.chroms() == {"chr22": 22_000_000}
    for gene, t in windows.items():
        values = bw.values("chr22", t - WINDOW // 2, t + WINDOW // 2, numpy=True)
        assert np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()
    bw.close()
    elements = pd.read_csv(out / "elements.K562.bed", sep="\t")
    assert set(elements["gene_id"]) <= set(genes) and len(elements)
    for row in elements.itertuples():
        t = windows[row.gene_id]
        assert t - WINDOW // 2 <= row.start < row.end <= t + WINDOW // 2
    predicted = pd.read_csv(out / "expression.tsv", sep="\t")
    assert set(predicted["gene_id"]) == set(genes) and np.isfinite(predicted["predicted"]).all()


def test_chr22_ism_on_a_minus_strand_gene(chr22_run, chr22_dna, tmp_path):
    """ISM on real soft-masked DNA through a reverse-complemented window: every reference base it
    reports is the genome's (+ strand, upper case), every alternative one of the other three."""
    out = tmp_path / "ism"
    assert main(["ism", str(chr22_run[1]), "--gene", MINUS_GENE, "--out", str(out), "--bp-budget", "8",
                 "--top-elements", "1", "--plot-elements", "0", "--batch-size", "24"]) == 0
    ism = pd.read_csv(out / "ism.tsv", sep="\t")
    assert len(ism) == 3 * 8 and set(ism["chrom"]) == {"chr22"}
    assert (ism["ref"] == [chr22_dna[p - 1].upper() for p in ism["pos"]]).all()
    assert (ism["alt"] != ism["ref"]).all() and ism.groupby("pos")["alt"].nunique().eq(3).all()
    end = 17_602_256 - WINDOW // 2 + WINDOW  # window index i holds genomic end - 1 - i ("-" gene)
    assert (ism["window_index"] == end - ism["pos"]).all()


def test_chr22_variants_at_real_positions(chr22_run, chr22_dna, tmp_path):
    """A variant on a soft-masked (lower-case) base and one at the TSS are scored with their
    reference alleles checked against the genome; a wrong reference is refused."""
    positions = {"softmasked": 17_601_541, "tss": 17_602_257}  # 1-based
    assert chr22_dna[positions["softmasked"] - 1].islower()
    rows = [(name, pos, chr22_dna[pos - 1].upper()) for name, pos in positions.items()]
    table = tmp_path / "v.tsv"
    table.write_text("chrom\tpos\tref\talt\tid\n" + "".join(
        f"chr22\t{pos}\t{ref}\t{'C' if ref != 'C' else 'A'}\t{name}\n" for name, pos, ref in rows))
    out = tmp_path / "var"
    assert main(["variants", str(chr22_run[1]), "--variants", str(table), "--out", str(out),
                 "--genes", MINUS_GENE, "IL17RA"]) == 0
    scored = pd.read_csv(out / "variants.tsv", sep="\t").set_index("variant_id")
    assert set(scored.index) == set(positions) and (scored["gene_id"] == MINUS_GENE).all()
    assert np.isfinite(scored["delta"]).all()
    assert scored.loc["tss", "distance_to_tss"] == 0
    wrong = tmp_path / "wrong.tsv"
    wrong.write_text(f"chrom\tpos\tref\talt\nchr22\t{positions['tss']}\tT\tC\n")
    assert chr22_dna[positions["tss"] - 1].upper() != "T"
    assert main(["variants", str(chr22_run[1]), "--variants", str(wrong), "--out", str(tmp_path / "w")]) == 2


# ------------------------------------------------------------------------------------ chr16
@pytest.fixture(scope="module")
def all_n_chr16(real_k562_chr16, tmp_path_factory) -> Path:
    """The all-N hg38 chr16 of the fixture's README (no DNA is shipped), with its .fai."""
    length, width = 90_338_345, 60
    path = tmp_path_factory.mktemp("chr16") / "chr16.fa"
    with open(path, "w") as f:
        f.write(">chr16\n" + ("N" * width + "\n") * (length // width) + "N" * (length % width) + "\n")
    Path(f"{path}.fai").write_text(f"chr16\t{length}\t7\t{width}\t{width + 1}\n")
    return path


def test_chr16_folds_are_the_fixture_folds(real_k562_chr16):
    """Contiguous folds balanced on scored genes are the README's: the 740 genes with a TPM in 5
    blocks of 148, a gene without one in the block of the scored gene before it."""
    from seq2exp_plugin.data.splits import contiguous_blocks, genome_order

    genes = pd.read_csv(real_k562_chr16 / "genes.tsv", sep="\t")
    obs = genes.set_index("gene_id")[["chrom", "tss"]]
    blocks = contiguous_blocks(genome_order(obs), 5, genes["k562_tpm"].notna().to_numpy())
    fold = np.empty(len(genes), dtype=int)
    for k, rows in enumerate(blocks):
        fold[rows] = k
    assert (fold == genes["fold"].to_numpy()).all()


def test_chr16_cv_with_powerlaw_contact(real_k562_chr16, all_n_chr16, tmp_path, capfd):
    """``seq2exp cv`` from files on real chr16 signals, all-N DNA and the power-law contact; the
    TSS file also lists genes of a chromosome the tracks lack, none of them measured: they are
    left out (and counted) before the chromosomes are checked."""
    d = real_k562_chr16
    tss = _tss(d / "tss.bed").iloc[300:345]
    unmeasured = pd.DataFrame({"chrom": "chr1", "start": [1000, 2000, 3000], "end": [1001, 2001, 3001],
                               "gene_id": ["ENSGX1", "ENSGX2", "ENSGX3"], "score": 0, "strand": "+"})
    pd.concat([unmeasured, tss]).to_csv(tmp_path / "tss.bed", sep="\t", header=False, index=False)
    n_scored = int(tss["gene_id"].isin(pd.read_csv(d / "expression.tsv", sep="\t")["gene_id"]).sum())
    settings = ["data.window=2000", "train.max_steps=2", "train.batch_size=4", "train.val_every_steps=2",
                "train.warmup_steps=1", "train.progress_bar=false", "data.num_workers=0",
                "model.pool_width=200", "model.mask.promoter_keep=200",
                *(f"model.{part}.{k}={v}" for part in ("generator", "predictor") for k, v in TINY_STACK.items())]
    with pytest.warns(UserWarning, match=f"left out {48 - n_scored} of 48 genes"):
        code = main(["cv", "--out", str(tmp_path / "cv"), "--genome", str(all_n_chr16),
                     "--tss", str(tmp_path / "tss.bed"), "--expression", str(d / "expression.tsv"),
                     "--cell-type", "K562", "--folds", "3", "--signals", f"h3k27ac={d / 'h3k27ac.bw'}",
                     f"dnase={d / 'dnase.bw'}", "hic=powerlaw:k562",
                     "--variants", "seq2exp", "promoter-ridge", "--set", *settings])
    assert code == 0
    assert "ABC's power law of the distance to the TSS, exp(5.95945 - 1.02424" in capfd.readouterr().out
    folds = pd.read_csv(tmp_path / "cv" / "cv.tsv", sep="\t")
    assert sorted(folds["variant"].unique()) == ["promoter-ridge", "seq2exp"] and folds["fold"].nunique() == 3
    sizes = folds.groupby("fold")["n_test"].first()
    assert sizes.sum() == n_scored and sizes.max() - sizes.min() <= 1
    assert np.isfinite(folds["mse"]).all()


# ----------------------------------------------------------------------------------------- CI
def test_real_fixtures_are_there(real_k562_chr22, real_k562_chr16, real_paths):
    """What the CI check below runs: nothing but the fixture lookup."""
    assert real_k562_chr22.is_dir() and real_k562_chr16.is_dir()


@pytest.mark.parametrize("ci, outcome", [("1", "1 error"), ("", "1 skipped")])
def test_missing_fixtures_fail_under_ci(tmp_path, ci, outcome):
    env = {**os.environ, "SEQ2EXP_REAL_FIXTURES": str(tmp_path), "CI": ci}
    if not ci:
        env.pop("CI")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             f"{__file__}::test_real_fixtures_are_there"],
                            cwd=Path(__file__).parent, env=env, capture_output=True, text=True, timeout=300)
    assert outcome in result.stdout, result.stdout[-2000:]
    assert (result.returncode != 0) == bool(ci)
    if ci:
        assert "CI is set" in result.stdout
