"""Per-matrix spectral metrics from ESD eigenvalues and the matrix shape (batched over matrices of one shape).

Convention (``spectral.esd``): ``W`` is ``a x b``, ``N = max(a, b)``, ``M = min(a, b)``, ``q = M / N``; the ESD is the
``M`` eigenvalues ``l_1 <= ... <= l_M`` of ``X = W_s W_s^T / N``. WeightWatcher (WW) uses the unnormalised
``W^T W``, whose eigenvalues are ``N l_i``; see ``spectral/WEIGHTWATCHER.md`` for the mapping table.

Round-off floor: the eigenvalues of the Gram matrix are computed with an absolute error of about
``M eps lambda_max`` (``eps`` the machine epsilon of the eigenvalues' dtype: 1.19e-7 for float32), so eigenvalues
``<= rank_floor = M eps lambda_max`` are numerically zero. They never enter the power-law fit, count as zero in the
MP fit, and ``numerical_rank`` is the number above the floor (all ones in a 30 x 60 matrix: rank 1, and no
power-law fit, rather than an alpha fitted on round-off).

Metrics (keys of the returned dict):
- ``alpha, alpha_se, alpha_ks, xmin, n_tail``: Clauset-Shalizi-Newman power-law fit of the ESD tail above the
  round-off floor (``spectral.power_law``, tails of at least ``min_tail = 10``; ``alpha_ks`` is the KS distance of
  that fit). Scale-free: same as WW's ``alpha``; ``xmin`` maps as ``N xmin``. ``alpha_status``: ``"ok"`` or why the
  fit failed (then those five are NaN, ``n_tail`` 0): never a number fitted on too few valid eigenvalues.
- ``numerical_rank``: eigenvalues above the round-off floor (``M`` for a full-rank matrix).
- ``lambda_max``: largest eigenvalue ``l_M = ||W||_2^2 / N``.
- ``alpha_weighted = alpha log10(lambda_max)`` (Martin & Mahoney 2021). WW: ``alpha log10(N l_M)``, i.e.
  ours ``+ alpha log10 N``.
- ``log10_spectral_norm = log10(lambda_max)`` (``log10 ||W||_2^2 - log10 N``). WW ``log_spectral_norm`` = ours ``+
  log10 N``.
- ``log10_frobenius_norm = log10(sum l_i)`` (``log10 ||W||_F^2 - log10 N``). WW ``log_norm`` = ours ``+ log10 N``.
- ``stable_rank = sum l_i / l_M = ||W||_F^2 / ||W||_2^2`` (scale-free; WW ``stable_rank``).
- ``entropy_rank = exp(-sum p_i ln p_i)``, ``p_i = s_i / sum s_j`` over singular values ``s_i = sqrt(l_i)`` (Roy &
  Vetterli 2007, "The effective rank"); between 1 and ``M``. WW's ``entropy`` is a different normalised quantity.
- ``mp_sigma2`` and ``mp_sigma2_estimator``: the MP variance and the name of its estimator, here always
  ``"median"``: ``median(l) / median(MP_q, sigma^2 = 1)`` (Gavish & Donoho 2014). (The tail-only mode of
  ``spectral.analyze`` writes ``"trace"``: ``||W||_F^2 / (N M)``.) WW ``sigma_mp`` (from ``mp_fit=True``) fits sigma
  differently (it maps as ``sqrt(N mp_sigma2)`` only approximately).
- ``mp_edge = mp_sigma2 (1 + sqrt(q))^2``, the MP bulk edge (WW ``bulk_max`` ~ ``N mp_edge``).
- ``tw_threshold`` and ``n_outliers``: eigenvalues above the Johnstone-Ma Tracy-Widom threshold at false-alarm
  ``level`` with the estimated ``mp_sigma2``, widened for the estimate's error. WW ``num_spikes`` counts eigenvalues
  above ``bulk_max`` with no stated level.
- ``mp_ks``: KS distance between the bulk (eigenvalues not counted as outliers) and MP(q, mp_sigma2); pure noise
  gives a few units over ``M`` (docs/THEORY.md#tolerances). No WW counterpart.
- ``spacing_ratio, spacing_ratio_se``: mean ratio of consecutive spacings of the central half of the spectrum (GOE
  value 0.5307; ``spectral.wigner``); NaN when that half has fewer than 3 levels (``M < 6``) or reaches below the
  round-off floor. No WW counterpart.

``mp_sigma2`` to ``mp_ks`` are ``spectral.outliers.mp_outliers``, the one outlier pipeline of the lab.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from spectral import host_metrics
from spectral import outliers
from spectral import power_law
from spectral import wigner

METRIC_NAMES = (
    "alpha", "alpha_se", "alpha_ks", "xmin", "n_tail", "lambda_max", "alpha_weighted", "log10_spectral_norm",
    "log10_frobenius_norm", "stable_rank", "entropy_rank", "mp_sigma2", "mp_sigma2_estimator", "mp_edge",
    "tw_threshold", "n_outliers", "mp_ks", "spacing_ratio", "spacing_ratio_se", "alpha_status", "numerical_rank",
)


def rank_floor(lambda_max, m: int, dtype) -> np.ndarray:
  """Round-off floor ``M eps(dtype) lambda_max`` of Gram-matrix eigenvalues (module docstring)."""
  return m * float(np.finfo(dtype).eps) * np.asarray(lambda_max, np.float64)


@functools.partial(jax.jit, static_argnames=("ks",))
def _jax_metrics(ev, floor, ks: str = "powerlaw"):
  """Scale-level metrics of a batch of sorted ESDs ev (B, M) above round-off floors (B,) -> dict of (B,) arrays."""
  ev = jnp.clip(ev, 0.0, None)
  resolved = ev > floor[:, None]
  fit = power_law.fit_power_law(ev, resolved, ks=ks)
  lam_max = ev[:, -1]
  total = jnp.sum(ev, axis=-1)
  s = jnp.sqrt(ev)
  p = s / jnp.sum(s, axis=-1, keepdims=True)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)
  lo, hi = wigner.central_window(ev.shape[-1])
  if hi - lo >= 3:
    ratio, ratio_se = wigner.spacing_ratio(ev)
    ratio, ratio_se = (jnp.where(resolved[:, lo], r, jnp.nan) for r in (ratio, ratio_se))
  else:
    ratio = ratio_se = jnp.full(ev.shape[:1], jnp.nan, ev.dtype)
  return {
      "alpha": fit.alpha, "alpha_se": fit.alpha_se, "alpha_ks": fit.ks, "xmin": fit.xmin, "n_tail": fit.n_tail,
      "fit_status": fit.status, "n_valid": fit.n_valid, "numerical_rank": jnp.sum(resolved, axis=-1),
      "lambda_max": lam_max, "alpha_weighted": fit.alpha * jnp.log10(lam_max),
      "log10_spectral_norm": jnp.log10(lam_max), "log10_frobenius_norm": jnp.log10(total),
      "stable_rank": total / lam_max, "entropy_rank": jnp.exp(entropy),
      "spacing_ratio": ratio, "spacing_ratio_se": ratio_se,
  }


def batch_metrics(eigenvalues, shape, *, level: float = 0.01, ks: str = "powerlaw",
                  backend: str = "jax") -> list[dict]:
  """Metrics for a batch of ESDs of matrices of one shape.

  Args:
    eigenvalues: (B, M) eigenvalues of ``X = W_s W_s^T / N`` (any order; float32 or float64).
    shape: the common shape ``(a, b)`` of the matrices (``M = min(a, b)``).
    level: false-alarm probability of the Tracy-Widom outlier test.
    ks: KS convention of the power-law fit (``"powerlaw"``, ``"clauset"`` or ``"sup"``; ``spectral.power_law``).
    backend: ``"jax"`` (one compiled computation per M, float32) or ``"numpy"`` (``spectral.host_metrics``, float64,
      nothing compiled: the faster choice for one-off shapes on a CPU).

  Returns:
    B dicts with the keys ``METRIC_NAMES`` (Python floats / ints; ``mp_sigma2_estimator`` a string;
    ``n_outliers`` None where the median estimate is not positive, i.e. more than half the spectrum is zero).
    ``rank_floor`` uses the machine epsilon of ``eigenvalues``' dtype: pass them in the dtype they were computed in.
  """
  ev = np.sort(np.asarray(eigenvalues), axis=-1)
  if ev.ndim != 2:
    raise ValueError(f"eigenvalues: expected a (B, M) batch, got shape {ev.shape}")
  n, m = max(int(shape[0]), int(shape[1])), min(int(shape[0]), int(shape[1]))
  if ev.shape[1] != m:
    raise ValueError(f"eigenvalues: expected M = {m} per matrix for shape {tuple(shape)}, got {ev.shape[1]}")
  floor = rank_floor(np.clip(ev[:, -1], 0.0, None), m, ev.dtype if np.issubdtype(ev.dtype, np.floating)
                     else np.float32)
  if backend == "numpy":
    out = host_metrics.scale_metrics(ev, floor, ks=ks)
    ev_mp = ev
  elif backend == "jax":
    ev = jnp.asarray(ev)
    out = jax.device_get(_jax_metrics(ev, jnp.asarray(floor, ev.dtype), ks=ks))
    ev_mp = np.asarray(ev)
  else:
    raise ValueError(f"backend: expected 'jax' or 'numpy', got {backend!r}")
  # The outlier pipeline sees the eigenvalues in the dtype of the metrics above (the jax path: float32 unless x64 is
  # on), those below the round-off floor as zeros.
  res = outliers.mp_outliers(np.where(ev_mp > floor[:, None].astype(ev_mp.dtype), ev_mp, 0), shape, level=level)
  ints = ("n_tail", "fit_status", "n_valid", "numerical_rank")
  rows = []
  for i in range(ev.shape[0]):
    row = {k: float(out[k][i]) for k in out if k not in ints}
    row.update(n_tail=int(out["n_tail"][i]), numerical_rank=int(out["numerical_rank"][i]),
               alpha_status=power_law.fit_status_message(out["fit_status"][i], out["n_valid"][i]),
               mp_sigma2=float(res.sigma2[i]), mp_sigma2_estimator=res.estimator,
               mp_edge=float(res.edge[i]), tw_threshold=float(res.threshold[i]),
               n_outliers=int(res.n_outliers[i]) if res.valid[i] else None, mp_ks=float(res.bulk_ks[i]))
    rows.append({k: row[k] for k in METRIC_NAMES})
  return rows


def matrix_metrics(eigenvalues, shape, *, level: float = 0.01, ks: str = "powerlaw") -> dict:
  """Metrics of one matrix from its ESD eigenvalues (M,) and its shape; see the module docstring for definitions."""
  ev = np.asarray(eigenvalues)
  if ev.ndim != 1:
    raise ValueError(f"eigenvalues: expected a 1-D array, got shape {ev.shape}")
  return batch_metrics(ev[None], shape, level=level, ks=ks)[0]


def effective_ranks(singular_values) -> tuple[np.ndarray, np.ndarray]:
  """Stable rank and entropy (effective) rank from singular values (..., M), numpy float64, nothing fitted.

  ``stable_rank = sum s_i^2 / max s_i^2`` and ``entropy_rank = exp(-sum p_i ln p_i)``, ``p_i = s_i / sum s_j`` (Roy &
  Vetterli 2007, "The effective rank: a measure of effective dimensionality", EUSIPCO): the same definitions as
  ``batch_metrics`` (whose ESD eigenvalues are ``s_i^2 / N``; both ranks are scale-free), without its power-law and
  MP fits. A zero matrix gives NaN for both.
  """
  s = np.abs(np.asarray(singular_values, np.float64))
  if s.ndim < 1 or s.shape[-1] < 1:
    raise ValueError(f"singular_values: expected an array (..., M) with M >= 1, got shape {s.shape}")
  with np.errstate(invalid="ignore", divide="ignore"):
    stable = np.sum(s**2, axis=-1) / np.max(s, axis=-1) ** 2
    p = s / np.sum(s, axis=-1, keepdims=True)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
  return stable, np.where(np.isfinite(stable), np.exp(entropy), np.nan)
