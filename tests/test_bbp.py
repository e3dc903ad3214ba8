"""BBP predictions against planted spikes, detection above threshold, and robust sigma^2 with spikes present."""

import numpy as np
import pytest

from spectral import bbp
from spectral import esd as esd_lib
from spectral import marchenko_pastur as mp
from spectral import tracy_widom as tw


def test_formulas_at_and_around_threshold():
  q = 0.25
  tc = bbp.bbp_threshold(q)
  assert tc == pytest.approx(q**0.25)
  # Continuity at the threshold: outlier meets the edge, overlaps vanish.
  s = bbp.bbp_top_singular_value([tc * (1 - 1e-9), tc * (1 + 1e-9)], q)
  np.testing.assert_allclose(s, 1 + np.sqrt(q), rtol=1e-7)
  lo, sh = bbp.bbp_overlaps(np.array([0.5, 2.0]), q)
  assert lo[0] == 0 and sh[0] == 0
  assert lo[1] == pytest.approx((16 - q) / (4 * 5)) and sh[1] == pytest.approx((16 - q) / (4 * (4 + q)))
  # Strong spikes: the singular value tends to theta, overlaps to 1.
  assert bbp.bbp_top_singular_value(1e4, q) == pytest.approx(1e4, rel=1e-6)
  with pytest.raises(ValueError, match="q"):
    bbp.bbp_threshold(1.5)
  with pytest.raises(ValueError, match="theta"):
    bbp.bbp_overlaps(-1.0, 0.5)


def test_plant_spikes_shapes_and_orthonormality():
  w, u, v = bbp.plant_spikes(0, (40, 100), [3.0, 2.0])
  assert w.shape == (40, 100) and u.shape == (100, 2) and v.shape == (40, 2)
  np.testing.assert_allclose(np.asarray(u.T @ u), np.eye(2), atol=1e-5)
  w0, _, _ = bbp.plant_spikes(0, (40, 100), [])
  assert w0.shape == (40, 100)
  with pytest.raises(ValueError, match="shape"):
    bbp.plant_spikes(0, (1, 10), [1.0])


def test_planted_rank2_spikes_match_predicted_values_and_overlaps():
  n, m = 2000, 500
  q = m / n
  thetas = np.array([2.5, 1.5])  # both clearly above theta_c = 0.707
  w, u, v = bbp.plant_spikes(1, (n, m), thetas, dtype=np.float32)
  uh, s, vht = np.linalg.svd(np.asarray(w, dtype=np.float64), full_matrices=False)
  pred = bbp.bbp_top_singular_value(thetas, q)
  # O(N^-1/2) fluctuations: 3 / sqrt(N) ~ 0.07 absolute.
  np.testing.assert_allclose(s[:2], pred, atol=3 / np.sqrt(n))
  pred_long, pred_short = bbp.bbp_overlaps(thetas, q)
  got_long = np.sum(uh[:, :2] * np.asarray(u, np.float64), axis=0) ** 2
  got_short = np.sum(vht[:2].T * np.asarray(v, np.float64), axis=0) ** 2
  np.testing.assert_allclose(got_long, pred_long, atol=5 / np.sqrt(m))
  np.testing.assert_allclose(got_short, pred_short, atol=5 / np.sqrt(m))
  # Below-threshold behaviour: the third singular value is at the bulk edge.
  assert abs(s[2] - (1 + np.sqrt(q))) < 5 * n ** (-2 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detection_above_threshold_none_below(seed):
  n, m = 800, 200
  q = m / n
  tc = bbp.bbp_threshold(q)
  w, _, _ = bbp.plant_spikes(seed, (m, n), [2.0 * tc, 1.6 * tc, 0.5 * tc])
  ev = esd_lib.esd_reference(np.asarray(w))
  assert tw.count_outliers(ev, w.shape, level=0.01) == 2


def test_mp_sigma2_recovered_within_one_percent_with_spikes():
  # The acceptance: 1000 x 4000 Gaussian with planted spikes, sigma^2 within 1%.
  sigma = 1.7
  w, _, _ = bbp.plant_spikes(5, (1000, 4000), [3.0, 2.5, 2.0, 1.5, 1.2])
  w = np.asarray(w, np.float64) * sigma * np.sqrt(4000)  # entries of variance sigma^2, spikes scaled alike
  ev = esd_lib.esd_reference(w)
  est = mp.fit_mp_sigma2(ev, 0.25)
  assert abs(est / sigma**2 - 1) < 0.01
  # The trace estimator is biased upward by the spikes (here by sum theta^2 / M ~ 2%): the reason for the median.
  assert ev.mean() / sigma**2 - 1 > 0.015
