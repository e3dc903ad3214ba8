"""The host (numpy, nothing compiled) metric path gives the compiled path's numbers."""

import jax
import numpy as np
import pytest

from spectral import analyze
from spectral import host_metrics
from spectral import metrics
from spectral import power_law
from spectral import tracy_widom as tw


@pytest.mark.parametrize("ks", ["sup", "powerlaw", "clauset"])
def test_power_law_fit_equals_the_jax_fit_in_float64(ks):
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.pareto(2.5, size=(3, 300)) + 1.0, np.zeros((3, 5)), np.full((3, 2), np.nan)], axis=1)
  x[1, :40] = x[1, 40]  # ties
  with jax.enable_x64(True):
    ref = power_law.fit_power_law(x, ks=ks, min_tail=5)
    ref = {k: np.asarray(v) for k, v in ref._asdict().items()}
  got = host_metrics.fit_power_law(x, ks=ks, min_tail=5, block=64)
  for k in ("n_tail", "n_valid", "status"):
    np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
  np.testing.assert_array_equal(got["xmin"], ref["xmin"])
  for k in ("alpha", "alpha_se", "ks", "xmax"):
    np.testing.assert_allclose(got[k], ref[k], rtol=1e-12, err_msg=k)
  none = host_metrics.fit_power_law(np.ones((1, 4)))
  assert none["n_tail"][0] == 0 and np.isnan(none["alpha"][0]) and none["status"][0] == power_law.FIT_TOO_FEW_VALID


def test_analyze_numpy_backend_matches_jax_backend():
  rng = np.random.default_rng(1)
  mats = {"t": rng.standard_t(3, size=(40, 100)).astype(np.float32), "g": rng.normal(size=(60, 30)).astype(np.float32),
          # rank 3: the round-off floor masks 37 eigenvalues, the power-law fit fails, no MP bulk ("fit failed: ...")
          "low": (rng.normal(size=(40, 3)) @ rng.normal(size=(3, 70))).astype(np.float32)}
  by_jax = analyze.analyze(mats, randomize=True, backend="jax")
  by_numpy = analyze.analyze(mats, randomize=True, backend="numpy")
  assert by_jax[2]["numerical_rank"] == 3 and by_jax[2]["status"].startswith("fit failed:")
  for a, b in zip(by_jax, by_numpy):
    assert a["n_tail"] == b["n_tail"] and a["n_outliers"] == b["n_outliers"] and a["status"] == b["status"]
    for k in (*metrics.METRIC_NAMES, *(f"rand_{k}" for k in metrics.METRIC_NAMES)):
      if isinstance(a[k], str) or a[k] is None:  # mp_sigma2_estimator, alpha_status; n_outliers with no MP bulk
        assert b[k] == a[k], k
      elif not (a["name"] == "low" and k == "entropy_rank"):
        # float32 compiled path vs float64 host path: float32 round-off on eigenvalues of O(1) condition. (The rank-3
        # matrix's entropy_rank sums sqrt of its 37 round-off eigenvalues, in which the two eigensolvers differ.)
        assert b[k] == pytest.approx(a[k], rel=2e-4, abs=1e-6, nan_ok=True), k

def test_smoothed_tw_quantile_solves_its_equation_with_the_exact_cdf():
  z, wz = np.polynomial.hermite_e.hermegauss(32)
  wz = wz / wz.sum()
  for tau in (0.3, 1.1):
    q = tw._smoothed_quantile_cached(0.99, tau)
    exact = sum(w * tw._cdf_and_pdf_scalar(q - tau * zi, 1, 56)[0] for w, zi in zip(wz, z))
    assert exact == pytest.approx(0.99, abs=1e-11)
