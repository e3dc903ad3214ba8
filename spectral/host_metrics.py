"""The spectral metrics of ``spectral.metrics`` in numpy float64, with no compilation: the host path.

Why: a compiled (jit) metric computation costs 1-4 s of XLA compilation per distinct matrix size on a CPU, more than
computing the metrics of a 4096-eigenvalue spectrum. A command-line run over a checkpoint whose matrices come in
many sizes pays that once per size; this module pays nothing. ``spectral.analyze.analyze(..., backend="numpy")``
uses it together with numpy/LAPACK eigenvalues; the compiled path (``backend="jax"``) stays the one for batches on
accelerators. ``tests/test_host_metrics.py`` holds the two paths to the same numbers.

Definitions are those of ``spectral.metrics`` (module docstring there) and ``spectral.power_law`` (the
Clauset-Shalizi-Newman 2009 fit): the same round-off floor mask ``M eps lambda_max`` (``spectral.metrics.rank_floor``),
the same candidates ``xmin`` (distinct valid values below the largest, leaving at least ``min_tail`` points, default
``power_law.DEFAULT_MIN_TAIL = 10``), the same MLE ``alpha = 1 + n / sum ln(x_i / xmin)``, the same KS conventions
(``power_law.KS_CONVENTIONS``, default ``"powerlaw"``, whose empirical CDF counts the tail points strictly below each
tied value), the same tie-break (smallest ``xmin``) and the same failure codes (``power_law.FIT_*``: a failed fit is
NaN with ``n_tail = 0``). The outlier columns (``mp_sigma2`` to ``mp_ks``) are not here: both paths call
``spectral.outliers.mp_outliers``, which is numpy. The KS distances of all candidates are formed in blocks of
``block`` candidates, so memory is ``O(block M)`` rather than ``O(M^2)``; time is ``O(M^2)``.
"""

from __future__ import annotations

import numpy as np

from spectral import power_law
from spectral import wigner


def fit_power_law(x, mask=None, *, min_tail: int = power_law.DEFAULT_MIN_TAIL, ks: str = "powerlaw",
                  block: int = 256) -> dict[str, np.ndarray]:
  """CSN power-law fit of each row of ``x`` (B, M) in float64, as ``spectral.power_law.fit_power_law``.

  Args:
    x: (B, M) data; non-positive and non-finite entries are ignored.
    mask: optional (B, M) boolean, True for entries to use (False: below the round-off floor, padding).
    min_tail, ks: as ``spectral.power_law.fit_power_law``.
    block: candidates per block of KS distances.

  Returns:
    dict of (B,) arrays ``alpha, alpha_se, xmin, n_tail, ks, xmax, n_valid, status``, the fields of
    ``spectral.power_law.PowerLawFit`` (NaN, ``n_tail = 0`` and ``status != FIT_OK`` without a candidate).
  """
  if ks not in power_law.KS_CONVENTIONS:
    raise ValueError(f"ks: expected one of {power_law.KS_CONVENTIONS}, got {ks!r}")
  if int(min_tail) != min_tail or min_tail < 2:
    raise ValueError(f"min_tail: expected an integer >= 2, got {min_tail!r}")
  x = np.asarray(x, np.float64)
  if x.ndim != 2:
    raise ValueError(f"x: expected a (B, M) batch, got shape {x.shape}")
  mask = np.ones(x.shape, bool) if mask is None else np.asarray(mask, bool)
  if mask.shape != x.shape:
    raise ValueError(f"mask: expected shape {x.shape}, got {mask.shape}")
  fits = [_fit_row(row, row_mask, int(min_tail), ks, int(block)) for row, row_mask in zip(x, mask)]
  return {k: np.array([f[k] for f in fits])
          for k in ("alpha", "alpha_se", "xmin", "n_tail", "ks", "xmax", "n_valid", "status")}


def _fit_row(x: np.ndarray, mask: np.ndarray, min_tail: int, ks: str, block: int) -> dict:
  with np.errstate(invalid="ignore"):
    valid = mask & (x > 0) & np.isfinite(x)
  xs = np.sort(np.where(valid, x, 0.0))
  m = xs.size
  n_valid = int(valid.sum())
  n_invalid = m - n_valid
  status = power_law.FIT_TOO_FEW_VALID if n_valid < min_tail else power_law.FIT_NO_CANDIDATE
  out = dict(alpha=np.nan, alpha_se=np.nan, xmin=np.nan, n_tail=0, ks=np.nan, xmax=xs[-1], n_valid=n_valid,
             status=status)
  idx = np.arange(m)
  is_valid = idx >= n_invalid
  logx = np.zeros(m)
  logx[is_valid] = np.log(xs[is_valid])
  centre = logx.sum() / max(n_valid, 1)
  logc = np.where(is_valid, logx - centre, 0.0)
  suffix = np.cumsum(logc[::-1])[::-1]  # sum_{j >= k} (ln x_j - c)
  n_k = (m - idx).astype(np.float64)
  denom = suffix - n_k * logc  # sum_{j >= k} ln(x_j / x_k)
  distinct = np.concatenate([[True], xs[1:] > xs[:-1]])
  # Tail points counted below point j, plus k: "powerlaw" counts those strictly below x_j (the first of its ties).
  below = np.maximum.accumulate(np.where(distinct, idx, 0)) if ks == "powerlaw" else idx
  candidate = is_valid & distinct & (xs < xs[-1]) & (m - idx >= min_tail) & (denom > 0)
  cand = np.flatnonzero(candidate)
  if cand.size == 0:
    return out
  alpha = 1.0 + n_k[cand] / denom[cand]
  dist = np.empty(cand.size)
  for lo in range(0, cand.size, block):
    k = cand[lo:lo + block]
    j0 = int(k[0])  # candidates ascend: every tail in this block lies inside [j0, m)
    dlog = logc[None, j0:] - logc[k, None]  # (block, m - j0)
    in_tail = idx[None, j0:] >= k[:, None]
    rank = (below[None, j0:] - k[:, None]).astype(np.float64)
    f = -np.expm1((1.0 - alpha[lo:lo + block, None]) * np.where(in_tail, dlog, 0.0))
    nk = n_k[k][:, None]
    lower = f - rank / nk
    dev = np.maximum((rank + 1.0) / nk - f, lower) if ks == "sup" else np.abs(lower)
    dist[lo:lo + block] = np.max(np.where(in_tail, dev, -np.inf), axis=1)
  best = int(np.argmin(dist))  # ties go to the smallest xmin, as in spectral.power_law
  k = int(cand[best])
  a = float(alpha[best])
  n = m - k
  out.update(alpha=a, alpha_se=(a - 1.0) / np.sqrt(n), xmin=float(xs[k]), n_tail=n, ks=float(dist[best]),
             status=power_law.FIT_OK)
  return out


def spacing_ratio(ev: np.ndarray, central_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
  """Mean ratio of consecutive spacings of the central part of each sorted row (B, M) and its standard error
  (``spectral.wigner.spacing_ratio``); NaN where the central part has fewer than 3 levels."""
  ev = np.sort(np.asarray(ev, np.float64), axis=-1)
  lo, hi = wigner.central_window(ev.shape[-1], central_fraction)
  if hi - lo < 3:
    nan = np.full(ev.shape[:-1], np.nan)
    return nan, nan
  s = np.diff(ev[..., lo:hi], axis=-1)
  a, b = s[..., 1:], s[..., :-1]
  big = np.maximum(a, b)
  with np.errstate(invalid="ignore", divide="ignore"):
    r = np.where(big > 0, np.minimum(a, b) / np.where(big > 0, big, 1.0), np.nan)
  k = np.sum(~np.isnan(r), axis=-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.nanmean(r, axis=-1), np.nanstd(r, axis=-1) / np.sqrt(k)


def scale_metrics(ev, floor, ks: str = "powerlaw") -> dict[str, np.ndarray]:
  """The scale-level metrics of a batch of ESDs (B, M) above round-off floors (B,) (``spectral.metrics.rank_floor``),
  keyed as ``spectral.metrics``'s compiled computation: the power-law fit of the eigenvalues above the floor (with
  its ``fit_status`` and ``n_valid``), ``numerical_rank``, ``lambda_max``, ``alpha_weighted``, the norms,
  ``stable_rank``, ``entropy_rank`` and the spacing ratio (NaN when the central half reaches the floor); float64."""
  ev = np.clip(np.sort(np.asarray(ev, np.float64), axis=-1), 0.0, None)
  resolved = ev > np.asarray(floor, np.float64)[:, None]
  fit = fit_power_law(ev, resolved, ks=ks)
  lam_max = ev[:, -1]
  total = ev.sum(axis=-1)
  s = np.sqrt(ev)
  lo, _ = wigner.central_window(ev.shape[-1])
  with np.errstate(invalid="ignore", divide="ignore"):
    p = s / s.sum(axis=-1, keepdims=True)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
    ratio, ratio_se = (np.where(resolved[:, lo], r, np.nan) for r in spacing_ratio(ev))
    return {
        "alpha": fit["alpha"], "alpha_se": fit["alpha_se"], "alpha_ks": fit["ks"], "xmin": fit["xmin"],
        "n_tail": fit["n_tail"], "fit_status": fit["status"], "n_valid": fit["n_valid"],
        "numerical_rank": resolved.sum(axis=-1), "lambda_max": lam_max,
        "alpha_weighted": fit["alpha"] * np.log10(lam_max), "log10_spectral_norm": np.log10(lam_max),
        "log10_frobenius_norm": np.log10(total), "stable_rank": total / lam_max, "entropy_rank": np.exp(entropy),
        "spacing_ratio": ratio, "spacing_ratio_se": ratio_se,
    }
