"""Per-matrix metrics against direct float64 formulas."""

import numpy as np
import pytest

from spectral import esd as esd_lib
from spectral import marchenko_pastur as mp
from spectral import metrics
from spectral import power_law
from spectral import tracy_widom


def test_metrics_match_definitions_on_a_noise_matrix():
  rng = np.random.default_rng(0)
  shape = (60, 150)
  w = rng.normal(scale=0.3, size=shape)
  ev = esd_lib.esd_reference(w)
  got = metrics.matrix_metrics(ev, shape)
  assert set(got) == set(metrics.METRIC_NAMES)
  n = 150
  s = np.linalg.svd(w, compute_uv=False)
  assert got["lambda_max"] == pytest.approx(s[0] ** 2 / n, rel=1e-5)
  assert got["log10_spectral_norm"] == pytest.approx(np.log10(s[0] ** 2 / n), abs=1e-6)
  assert got["log10_frobenius_norm"] == pytest.approx(np.log10(np.sum(w**2) / n), abs=1e-6)
  assert got["stable_rank"] == pytest.approx(np.sum(w**2) / s[0] ** 2, rel=1e-5)
  p = s / s.sum()
  assert got["entropy_rank"] == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-5)
  a, _, _ = power_law.power_law_mle(ev.astype(np.float32).astype(np.float64), got["xmin"])  # fit ran in float32
  assert got["alpha"] == pytest.approx(a, rel=1e-5)
  assert got["alpha_weighted"] == pytest.approx(got["alpha"] * np.log10(got["lambda_max"]), rel=1e-6)
  assert got["mp_sigma2"] == pytest.approx(mp.fit_mp_sigma2(ev, 0.4), rel=1e-6)
  # Within 4 standard errors of the median estimator (rigidity-based sd, spectral.tracy_widom).
  assert got["mp_sigma2"] == pytest.approx(0.09, rel=4 * tracy_widom.median_sigma2_relative_sd(shape))
  assert got["mp_edge"] == pytest.approx(got["mp_sigma2"] * (1 + np.sqrt(0.4)) ** 2)
  assert got["n_outliers"] == 0
  assert got["mp_ks"] < 5.0 / 60
  assert abs(got["spacing_ratio"] - 0.5307) < 4 * got["spacing_ratio_se"]


def test_outliers_counted_and_weightwatcher_mapping():
  rng = np.random.default_rng(1)
  shape = (80, 200)
  w = rng.normal(size=shape)
  w += 3 * np.outer(rng.normal(size=80), rng.normal(size=200)) / np.sqrt(200)
  ev = esd_lib.esd_reference(w)
  got = metrics.matrix_metrics(ev, shape)
  assert got["n_outliers"] == 1
  # WeightWatcher's eigenvalues are N times ours: alpha unchanged, log norms shift by log10 N.
  ww = esd_lib.to_weightwatcher(ev, shape)
  fit_ww = power_law.fit_power_law(ww)
  assert float(fit_ww.alpha) == pytest.approx(got["alpha"], rel=1e-4)
  assert np.log10(ww.max()) == pytest.approx(got["log10_spectral_norm"] + np.log10(200), abs=1e-6)


def test_bad_eigenvalue_shapes():
  with pytest.raises(ValueError, match="eigenvalues"):
    metrics.matrix_metrics(np.ones((2, 3)), (2, 3))
  with pytest.raises(ValueError, match="eigenvalues"):
    metrics.batch_metrics(np.ones((1, 5)), (4, 8))
