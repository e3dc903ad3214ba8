"""Power-law fits of ESD tails (Clauset, Shalizi & Newman 2009), vectorised over xmin candidates and matrices.

Continuous power law on ``[xmin, inf)``: ``p(x) = (alpha - 1) / xmin (x / xmin)^-alpha``,
``F(x) = 1 - (x / xmin)^(1 - alpha)``. For the ``n`` data points ``x_i >= xmin`` the MLE and its standard error are
(Clauset, Shalizi & Newman 2009, SIAM Review 51:661, arXiv:0706.1062, eqs. 3.1 and 3.2):

    alpha = 1 + n / sum_i ln(x_i / xmin),        se(alpha) = (alpha - 1) / sqrt(n).

``xmin`` is the candidate data value minimising the Kolmogorov-Smirnov distance between the tail's empirical CDF
and the fitted ``F`` (their eq. 3.9). Every data value except the largest is a candidate (as in the ``powerlaw``
package), optionally restricted by ``min_tail``.

KS conventions (``ks=``):
- ``"sup"`` (default): the exact supremum ``max_i max(i / n - F(x_(i)), F(x_(i)) - (i - 1) / n)`` over both sides of
  each jump of the empirical CDF (i = 1..n over the sorted tail);
- ``"powerlaw"``: ``max_i |F(x_(i)) - (i - 1) / n|``, the distance the ``powerlaw`` package (2.0) computes (its
  empirical CDF is the fraction of the tail strictly below each point, compared at the points only); use it to
  reproduce its (and WeightWatcher's) choice of ``xmin``. It never exceeds the supremum.

Vectorisation: for sorted data ``x_1 <= ... <= x_M`` and candidate index ``k``, suffix sums of ``ln x`` give all
``alpha_k`` at once; the KS distances form an (M candidates x M points) masked array, reduced over points (memory
``O(B M^2)`` for a batch of ``B``). Everything is ``vmap``-ed over leading axes and jit-compiled. Variable tail lengths across a
batch are handled by a boolean ``mask`` of valid entries (invalid or non-positive entries are ignored).

Also an exponentially truncated power law ``p(x) ∝ x^-alpha exp(-lambda x)`` on ``[xmin, inf)`` (the
"truncated_power_law" of CSN 2009 Table 6), fitted by maximum likelihood at a given ``xmin`` (numpy/scipy).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, optimize


class PowerLawFit(NamedTuple):
  """Result of ``fit_power_law``; every field has the batch shape of the input (leading axes)."""

  alpha: jax.Array  # MLE exponent at the chosen xmin
  alpha_se: jax.Array  # (alpha - 1) / sqrt(n_tail)
  xmin: jax.Array
  n_tail: jax.Array  # number of data points >= xmin (int32)
  ks: jax.Array  # KS distance of the tail to the fitted law (convention as requested)
  xmax: jax.Array  # largest valid data value


def _fit_one(x, mask, min_tail: int, ks: str):
  """One row: x, mask (M,) -> PowerLawFit of scalars."""
  dtype = x.dtype
  valid = mask & (x > 0) & jnp.isfinite(x)
  # Invalid entries become 0 and sort first; the valid ones keep their order at the end.
  xs = jnp.sort(jnp.where(valid, x, 0.0), axis=-1)
  m = x.shape[-1]
  n_invalid = m - jnp.sum(valid)
  idx = jnp.arange(m)
  is_valid = idx >= n_invalid  # (..., M) in sorted order
  logx = jnp.where(is_valid, jnp.log(jnp.where(is_valid, xs, 1.0)), 0.0)
  centre = jnp.sum(logx) / jnp.maximum(m - n_invalid, 1)
  logc = jnp.where(is_valid, logx - centre, 0.0)
  suffix = jnp.flip(jnp.cumsum(jnp.flip(logc, -1), axis=-1), -1)  # sum_{j >= k} (ln x_j - c)
  n_k = (m - idx).astype(dtype)  # tail sizes for candidate k (valid candidates only)
  denom = suffix - n_k * logc  # sum_{j >= k} ln(x_j / x_k)
  distinct = jnp.concatenate([jnp.ones_like(xs[..., :1], bool), xs[..., 1:] > xs[..., :-1]], axis=-1)
  candidate = is_valid & distinct & (xs < xs[..., -1:]) & (m - idx >= min_tail) & (denom > 0)
  alpha = 1.0 + n_k / jnp.where(candidate, denom, 1.0)

  # KS for every (candidate k, point j >= k): F_kj = 1 - exp((1 - alpha_k)(ln x_j - ln x_k)).
  dlog = logc[..., None, :] - logc[..., :, None]  # (..., k, j)
  in_tail = idx[None, :] >= idx[:, None]
  f = -jnp.expm1((1.0 - alpha)[..., :, None] * jnp.where(in_tail, dlog, 0.0))
  rank = (idx[None, :] - idx[:, None]).astype(dtype)  # i - 1 for the j-th point of the tail of k
  lower = f - rank / n_k[:, None]
  if ks == "sup":
    dev = jnp.maximum((rank + 1.0) / n_k[:, None] - f, lower)
  else:
    dev = jnp.abs(lower)
  d = jnp.max(jnp.where(in_tail, dev, -jnp.inf), axis=-1)  # (..., k)
  d = jnp.where(candidate, d, jnp.inf)
  best = jnp.argmin(d, axis=-1)
  take = lambda a: jnp.take_along_axis(a, best[..., None], axis=-1)[..., 0]
  any_candidate = jnp.any(candidate, axis=-1)
  nan = jnp.asarray(jnp.nan, dtype)
  a_best = jnp.where(any_candidate, take(alpha), nan)
  n_best = jnp.where(any_candidate, m - best, 0).astype(jnp.int32)
  return PowerLawFit(
      alpha=a_best,
      alpha_se=(a_best - 1.0) / jnp.sqrt(n_best.astype(dtype)),
      xmin=jnp.where(any_candidate, take(xs), nan),
      n_tail=n_best,
      ks=jnp.where(any_candidate, take(d), nan),
      xmax=xs[..., -1],
  )


@functools.partial(jax.jit, static_argnames=("min_tail", "ks"))
def _fit(x, mask, min_tail: int, ks: str):
  batch = x.shape[:-1]
  flat = jax.vmap(functools.partial(_fit_one, min_tail=min_tail, ks=ks))(
      x.reshape((-1, x.shape[-1])), mask.reshape((-1, x.shape[-1])))
  return jax.tree.map(lambda a: a.reshape(batch), flat)


def fit_power_law(x, mask=None, *, min_tail: int = 2, ks: str = "sup") -> PowerLawFit:
  """Clauset-Shalizi-Newman power-law fit of the tail of each row of ``x`` (..., M), vectorised.

  Args:
    x: (..., M) positive data (eigenvalues), any order; batched over leading axes.
    mask: optional (..., M) boolean, True for entries to use (pads of variable-length data are False). Non-positive
      and non-finite entries are always ignored.
    min_tail: smallest tail size a candidate ``xmin`` may leave (>= 2).
    ks: ``"sup"`` (exact KS supremum, default) or ``"powerlaw"`` (the ``powerlaw`` package's distance).

  Returns:
    ``PowerLawFit`` with batch-shaped fields; NaN alpha/xmin/ks and ``n_tail = 0`` where no candidate exists
    (fewer than ``min_tail`` distinct valid values).
  """
  if ks not in ("sup", "powerlaw"):
    raise ValueError(f"ks: expected 'sup' or 'powerlaw', got {ks!r}")
  if int(min_tail) != min_tail or min_tail < 2:
    raise ValueError(f"min_tail: expected an integer >= 2, got {min_tail!r}")
  x = jnp.asarray(x)
  if x.ndim < 1 or x.shape[-1] < 2:
    raise ValueError(f"x: expected data of shape (..., M) with M >= 2, got {x.shape}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  if x.dtype in (jnp.bfloat16, jnp.float16):
    x = x.astype(jnp.float32)
  if mask is None:
    mask = jnp.ones(x.shape, bool)
  else:
    mask = jnp.asarray(mask, bool)
    if mask.shape != x.shape:
      raise ValueError(f"mask: expected shape {x.shape}, got {mask.shape}")
  return _fit(x, mask, int(min_tail), ks)


def power_law_mle(x, xmin: float) -> tuple[float, float, int]:
  """Float64 reference: ``(alpha, se, n)`` of the continuous MLE for the data ``>= xmin`` (CSN eq. 3.1)."""
  x = np.asarray(x, dtype=np.float64)
  if not (np.isfinite(xmin) and xmin > 0):
    raise ValueError(f"xmin: expected a finite positive value, got {xmin}")
  tail = x[x >= xmin]
  n = tail.size
  if n < 2:
    raise ValueError(f"x: fewer than 2 data points >= xmin = {xmin}")
  alpha = 1.0 + n / np.sum(np.log(tail / xmin))
  return float(alpha), float((alpha - 1.0) / np.sqrt(n)), int(n)


# ---------------------------------------------------------------- exponentially truncated power law (numpy/scipy)


class TruncatedPowerLawFit(NamedTuple):
  alpha: float
  lam: float  # exponential cut-off rate lambda (1 / scale), >= 0
  xmin: float
  n_tail: int
  loglik: float  # total log-likelihood of the tail under the fit
  loglik_power_law: float  # the same for the pure power law (lambda = 0) MLE, for a likelihood-ratio comparison


def _tpl_log_normaliser(alpha: float, lam: float, xmin: float) -> float:
  """``ln Z``, ``Z = int_xmin^inf x^-alpha exp(-lam x) dx`` = ``xmin^(1-a) e^(-lam xmin) int_0^inf (1+t)^-a e^(-lam xmin t) dt``."""
  z = lam * xmin
  val, _ = integrate.quad(lambda t: np.exp(-alpha * np.log1p(t) - z * t), 0.0, np.inf, epsabs=0, epsrel=1e-9,
                          limit=200)
  return (1.0 - alpha) * np.log(xmin) - z + np.log(val)


def fit_truncated_power_law(x, xmin: float) -> TruncatedPowerLawFit:
  """MLE of ``p(x) = x^-alpha exp(-lambda x) / Z(alpha, lambda)`` on ``[xmin, inf)`` (CSN 2009, Table 6).

  We optimise over ``alpha`` in [1.001, 20] (so that the law stays normalisable as ``lambda -> 0``; a cut-off with
  ``alpha <= 1`` is not searched) and ``ln lambda`` by L-BFGS-B from three starts. float64, numpy; ``Z`` by
  adaptive quadrature.
  """
  x = np.asarray(x, dtype=np.float64)
  alpha0, _, n = power_law_mle(x, xmin)
  tail = x[x >= xmin]
  s_log, s_x = np.sum(np.log(tail)), np.sum(tail)

  def nll(params):
    alpha, log_lam = params
    lam = np.exp(log_lam)
    return alpha * s_log + lam * s_x + n * _tpl_log_normaliser(alpha, lam, xmin)

  ll_pl = -(alpha0 * s_log + n * ((1.0 - alpha0) * np.log(xmin) - np.log(alpha0 - 1.0)))
  scale = np.log(1.0 / np.mean(tail))
  best = None
  for start in (scale - 4.0, scale - 1.0, scale + 1.0):
    res = optimize.minimize(nll, x0=[min(max(alpha0, 1.01), 19.0), start], method="L-BFGS-B",
                            bounds=[(1.001, 20.0), (scale - 30.0, scale + 10.0)])
    if best is None or res.fun < best.fun:
      best = res
  alpha, log_lam = best.x
  return TruncatedPowerLawFit(float(alpha), float(np.exp(log_lam)), float(xmin), int(n), float(-best.fun),
                              float(ll_pl))
