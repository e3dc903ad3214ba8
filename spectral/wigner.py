"""Wigner's semicircle, level-spacing ratios and eigenvector localisation (docs/THEORY.md#wigner_goe).

- GOE: ``H = (A + A^T) / sqrt(2 N)`` with ``A`` (N x N) iid N(0, 1); its ESD tends to the semicircle
  ``rho(x) = sqrt(4 - x^2) / (2 pi)`` on ``[-2, 2]`` (Wigner 1958). ``radius`` rescales it: ``R = 2 sigma``.
- Spacing ratio (Oganesyan & Huse 2007; Atas, Bogomolny, Giraud & Roux 2013, PRL 110:084101):
  ``r_i = min(s_i, s_(i-1)) / max(s_i, s_(i-1))`` for consecutive spacings ``s_i = l_(i+1) - l_i`` of the sorted
  spectrum; it needs no unfolding. Large-N means: GOE 0.5307, GUE 0.5996, Poisson ``2 ln 2 - 1 = 0.3863``. We use the
  central half of the spectrum; the standard error is about ``0.25 / sqrt(number of ratios)``. Eigenvalues of
  ``W^T W`` have GOE-type local statistics, so the bulk of a weight ESD should sit near 0.53.
- Inverse participation ratio ``IPR(u) = sum u_i^4 / (sum u_i^2)^2``: for delocalised real unit vectors
  (``N u_i^2 ~ chi^2_1``, Porter-Thomas) ``E IPR = 3 / (N + 2)``; a vector localised on ``k`` sites has ``~1/k``.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

GOE_MEAN_SPACING_RATIO = 0.5307
GUE_MEAN_SPACING_RATIO = 0.5996
POISSON_MEAN_SPACING_RATIO = 2.0 * np.log(2.0) - 1.0


def _check_radius(radius: float) -> float:
  radius = float(radius)
  if not (np.isfinite(radius) and radius > 0):
    raise ValueError(f"radius: expected a finite positive radius, got {radius}")
  return radius


def semicircle_pdf(x, radius: float = 2.0) -> np.ndarray:
  """Semicircle density ``2 sqrt(R^2 - x^2) / (pi R^2)`` on ``[-R, R]`` (``R = 2``: GOE normalisation above)."""
  r = _check_radius(radius)
  x = np.asarray(x, dtype=np.float64)
  return 2.0 * np.sqrt(np.clip(r * r - x * x, 0.0, None)) / (np.pi * r * r)


def semicircle_cdf(x, radius: float = 2.0) -> np.ndarray:
  """Semicircle distribution function ``1/2 + (t sqrt(1 - t^2) + asin t) / pi`` with ``t = clip(x / R, -1, 1)``."""
  r = _check_radius(radius)
  t = np.clip(np.asarray(x, dtype=np.float64) / r, -1.0, 1.0)
  return 0.5 + (t * np.sqrt(1.0 - t * t) + np.arcsin(t)) / np.pi


def goe(key_or_seed, n: int, dtype=jnp.float32) -> jax.Array:
  """Sample an ``n x n`` GOE matrix ``(A + A^T) / sqrt(2 n)``; spectrum fills ``[-2, 2]``."""
  if int(n) != n or n < 2:
    raise ValueError(f"n: expected an integer >= 2, got {n!r}")
  key = jax.random.key(int(key_or_seed)) if isinstance(key_or_seed, (int, np.integer)) else key_or_seed
  a = jax.random.normal(key, (n, n), dtype=dtype)
  return (a + a.T) / jnp.sqrt(jnp.asarray(2.0 * n, dtype))


def central_window(m: int, central_fraction: float = 0.5) -> tuple[int, int]:
  """``(lo, hi)``: the sorted levels ``lo <= i < hi`` that ``spacing_ratios`` uses out of ``m``."""
  if not 0.0 < central_fraction <= 1.0:
    raise ValueError(f"central_fraction: expected a fraction in (0, 1], got {central_fraction}")
  lo = int(np.floor(m * (1.0 - central_fraction) / 2.0))
  return lo, m - lo


def spacing_ratios(eigenvalues, central_fraction: float = 0.5, *, xp=jnp):
  """Ratios ``r_i`` of consecutive spacings of the central ``central_fraction`` of the sorted spectrum (..., M).

  Batched over leading axes and jit-friendly (the slice is static in ``M``). Returns (..., K) with ``K`` the number
  of ratios; a pair of zero spacings (a degenerate triple) gives NaN, which ``spacing_ratio`` ignores. ``xp=numpy``
  computes on the host in the input's own precision (float64 stays float64), with no device dispatch per call: for
  many small spectra of varying sizes, where eager ``jax.numpy`` compiles every operation for every new shape.
  """
  ev = xp.sort(xp.asarray(eigenvalues), axis=-1)
  m = ev.shape[-1]
  lo, hi = central_window(m, central_fraction)
  if hi - lo < 3:
    raise ValueError(f"eigenvalues: need at least 3 levels in the central part, got {hi - lo} of {m}")
  s = xp.diff(ev[..., lo:hi], axis=-1)
  a, b = s[..., 1:], s[..., :-1]
  big = xp.maximum(a, b)
  return xp.where(big > 0, xp.minimum(a, b) / xp.where(big > 0, big, 1.0), xp.nan)


def spacing_ratio(eigenvalues, central_fraction: float = 0.5, *, xp=jnp):
  """Mean spacing ratio of the central part of the spectrum and its standard error ``std(r) / sqrt(K)``.

  Batched over leading axes: (..., M) -> ((...), (...)). Compare with ``GOE_MEAN_SPACING_RATIO`` etc. ``xp`` as in
  ``spacing_ratios``; a row whose every ratio is NaN gives NaN (without numpy's empty-slice warning).
  """
  r = spacing_ratios(eigenvalues, central_fraction, xp=xp)
  k = xp.sum(~xp.isnan(r), axis=-1)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    mean = xp.nanmean(r, axis=-1)
    return mean, xp.nanstd(r, axis=-1) / xp.sqrt(k)


def inverse_participation_ratio(vectors, axis: int = 0) -> jax.Array:
  """IPR ``sum u^4 / (sum u^2)^2`` of each vector along ``axis`` (columns of an eigenvector matrix by default)."""
  v = jnp.asarray(vectors)
  v2 = v * jnp.conj(v) if jnp.iscomplexobj(v) else v * v
  v2 = jnp.real(v2)
  return jnp.sum(v2 * v2, axis=axis) / jnp.sum(v2, axis=axis) ** 2


def delocalised_ipr(n: int) -> float:
  """Expected IPR ``3 / (n + 2)`` of a uniformly random real unit vector in R^n (Porter-Thomas)."""
  return 3.0 / (n + 2.0)
