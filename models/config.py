"""Run configuration: frozen dataclasses, loadable from JSON/TOML dicts, unknown keys rejected.

A run is fully described by one ``RunConfig``; its ``to_dict()`` is what a run folder stores in ``config.json``.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
import pathlib
import tomllib
import types
import typing
from typing import Any

from models.activations import ACTIVATIONS

DATA_KINDS = ("affine_noise", "noise", "markov", "modular", "random_labels", "group", "copy", "reverse", "dyck",
              "grammar", "text", "teacher")
MODULAR_OPS = ("add", "sub", "mul")
GROUP_FAMILIES = {"S": (3, 5), "D": (3, 30)}  # group name prefix -> allowed n (S_n: n!, D_n: 2n elements)


def group_order(name: str) -> int:
  """The order of the group ``name``: ``"S<n>"`` (symmetric, ``n!``, 3 <= n <= 5) or ``"D<n>"`` (dihedral of the
  regular n-gon, ``2n``, 3 <= n <= 30); ValueError naming ``data.group`` otherwise."""
  family, digits = (name[:1], name[1:]) if isinstance(name, str) else ("", "")
  if family not in GROUP_FAMILIES or not digits.isdigit() or not (
      GROUP_FAMILIES[family][0] <= int(digits) <= GROUP_FAMILIES[family][1]):
    raise ValueError(f"data.group: expected 'S<n>' (3 <= n <= 5) or 'D<n>' (3 <= n <= 30), got {name!r}")
  n = int(digits)
  return math.factorial(n) if family == "S" else 2 * n


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The data's structure knob (``models.data`` documents every generator and its entropy rate).

  ``kind``: ``"affine_noise"`` (default, the flagship) is the affine recurrence ``x_{t+1} = (a x_t + b) mod V`` in
  which each next token is replaced by a uniform draw with probability ``p``; the other kinds are ``noise``,
  ``markov`` (permutation-to-uniform chain), ``modular`` (``a op b mod modulus`` with a train/test split of pairs),
  ``random_labels`` (the same pairs with shuffled answers), ``group`` (``a b`` in the non-abelian group ``group``
  with a train/test split of pairs), ``copy``, ``reverse``, ``dyck``, ``grammar`` (a random
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
  """data generator: affine_noise, noise, markov, modular, random_labels, group, copy, reverse, dyck, grammar, text or
  teacher"""
  vocab_size: int = 64
  """tokens in the vocabulary V"""
  seq_len: int = 32
  """tokens per training sequence L (the model's context)"""
  batch_size: int = 32
  """sequences per training batch, per member"""
  affine_a: int = 5
  """affine_noise: multiplier a of x_{t+1} = (a x_t + b) mod V"""
  affine_b: int = 3
  """affine_noise: offset b of x_{t+1} = (a x_t + b) mod V"""
  noise_p: tuple[float, ...] = (1.0, 0.5, 0.0)
  """one regime per entry: probability p that a scored token is replaced by a uniform draw (1 = pure noise)"""
  regime_names: tuple[str, ...] = ("noise", "meso", "structured")
  """a name per noise_p entry, used in tables and figures"""
  task_seed: int = 0
  """seed of the random structure all members share (Markov permutation, modular split, grammar)"""
  modulus: int = 113
  """modular / random_labels: the modulus P of a op b mod P"""
  modular_op: str = "add"
  """modular / random_labels: the operation, add, sub or mul"""
  train_fraction: float = 0.3
  """modular / random_labels / group: fraction of the P^2 (group: |G|^2) pairs used for training"""
  group: str = "S4"
  """group: the group, S<n> (symmetric, 3 <= n <= 5) or D<n> (dihedral of order 2n, 3 <= n <= 30)"""
  dyck_types: int = 2
  """dyck: number of bracket kinds"""
  dyck_max_depth: int = 8
  """dyck: largest nesting depth"""
  grammar_nonterminals: int = 6
  """grammar: nonterminal symbols of the random grammar"""
  grammar_rules: int = 3
  """grammar: rules per nonterminal"""
  grammar_temperature: float = 1.0
  """grammar: softmax temperature of the rule probabilities (low: nearly deterministic)"""
  text_source: str = "pydoc"
  """text: pydoc (English), stdlib (Python source) or a file path"""
  text_level: str = "byte"
  """text: byte or char tokens"""
  heldout_fraction: float = 0.1
  """text: fraction of the corpus held out for evaluation (its end)"""
  teacher_rank: int = 2
  """teacher: rank k of the planted next-token logit map (1 <= k <= vocab_size - 1)"""
  teacher_scale: float = 1.0
  """teacher: signal strength, the root-mean-square teacher logit at p = 0"""
  teacher_train_sequences: int = 0
  """teacher: 0 draws fresh training data every step; n > 0 trains on a fixed pool of n sequences per member"""

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
    if self.kind == "group":
      order = group_order(self.group)
      if self.vocab_size < order + 2:
        raise ValueError(f"data.vocab_size: group {self.group} needs |G| + 2 = {order + 2} tokens (elements, the op "
                         f"and '='), got {self.vocab_size}")
      if self.seq_len != 4:
        raise ValueError(f"data.seq_len: group sequences are 'a op b =' (4 tokens) -> answer; set 4, "
                         f"got {self.seq_len}")
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
  """width of the residual stream"""
  num_heads: int = 4
  """attention heads per layer (must divide d_model)"""
  num_layers: int = 2
  """transformer blocks"""
  mlp_ratio: int = 4
  """MLP hidden width as a multiple of d_model"""
  activation: str = "gelu"
  """MLP activation: gelu, relu, tanh or linear"""
  init_scale: float = 1.0
  """multiplies every initial weight's standard deviation"""
  init: str = "gaussian"
  """initialiser: gaussian, orthogonal or flax_default (see the section's text)"""
  norm: str = "pre"
  """LayerNorm placement: pre, post or none"""
  block: str = "attn_mlp"
  """block type: attn_mlp, attn_only or mlp_only"""
  tie_embeddings: bool = False
  """unembedding = transposed token embedding (true/false)"""

  def __post_init__(self):
    if self.d_model < 2 or self.num_heads < 1 or self.num_layers < 1 or self.mlp_ratio < 1:
      raise ValueError(f"model: expected positive sizes, got {self}")
    if self.d_model % self.num_heads:
      raise ValueError(f"model.num_heads: {self.num_heads} does not divide model.d_model = {self.d_model}")
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"model.activation: expected one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
    if not self.init_scale > 0:
      raise ValueError(f"model.init_scale: expected > 0, got {self.init_scale}")
    if self.init not in INIT_SCHEMES:
      raise ValueError(f"model.init: expected one of {INIT_SCHEMES}, got {self.init!r}")
    if self.norm not in ("pre", "post", "none"):
      raise ValueError(f"model.norm: expected pre, post or none, got {self.norm!r}")
    if self.block not in ("attn_mlp", "attn_only", "mlp_only"):
      raise ValueError(f"model.block: expected attn_mlp, attn_only or mlp_only, got {self.block!r}")


STRATEGIES = ("auto", "vmap", "map", "chunked")
DEFAULT_SNAPSHOT_STEPS = (0, 10, 30, 100, 300, 600)


def default_snapshot_steps(steps: int) -> tuple[int, ...]:
  """The default snapshot schedule for a run of ``steps`` steps: ``DEFAULT_SNAPSHOT_STEPS`` below ``steps``, then
  ``steps`` itself (the last step is always snapshotted)."""
  return tuple(s for s in DEFAULT_SNAPSHOT_STEPS if s < steps) + (steps,)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimiser, ensemble, snapshot and checkpoint schedule.

  ``snapshot_steps``: steps after which every weight matrix of every member is snapshotted (0 = initialisation).
  Left at its default with another ``steps``, it becomes ``default_snapshot_steps(steps)``: the default steps below
  ``steps``, then ``steps`` (so ``train.steps`` alone is a valid change).
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
  """optimiser steps per member"""
  learning_rate: float = 1e-3
  """peak learning rate (every member unless the ensemble section varies it)"""
  weight_decay: float = 0.0
  """decoupled weight decay (AdamW-style)"""
  members_per_regime: int = 3
  """seeds per regime (noise_p entry)"""
  seed: int = 0
  """root seed; member with seed index j uses fold_in(PRNGKey(seed), j)"""
  snapshot_steps: tuple[int, ...] = DEFAULT_SNAPSHOT_STEPS
  """steps at which every weight ESD is saved (0 = init); left at the default, it is cut at train.steps (kept)"""
  ensemble_strategy: str = "auto"
  """how members share one compiled step: auto, vmap, map or chunked"""
  eval_batches: int = 4
  """held-out batches per evaluation"""
  optimizer: str = "adamw"
  """adamw or sgd (with momentum)"""
  momentum: float = 0.9
  """sgd: momentum in [0, 1)"""
  schedule: str = "constant"
  """learning-rate schedule: constant, cosine or warmup_cosine"""
  warmup_steps: int = 0
  """linear warm-up steps (0 = none)"""
  grad_clip: float = 0.0
  """clip the global gradient norm to this value (0 = off)"""
  chunk_size: int = 4
  """chunked strategy: members vmapped together per chunk"""
  checkpoint_every: int = 100
  """Orbax checkpoint every so many steps (0 = at snapshots and the end only)"""
  checkpoint_keep: int = 2
  """how many of the latest checkpoints are kept"""
  log_every: int = 10
  """training loss and norms are logged every so many steps"""
  data_parallel: int = 1
  """devices per member along the data mesh axis (must divide the device count and batch_size)"""

  def __post_init__(self):
    if self.steps < 1:
      raise ValueError(f"train.steps: expected >= 1, got {self.steps}")
    if self.members_per_regime < 1:
      raise ValueError(f"train.members_per_regime: expected >= 1, got {self.members_per_regime}")
    if self.ensemble_strategy not in STRATEGIES:
      raise ValueError(f"train.ensemble_strategy: expected one of {STRATEGIES}, got {self.ensemble_strategy!r}")
    if tuple(self.snapshot_steps) == DEFAULT_SNAPSHOT_STEPS and self.steps != DEFAULT_SNAPSHOT_STEPS[-1]:
      object.__setattr__(self, "snapshot_steps", default_snapshot_steps(self.steps))
    bad = [s for s in self.snapshot_steps if not 0 <= s <= self.steps]
    if bad:
      raise ValueError(f"train.snapshot_steps: expected steps in [0, train.steps = {self.steps}], got {bad}; drop "
                       "them or raise train.steps (left unset, the default schedule is cut at train.steps)")
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
  with ``hessian_trace_matvecs`` products, with its standard error. ``track_signals``: the cheap per-snapshot
  summaries of ``models.signals`` (a sketch of the parameter vector, Fourier power of the embedding's update,
  correlation-trap ratios, the last hidden layer's class-scatter ratio), for early-warning studies.
  """

  track_jacobian: bool = False
  """record input-output Jacobian singular values at every snapshot (true/false)"""
  jacobian_probe_batch: int = 4
  """probe sequences per member for the Jacobian"""
  jacobian_position: int = -1
  """token whose output is differentiated (negative counts from the end)"""
  track_hessian: bool = False
  """record the loss Hessian's top eigenvalues and trace at every snapshot (true/false)"""
  hessian_top_k: int = 4
  """Hessian eigenvalues recorded (largest first)"""
  hessian_lanczos_steps: int = 40
  """Lanczos steps for the top eigenvalues"""
  hessian_trace_matvecs: int = 30
  """Hessian-vector products of the Hutch++ trace estimate"""
  track_signals: bool = False
  """record cheap early-warning signals (models.signals) at every snapshot (true/false)"""
  signals_sketch_dim: int = 128
  """signals: rows K of the Gaussian sketch of the parameter vector"""
  signals_weights_every: int = 0
  """signals: keep dW of the token embedding at every n-th snapshot (0 = never)"""

  def __post_init__(self):
    if self.jacobian_probe_batch < 1:
      raise ValueError(f"tracking.jacobian_probe_batch: expected >= 1, got {self.jacobian_probe_batch}")
    if self.hessian_top_k < 1:
      raise ValueError(f"tracking.hessian_top_k: expected >= 1, got {self.hessian_top_k}")
    if self.hessian_lanczos_steps < self.hessian_top_k:
      raise ValueError(f"tracking.hessian_lanczos_steps: expected >= tracking.hessian_top_k = {self.hessian_top_k}"
                       f", got {self.hessian_lanczos_steps}")
    if self.signals_sketch_dim < 1:
      raise ValueError(f"tracking.signals_sketch_dim: expected >= 1, got {self.signals_sketch_dim}")
    if self.signals_weights_every < 0:
      raise ValueError(f"tracking.signals_weights_every: expected >= 0 (0 = never), got {self.signals_weights_every}")
    if self.hessian_trace_matvecs < 6:
      raise ValueError(f"tracking.hessian_trace_matvecs: Hutch++ needs >= 6 (three groups of >= 2), got "
                       f"{self.hessian_trace_matvecs}")


MEMBER_RANGES = {"seed_index": ("an integer >= 0", lambda v: isinstance(v, int) and v >= 0),
                 "noise_p": ("a probability in [0, 1]", lambda v: 0.0 <= v <= 1.0),
                 "learning_rate": ("a value > 0", lambda v: v > 0),
                 "weight_decay": ("a value >= 0", lambda v: v >= 0),
                 "init_scale": ("a value > 0", lambda v: v > 0)}
"""The valid values of each per-member hyper-parameter (``None`` always valid: the run-wide value)."""


def member_value_problem(name: str, value) -> str | None:
  """``"expected <range>, got <value>"`` when ``value`` is not valid for member field ``name``, else ``None``."""
  what, ok = MEMBER_RANGES[name]
  if value is None:
    return None
  try:
    valid = bool(ok(value))
  except TypeError:
    valid = False
  return None if valid else f"expected {what}, got {value!r}"


@dataclasses.dataclass(frozen=True)
class MemberSpec:
  """One ensemble member, explicitly. ``None`` hyper-parameters take the run-wide value (``train.learning_rate``,
  ``train.weight_decay``, ``model.init_scale``); ``regime`` defaults to ``"p=<noise_p>"``."""

  seed_index: int = 0
  """seed index j of the member"""
  noise_p: float = 0.0
  """the member's noise probability p"""
  regime: str = ""
  """the member's regime label (default p=<noise_p>)"""
  learning_rate: float | None = None
  """the member's learning rate (none: train.learning_rate)"""
  weight_decay: float | None = None
  """the member's weight decay (none: train.weight_decay)"""
  init_scale: float | None = None
  """the member's init scale (none: model.init_scale)"""


@dataclasses.dataclass(frozen=True)
class EnsembleConfig:
  """Per-member hyper-parameters, trained together in one compiled step (shapes are shared by construction).

  Either axes crossed with the regime x seed grid (an empty axis means the run-wide value), ordered regime, learning
  rate, weight decay, init scale, then seed (the default, all axes empty, is the flagship's ``r * m + j``); or an
  explicit ``members`` list (what a sweep packer writes), which replaces the grid when non-empty.
  """

  learning_rate: tuple[float, ...] = ()
  """learning rates crossed with regimes x seeds (empty: train.learning_rate)"""
  weight_decay: tuple[float, ...] = ()
  """weight decays crossed with regimes x seeds (empty: train.weight_decay)"""
  init_scale: tuple[float, ...] = ()
  """init scales crossed with regimes x seeds (empty: model.init_scale)"""
  members: tuple[MemberSpec, ...] = ()
  """explicit members (tables with MemberSpec keys: seed_index, noise_p, ...); replaces the grid when non-empty"""

  def __post_init__(self):
    for i, m in enumerate(self.members):
      for name in MEMBER_RANGES:
        problem = member_value_problem(name, getattr(m, name))
        if problem:
          raise ValueError(f"ensemble.members[{i}].{name}: {problem}")
    for name in ("learning_rate", "weight_decay", "init_scale"):
      for v in getattr(self, name):
        problem = member_value_problem(name, v)
        if problem:
          raise ValueError(f"ensemble.{name}: {problem}")


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
  """the run folder's name under --runs; change it (--set name=...) to keep runs of different configs apart"""
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  ensemble: EnsembleConfig = dataclasses.field(default_factory=EnsembleConfig)
  tracking: TrackingConfig = dataclasses.field(default_factory=TrackingConfig)

  def __post_init__(self):
    """Checks across sections (each section validates its own fields)."""
    length = self.data.seq_len
    if not -length <= self.tracking.jacobian_position < length:
      raise ValueError(f"tracking.jacobian_position: expected in [-{length}, {length}) (data.seq_len = {length}), "
                       f"got {self.tracking.jacobian_position}")
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


def unknown_key_error(section: str, unknown: list[str], valid) -> ValueError:
  """The error for keys ``unknown`` of config section ``section`` (``""``: the top level): the valid keys and the
  closest valid spelling of the first unknown one."""
  full = lambda k: f"{section}.{k}" if section else k
  what = f"a key of section {section}" if section else "a section or key of a run config"
  initials = [str(v) for v in valid if "".join(w[:1] for w in str(v).split("_")) == unknown[0]]  # lr, wd
  close = initials or difflib.get_close_matches(unknown[0], [str(v) for v in valid], n=1)
  fix = f"did you mean {full(close[0])!r}?" if close else "check the spelling"
  return ValueError(f"{', '.join(full(k) for k in unknown)}: expected {what} ({', '.join(sorted(valid))}), got an "
                    f"unknown key; {fix} ('python -m lab config' lists every key)")


def _build(cls, raw: Any, where: str):
  """Instantiate dataclass ``cls`` from a mapping, recursing into nested dataclasses; unknown keys are an error."""
  if dataclasses.is_dataclass(cls):
    if not isinstance(raw, dict):
      raise TypeError(f"{where or 'config'}: expected a table/object, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
      raise unknown_key_error(where, unknown, fields)
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
      raise TypeError(f"{where}: expected a list, got {raw!r}; write lists in brackets, e.g. [0, 5, 20] (in --set: "
                      f"--set {where}=[0,5,20])")
    (elem, _) = typing.get_args(cls)
    return tuple(_build(elem, x, where) for x in raw)
  if cls is float and isinstance(raw, int) and not isinstance(raw, bool):
    return float(raw)
  if cls in (int, float, str, bool) and not (isinstance(raw, cls) and not (cls is int and isinstance(raw, bool))):
    raise TypeError(f"{where}: expected {cls.__name__}, got {raw!r}; 'python -m lab config' shows every key's type")
  return raw


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
  """A ``RunConfig`` from a nested dict (the inverse of ``RunConfig.to_dict``); unknown keys raise ``ValueError``."""
  return _build(RunConfig, raw, "")


def read_table_file(path: str | pathlib.Path, what: str = "config file") -> dict[str, Any]:
  """The nested dict of a ``.toml`` or ``.json`` file (``what`` names the file in the error for other suffixes)."""
  path = pathlib.Path(path)
  if path.suffix not in (".toml", ".json"):
    raise ValueError(f"{path}: expected a .json or .toml {what}, got a {path.suffix or 'suffix-less'} file")
  try:
    return tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
  except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: expected a valid {path.suffix[1:].upper()} {what}, got a syntax error: {e}") from None


def load_config(path: str | pathlib.Path) -> RunConfig:
  """Load a ``RunConfig`` from a ``.json`` or ``.toml`` file."""
  return config_from_dict(read_table_file(path))


def set_dotted(raw: dict[str, Any], dotted: str, value: Any, prefix: str = "") -> None:
  """Set the dotted key ``"section.key"`` of a config dict (``RunConfig.to_dict()``) to ``value``, in place.

  A section or key the config does not have raises ``unknown_key_error``'s ``ValueError`` (valid keys, closest
  spelling), its text prefixed by ``prefix`` (e.g. ``"axes."`` for a sweep axis). The value itself is validated when
  the dict becomes a ``RunConfig``.
  """
  node = raw
  *parents, leaf = dotted.split(".")
  for depth, p in enumerate(parents):
    if not isinstance(node.get(p), dict):
      err = unknown_key_error(".".join(parents[:depth]), [p], [k for k, v in node.items() if isinstance(v, dict)])
      raise ValueError(f"{prefix}{err}")
    node = node[p]
  if leaf not in node:
    raise ValueError(f"{prefix}{unknown_key_error('.'.join(parents), [leaf], node)}")
  node[leaf] = value


def with_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
  """Apply dotted-key overrides such as ``{"train.steps": 50}`` (``set_dotted``); unknown keys raise ``ValueError``.

  Changing ``train.steps`` without ``train.snapshot_steps`` keeps a schedule that ended at the old last step ending at
  the new one: steps beyond it are dropped and the new last step is added (``[0, 5, 20]`` with steps 20 -> 100 gives
  ``[0, 5, 20, 100]``, with steps 20 -> 10 gives ``[0, 5, 10]``).
  """
  raw = cfg.to_dict()
  steps = overrides.get("train.steps")
  schedule = list(cfg.train.snapshot_steps)
  if ("train.snapshot_steps" not in overrides and isinstance(steps, int) and not isinstance(steps, bool)
      and schedule and schedule[-1] == cfg.train.steps):
    raw["train"]["snapshot_steps"] = [s for s in schedule if s < steps] + [steps]
  for dotted, value in overrides.items():
    set_dotted(raw, dotted, value)
  return config_from_dict(raw)
