"""Configuration of a Seq2Exp model: one dataclass tree, serialised into every checkpoint.

The defaults are the paper's soft run (docs/model.md maps them to its equations); :func:`preset` names the others.
``Seq2ExpConfig.from_dict(cfg.to_dict())`` rebuilds any configuration exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import InputError
from ..nn.config import StackConfig

__all__ = ["CONFIG_VERSION", "DEFAULT_SIGNALS", "MaskConfig", "Seq2ExpConfig", "StackConfig",
           "preset"]

#: Signal tracks in the order the model reads them (the paper's and the authors' code's).
DEFAULT_SIGNALS = ("h3k27ac", "dnase", "hic")

#: The version of the configuration this code writes (``Seq2ExpConfig.version``):
#: 1 (no ``version`` key): signal constants as tuples in the order of ``signals``; the kept
#: gate did not exist before some version-1 checkpoints (their state dicts lack it).
#: 2: signal constants by track name; the contact and kept-gate rates in the configuration;
#: a state dict missing a parameter is an error. Written before the per-cell-type head, a
#: version-2 configuration lacks ``celltype_head`` and ``cell_types``: the shared head (false,
#: none), which is what it had.
CONFIG_VERSION = 2


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
    #: w_i, weights of the signal tracks in alpha2/beta2, by track name (the model's signals
    #: may come in any order, and each needs one).
    signal_weights: dict[str, float] = field(
        default_factory=lambda: {"h3k27ac": 0.4, "dnase": 0.4, "hic": 0.2})
    #: c_i, per-track constants of beta2 = sum_i w_i (c_i + b_min) k, by track name.
    signal_beta: dict[str, float] = field(
        default_factory=lambda: {"h3k27ac": 1.5, "dnase": 0.2, "hic": 1.0})
    #: k, overall scale of the signal Beta.
    signal_scale: float = 10.0
    #: The sparse prior r(m) = Beta(alpha3, beta3) (eq. 7).
    prior_alpha: float = 10.0
    #: beta3 of the prior (alpha3 above).
    prior_beta: float = 90.0
    #: beta of eq. 3: weight of the KL term. The KL is a mean over positions (and genes), as in
    #: the authors' code, so against a KL summed over a window of L bp this weight is divided
    #: by L (0.01 per bp is 0.01 / 200,000 per 200 kb window).
    kl_weight: float = 0.01
    #: Width (bp) of the central promoter region always kept in the mask.
    promoter_keep: int = 2000
    #: Where the promoter and the blacklist overlap: False (the paper presets) removes the
    #: blacklisted promoter bases (nothing blacklisted is ever read); True (the public presets)
    #: keeps the whole promoter, as the authors' code sets it to 1 after removing the blacklist.
    promoter_over_blacklist: bool = False
    #: Hard mode only: run the predictor on the kept positions alone.
    packed: bool = False
    #: Masked-out positions read a learned embedding, ``m * E(x) + (1 - m) * e_mask``, instead
    #: of ``m * E(x)`` (the paper). A pre-norm stack rescales every position to unit RMS, which
    #: hides a multiplicative mask from its first mixer (and its gradient from the generator).
    mask_token: bool = False
    #: How the generator's two outputs ``h`` enter the posterior. "additive" (the paper, eq. 8
    #: and Proposition 2): ``alpha1, beta1 = softplus(h) + b_min`` are added to the signal
    #: Beta's parameters. "multiplicative": ``alpha1, beta1 = softplus(h) / ln 2`` (1 at h = 0;
    #: the head starts at zero) scale them, ``Beta(alpha1 * alpha2, beta1 * beta2)``, so the DNA
    #: moves the mask at the signal Beta's own scale (k = 10 makes alpha2, beta2 of order 10-40,
    #: which an additive O(1) output cannot move) and the generator starts from the signal
    #: posterior.
    sequence_term: Literal["additive", "multiplicative"] = "additive"
    #: Regulariser weighted by ``kl_weight``. None: KL(posterior || Beta(alpha3, beta3)) per
    #: position (eq. 3), whose optimum is the same constant at every position. A fraction in
    #: (0, 1): a target for the expected kept fraction instead - the Bernoulli KL
    #: ``KL(q || kept_target)`` of the batch's mean posterior mean ``q`` over the positions the
    #: generator chooses (promoter and blacklist excluded); the target says how much to keep,
    #: the task loss says where.
    kept_target: float | None = None
    #: Training draws the mask from the posterior (the paper's reparameterised sample); False
    #: uses the posterior mean, as inference does (no sampling noise in the task gradient).
    sample: bool = True

    def __post_init__(self) -> None:
        self.signal_weights = {str(k): float(w) for k, w in self.signal_weights.items()}
        self.signal_beta = {str(k): float(c) for k, c in self.signal_beta.items()}
        if self.mode not in ("soft", "hard", "top"):
            raise ValueError(f"MaskConfig.mode must be 'soft', 'hard' or 'top', got {self.mode!r}")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"MaskConfig.top_fraction must be in (0, 1], got {self.top_fraction}")
        if self.posterior not in ("paper", "sum"):
            raise ValueError(f"MaskConfig.posterior must be 'paper' or 'sum', got {self.posterior!r}")
        if self.posterior == "paper" and self.b_min < 1.0:
            # alpha1 = softplus(.) + b_min > 1 is what keeps alpha1 + alpha2 - 1 > 0 for any input.
            raise ValueError(
                "MaskConfig: the paper posterior Beta(a1+a2-1, b1+b2-1) needs b_min >= 1 so that "
                f"both parameters stay > 0 for every input; got b_min={self.b_min}. "
                "Use posterior='sum' (the public implementation) for b_min < 1."
            )
        if self.b_min < 0 or self.signal_scale <= 0:
            raise ValueError("MaskConfig: b_min must be >= 0 and signal_scale > 0")
        if min([*self.signal_weights.values(), *self.signal_beta.values()], default=0.0) < 0:
            raise ValueError("MaskConfig: signal_weights and signal_beta must be >= 0")
        if self.prior_alpha <= 0 or self.prior_beta <= 0:
            raise ValueError("MaskConfig: prior_alpha and prior_beta must be > 0")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"MaskConfig.threshold must be in (0, 1), got {self.threshold}")
        if self.sequence_term not in ("additive", "multiplicative"):
            raise ValueError("MaskConfig.sequence_term must be 'additive' or 'multiplicative', "
                             f"got {self.sequence_term!r}")
        if self.kept_target is not None and not 0.0 < self.kept_target < 1.0:
            raise ValueError(f"MaskConfig.kept_target must be in (0, 1) or None, got {self.kept_target}")
        if self.packed and self.mode == "soft":
            raise ValueError("MaskConfig.packed needs a 0/1 mask (mode 'hard' or 'top')")
        if self.promoter_keep < 0:
            raise ValueError(f"MaskConfig.promoter_keep must be >= 0 bp, got {self.promoter_keep}")
        if self.packed and self.promoter_keep < 1:
            raise ValueError("MaskConfig.packed needs promoter_keep >= 1 (the pooled centre must be kept)")

    def signal_constants(self, names: tuple[str, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(w_i, c_i)`` of the tracks ``names``, in that order (the signals' channel order).

        Raises an InputError naming the first track without a weight or constant, and how to
        give it one."""
        for table in ("signal_weights", "signal_beta"):
            missing = [name for name in names if name not in getattr(self, table)]
            if missing:
                raise InputError(
                    f"mask.{table} has no value for the signal track {missing[0]!r} (it has "
                    f"{sorted(getattr(self, table))}); give every track one by name, e.g. "
                    f"--set model.mask.signal_weights.{missing[0]}=0.2 "
                    f"model.mask.signal_beta.{missing[0]}=1.0")
        weights = tuple(self.signal_weights[name] for name in names)
        constants = tuple(self.signal_beta[name] for name in names)
        if sum(w * (c + self.b_min) for w, c in zip(weights, constants)) <= 0:
            raise InputError(f"mask: beta2 = sum_i w_i (c_i + b_min) k over the signals "
                             f"{list(names)} must be > 0")
        return weights, constants


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
    #: The standard deviations of that standardisation (empty = 1).
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
    #: The head also reads the kept positions of the whole window: ``sum_l m_l h_l / pool_width``
    #: (with no mask, the window's mean) beside the centre's mean, so a kept enhancer's state
    #: reaches the head directly instead of through the recurrence alone, and the generator's
    #: gradient at each kept position carries that position's own contribution. The sum enters
    #: through a learned gate that starts at 0, so the head reads the promoter first (not the
    #: paper; see docs/model.md, "The learned preset").
    kept_pool: bool = False
    #: Hidden width of the MLP head (137 -> 128 -> 128 -> 1 in the paper).
    head_hidden: int = 128
    #: One output per training cell type (``cell_types``) in the head's last layer, each example
    #: reading its own cell type's (the thesis's multitask models; docs/celltypes.md). False: one
    #: shared output, the only head that can predict a cell type the model never saw.
    celltype_head: bool = False
    #: The cell types of the per-cell-type head's outputs, in order (``seq2exp train`` writes
    #: the run's ``data.cell_types``); empty without that head.
    cell_types: tuple[str, ...] = ()
    #: Width (bp) of the central promoter whose log mean signals, with the gene features, also
    #: reach the output through a linear map: the promoter ridge, fitted in closed form on the
    #: training genes before training (penalty chosen on the validation genes) and then held
    #: fixed, while the head's last layer starts at zero. The network starts as the promoter
    #: ridge and learns what it leaves unexplained (on real K562 a two-feature promoter ridge was
    #: the model to beat). None: no such path (the paper). See docs/model.md, "The learned preset".
    promoter_linear: int | None = None
    #: How the predictor reads signal values: "identity" (the paper: raw values) or "log1p"
    #: (tames raw bigWig values in the thousands). The signal Beta always uses raw values.
    signal_transform: Literal["identity", "log1p"] = "identity"
    #: The generator reads the signals too: its input is ``E_seq(x) + E_sig(s)`` like the
    #: predictor's (the authors' hard run), not the DNA alone (the paper, eq. 8).
    generator_signals: bool = False
    #: How a generator that reads signals sees them: None, as the predictor does
    #: (``signal_transform``); "relative": ``log1p(s / mean of s over the window)`` per track,
    #: scale-free, so a contact track of small values (balanced Hi-C, about 0.01-0.15) reaches
    #: the generator as strongly as fold-change tracks (not the paper; see docs/model.md).
    generator_signal_transform: Literal["relative"] | None = None
    #: Name of a contact track (e.g. "hic"): the generator also learns an exponent gamma
    #: (starting at 0) and scales alpha1 by ``(c / window mean of c) ** gamma``, so the mask's
    #: odds become activity x contact ** gamma, the ABC model's form (not the paper; needs
    #: ``mask.sequence_term: multiplicative``). See docs/model.md, "The learned preset".
    contact_exponent: str | None = None
    #: Generator and predictor use the same embedding modules (DNA, and signal and position
    #: table where both have one), as the authors' code does.
    shared_embedding: bool = False
    #: Generator and predictor run one and the same stack (the authors' hard run); needs equal
    #: generator and predictor stack configurations.
    shared_stack: bool = False
    #: Rows of a learned absolute position table (``position_table x d_model``, zeros at start)
    #: added to every position's embedding; it must equal the window length (the authors' hard
    #: run: 200,000). 0: none.
    position_table: int = 0
    #: Fitted input/output scaling (identity by default; ``seq2exp train`` fits it).
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    #: ``contact_exponent``: gamma = contact_rate x its parameter. Adam moves a parameter by
    #: about one learning rate per step whatever the scale of its gradient: the Mamba weights
    #: need steps of that size, the one exponent has to travel O(1) within a run (at rate 1 it
    #: reached 0.03 in 400 steps).
    contact_rate: float = 30.0
    #: ``kept_pool``: the kept sum's gate is kept_gate_rate x its parameter; the factor sets
    #: how many Adam steps the gate needs to open.
    kept_gate_rate: float = 10.0
    #: The configuration's version (:data:`CONFIG_VERSION`): what a checkpoint written with it
    #: holds, so that loading serves each older version exactly and nothing else.
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        self.signals = tuple(self.signals)
        self.cell_types = tuple(str(c) for c in self.cell_types)
        if not 1 <= self.version <= CONFIG_VERSION:
            raise ValueError(f"Seq2ExpConfig.version {self.version}: this seq2exp-plugin reads "
                             f"versions 1 to {CONFIG_VERSION} (written by a newer release?)")
        if isinstance(self.generator, dict):
            self.generator = StackConfig(**self.generator)
        if isinstance(self.predictor, dict):
            self.predictor = StackConfig(**self.predictor)
        if isinstance(self.mask, dict):
            self.mask = MaskConfig(**self.mask)
        if isinstance(self.scaling, dict):
            self.scaling = ScalingConfig(**self.scaling)
        self.scaling.check(len(self.signals), self.n_features)
        if len(set(self.signals)) != len(self.signals):
            raise ValueError(f"Seq2ExpConfig.signals: a track named twice in {list(self.signals)}")
        self.mask.signal_constants(self.signals)
        if self.contact_rate <= 0 or self.kept_gate_rate <= 0:
            raise ValueError("Seq2ExpConfig: contact_rate and kept_gate_rate must be > 0")
        if self.n_features < 0 or self.pool_width < 1:
            raise ValueError("Seq2ExpConfig: n_features must be >= 0 and pool_width >= 1")
        if self.promoter_linear is not None and self.promoter_linear < 1:
            raise ValueError(f"Seq2ExpConfig.promoter_linear must be a width >= 1 bp or None, got {self.promoter_linear}")
        if self.signal_transform not in ("identity", "log1p"):
            raise ValueError(
                f"Seq2ExpConfig.signal_transform must be 'identity' or 'log1p', got {self.signal_transform!r}"
            )
        if self.mask.packed and self.predictor.rc_equivariant:
            raise ValueError(
                "Seq2ExpConfig: a packed predictor cannot be RC-equivariant (packing changes the "
                "position frame); use predictor.rc_equivariant=False or mask.packed=False"
            )
        self._check_sharing()
        self._check_celltype_head()

    def _check_celltype_head(self) -> None:
        if self.celltype_head and not self.cell_types:
            raise ValueError("Seq2ExpConfig.celltype_head needs cell_types, the names of its outputs "
                             "(seq2exp train sets them from data.cell_types)")
        if not self.celltype_head and self.cell_types:
            raise ValueError(f"Seq2ExpConfig.cell_types {list(self.cell_types)} name the outputs of a "
                             "per-cell-type head: set celltype_head: true, or leave cell_types out")
        if len(set(self.cell_types)) != len(self.cell_types) or "" in self.cell_types:
            raise ValueError(f"Seq2ExpConfig.cell_types must be distinct, non-empty names, got "
                             f"{list(self.cell_types)}")

    @property
    def n_outputs(self) -> int:
        """Outputs of the head's last layer: one per cell type with ``celltype_head``, else one."""
        return len(self.cell_types) if self.celltype_head else 1

    def celltype_index(self, cell_type: str) -> int:
        """The head output of ``cell_type`` (0 for the shared head, which serves any cell type).

        Raises an InputError for a cell type a per-cell-type head has no output for."""
        if not self.celltype_head:
            return 0
        if cell_type not in self.cell_types:
            raise InputError(
                f"cell type {cell_type!r}: the model's per-cell-type head (model.celltype_head) has "
                f"outputs for {list(self.cell_types)} only; a cell type the model never saw needs "
                "the shared head: train without model.celltype_head (the shared head reads cell "
                "identity from the signals, which is what generalises to unseen cell types)")
        return self.cell_types.index(cell_type)

    def _check_sharing(self) -> None:
        gen, pred = self.generator, self.predictor
        if self.position_table < 0:
            raise ValueError(f"Seq2ExpConfig.position_table must be >= 0, got {self.position_table}")
        if self.position_table and (gen.rc_equivariant or pred.rc_equivariant):
            raise ValueError("Seq2ExpConfig: a position table is not reverse-complement symmetric; "
                             "use position_table=0 or rc_equivariant=False")
        if self.generator_signal_transform not in (None, "relative"):
            raise ValueError("Seq2ExpConfig.generator_signal_transform must be None or 'relative', "
                             f"got {self.generator_signal_transform!r}")
        if self.contact_exponent is not None:
            if self.contact_exponent not in self.signals:
                raise ValueError(f"Seq2ExpConfig.contact_exponent {self.contact_exponent!r} is not one of "
                                 f"the signals {list(self.signals)}: name the Hi-C track so, or set "
                                 "model.contact_exponent to null (or use preset soft)")
            if self.mask.sequence_term != "multiplicative":
                raise ValueError("Seq2ExpConfig.contact_exponent needs mask.sequence_term: multiplicative")
        if self.generator_signals and self.n_signals == 0:
            raise ValueError("Seq2ExpConfig.generator_signals needs at least one signal track")
        if self.shared_embedding and gen.d_model != pred.d_model:
            raise ValueError(f"Seq2ExpConfig.shared_embedding needs equal d_model, got generator "
                             f"{gen.d_model} and predictor {pred.d_model}")
        if self.shared_stack and gen != pred:
            raise ValueError(f"Seq2ExpConfig.shared_stack needs the same generator and predictor "
                             f"stack configuration, got {gen} and {pred}")
        if (self.shared_stack or self.shared_embedding) and self.mask.mode == "top":
            raise ValueError("Seq2ExpConfig: 'top' mode (retrain) freezes the generator, so it "
                             "cannot share modules with the predictor; set shared_stack and "
                             "shared_embedding to false")

    @property
    def n_signals(self) -> int:
        return len(self.signals)

    def check_tracks(self, names: Any, source: str) -> None:
        """Raise unless ``names`` are this model's signal tracks in its channel order: weights,
        constants and embeddings are per channel, so tracks in another order (or others) would
        each be read as another track. ``source`` says where ``names`` come from."""
        if tuple(names) != self.signals:
            raise InputError(f"{source}: signal tracks {list(names)}, but the model reads "
                             f"{list(self.signals)} (by name, in that order); give the tracks "
                             "under those names in that order")

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-safe dictionary (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Seq2ExpConfig":
        """Every key and value checked against the fields (names, type hints) first; a
        version-1 dictionary's signal constants are read by position, as it was written."""
        from ..typed_config import build

        return build(cls, _named_signal_constants(data), "model")


def _named_signal_constants(data: Any) -> Any:
    """Version 1 stored the signal constants as tuples in the order of ``signals``: the same
    dictionary with them by name (what that checkpoint computed)."""
    if not isinstance(data, dict) or data.get("version", CONFIG_VERSION) != 1:
        return data
    mask = data.get("mask")
    if not isinstance(mask, dict):
        return data
    signals = list(data.get("signals", DEFAULT_SIGNALS))
    named = {}
    for key in ("signal_weights", "signal_beta"):
        value = mask.get(key)
        if isinstance(value, (list, tuple)):
            if len(value) != len(signals):
                raise InputError(f"model.mask.{key}: {len(value)} values for the {len(signals)} "
                                 f"signals {signals}")
            named[key] = dict(zip(signals, value))
    return {**data, "mask": {**mask, **named}}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


#: The authors' hard prior: mean 0.45 at scale 0.1, i.e. alpha3 = 0.1, beta3 = 0.1 * 0.55 / 0.45.
_PUBLIC_HARD_BETA = 0.1 * (1 - 0.45) / 0.45


def preset(name: str, **overrides: Any) -> Seq2ExpConfig:
    """Named configurations.

    The paper's runs, as this package reads the paper (their behaviour is pinned by tests):

    - ``soft``: the paper's soft run (prior Beta(10, 90), k = 10, b_min = 1).
    - ``hard``: hard mask with the straight-through estimator, prior Beta(0.1, 0.1222), k = 1,
      full-length predictor.
    - ``hard-packed``: ``hard`` with the predictor on kept positions only.

    The authors' public runs (AIRS ``OpenBio/Seq2Exp``, ``Seq2Exp.sh``), structure for structure:
    one DNA embedding for generator and predictor, Caduceus' initialisation, the posterior
    without the -1 (Beta(a1 + a2, b1 + b2)), the promoter kept over the blacklist.

    - ``public-soft``: their soft run (k = 10, b_min = 1, prior Beta(10, 90)).
    - ``public-hard``: their hard run: k = 1, b_min = 0, prior Beta(0.1, 0.1 * 0.55 / 0.45);
      the generator reads the DNA + signal embedding; generator and predictor share one stack;
      a learned position table (200,000 x d_model: set ``position_table`` to the window) is
      added to every input; the predictor runs on the kept positions.

      Two departures, both fixes of defects of their code: the packed rows are multiplied by
      their straight-through mask values (theirs select them with a boolean index, which cuts
      the prediction loss's gradient to the mask head: only the KL trained it), and a gene's
      prediction does not depend on the rest of its batch (theirs zero-pad the batch to its
      longest sequence and scan the padding; ours keeps the padding out of every state).

    ``learned`` (the default of ``seq2exp train``; not the paper, see docs/model.md, "The
    learned preset"): a hard mask whose kept share has a target (8%) instead of the
    per-position KL; the generator reads DNA and signals and its factors scale the signal Beta
    (``sequence_term="multiplicative"``), times a learned power of the Hi-C contact to the TSS
    (``contact_exponent="hic"``: the track must be named ``hic``); the predictor runs on the
    kept positions only (``mask.packed``, as the paper's hard run) and its head reads all of
    them besides the centre (``kept_pool``); the mask token, for runs set to ``packed: false``;
    the promoter ridge (TSS +/- 500 bp) as a fixed linear path beside the head
    (``promoter_linear``), so the network learns its residual.
    """
    hard_prior = dict(mode="hard", signal_scale=1.0, prior_alpha=0.1, prior_beta=0.1222)
    presets: dict[str, dict[str, Any]] = {
        "soft": {},
        "hard": {"mask": hard_prior},
        "hard-packed": {"mask": {**hard_prior, "packed": True}},
        "public-soft": {
            "mask": {"posterior": "sum", "promoter_over_blacklist": True},
            "generator": {"caduceus_init": True}, "predictor": {"caduceus_init": True},
            "shared_embedding": True,
        },
        "public-hard": {
            "mask": {"mode": "hard", "posterior": "sum", "b_min": 0.0, "signal_scale": 1.0,
                     "prior_alpha": 0.1, "prior_beta": _PUBLIC_HARD_BETA, "packed": True,
                     "promoter_over_blacklist": True},
            "generator": {"caduceus_init": True}, "predictor": {"caduceus_init": True},
            "shared_embedding": True, "generator_signals": True, "shared_stack": True,
            "position_table": 200_000,
        },
        "learned": {"mask": {"mode": "hard", "sequence_term": "multiplicative", "kept_target": 0.08,
                             "kl_weight": 1.0, "packed": True, "mask_token": True},
                    "generator_signals": True, "generator_signal_transform": "relative",
                    "contact_exponent": "hic", "kept_pool": True, "promoter_linear": 1000},
    }
    if name not in presets:
        raise InputError(f"unknown preset {name!r}; choose from {sorted(presets)}")
    data = Seq2ExpConfig().to_dict()
    _merge(data, presets[name])
    _merge(data, overrides)
    return Seq2ExpConfig.from_dict(data)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
