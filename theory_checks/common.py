"""Shared statistics for the theory checks: binomial family-wise rules, Tracy-Widom scaling and goodness of fit.

Everything here is numpy/scipy float64 except ``gaussian_lmax``, which draws a whole ensemble of Gaussian matrices
and their largest ESD eigenvalue in one vmapped JAX computation.

Convention (docs/THEORY.md#conventions; ``spectral.esd``): ``W`` of shape ``(a, b)``, ``N = max``, ``M = min``,
ESD = eigenvalues of ``X = W_s W_s^T / N``. Johnstone-Ma scaling (docs/THEORY.md#mp_at_init):
``t = (N l_max(X) / sigma^2 - mu) / s -> TW1``.
"""

from __future__ import annotations

import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from scipy import interpolate, stats

from spectral import tracy_widom as tw

DEFAULT_RUNS = pathlib.Path("runs")


def binomial_upper_quantile(n: int, p: float, prob: float) -> int:
  """Smallest ``k`` with ``P(Binomial(n, p) <= k) >= prob``."""
  cdf = 0.0
  for k in range(n + 1):
    cdf += math.comb(n, k) * p**k * (1 - p) ** (n - k)
    if cdf >= prob:
      return k
  return n


def rate_bound(n: int, p: float, family_level: float = 0.01) -> int:
  """Largest count of false alarms among ``n`` independent level-``p`` tests allowed at ``family_level``."""
  return binomial_upper_quantile(n, p, 1.0 - family_level)


def tw_scale(lmax, shape, sigma2: float = 1.0) -> np.ndarray:
  """Johnstone-Ma scaled largest eigenvalue ``(N l_max / sigma^2 - mu) / s`` (our ESD convention, Ma's n', p')."""
  n, m = max(int(shape[0]), int(shape[1])), min(int(shape[0]), int(shape[1]))
  mu, s = tw.johnstone_centring_scaling(n, m)
  return (n * np.asarray(lmax, dtype=np.float64) / sigma2 - mu) / s


@functools.lru_cache(maxsize=4)
def _tabulated_cdf(beta: int):
  # 40 Gauss-Legendre nodes already reach ~1e-14 (Bornemann 2010); PCHIP on a 0.05 grid is monotone and accurate to
  # ~1e-6, far below any KS distance a check can resolve with fewer than 10^8 samples.
  grid = np.linspace(-9.0, 9.0, 361)
  values = np.clip(tw.tw_cdf(grid, beta, nodes=40), 0.0, 1.0)
  values = np.maximum.accumulate(values)
  return grid, interpolate.PchipInterpolator(grid, values, extrapolate=False)


def tw_cdf_fast(x, beta: int = 1) -> np.ndarray:
  """TW``beta`` distribution function by monotone interpolation of Bornemann's quadrature (0 below -9, 1 above 9)."""
  grid, f = _tabulated_cdf(beta)
  x = np.asarray(x, dtype=np.float64)
  out = f(np.clip(x, grid[0], grid[-1]))
  return np.clip(np.where(x <= grid[0], 0.0, np.where(x >= grid[-1], 1.0, out)), 0.0, 1.0)


def ks_statistic(samples, cdf) -> float:
  """One-sample Kolmogorov-Smirnov distance ``sup |F_n - F|`` of iid ``samples`` against the callable ``cdf``."""
  x = np.sort(np.asarray(samples, dtype=np.float64))
  n = x.size
  f = cdf(x)
  return float(max((np.arange(1, n + 1) / n - f).max(), (f - np.arange(n) / n).max()))


def ks_critical(n: int, level: float) -> float:
  """``1 - level`` quantile of the exact one-sample Kolmogorov distribution for ``n`` iid samples (scipy kstwo)."""
  return float(stats.kstwo.ppf(1.0 - level, n))


def gaussian_lmax(key: jax.Array, count: int, shape, *, chunk: int = 256, thetas=None) -> np.ndarray:
  """Largest ESD eigenvalue of ``count`` independent ``shape`` matrices with iid N(0, 1) entries (one vmapped,
  jitted computation per chunk of seeds; seed ``i`` uses ``fold_in(key, i)``, so growing ``count`` keeps earlier draws).

  ``thetas`` (optional, (k,)): plant the spikes ``sqrt(N) sum theta_i u_i v_i^T`` (``spectral.bbp`` scaled to unit
  noise variance), the alternative used to measure power.
  """
  n, m = max(int(shape[0]), int(shape[1])), min(int(shape[0]), int(shape[1]))
  th = jnp.zeros((0,), jnp.float32) if thetas is None else jnp.asarray(np.atleast_1d(thetas), jnp.float32)

  @jax.jit
  def one_chunk(keys):
    def one(k):
      kg, ku, kv = jax.random.split(k, 3)
      g = jax.random.normal(kg, (n, m), jnp.float32)
      if th.shape[0]:
        u, _ = jnp.linalg.qr(jax.random.normal(ku, (n, th.shape[0])))
        v, _ = jnp.linalg.qr(jax.random.normal(kv, (m, th.shape[0])))
        g = g + jnp.sqrt(jnp.float32(n)) * (u * th[None, :]) @ v.T
      gram = jnp.einsum("ji,jk->ik", g, g, precision=jax.lax.Precision.HIGHEST) / n
      return jnp.linalg.eigvalsh(gram)[-1]
    return jax.vmap(one)(keys)

  out = []
  for start in range(0, count, chunk):
    idx = jnp.arange(start, min(start + chunk, count))
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)
    if idx.shape[0] < chunk:  # keep one compiled shape: pad the last chunk
      keys = jnp.concatenate([keys, jnp.broadcast_to(keys[:1], (chunk - idx.shape[0],) + keys.shape[1:])])
    out.append(np.asarray(one_chunk(keys))[: idx.shape[0]])
  return np.concatenate(out).astype(np.float64)


def mean_se(x) -> tuple[float, float]:
  x = np.asarray(x, dtype=np.float64)
  return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
