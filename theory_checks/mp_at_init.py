"""Check: at initialisation every weight matrix's ESD follows Marchenko-Pastur with its stated variance.

Prediction (Marchenko & Pastur 1967; THEORY.md section 1): a matrix with iid N(0, sigma^2) entries, oriented
``N x M`` with ``q = M / N``, has ESD of ``X = W^T W / N`` close to MP(q, sigma^2) with no parameter fitted:
``sigma^2`` is the initialiser's stated variance (``models.transformer.init_variance``).

Measurement: the step-0 spectra of every weight matrix of every member of a run folder; the statistic is
``M * KS(ESD, MP(q, sigma^2))``. Eigenvalues are rigid, so KS shrinks like 1/M and ``M * KS`` stays O(1); it is not an
iid KS statistic, so its null distribution is simulated: for each distinct shape, ``null_draws`` Gaussian matrices
(seeded) give the per-matrix critical value at ``1 - level``.

Tolerance: under the null each matrix exceeds its critical value with probability ``level``, so the number of
exceedances among ``n`` matrices is Binomial(n, level). The check PASSes when that count is within the binomial
``1 - family_level`` quantile: a calibrated family-wise rule, not a hand-picked margin.
"""

from __future__ import annotations

import math

import numpy as np

from models.run_folder import Run
from spectral.esd import aspect_ratio, esd_reference
from spectral.marchenko_pastur import mp_ks_distance
from theory_checks.verdict import FAIL, PASS, Verdict

NAME = "mp_at_init"


def null_ks_critical_value(shape: tuple[int, int], level: float, draws: int, seed: int = 0) -> float:
  """``1 - level`` quantile of ``M * KS`` for Gaussian matrices of ``shape`` against MP(q, 1) (Monte Carlo)."""
  rng = np.random.default_rng([seed, *shape])
  m, q = min(shape), aspect_ratio(shape)
  stats = [m * mp_ks_distance(esd_reference(rng.standard_normal(shape)), q, 1.0) for _ in range(draws)]
  return float(np.quantile(stats, 1.0 - level))


def binomial_upper_quantile(n: int, p: float, prob: float) -> int:
  """Smallest ``k`` with ``P(Binomial(n, p) <= k) >= prob``."""
  cdf = 0.0
  for k in range(n + 1):
    cdf += math.comb(n, k) * p**k * (1 - p) ** (n - k)
    if cdf >= prob:
      return k
  return n


def check_run(run: Run, *, level: float = 0.01, family_level: float = 0.01, null_draws: int = 400,
              variance_factor: float = 1.0) -> Verdict:
  """Run the check on a run folder's step-0 spectra.

  ``variance_factor`` multiplies the stated variance; it exists so tests can force a deliberately wrong prediction
  and see the check FAIL.
  """
  if 0 not in run.spectra:
    raise ValueError(f"run {run.name}: no step-0 snapshot; the check needs the spectra at initialisation")
  critical = {}
  details = []
  for name, ev_members in sorted(run.spectra[0].items()):
    meta = run.info["matrices"][name]
    shape = tuple(meta["shape"])
    if shape not in critical:
      critical[shape] = null_ks_critical_value(shape, level, null_draws)
    m, q = min(shape), aspect_ratio(shape)
    for member, ev in enumerate(ev_members):
      sigma2 = run.init_variance(name, member) * variance_factor
      stat = m * mp_ks_distance(ev, q, sigma2)
      details.append(dict(matrix=name, member=member, shape=list(shape), sigma2=sigma2, m_times_ks=stat,
                          critical=critical[shape], exceeds=bool(stat > critical[shape])))
  n = len(details)
  exceed = sum(d["exceeds"] for d in details)
  allowed = binomial_upper_quantile(n, level, 1.0 - family_level)
  return Verdict(
      check=NAME,
      prediction="ESD of X = W^T W / N at initialisation ~ Marchenko-Pastur(q, sigma^2) with the initialiser's "
      "stated sigma^2 (no fit)",
      source="Marchenko & Pastur 1967; THEORY.md section 1 (rigidity: KS ~ 1/M)",
      tolerance=f"per matrix M*KS <= simulated {1 - level:.0%} null quantile ({null_draws} Gaussian draws per "
      f"shape); exceedances ~ Binomial({n}, {level}) must be <= its {1 - family_level:.0%} quantile = {allowed}",
      status=PASS if exceed <= allowed else FAIL,
      measured=dict(exceedances=exceed, median_m_times_ks=float(np.median([d["m_times_ks"] for d in details]))),
      predicted=dict(exceedances=f"<= {allowed} (expected {n * level:.2f})",
                     median_m_times_ks="O(1), see critical values"),
      details=details,
      run=str(run.path),
  )
