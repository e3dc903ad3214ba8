"""BBP predictions against planted spikes, detection above threshold, and robust sigma^2 with spikes present."""

import numpy as np
import pytest
from scipy import stats

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


# Rank-2 planted spikes at q = 0.1 (theta_c = 0.562), both clearly above the critical window N^(-1/3) = 0.1. At
# q = 0.1 the long-side and short-side overlap formulas differ by 0.26 (theta = 1.5) and 0.38 (theta = 0.9), tens of
# standard errors of the 16-seed means, so the tolerance below cannot accept one formula for the other.
PLANTED = dict(shape=(1000, 100), thetas=(1.5, 0.9), seeds=16)


def _planted_top_triplets(shape, thetas, seeds):
  """Per seed: top ``k + 1`` singular values of ``W`` (seeds, k + 1) and the squared overlaps of the top ``k`` left
  (long side) and right (short side) singular vectors with the planted ``u`` and ``v`` (seeds, k), from the float64
  eigendecomposition of ``W^T W`` (``v_hat`` its eigenvectors, ``u_hat = W v_hat / s``)."""
  k = len(thetas)
  s_all, over_u, over_v = [], [], []
  for seed in range(seeds):
    w, u, v = bbp.plant_spikes(seed, shape, list(thetas), dtype=np.float32)
    w, u, v = (np.asarray(a, np.float64) for a in (w, u, v))
    evals, evecs = np.linalg.eigh(w.T @ w)
    s = np.sqrt(np.clip(evals[::-1][: k + 1], 0.0, None))
    v_hat = evecs[:, ::-1][:, :k]
    u_hat = w @ v_hat / s[:k]
    s_all.append(s)
    over_u.append(np.sum(u_hat * u, axis=0) ** 2)
    over_v.append(np.sum(v_hat * v, axis=0) ** 2)
  return np.asarray(s_all), np.asarray(over_u), np.asarray(over_v)


def _agrees(per_seed, predicted, n, comparisons, family=1e-3):
  """Per spike, ``|mean - predicted| <= t SE + 4 / N``: ``t`` the Student quantile at ``1 - family / (2 comparisons)``
  (Bonferroni) for seeds - 1 degrees of freedom, SE over seeds, ``4 / N`` the O(1/N) finite-size bias of the BBP
  limits (the same allowance as theory_checks.bbp)."""
  seeds = per_seed.shape[0]
  se = per_seed.std(axis=0, ddof=1) / np.sqrt(seeds)
  t = stats.t.ppf(1 - family / (2 * comparisons), seeds - 1)
  return np.abs(per_seed.mean(axis=0) - predicted) <= t * se + 4.0 / n


@pytest.fixture(scope="module")
def planted():
  n, m = PLANTED["shape"]
  s, over_u, over_v = _planted_top_triplets(PLANTED["shape"], PLANTED["thetas"], PLANTED["seeds"])
  return dict(n=n, q=m / n, thetas=np.asarray(PLANTED["thetas"]), s=s, over_u=over_u, over_v=over_v)


def test_planted_rank2_spikes_match_predicted_values_and_overlaps(planted):
  n, q, thetas = planted["n"], planted["q"], planted["thetas"]
  k = thetas.size
  pred_long, pred_short = bbp.bbp_overlaps(thetas, q)
  assert np.all(_agrees(planted["s"][:, :k], bbp.bbp_top_singular_value(thetas, q), n, 3 * k))
  assert np.all(_agrees(planted["over_u"], pred_long, n, 3 * k))
  assert np.all(_agrees(planted["over_v"], pred_short, n, 3 * k))
  # The next singular value belongs to the bulk: at its edge 1 + sqrt(q) within the Tracy-Widom scale N^(-2/3).
  assert np.max(np.abs(planted["s"][:, k] - (1 + np.sqrt(q)))) < 5 * n ** (-2 / 3)


def test_overlap_tolerance_rejects_long_and_short_sides_swapped(planted):
  # A wrong implementation of bbp_overlaps that returns the two sides in the other order must fail the comparison
  # above for every spike, on both sides.
  n, q, thetas = planted["n"], planted["q"], planted["thetas"]
  pred_long, pred_short = bbp.bbp_overlaps(thetas, q)
  assert np.all(np.abs(pred_long - pred_short) > 0.25)
  assert not np.any(_agrees(planted["over_u"], pred_short, n, 3 * thetas.size))
  assert not np.any(_agrees(planted["over_v"], pred_long, n, 3 * thetas.size))


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
