"""python -m lab analyze: structure of W - W0 with W0 regenerated from the member's seed, attributed."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from lab.__main__ import main, member_structure_inputs
from models.presets import tiny_config
from models import train
from models.weight_matrices import weight_matrices
from spectral import analyze


def test_regenerated_init_is_the_one_training_started_from():
  cfg = tiny_config("st")
  members = train.members_of(cfg)
  keys = jnp.stack([train.member_key(cfg, m.seed_index) for m in members])
  start = train.init_state(cfg, keys, train.member_hparams(members))["params"]
  params = jax.tree_util.tree_map(lambda x: x[3], start)
  w0, spaces = member_structure_inputs(cfg, params, 3)
  expected = weight_matrices(params)
  assert set(w0) == set(expected) == set(spaces)
  for name in expected:
    assert np.array_equal(np.asarray(w0[name]), np.asarray(expected[name])), name


def test_member_update_structure_is_reported_and_attributed(tmp_path, capsys):
  run_dir = train.train_run(tiny_config("st"), tmp_path, progress=False)
  out = tmp_path / "s.json"
  assert main(["analyze", str(run_dir), "--member", "1", "--json", str(out)]) == 0
  assert "structure_rank" in capsys.readouterr().out
  rows = json.loads(out.read_text())
  assert all(set(analyze.STRUCTURE_COLUMNS) <= set(r) and r["structure_status"].startswith("ok") for r in rows)
  assert any(r["structure_rank"] > 0 for r in rows)
  attributed = [r for r in rows if r["structure_rank"] > 0 and r["top_component"] is not None]
  assert attributed and all(0.0 <= r["top_overlap"] <= 1.0 for r in attributed)
  assert main(["analyze", str(run_dir), "--member", "1", "--no-structure", "--json", str(out)]) == 0
  assert all(r["structure_rank"] is None for r in json.loads(out.read_text()))
