"""Checkpoints and resumption: a run interrupted at any point (in process, or by SIGKILL) resumes from its last
checkpoint and ends bit-identical to an uninterrupted run: parameters, stored spectra and the metrics table."""

import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from models.presets import tiny_config
from models import run_folder
from models.config import with_overrides
from models.train import TrainingInterrupted, load_trained_params, train_run

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _cfg(steps=24):
  return with_overrides(tiny_config("resume"), {"train.steps": steps, "train.snapshot_steps": [0, 5, steps],
                                                 "train.checkpoint_every": 3, "train.log_every": 1})


def _assert_same_run(a: pathlib.Path, b: pathlib.Path):
  assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
  ra, rb = run_folder.load_run(a), run_folder.load_run(b)
  assert sorted(ra.spectra) == sorted(rb.spectra)
  for step in ra.spectra:
    for name, ev in ra.spectra[step].items():
      np.testing.assert_array_equal(ev, rb.spectra[step][name])
  sa, _, pa = load_trained_params(a)
  sb, _, pb = load_trained_params(b)
  assert sa == sb
  for x, y in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return train_run(_cfg(), tmp_path_factory.mktemp("ref"), progress=False)


def test_in_process_interruption_resumes_bit_identically(tmp_path, reference):
  cfg = _cfg()
  with pytest.raises(TrainingInterrupted):
    train_run(cfg, tmp_path, progress=False, stop_after=8)  # checkpoints at 3 and 6; rows of steps 6, 7 written
  run_dir = tmp_path / cfg.name
  assert not (run_dir / "DONE").exists()
  assert max(r["step"] for r in run_folder.read_metrics(run_dir / "metrics.csv")) == 7
  with pytest.raises(TrainingInterrupted):
    train_run(cfg, tmp_path, progress=False, stop_after=4)  # resumes at 6, stops again at 10 (checkpoint at 9)
  train_run(cfg, tmp_path, progress=False)
  assert run_folder.load_run(run_dir).info["resumed_from_step"] == 9
  _assert_same_run(reference, run_dir)


def test_a_different_config_does_not_resume(tmp_path):
  cfg = _cfg()
  with pytest.raises(TrainingInterrupted):
    train_run(cfg, tmp_path, progress=False, stop_after=4)
  with pytest.raises(ValueError, match="different config has checkpoints"):
    train_run(with_overrides(cfg, {"train.learning_rate": 0.01}), tmp_path, progress=False)


def test_cut_metrics_line_is_dropped(tmp_path):
  d = tmp_path
  run_folder.append_metrics(d, [(0, 0, "", "a", 1.0), (4, 0, "", "a", 2.0)])
  with (d / "metrics.csv").open("a") as f:
    f.write("5,0,blocks.0")  # a kill in the middle of a line
  run_folder.truncate_after(d, 4)
  assert [r["step"] for r in run_folder.read_metrics(d / "metrics.csv")] == [0]


def _last_step(metrics: pathlib.Path) -> int:
  try:
    lines = metrics.read_bytes().splitlines()
    return int(lines[-2].split(b",")[0]) if len(lines) > 2 else -1
  except (FileNotFoundError, ValueError):
    return -1


def test_sigkill_at_a_random_moment_then_resume(tmp_path, reference):
  """The kill lands at a random training step (drawn, and printed with its seed), wherever the process is then:
  inside a step, a metrics write, a snapshot or an Orbax save."""
  cfg = _cfg()
  seed = random.randrange(10**6)
  target = random.Random(seed).randrange(1, cfg.train.steps - 1)
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_COMPILATION_CACHE_DIR=str(ROOT / ".jax_cache"))
  code = ("import sys, json; from models.config import config_from_dict; from models.train import train_run; "
          "train_run(config_from_dict(json.loads(sys.argv[2])), sys.argv[1], progress=False)")
  import json
  proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), json.dumps(cfg.to_dict())], env=env, cwd=ROOT)
  metrics = tmp_path / cfg.name / "metrics.csv"
  deadline = time.time() + 120
  while _last_step(metrics) < target and proc.poll() is None and time.time() < deadline:
    time.sleep(0.002)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = _last_step(metrics)
  train_run(cfg, tmp_path, progress=False)
  info = run_folder.load_run(tmp_path / cfg.name).info
  print(f"killed at step ~{killed_at} (target {target}, seed {seed}); resumed from {info.get('resumed_from_step')}")
  _assert_same_run(reference, tmp_path / cfg.name)


def test_a_second_trainer_waits_for_the_first_and_reuses_its_run(tmp_path, reference):
  """Two processes asked for one run: the second waits on the run's lock, then reuses the finished folder."""
  import threading
  from models import train as train_lib
  cfg = _cfg()
  finished = []
  waiter = threading.Thread(target=lambda: finished.append(train_run(cfg, tmp_path, progress=False)))
  with train_lib._exclusive(tmp_path, cfg.name):  # "the first process" holds the lock while it trains
    waiter.start()
    time.sleep(1.0)
    assert not finished and not (tmp_path / cfg.name).exists()  # the second is waiting, and wrote nothing
    train_lib._train_run(cfg, tmp_path, progress=False, log_every=None, stop_after=None)
    stamp = (tmp_path / cfg.name / "metrics.csv").stat().st_mtime_ns
  waiter.join(timeout=300)
  assert finished == [tmp_path / cfg.name]
  assert (tmp_path / cfg.name / "metrics.csv").stat().st_mtime_ns == stamp  # reused, not retrained
  _assert_same_run(reference, tmp_path / cfg.name)
