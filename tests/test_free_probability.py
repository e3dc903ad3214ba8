"""Fuss-Catalan and mean-field Jacobian predictions, and Monte Carlo on random networks through spectral.jacobian."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from spectral import free_probability as fp
from spectral import jacobian as jc
from spectral import marchenko_pastur as mp


def test_fuss_catalan_moments_known_values():
  # L = 1: Catalan numbers; L = 2: the ternary (3-) Catalan numbers binom(3k, k) / (2k + 1).
  assert [fp.fuss_catalan_moment(k, 1) for k in range(5)] == [1, 1, 2, 5, 14]
  assert [fp.fuss_catalan_moment(k, 2) for k in range(5)] == [1, 1, 3, 12, 55]
  assert fp.fuss_catalan_moment(2, 7) == 8  # second moment L + 1
  assert fp.fuss_catalan_edge(1) == 4.0 and fp.fuss_catalan_edge(2) == 6.75


def test_fuss_catalan_density_l1_is_marchenko_pastur_q1():
  x = np.linspace(0.05, 3.95, 40)
  np.testing.assert_allclose(fp.fuss_catalan_pdf(x, 1), mp.mp_pdf(x, 1.0, 1.0), rtol=1e-10)


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_fuss_catalan_density_moments_match_formula(depth):
  # int x^k p(x) dx through the parametrisation: dx = |x'(u)| du; the integrable singularity at x = 0 (u -> pi/(L+1))
  # is handled by quad's adaptive rule on the smooth u-integrand.
  top = np.pi / (depth + 1)
  dx = lambda u: (fp.fuss_catalan_parametric(u + 1e-7, depth)[0] - fp.fuss_catalan_parametric(u - 1e-7, depth)[0]) / 2e-7
  for k in range(4):
    integrand = lambda u: (lambda xp: xp[0] ** k * xp[1])(fp.fuss_catalan_parametric(u, depth)) * abs(dx(u))
    got = integrate.quad(integrand, 1e-6, top - 1e-6, limit=400)[0]
    np.testing.assert_allclose(got, fp.fuss_catalan_moment(k, depth), rtol=2e-4)
  # The bisection inverse reproduces the parametric pair.
  u = np.linspace(0.05, top - 0.05, 7)
  x, p = fp.fuss_catalan_parametric(u, depth)
  np.testing.assert_allclose(fp.fuss_catalan_pdf(x, depth), p, rtol=1e-9)


def _deep_linear_squared_singular_values(key, n, depth, samples):
  """Squared singular values of W_L...W_1 (iid N(0, 1/n) entries) through jacobian_singular_values, vmapped."""
  def member(k):
    ws = jax.random.normal(k, (depth, n, n)) / np.sqrt(n)
    fn = lambda x: functools.reduce(lambda h, w: w @ h, list(ws), x)
    return jc.jacobian_singular_values(fn, jnp.zeros((n,)), method="exact") ** 2
  return np.asarray(jax.jit(jax.vmap(member))(jax.random.split(key, samples)), np.float64)


def test_fuss_catalan_moments_recovered_by_monte_carlo():
  depth, samples = 2, 200
  sizes = (32, 64)
  moments, errors = [], []
  for i, n in enumerate(sizes):
    s2 = _deep_linear_squared_singular_values(jax.random.key(i), n, depth, samples)  # (samples, n)
    per = np.stack([np.mean(s2**k, axis=1) for k in (1, 2, 3)], axis=1)  # (samples, 3)
    moments.append(per.mean(axis=0))
    errors.append(per.std(axis=0, ddof=1) / np.sqrt(samples))
  # Real Gaussian products have finite-n moments a_k + b_k / n + O(1/n^2); Richardson extrapolation from n and 2n
  # cancels b_k: 2 m(2n) - m(n). Its standard error is sqrt(4 se(2n)^2 + se(n)^2). Tolerance: 4 standard errors
  # plus the O(1/n^2) remainder, bounded by |m(2n) - m(n)| / n (the size of the 1/n term times 1/n).
  extrapolated = 2 * moments[1] - moments[0]
  se = np.sqrt(4 * errors[1] ** 2 + errors[0] ** 2)
  expected = np.array([fp.fuss_catalan_moment(k, depth) for k in (1, 2, 3)])
  remainder = np.abs(moments[1] - moments[0]) / sizes[0]
  print(f"extrapolated {extrapolated}, expected {expected}, se {se}, remainder {remainder}")
  assert np.all(np.abs(extrapolated - expected) < 4 * se + remainder), (extrapolated, expected, se, remainder)
  # The test can fail: the Marchenko-Pastur (L = 1) moments 2 and 5 are outside the same tolerance.
  wrong = np.array([1.0, 2.0, 5.0])
  assert np.all((np.abs(extrapolated - wrong) > 4 * se + remainder)[1:]), (extrapolated, se)


def test_orthogonal_deep_linear_network_is_isometric_in_float32():
  depth, n = 8, 48
  rng = np.random.default_rng(0)
  ws = np.stack([np.linalg.qr(rng.normal(size=(n, n)))[0] for _ in range(depth)]).astype(np.float32)
  fn = lambda x: functools.reduce(lambda h, w: w @ h, list(jnp.asarray(ws)), x)
  s = np.asarray(jc.jacobian_singular_values(fn, jnp.zeros((n,), jnp.float32), method="exact"))
  # Rounding Q to float32 and L float32 matmuls each perturb singular values by ~ sqrt(n) eps32 (random-walk sum
  # of n rounding errors); the SVD adds ~ eps32. Bound: L sqrt(n) eps32 ~ 7e-6.
  assert np.max(np.abs(s - 1.0)) < depth * np.sqrt(n) * np.finfo(np.float32).eps
  free = np.asarray(jc.jacobian_singular_values(fn, jnp.zeros((n,), jnp.float32), 3, method="lanczos",
                                                num_steps=n))
  assert np.max(np.abs(free - 1.0)) < depth * np.sqrt(n) * np.finfo(np.float32).eps


def test_mean_field_closed_forms():
  # ReLU: q* = sigma_b^2 / (1 - sigma_w^2 / 2), chi = sigma_w^2 / 2 (Gauss-Hermite is exact for ReLU).
  np.testing.assert_allclose(fp.fixed_point_q(1.0, 0.3, "relu"), 0.09 / 0.5, rtol=1e-12)
  np.testing.assert_allclose(fp.chi(1.2, 0.3, "relu"), 0.72, rtol=1e-13)
  # Linear: q* = sigma_b^2 / (1 - sigma_w^2), chi = sigma_w^2.
  np.testing.assert_allclose(fp.fixed_point_q(0.8, 0.3, "linear"), 0.09 / 0.36, rtol=1e-12)
  # Degenerate homogeneous cases without bias: every q is fixed at criticality; q* = 0 below it.
  assert fp.fixed_point_q(math.sqrt(2.0), 0.0, "relu", q0=0.7) == 0.7
  assert fp.fixed_point_q(1.0, 0.0, "relu") == 0.0
  with pytest.raises(ValueError, match="no finite fixed point"):
    fp.fixed_point_q(1.0, 0.1, "linear")
  # tanh: the fixed point satisfies the map; chi(q = 0) = sigma_w^2 since tanh'(0) = 1.
  q = fp.fixed_point_q(1.5, 0.2, "tanh")
  np.testing.assert_allclose(fp.variance_map(q, 1.5, 0.2, "tanh"), q, rtol=1e-12)
  assert fp.fixed_point_q(0.9, 0.0, "tanh") == 0.0
  np.testing.assert_allclose(fp.chi(0.9, 0.0, "tanh"), 0.81, rtol=1e-12)
  # Linear Gaussian moments: m1 = sigma_w^2L, m2 / m1^2 = L + 1 (Fuss-Catalan); orthogonal: 1.
  m1, m2 = fp.jacobian_moments(5, 1.0, 0.0, "linear")
  np.testing.assert_allclose([m1, m2], [fp.fuss_catalan_moment(1, 5), fp.fuss_catalan_moment(2, 5)], rtol=1e-12)
  np.testing.assert_allclose(fp.jacobian_moments(5, 1.0, 0.0, "linear", weights="orthogonal"), [1.0, 1.0], rtol=1e-12)
  # ReLU, one Gaussian layer: m2 / m1^2 = 3 by free multiplicative convolution of a projection (moments 1/2, 1/2)
  # with Marchenko-Pastur (moments 1, 2): tau(abab) = 1/2 + 1/4 * 2 - 1/4 = 3/4 with m1 = 1/2.
  m1, m2 = fp.jacobian_moments(1, math.sqrt(2.0), 0.0, "relu", q=1.0)
  np.testing.assert_allclose([m1, m2 / m1**2], [1.0, 3.0], rtol=1e-12)


def test_critical_sigma_w():
  assert fp.critical_sigma_w(0.0, "relu") == pytest.approx(math.sqrt(2.0), rel=1e-14)
  assert fp.critical_sigma_w(0.0, "linear") == pytest.approx(1.0, rel=1e-14)
  # At sigma_b = 0 the crossing is degenerate: for sigma_w > 1, q* = (1 - 1/sigma_w^2) / 2 + ... and
  # chi = sigma_w^2 (1 - 2 q* + ...) = 1 + O((sigma_w - 1)^2), so chi - 1 is flat on the chaotic side and root finding
  # resolves sigma_w only to about sqrt(float64 eps) ~ 1e-8.
  np.testing.assert_allclose(fp.critical_sigma_w(0.0, "tanh"), 1.0, rtol=1e-7)
  sw = fp.critical_sigma_w(0.3, "tanh")
  assert sw > 1.0
  np.testing.assert_allclose(fp.chi(sw, 0.3, "tanh"), 1.0, rtol=1e-10)
  with pytest.raises(ValueError, match="no critical point"):
    fp.critical_sigma_w(0.1, "relu")


def _tanh_net_jacobian_sq_mean(key, n, depth, sigma_w, sigma_b, q_star, members):
  """Mean squared singular value tr(J J^T) / n of a deep tanh network at an input with |x|^2 / n = q*."""
  def member(k):
    kw, kb, kx = jax.random.split(k, 3)
    ws = sigma_w * jax.random.normal(kw, (depth, n, n)) / np.sqrt(n)
    bs = sigma_b * jax.random.normal(kb, (depth, n))
    def fn(h):
      # h is a pre-activation at q*: h_{l+1} = W phi(h_l) + b.
      for i in range(depth):
        h = ws[i] @ jnp.tanh(h) + bs[i]
      return h
    x = jax.random.normal(kx, (n,))
    x = x * jnp.sqrt(q_star * n) / jnp.linalg.norm(x)
    return jnp.mean(jc.jacobian_singular_values(fn, x, method="exact") ** 2)
  return np.asarray(jax.jit(jax.vmap(member))(jax.random.split(key, members)), np.float64)


@pytest.mark.parametrize("scale", [1.0, 0.8])
def test_tanh_mean_squared_singular_value_is_chi_to_the_depth(scale):
  sigma_b, depth, n, members = 0.3, 6, 64, 24
  sigma_w = scale * fp.critical_sigma_w(sigma_b, "tanh")
  q_star = fp.fixed_point_q(sigma_w, sigma_b, "tanh")
  predicted = fp.jacobian_moments(depth, sigma_w, sigma_b, "tanh")[0]
  np.testing.assert_allclose(predicted, fp.chi(sigma_w, sigma_b, "tanh") ** depth, rtol=1e-13)
  got = _tanh_net_jacobian_sq_mean(jax.random.key(3), n, depth, sigma_w, sigma_b, q_star, members)
  # Monte Carlo: 4 standard errors over members; finite width adds O(1/n) per layer to log m1 (fluctuations of
  # the layer variances around q*), so allow depth / n relative on top.
  se = got.std(ddof=1) / np.sqrt(members)
  print(f"scale {scale}: measured {got.mean():.4f} +- {se:.4f}, predicted chi^L = {predicted:.4f}")
  assert abs(got.mean() - predicted) < 4 * se + predicted * depth / n, (got.mean(), predicted, se)
  if scale != 1.0:  # off criticality the prediction is far from 1: the test discriminates
    assert abs(predicted - 1.0) > 3 * (4 * se + predicted * depth / n)
