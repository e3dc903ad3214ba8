"""Tracy-Widom laws (beta = 1, 2) and Johnstone's test for spikes beyond the Marchenko-Pastur edge.

Distribution functions by Bornemann's Fredholm-determinant quadrature (Bornemann 2010, Math. Comp. 79:871,
arXiv:0804.2543): for a trace-class operator ``K`` on ``L2(s, inf)`` with a smooth kernel, the Nystrom discretisation
with an ``m``-point Gauss-Legendre rule (nodes ``x_i``, weights ``w_i``),

    det(I - K) ~= det(delta_ij - sqrt(w_i) K(x_i, x_j) sqrt(w_j)),

converges exponentially in ``m``. Both kernels below decay like ``exp(-c x^(3/2))``, so ``(s, inf)`` is truncated to
``(s, max(s, 0) + L)`` for TW2 and to ``(s, max(s + L, 2 L - s))`` for TW1 (whose kernel depends on ``x + y`` only),
with ``L = 16``: the neglected kernel values are below ``Ai(16) ~ 1e-19``.

- TW2: ``F2(s) = det(I - K_Ai)`` with the Airy kernel ``K_Ai(x, y) = (Ai(x) Ai'(y) - Ai'(x) Ai(y)) / (x - y)``,
  diagonal ``Ai'(x)^2 - x Ai(x)^2`` (Tracy & Widom 1994).
- TW1: ``F1(s) = det(I - K1)`` with ``K1(x, y) = Ai((x + y) / 2) / 2`` (Ferrari & Spohn 2005, Sasamoto 2005; the
  form Bornemann 2010 section 8 uses).

Densities are exact derivatives of the discretised determinants: writing ``K_s(t, u) = K(s + t, s + u)`` on
``L2(0, inf)``, ``d/ds log det(I - K_s) = -tr((I - K_s)^-1 dK_s/ds)`` with ``(d_x + d_y) K_Ai = -Ai(x) Ai(y)`` and
``(d_x + d_y) K1 = Ai'((x + y) / 2) / 2``.

Published moments (Bornemann 2010, Table 10): TW1 mean -1.2065335745820, variance 1.6077810345810; TW2 mean
-1.7710868074, variance 0.8131947928. The tests integrate our densities and compare.

Johnstone 2001 (Ann. Stat. 29:295, Thm 1.1) with Ma's 2012 centring (Bernoulli 18:322; docs/THEORY.md#mp_at_init):
for an ``n x p`` matrix ``Z`` of iid N(0, 1) entries, ``(l_max(Z^T Z) - mu) / s -> TW1`` with ``n' = n - 1/2``,
``p' = p - 1/2``, ``mu = (sqrt(n') + sqrt(p'))^2``, ``s = (sqrt(n') + sqrt(p')) (1/sqrt(n') + 1/sqrt(p'))^(1/3)``.
In our ESD convention (``X = W_s W_s^T / N``, ``N = n = max`` dimension, ``p = M``), with entries of variance
``sigma^2``: ``l_max(X) ~ sigma^2 (mu + s TW1) / N``.

numpy float64 throughout (scipy's Airy functions); quantiles by Brent's method on the CDF, cached.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import optimize, special

from spectral import marchenko_pastur as mp

_TRUNCATION = 16.0
_NODES = 80


def _check_beta(beta: int) -> int:
  if beta not in (1, 2):
    raise ValueError(f"beta: expected 1 or 2, got {beta!r}")
  return int(beta)


@functools.lru_cache(maxsize=8)
def _gauss_legendre_unit(m: int) -> tuple[np.ndarray, np.ndarray]:
  """Gauss-Legendre nodes and weights on [0, 1]."""
  x, w = np.polynomial.legendre.leggauss(m)
  return 0.5 * (x + 1.0), 0.5 * w


def _discretised(s: float, beta: int, m: int) -> tuple[np.ndarray, np.ndarray]:
  """Nystrom matrices ``A = sqrt(w) K sqrt(w)`` and ``dA/ds`` (m, m) for the TW``beta`` kernel on (s, inf)."""
  t, w = _gauss_legendre_unit(m)
  if beta == 2:
    upper = max(s, 0.0) + _TRUNCATION
  else:
    # K1 depends on x + y only: truncate where (s + upper) / 2 >= L, so that K1(s, upper) is negligible too.
    upper = max(s + _TRUNCATION, 2.0 * _TRUNCATION - s)
  length = upper - s
  x = s + length * t
  sw = np.sqrt(length * w)
  if beta == 2:
    ai, aip, _, _ = special.airy(x)
    dx = x[:, None] - x[None, :]
    off = np.eye(m, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
      k = (ai[:, None] * aip[None, :] - aip[:, None] * ai[None, :]) / np.where(off, 1.0, dx)
    k[off] = aip**2 - x * ai**2
    dk = -ai[:, None] * ai[None, :]
  else:
    ai, aip, _, _ = special.airy(0.5 * (x[:, None] + x[None, :]))
    k, dk = 0.5 * ai, 0.5 * aip
  scale = sw[:, None] * sw[None, :]
  return k * scale, dk * scale


def _cdf_and_pdf_scalar(s: float, beta: int, m: int) -> tuple[float, float]:
  a, da = _discretised(float(s), beta, m)
  i_minus_a = np.eye(m) - a
  f = float(np.linalg.det(i_minus_a))
  # d/ds det(I - A) = -det(I - A) tr((I - A)^-1 dA/ds).
  dlog = -float(np.trace(np.linalg.solve(i_minus_a, da)))
  return f, f * dlog


def tw_cdf(s, beta: int = 1, nodes: int = _NODES) -> np.ndarray:
  """Tracy-Widom distribution function ``F_beta(s)`` (beta in {1, 2}), vectorised over ``s``, float64.

  Accurate to about 1e-15 absolute for ``s`` in [-10, 12] (Bornemann's quadrature with ``nodes`` points); the
  relative accuracy degrades only in the far left tail where ``F`` is below ~1e-10.
  """
  beta = _check_beta(beta)
  s = np.asarray(s, dtype=np.float64)
  out = np.array([_cdf_and_pdf_scalar(v, beta, nodes)[0] for v in s.ravel()]).reshape(s.shape)
  return np.clip(out, 0.0, 1.0)


def tw_pdf(s, beta: int = 1, nodes: int = _NODES) -> np.ndarray:
  """Tracy-Widom density ``F_beta'(s)``, the exact derivative of the discretised Fredholm determinant."""
  beta = _check_beta(beta)
  s = np.asarray(s, dtype=np.float64)
  return np.array([_cdf_and_pdf_scalar(v, beta, nodes)[1] for v in s.ravel()]).reshape(s.shape)


@functools.lru_cache(maxsize=256)
def _quantile_cached(p: float, beta: int) -> float:
  return float(optimize.brentq(lambda x: _cdf_and_pdf_scalar(x, beta, _NODES)[0] - p, -12.0, 14.0, xtol=1e-14,
                               rtol=4 * np.finfo(float).eps, maxiter=200))


def tw_quantile(p, beta: int = 1) -> np.ndarray | float:
  """Quantile ``F_beta^-1(p)`` for ``p`` in (1e-12, 1 - 1e-12), by Brent's method on ``tw_cdf``; cached per value."""
  beta = _check_beta(beta)
  arr = np.asarray(p, dtype=np.float64)
  if np.any(~np.isfinite(arr)) or np.any(arr <= 1e-12) or np.any(arr >= 1.0 - 1e-12):
    raise ValueError(f"p: expected probabilities strictly inside (1e-12, 1 - 1e-12), got {p!r}")
  out = np.array([_quantile_cached(float(v), beta) for v in arr.ravel()]).reshape(arr.shape)
  return float(out) if out.ndim == 0 else out


def johnstone_centring_scaling(n: int, p: int) -> tuple[float, float]:
  """Johnstone (2001) centring ``mu`` and scaling ``s`` with Ma's (2012) ``n' = n - 1/2``, ``p' = p - 1/2``.

  For ``Z`` (n x p) with iid N(0, 1) entries, ``(l_max(Z^T Z) - mu) / s`` tends to TW1. Unnormalised convention.
  """
  if int(n) != n or int(p) != p or n < 2 or p < 2:
    raise ValueError(f"n, p: expected integer dimensions >= 2, got n={n!r}, p={p!r}")
  sn, sp = np.sqrt(n - 0.5), np.sqrt(p - 0.5)
  mu = (sn + sp) ** 2
  s = (sn + sp) * (1.0 / sn + 1.0 / sp) ** (1.0 / 3.0)
  return float(mu), float(s)


def _check_level(level: float) -> float:
  level = float(level)
  if not 0.0 < level < 1.0:
    raise ValueError(f"level: expected a false-alarm probability in (0, 1), got {level}")
  return level


def median_sigma2_relative_sd(shape) -> float:
  """Relative standard deviation of the median estimate of ``sigma^2`` (``fit_mp_sigma2``) on pure noise.

  The median eigenvalue sits in the bulk, where an eigenvalue of a beta = 1 ensemble fluctuates with variance
  ``log M / (pi^2 M^2 rho(m)^2)`` (Gustavsson 2005, Ann. IHP 41:151 for GUE, doubled for beta = 1 by O'Rourke 2010,
  J. Stat. Phys. 138:1045), ``rho`` the unit MP density and ``m`` its median. Dividing by ``m`` gives the relative
  error of ``sigma2_hat = lambda_med / m``.
  """
  n, p = max(int(shape[0]), int(shape[1])), min(int(shape[0]), int(shape[1]))
  q = p / n
  m = float(mp.mp_quantile(0.5, q))
  rho = float(mp.mp_pdf(m, q))
  return float(np.sqrt(np.log(p) / (np.pi**2 * p**2 * rho**2)) / m)


# F1 as a Chebyshev series on [-10, 14]: 80 points, each a 32-node Fredholm determinant (2e-13 from the 80-node
# value), interpolation error below 1e-12 on the interval; outside it F1 < 1e-13 (left) or 1 - F1 < 1e-12 (right).
_F1_INTERVAL = (-10.0, 14.0)
_F1_POINTS = 80
_F1_QUADRATURE = 32


@functools.lru_cache(maxsize=1)
def _f1_chebyshev() -> np.ndarray:
  """Chebyshev coefficients of ``F1`` on ``_F1_INTERVAL`` (computed once per process, about 80 x 32^2 Airy calls)."""
  a, b = _F1_INTERVAL
  u = np.cos(np.pi * (np.arange(_F1_POINTS) + 0.5) / _F1_POINTS)
  s = 0.5 * (a + b) + 0.5 * (b - a) * u
  t, w = _gauss_legendre_unit(_F1_QUADRATURE)
  length = np.maximum(s + _TRUNCATION, 2.0 * _TRUNCATION - s) - s  # as in _discretised, beta = 1
  x = s[:, None] + length[:, None] * t[None, :]
  sw = np.sqrt(length[:, None] * w[None, :])
  ai = special.airy(0.5 * (x[:, :, None] + x[:, None, :]))[0]
  a_mat = 0.5 * ai * sw[:, :, None] * sw[:, None, :]
  f = np.linalg.det(np.eye(_F1_QUADRATURE)[None] - a_mat)
  return np.polynomial.chebyshev.chebfit(u, f, _F1_POINTS - 1)


def _f1_fast(s: np.ndarray) -> np.ndarray:
  """``F1(s)`` from the Chebyshev series (absolute error below 1e-12), 0 and 1 beyond the interval."""
  a, b = _F1_INTERVAL
  u = (np.asarray(s, np.float64) - 0.5 * (a + b)) / (0.5 * (b - a))
  inside = np.polynomial.chebyshev.chebval(np.clip(u, -1.0, 1.0), _f1_chebyshev())
  return np.where(u < -1.0, 0.0, np.where(u > 1.0, 1.0, np.clip(inside, 0.0, 1.0)))


@functools.lru_cache(maxsize=1024)
def _smoothed_quantile_cached(p: float, tau: float) -> float:
  """Quantile of ``TW1 + tau Z``, ``Z ~ N(0, 1)`` independent, by 32-point Gauss-Hermite quadrature over ``Z`` of
  ``F1`` (its Chebyshev series, so each shape costs microseconds once the series exists)."""
  if tau == 0.0:
    return _quantile_cached(p, 1)
  z, wz = np.polynomial.hermite_e.hermegauss(32)
  wz = wz / wz.sum()

  def cdf(t):
    return float(np.sum(wz * _f1_fast(t - tau * z))) - p

  t0 = _quantile_cached(p, 1)
  return float(optimize.brentq(cdf, t0 - 1.0 - 2 * tau, t0 + 1.0 + 8 * tau, xtol=1e-10, maxiter=200))


def wishart_tw_threshold(shape, sigma2: float = 1.0, level: float = 0.01, sigma2_rel_sd: float = 0.0) -> float:
  """Eigenvalue threshold in OUR convention above which the largest eigenvalue is a spike at false-alarm ``level``.

  ``sigma^2 (mu + s * t) / N`` with ``mu, s`` from ``johnstone_centring_scaling(N, M)``, ``(N, M)`` = (larger,
  smaller) of ``shape`` and ``t = F1^-1(1 - level)``. Under pure noise ``P(l_max(X) > threshold) ~= level``.

  When ``sigma2`` is itself an estimate with relative standard deviation ``sigma2_rel_sd`` (``e``), the scaled
  statistic is ``(N l_max / sigma2_hat - mu) / s ~= TW1 - (mu / s) e``, so ``t`` becomes the ``1 - level`` quantile
  of ``TW1 + tau Z`` with ``tau = (mu / s) sigma2_rel_sd`` (``e`` treated as Gaussian and independent of
  ``l_max``). Without it an estimated ``sigma^2`` inflates the false-alarm rate (by ~2.7x at M = 30, level 0.01).
  """
  if len(shape) != 2:
    raise ValueError(f"shape: expected a 2-D shape, got {tuple(shape)}")
  level = _check_level(level)
  sigma2 = float(sigma2)
  if not (np.isfinite(sigma2) and sigma2 > 0):
    raise ValueError(f"sigma2: expected a finite positive variance, got {sigma2}")
  if not (np.isfinite(sigma2_rel_sd) and sigma2_rel_sd >= 0):
    raise ValueError(f"sigma2_rel_sd: expected a finite non-negative number, got {sigma2_rel_sd}")
  n, p = max(int(shape[0]), int(shape[1])), min(int(shape[0]), int(shape[1]))
  mu, s = johnstone_centring_scaling(n, p)
  tau = round(mu / s * float(sigma2_rel_sd), 10)
  return sigma2 * (mu + s * _smoothed_quantile_cached(1.0 - level, tau)) / n


def count_outliers(eigenvalues, shape, sigma2: float | None = None, level: float = 0.01) -> int:
  """Number of ESD eigenvalues (M,) above the Tracy-Widom threshold at false-alarm ``level``.

  A one-matrix shortcut to ``spectral.outliers.mp_outliers``: ``sigma2=None`` uses its median estimator (threshold
  widened for the estimate's error), a given ``sigma2`` its ``"stated"`` one.
  """
  from spectral import outliers  # outliers builds on this module's thresholds

  ev = np.asarray(eigenvalues, dtype=np.float64)
  if ev.ndim != 1:
    raise ValueError(f"eigenvalues: expected a 1-D array, got shape {ev.shape}")
  estimator = "median" if sigma2 is None else "stated"
  res = outliers.mp_outliers(ev[None], shape, level=level, sigma2=sigma2, estimator=estimator)
  if not res.valid[0]:
    raise ValueError(f"eigenvalues: the {estimator} variance {res.sigma2[0]} is not positive; no MP bulk to test")
  return int(res.n_outliers[0])
