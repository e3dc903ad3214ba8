"""Token streams whose structure is a knob, generated on device as pure functions of (key, step).

The affine-noise chain (the flagship's three regimes are three values of one knob ``p``):

    x_0 ~ U{0..V-1},    x_{t+1} = (a x_t + b) mod V   with probability 1 - p,
                        x_{t+1} ~ U{0..V-1}           with probability p.

``p = 1`` is pure noise (entropy log2 V bits per token, nothing to learn), ``p = 0`` a deterministic rule (zero
conditional entropy), and ``0 < p < 1`` the meso-scale in between. Given ``x_t`` the next token is ``f(x_t)`` with
probability ``1 - p + p/V`` and any other given token with probability ``p/V``, so the entropy rate is exact
(``affine_noise_entropy_rate``). With ``gcd(a, V) = 1`` the rule is a permutation of the vocabulary.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from models.config import DataConfig


def affine_noise_batch(cfg: DataConfig, key: jax.Array, p) -> jax.Array:
  """One batch of the affine-noise chain: int32 tokens of shape (batch_size, seq_len + 1).

  Args:
    cfg: data config (vocabulary V, sequence length L, batch size B, rule coefficients a, b).
    key: PRNG key; the batch is a pure function of it.
    p: noise probability in [0, 1] (a scalar, may be traced so members can differ in p).
  """
  v, length, batch = cfg.vocab_size, cfg.seq_len + 1, cfg.batch_size
  k0, kmask, knoise = jax.random.split(key, 3)
  x0 = jax.random.randint(k0, (batch,), 0, v, dtype=jnp.int32)
  replace = jax.random.uniform(kmask, (length - 1, batch)) < p
  noise = jax.random.randint(knoise, (length - 1, batch), 0, v, dtype=jnp.int32)

  def advance(x, inputs):
    rep, nz = inputs
    nxt = jnp.where(rep, nz, (cfg.affine_a * x + cfg.affine_b) % v)
    return nxt, nxt

  _, rest = jax.lax.scan(advance, x0, (replace, noise))
  return jnp.concatenate([x0[None], rest], axis=0).T


def batch_for_step(cfg: DataConfig, data_key: jax.Array, step, p) -> jax.Array:
  """The training batch of ``step``: data order is a function of (member key, step) only."""
  return affine_noise_batch(cfg, jax.random.fold_in(data_key, step), p)


def affine_noise_entropy_rate(p: float, vocab_size: int) -> float:
  """Exact entropy rate in bits per token of the affine-noise chain (conditional entropy of x_{t+1} given x_t)."""
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"p: expected a probability in [0, 1], got {p}")
  hit = 1.0 - p + p / vocab_size
  miss = p / vocab_size
  h = -hit * math.log2(hit)
  if miss > 0:
    h -= (vocab_size - 1) * miss * math.log2(miss)
  return h + 0.0  # -0.0 -> 0.0 for p = 0


def rule_mismatch_fraction(tokens: np.ndarray, cfg: DataConfig) -> float:
  """Fraction of transitions with ``x_{t+1} != (a x_t + b) mod V``; its expectation is ``p (1 - 1/V)``."""
  tokens = np.asarray(tokens)
  pred = (cfg.affine_a * tokens[:, :-1] + cfg.affine_b) % cfg.vocab_size
  return float(np.mean(pred != tokens[:, 1:]))
