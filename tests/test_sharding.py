"""Sharding over a device mesh: the same run and the same sweep table on 1 and on 8 (simulated CPU) devices."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lab import sweep, sweep_spec
from models import sharding

ROOT = pathlib.Path(__file__).resolve().parent.parent

SWEEP = {
    "sweep": {"name": "mesh"},
    "base": {"model": {"d_model": 16, "num_heads": 2, "num_layers": 1},
             "data": {"seq_len": 8, "vocab_size": 16, "batch_size": 8, "noise_p": [0.5], "regime_names": ["meso"]},
             "train": {"steps": 10, "snapshot_steps": [0, 10], "eval_batches": 1, "members_per_regime": 1,
                       "checkpoint_every": 5, "ensemble_strategy": "map"}},
    "axes": {"seed": [0, 1], "learning_rate": [1e-3, 3e-3]},
}

CHILD = """
import json, sys
import jax
jax.config.update("jax_num_cpu_devices", 8)
from lab import sweep, sweep_spec
raw = json.loads(sys.argv[1])
raw["base"]["train"]["data_parallel"] = int(sys.argv[3])
spec = sweep_spec.sweep_from_dict(raw)
folder = sweep.run_sweep(spec, sys.argv[2], progress=False)
sweep.summarize(folder)
run = next((folder / "runs").iterdir())
print(json.dumps({"devices": jax.device_count(), "mesh": json.loads((run / "run.json").read_text())["mesh"]}))
"""


def _table(path):
  rows = list(csv.DictReader(path.open()))
  return rows


def _assert_tables_close(a, b):
  assert len(a) == len(b) and a[0].keys() == b[0].keys()
  for ra, rb in zip(a, b):
    for k in ra:
      try:
        x, y = float(ra[k]), float(rb[k])
      except ValueError:
        assert ra[k] == rb[k], k
        continue
      if np.isnan(x):
        assert np.isnan(y), k
      else:
        assert y == pytest.approx(x, rel=2e-4, abs=2e-5), (k, ra["point"], ra["layer"], ra["step"])


@pytest.fixture(scope="module")
def one_device_table(tmp_path_factory):
  """The sweep's results table on the test process's one device (computed once for both mesh layouts)."""
  folder = tmp_path_factory.mktemp("one")
  return _table(sweep.summarize(sweep.run_sweep(sweep_spec.sweep_from_dict(json.loads(json.dumps(SWEEP))), folder,
                                                progress=False)))


@pytest.mark.parametrize("data_parallel", [1, 2])
def test_sweep_on_one_and_eight_devices_gives_the_same_table(tmp_path, data_parallel, one_device_table):
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(SWEEP), str(tmp_path / "eight"), str(data_parallel)],
                         env=env, cwd=ROOT, capture_output=True, text=True)
  assert child.returncode == 0, child.stderr[-3000:]
  report = json.loads(child.stdout.strip().splitlines()[-1])
  assert report["devices"] == 8
  assert report["mesh"] == {"ens": 4, "data": data_parallel}
  _assert_tables_close(one_device_table, _table(tmp_path / "eight" / "mesh" / "results.csv"))


def test_mesh_shapes():
  assert sharding.make_ensemble_mesh(9) is None  # one device in the test process
  with pytest.raises(ValueError, match="train.data_parallel"):
    sharding.make_ensemble_mesh(4, data_parallel=3)
