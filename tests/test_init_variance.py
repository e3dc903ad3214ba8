"""The per-member init variance has one owner: stated by ``models.transformer.init_variance``, recorded per member in
run.json at train time, read back by ``Run.init_variance`` (which ``mp_at_init`` uses)."""

import dataclasses
import pathlib

import jax
import numpy as np
import pytest

from models.config import with_overrides
from models.data import make_task
from models.members import init_params, member_key, members_of
from models.presets import tiny_config
from models.run_folder import Run
from models.run_writer import run_info
from models.transformer import init_variance
from models.weight_matrices import weight_matrices


@pytest.fixture(scope="module")
def scaled():
  """Two members of one seed at init scales 1 and 3 (model.init_scale 1.5), and run.json's record of them."""
  cfg = with_overrides(tiny_config("var"), {"model.d_model": 64, "model.init_scale": 1.5, "data.noise_p": [0.0],
                                            "data.regime_names": ["s"], "train.members_per_regime": 1,
                                            "ensemble.init_scale": [1.0, 3.0]})
  members = members_of(cfg)
  params = [init_params(cfg, member_key(cfg, m.seed_index), m.init_scale) for m in members]
  stacked = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *params)
  info = run_info(cfg, "map", members, make_task(cfg.data), weight_matrices(stacked, ensemble_dims=1), None)
  return cfg, params, info


def test_record_is_the_variance_of_the_drawn_weights(scaled):
  cfg, params, info = scaled
  for member, p in zip(info["members"], params):
    for name, w in weight_matrices(p).items():
      stated = member["init_variances"][name]
      assert stated == init_variance(name, cfg.model, member["init_scale"])
      # 64 x 64 or larger Gaussian matrices: the sample variance is within 4 standard errors sqrt(2 / n) of it.
      w = np.asarray(w, np.float64)
      assert abs(w.var() / stated - 1.0) < 4 * np.sqrt(2.0 / w.size), (name, member["init_scale"])
  name = "blocks.0.mlp_in.kernel"
  assert info["members"][1]["init_variances"][name] == pytest.approx(9 * info["members"][0]["init_variances"][name])


def test_readers_take_the_recorded_value(scaled):
  cfg, _, info = scaled
  run = Run(path=pathlib.Path("x"), config=cfg.to_dict(), info=info, metrics=[], spectra={})
  name = "blocks.0.mlp_out.kernel"
  assert run.init_variance(name, 1) == info["members"][1]["init_variances"][name]
  # The reader uses the record, not a rule of its own: a changed record changes what it reads.
  info2 = dict(info, members=[dict(m, init_variances={name: 0.125}) for m in info["members"]])
  assert dataclasses.replace(run, info=info2).init_variance(name, 0) == 0.125
  # A folder written before the record existed: the same rule applied to its stored config.
  old = dict(info, members=[{k: v for k, v in m.items() if k != "init_variances"} for m in info["members"]])
  assert dataclasses.replace(run, info=old).init_variance(name, 1) == init_variance(name, cfg.model, 3.0)
