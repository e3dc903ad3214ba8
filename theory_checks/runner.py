"""Run several theory checks, one after another in this process or ``jobs`` at a time in worker processes.

A check's numbers do not depend on how it is run: each check draws from its own seeds, reads and writes its own run
folders (``models.train.train_run`` holds a lock per run folder, so two checks that need the same run train it
once) and its own result file, and a worker process runs XLA with the same thread settings as this one. Workers are
spawned (never forked: JAX is not fork-safe), take the queue longest-first by each check's measured quick cost
(``Check.quick_seconds``; longest-processing-time-first keeps a long check from starting last), and write what a
check prints while it runs to ``<runs>/logs/theory_checks_<NAME>.log``; this process prints each check's summary as
it finishes. On a GPU the workers allocate device memory as they need it instead of pre-allocating most of it
(``XLA_PYTHON_CLIENT_PREALLOCATE=false``), so that they can share one device.

Measured (docs/THEORY.md, cost of the quick suite; idle 2-core VM): ``all --quick`` took 906 s wall with 2 jobs and
1,094 s with 1 (1.10x the CPU time: one check alone already keeps 1.5 cores busy), and the 241 measured values it
prints were identical.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pathlib
import signal
import time

from models.check_result import result_folder, result_path
from theory_checks.registry import get_check


def default_jobs(n_checks: int) -> int:
  """Checks run at once by default: 2 where the machine has at least 2 cores (and there are 2 checks), else 1."""
  return max(1, min(2, os.cpu_count() or 1, n_checks))


def execute(name: str, quick: bool, runs_dir: pathlib.Path, json_path: str | None, seed: int,
            seeds=None) -> tuple[str, str]:
  """Run check ``name``, write its verdict JSON; return ``(status, the summary to print)``."""
  check = get_check(name)
  t0 = time.perf_counter()
  extra = {} if seeds is None else dict(seeds=seeds)
  verdict = check.run(quick=quick, runs_dir=runs_dir, seed=seed, **extra)
  path = pathlib.Path(json_path) if json_path else result_path(result_folder(verdict.run, runs_dir), name)
  verdict.write_json(path)
  lines = [verdict.summary()]
  if isinstance(verdict.series.get("table"), str):  # checks that report a table (early_warning)
    lines.append(verdict.series["table"])
  lines.append(f"  result:     {path}  ({time.perf_counter() - t0:.1f} s)")
  return verdict.status, "\n".join(lines) + "\n"


def log_path(runs_dir: pathlib.Path, name: str) -> pathlib.Path:
  return pathlib.Path(runs_dir) / "logs" / f"theory_checks_{name}.log"


def _worker_init() -> None:
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it terminates the pool
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def _execute_logged(name: str, quick: bool, runs_dir: pathlib.Path, seed: int, seeds) -> tuple[str, str]:
  log = log_path(runs_dir, name)
  log.parent.mkdir(parents=True, exist_ok=True)
  with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
    status, text = execute(name, quick, runs_dir, None, seed, seeds)
  return status, text + f"  log:        {log}\n"


def run_checks(names, *, quick: bool, runs_dir: pathlib.Path, json_path: str | None = None, seed: int = 0,
               seeds=None, jobs: int = 1, emit=print) -> dict[str, str]:
  """Run checks ``names``; ``emit`` each one's summary as it finishes; return ``{name: status}`` in ``names``' order.

  ``jobs == 1``: in this process, in order. ``jobs > 1``: that many spawned worker processes (module docstring); the
  first exception in a check stops the others and is raised here.
  """
  names = list(names)
  if int(jobs) != jobs or jobs < 1:
    raise ValueError(f"jobs: expected a positive integer, got {jobs!r}")
  if jobs == 1 or len(names) <= 1:
    statuses = {}
    for name in names:
      statuses[name], text = execute(name, quick, runs_dir, json_path, seed, seeds)
      emit(text)
    return statuses
  if json_path:
    raise ValueError("json_path: expected None when several checks run (each writes its own result file)")
  queue = sorted(names, key=lambda n: -get_check(n).quick_seconds)  # stable: ties keep the registry order
  statuses = {}
  pool = multiprocessing.get_context("spawn").Pool(min(int(jobs), len(names)), initializer=_worker_init)
  try:
    pending = {n: pool.apply_async(_execute_logged, (n, quick, pathlib.Path(runs_dir), seed, seeds)) for n in queue}
    while pending:
      done = [n for n, r in pending.items() if r.ready()]
      for n in done:
        statuses[n], text = pending.pop(n).get()  # re-raises a check's exception here
        emit(text)
      if not done:
        time.sleep(0.2)
    pool.close()
  finally:
    pool.terminate()
    pool.join()
  return {n: statuses[n] for n in names}
