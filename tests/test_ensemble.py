"""The ensemble step: member i equals a solo run with the same key and hyper-parameters, for every strategy; no
recompilation; divergence freezes one member only."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.presets import tiny_config
from models.members import graphdef_of, member_hparams, member_key, members_of
from models.optimizer import learning_rate_schedule
from models.steps import init_state, make_ensemble_step, make_member_step
from models.config import with_overrides


def _ensemble(cfg, strategy, steps):
  members = members_of(cfg)
  keys = jnp.stack([member_key(cfg, m.seed_index) for m in members])
  hp = member_hparams(members)
  state = init_state(cfg, keys, hp)
  step_fn = make_ensemble_step(cfg, graphdef_of(cfg), strategy)
  for s in range(steps):
    state, out = step_fn(state, hp, keys, s)
  assert step_fn._cache_size() == 1  # one compiled program for every step
  return state["params"], out["loss"]


def _solo(cfg, member, steps):
  key = member_key(cfg, member.seed_index)
  hp = {k: v[0] for k, v in member_hparams([member]).items()}
  state = jax.tree_util.tree_map(lambda x: x[0], init_state(cfg, key[None], {k: v[None] for k, v in hp.items()}))
  step = jax.jit(make_member_step(cfg, graphdef_of(cfg)))
  for s in range(steps):
    state, out = step(state, hp, key, s)
  return state["params"], out["loss"]


def _assert_member_matches(cfg, strategy, steps=5, which=(1, -1)):
  ens, ens_loss = _ensemble(cfg, strategy, steps)
  members = members_of(cfg)
  for member in (members[i] for i in which):
    solo, solo_loss = _solo(cfg, member, steps)
    mine = jax.tree_util.tree_map(lambda x: x[member.index], ens)
    flat_solo = dict(jax.tree_util.tree_leaves_with_path(solo))
    for path, a in jax.tree_util.tree_leaves_with_path(mine):
      if "'key']['bias'" in jax.tree_util.keystr(path):
        # softmax(q.(k + b)) is exactly invariant to the key bias b, so its gradient is round-off only and Adam
        # rescales that round-off to lr-sized steps: it differs between programs yet never changes the function.
        continue
      np.testing.assert_allclose(np.asarray(a), np.asarray(flat_solo[path]), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(ens_loss[member.index], solo_loss, rtol=1e-5)


@pytest.mark.parametrize("strategy", ["vmap", "map", "chunked"])
def test_member_matches_solo_run(strategy):
  _assert_member_matches(tiny_config(), strategy)


def test_per_member_hyperparameters_match_solo_runs():
  cfg = with_overrides(tiny_config(), {"train.members_per_regime": 1, "data.noise_p": [0.0],
                                       "data.regime_names": ["s"], "ensemble.members": [
      {"seed_index": 0, "noise_p": 0.0},
      {"seed_index": 1, "noise_p": 0.3, "learning_rate": 3e-3, "weight_decay": 0.1},
      {"seed_index": 1, "noise_p": 1.0, "init_scale": 2.0, "learning_rate": 1e-4}]})
  members = members_of(cfg)
  assert [m.learning_rate for m in members] == [1e-3, 3e-3, 1e-4] and members[2].init_scale == 2.0
  _assert_member_matches(cfg, "vmap", which=(1, 2))
  # Members differ: the init-scale member starts from twice the same draw (shared seed index 1).
  keys = jnp.stack([member_key(cfg, m.seed_index) for m in members])
  p = init_state(cfg, keys, member_hparams(members))["params"]
  w = np.asarray(p["blocks"][0]["mlp_in"]["kernel"][...])
  np.testing.assert_allclose(w[2], 2.0 * w[1], rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(p["blocks"][0]["ln_mlp"]["scale"][...])[2], 1.0)


def test_sgd_cosine_clip_runs_one_program():
  cfg = with_overrides(tiny_config(), {"train.optimizer": "sgd", "train.schedule": "warmup_cosine",
                                       "train.warmup_steps": 2, "train.grad_clip": 0.5,
                                       "ensemble.learning_rate": [0.01, 0.1]})
  params, loss = _ensemble(cfg, "vmap", 4)
  assert cfg.num_members == 12 and np.all(np.isfinite(np.asarray(loss)))


def test_schedules():
  from models.config import TrainConfig
  tc = TrainConfig(steps=10, schedule="warmup_cosine", warmup_steps=2, snapshot_steps=(0,))
  f = learning_rate_schedule(tc, 1.0)
  np.testing.assert_allclose([float(f(c)) for c in (0, 1, 2, 6, 10)], [0.5, 1.0, 1.0, 0.5, 0.0], atol=1e-6)
  assert learning_rate_schedule(TrainConfig(), 0.1) == 0.1  # constant: the plain scalar (flagship path)


def test_growing_the_ensemble_keeps_existing_members():
  small = tiny_config()
  big = with_overrides(small, {"train.members_per_regime": 3})
  keys_small = [member_key(small, m.seed_index) for m in members_of(small)]
  keys_big = {(m.regime, m.seed_index): member_key(big, m.seed_index) for m in members_of(big)}
  for m, k in zip(members_of(small), keys_small):
    np.testing.assert_array_equal(k, keys_big[(m.regime, m.seed_index)])


def test_diverging_member_is_frozen_not_contagious():
  cfg = tiny_config()
  members = members_of(cfg)
  keys = jnp.stack([member_key(cfg, m.seed_index) for m in members])
  hp = member_hparams(members)
  state = init_state(cfg, keys, hp)
  # Poison member 0's unembedding with NaN.
  params = state["params"]
  params["unembed"]["kernel"][...] = params["unembed"]["kernel"][...].at[0].set(jnp.nan)
  before = jax.tree_util.tree_map(lambda x: np.asarray(x).copy(), params)
  step_fn = make_ensemble_step(cfg, graphdef_of(cfg), "vmap")
  for s in range(2):
    state, out = step_fn(state, hp, keys, s)
  assert not bool(out["finite"][0]) and bool(np.all(out["finite"][1:]))
  assert list(np.asarray(state["frozen_at"])) == [0] + [-1] * (len(members) - 1)
  for a, b in zip(jax.tree_util.tree_leaves(state["params"]), jax.tree_util.tree_leaves(before)):
    np.testing.assert_array_equal(np.asarray(a)[0], b[0])  # frozen
    assert np.all(np.isfinite(np.asarray(a)[1:]))
    assert not np.array_equal(np.asarray(a)[1:], b[1:]) or a.ndim == 1  # others moved
