"""Run folders: the only interface between training and everything that reads results.

Layout of ``runs/<name>/`` (format version ``FORMAT_VERSION``)::

  config.json          the full RunConfig (``RunConfig.to_dict()``)
  run.json             format version, package/JAX versions, device kind, resolved ensemble strategy, members
                       (index, regime, noise p, seed index, learning rate, weight decay, init scale, entropy rate in
                       bits/token and whether it is exact, ``init_variances``: matrix -> the stated init variance at
                       the member's own init scale, read by ``Run.init_variance(name, i)``), per weight matrix its
                       shape and stated init variance at ``model.init_scale``, the init scheme
  metrics.csv          tidy scalars: one row per (step, member, layer, metric); layer is "" for whole-model metrics.
                       Metrics: train_loss, train_accuracy, grad_norm and weight_norm (per matrix, Frobenius), every
                       ``train.log_every`` steps; test_loss, test_accuracy, frobenius_norm_sq_over_n at snapshots;
                       diverged (1.0) and diverged_at_step when a member froze; with ``tracking.track_hessian``
                       also hessian_top_1 .. hessian_top_k (largest first), hessian_trace and hessian_trace_se
                       (Hutch++ and its standard error) at snapshots (``models.tracking``)
  spectra/step_NNNNNN.npz   per snapshot step, name -> (members, M) float32 ESD eigenvalues (ascending)
  jacobians/step_NNNNNN.npz only with ``tracking.track_jacobian``: per snapshot step, ``blocks.<l>`` and ``network``
                       -> (members, probes, d_model) float32 singular values (descending) of the per-token
                       input-output Jacobian at ``tracking.jacobian_position`` on fixed probe sequences
                       (``models.tracking`` states the conventions)
  signals/step_NNNNNN.npz   only with ``tracking.track_signals``: per snapshot step, the early-warning summaries of
                       ``models.signals`` (name -> (members, ...)); ``dw_embed`` only at every
                       ``tracking.signals_weights_every``-th snapshot
  checkpoints/<step>/  Orbax checkpoints of the training state (``models.checkpoint``), the latest few kept
  DONE                 written last; a folder without it is unfinished (resumable from its last checkpoint)

The tracking files are additions to format version 1: a folder without them reads as before (``Run.jacobians`` and
``Run.signals`` empty).
Every file is written to a temporary name and renamed, so a killed run never leaves a half-written file behind.
Readers call ``load_run``, which checks the format version and says clearly when it cannot read a folder.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import pathlib
from typing import Any, Iterable

import numpy as np

FORMAT_VERSION = 1
METRIC_COLUMNS = ("step", "member", "layer", "metric", "value")


class RunFormatError(ValueError):
  """A folder that is not a run folder of a format this version of the lab can read."""


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  tmp.write_bytes(data)
  os.replace(tmp, path)


def atomic_write_json(path: pathlib.Path, obj: Any) -> None:
  atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: pathlib.Path) -> Any:
  return json.loads(pathlib.Path(path).read_text())


SNAPSHOT_FOLDERS = ("spectra", "jacobians", "signals")
"""Folders of per-snapshot ``step_NNNNNN.npz`` array files."""


def _write_snapshot_arrays(run_dir: pathlib.Path, folder: str, step: int, arrays: dict[str, np.ndarray]):
  buf = io.BytesIO()
  np.savez(buf, **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
  path = run_dir / folder / f"step_{step:06d}.npz"
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic_write_bytes(path, buf.getvalue())
  return path


def _read_snapshot_arrays(run_dir: pathlib.Path, folder: str) -> dict[int, dict[str, np.ndarray]]:
  out = {}
  for f in sorted((run_dir / folder).glob("step_*.npz")):
    with np.load(f) as z:
      out[int(f.stem.split("_")[1])] = {k: z[k] for k in z.files}
  return out


def write_spectra(run_dir: pathlib.Path, step: int, spectra: dict[str, np.ndarray]) -> pathlib.Path:
  """Store one snapshot: name -> (members, M) eigenvalues."""
  return _write_snapshot_arrays(run_dir, "spectra", step, spectra)


def write_jacobians(run_dir: pathlib.Path, step: int, svals: dict[str, np.ndarray]) -> pathlib.Path:
  """Store one snapshot's Jacobian spectra: name -> (members, probes, d) singular values."""
  return _write_snapshot_arrays(run_dir, "jacobians", step, svals)


def write_signals(run_dir: pathlib.Path, step: int, signals: dict[str, np.ndarray]) -> pathlib.Path:
  """Store one snapshot's early-warning signals: name -> (members, ...) (``models.signals``)."""
  return _write_snapshot_arrays(run_dir, "signals", step, signals)


def append_metrics(run_dir: pathlib.Path, rows: Iterable[tuple]) -> None:
  """Append tidy rows (step, member, layer, metric, value) to metrics.csv (header written on creation)."""
  path = run_dir / "metrics.csv"
  new = not path.exists()
  with path.open("a", newline="") as f:
    w = csv.writer(f)
    if new:
      w.writerow(METRIC_COLUMNS)
    for step, member, layer, metric, value in rows:
      w.writerow((int(step), int(member), layer, metric, repr(float(value))))
    f.flush()
    os.fsync(f.fileno())


def _complete_rows(path: pathlib.Path) -> tuple[str, list[tuple[int, str]]]:
  """Header and (step, line) of every complete data line of metrics.csv, verbatim with its line ending (a line cut
  by a kill has no ending and is dropped)."""
  lines = path.read_bytes().decode().splitlines(keepends=True)
  out = []
  for line in lines[1:]:
    fields = next(csv.reader([line]), [])
    if line.endswith("\n") and len(fields) == len(METRIC_COLUMNS):
      out.append((int(fields[0]), line))
  return lines[0], out


def truncate_after(run_dir: pathlib.Path, step: int) -> None:
  """Drop metric rows, spectra and Jacobian spectra of steps ``>= step`` (recomputed when a run resumes from
  ``step``)."""
  path = run_dir / "metrics.csv"
  if path.exists():
    header, rows = _complete_rows(path)
    atomic_write_bytes(path, "".join([header, *(line for s, line in rows if s < step)]).encode())
  for folder in SNAPSHOT_FOLDERS:
    for f in (run_dir / folder).glob("step_*.npz"):
      if int(f.stem.split("_")[1]) >= step:
        f.unlink()


def read_metrics_if_any(run_dir: pathlib.Path) -> list[dict[str, Any]]:
  path = run_dir / "metrics.csv"
  return read_metrics(path) if path.exists() else []


@dataclasses.dataclass(frozen=True)
class Run:
  """A finished run folder, read back. ``spectra[step][name]`` is ``(members, M)``; ``jacobians[step][name]`` is
  ``(members, probes, d)`` (empty unless the run tracked Jacobians); ``signals[step][name]`` is ``(members, ...)``
  (empty unless the run tracked signals)."""

  path: pathlib.Path
  config: dict[str, Any]
  info: dict[str, Any]
  metrics: list[dict[str, Any]]
  spectra: dict[int, dict[str, np.ndarray]]
  jacobians: dict[int, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
  signals: dict[int, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)

  @property
  def name(self) -> str:
    return self.path.name

  @property
  def members(self) -> list[dict[str, Any]]:
    return self.info["members"]

  def init_variance(self, matrix: str, member: int) -> float:
    """Stated initial entry variance of ``matrix`` for ``member`` at its own init scale, as recorded in run.json at
    train time (``models.transformer.init_variance`` states the rule). Folders written before the per-member record
    existed get the same rule applied to their stored config."""
    record = self.info["members"][member]
    if "init_variances" in record:
      return record["init_variances"][matrix]
    from models.config import config_from_dict  # older folders only: the rule needs the model's config
    from models.transformer import init_variance
    return init_variance(matrix, config_from_dict(self.config).model, record.get("init_scale"))

  def metric(self, metric: str, member: int, layer: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one scalar metric of one member, sorted by step."""
    rows = sorted((r["step"], r["value"]) for r in self.metrics
                  if r["metric"] == metric and r["member"] == member and r["layer"] == layer)
    if not rows:
      raise KeyError(f"metric {metric!r} (member {member}, layer {layer!r}) not found in run {self.name}")
    steps, values = zip(*rows)
    return np.asarray(steps), np.asarray(values)


def read_metrics(path: pathlib.Path) -> list[dict[str, Any]]:
  with path.open(newline="") as f:
    reader = csv.DictReader(f)
    if tuple(reader.fieldnames or ()) != METRIC_COLUMNS:
      raise RunFormatError(f"{path}: expected columns {METRIC_COLUMNS}, got {reader.fieldnames}")
    return [dict(step=int(r["step"]), member=int(r["member"]), layer=r["layer"], metric=r["metric"],
                 value=float(r["value"])) for r in reader]


def load_run(path: str | pathlib.Path, *, require_done: bool = True) -> Run:
  """Read a run folder, checking its format version. Raises ``RunFormatError`` with the reason otherwise."""
  path = pathlib.Path(path)
  info_path = path / "run.json"
  if not info_path.exists():
    raise RunFormatError(f"{path}: not a run folder (no run.json)")
  info = json.loads(info_path.read_text())
  version = info.get("format_version")
  if version != FORMAT_VERSION:
    raise RunFormatError(f"{path}: run folder format version {version!r}, but this lab reads version "
                         f"{FORMAT_VERSION}; rerun the experiment or use the lab version that wrote it "
                         f"({info.get('package_version', 'unknown')})")
  if require_done and not (path / "DONE").exists():
    raise RunFormatError(f"{path}: run is unfinished (no DONE marker); resume it or pass require_done=False")
  config = json.loads((path / "config.json").read_text())
  metrics = read_metrics(path / "metrics.csv") if (path / "metrics.csv").exists() else []
  return Run(path=path, config=config, info=info, metrics=metrics, spectra=_read_snapshot_arrays(path, "spectra"),
             jacobians=_read_snapshot_arrays(path, "jacobians"), signals=_read_snapshot_arrays(path, "signals"))


def checkpoint_steps(run_dir: str | pathlib.Path) -> list[int]:
  """Steps of the complete checkpoints in ``run_dir/checkpoints`` (ascending; empty when there are none). Orbax
  renames a checkpoint to its step number only when it is complete."""
  folder = pathlib.Path(run_dir) / "checkpoints"
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []
