"""Check 1: at initialisation every weight matrix's ESD follows Marchenko-Pastur (bulk and edge) with its stated
variance.

Prediction (Marchenko & Pastur 1967; docs/THEORY.md#mp_at_init): a matrix with iid N(0, sigma^2) entries, oriented
``N x M`` with ``q = M / N``, has the ESD of ``X = W^T W / N`` close to MP(q, sigma^2) with no parameter fitted:
``sigma^2`` is the initialiser's stated variance, recorded per member in run.json (``Run.init_variance``; the rule
is ``models.transformer.init_variance``). Its largest eigenvalue obeys
Johnstone 2001 (Thm 1.1) with Ma's 2012 centring: ``t = (N l_max / sigma^2 - mu) / s -> TW1``.

Measurement: the step-0 spectra of every weight matrix of a run folder. The regimes of one seed share their initial
weights (``models.members``: the init key depends on the seed index only), so only one member per seed index is
tested: counting the copies would pretend to independence that is not there. Two statistics per matrix:

- bulk: ``M * KS(ESD, MP(q, sigma^2))``. Eigenvalues are rigid, so KS shrinks like 1/M and ``M * KS`` stays O(1); it
  is not an iid KS statistic, so its null distribution is simulated: for each distinct shape, ``null_draws`` Gaussian
  matrices (seeded) give the per-matrix critical value at ``1 - level``.
- edge: the Johnstone-Ma scaled ``t``; two-sided, it must lie within the TW1 quantiles ``level/2`` and
  ``1 - level/2`` (too small an edge is as wrong as too large a one: a mis-stated variance moves it either way).

Tolerance: under the null each matrix exceeds its critical value with probability ``level``, so the number of
exceedances among ``n`` independent matrices is Binomial(n, level). Each family (bulk, edge) PASSes when its count is
within the binomial ``1 - family_level / 2`` quantile (Bonferroni over the two families): a calibrated family-wise
rule, not a hand-picked margin. ``calibrate`` measures both per-matrix false-alarm rates on fresh Gaussian matrices of
the run's shapes, and the power against a planted spike (edge) and a 1.5x variance error (bulk).
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from models.run_folder import Run, load_run
from spectral import tracy_widom as tw
from spectral.esd import aspect_ratio, esd_reference
from spectral.marchenko_pastur import mp_ks_distance
from theory_checks import common
from theory_checks.common import binomial_upper_quantile  # noqa: F401 (re-exported; older callers import it here)
from theory_checks.verdict import FAIL, PASS, Verdict

NAME = "mp_at_init"


def null_ks_critical_value(shape: tuple[int, int], level: float, draws: int, seed: int = 0) -> float:
  """``1 - level`` quantile of ``M * KS`` for Gaussian matrices of ``shape`` against MP(q, 1) (Monte Carlo)."""
  rng = np.random.default_rng([seed, *shape])
  m, q = min(shape), aspect_ratio(shape)
  stats = [m * mp_ks_distance(esd_reference(rng.standard_normal(shape)), q, 1.0) for _ in range(draws)]
  return float(np.quantile(stats, 1.0 - level))


def edge_bounds(level: float) -> tuple[float, float]:
  """Two-sided TW1 acceptance interval ``(F1^-1(level / 2), F1^-1(1 - level / 2))`` for the scaled edge."""
  return float(tw.tw_quantile(level / 2.0)), float(tw.tw_quantile(1.0 - level / 2.0))


def matrix_stats(ev: np.ndarray, shape, sigma2: float) -> tuple[float, float]:
  """``(M * KS(ESD, MP(q, sigma^2)), Johnstone-Ma scaled largest eigenvalue)`` of one ESD."""
  m, q = min(shape), aspect_ratio(shape)
  return m * mp_ks_distance(ev, q, sigma2), float(common.tw_scale(np.max(ev), shape, sigma2))


def independent_members(run: Run) -> list[int]:
  """One member per seed index: members of one seed share their initial weights (up to a per-member init scale)."""
  seen, out = set(), []
  for m in run.members:
    if m["seed_index"] not in seen:
      seen.add(m["seed_index"])
      out.append(m["index"])
  return out


def check_run(run: Run, *, level: float = 0.01, family_level: float = 0.01, null_draws: int = 400,
              variance_factor: float = 1.0) -> Verdict:
  """Run the check on a run folder's step-0 spectra.

  ``variance_factor`` multiplies the stated variance; it exists so tests can force a deliberately wrong prediction
  and see the check FAIL.
  """
  if 0 not in run.spectra:
    raise ValueError(f"run {run.name}: no step-0 snapshot; the check needs the spectra at initialisation")
  lo, hi = edge_bounds(level)
  members = independent_members(run)
  critical, details = {}, []
  for name, ev_members in sorted(run.spectra[0].items()):
    meta = run.info["matrices"][name]
    shape = tuple(meta["shape"])
    if shape not in critical:
      critical[shape] = null_ks_critical_value(shape, level, null_draws)
    for member in members:
      sigma2 = run.init_variance(name, member) * variance_factor
      stat, t = matrix_stats(np.asarray(ev_members[member], np.float64), shape, sigma2)
      details.append(dict(matrix=name, member=member, shape=list(shape), sigma2=sigma2, m_times_ks=stat,
                          critical=critical[shape], exceeds=bool(stat > critical[shape]), tw_scaled_lmax=t,
                          edge_outside=bool(t < lo or t > hi)))
  n = len(details)
  exceed = sum(d["exceeds"] for d in details)
  outside = sum(d["edge_outside"] for d in details)
  allowed = binomial_upper_quantile(n, level, 1.0 - family_level / 2.0)
  ok = exceed <= allowed and outside <= allowed
  return Verdict(
      check=NAME,
      prediction="ESD of X = W^T W / N at initialisation ~ Marchenko-Pastur(q, sigma^2) with the initialiser's "
      "stated sigma^2 (no fit); (N l_max / sigma^2 - mu) / s ~ TW1 (Johnstone-Ma)",
      source="Marchenko & Pastur 1967; Johnstone 2001 Thm 1.1 with Ma 2012 centring; docs/THEORY.md#mp_at_init",
      tolerance=f"per matrix: M*KS <= simulated {1 - level:.0%} null quantile ({null_draws} Gaussian draws per "
      f"shape) and scaled l_max in TW1 [{level / 2:g}, {1 - level / 2:g}] quantiles = [{lo:.3f}, {hi:.3f}]; "
      f"{n} independent matrices (one member per seed), exceedances per family ~ Binomial({n}, {level}) must be "
      f"<= its {1 - family_level / 2:.1%} quantile = {allowed} (Bonferroni over 2 families)",
      status=PASS if ok else FAIL,
      measured=dict(bulk_exceedances=exceed, edge_exceedances=outside,
                    median_m_times_ks=float(np.median([d["m_times_ks"] for d in details])),
                    mean_tw_scaled_lmax=float(np.mean([d["tw_scaled_lmax"] for d in details]))),
      predicted=dict(bulk_exceedances=f"<= {allowed} (expected {n * level:.2f})",
                     edge_exceedances=f"<= {allowed} (expected {n * level:.2f})",
                     median_m_times_ks="O(1), see critical values",
                     mean_tw_scaled_lmax="TW1 mean -1.2065 (Bornemann 2010)"),
      details=details,
      run=str(run.path),
      series=dict(tw_scaled_lmax=[d["tw_scaled_lmax"] for d in details],
                  m_times_ks=[d["m_times_ks"] for d in details]),
  )


def run_config(quick: bool):
  """The training run whose step-0 spectra are tested: the main job's run (``models.presets``), tiny in quick
  mode."""
  from models.presets import default_config, tiny_config
  return tiny_config("tiny") if quick else default_config()


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0) -> Verdict:
  """Reuse (or produce, once) the main job's run folder and check its initial spectra."""
  from models.train import train_run
  del seed  # the run folder fixes the seeds
  run_dir = train_run(run_config(quick), runs_dir, progress=False)
  return check_run(load_run(run_dir), null_draws=200 if quick else 1000)


def calibrate(quick: bool = False, seed: int = 0, *, level: float = 0.01, shapes=None, trials: int | None = None,
              null_draws: int | None = None) -> dict:
  """False-alarm rates of the two per-matrix tests on fresh Gaussian matrices, and their power.

  Shapes default to the distinct shapes of the check's run config. Alternatives: a planted rank-one spike of
  strength ``theta = 2 q^(1/4)`` (twice the BBP threshold, ``spectral.bbp``) for the edge test; a variance stated
  1.5x too large for the bulk test.
  """
  from spectral.bbp import plant_spikes
  trials = trials or (150 if quick else 2000)
  null_draws = null_draws or (200 if quick else 1000)
  if shapes is None:
    from models.members import init_params
    from models.weight_matrices import weight_matrices
    params = init_params(run_config(quick), jax.random.PRNGKey(0))
    shapes = sorted({tuple(v.shape) for v in weight_matrices(params).values()})
  lo, hi = edge_bounds(level)
  rng = np.random.default_rng([seed, 1])
  rows = []
  for shape in shapes:
    crit = null_ks_critical_value(shape, level, null_draws, seed=seed)
    n, m = max(shape), min(shape)
    theta = 2.0 * (m / n) ** 0.25
    fa_bulk = fa_edge = pw_bulk = pw_edge = 0
    for i in range(trials):
      w = rng.standard_normal(shape)
      ev = esd_reference(w)
      s, t = matrix_stats(ev, shape, 1.0)
      fa_bulk += s > crit
      fa_edge += t < lo or t > hi
      s_wrong, _ = matrix_stats(ev, shape, 1.5)
      pw_bulk += s_wrong > crit
      ws, _, _ = plant_spikes(int(rng.integers(2**31)), shape, [theta])
      _, t_sp = matrix_stats(esd_reference(np.asarray(ws) * np.sqrt(n)), shape, 1.0)
      pw_edge += t_sp < lo or t_sp > hi
    rows.append(dict(shape=list(shape), trials=trials, false_alarm_bulk=fa_bulk / trials,
                     false_alarm_edge=fa_edge / trials, power_bulk_variance_x1p5=pw_bulk / trials,
                     power_edge_spike_2x_threshold=pw_edge / trials))
  total = trials * len(shapes)
  fa_b = sum(r["false_alarm_bulk"] * trials for r in rows)
  fa_e = sum(r["false_alarm_edge"] * trials for r in rows)
  return dict(check=NAME, level=level, trials=total, bound=common.rate_bound(total, level),
              false_alarm_bulk=fa_b / total, false_alarm_edge=fa_e / total,
              power_bulk=float(np.mean([r["power_bulk_variance_x1p5"] for r in rows])),
              power_edge=float(np.mean([r["power_edge_spike_2x_threshold"] for r in rows])), per_shape=rows)
