"""gReLU integration: build by name, load `seq2exp train` checkpoints, and run gReLU's own ISM and
attribution functions on a model bound to one locus (seq2exp_plugin.adapters.grelu)."""

import os
import re
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_STACK, TINY_WINDOW as WINDOW
from seq2exp_plugin.model.config import DEFAULT_SIGNALS as NAMES


@pytest.fixture(scope="module")
def trained(tiny_checkpoint, tiny_rc_run):
    """The session's tiny `seq2exp train` checkpoint; its data with "-" genes reverse-complemented."""
    run, dataset = tiny_rc_run
    plus, minus = (list(dataset.strands).index(s) for s in "+-")  # minus: reverse-complemented
    return types.SimpleNamespace(run=run, ckpt=Path(tiny_checkpoint), dataset=dataset, plus=plus, minus=minus)


def sensitive_copy(module):
    """The trained network with its DNA embeddings scaled up: ISM effects far above float noise."""
    import copy

    module = copy.deepcopy(module).eval()
    with torch.no_grad():
        module.net.generator.embedding.weight.mul_(40.0)
        module.net.predictor.seq_embedding.weight.mul_(40.0)
    return module


def item_tensors(item):
    return {k: torch.as_tensor(np.asarray(item[k]))[None] for k in ("seq", "signals", "features", "blacklist")}


def direct(net, seq, item):
    """The library network on one window (batch of sequences), blacklist included."""
    t = item_tensors(item)
    n = seq.shape[0]
    with torch.no_grad():
        return net(seq, t["signals"].expand(n, -1, -1), t["features"].expand(n, -1),
                   t["blacklist"].expand(n, -1)).expression


def test_lightning_model_builds_by_name_after_registration():
    """In a fresh interpreter: `import seq2exp_plugin` loads neither gReLU nor torch, and
    `seq2exp_plugin.register_grelu_models()` makes gReLU build the classes by name."""
    code = (
        "import sys, seq2exp_plugin\n"
        "assert not {'grelu.model.models', 'torch'} & set(sys.modules)\n"
        "import torch\n"
        "from grelu.lightning import LightningModel\n"
        "seq2exp_plugin.register_grelu_models()\n"
        "stack = {'d_model': 8, 'n_layers': 1, 'd_state': 4}\n"
        "m = LightningModel(model_params={'model_type': 'Seq2ExpModel', 'generator': stack,\n"
        "    'predictor': stack, 'pool_width': 20, 'mask': {'promoter_keep': 20}}).eval()\n"
        "x = torch.cat([torch.eye(4)[torch.randint(0, 4, (2, 64))].transpose(1, 2),\n"
        "               torch.rand(2, 3, 64), torch.zeros(2, 9, 64)], 1)\n"
        "print(type(m.model).__module__, type(m.model).__name__, tuple(m(x).shape))\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("seq2exp_plugin.adapters.grelu Seq2ExpModel (2, 1, 1)"), res.stdout


def test_train_checkpoint_loads_with_grelu_and_binds(trained):
    from grelu.lightning import LightningModel

    from seq2exp_plugin.adapters.grelu import BoundSignals, bind_locus
    from seq2exp_plugin.train.module import load_module

    model = LightningModel.load_from_checkpoint(trained.ckpt, map_location="cpu").eval()
    assert type(model.model).__name__ == "Seq2ExpModel"
    net = load_module(str(trained.ckpt)).net
    for i in (trained.plus, trained.minus):
        item = trained.dataset[i]
        bound = bind_locus(model, item["signals"], item["features"], trained.dataset.signal_names, blacklist=item["blacklist"])
        assert isinstance(bound, LightningModel) and isinstance(bound.model, BoundSignals)
        assert not bound.training and bound.model.model is model.model  # a view of the weights
        seq = torch.as_tensor(np.asarray(item["seq"]))[None]
        with torch.no_grad():
            got = bound(seq)
        assert got.shape == (1, 1, 1)
        torch.testing.assert_close(got.reshape(1), direct(net, seq, item), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="already bound"):
        bind_locus(bound, item["signals"], item["features"], trained.dataset.signal_names)
    # the rows of the signals must be the model's tracks, by name and in its order
    names = list(trained.dataset.signal_names)
    swapped = [names[1], names[0], names[2]]
    with pytest.raises(ValueError, match=re.escape(f"bind_locus: signal tracks {swapped}, but the model "
                                                   f"reads {names}")):
        bind_locus(model, item["signals"][[1, 0, 2]], item["features"], swapped)


def test_fixed_mask_runs_the_predictor_on_the_reference_mask(trained):
    """A model built by name (promoter_keep 20 < pool_width 200: the mask matters in the pooled
    centre), bound with the reference mask vs recomputing it."""
    from grelu.lightning import LightningModel

    from seq2exp_plugin.adapters.grelu import bind_locus

    torch.manual_seed(0)
    model = LightningModel(model_params={"model_type": "Seq2ExpModel", "generator": TINY_STACK,
                                         "predictor": TINY_STACK, "pool_width": 200,
                                         "mask": {"promoter_keep": 20, "signal_scale": 0.1},
                                         "signal_transform": "log1p"}).eval()
    net = model.model.net
    with torch.no_grad():
        net.generator.head.weight.mul_(40.0)  # a mask that moves with the DNA
        net.predictor.head[0].weight.mul_(10.0)
    item = trained.dataset[trained.plus]
    t = item_tensors(item)
    with torch.no_grad():
        ref_mask = net.generator(t["seq"], t["signals"], t["blacklist"]).mask
    mutated = t["seq"].clone()
    mutated[0, :, 900:1100] = mutated[0, :, 900:1100].roll(1, dims=0)  # the pooled centre
    fixed = bind_locus(model, item["signals"], item["features"], NAMES, blacklist=item["blacklist"], mask=ref_mask[0])
    recompute = bind_locus(model, item["signals"], item["features"], NAMES, blacklist=item["blacklist"])
    with torch.no_grad():
        new_mask = net.generator(mutated, t["signals"], t["blacklist"]).mask
        want_fixed = net.predictor(mutated, t["signals"], t["features"], ref_mask)
        got_fixed = fixed(mutated).reshape(1)
        got_recompute = recompute(mutated).reshape(1)
    assert float((new_mask - ref_mask).abs().max()) > 0.05  # the generator reads the DNA
    torch.testing.assert_close(got_fixed, want_fixed, rtol=0, atol=1e-6)
    torch.testing.assert_close(got_recompute, direct(net, mutated, item), rtol=0, atol=1e-6)
    assert abs(float(got_fixed - got_recompute)) > 5e-5  # recompute: the mask moved with the mutation


def test_grelu_ism_predict_equals_direct_model_calls(trained, tmp_path, monkeypatch):
    from grelu.interpret.score import ISM_predict
    from grelu.sequence.format import convert_input_type

    from seq2exp_plugin.discover.ism import _grelu_prediction_context, bind, load_locus
    from seq2exp_plugin.train.module import load_module

    module = sensitive_copy(load_module(str(trained.ckpt)))
    gene = str(trained.dataset.gene_ids[trained.minus])
    locus = load_locus(trained.dataset, gene)
    bound = bind(module, locus)
    start, end = 990, 1002  # around the TSS
    monkeypatch.chdir(tmp_path)
    with _grelu_prediction_context():
        ism = ISM_predict(convert_input_type(locus.seq, "strings"), bound, start_pos=start, end_pos=end,
                          compare_func="subtract", batch_size=16, num_workers=0)
    assert list(ism.index) == list("ACGT") and ism.shape == (4, end - start)
    seq = locus.seq
    mutants = []
    for p in range(start, end):
        for b in range(4):
            m = seq.clone()
            m[:, p] = 0
            m[b, p] = 1
            mutants.append(m)
    with torch.no_grad():
        preds = direct(module.net, torch.stack(mutants), trained.dataset[trained.minus]).reshape(end - start, 4)
        ref = direct(module.net, seq[None], trained.dataset[trained.minus])
    want = (preds - ref).T.numpy()
    assert np.abs(want).max() > 1e-4  # effects well above float noise
    np.testing.assert_allclose(ism.to_numpy(), want, rtol=1e-4, atol=2e-6)
    assert not (tmp_path / "lightning_logs").exists()  # gReLU's trainer logger kept out of the cwd


@pytest.fixture(scope="module", params=[False, True], ids=["centre-pool", "kept-pool"])
def small_bound(request):
    """A model built by name (random weights, DNA-sensitive) bound to a 400 bp locus without N;
    its head pools the centre (the paper) or also the kept positions (``kept_pool``)."""
    from grelu.lightning import LightningModel

    from seq2exp_plugin import register_grelu_models
    from seq2exp_plugin.adapters.grelu import bind_locus

    register_grelu_models()  # built by name below, whichever test of this worker ran first
    torch.manual_seed(1)
    model = LightningModel(model_params={"model_type": "Seq2ExpModel", "generator": TINY_STACK,
                                         "predictor": TINY_STACK, "pool_width": 100,
                                         "mask": {"promoter_keep": 10, "signal_scale": 0.1},
                                         "kept_pool": request.param}).eval()
    with torch.no_grad():
        model.model.net.generator.head.weight.mul_(20.0)
        model.model.net.predictor.seq_embedding.weight.mul_(10.0)
        model.model.net.predictor.head[0].weight.mul_(10.0)
    length = 400
    seq = torch.eye(4)[torch.randint(0, 4, (length,))].T.contiguous()
    signals, features = torch.rand(3, length) * 4, torch.randn(9)
    return bind_locus(model, signals, features, NAMES), seq


def test_attributions_through_grelu_get_attributions(small_bound):
    from grelu.interpret.score import get_attributions

    from seq2exp_plugin.discover.ism import attributions

    bound, seq = small_bound
    length = seq.shape[-1]
    x = seq[None].clone().requires_grad_(True)
    bound(x).sum().backward()
    grad = x.grad[0].numpy()
    assert np.abs(grad).max() > 1e-4
    out = {}
    for method in ("saliency", "inputxgradient", "integratedgradients"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # captum: "did not already require gradients"
            out[method] = get_attributions(bound, seq[None], method=method)
        assert out[method].shape == (1, 4, length) and np.isfinite(out[method]).all(), method
    np.testing.assert_allclose(out["saliency"][0], grad, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out["inputxgradient"][0], grad * seq.numpy(), rtol=1e-4, atol=1e-7)
    # integrated gradients from the all-zero (all-N) baseline: completeness
    with torch.no_grad():
        f_x, f_0 = float(bound(seq[None])), float(bound(torch.zeros_like(seq)[None]))
    assert out["integratedgradients"].sum() == pytest.approx(f_x - f_0, rel=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        via_helper = attributions(bound, seq, method="saliency")
    np.testing.assert_allclose(via_helper, out["saliency"], rtol=1e-6)


def test_deepshap_converges_with_the_seq2exp_rules(small_bound):
    """tangermeme's DeepLIFT/SHAP via gReLU: without rules for the selective scan and the Beta mean
    it warns of non-convergence; with deepshap_ops it does not (and sums to the output change)."""
    from grelu.interpret.score import get_attributions
    from tangermeme.ersatz import dinucleotide_shuffle

    from seq2exp_plugin.adapters.grelu import deepshap_ops

    bound, seq = small_bound
    x = seq[None]
    runs = {}
    for name, ops in (("plain", None), ("rules", deepshap_ops(8))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            attr = get_attributions(bound, x, method="deepshap", n_shuffles=3, seed=0,
                                    additional_nonlinear_ops=ops, warning_threshold=1e-6)
        runs[name] = [str(w.message) for w in caught if "Convergence deltas" in str(w.message)]
        assert attr.shape == (1, 4, seq.shape[-1]) and np.isfinite(attr).all()
        if name == "rules":
            # hypothetical=False: attributions sit on the observed bases and sum (averaged over the
            # references) to f(x) - mean f(reference); the references are the ones tangermeme
            # drew (shuffle k seeded with seed + k)
            assert np.all(attr[0][seq.numpy() == 0] == 0)
            refs = torch.cat([dinucleotide_shuffle(x, n=1, random_state=k)[:, 0] for k in range(3)])
            with torch.no_grad():
                changes = float(bound(x)) - bound(refs).reshape(-1)
            assert float(changes.abs().min()) > 1e-3  # each reference moves the output
            assert attr.sum() == pytest.approx(float(changes.mean()), rel=1e-3, abs=1e-6)
    assert runs["plain"], "expected a non-convergence warning without the Seq2Exp rules"
    assert not runs["rules"], runs["rules"]


def test_deepshap_refused_where_batch_pairing_breaks():
    from grelu.lightning import LightningModel

    from seq2exp_plugin import register_grelu_models
    from seq2exp_plugin.adapters.grelu import bind_locus
    from seq2exp_plugin.discover.ism import attributions

    register_grelu_models()
    stack = {**TINY_STACK, "rc_equivariant": True}
    model = LightningModel(model_params={"model_type": "Seq2ExpModel", "generator": stack, "predictor": stack,
                                         "pool_width": 20, "mask": {"promoter_keep": 10}}).eval()
    bound = bind_locus(model, torch.rand(3, 64), torch.randn(9), NAMES)
    with pytest.raises(ValueError, match="RC-equivariant or packed"):
        attributions(bound, torch.eye(4)[torch.randint(0, 4, (64,))].T, method="deepshap")


def test_bound_model_splits_large_cpu_batches_into_calls_the_cpu_takes(small_bound, monkeypatch):
    """gReLU hands the bound model whole ISM batches (64 windows by default); on the CPU and
    without gradients it runs them ``CPU_INFERENCE_POSITIONS`` positions per call, with the same
    predictions as one call."""
    from seq2exp_plugin.model import batch as batch_module

    bound, seq = small_bound
    net = bound.model.model.net
    mutants = seq[None].repeat(5, 1, 1)
    mutants[torch.arange(5), :, torch.arange(5) * 50] = torch.eye(4)[[1, 2, 3, 0, 1]]
    sizes = []
    hook = net.register_forward_hook(lambda module, args, out: sizes.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            whole = bound.model(mutants)
            assert sizes == [5]
            monkeypatch.setattr(batch_module, "CPU_INFERENCE_POSITIONS", 2 * 400)
            sizes.clear()
            split = bound.model(mutants)
            assert sizes == [2, 2, 1]
        sizes.clear()
        bound.model(mutants)  # gradients recorded (attributions): one call
        assert sizes == [5]
    finally:
        hook.remove()
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)
    assert float(whole.std()) > 0  # the mutants differ


def test_grelu_training_loop_is_refused_and_the_checkpoint_says_how_it_was_trained(trained):
    """gReLU's own training step would fit the model with its 'mse' loss alone (no KL term) and
    Adam: it is refused with the command that trains Seq2Exp; gradients in eval mode
    (attributions) still flow; train_params record the real objective and optimizer."""
    from grelu.lightning import LightningModel

    model = LightningModel.load_from_checkpoint(trained.ckpt, map_location="cpu")
    params = model.train_params
    assert params["optimizer"] == "adamw" and params["objective"].startswith("seq2exp_loss: smooth_l1 + ")
    item = item_tensors(trained.dataset[trained.plus])
    x = torch.cat([item["seq"], item["signals"],
                   item["features"][..., None].expand(-1, -1, item["seq"].shape[-1])], 1)
    model.train()
    with pytest.raises(RuntimeError, match="gReLU's training loop .* `seq2exp train`"):
        model.training_step((x, torch.zeros(1, 1, 1)), 0)
    model.eval()
    x.requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ------------------------------------------------------------------ a per-cell-type head
CELLS = ("A", "B", "C")


def celltype_params(kind: str, celltype_head: bool = True) -> dict:
    """model_params of a tiny ``kind``, with a head of one output per cell type of CELLS (or the
    shared head)."""
    from seq2exp_plugin.model.config import preset

    head = {"celltype_head": True, "cell_types": CELLS} if celltype_head else {}
    fields = preset("soft", generator=TINY_STACK, predictor=TINY_STACK, pool_width=40,
                    mask={"promoter_keep": 40, "sample": False}, **head).to_dict()
    return {"model_type": kind, **({"window": 400} if kind == "HierarchicalCNN" else {}), **fields}


def stacked(kind: str, size: int = 3, length: int = 400):
    """gReLU's stacked input for ``kind`` and its parts (seq, signals, features, mask)."""
    g = torch.Generator().manual_seed(0)
    seq = torch.eye(4)[torch.randint(0, 4, (size, length), generator=g)].transpose(1, 2)
    signals, features = torch.rand(size, 3, length, generator=g) * 3, torch.randn(size, 9, generator=g)
    mask = torch.rand(size, length, generator=g)
    channels = [seq, signals, features[..., None].expand(-1, -1, length)]
    channels += [mask[:, None]] if kind == "Seq2ExpPredictor" else []
    return torch.cat(channels, 1), (seq, signals, features, mask)


def library(net, kind: str, parts, index: int | None):
    """The library network on the parts, every example reading output ``index``."""
    seq, signals, features, mask = parts
    cell = None if index is None else torch.full((seq.shape[0],), index)
    with torch.no_grad():
        if kind == "Seq2ExpModel":
            return net(seq, signals, features, None, cell).expression
        if kind == "Seq2ExpPredictor":
            return net(seq, signals, features, mask, cell)
        return net(signals, features, cell)


def built(params: dict, like=None):
    """A gReLU LightningModel built by name (a regression: no output activation), in eval mode
    (with ``like``'s weights)."""
    from grelu.lightning import LightningModel

    from seq2exp_plugin import register_grelu_models

    register_grelu_models()
    model = LightningModel(model_params=params, train_params={"task": "regression", "loss": "mse"}).eval()
    if like is not None:
        model.model.load_state_dict(like.model.state_dict())
    return model


@pytest.mark.parametrize("kind", ["Seq2ExpModel", "Seq2ExpPredictor", "HierarchicalCNN"])
def test_stacked_classes_read_the_output_of_the_cell_type_named_in_model_params(kind):
    from seq2exp_plugin.errors import InputError

    params = celltype_params(kind)
    torch.manual_seed(0)
    first = built({**params, "cell_type": "A"})
    net = first.model.net
    last = net.linear if kind == "HierarchicalCNN" else (net.predictor if kind == "Seq2ExpModel" else net).head[-1]
    assert last.out_features == 3
    x, parts = stacked(kind)
    got = {}
    for index, cell in enumerate(CELLS):
        model = first if cell == "A" else built({**params, "cell_type": cell}, like=first)
        assert model.model.cell_type_index == index
        with torch.no_grad():
            got[cell] = model(x)
        assert got[cell].shape == (3, 1, 1)
        # the same up to the features' mean over the window (float32 rounding)
        torch.testing.assert_close(got[cell].reshape(-1), library(net, kind, parts, index), rtol=0, atol=1e-6)
    assert not torch.allclose(got["A"], got["B"]) and not torch.allclose(got["B"], got["C"])
    with pytest.raises(InputError, match=re.escape(f"{kind}: the model's per-cell-type head (model.celltype_head) "
                                                   "has an output for each of ['A', 'B', 'C']: name the one to "
                                                   "read (cell_type='A' in model_params")):
        built(params)
    with pytest.raises(InputError, match=re.escape("cell type 'D': the model's per-cell-type head "
                                                   "(model.celltype_head) has outputs for ['A', 'B', 'C'] only")):
        built({**params, "cell_type": "D"})
    # the shared head: any cell type (or none) reads its one output
    shared = celltype_params(kind, celltype_head=False)
    plain = built(shared)
    named = built({**shared, "cell_type": "D"}, like=plain)
    with torch.no_grad():
        assert torch.equal(named(x), plain(x))
        torch.testing.assert_close(plain(x).reshape(-1), library(plain.model.net, kind, parts, None),
                                   rtol=0, atol=1e-6)


def test_load_grelu_model_reads_the_named_cell_type_and_bind_locus_follows_it(tmp_path):
    """A `seq2exp train` checkpoint with a per-cell-type head over three cell types: gReLU's
    stacked channels read the output named at loading, a name is needed and checked; one cell
    type is the default where the run had one; a locus-bound model reads the same output."""
    from conftest import per_cell_type_checkpoint
    from seq2exp_plugin.adapters.grelu import bind_locus
    from seq2exp_plugin.errors import InputError
    from seq2exp_plugin.train.module import load_grelu_model, load_module

    cells = ("synthA", "synthB", "synthC")
    three = str(per_cell_type_checkpoint(tmp_path / "three.ckpt", cells))
    with pytest.raises(InputError, match=re.escape(f"{three} was trained on cell types ['synthA', 'synthB', "
                                                   "'synthC'] with a per-cell-type head") + ".*" +
                       re.escape("load_grelu_model(path, cell_type='synthA')")):
        load_grelu_model(three)
    with pytest.raises(InputError, match=re.escape(f"{three}: cell type 'K562': the model's per-cell-type "
                                                   "head (model.celltype_head) has outputs for ['synthA', "
                                                   "'synthB', 'synthC'] only")):
        load_grelu_model(three, cell_type="K562")
    module = load_module(three)  # the library's own loading reads each batch's cell types
    assert module.model.cell_type_index is None
    x, parts = stacked("Seq2ExpModel", size=2, length=2000)
    got = {}
    for index, cell in enumerate(cells):
        model = load_grelu_model(three, cell_type=cell)
        assert not model.training and model.model_params["cell_type"] == cell
        with torch.no_grad():
            got[cell] = model(x).reshape(-1)
        torch.testing.assert_close(got[cell], library(module.net, "Seq2ExpModel", parts, index), rtol=0, atol=1e-6)
    assert not torch.allclose(got["synthA"], got["synthB"]) and not torch.allclose(got["synthB"], got["synthC"])
    with pytest.raises(InputError, match="name the one to read"):
        module.model(x)  # no cell type named: stacked channels cannot say which
    # a locus-bound model reads the loaded model's cell type, or the locus's with the library's
    seq, signals, features, _ = parts
    b = load_grelu_model(three, cell_type="synthB")
    with torch.no_grad():
        torch.testing.assert_close(bind_locus(b, signals[0], features[0], NAMES)(seq[:1]).reshape(1),
                                   got["synthB"][:1], rtol=0, atol=1e-6)
        torch.testing.assert_close(bind_locus(module, signals[0], features[0], NAMES, cell_type_index=2)(seq[:1])
                                   .reshape(1), got["synthC"][:1], rtol=0, atol=1e-6)
    with pytest.raises(InputError, match="cell_type_index 0 is the output of 'synthA', but the model was "
                                         "made to read that of 'synthB'"):
        bind_locus(b, signals[0], features[0], NAMES, cell_type_index=0)
    with pytest.raises(InputError, match="bind_locus: the model's per-cell-type head"):
        bind_locus(module, signals[0], features[0], NAMES)
    # trained on one cell type: its name is the default, another is refused
    one = str(per_cell_type_checkpoint(tmp_path / "one.ckpt", ("synthA",)))
    assert load_grelu_model(one).model.cell_type == "synthA"
    with pytest.raises(InputError, match="cell type 'synthB'"):
        load_grelu_model(one, cell_type="synthB")
