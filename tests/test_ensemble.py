"""The ensemble step: member i equals a solo run with the same key, for both strategies; no recompilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lab.main_job import tiny_config
from models import train


def _ensemble_params(cfg, strategy, steps):
  members = train.members_of(cfg)
  keys = jnp.stack([train.member_key(cfg, m.seed_index) for m in members])
  ps = jnp.asarray([m.noise_p for m in members], jnp.float32)
  graphdef, tx = train.graphdef_of(cfg), train.make_optimizer(cfg)
  params = jax.vmap(lambda k: train.init_params(cfg, k))(keys)
  opt = jax.vmap(tx.init)(params)
  step_fn = train.make_ensemble_step(cfg, graphdef, tx, strategy)
  for s in range(steps):
    params, opt, loss, finite = step_fn(params, opt, keys, ps, s)
  assert step_fn._cache_size() == 1  # one compiled program for every step
  return params, loss


def _solo_params(cfg, member, steps):
  graphdef, tx = train.graphdef_of(cfg), train.make_optimizer(cfg)
  key = train.member_key(cfg, member.seed_index)
  params = train.init_params(cfg, key)
  opt = tx.init(params)
  step = jax.jit(train.make_member_step(cfg, graphdef, tx))
  for s in range(steps):
    params, opt, loss, _ = step(params, opt, key, jnp.float32(member.noise_p), s)
  return params, loss


@pytest.mark.parametrize("strategy", ["vmap", "map"])
def test_member_matches_solo_run(strategy):
  cfg = tiny_config()
  steps = 5
  ens, ens_loss = _ensemble_params(cfg, strategy, steps)
  for member in (train.members_of(cfg)[1], train.members_of(cfg)[-1]):
    solo, solo_loss = _solo_params(cfg, member, steps)
    mine = jax.tree_util.tree_map(lambda x: x[member.index], ens)
    flat_solo = dict(jax.tree_util.tree_leaves_with_path(solo))
    for path, a in jax.tree_util.tree_leaves_with_path(mine):
      if "'key']['bias'" in jax.tree_util.keystr(path):
        # softmax(q.(k + b)) is exactly invariant to the key bias b, so its gradient is round-off only and Adam
        # rescales that round-off to lr-sized steps: it differs between programs yet never changes the function.
        continue
      np.testing.assert_allclose(np.asarray(a), np.asarray(flat_solo[path]), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(ens_loss[member.index], solo_loss, rtol=1e-5)


def test_growing_the_ensemble_keeps_existing_members():
  small = tiny_config()
  big = small.__class__(name=small.name, data=small.data, model=small.model,
                        train=small.train.__class__(**{**small.train.__dict__, "members_per_regime": 3}))
  keys_small = [train.member_key(small, m.seed_index) for m in train.members_of(small)]
  keys_big = {(m.regime, m.seed_index): train.member_key(big, m.seed_index) for m in train.members_of(big)}
  for m, k in zip(train.members_of(small), keys_small):
    np.testing.assert_array_equal(k, keys_big[(m.regime, m.seed_index)])


def test_diverging_member_is_frozen_not_contagious():
  cfg = tiny_config()
  members = train.members_of(cfg)
  keys = jnp.stack([train.member_key(cfg, m.seed_index) for m in members])
  ps = jnp.asarray([m.noise_p for m in members], jnp.float32)
  graphdef, tx = train.graphdef_of(cfg), train.make_optimizer(cfg)
  params = jax.vmap(lambda k: train.init_params(cfg, k))(keys)
  # Poison member 0's unembedding with NaN.
  params["unembed"]["kernel"][...] = params["unembed"]["kernel"][...].at[0].set(jnp.nan)
  before = jax.tree_util.tree_map(lambda x: np.asarray(x).copy(), params)
  opt = jax.vmap(tx.init)(params)
  step_fn = train.make_ensemble_step(cfg, graphdef, tx, "vmap")
  params, opt, loss, finite = step_fn(params, opt, keys, ps, 0)
  assert not bool(finite[0]) and bool(np.all(finite[1:]))
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(before)):
    np.testing.assert_array_equal(np.asarray(a)[0], b[0])  # frozen
    assert np.all(np.isfinite(np.asarray(a)[1:]))
    assert not np.array_equal(np.asarray(a)[1:], b[1:]) or a.ndim == 1  # others moved
