"""Mamba block, bidirectional stack and RC-equivariance against independent computations."""

import copy

import pytest
import torch
import torch.nn.functional as F

from seq2exp_plugin.model.config import StackConfig
from seq2exp_plugin.nn.bimamba import BiMamba, BiMambaStack, rc_symmetrize, reverse_complement
from seq2exp_plugin.nn.mamba import Mamba

# mamba_ssm.modules.mamba_simple.Mamba(d_model=8, d_state=4, d_conv=4, expand=2): dt_rank = 1
MAMBA_SSM_SHAPES = {
    "A_log": (16, 4),
    "D": (16,),
    "in_proj.weight": (32, 8),
    "conv1d.weight": (16, 1, 4),
    "conv1d.bias": (16,),
    "x_proj.weight": (9, 16),
    "dt_proj.weight": (16, 1),
    "dt_proj.bias": (16,),
    "out_proj.weight": (8, 16),
}


def naive_mamba(block: Mamba, hidden: torch.Tensor) -> torch.Tensor:
    """Mamba written out directly in float64: conv1d with padding, a sequential scan."""
    p = {k: v.detach().double() for k, v in block.state_dict().items()}
    hidden = hidden.double()
    length = hidden.shape[1]
    xz = hidden @ p["in_proj.weight"].T
    x, z = xz.chunk(2, dim=-1)
    x = F.conv1d(x.transpose(1, 2), p["conv1d.weight"], p["conv1d.bias"],
                 padding=block.d_conv - 1, groups=block.d_inner)[..., :length]
    x = F.silu(x).transpose(1, 2)  # (B, L, d_inner)
    x_dbl = x @ p["x_proj.weight"].T
    dt, B, C = x_dbl.split([block.dt_rank, block.d_state, block.d_state], dim=-1)
    delta = F.softplus(dt @ p["dt_proj.weight"].T + p["dt_proj.bias"])
    A = -torch.exp(p["A_log"])
    h = torch.zeros(hidden.shape[0], block.d_inner, block.d_state, dtype=torch.float64)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, t, :, None] * A) * h + delta[:, t, :, None] * B[:, t, None, :] * x[:, t, :, None]
        ys.append((h * C[:, t, None, :]).sum(-1) + p["D"] * x[:, t])
    y = torch.stack(ys, dim=1) * F.silu(z)
    return y @ p["out_proj.weight"].T


def test_parameter_names_and_shapes_match_mamba_ssm():
    block = Mamba(d_model=8, d_state=4, d_conv=4, expand=2)
    assert {k: tuple(v.shape) for k, v in block.state_dict().items()} == MAMBA_SSM_SHAPES
    assert block.A_log._no_weight_decay and block.D._no_weight_decay


@pytest.mark.parametrize("length", [1, 3, 37])
def test_mamba_block_matches_naive_float64(length):
    torch.manual_seed(0)
    block = Mamba(d_model=8, d_state=4)
    with torch.no_grad():  # non-trivial conv taps and step sizes
        block.conv1d.weight.normal_()
        block.dt_proj.bias.normal_()
    hidden = torch.randn(2, length, 8)
    out = block(hidden)
    assert torch.allclose(out.double(), naive_mamba(block, hidden), rtol=1e-4, atol=1e-5)


def test_reverse_mix_equals_flipped_forward():
    torch.manual_seed(1)
    block = Mamba(d_model=8, d_state=4)
    with torch.no_grad():
        block.conv1d.weight.normal_()
    xz = block.in_proj(torch.randn(2, 23, 8))
    assert torch.allclose(block.mix(xz, reverse=True), block.mix(xz.flip(1)).flip(1), atol=1e-5)


def test_bidirectional_is_forward_plus_reverse_on_reversed_input_reversed():
    torch.manual_seed(2)
    mixer = BiMamba(d_model=8, d_state=4, d_conv=4, expand=2, dt_rank=None)
    with torch.no_grad():
        mixer.mamba_rev.dt_proj.bias.normal_()  # make the two directions differ
    assert mixer.mamba_rev.in_proj.weight is mixer.mamba_fwd.in_proj.weight
    assert mixer.mamba_rev.out_proj.weight is mixer.mamba_fwd.out_proj.weight
    x = torch.randn(2, 19, 8)
    expected = mixer.mamba_fwd(x) + mixer.mamba_rev(x.flip(1)).flip(1)
    assert torch.allclose(mixer(x), expected, atol=1e-5)
    # Caduceus names: the tied projections appear under both directions
    keys = set(mixer.state_dict())
    assert {"mamba_fwd.in_proj.weight", "mamba_rev.in_proj.weight", "mamba_rev.A_log"} <= keys


def test_stack_names_follow_caduceus_and_checkpointing_is_exact():
    torch.manual_seed(3)
    cfg = StackConfig(d_model=8, n_layers=2, d_state=4)
    stack = BiMambaStack(cfg)
    assert "layers.1.mixer.mamba_fwd.in_proj.weight" in stack.state_dict()
    assert "layers.0.norm.weight" in stack.state_dict() and "norm_f.weight" in stack.state_dict()
    ckpt = BiMambaStack(StackConfig(d_model=8, n_layers=2, d_state=4, checkpoint_layers=True))
    ckpt.load_state_dict(stack.state_dict())
    x = torch.randn(1, 31, 8)
    grads = []
    for model in (stack, ckpt):
        model.zero_grad()
        model(x).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_reverse_complement_of_one_hot():
    seq = F.one_hot(torch.tensor([[0, 0, 1, 2, 3]]), 4).transpose(1, 2).float()  # AACGT
    rc = reverse_complement(seq)
    assert rc.argmax(1).tolist() == [[0, 1, 2, 3, 3]]  # ACGTT


def test_rc_symmetrize_is_exactly_equivariant():
    torch.manual_seed(4)
    stack = BiMambaStack(StackConfig(d_model=8, n_layers=2, d_state=4))
    emb = torch.nn.Linear(4, 8)
    sig = torch.nn.Linear(2, 8)

    def encode(seq, signals):
        return stack(emb(seq.transpose(1, 2)) + sig(signals.transpose(1, 2)))

    seq = F.one_hot(torch.randint(0, 4, (2, 41)), 4).transpose(1, 2).float()
    signals = torch.rand(2, 2, 41)
    out = rc_symmetrize(encode, seq, signals)
    out_rc = rc_symmetrize(encode, reverse_complement(seq), signals.flip(-1))
    assert torch.allclose(out_rc, out.flip(1), atol=1e-5)
    assert not torch.allclose(encode(reverse_complement(seq), signals.flip(-1)), encode(seq, signals).flip(1), atol=1e-3)


def test_copying_state_dict_between_instances_reproduces_outputs():
    torch.manual_seed(5)
    stack = BiMambaStack(StackConfig(d_model=8, n_layers=1, d_state=4))
    clone = copy.deepcopy(stack)
    fresh = BiMambaStack(StackConfig(d_model=8, n_layers=1, d_state=4))
    fresh.load_state_dict(stack.state_dict())
    x = torch.randn(1, 12, 8)
    assert torch.equal(fresh(x), clone(x))
    assert fresh.layers[0].mixer.mamba_rev.in_proj.weight is fresh.layers[0].mixer.mamba_fwd.in_proj.weight


@pytest.mark.parametrize("checkpoint_layers", [False, True])
def test_padded_batch_gives_each_sequence_what_it_gets_alone(checkpoint_layers):
    """Sequences of different lengths padded at their ends (with noise) and run as one batch
    with ``valid``: on every valid position, outputs and input gradients equal those of each
    sequence run alone, in both scan directions (float64, the padding cannot leak)."""
    torch.manual_seed(6)
    stack = BiMambaStack(StackConfig(d_model=8, n_layers=2, d_state=4,
                                     checkpoint_layers=checkpoint_layers)).double()
    lengths = [31, 17, 5]
    batch = torch.randn(3, 31, 8, dtype=torch.float64) * 5  # the padding is noise too
    valid = torch.arange(31) < torch.tensor(lengths)[:, None]
    batch.requires_grad_(True)
    out = stack(batch, valid)
    weights = torch.randn_like(out)
    (out * weights * valid[..., None]).sum().backward()
    for b, n in enumerate(lengths):
        alone = batch[b:b + 1, :n].detach().clone().requires_grad_(True)
        out_alone = stack(alone)
        (out_alone * weights[b:b + 1, :n]).sum().backward()
        torch.testing.assert_close(out[b, :n], out_alone[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(batch.grad[b, :n], alone.grad[0], rtol=1e-10, atol=1e-12)
        assert torch.all(batch.grad[b, n:] == 0)
    # without ``valid`` the padding would reach the reverse direction's states
    assert not torch.allclose(stack(batch.detach())[1, :17], stack(batch[1:2, :17].detach())[0])
