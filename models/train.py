"""Ensemble training, the loop: every member of a run in one compiled step, spectra snapshotted into the run folder.

The pieces live by concern: ``models.members`` (members, keys, hyper-parameter arrays, initial parameters),
``models.optimizer`` (optimiser and schedule), ``models.steps`` (the pure loss, member and ensemble steps,
evaluation and tracking), ``models.run_writer`` (metric rows, run.json's record, the writer thread). This module
runs them: ``train_run`` trains a run folder, ``load_trained_params`` reads its checkpointed weights back.

Fault tolerance: Orbax checkpoints (``models.checkpoint``) of (params, optimiser state, frozen flags) at step ``s``
are written after every output of steps ``< s`` is on disk; a resumed run restores the latest one, drops metric rows
and spectra of steps ``>= s`` and recomputes them, bit-identically on the same machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import pathlib
import shutil
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from models import run_folder, sharding, signals as signals_lib, tracking
from models.checkpoint import Checkpointer
from models.config import RunConfig, config_from_dict
from models.data import make_task
from models.members import Member, graphdef_of, init_members, init_params, member_hparams, member_key, members_of
from models.optimizer import make_optimizer
from models.run_writer import Writer, log_rows, run_info, snapshot_rows
from models.steps import (init_state, make_ensemble_step, make_evaluate, make_member_step, make_tracking,
                          resolve_strategy, spectra_of)
from models.weight_matrices import weight_matrices

# The loop's own names, and a few building blocks re-exported for callers that knew them here.
__all__ = ["train_run", "load_trained_params", "TrainingInterrupted", "Member", "members_of", "member_key",
           "member_hparams", "init_params", "init_members", "graphdef_of", "make_optimizer", "init_state",
           "make_member_step", "make_ensemble_step", "make_tracking"]


class TrainingInterrupted(RuntimeError):
  """Raised by ``train_run(..., stop_after=n)``: the run stopped as if killed (tests of resumption)."""


def _prepare_folder(cfg: RunConfig, run_dir: pathlib.Path) -> int | None:
  """Make ``run_dir`` ready; return the checkpoint step to resume from (``None``: start afresh)."""
  ckpt_dir = run_dir / "checkpoints"
  if run_dir.exists() and (run_dir / "config.json").exists() and ckpt_dir.exists():
    stored = config_from_dict(run_folder.read_json(run_dir / "config.json"))
    steps = sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
    if stored != cfg and steps:
      raise ValueError(f"{run_dir}: an unfinished run with a different config has checkpoints; resume it with its "
                       "own config (config.json) or choose another name")
    if steps:
      return steps[-1]
  if run_dir.exists():
    shutil.rmtree(run_dir)  # nothing to resume from
  run_dir.mkdir(parents=True)
  return None


@contextlib.contextmanager
def _exclusive(runs_dir: pathlib.Path, name: str):
  """Hold an ``flock`` on a lock file named by the run folder's resolved path (in the system's temporary folder, so
  run folders and ``runs_dir`` listings are untouched): one process at a time trains a run folder. A second process
  (the same check launched twice, two checks sharing a run) waits, then finds the run finished and reuses it. The
  kernel drops the lock when its holder dies, so a killed run leaves no stale lock behind."""
  runs_dir.mkdir(parents=True, exist_ok=True)
  key = hashlib.sha1(str((runs_dir / name).resolve()).encode()).hexdigest()[:16]
  folder = pathlib.Path(tempfile.gettempdir()) / "spectral-lab-locks"
  folder.mkdir(exist_ok=True)
  with open(folder / f"{key}.lock", "a+") as handle:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      print(f"{runs_dir / name}: another process is training this run; waiting for it to finish", file=sys.stderr,
            flush=True)
      fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def train_run(cfg: RunConfig, runs_dir: str | pathlib.Path = "runs", *, progress: bool = True,
              log_every: int | None = None, stop_after: int | None = None) -> pathlib.Path:
  """Train every member of ``cfg`` into ``runs_dir/cfg.name``, resuming an interrupted run from its last checkpoint.

  A finished run (DONE present) is not recomputed. Training holds a lock on the run folder, so a second process asked
  for the same run waits for the first and then reuses its result. ``stop_after`` (tests only) raises
  ``TrainingInterrupted`` after that many steps of this call, leaving the folder as a kill would (rows after the last
  checkpoint included). Returns the run folder's path.
  """
  with _exclusive(pathlib.Path(runs_dir), cfg.name):
    return _train_run(cfg, runs_dir, progress=progress, log_every=log_every, stop_after=stop_after)


def _train_run(cfg: RunConfig, runs_dir: str | pathlib.Path, *, progress: bool, log_every: int | None,
               stop_after: int | None) -> pathlib.Path:
  run_dir = pathlib.Path(runs_dir) / cfg.name
  if (run_dir / "DONE").exists():
    stored = config_from_dict(run_folder.load_run(run_dir).config)
    if stored != cfg:
      raise ValueError(f"{run_dir}: a finished run with a different config already exists; choose another name")
    return run_dir
  resume_step = _prepare_folder(cfg, run_dir)
  log_every = cfg.train.log_every if log_every is None else log_every

  strategy = resolve_strategy(cfg.train.ensemble_strategy)
  members = members_of(cfg)
  task = make_task(cfg.data)
  keys = jnp.stack([member_key(cfg, m.seed_index) for m in members])
  hparams = member_hparams(members)
  graphdef = graphdef_of(cfg)
  state = init_state(cfg, keys, hparams)
  checkpointer = Checkpointer(run_dir, keep=cfg.train.checkpoint_keep)
  start = 0
  if resume_step is not None:
    state = checkpointer.restore(resume_step, state)
    run_folder.truncate_after(run_dir, resume_step)
    start = resume_step
  mesh = sharding.make_ensemble_mesh(len(members), cfg.train.data_parallel)
  state, keys, hparams = sharding.place_members((state, keys, hparams), mesh)
  step_fn = make_ensemble_step(cfg, graphdef, strategy, task, mesh)
  evaluate = make_evaluate(cfg, graphdef, strategy, task, mesh)
  track = make_tracking(cfg, graphdef, strategy, task, mesh)
  signal_fn = signals_lib.make_signals(cfg, graphdef, strategy, task, mesh)
  if signal_fn is not None:  # the initial parameters, regenerated from the member keys, and the fixed sketch
    init = sharding.place_members(init_members(cfg, keys, hparams["init_scale"]),
                                  mesh)
    sketch = signals_lib.sketch_matrix(cfg, signals_lib.flat(jax.tree_util.tree_map(lambda x: x[0], init)).shape[0])

  info = run_info(cfg, strategy, members, task, weight_matrices(state["params"], ensemble_dims=1), mesh)
  if resume_step is not None:
    info["resumed_from_step"] = resume_step
  run_folder.atomic_write_json(run_dir / "config.json", cfg.to_dict())
  run_folder.atomic_write_json(run_dir / "run.json", info)

  snapshots = set(cfg.train.snapshot_steps)
  every = cfg.train.checkpoint_every
  reported = {r["member"] for r in run_folder.read_metrics_if_any(run_dir) if r["metric"] == "diverged"}
  regimes: dict[str, list[int]] = {}
  for m in members:
    regimes.setdefault(m.regime, []).append(m.index)
  tokens_per_step = cfg.data.batch_size * cfg.data.seq_len * len(members)
  bar = tqdm(total=cfg.train.steps, initial=start, desc=cfg.name, disable=not progress, unit="step")
  writer = Writer()
  t0 = time.perf_counter()

  def write_snapshot(step, spectra, evaluation):
    run_folder.write_spectra(run_dir, step, spectra)
    run_folder.append_metrics(run_dir, snapshot_rows(step, spectra, *evaluation))

  def write_log(step, out):
    run_folder.append_metrics(run_dir, log_rows(step, out, reported, out["frozen_at"]))
    rate = (step + 1 - start) * tokens_per_step / max(time.perf_counter() - t0, 1e-9)
    bar.set_postfix({r: f"{np.mean(out['loss'][idx]):.3f}" for r, idx in regimes.items()} | {"tok/s": f"{rate:.0f}"},
                    refresh=False)

  try:
    for step in range(start, cfg.train.steps + 1):
      if step > start and (step in snapshots or (every and step % every == 0) or step == cfg.train.steps):
        writer.flush()  # every output of steps < step is on disk before the checkpoint that says so
        checkpointer.save(step, state)
      if step in snapshots:
        params = state["params"]
        # Each snapshot program runs alone: dispatched, then waited for (GIL released) before the next is dispatched.
        # XLA's CPU LAPACK kernels (eigh, SVD) split their batch over the intra-op pool and block on it; two of them in
        # flight at once from different programs were caught holding both workers of a 2-core pool while every worker
        # waited for work (gdb: two lapack_ssyevd_ffi in ParallelBatchMap's BlockingCounter::Wait), a hang seen
        # under CPU contention. The writer thread only ever receives ready buffers.
        snapshot = (jax.block_until_ready(spectra_of(weight_matrices(params, ensemble_dims=1))),
                    jax.block_until_ready(evaluate(params, keys, hparams["noise_p"])))
        writes = [(write_snapshot, snapshot)]
        if signal_fn is not None:
          sig = jax.block_until_ready(signal_fn(params, init, keys, hparams["noise_p"], sketch))
          dw_every = cfg.tracking.signals_weights_every
          keep_dw = dw_every > 0 and cfg.train.snapshot_steps.index(step) % dw_every == 0
          writes.append((lambda s, out, keep=keep_dw: run_folder.write_signals(
              run_dir, s, {k: v for k, v in out.items() if keep or k != "dw_embed"}), (sig,)))
        if track is not None:
          writes.append((lambda s, out: tracking.write_tracking(run_dir, s, out),
                         (jax.block_until_ready(track(params, keys, hparams["noise_p"])),)))
        for fn, values in writes:
          writer.put(fn, step, *values)
      if step == cfg.train.steps:
        break
      if stop_after is not None and step - start >= stop_after:
        writer.flush()
        raise TrainingInterrupted(f"stopped after {stop_after} steps at step {step}")
      state, out = step_fn(state, hparams, keys, step)
      if step % log_every == 0 or step == cfg.train.steps - 1:
        writer.put(write_log, step, out)  # never a piece of ``state``: the next step donates it
      bar.update(1)
    writer.flush()
  finally:
    writer.close()
    checkpointer.close()
    bar.close()
  info["train_seconds"] = time.perf_counter() - t0
  info["tokens_per_second"] = (cfg.train.steps - start) * tokens_per_step / max(info["train_seconds"], 1e-9)
  run_folder.atomic_write_json(run_dir / "run.json", info)
  (run_dir / "DONE").write_text("done\n")
  return run_dir


def load_trained_params(run_dir: str | pathlib.Path, step: int | None = None) -> tuple[int, RunConfig, nnx.State]:
  """(step, config, stacked params) from a run folder's checkpoint (the latest, or ``step``); ``nnx.merge`` them
  with ``graphdef_of(config)`` one member at a time (``jax.tree_util.tree_map(lambda x: x[i], params)``)."""
  run_dir = pathlib.Path(run_dir)
  cfg = config_from_dict(run_folder.read_json(run_dir / "config.json"))
  ckpt = Checkpointer(run_dir, keep=cfg.train.checkpoint_keep)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{run_dir}: no checkpoint")
    members = members_of(cfg)
    keys = jnp.stack([member_key(cfg, m.seed_index) for m in members])
    template = jax.eval_shape(lambda: init_state(cfg, keys, member_hparams(members)))
    template = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), template)
    return step, cfg, ckpt.restore(step, template)["params"]
  finally:
    ckpt.close()

