"""Per-matrix spectral metrics from ESD eigenvalues and the matrix shape (batched over matrices of one shape).

Convention (``spectral.esd``): ``W`` is ``a x b``, ``N = max(a, b)``, ``M = min(a, b)``, ``q = M / N``; the ESD is the
``M`` eigenvalues ``l_1 <= ... <= l_M`` of ``X = W_s W_s^T / N``. WeightWatcher (WW) uses the unnormalised
``W^T W``, whose eigenvalues are ``N l_i``; see ``spectral/WEIGHTWATCHER.md`` for the mapping table.

Metrics (keys of the returned dict):
- ``alpha, alpha_se, alpha_ks, xmin, n_tail``: Clauset-Shalizi-Newman power-law fit of the ESD tail
  (``spectral.power_law``; ``alpha_ks`` is the KS distance of that fit). Scale-free: same as WW's ``alpha``;
  ``xmin`` maps as ``N xmin``.
- ``lambda_max``: largest eigenvalue ``l_M = ||W||_2^2 / N``.
- ``alpha_weighted = alpha log10(lambda_max)`` (Martin & Mahoney 2021). WW: ``alpha log10(N l_M)``, i.e.
  ours ``+ alpha log10 N``.
- ``log10_spectral_norm = log10(lambda_max)`` (``log10 ||W||_2^2 - log10 N``). WW ``log_spectral_norm`` = ours ``+
  log10 N``.
- ``log10_frobenius_norm = log10(sum l_i)`` (``log10 ||W||_F^2 - log10 N``). WW ``log_norm`` = ours ``+ log10 N``.
- ``stable_rank = sum l_i / l_M = ||W||_F^2 / ||W||_2^2`` (scale-free; WW ``stable_rank``).
- ``entropy_rank = exp(-sum p_i ln p_i)``, ``p_i = s_i / sum s_j`` over singular values ``s_i = sqrt(l_i)`` (Roy &
  Vetterli 2007, "The effective rank"); between 1 and ``M``. WW's ``entropy`` is a different normalised quantity.
- ``mp_sigma2``: ``median(l) / median(MP_q, sigma^2 = 1)`` (Gavish & Donoho 2014). WW ``sigma_mp`` (from
  ``mp_fit=True``) fits sigma differently (it maps as ``sqrt(N mp_sigma2)`` only approximately).
- ``mp_edge = mp_sigma2 (1 + sqrt(q))^2``, the MP bulk edge (WW ``bulk_max`` ~ ``N mp_edge``).
- ``tw_threshold`` and ``n_outliers``: eigenvalues above the Johnstone-Ma Tracy-Widom threshold at false-alarm
  ``level`` with the estimated ``mp_sigma2`` (``spectral.tracy_widom.count_outliers``). WW ``num_spikes`` counts
  eigenvalues above ``bulk_max`` with no stated level.
- ``mp_ks``: KS distance between the bulk (eigenvalues not counted as outliers) and MP(q, mp_sigma2); pure noise
  gives a few units over ``M`` (THEORY.md section 1). No WW counterpart.
- ``spacing_ratio, spacing_ratio_se``: mean ratio of consecutive spacings of the central half of the spectrum (GOE
  value 0.5307; ``spectral.wigner``). No WW counterpart.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from spectral import host_metrics
from spectral import marchenko_pastur as mp
from spectral import power_law
from spectral import tracy_widom as tw
from spectral import wigner

METRIC_NAMES = (
    "alpha", "alpha_se", "alpha_ks", "xmin", "n_tail", "lambda_max", "alpha_weighted", "log10_spectral_norm",
    "log10_frobenius_norm", "stable_rank", "entropy_rank", "mp_sigma2", "mp_edge", "tw_threshold", "n_outliers",
    "mp_ks", "spacing_ratio", "spacing_ratio_se",
)


@functools.partial(jax.jit, static_argnames=("ks",))
def _jax_metrics(ev, ks: str = "sup"):
  """Scale-level metrics of a batch of sorted ESDs ev (B, M) -> dict of (B,) arrays."""
  ev = jnp.clip(ev, 0.0, None)
  fit = power_law.fit_power_law(ev, ks=ks)
  lam_max = ev[:, -1]
  total = jnp.sum(ev, axis=-1)
  s = jnp.sqrt(ev)
  p = s / jnp.sum(s, axis=-1, keepdims=True)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)
  ratio, ratio_se = wigner.spacing_ratio(ev)
  return {
      "alpha": fit.alpha, "alpha_se": fit.alpha_se, "alpha_ks": fit.ks, "xmin": fit.xmin, "n_tail": fit.n_tail,
      "lambda_max": lam_max, "alpha_weighted": fit.alpha * jnp.log10(lam_max),
      "log10_spectral_norm": jnp.log10(lam_max), "log10_frobenius_norm": jnp.log10(total),
      "stable_rank": total / lam_max, "entropy_rank": jnp.exp(entropy),
      "median": jnp.median(ev, axis=-1), "spacing_ratio": ratio, "spacing_ratio_se": ratio_se,
  }


@functools.lru_cache(maxsize=256)
def _shape_constants(n: int, m: int, level: float) -> tuple[float, float, float]:
  """(median of unit MP_q, TW threshold per unit sigma^2 with the median-estimate correction, (1 + sqrt q)^2)."""
  q = m / n
  med = float(mp.mp_quantile(0.5, q))
  thr = tw.wishart_tw_threshold((n, m), 1.0, level, tw.median_sigma2_relative_sd((n, m)))
  return med, thr, (1.0 + np.sqrt(q)) ** 2


def _bulk_ks(ev: np.ndarray, n_out: int, q: float, sigma2: float) -> float:
  bulk = ev[: ev.size - n_out]
  if bulk.size == 0 or not (np.isfinite(sigma2) and sigma2 > 0):
    return float("nan")
  return mp.mp_ks_distance(bulk, q, sigma2)


def batch_metrics(eigenvalues, shape, *, level: float = 0.01, ks: str = "sup", backend: str = "jax") -> list[dict]:
  """Metrics for a batch of ESDs of matrices of one shape.

  Args:
    eigenvalues: (B, M) eigenvalues of ``X = W_s W_s^T / N`` (any order; float32 or float64).
    shape: the common shape ``(a, b)`` of the matrices (``M = min(a, b)``).
    level: false-alarm probability of the Tracy-Widom outlier test.
    ks: KS convention of the power-law fit (``"sup"`` or ``"powerlaw"``; see ``spectral.power_law``).
    backend: ``"jax"`` (one compiled computation per M, float32) or ``"numpy"`` (``spectral.host_metrics``, float64,
      nothing compiled: the faster choice for one-off shapes on a CPU).

  Returns:
    B dicts with the keys ``METRIC_NAMES`` (Python floats / ints).
  """
  ev = np.sort(np.asarray(eigenvalues), axis=-1)
  if ev.ndim != 2:
    raise ValueError(f"eigenvalues: expected a (B, M) batch, got shape {ev.shape}")
  n, m = max(int(shape[0]), int(shape[1])), min(int(shape[0]), int(shape[1]))
  if ev.shape[1] != m:
    raise ValueError(f"eigenvalues: expected M = {m} per matrix for shape {tuple(shape)}, got {ev.shape[1]}")
  med_unit, thr_unit, edge_unit = _shape_constants(n, m, float(level))
  if backend == "numpy":
    out = host_metrics.scale_metrics(ev, ks=ks)
  elif backend == "jax":
    out = jax.device_get(_jax_metrics(jnp.asarray(ev), ks=ks))
  else:
    raise ValueError(f"backend: expected 'jax' or 'numpy', got {backend!r}")
  rows = []
  ev64 = ev.astype(np.float64)
  for i in range(ev.shape[0]):
    sigma2 = float(out["median"][i]) / med_unit
    thr = sigma2 * thr_unit
    n_out = int(np.sum(ev64[i] > thr))
    row = {k: float(out[k][i]) for k in out if k not in ("median", "n_tail")}
    row.update(n_tail=int(out["n_tail"][i]), mp_sigma2=sigma2, mp_edge=sigma2 * edge_unit, tw_threshold=thr,
               n_outliers=n_out, mp_ks=_bulk_ks(ev64[i], n_out, m / n, sigma2))
    rows.append({k: row[k] for k in METRIC_NAMES})
  return rows


def matrix_metrics(eigenvalues, shape, *, level: float = 0.01, ks: str = "sup") -> dict:
  """Metrics of one matrix from its ESD eigenvalues (M,) and its shape; see the module docstring for definitions."""
  ev = np.asarray(eigenvalues)
  if ev.ndim != 1:
    raise ValueError(f"eigenvalues: expected a 1-D array, got shape {ev.shape}")
  return batch_metrics(ev[None], shape, level=level, ks=ks)[0]
