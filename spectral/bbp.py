"""The BBP transition for low-rank spikes in rectangular noise (Benaych-Georges & Nadakuditi 2012).

Model (docs/THEORY.md#bbp; Benaych-Georges & Nadakuditi 2012, J. Multivar. Anal. 111:120, arXiv:1103.2221,
section 3.1): ``W = sum_i theta_i u_i v_i^T + G / sqrt(N)`` of shape ``N x M`` (long side first), ``q = M / N <= 1``,
``u_i`` orthonormal in R^N (long side), ``v_i`` orthonormal in R^M (short side), ``G`` iid N(0, 1). For noise of
variance ``sigma^2 / N`` divide ``theta`` by ``sigma``. As ``N -> inf`` at fixed ``q`` and fixed rank ``k``, each spike
acts independently:

- threshold ``theta_c = q^(1/4)``;
- top singular value of ``W``: ``sqrt((1 + theta^2)(q + theta^2)) / theta`` if ``theta > theta_c``, else the bulk
  edge ``1 + sqrt(q)``;
- squared overlaps of the singular vectors: ``|<u_hat, u>|^2 = (theta^4 - q) / (theta^2 (theta^2 + 1))`` (long side),
  ``|<v_hat, v>|^2 = (theta^4 - q) / (theta^2 (theta^2 + q))`` (short side), and 0 below threshold.

In the ESD convention of ``spectral.esd`` (``X = W_s W_s^T / N``) the outlier eigenvalue of ``X`` for the matrix
``sqrt(N) W`` (unit-variance noise entries) is the square of the predicted singular value. Fluctuations are
``O(N^-1/2)`` away from the threshold and the critical window is ``O(N^-1/3)``.

Prediction functions are numpy float64 and vectorised over ``theta``; ``plant_spikes`` uses ``jax.random``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _check_q(q: float) -> float:
  q = float(q)
  if not 0.0 < q <= 1.0:
    raise ValueError(f"q: expected an aspect ratio in (0, 1], got {q}")
  return q


def _check_theta(theta) -> np.ndarray:
  theta = np.asarray(theta, dtype=np.float64)
  if np.any(~np.isfinite(theta)) or np.any(theta < 0):
    raise ValueError("theta: expected finite non-negative spike strengths")
  return theta


def bbp_threshold(q: float) -> float:
  """Detection threshold ``theta_c = q^(1/4)`` for a spike in ``N x M`` noise with ``q = M / N``."""
  return _check_q(q) ** 0.25


def bbp_top_singular_value(theta, q: float) -> np.ndarray:
  """Predicted singular value of ``W`` for spike strength(s) ``theta``: the outlier above threshold, else the edge."""
  q, theta = _check_q(q), _check_theta(theta)
  above = theta > q**0.25
  t = np.where(above, theta, 1.0)
  outlier = np.sqrt((1.0 + t**2) * (q + t**2)) / t
  return np.where(above, outlier, 1.0 + np.sqrt(q))


def bbp_overlaps(theta, q: float) -> tuple[np.ndarray, np.ndarray]:
  """Predicted squared overlaps ``(|<u_hat, u>|^2 long side, |<v_hat, v>|^2 short side)``; zero below threshold."""
  q, theta = _check_q(q), _check_theta(theta)
  above = theta > q**0.25
  t2 = np.where(above, theta, 1.0) ** 2
  long_side = (t2**2 - q) / (t2 * (t2 + 1.0))
  short_side = (t2**2 - q) / (t2 * (t2 + q))
  return np.where(above, long_side, 0.0), np.where(above, short_side, 0.0)


def _as_key(key_or_seed):
  if isinstance(key_or_seed, (int, np.integer)):
    return jax.random.key(int(key_or_seed))
  return key_or_seed


def _orthonormal(key, n: int, k: int) -> jax.Array:
  q, r = jnp.linalg.qr(jax.random.normal(key, (n, k)))
  return q * jnp.sign(jnp.diagonal(r))[None, :]


def plant_spikes(key_or_seed, shape, thetas, dtype=jnp.float32) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Sample ``W = sum_i theta_i u_i v_i^T + G / sqrt(N)`` with random orthonormal ``u_i`` (long side), ``v_i`` (short).

  Args:
    key_or_seed: a ``jax.random`` key or an integer seed.
    shape: ``(a, b)``, the shape of the returned ``W``; ``N = max(a, b)``, ``M = min(a, b)``. If ``a < b`` the model
      is transposed (``u`` still lives on the long side).
    thetas: (k,) spike strengths (k may be 0).

  Returns:
    ``(w, u, v)``: ``w`` of ``shape``; ``u`` (N, k) and ``v`` (M, k) with orthonormal columns.
  """
  if len(shape) != 2 or min(shape) < 2:
    raise ValueError(f"shape: expected a 2-D shape with both dimensions >= 2, got {tuple(shape)}")
  thetas = jnp.asarray(_check_theta(np.atleast_1d(thetas)), dtype=dtype)
  if thetas.ndim != 1 or thetas.shape[0] > min(shape):
    raise ValueError(f"thetas: expected a 1-D array of at most min(shape) = {min(shape)} strengths")
  n, m, k = max(shape), min(shape), thetas.shape[0]
  key_g, key_u, key_v = jax.random.split(_as_key(key_or_seed), 3)
  g = jax.random.normal(key_g, (n, m), dtype=dtype)
  u = _orthonormal(key_u, n, k).astype(dtype)
  v = _orthonormal(key_v, m, k).astype(dtype)
  w = (u * thetas[None, :]) @ v.T + g / jnp.sqrt(jnp.asarray(n, dtype))
  if shape[0] < shape[1]:
    w = w.T
  return w, u, v
