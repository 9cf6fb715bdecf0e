"""Several cell types: the cross-cell-type metrics and loss against per-gene references, the
(gene, cell type) dataset, batches that keep a gene's cell types together, training and
evaluating one model on several cell types, and predicting a cell type one at a time."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from seq2exp_plugin.train.celltype_loss import cross_celltype_loss, gene_index
from seq2exp_plugin.train.config import RunConfig, load_config
from seq2exp_plugin.train.fit import StepBatchSampler, fit, make_dataset
from seq2exp_plugin.train.metrics import SplitMetrics, celltype_metrics

from conftest import write_train_config

CELLS = ["synthA", "synthB"]


def _examples(seed=0, n_genes=12, cells=("a", "b", "c", "d")):
    """Random predictions/targets of every (gene, cell type), shuffled, with a few NaN targets,
    a gene with one cell type, a gene with flat targets and ties."""
    rng = np.random.default_rng(seed)
    genes = np.repeat([f"g{i}" for i in range(n_genes)], len(cells))
    cell = np.tile(list(cells), n_genes)
    target = rng.normal(size=genes.size)
    prediction = target + rng.normal(scale=1.0, size=genes.size)
    target[genes == "g0"] = 2.0  # flat: undefined
    target[(genes == "g1") & (cell != "a")] = np.nan  # one cell type left: undefined
    prediction[genes == "g2"] = [0.0, 0.0, 1.0, 1.0]  # ties
    order = rng.permutation(genes.size)
    return prediction[order], target[order], genes[order], cell[order]


def test_celltype_metrics_against_scipy_per_gene_and_per_cell_type():
    prediction, target, genes, cells = _examples()
    metrics = celltype_metrics(prediction, target, genes, cells)
    rhos = []
    for g in np.unique(genes):
        sel = (genes == g) & ~np.isnan(target)
        if sel.sum() >= 2 and np.ptp(target[sel]) > 0 and np.ptp(prediction[sel]) > 0:
            rhos.append(stats.spearmanr(prediction[sel], target[sel]).statistic)
    assert metrics["cross_celltype_genes"] == len(rhos) == 10  # g0 flat, g1 one cell type
    assert metrics["cross_celltype_spearman"] == pytest.approx(np.mean(rhos), abs=1e-6)
    for c in np.unique(cells):
        sel = (cells == c) & ~np.isnan(target)
        assert metrics[f"pearson_{c}"] == pytest.approx(stats.pearsonr(prediction[sel], target[sel]).statistic, abs=1e-5)
        assert metrics[f"spearman_{c}"] == pytest.approx(stats.spearmanr(prediction[sel], target[sel]).statistic,
                                                         abs=1e-5)
    # a model that orders each gene's cell types backwards scores -1
    flipped = celltype_metrics(-target, target, genes, cells)
    assert flipped["cross_celltype_spearman"] == pytest.approx(-1.0)
    assert celltype_metrics(prediction, target, genes, ["a"] * len(genes)) == {}  # one cell type


def test_split_metrics_add_the_celltype_metrics_over_batches():
    prediction, target, genes, cells = _examples(seed=1)
    keep = ~np.isnan(target)
    prediction, target, genes, cells = prediction[keep], target[keep], genes[keep], cells[keep]
    split = SplitMetrics()
    for part in np.array_split(np.arange(len(genes)), 3):
        split.update(torch.tensor(prediction[part]), torch.tensor(target[part]), None,
                     list(genes[part]), list(cells[part]))
    values = split.compute()
    expected = celltype_metrics(prediction, target, genes, cells)
    for key, value in expected.items():
        assert values[key] == pytest.approx(value, abs=1e-5), key
    split.reset()
    split.update(torch.tensor(prediction), torch.tensor(target))  # one cell type: the paper's metrics only
    assert "cross_celltype_spearman" not in split.compute()


def test_split_metrics_give_the_hybrid_term_of_the_whole_split():
    """The term a hybrid run's best checkpoint is chosen by: every gene's cell types together,
    though the batches cut genes apart; NaN targets dropped."""
    prediction, target, genes, cells = _examples(seed=3)
    split = SplitMetrics()
    assert split.cross_celltype_term() == 0.0
    for part in np.array_split(np.arange(len(genes)), 5):
        split.update(torch.tensor(prediction[part]), torch.tensor(target[part]), None,
                     list(genes[part]), list(cells[part]))
    keep = ~np.isnan(target)
    expected = _reference_term(prediction[keep], target[keep], genes[keep])
    assert split.cross_celltype_term() == pytest.approx(expected, rel=1e-6)
    per_batch = [_reference_term(prediction[part], target[part], genes[part])
                 for part in np.array_split(np.flatnonzero(keep), 5)]
    assert abs(np.mean(per_batch) - expected) > 1e-3  # batch by batch would not be the same


def _reference_term(prediction, target, genes):
    """The documented term, gene by gene with numpy."""
    terms = []
    for g in dict.fromkeys(genes):
        p, t = prediction[genes == g], target[genes == g]
        if len(p) < 2:
            continue
        pc, tc = p - p.mean(), t - t.mean()
        if len(p) >= 3 and np.sum(tc ** 2) > 1e-8:
            terms.append(1 - np.corrcoef(p, t)[0, 1])
        else:
            terms.append(np.mean((pc - tc) ** 2))
    return float(np.mean(terms))


def test_cross_celltype_loss_against_a_per_gene_reference():
    rng = np.random.default_rng(2)
    genes = np.array(["x"] * 4 + ["y"] * 3 + ["two"] * 2 + ["flat"] * 3 + ["alone"])
    target = rng.normal(size=genes.size)
    target[genes == "flat"] = 0.7
    prediction = rng.normal(size=genes.size)
    order = rng.permutation(genes.size)
    genes, target, prediction = genes[order], target[order], prediction[order]
    p = torch.tensor(prediction, requires_grad=True)
    loss = cross_celltype_loss(p, torch.tensor(target), gene_index(genes))
    assert float(loss.detach()) == pytest.approx(_reference_term(prediction, target, genes), rel=1e-6)
    loss.backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # two cell types: (d_p - d_t)^2 / 4, zero when the predicted difference is the measured one
    two = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.5])
    assert float(cross_celltype_loss(*two, gene_index(["g", "g"]))) == pytest.approx((2.0 - 0.5) ** 2 / 4)
    assert float(cross_celltype_loss(two[1] + 5, two[1], gene_index(["g", "g"]))) == pytest.approx(0.0)
    # the right ordering at any level costs nothing; the reverse ordering costs 2
    t = torch.tensor([0.0, 1.0, 3.0])
    assert float(cross_celltype_loss(10 * t + 4, t, gene_index("ggg"))) == pytest.approx(0.0, abs=1e-6)
    assert float(cross_celltype_loss(-t, t, gene_index("ggg"))) == pytest.approx(2.0, abs=1e-6)
    assert float(cross_celltype_loss(t, t, gene_index("abc"))) == 0.0  # no gene with two cell types


def test_step_sampler_keeps_each_gene_together():
    groups = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14]]
    batches = list(StepBatchSampler(15, 6, seed=3, total_steps=5, groups=groups))
    assert all(len(b) == 6 for b in batches)  # 6 // 3 = 2 genes per step
    for batch in batches:
        assert all(sorted(batch[k:k + 3]) in groups for k in (0, 3))
    first_pass = [i for b in batches[:2] for i in b] + batches[2][:3]
    assert sorted(first_pass) == list(range(15))  # every gene once per pass
    ranks = [list(StepBatchSampler(15, 6, 3, 5, rank=r, world=2, groups=groups)) for r in (0, 1)]
    for step, batch in enumerate(batches):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(batch)
    with pytest.raises(ValueError, match="multiple of the 2 processes times the cell types"):
        StepBatchSampler(15, 3, 3, 5, world=2, groups=groups)


def _celltypes_config(synth: Path, directory: Path, **extra) -> Path:
    signals = {s: str(synth / "{cell_type}" / f"{s}.{'cool' if s == 'hic' else 'bw'}")
               for s in ("h3k27ac", "dnase", "hic")}
    return write_train_config(synth, directory, **{"data.signals": signals, "data.cell_types": CELLS,
                                                   "train.batch_size": 4, **extra})


def test_dataset_has_one_example_per_gene_and_cell_type(tiny_synth, tmp_path):
    from seq2exp_plugin.data.genes import read_gene_table

    run = load_config(_celltypes_config(tiny_synth, tmp_path))
    dataset = make_dataset(run, "train", require_target=True)
    table = read_gene_table(run.data.genes)
    train = table.obs.index[table.obs["split"] == "train"]
    assert len(dataset) == 2 * len(train) and len(dataset.groups) == len(train)
    for group in dataset.groups:
        items = [dataset[i] for i in group]
        assert len({it["gene_id"] for it in items}) == 1 and [it["cell_type"] for it in items] == CELLS
        gene = items[0]["gene_id"]
        for item in items:  # its own cell type's target and signals
            col = list(table.var_names).index(item["cell_type"])
            assert float(item["target"]) == pytest.approx(float(table[gene].X[0, col]))
        assert torch.equal(items[0]["seq"], items[1]["seq"])
    differs = [not torch.equal(dataset[g[0]]["signals"], dataset[g[1]]["signals"]) for g in dataset.groups]
    assert all(differs)
    assert np.array_equal(dataset.cell_types, [dataset[i]["cell_type"] for i in range(len(dataset))])


def test_config_refuses_what_cannot_compare_cell_types(tiny_synth):
    data = {"signals": {"dnase": "K562/dnase.bw"}, "cell_types": ["K562", "GM12878"]}
    with pytest.raises(ValueError, match=r"same signals; write \{cell_type\}"):
        RunConfig.from_dict({"data": data})
    with pytest.raises(ValueError, match="'hybrid' .* needs data.cell_types with at least two"):
        fit(RunConfig.from_dict({"data": {"cell_type": "K562"}, "train": {"loss": "hybrid"}}))
    with pytest.raises(ValueError, match="twice"):
        RunConfig.from_dict({"data": {"cell_types": ["A", "A"]}})
    with pytest.raises(ValueError, match="cross_celltype_weight must be >= 0"):
        RunConfig.from_dict({"train": {"cross_celltype_weight": -1}})


@pytest.mark.parametrize("variant", ["seq2exp", "hierarchical-cnn"])
def test_hybrid_training_on_two_cell_types_reports_the_celltype_metrics(tiny_synth, tmp_path, variant, capsys):
    from seq2exp_plugin.cli import main
    from seq2exp_plugin.train.evaluate import evaluate, load_run

    run = load_config(_celltypes_config(tiny_synth, tmp_path, variant=variant, **{
        "train.loss": "hybrid", "train.cross_celltype_weight": 10.0, "train.max_steps": 4,
        "train.val_every_steps": 2}))
    fit(run)
    best = Path(run.out_dir) / "checkpoints" / "best.ckpt"
    import pandas as pd

    logged = pd.concat(pd.read_csv(p) for p in Path(run.out_dir).glob("logs/version_*/metrics.csv"))
    assert {"val_cross_celltype_spearman", "val_pearson_synthA", "val_spearman_synthB"} <= set(logged.columns)
    # best.ckpt is the validation with the lowest hybrid loss (MSE + w x term), not the lowest MSE
    validations = logged.dropna(subset=["val_hybrid_loss"])
    assert len(validations) == 2 and (validations["val_hybrid_loss"] > validations["val_mse"]).all()
    state = next(v for k, v in torch.load(best, weights_only=True)["callbacks"].items()
                 if "'monitor': 'val_hybrid_loss'" in k)
    assert float(state["best_model_score"]) == pytest.approx(validations["val_hybrid_loss"].min())
    module, loaded = load_run(str(best))
    metrics = evaluate(module.net, make_dataset(loaded, "test"), progress=False)
    assert metrics["cross_celltype_genes"] >= 1 and {"pearson_synthA", "spearman_synthB"} <= set(metrics)
    # one cell type of the model at a time, with that cell type's signals
    _, one = load_run(str(best), {"cell_type": "synthB"})
    assert one.data.cell_types == [] and one.data.signals_of("synthB")["dnase"].endswith("synthB/dnase.bw")
    single = evaluate(module.net, make_dataset(one, "test"), progress=False)
    assert "cross_celltype_spearman" not in single
    assert single["pearson"] == pytest.approx(metrics["pearson_synthB"], abs=1e-4)
    assert main(["evaluate", str(best), "--data", "cell_type=synthA"]) == 0
    assert main(["evaluate", str(best)]) == 0
    out = capsys.readouterr().out
    assert "cross_celltype_spearman" in out and "pearson_synthA" in out
    with pytest.raises(ValueError, match="predict one at a time with --data cell_type=NAME"):
        from seq2exp_plugin.discover.predict import predict_to_directory

        predict_to_directory(str(best), tmp_path / "pred", progress=False)
    if variant == "seq2exp":  # links read the same genes as predict, one cell type at a time
        from seq2exp_plugin.discover.links import links_to_directory

        with pytest.raises(ValueError, match="predict one at a time with --data cell_type=NAME"):
            links_to_directory(str(best), tmp_path / "links", progress=False)


def test_cv_tables_add_the_cross_celltype_spearman_when_every_run_has_it(tmp_path):
    import json

    from seq2exp_plugin.train.cv import FoldResult, format_results, write_results

    def result(fold, across):
        metrics = {"mse": 0.1, "pearson": 0.5, "spearman": 0.4}
        if across is not None:
            metrics.update(cross_celltype_spearman=across, cross_celltype_genes=7)
        return FoldResult("seq2exp", fold, metrics, 20, 0.0, "x.ckpt")

    results = [result(0, 0.2), result(1, 0.4)]
    write_results(tmp_path, results)
    lines = (tmp_path / "cv.md").read_text().splitlines()
    assert "| spearman | cross_celltype_spearman | outside range |" in lines[0]
    assert "| 0.4000 | 0.2000 | 0.000 |" in lines[2]
    assert "| 0.3000 +/- 0.1414 |" in lines[4]
    summary = json.loads((tmp_path / "cv.json").read_text())["summary"]["seq2exp"]
    assert summary["cross_celltype_spearman"] == {"mean": pytest.approx(0.3), "sd": pytest.approx(0.1414, abs=1e-4)}
    assert "cross_celltype" not in format_results([result(0, 0.2), result(1, None)])


def test_synth_writes_what_differs_between_several_cell_types(tmp_path, capsys):
    """`seq2exp synth --cell-types A B C --silent-fraction`: a folder of tracks and a truth per
    cell type, enhancers causal in one cell type only, genes on in one and off in another."""
    import pandas as pd

    from seq2exp_plugin.cli import main
    from seq2exp_plugin.data.synth import load_manifest

    out = tmp_path / "synth3"
    assert main(["synth", "--out", str(out), "--cell-types", "A", "B", "C", "--silent-fraction", "0.3",
                 "--genes", "30"]) == 0
    m = load_manifest(out)
    assert m["cell_types"] == ["A", "B", "C"] and all(Path(m["tracks"][c]["dnase"]).is_file() for c in "ABC")
    expr = pd.read_csv(m["genes"]["expression"], sep="\t").set_index("gene_id")
    switched = ((expr == 0).any(axis=1) & (expr > 0).any(axis=1)).sum()
    assert switched >= 3
    causal = {c: (lambda t: set(t.loc[t["class"] == "R_ag", "name"]))(
        pd.read_csv(m["truth"]["cells"][c], sep="\t")) for c in "ABC"}
    for c in "ABC":  # each cell type has enhancers causal there only
        assert causal[c] - set().union(*(causal[o] for o in "ABC" if o != c))


def test_a_run_stored_before_the_cell_type_fields_still_resumes(tiny_synth, tmp_path):
    import yaml

    from seq2exp_plugin.train.run_dir import prepare

    run = load_config(write_train_config(tiny_synth, tmp_path))
    out = Path(run.out_dir)
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"")
    stored = run.to_dict()
    del stored["data"]["cell_types"], stored["train"]["cross_celltype_weight"]
    (out / "config.yaml").write_text(yaml.safe_dump(stored))
    assert prepare(run) == out / "checkpoints" / "last.ckpt"
    stored["train"]["loss"] = "mse"  # a real difference is still refused
    (out / "config.yaml").write_text(yaml.safe_dump(stored))
    with pytest.raises(ValueError, match="different configuration: train.loss"):
        prepare(run)
