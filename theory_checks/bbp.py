"""Check 3: the BBP transition of planted spikes: threshold, outlier position and singular-vector overlaps.

Prediction (Benaych-Georges & Nadakuditi 2012, J. Multivar. Anal. 111:120, arXiv:1103.2221, section 3.1 examples;
docs/THEORY.md#bbp): ``W = theta u v^T + G / sqrt(N)`` (N x M, u on the long side, unit vectors, G iid N(0, 1),
``q = M / N``). Threshold ``theta_c = q^(1/4)``. Above it the top singular value tends to
``sqrt((1 + theta^2)(q + theta^2)) / theta`` and the squared overlaps to
``(theta^4 - q) / (theta^2 (theta^2 + 1))`` (u) and ``(theta^4 - q) / (theta^2 (theta^2 + q))`` (v); below it the top
singular value sticks to the edge ``1 + sqrt(q)`` and the overlaps vanish.

Measurement: for each ``theta``, ``seeds`` matrices drawn and decomposed (SVD) in one vmapped, jitted JAX computation.
Detection uses the Tracy-Widom test of check 1 at ``level`` (known unit noise variance): the spike is detected when
``(N s_1^2 - mu) / s`` exceeds ``F1^-1(1 - level)``, i.e. when ``s_1^2`` is an outlier of
``spectral.outliers.mp_outliers`` with the stated ``sigma^2 = 1``.

Tolerances (the critical window is ``|theta - theta_c| ~ N^(-1/3)``; only strengths clearly outside it are tested):
- below (``theta <= theta_c - 2 N^(-1/3)``): a subcritical spike leaves the TW limit of the top eigenvalue unchanged
  (Baik, Ben Arous & Peche 2005; Paul 2007), so detections ~ Binomial(seeds, level): count <= its
  ``1 - family_level`` quantile. Overlaps: ``E |<v_hat, v>|^2`` is O(1/M) for a delocalised vector; far below the
  threshold (``theta <= theta_c / 2``) we require the mean below ``10 / M`` (a uniformly random unit vector has
  ``1/M``). The O(1/M) constant grows as ``theta -> theta_c``: the first full-size run (N = 2000 on a GPU) measured
  10.2 / M at ``theta = 0.81 theta_c``, so next to the window the overlaps are reported, not judged (an earlier
  version judged them there against 10/M without justification and failed).
- above (``theta >= theta_c + 2 N^(-1/3)``): fluctuations are Gaussian of size O(N^(-1/2)) around the limit (Paul
  2007; Bai & Yao 2008), and the finite-N bias is O(1/N). Position and overlaps PASS when
  ``|mean - predicted| <= 4 SE + 4 / N`` (SE over seeds; 4/N bounds the O(1/N) bias with a constant of 4, and is
  below 4 SE at the quick size, so a wrong formula is not hidden by it). Detection: where the predicted outlier
  exceeds the detection threshold by at least 5 measured per-seed standard deviations, a miss has Gaussian
  probability < 3e-7 per seed, so every seed must detect.
- threshold: the interpolated strength at which half the seeds detect lies in ``[theta_c, theta_c + 3 N^(-1/3)]``
  (the TW test detects only once the outlier has left the edge by a TW quantile, an O(N^(-1/3)) distance).
``q_pred`` replaces the true ``q`` in every prediction: the deliberately wrong prediction of the tests.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from spectral import bbp as bbp_theory
from spectral.outliers import mp_outliers
from theory_checks import common
from theory_checks.verdict import FAIL, PASS, Verdict

NAME = "bbp"


def sizes(quick: bool) -> dict:
  return dict(shape=(100, 50), seeds=40) if quick else dict(shape=(2000, 1000), seeds=200)


@functools.partial(jax.jit, static_argnames=("n", "m"))
def _simulate(keys, theta, n: int, m: int):
  def one(k):
    kg, ku, kv = jax.random.split(k, 3)
    u = jax.random.normal(ku, (n,))
    v = jax.random.normal(kv, (m,))
    u, v = u / jnp.linalg.norm(u), v / jnp.linalg.norm(v)
    w = theta * jnp.outer(u, v) + jax.random.normal(kg, (n, m)) / jnp.sqrt(jnp.float32(n))
    # Top singular triplet from the M x M Gram matrix (cheaper than a full SVD): v_hat its top eigenvector,
    # s_1 = sqrt(top eigenvalue), u_hat = W v_hat / s_1.
    evals, evecs = jnp.linalg.eigh(jnp.einsum("ji,jk->ik", w, w, precision=jax.lax.Precision.HIGHEST))
    s1, vh = jnp.sqrt(evals[-1]), evecs[:, -1]
    uh = w @ vh / s1
    return s1, jnp.dot(uh, u) ** 2, jnp.dot(vh, v) ** 2
  return jax.vmap(one)(keys)


def simulate(key, shape, theta: float, seeds: int) -> dict[str, np.ndarray]:
  """Per seed: top singular value, squared overlaps of the top singular vectors with the planted u (N), v (M)."""
  n, m = shape
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(seeds))
  s1, ou, ov = (np.asarray(a, np.float64) for a in _simulate(keys, jnp.float32(theta), n, m))
  return dict(s1=s1, overlap_u=ou, overlap_v=ov)


def detections(top_eigenvalues, shape, level: float) -> tuple[np.ndarray, float]:
  """(per seed: is the top eigenvalue (S,) an outlier at ``level`` with unit noise variance, the threshold)."""
  res = mp_outliers(np.asarray(top_eigenvalues, np.float64)[:, None], shape, level=level, sigma2=1.0,
                    estimator="stated")
  return res.n_outliers > 0, float(res.threshold[0])


def check(shape=(100, 50), seeds: int = 40, seed: int = 0, *, level: float = 0.01, family_level: float = 0.01,
          q_pred: float | None = None, curve_points: int = 8) -> Verdict:
  n, m = max(shape), min(shape)
  q = m / n
  qp = q if q_pred is None else q_pred
  th_c, th_c_pred = q**0.25, bbp_theory.bbp_threshold(qp)
  win = n ** (-1.0 / 3.0)
  below = [th_c * 0.4, max(th_c - 2 * win, 0.05)]
  above = [th_c + 2 * win, 1.5, 2.0, 3.0]
  key = jax.random.PRNGKey(seed)
  rows, ok = [], True
  allowed = common.binomial_upper_quantile(seeds, level, 1.0 - family_level)
  for i, theta in enumerate(below + above):
    r = simulate(jax.random.fold_in(key, i), (n, m), float(theta), seeds)
    detected, det_eig = detections(r["s1"] ** 2, (n, m), level)  # det_eig: the threshold on s_1^2
    s_pred = float(bbp_theory.bbp_top_singular_value(theta, qp))
    ou_pred, ov_pred = (float(x) for x in bbp_theory.bbp_overlaps(theta, qp))
    row = dict(theta=float(theta), side="below" if theta in below else "above", detections=int(detected.sum()),
               seeds=seeds, s1_mean=float(r["s1"].mean()), s1_sd=float(r["s1"].std(ddof=1)), s1_pred=s_pred,
               overlap_u_mean=float(r["overlap_u"].mean()), overlap_u_pred=ou_pred,
               overlap_v_mean=float(r["overlap_v"].mean()), overlap_v_pred=ov_pred)
    if row["side"] == "below":
      # Overlaps are judged only far below threshold (theta <= theta_c / 2): the subcritical overlap is O(1/M) with a
      # constant that grows as theta -> theta_c (at N = 2000, theta = 0.81 theta_c measured 10.2 / M), so a fixed
      # 10/M bound is not justified next to the window; there they are reported, not judged.
      far = theta <= 0.5 * th_c
      overlaps_ok = (row["overlap_v_mean"] < 10.0 / m and row["overlap_u_mean"] < 10.0 / m) if far else True
      row.update(overlaps_judged=bool(far), overlaps_ok=bool(overlaps_ok))
      row["pass"] = bool(row["detections"] <= allowed and overlaps_ok and theta < th_c_pred)
    else:
      tol = lambda x: 4.0 * x.std(ddof=1) / np.sqrt(seeds) + 4.0 / n
      pos_ok = abs(row["s1_mean"] - s_pred) <= tol(r["s1"])
      ou_ok = abs(row["overlap_u_mean"] - ou_pred) <= tol(r["overlap_u"])
      ov_ok = abs(row["overlap_v_mean"] - ov_pred) <= tol(r["overlap_v"])
      margin = (s_pred**2 - det_eig) / max(float((r["s1"] ** 2).std(ddof=1)), 1e-12)
      det_ok = row["detections"] == seeds if margin >= 5.0 else True
      row.update(position_ok=bool(pos_ok), overlap_u_ok=bool(ou_ok), overlap_v_ok=bool(ov_ok),
                 detection_margin_sd=float(margin), detection_ok=bool(det_ok),
                 pass_=bool(pos_ok and ou_ok and ov_ok and det_ok))
      row["pass"] = row.pop("pass_")
    ok &= row["pass"]
    rows.append(row)
  # Detection curve across the window, for the threshold location and the figure.
  grid = np.linspace(max(th_c - 3 * win, 0.05), th_c + 4 * win, curve_points)
  rates = []
  for j, theta in enumerate(grid):
    r = simulate(jax.random.fold_in(key, 1000 + j), (n, m), float(theta), seeds)
    rates.append(float(np.mean(detections(r["s1"] ** 2, (n, m), level)[0])))
  rates = np.asarray(rates)
  cross = np.flatnonzero(rates >= 0.5)
  if cross.size and cross[0] > 0:
    j = cross[0]
    th50 = float(grid[j - 1] + (0.5 - rates[j - 1]) * (grid[j] - grid[j - 1]) / (rates[j] - rates[j - 1]))
  else:
    th50 = float(grid[cross[0]]) if cross.size else float("nan")
  th_ok = bool(th_c_pred <= th50 <= th_c_pred + 3 * win)
  ok &= th_ok
  thetas_curve = np.linspace(0.05, 3.0, 60)
  return Verdict(
      check=NAME,
      prediction=f"theta_c = q^(1/4) = {th_c_pred:.4f}; s_1 -> sqrt((1+t^2)(q+t^2))/t above, 1+sqrt(q) below; "
      "overlaps (t^4-q)/(t^2(t^2+1)) (u), (t^4-q)/(t^2(t^2+q)) (v) above, 0 below",
      source="Benaych-Georges & Nadakuditi 2012 (arXiv:1103.2221) section 3.1; docs/THEORY.md#bbp",
      tolerance=f"N={n}, M={m}, {seeds} seeds per theta; below: detections <= Binomial({seeds}, {level}) "
      f"{1 - family_level:.0%} quantile = {allowed}, overlaps < 10/M; above: |mean - pred| <= 4 SE + 4/N, all "
      f"seeds detect where the margin >= 5 sd; 50% detection strength in [theta_c, theta_c + 3 N^(-1/3)] = "
      f"[{th_c_pred:.3f}, {th_c_pred + 3 * win:.3f}]",
      status=PASS if ok else FAIL,
      measured=dict(theta_50_detection=th50, rows_passing=sum(r["pass"] for r in rows), rows=len(rows),
                    **{f"s1_at_theta_{r['theta']:.2f}": r["s1_mean"] for r in rows if r["side"] == "above"}),
      predicted=dict(theta_50_detection=f"in [{th_c_pred:.3f}, {th_c_pred + 3 * win:.3f}]", rows_passing=len(rows),
                     **{f"s1_at_theta_{r['theta']:.2f}": r["s1_pred"] for r in rows if r["side"] == "above"}),
      details=rows + [dict(threshold_ok=th_ok, q=q, q_pred=qp)],
      series=dict(curve_theta=grid, curve_detection_rate=rates, theta=[r["theta"] for r in rows],
                  s1_mean=[r["s1_mean"] for r in rows], s1_sd=[r["s1_sd"] for r in rows],
                  overlap_u_mean=[r["overlap_u_mean"] for r in rows],
                  overlap_v_mean=[r["overlap_v_mean"] for r in rows],
                  theory_theta=thetas_curve, theory_s1=bbp_theory.bbp_top_singular_value(thetas_curve, qp),
                  theory_overlap_u=bbp_theory.bbp_overlaps(thetas_curve, qp)[0],
                  theory_overlap_v=bbp_theory.bbp_overlaps(thetas_curve, qp)[1]),
  )


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0) -> Verdict:
  del runs_dir
  return check(seed=seed, **sizes(quick))


def calibrate(quick: bool = False, seed: int = 0, *, level: float = 0.01, trials: int | None = None,
              shape=None) -> dict:
  """False-alarm rate of the spike detector on pure noise (theta = 0) and below threshold (theta = 0.5 theta_c),
  and its power at theta_c + 2 N^(-1/3) and at 1.5 theta_c."""
  shape = shape or sizes(quick)["shape"]
  trials = trials or (400 if quick else 2000)
  n, m = shape
  th_c, win = (m / n) ** 0.25, n ** (-1.0 / 3.0)
  key = jax.random.PRNGKey(2_000_003 + seed)
  out = dict(check=NAME, level=level, trials=trials, shape=list(shape), bound=common.rate_bound(trials, level))
  for i, (label, theta) in enumerate([("false_alarm", 0.0), ("false_alarm_below_half_threshold", 0.5 * th_c),
                                      ("power_just_above", th_c + 2 * win), ("power", 1.5 * th_c)]):
    lmax = common.gaussian_lmax(jax.random.fold_in(key, i), trials, shape,
                                thetas=None if theta == 0.0 else [theta])
    out[label] = float(np.mean(detections(lmax, shape, level)[0]))
  return out
