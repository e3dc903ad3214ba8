"""Running a sweep: a lock, an atomic manifest of point states, resumable packs, and one tidy results table.

Folder layout of ``<runs>/sweeps/<sweep name>/``::

  sweep.json      the sweep spec as parsed (axes, base config) and the packing plan
  manifest.json   point id -> {pack, member, values, state: pending | running | done | failed, error}; rewritten
                  atomically
  .lock           the pid holding the folder; a second sweep into the same folder is refused
  runs/<pack>/    one run folder per pack (models.run_folder format), checkpointed and resumable
  results.csv     the tidy table (``summarize``), explained column by column in results_columns.md

Running a sweep again skips done points and continues partial packs from their last checkpoint, saying so; a failed
pack is recorded with its error and the sweep goes on; failed points are retried only when ``retry_failed`` is set.

Growing a sweep: when the sweep file gains seeds, axis values or random samples, only the new points are trained, in
new packs (a pack is one compiled ensemble, so an existing pack never changes). A point is identified by its values
(``Point.digest``): it keeps its id, pack and results. The base config must stay the same. Only process 0 writes
shared files in a multi-host run.
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

from lab import results_columns
from lab.sweep_spec import MEMBER_AXES, Pack, Point, SweepSpec, expand_points, pack_config, plan_packs, program_of
from models import run_folder
from models.config import config_from_dict
from models.config_reference import config_differences
from models.train import train_run
from spectral.metrics import batch_metrics

MANIFEST_VERSION = 1
STATES = ("pending", "running", "done", "failed")
INTERRUPTED = "interrupted"
"""A point recorded as running whose worker is gone (killed): what ``status`` shows instead of running."""
COLUMNS_FILE = "results_columns.md"


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


def _add_points(manifest: dict, packs: list[Pack]) -> dict:
  for pack in packs:
    for member, pt in enumerate(pack.points):
      manifest["points"].setdefault(pt.id, dict(pack=pack.name, member=member, values=pt.values, state="pending",
                                                error=""))
  return manifest


@dataclasses.dataclass(frozen=True)
class SweepPlan:
  """What running a sweep file into a folder will do: every pack (those already in the folder first), the ids of
  points new to the folder, and the ids of stored points the file no longer lists (kept, not rerun)."""

  packs: list[Pack]
  new: set[str]
  dropped: list[str]
  existing: bool


def _sweep_json(spec: SweepSpec, packs: list[Pack]) -> dict:
  return json.loads(json.dumps(dict(name=spec.name, mode=spec.mode, samples=spec.samples, seed=spec.seed,
                                    max_members=spec.max_members, axes=spec.axes, base=spec.base.to_dict(),
                                    packs={p.name: [pt.id for pt in p.points] for p in packs})))


def plan_sweep(spec: SweepSpec, folder: str | pathlib.Path) -> SweepPlan:
  """The packs of ``spec`` in ``folder``: for a new folder ``plan_packs(spec)``; for a folder holding this sweep,
  its stored packs (rebuilt from sweep.json and the manifest, unchanged) plus new packs for the points it lacks.

  Raises ``ValueError`` when the folder holds a sweep with another base config (naming the keys that differ).
  """
  folder = pathlib.Path(folder)
  if not (folder / "sweep.json").exists():
    packs = plan_packs(spec)
    return SweepPlan(packs, {pt.id for p in packs for pt in p.points}, [], False)
  stored = json.loads((folder / "sweep.json").read_text())
  if stored["base"] != json.loads(json.dumps(spec.base.to_dict())):
    changed = "; ".join(config_differences(config_from_dict(stored["base"]), spec.base))
    raise ValueError(f"sweep.name: expected a new sweep name for a changed base config, got {spec.name!r}, whose "
                     f"folder {folder} holds the base config with other values ({changed}); set another "
                     "name in [sweep], or use another --runs folder (only axes may grow in place)")
  manifest = read_manifest(folder)
  stored_points = {pid: Point.from_id(pid, p["values"]) for pid, p in manifest["points"].items()}
  known = {pt.digest for pt in stored_points.values()}
  wanted = expand_points(spec)
  wanted_digests = {pt.digest for pt in wanted}
  next_index = max((pt.index for pt in stored_points.values()), default=-1) + 1
  fresh = [Point(next_index + i, pt.values) for i, pt in enumerate(p for p in wanted if p.digest not in known)]
  packs = [Pack(name, pack_config(spec, name, program_of(stored_points[ids[0]]),
                                  [stored_points[i] for i in ids]), tuple(stored_points[i] for i in ids))
           for name, ids in stored["packs"].items()]
  groups = [int(name.rsplit("-", 3)[1].removeprefix("pack")) for name in stored["packs"]]
  packs += plan_packs(spec, fresh, first_group=max(groups, default=-1) + 1) if fresh else []
  dropped = [pid for pid, pt in stored_points.items() if pt.digest not in wanted_digests]
  return SweepPlan(packs, {pt.id for pt in fresh}, dropped, True)


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


def plan_summary(spec: SweepSpec, plan: SweepPlan | list[Pack]) -> str:
  """The packing plan with an estimate of memory per device (parameters, gradients, optimiser moments,
  activations), for ``--dry-run``; for a folder that already holds the sweep, which points are new."""
  from lab.memory import estimate_pack_bytes

  if not isinstance(plan, SweepPlan):
    plan = SweepPlan(list(plan), {pt.id for p in plan for pt in p.points}, [], False)
  packs = plan.packs
  lines = [f"sweep {spec.name}: {sum(len(p.points) for p in packs)} points in {len(packs)} compiled program(s)"]
  if plan.existing:
    lines[0] += (f"; the folder already holds {sum(len(p.points) for p in packs) - len(plan.new)} of them, "
                 f"{len(plan.new)} new")
  for pack in packs:
    program = program_of(pack.points[0])
    est = estimate_pack_bytes(pack.config, devices=jax.device_count())
    new = sum(pt.id in plan.new for pt in pack.points)
    tag = "" if not plan.existing else (" [new]" if new == len(pack.points) else " [in the folder]")
    lines.append(f"  {pack.name}: {len(pack.points)} members {program or ''} "
                 f"~{est / 2**20:.1f} MiB per device ({jax.device_count()} device(s)){tag}")
  if plan.dropped:
    lines.append(f"  {len(plan.dropped)} point(s) in the folder are no longer in the file: kept, not rerun")
  return "\n".join(lines)


def _announce_pack(pack: Pack, run_dir: pathlib.Path) -> None:
  labels = ", ".join(pt.label(MEMBER_AXES) or pt.label() for pt in pack.points)
  steps = run_folder.checkpoint_steps(run_dir)
  if (run_dir / "DONE").exists():
    what = "reusing the finished pack"
  elif steps:
    what = f"resuming at step {steps[-1]} of {pack.config.train.steps}"
  else:
    what = "training"
  program = " ".join(f"{k}={v}" for k, v in sorted(program_of(pack.points[0]).items()))
  print(f"pack {pack.name}{' (' + program + ')' if program else ''}: {what}; points {labels}", flush=True)


def run_sweep(spec: SweepSpec, out_dir: str | pathlib.Path, *, retry_failed: bool = False,
              progress: bool = True) -> pathlib.Path:
  """Run, resume or grow every pack of ``spec`` in ``out_dir/spec.name``; returns the sweep folder."""
  folder = pathlib.Path(out_dir) / spec.name
  with sweep_lock(folder):
    plan = plan_sweep(spec, folder)
    packs = plan.packs
    manifest = read_manifest(folder) if plan.existing else dict(manifest_version=MANIFEST_VERSION, points={})
    if plan.existing:
      states = [p["state"] for p in manifest["points"].values()]
      print(f"sweep folder {folder} exists: {states.count('done')} point(s) done, {states.count('failed')} failed, "
            f"{len(states) - states.count('done') - states.count('failed')} unfinished; "
            f"{len(plan.new)} new point(s) from the file", flush=True)
    _add_points(manifest, packs)
    if jax.process_index() == 0:
      run_folder.atomic_write_json(folder / "sweep.json", _sweep_json(spec, packs))
      run_folder.atomic_write_json(folder / "manifest.json", manifest)
    dropped = set(plan.dropped)
    for pack in packs:
      states = {manifest["points"][pt.id]["state"] for pt in pack.points}
      if states == {"done"} or ("failed" in states and not retry_failed):
        continue
      if all(pt.id in dropped for pt in pack.points):
        continue
      _announce_pack(pack, folder / "runs" / pack.name)
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


SUMMARY_FIXED = tuple(results_columns.FIXED)


def summarize(folder: str | pathlib.Path, *, level: float = 0.01) -> pathlib.Path:
  """Write ``results.csv``: one row per point x snapshot x matrix with the point's pack and member, its axis values,
  held-out loss and accuracy at that step, the last logged training loss, and ``spectral.metrics`` of the matrix's
  ESD; and beside it ``results_columns.md``, the meaning of every column (``lab.results_columns``)."""
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
        rows.append(dict(point=pid, pack=pack_name, member=p["member"], state=p["state"], **p["values"]))
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
          rows.append(dict(point=pid, pack=pack_name, member=m, state=p["state"], step=step, matrix=name,
                           **p["values"], **scalars, **per_member[m]))
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
    run_folder.atomic_write_bytes(folder / COLUMNS_FILE, results_columns.columns_markdown(columns, axes).encode())
  return path


def resolve_sweep_folder(runs_dir: str | pathlib.Path, sweep: str) -> pathlib.Path:
  """The sweep folder ``sweep``: a path to one, else a sweep name under ``runs_dir/sweeps``."""
  for path in (pathlib.Path(sweep), pathlib.Path(runs_dir) / "sweeps" / sweep):
    if (path / "manifest.json").exists():
      return path
  parent = pathlib.Path(runs_dir) / "sweeps"
  known = sorted(p.name for p in parent.iterdir() if (p / "manifest.json").exists()) if parent.is_dir() else []
  raise ValueError(f"SWEEP: expected a sweep folder or a sweep name under {parent} (there: {', '.join(known) or 'none'}"
                   f"), got {sweep!r}; start one with python -m lab sweep run SWEEP.toml")


@dataclasses.dataclass(frozen=True)
class SweepStatus:
  """``counts``: points per state (``STATES`` and ``INTERRUPTED``); ``rows``: per point its id, values label, pack,
  member, state and progress; ``worker``: the pid holding the folder's lock and whether it is alive (None: no lock)."""

  folder: pathlib.Path
  counts: dict[str, int]
  rows: list[dict]
  worker: tuple[int, bool] | None


def _lock_owner(folder: pathlib.Path) -> tuple[int, bool] | None:
  try:
    pid = int((folder / ".lock").read_text().strip() or "0")
  except (OSError, ValueError):
    return None
  return pid, bool(pid) and _pid_alive(pid)


def status(folder: str | pathlib.Path) -> SweepStatus:
  """The state of every point. A point recorded as running while no live process holds the folder's lock was
  interrupted (its worker was killed): it shows as ``interrupted``, resumable by running the sweep again."""
  folder = pathlib.Path(folder)
  manifest = read_manifest(folder)
  worker = _lock_owner(folder)
  alive = worker is not None and worker[1]
  counts = {s: 0 for s in (*STATES, INTERRUPTED)}
  rows = []
  for pid, p in manifest["points"].items():
    state = INTERRUPTED if p["state"] == "running" and not alive else p["state"]
    counts[state] += 1
    run_dir = folder / "runs" / p["pack"]
    if (run_dir / "DONE").exists():
      progress = "finished"
    elif run_folder.checkpoint_steps(run_dir):
      progress = f"checkpoint at step {run_folder.checkpoint_steps(run_dir)[-1]}"
    else:
      progress = "-"
    error = p.get("error", "").splitlines()[0] if p.get("error") else ""
    rows.append(dict(point=pid, values=Point.from_id(pid, p["values"]).label(), pack=p["pack"], member=p["member"],
                     state=state, progress=progress, error=error))
  return SweepStatus(folder, counts, rows, worker)


def format_status(st: SweepStatus) -> str:
  """``status`` as a table, one row per point, under a line of counts and the worker's state."""
  counts = ", ".join(f"{n} {s}" for s, n in st.counts.items() if n)
  if st.worker is None:
    worker = "no worker holds the folder"
  else:
    worker = f"worker pid {st.worker[0]} {'running' if st.worker[1] else 'dead (killed); run the sweep again to resume'}"
  head = ("point", "values", "pack", "member", "state", "progress", "error")
  body = [[str(r[h]) for h in head] for r in st.rows]
  widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(head)]
  line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
  return "\n".join([f"sweep {st.folder}: {sum(st.counts.values())} points: {counts}; {worker}", line(head),
                    line(["-" * w for w in widths]), *(line(b) for b in body)])
