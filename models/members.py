"""Ensemble members: who they are, their keys, their hyper-parameter arrays and their initial parameters.

Members (``RunConfig.members()``): by default ``R = len(data.noise_p)`` regimes times ``m = train.members_per_regime``
seeds, member ``i = r * m + j``; the ``ensemble`` config section adds per-member learning rate, weight decay, init
scale and data knob ``p`` (axes or an explicit list). Member ``i`` with seed index ``j`` uses the key
``k_j = fold_in(PRNGKey(train.seed), j)``, which fixes its initial weights (``fold_in(k_j, 0)``), its training data
(``fold_in(k_j, 1)``, then ``fold_in(., step)``) and its held-out data (``fold_in(k_j, 2)``). So members sharing a seed
start from the same weights (a paired comparison; a different init scale multiplies the same draw), and adding
members never changes existing ones: member ``i`` equals a solo run with the same key and hyper-parameters.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from models.config import Member, RunConfig
from models.transformer import Transformer

__all__ = ["Member", "members_of", "member_key", "member_hparams", "build_model", "init_params", "init_members",
           "graphdef_of"]


def members_of(cfg: RunConfig) -> list[Member]:
  return cfg.members()


def member_key(cfg: RunConfig, seed_index: int) -> jax.Array:
  return jax.random.fold_in(jax.random.PRNGKey(cfg.train.seed), seed_index)


def member_hparams(members: list[Member]) -> dict[str, jax.Array]:
  """Per-member hyper-parameters as float32 arrays of shape (members,)."""
  return {k: jnp.asarray([getattr(m, k) for m in members], jnp.float32)
          for k in ("learning_rate", "weight_decay", "noise_p", "init_scale")}


def build_model(cfg: RunConfig, key: jax.Array) -> Transformer:
  return Transformer(cfg.model, cfg.data.vocab_size, cfg.data.seq_len, rngs=nnx.Rngs(params=key))


def init_params(cfg: RunConfig, key: jax.Array, init_scale=None) -> nnx.State:
  """Initial parameters of the member with key ``key`` (pure in ``key``, so it can be vmapped).

  ``init_scale`` (may be traced) multiplies every matrix-shaped parameter by ``init_scale / model.init_scale``, so
  each matrix's stated variance becomes ``models.transformer.init_variance(name, cfg.model, init_scale)``; vectors
  (biases, LayerNorm) are untouched.
  """
  params = nnx.state(build_model(cfg, jax.random.fold_in(key, 0)), nnx.Param)
  if init_scale is None:
    return params
  ratio = jnp.asarray(init_scale, jnp.float32) / cfg.model.init_scale
  return jax.tree_util.tree_map(lambda x: x * ratio if x.ndim >= 2 else x, params)


def graphdef_of(cfg: RunConfig):
  model = nnx.eval_shape(lambda: build_model(cfg, jax.random.PRNGKey(0)))
  return nnx.split(model, nnx.Param)[0]


@functools.partial(jax.jit, static_argnums=0)
def init_members(cfg: RunConfig, keys: jax.Array, init_scales: jax.Array) -> nnx.State:
  """Initial parameters of a stack of members: ``init_params`` vmapped over ``keys`` (E,) and ``init_scales`` (E,).

  Compiled once per configuration (``cfg`` is static: frozen and hashable), so a process that regenerates the
  initial weights of the same run again and again (``dW`` at every checkpoint) traces and compiles it once.
  """
  return jax.vmap(lambda k, s: init_params(cfg, k, s))(keys, init_scales)

