"""The Marchenko-Pastur law (Marchenko & Pastur 1967, Math. USSR Sbornik 1:457).

Convention (docs/THEORY.md#conventions): ``W`` is ``N x M`` after orientation, ``q = M / N <= 1``, iid entries of mean 0
and variance ``sigma^2``, ``X = W^T W / N``. As ``N, M -> inf`` at fixed ``q`` the ESD of ``X`` converges to

    rho(l) = sqrt((l+ - l)(l - l-)) / (2 pi sigma^2 q l)   on [l-, l+],   l+- = sigma^2 (1 +- sqrt(q))^2,

with moments ``E l = sigma^2`` and ``E l^2 = sigma^4 (1 + q)``. The singular values ``s`` of ``W / sqrt(N)`` have
density ``p(s) = sqrt((s+^2 - s^2)(s^2 - s-^2)) / (pi sigma^2 q s)`` on ``[s-, s+]``, ``s+- = sigma (1 +- sqrt(q))``;
at ``q = 1`` the quarter circle on ``[0, 2 sigma]``.

All functions are numpy, float64, vectorised over ``x``.
"""

from __future__ import annotations

import functools

import numpy as np


def _check_q(q: float) -> float:
  q = float(q)
  if not 0.0 < q <= 1.0:
    raise ValueError(f"q: expected an aspect ratio in (0, 1], got {q}")
  return q


def _check_sigma2(sigma2: float) -> float:
  sigma2 = float(sigma2)
  if not (np.isfinite(sigma2) and sigma2 > 0.0):
    raise ValueError(f"sigma2: expected a finite positive variance, got {sigma2}")
  return sigma2


def mp_edges(q: float, sigma2: float = 1.0) -> tuple[float, float]:
  """Bulk edges ``(l-, l+) = sigma^2 (1 -+ sqrt(q))^2`` of the Marchenko-Pastur law."""
  q, sigma2 = _check_q(q), _check_sigma2(sigma2)
  return sigma2 * (1.0 - np.sqrt(q)) ** 2, sigma2 * (1.0 + np.sqrt(q)) ** 2


def mp_pdf(x, q: float, sigma2: float = 1.0) -> np.ndarray:
  """Marchenko-Pastur density of eigenvalues of ``X = W^T W / N`` at ``x`` (zero outside the bulk)."""
  lo, hi = mp_edges(q, sigma2)
  x = np.asarray(x, dtype=np.float64)
  inside = (x > lo) & (x < hi)
  xs = np.where(inside, x, 0.5 * (lo + hi))
  dens = np.sqrt(np.clip((hi - xs) * (xs - lo), 0.0, None)) / (2.0 * np.pi * sigma2 * q * xs)
  return np.where(inside, dens, 0.0)


def mp_cdf(x, q: float, sigma2: float = 1.0) -> np.ndarray:
  """Marchenko-Pastur distribution function at ``x``, in closed form (see ``_mp_cdf_unit``)."""
  q, sigma2 = _check_q(q), _check_sigma2(sigma2)
  return _mp_cdf_unit(np.asarray(x, dtype=np.float64) / sigma2, q)


def _mp_cdf_unit(x: np.ndarray, q: float) -> np.ndarray:
  """CDF of the unit-variance MP law with ratio ``q <= 1``.

  With ``a, b = (1 -+ sqrt(q))^2``, ``m = (a + b) / 2``, ``h = (b - a) / 2`` and ``r(t) = sqrt((b - t)(t - a))``,
  an antiderivative of ``r(t) / t`` on ``[a, b]`` is

    G(t) = r(t) + m asin((t - m) / h) - sqrt(a b) asin((m t - a b) / (h t)),

  (differentiate to check), so ``F(x) = (G(x) - G(a)) / (2 pi q)``. Held against numerical quadrature in the tests.
  """
  a, b = (1.0 - np.sqrt(q)) ** 2, (1.0 + np.sqrt(q)) ** 2
  m, h, g = 0.5 * (a + b), 0.5 * (b - a), np.sqrt(a * b)
  xc = np.clip(x, a, b)

  def antiderivative(t):
    r = np.sqrt(np.clip((b - t) * (t - a), 0.0, None))
    s1 = np.arcsin(np.clip((t - m) / h, -1.0, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
      arg = np.where(t > 0, (m * t - a * b) / (h * np.where(t > 0, t, 1.0)), -1.0)
    s2 = np.arcsin(np.clip(arg, -1.0, 1.0))
    return r + m * s1 - g * s2

  f = (antiderivative(xc) - antiderivative(np.full_like(xc, a))) / (2.0 * np.pi * q)
  return np.where(x < a, 0.0, np.where(x >= b, 1.0, np.clip(f, 0.0, 1.0)))


def mp_quantile(p, q: float, sigma2: float = 1.0, iters: int = 80) -> np.ndarray:
  """Inverse of ``mp_cdf`` by bisection on the bulk (monotone, so bisection is exact to ``2^-iters`` of the width)."""
  q, sigma2 = _check_q(q), _check_sigma2(sigma2)
  p = np.asarray(p, dtype=np.float64)
  if np.any((p < 0) | (p > 1)):
    raise ValueError("p: expected probabilities in [0, 1]")
  a, b = mp_edges(q, 1.0)
  lo, hi = np.full_like(p, a), np.full_like(p, b)
  for _ in range(iters):
    mid = 0.5 * (lo + hi)
    below = _mp_cdf_unit(mid, q) < p
    lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
  return sigma2 * 0.5 * (lo + hi)


def median_sigma2(eigenvalues, q: float) -> np.ndarray:
  """Robust MP variance of each row of ``eigenvalues`` (..., M): ``median(l) / median(MP_q with sigma^2 = 1)``.

  Gavish & Donoho 2014 (IEEE Trans. Inf. Theory 60:5040, arXiv:1305.5870): a few spikes move the median by
  O(k / M) only, whereas the mean (trace) estimator is pulled up by their full size. The median is taken in the
  eigenvalues' own floating dtype, the division in float64; a non-positive result (more than half the spectrum at
  zero) is returned as it is.
  """
  ev = np.asarray(eigenvalues)
  if ev.ndim < 1 or ev.shape[-1] == 0 or not np.issubdtype(ev.dtype, np.floating):
    raise ValueError(f"eigenvalues: expected a non-empty floating (..., M) array, got {ev.dtype} {ev.shape}")
  return np.asarray(np.median(ev, axis=-1), np.float64) / _unit_median(float(q))


@functools.lru_cache(maxsize=256)
def _unit_median(q: float) -> float:
  return float(mp_quantile(0.5, q))


def fit_mp_sigma2(eigenvalues, q: float) -> float:
  """``median_sigma2`` of one spectrum (M,) in float64; raises if it is not positive."""
  ev = np.asarray(eigenvalues, dtype=np.float64)
  if ev.ndim != 1 or ev.size == 0:
    raise ValueError(f"eigenvalues: expected a non-empty 1-D array, got shape {ev.shape}")
  sigma2 = float(median_sigma2(ev, q))
  if not sigma2 > 0:
    raise ValueError("eigenvalues: median is not positive; the matrix is rank-deficient beyond MP's reach")
  return sigma2


def mp_ks_distance(eigenvalues, q: float, sigma2: float) -> float:
  """Kolmogorov-Smirnov distance ``sup |F_emp - F_MP|`` between an ESD and MP(q, sigma^2).

  Eigenvalues are rigid, so for pure noise this shrinks like ``1 / M`` (docs/THEORY.md#tolerances), not ``1/sqrt(M)``;
  compare with a bound of a few units over ``M``, never with an iid KS p-value.
  """
  ev = np.sort(np.asarray(eigenvalues, dtype=np.float64))
  m = ev.size
  f = mp_cdf(ev, q, sigma2)
  upper = np.arange(1, m + 1) / m - f
  lower = f - np.arange(0, m) / m
  return float(max(upper.max(), lower.max()))
