"""Sweep files: a base config and the axes to vary, expanded into points and packed into ensembles.

A sweep file (TOML or JSON)::

  [sweep]
  name = "lr_x_seed"
  mode = "grid"                 # or "random" (then `samples` points, drawn with `seed`)
  samples = 0
  seed = 0
  max_members = 64              # cap on members per packed program (memory)
  base_config = "base.toml"     # optional, relative to the sweep file

  [base]                        # optional inline config overrides, same tables as a RunConfig file
  train = { steps = 200 }

  [axes]
  seed = [0, 1, 2, 3]           # member-level axes: seed, p, learning_rate, weight_decay, init_scale
  learning_rate = [1e-3, 3e-3]
  "model.d_model" = [32, 64]    # any other axis is a dotted RunConfig key and changes the program

In random mode a member-level axis may be ``{ log_uniform = [lo, hi] }`` or ``{ uniform = [lo, hi] }``; a list is
sampled uniformly. Points that differ only in member-level axes share array shapes and are packed into one vmapped
ensemble (their hyper-parameters become per-member arrays, ``EnsembleConfig.members``); points that differ in any
other axis become separate programs. Every pack's config is validated before anything runs, so an unknown key or an
impossible combination is reported with the offending key and point, up front.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import pathlib
from typing import Any

import numpy as np

from models.config import (MemberSpec, RunConfig, config_from_dict, load_config, member_value_problem,
                           read_table_file, set_dotted)
from models.config_reference import config_keys

MEMBER_AXES = ("seed", "p", "learning_rate", "weight_decay", "init_scale")
AXIS_FIELDS = {"seed": "seed_index", "p": "noise_p", "learning_rate": "learning_rate", "weight_decay": "weight_decay",
               "init_scale": "init_scale"}
"""Member-level axis -> the ``models.config.MemberSpec`` field it sets."""
SWEEP_KEYS = ("name", "mode", "samples", "seed", "max_members", "base_config")


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  name: str
  mode: str
  samples: int
  seed: int
  max_members: int
  base: RunConfig
  axes: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Point:
  """One sweep point: its values on every axis."""

  index: int
  values: dict[str, Any]

  @property
  def digest(self) -> str:
    """Hash of the values alone: the same point in a grown sweep has the same digest (and keeps its id)."""
    return hashlib.sha256(json.dumps(self.values, sort_keys=True).encode()).hexdigest()[:8]

  @property
  def id(self) -> str:
    return f"pt{self.index:04d}-{self.digest}"

  @classmethod
  def from_id(cls, point_id: str, values: dict[str, Any]) -> "Point":
    """The point a manifest stores under ``point_id`` (``pt<index>-<digest>``)."""
    return cls(int(point_id[2:].split("-")[0]), values)

  def label(self, axes=None) -> str:
    """The point's values as ``axis=value`` pairs (only ``axes`` when given), e.g. ``learning_rate=0.003 seed=1``."""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(self.values.items())
                    if axes is None or k in axes)


@dataclasses.dataclass(frozen=True)
class Pack:
  """Points sharing every program-level value, trained as one ensemble (one run folder)."""

  name: str
  config: RunConfig
  points: tuple[Point, ...]


def _deep_merge(base: dict, over: dict, where: str = "") -> dict:
  out = dict(base)
  for k, v in over.items():
    if isinstance(v, dict) and isinstance(out.get(k), dict):
      out[k] = _deep_merge(out[k], v, f"{where}{k}.")
    else:
      out[k] = v
  return out


def load_sweep(path: str | pathlib.Path) -> SweepSpec:
  """Parse and validate a sweep file (unknown keys anywhere are an error naming the key)."""
  path = pathlib.Path(path)
  return sweep_from_dict(read_table_file(path, "sweep file"), base_dir=path.parent)


def sweep_from_dict(raw: dict[str, Any], base_dir: pathlib.Path = pathlib.Path(".")) -> SweepSpec:
  unknown = sorted(set(raw) - {"sweep", "base", "axes"})
  if unknown:
    raise ValueError(f"sweep file: unknown top-level key(s) {unknown}; expected sweep, base, axes")
  head = raw.get("sweep", {})
  bad = sorted(set(head) - set(SWEEP_KEYS))
  if bad:
    raise ValueError(f"sweep: unknown key(s) {bad}; expected some of {list(SWEEP_KEYS)}")
  mode = head.get("mode", "grid")
  if mode not in ("grid", "random"):
    raise ValueError(f"sweep.mode: expected 'grid' or 'random', got {mode!r}")
  samples = int(head.get("samples", 0))
  if mode == "random" and samples < 1:
    raise ValueError("sweep.samples: random mode needs samples >= 1")
  max_members = int(head.get("max_members", 64))
  if max_members < 1:
    raise ValueError(f"sweep.max_members: expected >= 1, got {max_members}")
  base_raw = RunConfig().to_dict()
  if "base_config" in head:
    base_raw = load_config(base_dir / head["base_config"]).to_dict()
  base_raw = _deep_merge(base_raw, raw.get("base", {}))
  base = config_from_dict(base_raw)
  axes = dict(raw.get("axes", {}))
  if not axes:
    raise ValueError("axes: expected at least one axis to vary")
  for name, values in axes.items():
    if name not in MEMBER_AXES and "." not in name:
      keys = list(MEMBER_AXES) + [k.key for k in config_keys(base) if "." in k.key]
      close = difflib.get_close_matches(name, keys, n=1)
      raise ValueError(f"axes.{name}: expected a member-level axis ({', '.join(MEMBER_AXES)}) or a dotted config key "
                       f"such as model.d_model, got {name!r}; "
                       + (f"did you mean {close[0]!r}?" if close else "'python -m lab config' lists the config keys"))
    if name not in MEMBER_AXES:
      set_dotted(base.to_dict(), name, None, "axes.")  # validates that the key exists
      if name.startswith("ensemble."):
        raise ValueError(f"axes.{name}: the ensemble section is written by the packer; vary the member-level axes "
                         f"{list(MEMBER_AXES)} instead")
    if isinstance(values, dict):
      if mode != "random" or set(values) - {"uniform", "log_uniform"} or len(values) != 1:
        raise ValueError(f"axes.{name}: a distribution ({{uniform = [lo, hi]}} or {{log_uniform = [lo, hi]}}) "
                         "is only allowed in random mode")
      if name not in MEMBER_AXES:
        raise ValueError(f"axes.{name}: continuous distributions are for member-level axes {list(MEMBER_AXES)}")
      (kind, bounds), = values.items()
      if (not isinstance(bounds, list) or len(bounds) != 2 or not bounds[0] < bounds[1]
          or (kind == "log_uniform" and not bounds[0] > 0)):
        raise ValueError(f"axes.{name}.{kind}: expected [lo, hi] with lo < hi" + (" and lo > 0" if kind ==
                         "log_uniform" else "") + f", got {bounds!r}")
    elif not isinstance(values, list) or not values:
      raise ValueError(f"axes.{name}: expected a non-empty list of values")
  return SweepSpec(name=str(head.get("name", "sweep")), mode=mode, samples=samples, seed=int(head.get("seed", 0)),
                   max_members=max_members, base=base, axes=axes)


def expand_points(spec: SweepSpec) -> list[Point]:
  """All points of the sweep: the Cartesian product (grid) or ``samples`` draws (random, seeded)."""
  names = sorted(spec.axes)
  if spec.mode == "grid":
    return [Point(i, dict(zip(names, combo)))
            for i, combo in enumerate(itertools.product(*(spec.axes[n] for n in names)))]
  rng = np.random.default_rng(spec.seed)
  points = []
  for i in range(spec.samples):
    values = {}
    for n in names:
      axis = spec.axes[n]
      if isinstance(axis, list):
        values[n] = axis[int(rng.integers(len(axis)))]
      elif "uniform" in axis:
        lo, hi = axis["uniform"]
        values[n] = float(rng.uniform(lo, hi))
      else:
        lo, hi = axis["log_uniform"]
        values[n] = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    points.append(Point(i, values))
  return points


def check_point(point: Point) -> None:
  """A ``ValueError`` naming the axis (as the sweep file spells it), the point and its values when a member-level
  value is out of range (``models.config.MEMBER_RANGES``)."""
  for axis, field in AXIS_FIELDS.items():
    if axis in point.values:
      problem = member_value_problem(field, point.values[axis])
      if problem:
        raise ValueError(f"axes.{axis}: {problem} (sweep point {point.id}: {point.label()}); fix the axes.{axis} "
                         "values in the sweep file")


def _member_spec(point: Point) -> MemberSpec:
  v = point.values
  return MemberSpec(seed_index=int(v.get("seed", 0)), noise_p=float(v["p"]) if "p" in v else -1.0,
                    regime=point.label(MEMBER_AXES) or point.label(),
                    learning_rate=float(v["learning_rate"]) if "learning_rate" in v else None,
                    weight_decay=float(v["weight_decay"]) if "weight_decay" in v else None,
                    init_scale=float(v["init_scale"]) if "init_scale" in v else None)


def pack_config(spec: SweepSpec, name: str, program: dict[str, Any], points: list[Point]) -> RunConfig:
  """The validated ``RunConfig`` of one pack: the base config with the program-level values set, the points as
  explicit ensemble members (regime = the point's member-level values) and ``name``."""
  for pt in points:
    check_point(pt)
  raw = spec.base.to_dict()
  for key, value in program.items():
    set_dotted(raw, key, value, "axes.")
  members = []
  for pt in points:
    m = dataclasses.asdict(_member_spec(pt))
    if m["noise_p"] < 0:  # no p axis: every member uses the base config's first regime's p
      m["noise_p"] = float(raw["data"]["noise_p"][0])
    members.append(m)
  raw_pack = _deep_merge(raw, {"ensemble": {"members": members}})
  raw_pack["name"] = name
  try:
    return config_from_dict(raw_pack)
  except (ValueError, TypeError) as e:
    raise ValueError(f"sweep point {points[0].id} ({program}): {e}") from None


def program_of(point: Point) -> dict[str, Any]:
  """The point's program-level values (every axis but the member-level ones)."""
  return {k: v for k, v in point.values.items() if k not in MEMBER_AXES}


def plan_packs(spec: SweepSpec, points: list[Point] | None = None, first_group: int = 0) -> list[Pack]:
  """Group points (default: every point of ``spec``) by their program-level values and build one validated
  RunConfig per pack of at most ``max_members`` points; groups are numbered from ``first_group`` (a grown sweep
  numbers its new packs after the existing ones).

  Raises ``ValueError`` naming the point and key when a combination is impossible (e.g. heads not dividing width).
  """
  groups: dict[str, list[Point]] = {}
  for point in expand_points(spec) if points is None else points:
    groups.setdefault(json.dumps(program_of(point), sort_keys=True), []).append(point)
  packs = []
  for g, (program_json, group) in enumerate(groups.items(), start=first_group):
    digest = hashlib.sha256(program_json.encode()).hexdigest()[:6]
    for c in range(0, len(group), spec.max_members):
      chunk = group[c:c + spec.max_members]
      name = f"{spec.name}-pack{g:03d}-{c // spec.max_members:02d}-{digest}"
      packs.append(Pack(name, pack_config(spec, name, json.loads(program_json), chunk), tuple(chunk)))
  return packs
