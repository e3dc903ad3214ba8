"""Running a sweep: a lock, an atomic manifest of point states, resumable packs, and one tidy results table.

Folder layout of ``<out>/<sweep name>/``::

  sweep.json      the sweep spec as parsed (axes, base config) and the packing plan
  manifest.json   point id -> {pack, member, state: pending | running | done | failed, error}; rewritten atomically
  .lock           the pid holding the folder; a second sweep into the same folder is refused
  runs/<pack>/    one run folder per pack (models.run_folder format), checkpointed and resumable
  results.csv     the tidy table (``summarize``)

``--resume`` (the default behaviour of ``run_sweep``) skips done points and continues partial packs from their last
checkpoint; a failed pack is recorded with its error and the sweep goes on; failed points are retried only when
``retry_failed`` is set. Only process 0 writes shared files in a multi-host run.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import pathlib
import traceback
from typing import Iterator

import jax
import numpy as np

from lab.sweep_spec import MEMBER_AXES, Pack, SweepSpec, plan_packs
from models import run_folder
from models.train import train_run
from spectral.metrics import batch_metrics

MANIFEST_VERSION = 1
STATES = ("pending", "running", "done", "failed")


class SweepLockedError(RuntimeError):
  """Another live process holds the sweep folder."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


@contextlib.contextmanager
def sweep_lock(folder: pathlib.Path) -> Iterator[None]:
  """Hold ``folder/.lock`` (created exclusively); a lock left by a dead process is taken over."""
  folder.mkdir(parents=True, exist_ok=True)
  lock = folder / ".lock"
  for _ in range(2):
    try:
      fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      break
    except FileExistsError:
      try:
        owner = int(lock.read_text().strip() or "0")
      except (OSError, ValueError):
        owner = 0
      if owner and _pid_alive(owner):
        raise SweepLockedError(f"{folder}: another sweep (pid {owner}) is writing into this folder; refusing to "
                               "interleave. Wait for it, or remove .lock if that process is gone.") from None
      lock.unlink(missing_ok=True)  # stale lock of a killed sweep
  else:
    raise SweepLockedError(f"{folder}: could not take the lock")
  try:
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    yield
  finally:
    lock.unlink(missing_ok=True)


def _initial_manifest(packs: list[Pack]) -> dict:
  points = {}
  for pack in packs:
    for member, pt in enumerate(pack.points):
      points[pt.id] = dict(pack=pack.name, member=member, values=pt.values, state="pending", error="")
  return dict(manifest_version=MANIFEST_VERSION, points=points)


def read_manifest(folder: pathlib.Path) -> dict:
  path = folder / "manifest.json"
  manifest = json.loads(path.read_text())
  if manifest.get("manifest_version") != MANIFEST_VERSION:
    raise run_folder.RunFormatError(f"{path}: manifest version {manifest.get('manifest_version')!r}, this lab "
                                    f"reads {MANIFEST_VERSION}")
  return manifest


def _set_pack_state(folder: pathlib.Path, manifest: dict, pack: Pack, state: str, error: str = "") -> None:
  for pt in pack.points:
    manifest["points"][pt.id].update(state=state, error=error)
  if jax.process_index() == 0:
    run_folder.atomic_write_json(folder / "manifest.json", manifest)


def plan_summary(spec: SweepSpec, packs: list[Pack]) -> str:
  """The packing plan with an estimate of memory per device (parameters, gradients, optimiser moments,
  activations), for ``--dry-run``."""
  from lab.memory import estimate_pack_bytes

  lines = [f"sweep {spec.name}: {sum(len(p.points) for p in packs)} points in {len(packs)} compiled program(s)"]
  for pack in packs:
    program = {k: v for k, v in pack.points[0].values.items() if k not in MEMBER_AXES}
    est = estimate_pack_bytes(pack.config, devices=jax.device_count())
    lines.append(f"  {pack.name}: {len(pack.points)} members {program or ''} "
                 f"~{est / 2**20:.1f} MiB per device ({jax.device_count()} device(s))")
  return "\n".join(lines)


def run_sweep(spec: SweepSpec, out_dir: str | pathlib.Path, *, retry_failed: bool = False,
              progress: bool = True) -> pathlib.Path:
  """Run (or resume) every pack of ``spec`` in ``out_dir/spec.name``; returns the sweep folder."""
  folder = pathlib.Path(out_dir) / spec.name
  packs = plan_packs(spec)
  with sweep_lock(folder):
    sweep_json = dict(name=spec.name, mode=spec.mode, samples=spec.samples, seed=spec.seed,
                      max_members=spec.max_members, axes=spec.axes, base=spec.base.to_dict(),
                      packs={p.name: [pt.id for pt in p.points] for p in packs})
    if (folder / "sweep.json").exists():
      stored = json.loads((folder / "sweep.json").read_text())
      if stored != json.loads(json.dumps(sweep_json)):
        raise ValueError(f"{folder}: holds a different sweep; choose another name or folder")
      manifest = read_manifest(folder)
    else:
      run_folder.atomic_write_json(folder / "sweep.json", sweep_json)
      manifest = _initial_manifest(packs)
      run_folder.atomic_write_json(folder / "manifest.json", manifest)
    for pack in packs:
      states = {manifest["points"][pt.id]["state"] for pt in pack.points}
      if states == {"done"} or ("failed" in states and not retry_failed):
        continue
      _set_pack_state(folder, manifest, pack, "running")
      try:
        run_dir = train_run(pack.config, folder / "runs", progress=progress)
      except Exception as e:  # a failed pack is recorded and the sweep goes on
        _set_pack_state(folder, manifest, pack, "failed", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
        continue
      run = run_folder.load_run(run_dir)
      diverged = {r["member"] for r in run.metrics if r["metric"] == "diverged" and r["value"]}
      for member, pt in enumerate(pack.points):
        state, err = ("failed", "diverged (non-finite loss); member frozen") if member in diverged else ("done", "")
        manifest["points"][pt.id].update(state=state, error=err)
      if jax.process_index() == 0:
        run_folder.atomic_write_json(folder / "manifest.json", manifest)
  return folder


SUMMARY_FIXED = ("point", "state", "member", "step", "layer")


def summarize(folder: str | pathlib.Path, *, level: float = 0.01) -> pathlib.Path:
  """Write ``results.csv``: one row per point x snapshot x layer with the point's axis values, held-out loss and
  accuracy at that step, the last logged training loss, and ``spectral.metrics`` of the layer's ESD."""
  folder = pathlib.Path(folder)
  manifest = read_manifest(folder)
  axes = sorted({k for p in manifest["points"].values() for k in p["values"]})
  rows = []
  by_pack: dict[str, list[tuple[str, dict]]] = {}
  for pid, p in manifest["points"].items():
    by_pack.setdefault(p["pack"], []).append((pid, p))
  for pack_name, pts in sorted(by_pack.items()):
    run_dir = folder / "runs" / pack_name
    if not (run_dir / "DONE").exists():
      for pid, p in pts:
        rows.append(dict(point=pid, state=p["state"], member=p["member"], **p["values"]))
      continue
    run = run_folder.load_run(run_dir)
    for step, spectra in sorted(run.spectra.items()):
      layer_metrics = {}
      for name, ev in spectra.items():
        layer_metrics[name] = batch_metrics(np.asarray(ev, np.float64), run.info["matrices"][name]["shape"],
                                            level=level)
      for pid, p in pts:
        m = p["member"]
        scalars = {}
        for metric in ("test_loss", "test_accuracy", "train_loss"):
          try:
            steps, values = run.metric(metric, m)
          except KeyError:
            continue
          at = values[steps <= step]
          scalars[metric] = float(at[-1]) if at.size else float("nan")
        for name, per_member in layer_metrics.items():
          rows.append(dict(point=pid, state=p["state"], member=m, step=step, layer=name, **p["values"], **scalars,
                           **per_member[m]))
  columns = list(SUMMARY_FIXED) + axes
  for r in rows:
    for k in r:
      if k not in columns:
        columns.append(k)
  path = folder / "results.csv"
  if jax.process_index() == 0:
    tmp = path.with_name(".results.csv.tmp")
    with tmp.open("w", newline="") as f:
      w = csv.DictWriter(f, columns, restval="")
      w.writeheader()
      w.writerows(rows)
    os.replace(tmp, path)
  return path


@dataclasses.dataclass(frozen=True)
class SweepStatus:
  counts: dict[str, int]


def status(folder: str | pathlib.Path) -> SweepStatus:
  manifest = read_manifest(pathlib.Path(folder))
  counts = {s: 0 for s in STATES}
  for p in manifest["points"].values():
    counts[p["state"]] += 1
  return SweepStatus(counts)
