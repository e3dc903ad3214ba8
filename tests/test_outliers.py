"""The one outlier pipeline (spectral.outliers.mp_outliers) against its formulas, batched and per estimator."""

import numpy as np
import pytest

from spectral import bbp
from spectral import esd as esd_lib
from spectral import marchenko_pastur as mp
from spectral import tracy_widom as tw
from spectral.outliers import mp_outliers


def _spiked_batch(shape=(60, 180), thetas=((), (3.0,), (3.0, 2.5)), sigma=0.5):
  # W = sum theta u v^T + G / sqrt(N): the ESD of sqrt(N) sigma W is MP(q, sigma^2) plus spikes.
  return np.stack([esd_lib.esd_reference(sigma * np.sqrt(max(shape)) * np.asarray(
      bbp.plant_spikes(seed, shape, list(th))[0], np.float64)) for seed, th in enumerate(thetas)])


def test_median_estimator_matches_its_formulas_and_counts_planted_spikes():
  shape, level = (60, 180), 0.01
  ev = _spiked_batch(shape)
  res = mp_outliers(ev, shape, level=level)
  q = 60 / 180
  assert res.estimator == "median" and res.valid.all()
  for i in range(ev.shape[0]):
    s2 = np.median(ev[i]) / mp.mp_quantile(0.5, q)
    thr = tw.wishart_tw_threshold(shape, s2, level, tw.median_sigma2_relative_sd(shape))
    assert res.sigma2[i] == pytest.approx(s2, rel=1e-14)
    assert res.edge[i] == pytest.approx(mp.mp_edges(q, s2)[1], rel=1e-14)
    assert res.threshold[i] == pytest.approx(thr, rel=1e-14)
    assert res.n_outliers[i] == np.sum(ev[i] > thr)
    bulk = np.sort(ev[i])[: ev.shape[1] - int(res.n_outliers[i])]
    assert res.bulk_ks[i] == pytest.approx(mp.mp_ks_distance(bulk, q, s2), rel=1e-14)
  # Spikes at theta = 3, 2.5 (well above the BBP threshold q^(1/4) ~ 0.76 in units of sigma) are all found.
  assert list(res.n_outliers) == [0, 1, 2]


def test_trace_and_stated_estimators_and_partial_spectra():
  shape = (60, 180)
  ev = _spiked_batch(shape)
  trace = mp_outliers(ev, shape, estimator="trace")
  np.testing.assert_allclose(trace.sigma2, ev.mean(axis=1), rtol=1e-14)
  # No widening for an estimate other than the median: the plain Johnstone-Ma threshold.
  assert trace.threshold[0] == pytest.approx(tw.wishart_tw_threshold(shape, trace.sigma2[0], 0.01), rel=1e-14)
  # Top-k only: same threshold and count from the caller's trace, no bulk KS.
  top = mp_outliers(np.sort(ev)[:, -5:], shape, sigma2=trace.sigma2, estimator="trace")
  np.testing.assert_array_equal(top.n_outliers, trace.n_outliers)
  assert np.isnan(top.bulk_ks).all() and np.isfinite(trace.bulk_ks).all()
  stated = mp_outliers(ev, shape, sigma2=0.25, estimator="stated")
  assert stated.estimator == "stated" and np.all(stated.sigma2 == 0.25)
  assert tw.count_outliers(ev[2], shape, sigma2=0.25) == stated.n_outliers[2]
  assert tw.count_outliers(ev[2], shape) == mp_outliers(ev, shape).n_outliers[2]


def test_no_bulk_when_the_median_is_zero():
  ev = np.zeros((1, 40))
  ev[0, -5:] = [1.0, 2.0, 3.0, 4.0, 5.0]
  res = mp_outliers(ev, (40, 80))
  assert not res.valid[0] and np.isnan(res.threshold[0]) and np.isnan(res.n_outliers[0])
  assert np.isnan(res.bulk_ks[0])
  with pytest.raises(ValueError, match="not positive"):
    tw.count_outliers(ev[0], (40, 80))


def test_bad_arguments_are_named():
  ev = np.ones((2, 10))
  with pytest.raises(ValueError, match="estimator"):
    mp_outliers(ev, (10, 20), estimator="mean")
  with pytest.raises(ValueError, match="sigma2"):
    mp_outliers(ev, (10, 20), sigma2=1.0)
  with pytest.raises(ValueError, match="sigma2"):
    mp_outliers(ev, (10, 20), estimator="stated")
  with pytest.raises(ValueError, match="eigenvalues"):
    mp_outliers(ev[:, :5], (10, 20))
  with pytest.raises(ValueError, match="eigenvalues"):
    mp_outliers(ev[0], (10, 20))
  with pytest.raises(ValueError, match="level"):
    mp_outliers(ev, (10, 20), level=1.0)
  with pytest.raises(ValueError, match="shape"):
    mp_outliers(ev, (10,))
