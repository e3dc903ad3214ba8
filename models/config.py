"""Run configuration: frozen dataclasses, loadable from JSON/TOML dicts, unknown keys rejected.

A run is fully described by one ``RunConfig``; its ``to_dict()`` is what a run folder stores in ``config.json``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import tomllib
import types
import typing
from typing import Any


DATA_KINDS = ("affine_noise", "noise", "markov", "modular", "random_labels", "copy", "reverse", "dyck", "grammar",
              "text", "teacher")
MODULAR_OPS = ("add", "sub", "mul")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The data's structure knob (``models.data`` documents every generator and its entropy rate).

  ``kind``: ``"affine_noise"`` (default, the flagship) is the affine recurrence ``x_{t+1} = (a x_t + b) mod V`` in
  which each next token is replaced by a uniform draw with probability ``p``; the other kinds are ``noise``,
  ``markov`` (permutation-to-uniform chain), ``modular`` (``a op b mod modulus`` with a train/test split of pairs),
  ``random_labels`` (the same pairs with shuffled answers), ``copy``, ``reverse``, ``dyck``, ``grammar`` (a random
  probabilistic grammar at ``grammar_temperature``) and ``text`` (``text_source``: ``pydoc`` English, ``stdlib``
  Python source, or a file path). For every kind the knob ``p`` in ``noise_p`` is the probability that a scored
  token is replaced by a uniform draw (for ``affine_noise`` and ``markov`` the chain continues from the replaced
  token). ``noise_p`` lists one ``p`` per regime; a run trains ``len(noise_p) * members_per_regime`` members unless
  the ``ensemble`` section says otherwise.

  ``task_seed`` fixes the random structure every member shares (the Markov permutation, the modular train/test
  split and label shuffle, the grammar), so members differ only in their own seeds.

  ``teacher``: a Markov chain whose next-token logits are a planted rank-``teacher_rank`` map over the vocabulary,
  ``P(y | x) = (1 - p) softmax(teacher_scale * A[x])_y + p / V`` (``models.data.Teacher``; ``teacher_scale`` is the
  root-mean-square teacher logit at ``p = 0``). ``teacher_train_sequences``: 0 draws fresh training data every step;
  ``n > 0`` trains every member on its own fixed pool of ``n`` sequences (``n * seq_len`` transitions), so the
  empirical map it can learn is the teacher plus sampling noise.
  """

  kind: str = "affine_noise"
  vocab_size: int = 64
  seq_len: int = 32
  batch_size: int = 32
  affine_a: int = 5
  affine_b: int = 3
  noise_p: tuple[float, ...] = (1.0, 0.5, 0.0)
  regime_names: tuple[str, ...] = ("noise", "meso", "structured")
  task_seed: int = 0
  modulus: int = 113
  modular_op: str = "add"
  train_fraction: float = 0.3
  dyck_types: int = 2
  dyck_max_depth: int = 8
  grammar_nonterminals: int = 6
  grammar_rules: int = 3
  grammar_temperature: float = 1.0
  text_source: str = "pydoc"
  text_level: str = "byte"
  heldout_fraction: float = 0.1
  teacher_rank: int = 2
  teacher_scale: float = 1.0
  teacher_train_sequences: int = 0

  def __post_init__(self):
    if self.kind not in DATA_KINDS:
      raise ValueError(f"data.kind: expected one of {', '.join(DATA_KINDS)}, got {self.kind!r}")
    for name in ("vocab_size", "seq_len", "batch_size"):
      if getattr(self, name) < 2:
        raise ValueError(f"data.{name}: expected an integer >= 2, got {getattr(self, name)}")
    if not self.noise_p:
      raise ValueError("data.noise_p: expected at least one noise probability")
    for p in self.noise_p:
      if not 0.0 <= p <= 1.0:
        raise ValueError(f"data.noise_p: expected probabilities in [0, 1], got {p}")
    if len(self.regime_names) != len(self.noise_p):
      raise ValueError(f"data.regime_names: expected {len(self.noise_p)} names (one per noise_p), "
                       f"got {len(self.regime_names)}")
    if self.kind in ("modular", "random_labels"):
      if self.modulus < 2:
        raise ValueError(f"data.modulus: expected >= 2, got {self.modulus}")
      if self.vocab_size < self.modulus + 2:
        raise ValueError(f"data.vocab_size: {self.kind} needs modulus + 2 = {self.modulus + 2} tokens (residues, "
                         f"the op and '='), got {self.vocab_size}")
      if self.seq_len != 4:
        raise ValueError(f"data.seq_len: {self.kind} sequences are 'a op b =' (4 tokens) -> answer; set 4, "
                         f"got {self.seq_len}")
      if self.modular_op not in MODULAR_OPS:
        raise ValueError(f"data.modular_op: expected one of {MODULAR_OPS}, got {self.modular_op!r}")
      if not 0.0 < self.train_fraction < 1.0:
        raise ValueError(f"data.train_fraction: expected in (0, 1), got {self.train_fraction}")
    if self.kind in ("copy", "reverse"):
      if self.seq_len % 2:
        raise ValueError(f"data.seq_len: {self.kind} needs an even length (n tokens, separator, n tokens), "
                         f"got {self.seq_len}")
      if self.vocab_size < 3:
        raise ValueError(f"data.vocab_size: {self.kind} needs >= 3 tokens (>= 2 symbols + separator)")
    if self.kind == "dyck":
      if self.vocab_size < 2 * self.dyck_types or self.dyck_types < 1:
        raise ValueError(f"data.vocab_size: dyck with {self.dyck_types} bracket types needs >= "
                         f"{2 * self.dyck_types} tokens, got {self.vocab_size}")
      if self.dyck_max_depth < 2:
        raise ValueError(f"data.dyck_max_depth: expected >= 2, got {self.dyck_max_depth}")
    if self.kind == "grammar":
      if not self.grammar_temperature > 0:
        raise ValueError(f"data.grammar_temperature: expected > 0, got {self.grammar_temperature}")
      if self.grammar_nonterminals < 1 or self.grammar_rules < 1:
        raise ValueError("data.grammar_nonterminals / data.grammar_rules: expected >= 1")
    if self.kind == "text":
      if self.text_level not in ("byte", "char"):
        raise ValueError(f"data.text_level: expected 'byte' or 'char', got {self.text_level!r}")
      if not 0.0 < self.heldout_fraction < 1.0:
        raise ValueError(f"data.heldout_fraction: expected in (0, 1), got {self.heldout_fraction}")
    if self.kind == "teacher":
      if not 1 <= self.teacher_rank <= self.vocab_size - 1:
        raise ValueError(f"data.teacher_rank: expected an integer in [1, vocab_size - 1 = {self.vocab_size - 1}] "
                         f"(the teacher map has no constant-vector component), got {self.teacher_rank}")
      if not self.teacher_scale >= 0.0:
        raise ValueError(f"data.teacher_scale: expected >= 0, got {self.teacher_scale}")
      if self.teacher_train_sequences < 0:
        raise ValueError(f"data.teacher_train_sequences: expected >= 0 (0 = fresh data every step), got "
                         f"{self.teacher_train_sequences}")


ACTIVATIONS = ("gelu", "relu", "tanh", "linear")
INIT_SCHEMES = ("gaussian", "orthogonal", "flax_default")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Decoder-only transformer (``models.transformer``).

  ``init``: ``"gaussian"`` draws every kernel N(0, init_scale^2 / fan_in) and embeddings N(0, init_scale^2 /
  d_model); ``"orthogonal"`` draws a Haar-orthogonal matrix (the fused one for attention kernels) scaled to the same
  entry variance; ``"flax_default"`` keeps Flax's initialisers (LeCun truncated normal, variance 1/fan_in; embeddings
  variance 1, ``init_scale`` still multiplies). Biases zero. The stated variance of every weight matrix is recorded
  in run.json. ``norm``: ``"pre"`` (``x + f(LN(x))``), ``"post"`` (``LN(x + f(x))``) or ``"none"``. ``block``:
  ``"attn_mlp"``, ``"attn_only"`` or ``"mlp_only"``. ``tie_embeddings``: the unembedding is the token embedding's
  transpose (no separate unembedding matrix, no output bias).
  """

  d_model: int = 128
  num_heads: int = 4
  num_layers: int = 2
  mlp_ratio: int = 4
  activation: str = "gelu"
  init_scale: float = 1.0
  init: str = "gaussian"
  norm: str = "pre"
  block: str = "attn_mlp"
  tie_embeddings: bool = False

  def __post_init__(self):
    if self.d_model < 2 or self.num_heads < 1 or self.num_layers < 1 or self.mlp_ratio < 1:
      raise ValueError(f"model: expected positive sizes, got {self}")
    if self.d_model % self.num_heads:
      raise ValueError(f"model.num_heads: {self.num_heads} does not divide model.d_model = {self.d_model}")
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"model.activation: expected one of gelu, relu, tanh, linear, got {self.activation!r}")
    if not self.init_scale > 0:
      raise ValueError(f"model.init_scale: expected > 0, got {self.init_scale}")
    if self.init not in INIT_SCHEMES:
      raise ValueError(f"model.init: expected one of {INIT_SCHEMES}, got {self.init!r}")
    if self.norm not in ("pre", "post", "none"):
      raise ValueError(f"model.norm: expected pre, post or none, got {self.norm!r}")
    if self.block not in ("attn_mlp", "attn_only", "mlp_only"):
      raise ValueError(f"model.block: expected attn_mlp, attn_only or mlp_only, got {self.block!r}")


STRATEGIES = ("auto", "vmap", "map", "chunked")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimiser, ensemble, snapshot and checkpoint schedule.

  ``snapshot_steps``: steps after which every weight matrix of every member is snapshotted (0 = initialisation).
  ``ensemble_strategy``: how members share one compiled step: ``"vmap"``, ``"map"`` (``jax.lax.map``), ``"chunked"``
  (``jax.lax.map`` over chunks of ``chunk_size`` vmapped members) or ``"auto"`` (``map`` on CPU, where batched
  matmuls are no faster than sequential ones, ``vmap`` on accelerators); the resolved choice is recorded in run.json.
  ``optimizer``: ``"adamw"`` or ``"sgd"`` (with ``momentum``; decoupled weight decay added before the learning rate
  as in AdamW). ``schedule``: ``"constant"``, ``"cosine"`` (to 0 at ``steps``) or ``"warmup_cosine"`` (linear warm-up
  over ``warmup_steps``, then cosine); ``warmup_steps`` with ``"constant"`` gives a linear warm-up to a constant.
  ``grad_clip``: clip the global gradient norm to this value (0 = off). ``checkpoint_every``: Orbax checkpoint every
  so many steps (0 = only at snapshot steps); checkpoints are also written at every snapshot step and at the end.
  ``log_every``: training loss and per-layer gradient/weight norms every so many steps.
  ``data_parallel``: devices per member along the ``data`` mesh axis (``models.sharding``); members spread over the
  remaining devices along ``ens``. Must divide the device count and ``data.batch_size``.
  """

  steps: int = 600
  learning_rate: float = 1e-3
  weight_decay: float = 0.0
  members_per_regime: int = 3
  seed: int = 0
  snapshot_steps: tuple[int, ...] = (0, 10, 30, 100, 300, 600)
  ensemble_strategy: str = "auto"
  eval_batches: int = 4
  optimizer: str = "adamw"
  momentum: float = 0.9
  schedule: str = "constant"
  warmup_steps: int = 0
  grad_clip: float = 0.0
  chunk_size: int = 4
  checkpoint_every: int = 100
  checkpoint_keep: int = 2
  log_every: int = 10
  data_parallel: int = 1

  def __post_init__(self):
    if self.steps < 1:
      raise ValueError(f"train.steps: expected >= 1, got {self.steps}")
    if self.members_per_regime < 1:
      raise ValueError(f"train.members_per_regime: expected >= 1, got {self.members_per_regime}")
    if self.ensemble_strategy not in STRATEGIES:
      raise ValueError(f"train.ensemble_strategy: expected one of {STRATEGIES}, got {self.ensemble_strategy!r}")
    bad = [s for s in self.snapshot_steps if not 0 <= s <= self.steps]
    if bad:
      raise ValueError(f"train.snapshot_steps: {bad} outside [0, train.steps = {self.steps}]")
    if list(self.snapshot_steps) != sorted(set(self.snapshot_steps)):
      raise ValueError(f"train.snapshot_steps: expected strictly increasing steps, got {self.snapshot_steps}")
    if not self.learning_rate > 0:
      raise ValueError(f"train.learning_rate: expected > 0, got {self.learning_rate}")
    if self.weight_decay < 0:
      raise ValueError(f"train.weight_decay: expected >= 0, got {self.weight_decay}")
    if self.optimizer not in ("adamw", "sgd"):
      raise ValueError(f"train.optimizer: expected adamw or sgd, got {self.optimizer!r}")
    if not 0.0 <= self.momentum < 1.0:
      raise ValueError(f"train.momentum: expected in [0, 1), got {self.momentum}")
    if self.schedule not in ("constant", "cosine", "warmup_cosine"):
      raise ValueError(f"train.schedule: expected constant, cosine or warmup_cosine, got {self.schedule!r}")
    if not 0 <= self.warmup_steps <= self.steps:
      raise ValueError(f"train.warmup_steps: expected in [0, train.steps], got {self.warmup_steps}")
    if self.grad_clip < 0:
      raise ValueError(f"train.grad_clip: expected >= 0 (0 = off), got {self.grad_clip}")
    for name in ("chunk_size", "checkpoint_keep", "log_every", "eval_batches"):
      if getattr(self, name) < 1:
        raise ValueError(f"train.{name}: expected >= 1, got {getattr(self, name)}")
    if self.data_parallel < 1:
      raise ValueError(f"train.data_parallel: expected >= 1, got {self.data_parallel}")
    if self.checkpoint_every < 0:
      raise ValueError(f"train.checkpoint_every: expected >= 0 (0 = snapshots only), got {self.checkpoint_every}")


@dataclasses.dataclass(frozen=True)
class TrackingConfig:
  """Jacobian and Hessian spectra recorded at every snapshot step (``models.tracking`` documents the maths).

  Both are off by default: the flagship's outputs (metrics, spectra, checkpoints) are then byte-for-byte what they
  were before this section existed, and tracking costs nothing. Jacobian tracking is cheap (about ``d_model`` forward
  passes of one probe sequence per probe and member); Hessian tracking costs ``hessian_lanczos_steps +
  hessian_trace_matvecs`` Hessian-vector products (each 2-4 gradients) of one training batch per member and snapshot,
  which at the default schedule is comparable to the training itself (``bench/bench_hessian.py`` measures it).

  ``track_jacobian``: singular values of the per-token input-output Jacobian (``d_model x d_model``) of every block
  and of the whole network, on ``jacobian_probe_batch`` probe sequences fixed per member (the same at every
  snapshot). ``jacobian_position``: the token whose output is differentiated in its own input (negative counts from
  the end; ``-1`` = last). ``track_hessian``: the top ``hessian_top_k`` eigenvalues of the training loss on a fixed
  probe batch (Lanczos with ``hessian_lanczos_steps`` steps and full reorthogonalisation) and its trace by Hutch++
  with ``hessian_trace_matvecs`` products, with its standard error.
  """

  track_jacobian: bool = False
  jacobian_probe_batch: int = 4
  jacobian_position: int = -1
  track_hessian: bool = False
  hessian_top_k: int = 4
  hessian_lanczos_steps: int = 40
  hessian_trace_matvecs: int = 30

  def __post_init__(self):
    if self.jacobian_probe_batch < 1:
      raise ValueError(f"tracking.jacobian_probe_batch: expected >= 1, got {self.jacobian_probe_batch}")
    if self.hessian_top_k < 1:
      raise ValueError(f"tracking.hessian_top_k: expected >= 1, got {self.hessian_top_k}")
    if self.hessian_lanczos_steps < self.hessian_top_k:
      raise ValueError(f"tracking.hessian_lanczos_steps: expected >= tracking.hessian_top_k = {self.hessian_top_k}"
                       f", got {self.hessian_lanczos_steps}")
    if self.hessian_trace_matvecs < 6:
      raise ValueError(f"tracking.hessian_trace_matvecs: Hutch++ needs >= 6 (three groups of >= 2), got "
                       f"{self.hessian_trace_matvecs}")


@dataclasses.dataclass(frozen=True)
class MemberSpec:
  """One ensemble member, explicitly. ``None`` hyper-parameters take the run-wide value (``train.learning_rate``,
  ``train.weight_decay``, ``model.init_scale``); ``regime`` defaults to ``"p=<noise_p>"``."""

  seed_index: int = 0
  noise_p: float = 0.0
  regime: str = ""
  learning_rate: float | None = None
  weight_decay: float | None = None
  init_scale: float | None = None


@dataclasses.dataclass(frozen=True)
class EnsembleConfig:
  """Per-member hyper-parameters, trained together in one compiled step (shapes are shared by construction).

  Either axes crossed with the regime x seed grid (an empty axis means the run-wide value), ordered regime, learning
  rate, weight decay, init scale, then seed (the default, all axes empty, is the flagship's ``r * m + j``); or an
  explicit ``members`` list (what a sweep packer writes), which replaces the grid when non-empty.
  """

  learning_rate: tuple[float, ...] = ()
  weight_decay: tuple[float, ...] = ()
  init_scale: tuple[float, ...] = ()
  members: tuple[MemberSpec, ...] = ()

  def __post_init__(self):
    for m in self.members:
      if not 0.0 <= m.noise_p <= 1.0:
        raise ValueError(f"ensemble.members: noise_p expected in [0, 1], got {m.noise_p}")
      if m.seed_index < 0:
        raise ValueError(f"ensemble.members: seed_index expected >= 0, got {m.seed_index}")
    for name in ("learning_rate", "init_scale"):
      vals = list(getattr(self, name)) + [getattr(m, name) for m in self.members if getattr(m, name) is not None]
      if any(not v > 0 for v in vals):
        raise ValueError(f"ensemble.{name}: expected values > 0, got {vals}")
    wds = list(self.weight_decay) + [m.weight_decay for m in self.members if m.weight_decay is not None]
    if any(v < 0 for v in wds):
      raise ValueError(f"ensemble.weight_decay: expected values >= 0, got {wds}")


@dataclasses.dataclass(frozen=True)
class Member:
  """A resolved member: what run.json records per member."""

  index: int
  regime: str
  noise_p: float
  seed_index: int
  learning_rate: float
  weight_decay: float
  init_scale: float


@dataclasses.dataclass(frozen=True)
class RunConfig:
  name: str = "noise_vs_structure"
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  ensemble: EnsembleConfig = dataclasses.field(default_factory=EnsembleConfig)
  tracking: TrackingConfig = dataclasses.field(default_factory=TrackingConfig)

  def __post_init__(self):
    length = self.data.seq_len
    if not -length <= self.tracking.jacobian_position < length:
      raise ValueError(f"tracking.jacobian_position: expected in [-{length}, {length}) (data.seq_len = {length}), "
                       f"got {self.tracking.jacobian_position}")

  def __post_init__(self):
    if self.data.batch_size % self.train.data_parallel:
      raise ValueError(f"train.data_parallel: {self.train.data_parallel} does not divide data.batch_size = "
                       f"{self.data.batch_size}")

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def members(self) -> list[Member]:
    """Every member, in index order (see ``EnsembleConfig``)."""
    t, e = self.train, self.ensemble
    if e.members:
      return [Member(i, s.regime or f"p={s.noise_p:g}", float(s.noise_p), s.seed_index,
                     float(t.learning_rate if s.learning_rate is None else s.learning_rate),
                     float(t.weight_decay if s.weight_decay is None else s.weight_decay),
                     float(self.model.init_scale if s.init_scale is None else s.init_scale))
              for i, s in enumerate(e.members)]
    out = []
    for name, p in zip(self.data.regime_names, self.data.noise_p):
      for lr, wd, scale, j in itertools.product(e.learning_rate or (t.learning_rate,),
                                                e.weight_decay or (t.weight_decay,),
                                                e.init_scale or (self.model.init_scale,),
                                                range(t.members_per_regime)):
        out.append(Member(len(out), name, float(p), j, float(lr), float(wd), float(scale)))
    return out

  @property
  def num_members(self) -> int:
    return len(self.members())


def _build(cls, raw: Any, where: str):
  """Instantiate dataclass ``cls`` from a mapping, recursing into nested dataclasses; unknown keys are an error."""
  if dataclasses.is_dataclass(cls):
    if not isinstance(raw, dict):
      raise TypeError(f"{where}: expected a table/object, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
      raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _build(hints[k], v, f"{where}.{k}" if where else k) for k, v in raw.items()}
    return cls(**kwargs)
  origin = typing.get_origin(cls)
  if origin in (types.UnionType, typing.Union):
    args = [a for a in typing.get_args(cls) if a is not type(None)]
    if raw is None and len(args) < len(typing.get_args(cls)):
      return None
    return _build(args[0], raw, where)
  if origin is tuple:
    if not isinstance(raw, (list, tuple)):
      raise TypeError(f"{where}: expected a list, got {type(raw).__name__}")
    (elem, _) = typing.get_args(cls)
    return tuple(_build(elem, x, where) for x in raw)
  if cls is float and isinstance(raw, int) and not isinstance(raw, bool):
    return float(raw)
  if cls in (int, float, str, bool) and not (isinstance(raw, cls) and not (cls is int and isinstance(raw, bool))):
    raise TypeError(f"{where}: expected {cls.__name__}, got {raw!r}")
  return raw


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
  """A ``RunConfig`` from a nested dict (the inverse of ``RunConfig.to_dict``); unknown keys raise ``ValueError``."""
  return _build(RunConfig, raw, "")


def read_table_file(path: str | pathlib.Path, what: str = "config file") -> dict[str, Any]:
  """The nested dict of a ``.toml`` or ``.json`` file (``what`` names the file in the error for other suffixes)."""
  path = pathlib.Path(path)
  if path.suffix == ".toml":
    return tomllib.loads(path.read_text())
  if path.suffix == ".json":
    return json.loads(path.read_text())
  raise ValueError(f"path: expected a .json or .toml {what}, got {path}")


def load_config(path: str | pathlib.Path) -> RunConfig:
  """Load a ``RunConfig`` from a ``.json`` or ``.toml`` file."""
  return config_from_dict(read_table_file(path))


def with_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
  """Apply dotted-key overrides such as ``{"train.steps": 50}``; unknown keys raise ``ValueError``."""
  raw = cfg.to_dict()
  for dotted, value in overrides.items():
    node = raw
    *parents, leaf = dotted.split(".")
    for p in parents:
      if p not in node or not isinstance(node[p], dict):
        raise ValueError(f"override {dotted!r}: unknown section {p!r}")
      node = node[p]
    if leaf not in node:
      raise ValueError(f"override {dotted!r}: unknown key {leaf!r}; expected some of {sorted(node)}")
    node[leaf] = value
  return config_from_dict(raw)
