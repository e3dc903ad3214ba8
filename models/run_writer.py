"""Writing a run folder while training runs: the metric rows, run.json's record, and the writer thread.

Snapshots and metric rows are fetched from the device and written by a writer thread (``Writer``), so the host never
waits for them between steps; the loop (``models.train``) blocks only on ``Writer.flush`` before a checkpoint and at
the end. The folder's layout and its readers are ``models.run_folder``'s.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import queue
import threading
from typing import Callable

import jax
import numpy as np

from models import run_folder, sharding
from models.config import Member, RunConfig
from models.data import Task
from models.transformer import init_variance

__all__ = ["snapshot_rows", "log_rows", "Writer", "environment_info", "run_info"]


def snapshot_rows(step: int, spectra: dict[str, np.ndarray], test_loss, test_acc) -> list[tuple]:
  """Held-out metrics and per-matrix ``||W||_F^2 / N`` (the sum of the ESD) of every member at a snapshot."""
  rows = []
  for i in range(len(test_loss)):
    rows.append((step, i, "", "test_loss", test_loss[i]))
    rows.append((step, i, "", "test_accuracy", test_acc[i]))
    for name, ev in spectra.items():
      rows.append((step, i, name, "frobenius_norm_sq_over_n", ev[i].sum()))
  return rows


def log_rows(step: int, out: dict, reported: set[int], frozen_at: np.ndarray) -> list[tuple]:
  """Training metrics of one logged step (host arrays), and a ``diverged`` row for each newly frozen member."""
  rows = []
  n = len(out["loss"])
  for i in range(n):
    rows.append((step, i, "", "train_loss", out["loss"][i]))
    rows.append((step, i, "", "train_accuracy", out["accuracy"][i]))
    for name in out["grad_norm"]:
      rows.append((step, i, name, "grad_norm", out["grad_norm"][name][i]))
      rows.append((step, i, name, "weight_norm", out["weight_norm"][name][i]))
  for i in np.flatnonzero(frozen_at >= 0):
    if int(i) not in reported:
      reported.add(int(i))
      rows.append((step, int(i), "", "diverged", 1.0))
      rows.append((step, int(i), "", "diverged_at_step", float(frozen_at[i])))
  return rows


class Writer:
  """A worker thread that fetches device results and writes them to the run folder, in submission order.

  ``put(fn, *device_values)`` queues ``fn(*host_values)``; ``flush()`` waits until everything queued is on disk and
  re-raises a worker error. The training loop only blocks on ``flush`` (before a checkpoint and at the end).
  """

  def __init__(self):
    self._queue: queue.Queue = queue.Queue()
    self._error: BaseException | None = None
    self._thread = threading.Thread(target=self._work, daemon=True, name="run-folder-writer")
    self._thread.start()

  def _work(self):
    while True:
      item = self._queue.get()
      try:
        if item is None:
          return
        fn, values = item
        if self._error is None:
          host = sharding.fetch(values)
          if sharding.is_writer():
            fn(*host)
      except BaseException as e:  # noqa: BLE001 - re-raised on the training thread by flush()
        self._error = e
      finally:
        self._queue.task_done()

  def put(self, fn: Callable, *values) -> None:
    self._queue.put((fn, values))

  def flush(self) -> None:
    self._queue.join()
    if self._error is not None:
      raise RuntimeError("run folder writer failed") from self._error

  def close(self) -> None:
    self._queue.put(None)
    self._thread.join()


def environment_info(cfg: RunConfig, strategy: str) -> dict:
  try:
    version = importlib.metadata.version("spectral-lab")
  except importlib.metadata.PackageNotFoundError:
    version = "0+unknown"
  return dict(format_version=run_folder.FORMAT_VERSION, package_version=version, jax_version=jax.__version__,
              flax_version=importlib.metadata.version("flax"), backend=jax.default_backend(),
              device_kind=jax.devices()[0].device_kind, device_count=jax.device_count(),
              ensemble_strategy=strategy)


def run_info(cfg: RunConfig, strategy: str, members: list[Member], task: Task, matrices: dict, mesh) -> dict:
  """run.json's record (``models.run_folder`` documents it): the environment, every member with its entropy rate and
  the stated init variance of each weight matrix at its own init scale, every weight matrix (stacked ``(members,
  ...)`` in ``matrices``) with its shape and stated init variance at ``model.init_scale``, the init scheme, the mesh
  and the task's description."""
  info = environment_info(cfg, strategy)
  info["members"] = []
  for m in members:
    bits, exact = task.entropy_rate(m.noise_p)
    variances = {k: init_variance(k, cfg.model, m.init_scale) for k in matrices}
    info["members"].append(dataclasses.asdict(m) | {"entropy_rate_bits": bits, "entropy_rate_exact": exact,
                                                    "init_variances": variances})
  info["matrices"] = {k: {"shape": list(v.shape[1:]), "init_variance": init_variance(k, cfg.model)}
                      for k, v in matrices.items()}
  info["init_scheme"] = cfg.model.init
  info["mesh"] = {} if mesh is None else {k: int(v) for k, v in mesh.shape.items()}
  info["data"] = task.info
  return info
