"""Tracy-Widom laws against published values, and the Johnstone-Ma spike test on pure noise."""

import numpy as np
import pytest
from scipy import stats

from spectral import esd as esd_lib
from spectral import marchenko_pastur as mp
from spectral import tracy_widom as tw

# Bornemann 2010 (Math. Comp. 79:871), Table 10.
TW1_MEAN, TW1_VAR = -1.2065335745820, 1.6077810345810
TW2_MEAN, TW2_VAR = -1.7710868074, 0.8131947928


def _moments(beta):
  x, w = np.polynomial.legendre.leggauss(200)
  lo, hi = -13.0, 20.0
  s, w = lo + (hi - lo) * (x + 1) / 2, w * (hi - lo) / 2
  f = tw.tw_pdf(s, beta)
  mass = np.sum(w * f)
  mean = np.sum(w * s * f)
  return mass, mean, np.sum(w * (s - mean) ** 2 * f)


def test_tw1_moments_match_bornemann():
  mass, mean, var = _moments(1)
  assert abs(mass - 1) < 1e-12
  assert abs(mean - TW1_MEAN) < 1e-11
  assert abs(var - TW1_VAR) < 1e-11


def test_tw2_moments_match_bornemann():
  mass, mean, var = _moments(2)
  assert abs(mass - 1) < 1e-12
  # The published values have 10 decimals.
  assert abs(mean - TW2_MEAN) < 1e-10
  assert abs(var - TW2_VAR) < 1e-10


@pytest.mark.parametrize("beta", [1, 2])
def test_density_is_derivative_of_cdf_and_cdf_converged_in_nodes(beta):
  s = np.array([-4.0, -2.0, -0.5, 1.0, 3.0])
  h = 1e-4
  fd = (tw.tw_cdf(s + h, beta) - tw.tw_cdf(s - h, beta)) / (2 * h)
  np.testing.assert_allclose(tw.tw_pdf(s, beta), fd, rtol=1e-7, atol=1e-10)
  np.testing.assert_allclose(tw.tw_cdf(s, beta, nodes=60), tw.tw_cdf(s, beta, nodes=120), rtol=0, atol=1e-14)


@pytest.mark.parametrize("beta", [1, 2])
def test_quantile_inverts_cdf(beta):
  p = np.array([0.01, 0.5, 0.95, 0.99])
  np.testing.assert_allclose(tw.tw_cdf(tw.tw_quantile(p, beta), beta), p, rtol=0, atol=1e-13)


def test_bad_inputs_named():
  with pytest.raises(ValueError, match="beta"):
    tw.tw_cdf(0.0, beta=4)
  with pytest.raises(ValueError, match="p:"):
    tw.tw_quantile(1.0)
  with pytest.raises(ValueError, match="level"):
    tw.wishart_tw_threshold((10, 20), 1.0, level=0.0)
  with pytest.raises(ValueError, match="sigma2"):
    tw.wishart_tw_threshold((10, 20), -1.0)
  with pytest.raises(ValueError, match="eigenvalues"):
    tw.count_outliers(np.ones(5), (10, 20))


def test_threshold_formula_in_our_convention():
  n, p, sigma2, level = 200, 50, 2.5, 0.05
  sn, sp = np.sqrt(n - 0.5), np.sqrt(p - 0.5)
  expected = sigma2 * ((sn + sp) ** 2 + (sn + sp) * (1 / sn + 1 / sp) ** (1 / 3) * tw.tw_quantile(1 - level)) / n
  assert tw.wishart_tw_threshold((p, n), sigma2, level) == pytest.approx(expected, rel=1e-14)
  # Above the MP edge sigma2 (1 + sqrt(q))^2, and converging to it as N grows.
  assert expected > mp.mp_edges(p / n, sigma2)[1]


def _false_alarms(n_seeds, shape, level, seed0=0):
  alarms = 0
  for seed in range(seed0, seed0 + n_seeds):
    w = np.random.default_rng(seed).normal(size=shape)
    alarms += tw.count_outliers(esd_lib.esd_reference(w), shape, None, level) > 0
  return alarms


def test_false_alarm_rate_on_pure_noise_fast():
  # 300 Gaussian 30 x 60 matrices at level 0.1, sigma2 estimated by the median. If the test were calibrated the
  # count would be Binomial(300, 0.1); we assert the rate is not above twice nominal: P(Bin(300, 0.2) <= bound)
  # with bound the 1e-4 upper quantile of the nominal law, i.e. a calibrated test fails this with prob. < 1e-4.
  n_seeds, level = 300, 0.1
  alarms = _false_alarms(n_seeds, (30, 60), level)
  assert alarms <= stats.binom.ppf(1 - 1e-4, n_seeds, level) < 2 * level * n_seeds
  assert alarms >= stats.binom.ppf(1e-4, n_seeds, level / 2)  # not vacuous either


@pytest.mark.slow
def test_false_alarm_rate_on_pure_noise_many_seeds():
  n_seeds, level = 4000, 0.01
  alarms = _false_alarms(n_seeds, (100, 250), level, seed0=10_000)
  assert alarms <= stats.binom.ppf(1 - 1e-4, n_seeds, level)
