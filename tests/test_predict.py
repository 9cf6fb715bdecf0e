"""`seq2exp predict`: expression table, mask bigWig, element BED, plots - all from one model run."""

import json

import anndata
import pandas as pd
import pyBigWig
import pytest

from seq2exp_plugin.cli import main
from seq2exp_plugin.discover.predict import predict_to_directory
from seq2exp_plugin.discover.regions import call_elements, read_elements_bed
from seq2exp_plugin.train.evaluate import load_run, predict_dataset
from seq2exp_plugin.train.fit import make_dataset


def test_predict_writes_consistent_outputs(tiny_synth, tiny_checkpoint, tmp_path):
    out = tmp_path / "pred"
    genes = ["SYNG00001", "SYNG00002", "SYNG00003"]
    assert main(["predict", str(tiny_checkpoint), "--out", str(out), "--genes", *genes, "--plots", "2",
                 "--truth", str(tiny_synth / "truth" / "synthA.bed")]) == 0
    module, run = load_run(str(tiny_checkpoint))
    direct = {g.gene_id: g for g in predict_dataset(module.net, make_dataset(run, None, gene_ids=genes),
                                                    progress=False)}
    table = pd.read_csv(out / "expression.tsv", sep="\t")
    assert list(table["gene_id"]) == genes
    for row in table.itertuples():
        assert row.predicted == pytest.approx(direct[row.gene_id].prediction, rel=1e-5)
    adata = anndata.read_h5ad(out / "expression.h5ad")
    assert list(adata.var_names) == ["synthA"] and adata.X[:, 0] == pytest.approx(table["predicted"].to_numpy(), rel=1e-5)
    # bigWig: max over overlapping windows of the soft mask, at 3 decimals
    expected: dict[tuple[str, int], float] = {}
    for gene in direct.values():
        values = gene.score[::-1] if gene.reverse_complemented else gene.score
        for offset, value in enumerate(values):
            key = (gene.chrom, gene.start + offset)
            expected[key] = max(expected.get(key, -1.0), float(value))
    with pyBigWig.open(str(out / "mask.synthA.bw")) as bw:
        for (chrom, pos), value in list(expected.items())[::97]:
            if pos >= 0:
                assert bw.values(chrom, pos, pos + 1)[0] == pytest.approx(value, abs=1e-3)
    # elements: runs of score >= 0.5, named by gene
    elements = read_elements_bed(out / "elements.synthA.bed")
    first = direct[genes[0]]
    runs = call_elements(first.score if not first.reverse_complemented else first.score[::-1], threshold=0.5)
    mine = elements[elements["gene_id"] == genes[0]]
    assert len(mine) == len(runs) > 0
    assert list(mine["start"]) == sorted(first.start + r.start for r in runs)
    most_expressed = table.sort_values("observed", ascending=False)["gene_id"][:2]  # not the first 2
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(f"{g}.png" for g in most_expressed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_genes"] == 3 and set(summary["metrics"]) >= {"mse", "pearson"}


def test_predict_is_atomic_and_refuses_to_overwrite(tiny_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "pred"
    import seq2exp_plugin.discover.predict as predict_module

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(predict_module, "plot_gene", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        predict_to_directory(str(tiny_checkpoint), out, gene_ids=["SYNG00001"], progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written
    monkeypatch.undo()
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert main(["predict", str(tiny_checkpoint), "--out", str(out), "--genes", "SYNG00001"]) == 2
    assert (out / "keep.txt").read_text() == "user data"


def test_predict_unknown_gene_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    assert main(["predict", str(tiny_checkpoint), "--out", str(tmp_path / "p"), "--genes", "NOPE"]) == 2
    assert "NOPE" in capsys.readouterr().err


def test_plots_go_to_the_most_informative_genes():
    from types import SimpleNamespace

    import numpy as np

    from seq2exp_plugin.discover.predict import informative_genes

    dataset = SimpleNamespace(gene_ids=np.array(["silent", "high", "unknown-active", "mid", "unknown"]),
                              targets=np.array([0.0, 3.0, np.nan, 1.0, np.nan], dtype=np.float32),
                              features=np.array([[0.0], [5.0], [80.0], [2.0], [1.0]], dtype=np.float32))
    assert informative_genes(dataset, 4) == ["high", "mid", "silent", "unknown-active"]
    assert informative_genes(dataset, 0) == []
