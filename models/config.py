"""Run configuration: frozen dataclasses, loadable from JSON/TOML dicts, unknown keys rejected.

A run is fully described by one ``RunConfig``; its ``to_dict()`` is what a run folder stores in ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import tomllib
import typing
from typing import Any


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The data's structure knob.

  ``kind``: ``"affine_noise"`` is the affine recurrence ``x_{t+1} = (a x_t + b) mod V`` in which each next token is
  replaced by a uniform draw with probability ``p`` (``p = 0`` structured, ``p = 1`` pure noise, in between the
  meso-scale). ``noise_p`` lists one ``p`` per regime; a run trains ``len(noise_p) * members_per_regime`` members.
  """

  kind: str = "affine_noise"
  vocab_size: int = 64
  seq_len: int = 32
  batch_size: int = 32
  affine_a: int = 5
  affine_b: int = 3
  noise_p: tuple[float, ...] = (1.0, 0.5, 0.0)
  regime_names: tuple[str, ...] = ("noise", "meso", "structured")

  def __post_init__(self):
    if self.kind != "affine_noise":
      raise ValueError(f"data.kind: expected 'affine_noise', got {self.kind!r}")
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


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Decoder-only transformer. Kernels are initialised N(0, init_scale^2 / fan_in), embeddings N(0, init_scale^2 /
  d_model), biases zero, so every weight matrix has a stated initial entry variance (see ``models.transformer``)."""

  d_model: int = 128
  num_heads: int = 4
  num_layers: int = 2
  mlp_ratio: int = 4
  activation: str = "gelu"
  init_scale: float = 1.0

  def __post_init__(self):
    if self.d_model < 2 or self.num_heads < 1 or self.num_layers < 1 or self.mlp_ratio < 1:
      raise ValueError(f"model: expected positive sizes, got {self}")
    if self.d_model % self.num_heads:
      raise ValueError(f"model.num_heads: {self.num_heads} does not divide model.d_model = {self.d_model}")
    if self.activation not in ("gelu", "relu", "tanh", "linear"):
      raise ValueError(f"model.activation: expected one of gelu, relu, tanh, linear, got {self.activation!r}")
    if not self.init_scale > 0:
      raise ValueError(f"model.init_scale: expected > 0, got {self.init_scale}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimiser, ensemble and snapshot schedule.

  ``snapshot_steps``: steps after which every weight matrix of every member is snapshotted (0 = initialisation).
  ``ensemble_strategy``: how members share one compiled step: ``"vmap"``, ``"map"`` (``jax.lax.map``) or ``"auto"``
  (``map`` on CPU, where batched matmuls are no faster than sequential ones, ``vmap`` on accelerators); the resolved
  choice is recorded in the run folder.
  """

  steps: int = 600
  learning_rate: float = 1e-3
  weight_decay: float = 0.0
  members_per_regime: int = 3
  seed: int = 0
  snapshot_steps: tuple[int, ...] = (0, 10, 30, 100, 300, 600)
  ensemble_strategy: str = "auto"
  eval_batches: int = 4

  def __post_init__(self):
    if self.steps < 1:
      raise ValueError(f"train.steps: expected >= 1, got {self.steps}")
    if self.members_per_regime < 1:
      raise ValueError(f"train.members_per_regime: expected >= 1, got {self.members_per_regime}")
    if self.ensemble_strategy not in ("auto", "vmap", "map"):
      raise ValueError(f"train.ensemble_strategy: expected auto, vmap or map, got {self.ensemble_strategy!r}")
    bad = [s for s in self.snapshot_steps if not 0 <= s <= self.steps]
    if bad:
      raise ValueError(f"train.snapshot_steps: {bad} outside [0, train.steps = {self.steps}]")
    if list(self.snapshot_steps) != sorted(set(self.snapshot_steps)):
      raise ValueError(f"train.snapshot_steps: expected strictly increasing steps, got {self.snapshot_steps}")
    if not self.learning_rate > 0:
      raise ValueError(f"train.learning_rate: expected > 0, got {self.learning_rate}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  name: str = "noise_vs_structure"
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @property
  def num_members(self) -> int:
    return len(self.data.noise_p) * self.train.members_per_regime


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


def load_config(path: str | pathlib.Path) -> RunConfig:
  """Load a ``RunConfig`` from a ``.json`` or ``.toml`` file."""
  path = pathlib.Path(path)
  if path.suffix == ".toml":
    raw = tomllib.loads(path.read_text())
  elif path.suffix == ".json":
    raw = json.loads(path.read_text())
  else:
    raise ValueError(f"path: expected a .json or .toml config file, got {path}")
  return config_from_dict(raw)


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
