"""Configuration of a Seq2Exp model: one dataclass tree, serialised into every checkpoint.

The defaults are the paper's soft run (SPEC section 1); :func:`preset` names the others.
``Seq2ExpConfig.from_dict(cfg.to_dict())`` rebuilds any configuration exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

#: Signal tracks in the order the model reads them (SPEC section 1).
DEFAULT_SIGNALS = ("h3k27ac", "dnase", "hic")


@dataclass
class StackConfig:
    """A bidirectional Mamba stack (Caduceus-style, pre-norm residual blocks with RMSNorm)."""

    d_model: int = 128
    n_layers: int = 4
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    #: Rank of the step-size projection; ``None`` = ceil(d_model / 16) as in mamba_ssm.
    dt_rank: int | None = None
    #: Initial step sizes, log-uniform in [dt_min, dt_max] (mamba_ssm's defaults): small steps
    #: mean long memory (about 1 / dt bp for the slowest state).
    dt_min: float = 0.001
    dt_max: float = 0.1
    #: Forward + reverse Mamba with tied in/out projections, combined by addition.
    bidirectional: bool = True
    #: Caduceus-PS parameter sharing: exact reverse-complement equivariance.
    rc_equivariant: bool = False
    #: Recompute each layer in backward (long windows fit in memory).
    checkpoint_layers: bool = False

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "d_state", "d_conv", "expand"):
            if getattr(self, name) < 1:
                raise ValueError(f"StackConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"StackConfig: need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")


@dataclass
class MaskConfig:
    """The mask distribution (paper sections 3.4-3.5, eq. 6-9) and how the mask is applied."""

    #: "soft": multiply by m; "hard": 1[m >= threshold] with a straight-through gradient;
    #: "top": keep the ``top_fraction`` of positions with the highest posterior mean
    #: (Seq2Exp-retrain: a frozen, trained generator selects, the predictor is retrained).
    mode: Literal["soft", "hard", "top"] = "soft"
    #: "paper": Beta(a1 + a2 - 1, b1 + b2 - 1) (Proposition 2); "sum": Beta(a1 + a2, b1 + b2)
    #: as in the authors' public implementation.
    posterior: Literal["paper", "sum"] = "paper"
    #: C_m, the hard-mask threshold.
    threshold: float = 0.5
    #: "top" mode: fraction of positions kept (the paper's retrain keeps 10%).
    top_fraction: float = 0.1
    #: b_min: floor added to softplus outputs (alpha1, beta1) and to each signal.
    b_min: float = 1.0
    #: w_i, weights of the signal tracks in alpha2/beta2 (one per signal, same order).
    signal_weights: tuple[float, ...] = (0.4, 0.4, 0.2)
    #: c_i, per-track constants of beta2 = sum_i w_i (c_i + b_min) k.
    signal_beta: tuple[float, ...] = (1.5, 0.2, 1.0)
    #: k, overall scale of the signal Beta.
    signal_scale: float = 10.0
    #: The sparse prior r(m) = Beta(alpha3, beta3) (eq. 7).
    prior_alpha: float = 10.0
    prior_beta: float = 90.0
    #: beta of eq. 3: weight of the KL term.
    kl_weight: float = 0.01
    #: Width (bp) of the central promoter region always kept in the mask.
    promoter_keep: int = 2000
    #: Hard mode only: run the predictor on the kept positions alone.
    packed: bool = False
    #: Masked-out positions read a learned embedding, ``m * E(x) + (1 - m) * e_mask``, instead
    #: of ``m * E(x)`` (the paper). A pre-norm stack rescales every position to unit RMS, which
    #: hides a multiplicative mask from its first mixer (and its gradient from the generator).
    mask_token: bool = False

    def __post_init__(self) -> None:
        self.signal_weights = tuple(float(w) for w in self.signal_weights)
        self.signal_beta = tuple(float(c) for c in self.signal_beta)
        if self.mode not in ("soft", "hard", "top"):
            raise ValueError(f"MaskConfig.mode must be 'soft', 'hard' or 'top', got {self.mode!r}")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"MaskConfig.top_fraction must be in (0, 1], got {self.top_fraction}")
        if self.posterior not in ("paper", "sum"):
            raise ValueError(f"MaskConfig.posterior must be 'paper' or 'sum', got {self.posterior!r}")
        if len(self.signal_weights) != len(self.signal_beta):
            raise ValueError(
                f"MaskConfig.signal_weights ({len(self.signal_weights)}) and signal_beta "
                f"({len(self.signal_beta)}) need one value per signal track"
            )
        if self.posterior == "paper" and self.b_min < 1.0:
            # alpha1 = softplus(.) + b_min > 1 is what keeps alpha1 + alpha2 - 1 > 0 for any input.
            raise ValueError(
                "MaskConfig: the paper posterior Beta(a1+a2-1, b1+b2-1) needs b_min >= 1 so that "
                f"both parameters stay > 0 for every input; got b_min={self.b_min}. "
                "Use posterior='sum' (the public implementation) for b_min < 1."
            )
        if self.b_min < 0 or self.signal_scale <= 0:
            raise ValueError("MaskConfig: b_min must be >= 0 and signal_scale > 0")
        if min(self.signal_weights, default=1.0) < 0 or min(self.signal_beta, default=1.0) < 0:
            raise ValueError("MaskConfig: signal_weights and signal_beta must be >= 0")
        if sum(w * (c + self.b_min) for w, c in zip(self.signal_weights, self.signal_beta)) <= 0:
            raise ValueError("MaskConfig: beta2 = sum_i w_i (c_i + b_min) k must be > 0")
        if self.prior_alpha <= 0 or self.prior_beta <= 0:
            raise ValueError("MaskConfig: prior_alpha and prior_beta must be > 0")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"MaskConfig.threshold must be in (0, 1), got {self.threshold}")
        if self.packed and self.mode == "soft":
            raise ValueError("MaskConfig.packed needs a 0/1 mask (mode 'hard' or 'top')")
        if self.packed and self.promoter_keep < 1:
            raise ValueError("MaskConfig.packed needs promoter_keep >= 1 (the pooled centre must be kept)")


@dataclass
class ScalingConfig:
    """Input and output scaling, fitted on the training genes by ``seq2exp train`` (see
    :mod:`seq2exp_plugin.train.scaling`) and applied inside the model's forward, so every caller
    (predict, Kipoi, gReLU, ISM, variants) sees the same numbers. The defaults are the identity:
    the paper's raw values, and what every checkpoint written before this field existed gets.
    """

    #: Per-signal divisor (one per track, or empty = 1): each track's genome-wide background,
    #: so the signal Beta and the predictor read fold-over-background values.
    signal_background: tuple[float, ...] = ()
    #: Per-feature ``log1p`` before standardisation (one per feature, or empty = none).
    feature_log1p: tuple[bool, ...] = ()
    #: Per-feature ``(x - mean) / std`` after the optional log1p (empty = 0 and 1).
    feature_mean: tuple[float, ...] = ()
    feature_std: tuple[float, ...] = ()
    #: The network predicts ``(y - target_mean) / target_std``; the model returns ``y``.
    target_mean: float = 0.0
    target_std: float = 1.0
    #: In eval mode, predictions are clamped to ``[target_low, target_high]`` (None: no bound).
    target_low: float | None = None
    target_high: float | None = None

    def __post_init__(self) -> None:
        self.signal_background = tuple(float(b) for b in self.signal_background)
        self.feature_log1p = tuple(bool(b) for b in self.feature_log1p)
        self.feature_mean = tuple(float(m) for m in self.feature_mean)
        self.feature_std = tuple(float(s) for s in self.feature_std)
        if min(self.signal_background, default=1.0) <= 0:
            raise ValueError(f"ScalingConfig.signal_background must be > 0, got {self.signal_background}")
        if min(self.feature_std, default=1.0) <= 0 or self.target_std <= 0:
            raise ValueError("ScalingConfig: feature_std and target_std must be > 0")
        if len(self.feature_mean) != len(self.feature_std):
            raise ValueError("ScalingConfig: feature_mean and feature_std need the same length")
        if None not in (self.target_low, self.target_high) and self.target_low > self.target_high:
            raise ValueError("ScalingConfig: target_low must be <= target_high")

    def check(self, n_signals: int, n_features: int) -> None:
        """Raise if a per-track or per-feature tuple has the wrong length."""
        for name, n in (("signal_background", n_signals), ("feature_log1p", n_features),
                        ("feature_mean", n_features), ("feature_std", n_features)):
            value = getattr(self, name)
            if value and len(value) != n:
                raise ValueError(f"ScalingConfig.{name} has {len(value)} values for {n} "
                                 f"{'signals' if name.startswith('signal') else 'features'}")


@dataclass
class Seq2ExpConfig:
    """Generator + mask + predictor (paper section 4.1)."""

    #: Names of the signal tracks, in the order of the signals tensor's channels.
    signals: tuple[str, ...] = DEFAULT_SIGNALS
    #: Extra per-gene features concatenated after pooling (8 mRNA half-life + promoter activity).
    n_features: int = 9
    generator: StackConfig = field(default_factory=StackConfig)
    predictor: StackConfig = field(default_factory=StackConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    #: Width (bp) of the central region mean-pooled by the predictor.
    pool_width: int = 2000
    #: Hidden width of the MLP head (137 -> 128 -> 128 -> 1 in the paper).
    head_hidden: int = 128
    #: How the predictor reads signal values: "identity" (the paper: raw values) or "log1p"
    #: (tames raw bigWig values in the thousands). The signal Beta always uses raw values.
    signal_transform: Literal["identity", "log1p"] = "identity"
    #: Fitted input/output scaling (identity by default; ``seq2exp train`` fits it).
    scaling: ScalingConfig = field(default_factory=ScalingConfig)

    def __post_init__(self) -> None:
        self.signals = tuple(self.signals)
        if isinstance(self.generator, dict):
            self.generator = StackConfig(**self.generator)
        if isinstance(self.predictor, dict):
            self.predictor = StackConfig(**self.predictor)
        if isinstance(self.mask, dict):
            self.mask = MaskConfig(**self.mask)
        if isinstance(self.scaling, dict):
            self.scaling = ScalingConfig(**self.scaling)
        self.scaling.check(len(self.signals), self.n_features)
        if len(self.mask.signal_weights) != len(self.signals):
            raise ValueError(
                f"Seq2ExpConfig: {len(self.signals)} signals {list(self.signals)} but "
                f"{len(self.mask.signal_weights)} mask.signal_weights"
            )
        if self.n_features < 0 or self.pool_width < 1:
            raise ValueError("Seq2ExpConfig: n_features must be >= 0 and pool_width >= 1")
        if self.signal_transform not in ("identity", "log1p"):
            raise ValueError(
                f"Seq2ExpConfig.signal_transform must be 'identity' or 'log1p', got {self.signal_transform!r}"
            )
        if self.mask.packed and self.predictor.rc_equivariant:
            raise ValueError(
                "Seq2ExpConfig: a packed predictor cannot be RC-equivariant (packing changes the "
                "position frame); use predictor.rc_equivariant=False or mask.packed=False"
            )

    @property
    def n_signals(self) -> int:
        return len(self.signals)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-safe dictionary (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Seq2ExpConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Seq2ExpConfig: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def preset(name: str, **overrides: Any) -> Seq2ExpConfig:
    """Named configurations.

    - ``soft``: the paper's soft run (prior Beta(10, 90), k = 10, b_min = 1).
    - ``hard``: hard mask with the straight-through estimator, prior Beta(0.1, 0.1222), k = 1,
      full-length predictor.
    - ``hard-packed``: ``hard`` with the predictor on kept positions only.
    - ``hard-public``: the public implementation's hard run (posterior without the -1, b_min 0).
    """
    masks = {
        "soft": MaskConfig(),
        "hard": MaskConfig(mode="hard", signal_scale=1.0, prior_alpha=0.1, prior_beta=0.1222),
        "hard-packed": MaskConfig(
            mode="hard", signal_scale=1.0, prior_alpha=0.1, prior_beta=0.1222, packed=True
        ),
        "hard-public": MaskConfig(
            mode="hard", posterior="sum", b_min=0.0, signal_scale=1.0,
            prior_alpha=0.1, prior_beta=0.1222, packed=True,
        ),
    }
    if name not in masks:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(masks)}")
    data = Seq2ExpConfig(mask=masks[name]).to_dict()
    _merge(data, overrides)
    return Seq2ExpConfig.from_dict(data)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
