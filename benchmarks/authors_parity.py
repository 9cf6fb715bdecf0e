"""Our public presets against the authors' public code, on the same weights and inputs, on CPU.

    python benchmarks/authors_parity.py --authors AIRS/OpenBio/Seq2Exp --mamba MAMBA_CHECKOUT

``--authors``: a checkout of the authors' code (AIRS ``OpenBio/Seq2Exp``); ``--mamba``: a
checkout of ``state-spaces/mamba`` (the ``mamba_ssm`` Python sources; nothing to build). Their
``GeneBiMambaMIRNP`` is imported from those directories, nothing is copied. On a CPU machine:

- mamba_ssm's CUDA scan is replaced by its own pure-PyTorch reference ``selective_scan_ref``
  (their Mamba then runs its documented slow path: ``conv1d`` + SiLU + the reference scan);
- mamba_ssm's Triton RMSNorm is replaced by ``torch.nn.functional.rms_norm`` with the same
  weight and epsilon, and their Caduceus runs with ``fused_add_norm`` off (the same additions and
  norms, unfused); mamba_ssm 2's ``Block`` gets mamba_ssm 1's signature (no MLP);
- modules their file imports but this model does not use (flash-attn language models, Mamba
  language-model heads) are empty stand-ins.

Our weights are copied into their model (the Mamba and stack keys load under the same names;
their mask head lists (beta, alpha) where ours lists (alpha, beta)); then both run the same
inputs. Printed: the largest relative difference of the posterior's alpha and beta, the mask,
the KL, the prediction (eval mode), and for the soft run in training mode (the same Beta sample)
the loss and every parameter's gradient. The hard run is compared one gene at a time in eval
mode (their zero-padded packing makes a gene depend on its batch) and, in training mode, on the
gradients the prediction loss gives the MLP head (theirs reaches nothing before the packing).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from seq2exp_plugin.model.config import preset
from seq2exp_plugin.model.seq2exp import Seq2ExpModel, seq2exp_loss

D_MODEL, N_LAYERS, D_STATE, LENGTH, CENTRE = 16, 2, 4, 96, 16


class _RMSNorm(nn.Module):
    """mamba_ssm's RMSNorm module interface (``weight``, ``bias``, ``eps``) in plain PyTorch."""

    def __init__(self, hidden_size, eps=1e-5, device=None, dtype=None, **_):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def _package(name: str, path: Path | None = None) -> types.ModuleType:
    """An empty package (its ``__init__`` not run) whose submodules load from ``path``."""
    module = types.ModuleType(name)
    module.__path__ = [str(path)] if path else []
    sys.modules[name] = module
    return module


def load_authors(authors: Path, mamba: Path):
    """Their GeneBiMambaMIRNP class and CaduceusConfig, importable on a CPU-only machine."""
    sys.path[:0] = [str(mamba), str(authors)]
    for name in ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.modules", "mamba_ssm.models", "mamba_ssm.utils"):
        _package(name, mamba / name.replace(".", "/"))
    _package("mamba_ssm.ops.triton")
    for name in ("layer_norm", "layernorm"):  # mamba_ssm 2's name, and 1's (Caduceus imports it)
        layer_norm = types.ModuleType(f"mamba_ssm.ops.triton.{name}")
        layer_norm.RMSNorm, layer_norm.layer_norm_fn, layer_norm.rms_norm_fn = _RMSNorm, None, None
        layer_norm._layer_norm_fwd = None
        sys.modules[layer_norm.__name__] = layer_norm
    scan = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    simple = importlib.import_module("mamba_ssm.modules.mamba_simple")
    simple.selective_scan_fn = scan.selective_scan_ref
    block = importlib.import_module("mamba_ssm.modules.block")
    simple.Block = functools.partial(block.Block, mlp_cls=nn.Identity)  # mamba_ssm 1's Block
    heads = types.ModuleType("mamba_ssm.models.mixer_seq_simple")
    heads.MambaLMHeadModel = heads.MixerModel = None
    sys.modules[heads.__name__] = heads
    for name in ("src", "src.models", "src.models.sequence"):
        _package(name, authors / name.replace(".", "/"))
    lm = types.ModuleType("src.models.sequence.long_conv_lm")
    lm.LMBackbone = None
    sys.modules[lm.__name__] = lm
    torch_anomaly = torch.autograd.set_detect_anomaly
    torch.autograd.set_detect_anomaly = lambda *a, **k: None  # their module turns it on globally
    try:
        gene = importlib.import_module("src.models.sequence.GeneExpformer")
    finally:
        torch.autograd.set_detect_anomaly = torch_anomaly
    from caduceus.configuration_caduceus import CaduceusConfig

    return gene.GeneBiMambaMIRNP, CaduceusConfig


def their_config(CaduceusConfig, hard: bool):
    """Their model config (configs/model/gene_express_bimamba_MI_RNP.yaml) with Seq2Exp.sh's
    overrides, at the small test size."""
    common = dict(
        d_model=D_MODEL, n_layer=N_LAYERS, enc_n_layer=N_LAYERS, gen_n_layer=N_LAYERS,
        center_len=CENTRE, seq_range=LENGTH, aux_loss_kl=True, aux_loss_con=True, interact="concat",
        gen_signal=False, prior_signal="all", prior_beta="1.5,0.2,1.0", prior_weight="2,2,1",
        max_pool_size=0, merge_peak_mask=False, post_sample=True, post_dist="beta",
        decouple_x=True, only_x_sig=False, use_include_list=False, mask_region_hard=True,
        use_bio_mask=False, use_peak_mask=False, dist_param_grad=False, use_mask_model=False,
        pool_mask=0, z_scale=1.0, test_top=False, base_size=4, signal_size=3, rna_feat_dim=9,
        useRNAFeat=True, vocab_size=12,
        ssm_cfg=dict(d_state=D_STATE, d_conv=4, expand=2, dt_rank="auto", dt_min=0.001,
                     dt_max=0.1, dt_init="random", dt_scale=1.0, dt_init_floor=1e-4,
                     conv_bias=True, bias=False, use_fast_path=True),
        rms_norm=True, fused_add_norm=False, residual_in_fp32=False, pad_vocab_size_multiple=8,
        norm_epsilon=1e-5, bidirectional=True, bidirectional_strategy="add",
        bidirectional_weight_tie=True, rcps=False, complement_map=None,
        initializer_cfg=dict(initializer_range=0.02, rescale_prenorm_residual=True,
                             n_residuals_per_layer=1),
    )
    if hard:
        run = dict(prior_scale_factor=1.0, beta_min=0.0, marginal_mean=0.45, marginal_scale=0.1,
                   test_soft=False, test_hard=True, post_hard_dist=True, enc_prd_ps=True,
                   pos_enc=True, sample_threshold=0.5)
    else:
        run = dict(prior_scale_factor=10.0, beta_min=1.0, marginal_mean=0.1, marginal_scale=10.0,
                   test_soft=True, test_hard=False, post_hard_dist=False, enc_prd_ps=False,
                   pos_enc=False, sample_threshold=0.5)
    return CaduceusConfig(**common, **run)


def ours(hard: bool) -> Seq2ExpModel:
    stack = dict(d_model=D_MODEL, n_layers=N_LAYERS, d_state=D_STATE)
    extra = {"position_table": LENGTH} if hard else {}
    torch.manual_seed(0)
    model = Seq2ExpModel(preset("public-hard" if hard else "public-soft", generator=stack,
                                predictor=stack, pool_width=CENTRE, head_hidden=D_MODEL,
                                mask={"promoter_keep": CENTRE}, **extra))
    with torch.no_grad():  # nothing left at its (zero) initialisation: every path is exercised
        for name, p in model.named_parameters():
            if "A_log" not in name and name != "generator.backbone.layers.0.mixer.mamba_fwd.D":
                p.add_(0.05 * torch.randn_like(p))
    return model


def their_state(model: Seq2ExpModel, hard: bool) -> dict[str, torch.Tensor]:
    """Our weights under their names."""
    gen, pred = model.generator, model.predictor
    state = {
        "seq_input_layer.weight": gen.embedding.weight, "seq_input_layer.bias": gen.embedding.bias,
        "signal_input_layer.weight": pred.signal_embedding.weight,
        "signal_input_layer.bias": pred.signal_embedding.bias,
        "mask_output.weight": gen.head.weight[[1, 0]], "mask_output.bias": gen.head.bias[[1, 0]],
        "prior_weights": torch.log(torch.tensor([0.4, 0.4, 0.2])),
        "signal_betas": torch.tensor([1.5, 0.2, 1.0]),
    }
    for i in (0, 2, 4):
        state[f"pToExpr.{i}.weight"] = pred.head[i].weight
        state[f"pToExpr.{i}.bias"] = pred.head[i].bias
    for ours_name, theirs_name in (("generator", "generator"), ("predictor", "encoder")):
        for key, value in getattr(model, ours_name).backbone.state_dict().items():
            state[f"{theirs_name}.backbone.{key}"] = value
    if hard:
        state["pos_emb"] = gen.positions.weight[None]
    return {k: v.detach().clone() for k, v in state.items()}


def inputs(batch: int):
    g = torch.Generator().manual_seed(1)
    seq = torch.eye(4)[torch.randint(0, 4, (batch, LENGTH), generator=g)]
    signals = torch.rand(batch, LENGTH, 3, generator=g) * torch.tensor([4.0, 4.0, 1.0])
    features = torch.randn(batch, 9, generator=g)
    blacklist = torch.zeros(batch, LENGTH, dtype=torch.bool)
    blacklist[:, 10:14] = True
    blacklist[:, LENGTH // 2 - 2 : LENGTH // 2] = True  # inside the promoter: theirs keeps it
    return seq, signals, features, blacklist


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def compare(Model, CaduceusConfig, hard: bool) -> dict[str, float]:
    ours_model = ours(hard)
    theirs = Model(their_config(CaduceusConfig, hard))
    missing, unexpected = theirs.load_state_dict(their_state(ours_model, hard), strict=False)
    assert not unexpected, unexpected
    assert not missing, missing
    seq, signals, features, blacklist = inputs(2)
    regions = torch.stack([torch.zeros_like(blacklist), blacklist], -1)
    out: dict[str, float] = {}
    ours_model.eval(), theirs.eval()
    with torch.no_grad():
        for b in range(2) if hard else (slice(None),):
            rows = slice(b, b + 1) if hard else b
            mine = ours_model(seq[rows].transpose(1, 2), signals[rows].transpose(1, 2),
                              features[rows], blacklist[rows])
            pred, aux, mask = theirs(seq[rows], signals[rows], mask_regions=regions[rows],
                                     rna_feat=features[rows])
            z = theirs.z_distribution
            for key, a, t in (("alpha", mine.mask.distribution.alpha, z.concentration1),
                              ("beta", mine.mask.distribution.beta, z.concentration0),
                              ("mask", mine.mask.mask, mask), ("kl", mine.mask.kl, aux["kl_loss"]),
                              ("prediction", mine.expression, pred[:, 0])):
                out[f"eval {key}"] = max(out.get(f"eval {key}", 0.0), rel(a, t))
    target = torch.tensor([0.3, -0.1])
    ours_model.train(), theirs.train()
    torch.manual_seed(5)
    mine = ours_model(seq.transpose(1, 2), signals.transpose(1, 2), features, blacklist)
    loss = seq2exp_loss(mine, target, 0.01)["loss"]
    loss.backward()
    torch.manual_seed(5)
    pred, aux, mask = theirs(seq, signals, mask_regions=regions, rna_feat=features)
    their_loss = F.smooth_l1_loss(pred[:, 0], target) + 0.01 * aux["kl_loss"]
    their_loss.backward()
    out["train loss"] = rel(loss, their_loss)
    grads = their_state_grads(ours_model, theirs, hard)
    out["train gradients (largest)"] = max(grads.values())
    out["train gradients compared"] = len(grads)
    return out


def their_state_grads(model: Seq2ExpModel, theirs: nn.Module, hard: bool) -> dict[str, float]:
    """Relative difference of each gradient both models define the same way."""
    mine = {k: v for k, v in zip(their_state(model, hard), _grads(model, hard))}
    diffs = {}
    for name, p in theirs.named_parameters():
        if name in mine and p.grad is not None and mine[name] is not None:
            if hard and not name.startswith("pToExpr"):
                continue  # their packing cuts the prediction loss before the stack's generator use
            diffs[name] = rel(mine[name], p.grad)
    return diffs


def _grads(model: Seq2ExpModel, hard: bool) -> list[torch.Tensor | None]:
    """Our gradients in :func:`their_state`'s order (their mask head order, fixed priors None)."""
    gen, pred = model.generator, model.predictor
    grads = [gen.embedding.weight.grad, gen.embedding.bias.grad, pred.signal_embedding.weight.grad,
             pred.signal_embedding.bias.grad, gen.head.weight.grad[[1, 0]], gen.head.bias.grad[[1, 0]],
             None, None]
    for i in (0, 2, 4):
        grads += [pred.head[i].weight.grad, pred.head[i].bias.grad]
    for part in ("generator", "predictor"):
        stack = getattr(model, part).backbone
        params = dict(stack.named_parameters(remove_duplicate=False))
        grads += [params[k].grad if k in params else None for k in stack.state_dict()]
    if hard:
        grads.append(gen.positions.weight.grad[None])
    return grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--authors", type=Path, required=True, help="AIRS OpenBio/Seq2Exp checkout")
    parser.add_argument("--mamba", type=Path, required=True, help="state-spaces/mamba checkout")
    args = parser.parse_args()
    torch.set_num_threads(1)
    Model, CaduceusConfig = load_authors(args.authors.resolve(), args.mamba.resolve())
    for hard in (False, True):
        print(f"== {'public-hard' if hard else 'public-soft'} vs their "
              f"{'hard' if hard else 'soft'} run (largest relative difference)")
        for key, value in compare(Model, CaduceusConfig, hard).items():
            print(f"  {key:28s} {value:.3g}" if isinstance(value, float) else f"  {key:28s} {value}")


if __name__ == "__main__":
    main()
