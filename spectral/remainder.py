"""The remainder: once the structured components are removed, is the rest indistinguishable from its null?

Given a matrix ``X`` (``W``, or ``dW = W - W0``) and its ``StructureResult`` (``spectral.structure``), the remainder
is ``R = X / sqrt(N) - u diag(s) v^T`` (the lab's convention: singular values of ``X / sqrt(N)``). Its null is the
structure test's, random sign flips, adapted to a residual: ``P_u (R o S) P_v`` with ``P_u``, ``P_v`` the projections
off the removed components' spans. If ``X = L + E`` with ``L`` the removed part and ``E`` of independent symmetric
entries, then ``R ~ P_u E P_v`` and ``P_u (R o S) P_v ~ P_u (E o S) P_v``, which has the law of ``P_u E P_v`` when the
projections are (nearly) independent of ``E``, up to the energy the projection removes from a flip (about
``rank (1/M + 1/N)`` of it, none from ``R``), which is restored by rescaling each projected flip to ``R``'s Frobenius
norm. The comparison is approximate, with the error of the estimated components. Without the projection the flips would spread ``R``'s energy over ``M`` singular values where ``R`` has
``M - rank``, a bias of order ``rank / M`` in every bulk statistic. ``draws`` flips are drawn and four statistics
are compared with them:

- **Bulk KS**: the Kolmogorov-Smirnov distance between the ESD of ``R`` (eigenvalues of ``R_s R_s^T``) and the pooled
  ESD of the other matrices, on the top ``M - rank`` eigenvalues of each (the ``rank`` zeros left by the removal
  are dropped). Each of the ``draws + 1`` matrices (``R`` and the flips) is compared with the pool of
  the other ``draws``; under the null they are exchangeable, so ``(1 + #{KS_d >= KS_R}) / (draws + 1)`` is an exact
  Monte Carlo p-value (smallest ``1 / (draws + 1)``). No Marchenko-Pastur shape is assumed.
- **Spacing ratio** of the central half of the same ``M - rank`` eigenvalues (``spectral.wigner.spacing_ratio``, Atas et al. 2013): GOE
  value 0.5307, Poisson 0.3863; the flips' mean for comparison.
- **Eigenvector IPR** of the top ``top`` eigenvectors of ``R_s R_s^T`` (the short side, length ``M``) against
  Porter-Thomas, ``E IPR = 3 / (M + 2)`` (``spectral.wigner.delocalised_ipr``), and against the flips (a variance
  profile alone localises eigenvectors somewhat, so the flips are the fairer reference).
- **Decay exponent** where there is no gap. With ``k = rank`` structured components, the gap is ``s_k / s_(k+1)``
  (singular values of ``X / sqrt(N)``); ``has_gap`` when it exceeds the largest top gap ``s_1 / s_2`` among the
  flips, i.e. the structured values stand apart from the rest. Without a gap (a continuum of singular values above
  the null, which the sequential test resolves one by one), the exponent ``beta`` is the least-squares slope of
  ``-log(s_j / s_j^null)`` on ``log j``, ``j = 1..min(k, M - k)`` (the flips of the remainder have only ``M - k``
  non-zero singular values), with ``s_j^null`` the flips' mean ``j``-th singular value: ``s_j ~ s_j^null
  j^(-beta)`` says how fast the excess over the null decays (a power-law continuum, the meso-scale's candidate
  signature). Its error bar combines the regression's standard error with the spread of the same fit on each flip
  against the mean of the others (what the null alone produces); singular values are not independent, so read it
  as indicative. Reported when ``min(k, M - k) >= min_points``, with ``has_gap`` beside it.
  ``n_above_null`` counts the singular values of ``X`` above every flip's top value (``null_edge``).

Cost: one symmetric eigendecomposition per matrix and per flip (``M x M``), jit-compiled and batched over flips.
"""

from __future__ import annotations

import dataclasses
import jax
import jax.numpy as jnp
import numpy as np

from spectral import structure as structure_lib
from spectral import wigner


@dataclasses.dataclass(frozen=True)
class RemainderResult:
  """Statistics of the remainder against its sign-flip null (module docstring).

  Attributes:
    rank: structured components removed.
    ks, ks_p_value: bulk KS distance to the flips' pooled ESD and its Monte Carlo p-value.
    ks_null: (draws,) the same distance for each flip against the pool of the others.
    spacing_ratio, spacing_ratio_se: mean spacing ratio of the remainder's central spectrum and its standard error.
    spacing_ratio_null: the flips' mean spacing ratio.
    ipr: mean IPR of the remainder's top ``top`` eigenvectors; ``ipr_porter_thomas = 3 / (M + 2)``;
      ``ipr_null``: the flips' mean of the same.
    n_above_null: singular values of ``X / sqrt(N)`` above ``null_edge``, the largest top value among the flips.
    gap_ratio: ``s_k / s_(k+1)`` (``k = rank``; ``None`` for rank 0); ``null_gap_max``: the largest ``s_1 / s_2``
      among the flips; ``has_gap``: ``gap_ratio > null_gap_max``.
    decay_exponent, decay_exponent_se: ``beta`` of ``s_j / s_j^null ~ j^-beta`` over ``j <= min(k, M - k)`` and
      its error bar (``None`` when ``min(k, M - k) < min_points``); ``decay_exponent_null_sd``: the null part of
      the error bar.
    status: ``"ok"`` or a reason some statistic is missing.
  """
  rank: int
  ks: float
  ks_p_value: float
  ks_null: np.ndarray
  spacing_ratio: float
  spacing_ratio_se: float
  spacing_ratio_null: float
  ipr: float
  ipr_porter_thomas: float
  ipr_null: float
  n_above_null: int
  null_edge: float
  gap_ratio: float | None
  null_gap_max: float
  has_gap: bool
  decay_exponent: float | None
  decay_exponent_se: float | None
  decay_exponent_null_sd: float | None
  status: str


@jax.jit
def _projected_flip(resid, u, v, key):
  """A sign flip of ``resid`` (M, N) projected off the orthonormal bases ``u`` (M, k), ``v`` (N, k), as ``resid``
  is, and rescaled to the Frobenius norm of ``resid`` (the projection removes about ``k/M + k/N`` of a flip's
  energy, none of ``resid``'s)."""
  hp = jax.lax.Precision.HIGHEST
  f = structure_lib.sign_flip(resid, key)
  f = f - jnp.matmul(u, jnp.matmul(u.T, f, precision=hp), precision=hp)
  f = f - jnp.matmul(jnp.matmul(f, v, precision=hp), v.T, precision=hp)
  return f * (jnp.linalg.norm(resid) / jnp.maximum(jnp.linalg.norm(f), jnp.finfo(f.dtype).tiny))


@jax.jit
def _gram_eigh(a):
  """Ascending eigenpairs of ``a a^T`` for a batch ``a`` (..., M, N)."""
  return jnp.linalg.eigh(jnp.matmul(a, jnp.swapaxes(a, -1, -2), precision=jax.lax.Precision.HIGHEST))


def _spectra(x, resid, u, v, key, draws: int):
  """Ascending Gram eigenvalues of ``x`` (M, N); Gram eigenpairs of ``resid`` and of ``draws`` projected flips.
  One dispatch per flip (see ``spectral.structure._round_statistics`` on ``lax.map``)."""
  flips = [_projected_flip(resid, u, v, jax.random.fold_in(key, d)) for d in range(draws)]
  # One eigh program in flight at a time (two batched LAPACK kernels at once can deadlock the CPU pool: see
  # ``spectral.structure._round_null``).
  ev, vec = jax.block_until_ready(_gram_eigh(jnp.stack([resid, *flips])))
  return _gram_eigh(x)[0], ev, vec


def two_sample_ks(sample, pool) -> float:
  """Two-sample KS distance ``sup |F_sample - F_pool|`` of empirical distribution functions."""
  sample, pool = np.sort(sample), np.sort(pool)
  grid = np.concatenate([sample, pool])
  f_s = np.searchsorted(sample, grid, side="right") / sample.size
  f_p = np.searchsorted(pool, grid, side="right") / pool.size
  return float(np.max(np.abs(f_s - f_p)))


def _decay_fit(s: np.ndarray, ref: np.ndarray, j_max: int) -> tuple[float, float]:
  """Slope ``beta`` and its OLS standard error of ``-log(s_j / ref_j)`` on ``log j`` for ``j = 1..j_max``."""
  j = np.arange(1, j_max + 1, dtype=np.float64)
  x = np.log(j)
  y = -np.log(s[:j_max] / ref[:j_max])
  xc = x - x.mean()
  beta = float(np.sum(xc * (y - y.mean())) / np.sum(xc**2))
  resid = y - y.mean() - beta * xc
  se = float(np.sqrt(np.sum(resid**2) / max(j_max - 2, 1) / np.sum(xc**2)))
  return beta, se


def remainder_statistics(w, result: structure_lib.StructureResult, *, init=None, draws: int = 19, seed: int = 0,
                         top: int = 10, min_points: int = 5) -> RemainderResult:
  """Compare the remainder of ``w`` (or of ``w - init``) after removing ``result``'s components with its null.

  Args:
    w: (a, b) matrix, the one ``result`` was computed from (with the same ``init``).
    result: its ``StructureResult`` (status ok).
    init: optional initial value; the update ``w - init`` is analysed.
    draws: sign flips of the remainder (p-values down to ``1 / (draws + 1)``).
    seed: integer seed of the flips.
    top: number of top eigenvectors whose IPR is averaged.
    min_points: the fewest structured components for which a decay exponent is fitted.

  Returns:
    ``RemainderResult``.

  Raises:
    ValueError: a bad matrix, a shape that differs from ``result.shape``, an error ``result``, or bad options.
  """
  x = np.asarray(w, dtype=np.float64)
  if x.ndim != 2 or min(x.shape) < 2:
    raise ValueError(f"w: expected a 2-D matrix with both dimensions >= 2, got shape {x.shape}")
  if init is not None:
    x0 = np.asarray(init, dtype=np.float64)
    if x0.shape != x.shape:
      raise ValueError(f"init: expected the shape of w {x.shape}, got {x0.shape}")
    x = x - x0
  if not np.all(np.isfinite(x)):
    raise ValueError("w: has NaN or Inf entries")
  if result.status.startswith("error") or tuple(result.shape) != x.shape:
    raise ValueError(f"result: expected an ok StructureResult of shape {x.shape}, got shape {result.shape} with "
                     f"status {result.status!r}")
  if not isinstance(draws, (int, np.integer)) or draws < 4:
    raise ValueError(f"draws: expected an integer >= 4, got {draws!r}")
  a, b = x.shape
  n, m = max(a, b), min(a, b)
  if not isinstance(top, (int, np.integer)) or not 1 <= top <= m:
    raise ValueError(f"top: expected an integer in [1, M = {m}], got {top!r}")
  x = x / np.sqrt(n)
  resid = x - (result.u * result.s) @ result.v.T
  u, v = result.u, result.v
  if a > b:
    x, resid, u, v = x.T, resid.T, v, u
  def basis(c):
    # Orthonormal basis padded with zero columns to a multiple of 8: a zero column projects nothing, and the padding
    # keeps one compiled ``_projected_flip`` per shape instead of one per rank.
    q = np.linalg.qr(c)[0] if c.shape[1] else c
    return jnp.asarray(np.pad(q, ((0, 0), (0, -q.shape[1] % 8 or (8 if not q.shape[1] else 0)))), jnp.float32)

  ev_x, ev, vec = _spectra(jnp.asarray(x, jnp.float32), jnp.asarray(resid, jnp.float32), basis(u), basis(v),
                           jax.random.key(int(seed)), int(draws))
  ev_x = np.clip(np.asarray(ev_x, np.float64), 0.0, None)[::-1]
  ev, vec = np.clip(np.asarray(ev, np.float64), 0.0, None), np.asarray(vec, np.float64)

  # Removing k components leaves k zero singular values in R and in its projected flips: compare the top M - k.
  bulk = ev[:, min(int(result.rank), m - 4):]
  ks_all = np.array([two_sample_ks(bulk[i], np.delete(bulk, i, axis=0).ravel()) for i in range(draws + 1)])
  ks, ks_null = float(ks_all[0]), ks_all[1:]
  notes = []
  lo, hi = wigner.central_window(bulk.shape[-1], 0.5)
  if hi - lo >= 3:
    means, ses = wigner.spacing_ratio(bulk, xp=np)
    ratios, r_se = np.asarray(means, np.float64), float(ses[0])
  else:  # too few remainder levels for a ratio of spacings: NaN, and the status says why
    ratios, r_se = np.full(draws + 1, np.nan), float("nan")
    notes.append(f"spacing ratio needs >= 3 central levels, the remainder has {bulk.shape[-1]} levels")
  ipr = np.asarray(wigner.inverse_participation_ratio(vec[..., ::-1][..., :top], axis=-2), np.float64).mean(axis=-1)

  s_x = np.sqrt(ev_x)  # descending singular values of X / sqrt(N)
  s_null = np.sqrt(ev[1:, ::-1])  # (draws, M) descending
  edge = float(s_null[:, 0].max())
  gap_max = float(np.max(s_null[:, 0] / np.maximum(s_null[:, 1], 1e-300)))
  j_above = int(np.sum(s_x > edge))
  k = int(result.rank)
  gap_ratio = float(s_x[k - 1] / s_x[k]) if 0 < k < m and s_x[k] > 0 else None
  has_gap = gap_ratio is not None and gap_ratio > gap_max
  beta = beta_se = null_sd = None
  # The projected flips have only M - k non-zero singular values: the j-th structured value is compared with the
  # null's j-th for j <= min(k, M - k) (a small matrix with many components has fewer reference values).
  j_max = min(k, m - k)
  if k < min_points:
    notes.append(f"decay exponent needs >= {min_points} structured components, found {k}")
  elif j_max < min_points:
    notes.append(f"decay exponent needs >= {min_points} structured components with a non-zero null value each: "
                 f"{k} components leave M - k = {m - k}")
  else:
    mean_null = s_null.mean(axis=0)
    beta, se_ols = _decay_fit(s_x, mean_null, j_max)
    loo = [(_decay_fit(s_null[d], np.delete(s_null, d, axis=0).mean(axis=0), j_max)[0]) for d in range(draws)]
    null_sd = float(np.std(loo, ddof=1))
    beta_se = float(np.hypot(se_ols, null_sd))
  status = f"ok ({'; '.join(notes)})" if notes else "ok"
  return RemainderResult(
      rank=int(result.rank), ks=ks, ks_p_value=float((1 + np.sum(ks_null >= ks)) / (draws + 1)), ks_null=ks_null,
      spacing_ratio=float(ratios[0]), spacing_ratio_se=r_se, spacing_ratio_null=float(ratios[1:].mean()),
      ipr=float(ipr[0]), ipr_porter_thomas=wigner.delocalised_ipr(m), ipr_null=float(ipr[1:].mean()),
      n_above_null=j_above, null_edge=edge, gap_ratio=gap_ratio, null_gap_max=gap_max, has_gap=bool(has_gap),
      decay_exponent=beta, decay_exponent_se=beta_se, decay_exponent_null_sd=null_sd, status=status)
