"""Power-law fits: the powerlaw package as oracle, recovery from Pareto samples, invariances, batching."""

import warnings

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from spectral import power_law as pl

powerlaw = pytest.importorskip("powerlaw")


def _pareto(rng, n, alpha, xmin=1.0):
  return xmin * (1.0 - rng.uniform(size=n)) ** (-1.0 / (alpha - 1.0))


def _mixture(seed, alpha=2.5):
  rng = np.random.default_rng(seed)
  x = np.concatenate([rng.uniform(0.1, 1.0, 150), _pareto(rng, 250, alpha)])
  return x.astype(np.float32).astype(np.float64)  # exactly representable on the float32 path


def _oracle(x, **kw):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return powerlaw.Fit(x, parameter_ranges={"alpha": [1, None]}, verbose=False, **kw)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_powerlaw_package_with_its_ks_convention(seed):
  x = _mixture(seed)
  ours = pl.fit_power_law(x, ks="powerlaw")
  ref = _oracle(x)
  assert float(ours.xmin) == pytest.approx(ref.xmin, rel=1e-6)
  assert float(ours.alpha) == pytest.approx(ref.power_law.alpha, rel=2e-6)
  assert float(ours.ks) == pytest.approx(ref.power_law.D, abs=2e-6)
  assert int(ours.n_tail) == np.sum(x >= ref.xmin)
  assert float(ours.alpha_se) == pytest.approx((ref.power_law.alpha - 1) / np.sqrt(ours.n_tail), rel=1e-5)


def test_sup_ks_is_the_exact_supremum_and_bounds_powerlaw_distance():
  x = _mixture(3)
  ours = pl.fit_power_law(x)
  tail = np.sort(x[x >= float(ours.xmin)])
  n = tail.size
  a, _, _ = pl.power_law_mle(x, float(ours.xmin))
  f = 1 - (tail / tail[0]) ** (1 - a)
  i = np.arange(1, n + 1)
  assert float(ours.ks) == pytest.approx(max(np.max(i / n - f), np.max(f - (i - 1) / n)), abs=2e-6)
  # At its own xmin, powerlaw's distance never exceeds the supremum.
  ref = _oracle(x, xmin=float(ours.xmin))
  assert ref.power_law.D <= float(ours.ks) + 1e-6
  assert float(ours.alpha) == pytest.approx(ref.power_law.alpha, rel=2e-6)


@pytest.mark.parametrize("alpha", [1.8, 2.5, 4.0])
def test_recovers_alpha_from_pareto_samples(alpha):
  rng = np.random.default_rng(int(alpha * 10))
  x = _pareto(rng, 3000, alpha, xmin=2.0)
  fit = pl.fit_power_law(x)
  # xmin chosen by KS leaves most of a pure Pareto sample; alpha within 4 standard errors.
  assert abs(float(fit.alpha) - alpha) < 4 * float(fit.alpha_se)
  assert float(fit.xmin) >= 2.0


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(log_scale=st.floats(-6, 6), seed=st.integers(0, 5))
def test_scale_invariance(log_scale, seed):
  x = _mixture(seed)
  c = 10.0**log_scale
  a, b = pl.fit_power_law(x), pl.fit_power_law(c * x)
  assert float(b.alpha) == pytest.approx(float(a.alpha), rel=1e-4)
  assert float(b.xmin) == pytest.approx(c * float(a.xmin), rel=1e-5)
  assert int(b.n_tail) == int(a.n_tail)


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(perm_seed=st.integers(0, 2**31 - 1))
def test_permutation_invariance(perm_seed):
  x = _mixture(4)
  y = np.random.default_rng(perm_seed).permutation(x)
  a, b = pl.fit_power_law(x), pl.fit_power_law(y)
  assert float(a.alpha) == float(b.alpha) and float(a.xmin) == float(b.xmin)


def test_batched_with_mask_equals_individual_fits():
  xs = [_mixture(s) for s in range(3)]
  lengths = [400, 300, 350]
  batch = np.zeros((3, 400))
  mask = np.zeros((3, 400), bool)
  for i, (x, n) in enumerate(zip(xs, lengths)):
    batch[i, :n], mask[i, :n] = x[:n], True
  fit = pl.fit_power_law(batch, mask)
  assert fit.alpha.shape == (3,)
  for i, (x, n) in enumerate(zip(xs, lengths)):
    single = pl.fit_power_law(x[:n])
    assert float(fit.alpha[i]) == pytest.approx(float(single.alpha), rel=1e-6)
    assert int(fit.n_tail[i]) == int(single.n_tail)


def test_degenerate_and_bad_inputs():
  fit = pl.fit_power_law(np.array([1.0, 1.0, 0.0]))
  assert np.isnan(float(fit.alpha)) and int(fit.n_tail) == 0
  with pytest.raises(ValueError, match="ks"):
    pl.fit_power_law(np.ones(4), ks="ad")
  with pytest.raises(ValueError, match="mask"):
    pl.fit_power_law(np.ones(4), np.ones(3, bool))
  with pytest.raises(ValueError, match="min_tail"):
    pl.fit_power_law(np.ones(4), min_tail=1)
  with pytest.raises(ValueError, match="xmin"):
    pl.power_law_mle(np.ones(4), -1.0)


def test_truncated_power_law_recovery_and_oracle():
  rng = np.random.default_rng(7)
  alpha, lam = 1.8, 0.02
  x = _pareto(rng, 20000, alpha)
  x = x[rng.uniform(size=x.size) < np.exp(-lam * (x - 1.0))][:4000]  # exact rejection sampling
  fit = pl.fit_truncated_power_law(x, 1.0)
  assert abs(fit.alpha - alpha) < 0.1
  assert abs(np.log(fit.lam / lam)) < 0.4
  assert fit.loglik > fit.loglik_power_law  # the cut-off is real
  ref = _oracle(x, xmin=1.0).truncated_power_law
  # Our optimum is at least as good as the oracle's (same likelihood, same data).
  assert fit.loglik >= np.sum(ref.loglikelihoods(x)) - 1e-6
