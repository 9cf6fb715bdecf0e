"""The per-cell-type output head (``model.celltype_head``): one output per training cell type,
each example reading its own; stored names choose the output at evaluation; a cell type the
head never saw is refused; configurations and checkpoints without the field keep the shared
head."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from seq2exp_plugin.errors import InputError
from seq2exp_plugin.model.batch import predict_batch
from seq2exp_plugin.model.config import Seq2ExpConfig, preset
from seq2exp_plugin.train.config import RunConfig, load_config
from seq2exp_plugin.train.fit import fit, make_dataset

from conftest import TINY_STACK, write_train_config

CELLS = ["synthA", "synthB"]
THREE = ("A", "B", "C")


def _inputs(size=6, length=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    seq = F.one_hot(torch.randint(0, 4, (size, length), generator=g), 4).transpose(1, 2).float()
    return {"seq": seq, "signals": torch.rand(size, 3, length, generator=g) * 3,
            "features": torch.randn(size, 9, generator=g),
            "cell_type_index": torch.tensor([0, 1, 2, 2, 1, 0][:size])}


def _net(kind: str):
    """A tiny model of each kind with a head of one output per cell type of THREE, and its last
    layer."""
    from seq2exp_plugin.adapters.grelu import HierarchicalCNN
    from seq2exp_plugin.model.predictor import Seq2ExpPredictor
    from seq2exp_plugin.model.seq2exp import Seq2ExpModel

    name = kind if kind in ("learned", "soft", "hard") else "soft"
    config = preset(name, generator=TINY_STACK, predictor=TINY_STACK, pool_width=40,
                    mask={"promoter_keep": 40, "sample": False}, celltype_head=True, cell_types=THREE)
    torch.manual_seed(0)
    if kind == "hierarchical-cnn":
        net = HierarchicalCNN(window=400, batch_cell_types=True, **config.to_dict()).net
        return net, net.linear
    net = Seq2ExpPredictor(config) if kind == "seq-signals" else Seq2ExpModel(config)
    predictor = net if kind == "seq-signals" else net.predictor
    return net, predictor.head[-1]


@pytest.mark.parametrize("kind", ["learned", "soft", "hard", "seq-signals", "hierarchical-cnn"])
def test_each_example_reads_and_trains_only_its_own_cell_types_output(kind):
    net, last = _net(kind)
    net.eval()  # dropout and batch norm out of the way: example i's output is its own
    assert last.out_features == 3
    with torch.no_grad():  # a trained layer (the learned preset's starts at 0, its outputs equal)
        last.weight.normal_()
        last.bias.normal_()
    batch = _inputs()
    prediction, _ = predict_batch(net, batch)
    assert prediction.shape == (6,)
    for i, cell in enumerate(batch["cell_type_index"].tolist()):
        net.zero_grad()
        prediction, _ = predict_batch(net, batch)
        prediction[i].backward()
        rows = last.weight.grad.abs().sum(1) + last.bias.grad.abs()
        assert rows[cell] > 0, (kind, i)
        assert torch.all(rows[[c for c in range(3) if c != cell]] == 0), (kind, i)
    # another cell type's output is another prediction of the same input
    other = dict(batch, cell_type_index=(batch["cell_type_index"] + 1) % 3)
    with torch.no_grad():
        assert not torch.allclose(predict_batch(net, batch)[0], predict_batch(net, other)[0])
    with pytest.raises(ValueError, match="per-cell-type head .* needs each example's cell type"):
        predict_batch(net, {k: v for k, v in batch.items() if k != "cell_type_index"})


def test_configurations_without_the_head_fields_keep_the_shared_head():
    """A version-2 configuration written before the head (no celltype_head, no cell_types) and a
    version-1 one build the one-output head, and its weights load as they were."""
    from seq2exp_plugin.model.seq2exp import Seq2ExpModel

    stored = preset("soft", generator=TINY_STACK, predictor=TINY_STACK, pool_width=40,
                    mask={"promoter_keep": 40}).to_dict()
    del stored["celltype_head"], stored["cell_types"]
    for version in (2, 1):
        config = Seq2ExpConfig.from_dict({**stored, "version": version})
        assert config.celltype_head is False and config.cell_types == () and config.n_outputs == 1
        assert config.celltype_index("any cell type") == 0
    old = Seq2ExpModel(Seq2ExpConfig.from_dict(stored))
    assert old.predictor.head[-1].out_features == 1
    Seq2ExpModel(Seq2ExpConfig.from_dict(stored)).load_state_dict(old.state_dict())
    with pytest.raises(ValueError, match="celltype_head needs cell_types"):
        Seq2ExpConfig.from_dict({**stored, "celltype_head": True})
    with pytest.raises(ValueError, match="set celltype_head: true"):
        Seq2ExpConfig.from_dict({**stored, "cell_types": ["A"]})


def test_run_configuration_names_the_outputs_and_refuses_what_has_no_head(tiny_synth):
    data = {"cell_type": "K562"}
    run = RunConfig.from_dict({"model": {"celltype_head": True}, "data": data})
    assert run.model["cell_types"] == ["K562"]  # stored with the run
    with pytest.raises(InputError, match="model.celltype_head: variant 'ridge'"):
        RunConfig.from_dict({"variant": "ridge", "model": {"celltype_head": True}, "data": data})
    with pytest.raises(InputError, match="model.celltype_head .* data.cell_types"):
        RunConfig.from_dict({"model": {"celltype_head": True}})


def _celltypes_config(synth: Path, directory: Path, **extra) -> Path:
    signals = {s: str(synth / "{cell_type}" / f"{s}.{'cool' if s == 'hic' else 'bw'}")
               for s in ("h3k27ac", "dnase", "hic")}
    return write_train_config(synth, directory, **{
        "data.signals": signals, "data.cell_types": CELLS, "train.batch_size": 4,
        "train.max_steps": 2, "train.val_every_steps": 2, "model": {
            "generator": TINY_STACK, "predictor": TINY_STACK, "pool_width": 200,
            "mask": {"promoter_keep": 200}, "signal_transform": "log1p", "celltype_head": True},
        **extra})


@pytest.mark.parametrize("variant", ["seq2exp", "hierarchical-cnn"])
def test_a_checkpoint_with_the_head_reads_each_cell_types_output_by_name(tiny_synth, tmp_path, variant,
                                                                         capsys):
    from seq2exp_plugin.cli import main
    from seq2exp_plugin.train.evaluate import load_run, predict_dataset

    run = load_config(_celltypes_config(tiny_synth, tmp_path, variant=variant, **{"train.loss": "hybrid"}))
    train = make_dataset(run, "train", require_target=True)
    assert [train[i]["cell_type_index"] for i in train.groups[0]] == [0, 1]
    fit(run)
    best = str(Path(run.out_dir) / "checkpoints" / "best.ckpt")
    module, loaded = load_run(best)
    assert module.model.config.cell_types == tuple(CELLS)
    both = {(g.gene_id, g.cell_type): g.prediction
            for g in predict_dataset(module.net, make_dataset(loaded, "test"), progress=False)}
    # synthB alone (its own signals, a one-cell-type dataset) reads output 1, as in the joint run
    _, one = load_run(best, {"cell_type": "synthB"})
    alone = make_dataset(one, "test")
    assert alone[0]["cell_type_index"] == 1
    for gene in predict_dataset(module.net, alone, progress=False):
        assert gene.prediction == pytest.approx(both[(gene.gene_id, "synthB")], abs=1e-5)
    if variant == "seq2exp":  # ISM's locus-bound model reads the locus's output too
        from seq2exp_plugin.discover.ism import bind, load_locus

        locus = load_locus(alone, str(alone.gene_ids[0]))
        with torch.no_grad():
            bound = float(bind(module, locus).model(locus.seq[None]))
        assert bound == pytest.approx(both[(str(alone.gene_ids[0]), "synthB")], abs=1e-5)
    # a cell type the head has no output for is refused, naming the way out
    with pytest.raises(InputError, match="'synthC'.* train without model.celltype_head"):
        load_run(best, {"cell_type": "synthC"})
    assert main(["evaluate", best, "--data", "cell_type=synthC"]) == 2
    assert "train without model.celltype_head" in capsys.readouterr().err
