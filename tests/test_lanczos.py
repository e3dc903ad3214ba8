"""Lanczos, Ritz pairs, SLQ and trace estimators against dense float64 linear algebra.

All tests run in float64 (``jax.enable_x64``) unless they say float32; the matrices are dense and small, so the
exact answers come from ``numpy.linalg.eigh``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spectral import lanczos as lz


def _sym_with_spectrum(eigenvalues, seed):
  n = len(eigenvalues)
  u = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))[0]
  return (u * np.asarray(eigenvalues)) @ u.T


def _matvec(a):
  a = jnp.asarray(a)
  return lambda v: jnp.matmul(a, v, precision=jax.lax.Precision.HIGHEST)


def test_lanczos_basis_is_orthonormal_and_tridiagonalises():
  with jax.enable_x64(True):
    a = _sym_with_spectrum(np.linspace(-1.0, 3.0, 60), seed=0)
    v0 = jnp.asarray(np.random.default_rng(1).normal(size=60))
    res = jax.jit(lambda v: lz.lanczos(_matvec(a), v, 25, return_basis=True))(v0)
    q = np.asarray(res.basis)
    assert q.shape == (25, 60) and res.alphas.shape == (25,) and res.betas.shape == (24,)
    # Full reorthogonalisation keeps Q Q^T = I to a few ulps of float64 (no loss of orthogonality).
    np.testing.assert_allclose(q @ q.T, np.eye(25), atol=1e-13)
    t = np.asarray(lz.tridiagonal_matrix(res.alphas, res.betas))
    np.testing.assert_allclose(q @ a @ q.T, t, atol=1e-12)
    np.testing.assert_allclose(q[0], np.asarray(v0) / np.linalg.norm(v0), atol=1e-15)


def test_breakdown_on_few_distinct_eigenvalues_stays_orthonormal_and_exact():
  # Three distinct eigenvalues: the Krylov space of any start vector has dimension 3, so beta_3 = 0 (breakdown).
  with jax.enable_x64(True):
    ev = np.repeat([-2.0, 0.5, 4.0], 10)
    a = _sym_with_spectrum(ev, seed=2)
    v0 = jnp.asarray(np.random.default_rng(3).normal(size=30))
    res = lz.lanczos(_matvec(a), v0, 8, return_basis=True)
    q = np.asarray(res.basis)
    assert np.all(np.isfinite(q))
    np.testing.assert_allclose(q @ q.T, np.eye(8), atol=1e-12)
    assert abs(float(res.betas[2])) == 0.0
    theta = np.linalg.eigvalsh(np.asarray(lz.tridiagonal_matrix(res.alphas, res.betas)))
    # Every Ritz value of an orthonormal restriction lies in [lambda_min, lambda_max]; the first block is exact.
    np.testing.assert_allclose(np.linalg.eigvalsh(np.asarray(lz.tridiagonal_matrix(res.alphas[:3], res.betas[:2]))),
                               [-2.0, 0.5, 4.0], atol=1e-12)
    assert theta.min() >= -2.0 - 1e-12 and theta.max() <= 4.0 + 1e-12


@pytest.mark.parametrize("which", ["largest", "smallest", "magnitude"])
def test_top_eigenpairs_match_eigh(which):
  with jax.enable_x64(True):
    rng = np.random.default_rng(4)
    # A bulk on [-1, 1] plus separated outliers at both ends, the shape of a trained Hessian.
    ev = np.concatenate([rng.uniform(-1.0, 1.0, 190), [-6.0, -4.0, 5.0, 8.0, 12.0]])
    a = _sym_with_spectrum(ev, seed=5)
    # Only the separated outliers converge geometrically: ask for 2 (both ends have at least 2 outliers).
    got = lz.top_eigenpairs(_matvec(a), 195, 2, jax.random.key(0), num_steps=40, which=which)
    exact = np.sort(ev)
    expect = {"largest": exact[::-1][:2], "smallest": exact[:2],
              "magnitude": exact[np.argsort(-np.abs(exact))][:2]}[which]
    np.testing.assert_allclose(np.asarray(got.eigenvalues), expect, rtol=1e-10)
    vecs = np.asarray(got.eigenvectors)
    np.testing.assert_allclose(np.abs(np.sum(vecs * (vecs @ a), axis=1)), np.abs(expect), rtol=1e-10)
    assert np.all(np.asarray(got.residual_norms) < 1e-8)


def test_top_eigenpairs_float32_error_is_bounded():
  # float32: Ritz values of a converged pair are accurate to about eps32 * |A| (about 1e-6 relative here).
  rng = np.random.default_rng(6)
  ev = np.concatenate([rng.uniform(0.0, 1.0, 120), [3.0, 5.0]])
  a = _sym_with_spectrum(ev, seed=7).astype(np.float32)
  got = lz.top_eigenpairs(_matvec(a), 122, 2, jax.random.key(1), num_steps=30)
  assert got.eigenvalues.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got.eigenvalues), [5.0, 3.0], rtol=1e-5)


def test_slq_is_gauss_quadrature_exact_to_degree_2m_minus_1():
  with jax.enable_x64(True):
    ev = np.linspace(0.1, 2.0, 40)
    a = _sym_with_spectrum(ev, seed=8)
    m, p = 4, 3
    key = jax.random.key(9)
    quad = lz.slq(_matvec(a), 40, key, num_steps=m, num_probes=p)
    np.testing.assert_allclose(np.asarray(quad.weights).sum(axis=1), 1.0, atol=1e-13)
    for i in range(p):
      v = np.asarray(lz.random_probes(jax.random.fold_in(key, i), 1, 40, "rademacher", jnp.float64))[0]
      v = v / np.linalg.norm(v)
      for degree in range(2 * m):
        exact = v @ np.linalg.matrix_power(a, degree) @ v
        got = np.sum(np.asarray(quad.weights[i]) * np.asarray(quad.nodes[i]) ** degree)
        np.testing.assert_allclose(got, exact, rtol=1e-10)
      # Degree 2m is not integrated exactly (the test can fail).
      exact = v @ np.linalg.matrix_power(a, 2 * m) @ v
      assert abs(np.sum(np.asarray(quad.weights[i]) * np.asarray(quad.nodes[i]) ** (2 * m)) - exact) > 1e-8


# A gamma bulk of 297 eigenvalues plus three outliers; m = 50 Lanczos steps on p = 100 Rademacher probes.
SLQ_CASE = dict(n=300, m=50, p=100)


def _slq_case():
  rng = np.random.default_rng(10)
  n = SLQ_CASE["n"]
  ev = np.concatenate([rng.gamma(2.0, 0.5, n - 3), [8.0, 9.0, 10.0]])
  return ev, _sym_with_spectrum(ev, seed=11)


def _slq_w1_bound(width, n, m, p):
  """Wasserstein-1 error bound of SLQ against the exact spectral measure.

  Quadrature term ``pi * width / (4 m)`` (Jackson, degree 2m - 1); sampling term: for a Rademacher probe,
  ``Var(psi_v((-inf, x])) <= 2 F(x) (1 - F(x)) / n <= 1 / (2 n)``, so ``E|F_slq - F| <= 1 / sqrt(2 n p)`` at every x and
  the expected W1 from sampling is at most ``width / sqrt(2 n p)``; allow 3 times that (Markov: exceeded with
  probability <= 1/3 at worst, far less in practice since the bound on F(1 - F) is loose). Chen, Trogdon & Ubaru
  2021 (arXiv:2105.06595) have the same two terms.
  """
  return width * (np.pi / (4 * m) + 3.0 / np.sqrt(2.0 * n * p))


def test_slq_density_within_chen_trogdon_ubaru_w1_bound():
  with jax.enable_x64(True):
    n, m, p = SLQ_CASE["n"], SLQ_CASE["m"], SLQ_CASE["p"]
    ev, a = _slq_case()
    quad = lz.slq(_matvec(a), n, jax.random.key(12), num_steps=m, num_probes=p)
    w1 = lz.wasserstein1(quad.nodes, quad.weights, ev, np.ones(n))
    width = ev.max() - ev.min()
    bound = _slq_w1_bound(width, n, m, p)
    assert w1 < bound, (w1, bound)
    # Smoothed density integrates to one and its mean is the trace / n.
    kernel = width / m
    grid = jnp.linspace(ev.min() - 8 * kernel, ev.max() + 8 * kernel, 4001)  # tails beyond 8 sd: < 1e-15
    dens = np.asarray(lz.slq_density(quad, grid, kernel))
    dx = float(grid[1] - grid[0])
    np.testing.assert_allclose(dens.sum() * dx, 1.0, atol=1e-6)
    mean = float(lz.slq_spectral_sum(quad, lambda x: x, n)) / n
    np.testing.assert_allclose((np.asarray(grid) * dens).sum() * dx, mean, rtol=1e-6)


def _wrong_quadrature(kind):
  """``tridiagonal_eigh`` replacements that make ``slq`` wrong: Gauss weights dropped (uniform over the Ritz values),
  weights read from the last component of the eigenvectors instead of the first, or the diagonal ``alphas`` of ``T``
  used as nodes instead of its eigenvalues."""
  right = lz.tridiagonal_eigh

  def wrong(alphas, betas):
    theta, s = right(alphas, betas)
    if kind == "uniform_weights":
      return theta, jnp.ones_like(s) / jnp.sqrt(s.shape[0])
    if kind == "last_component":
      return theta, s[::-1, :]
    return jnp.sort(alphas), s  # "diagonal_as_nodes"

  return wrong


@pytest.mark.parametrize("kind", ["uniform_weights", "last_component", "diagonal_as_nodes"])
def test_slq_w1_bound_rejects_wrong_quadrature(monkeypatch, kind):
  # Measured at this size: right 0.015 against a bound of 0.279; the wrong rules give 0.99, 0.46 and 0.63.
  monkeypatch.setattr(lz, "tridiagonal_eigh", _wrong_quadrature(kind))
  with jax.enable_x64(True):
    n, m, p = SLQ_CASE["n"], SLQ_CASE["m"], SLQ_CASE["p"]
    ev, a = _slq_case()
    quad = lz.slq(_matvec(a), n, jax.random.key(12), num_steps=m, num_probes=p)
    w1 = lz.wasserstein1(quad.nodes, quad.weights, ev, np.ones(n))
    assert w1 > _slq_w1_bound(ev.max() - ev.min(), n, m, p), (kind, w1)


def test_hutchinson_within_stated_stderr_and_stderr_matches_theory():
  with jax.enable_x64(True):
    rng = np.random.default_rng(13)
    a = _sym_with_spectrum(rng.normal(1.0, 1.0, 80), seed=14)
    p = 400
    est = lz.hutchinson_trace(_matvec(a), 80, jax.random.key(15), num_probes=p)
    exact = np.trace(a)
    assert abs(float(est.estimate) - exact) < 3.0 * float(est.stderr)
    # Rademacher: Var(v^T A v) = 2 (|A|_F^2 - sum_i A_ii^2). The sample sd of 400 draws is within ~10% (1 sigma of a
    # sd estimate is about sqrt(kurtosis / (4 p)) ~ 5% here); 25% leaves room at a fixed seed.
    sd = np.sqrt(2.0 * (np.sum(a * a) - np.sum(np.diag(a) ** 2)))
    np.testing.assert_allclose(float(est.stderr), sd / np.sqrt(p), rtol=0.25)


def test_hutchpp_within_stated_stderr_and_beats_hutchinson_on_low_rank_plus_noise():
  with jax.enable_x64(True):
    rng = np.random.default_rng(16)
    ev = np.concatenate([rng.uniform(0.0, 0.05, 95), [50.0, 40.0, 30.0, 20.0, 10.0]])
    a = _sym_with_spectrum(ev, seed=17)
    budget = 30
    pp = lz.hutchpp_trace(_matvec(a), 100, jax.random.key(18), num_matvecs=budget)
    hu = lz.hutchinson_trace(_matvec(a), 100, jax.random.key(18), num_probes=budget)
    exact = ev.sum()
    assert abs(float(pp.estimate) - exact) < 3.0 * float(pp.stderr)
    assert abs(float(hu.estimate) - exact) < 3.0 * float(hu.stderr)
    # Top-5 directions captured by the sketch: the residual variance is that of the small bulk only.
    assert float(pp.stderr) < 0.05 * float(hu.stderr)


def test_vmap_over_keys_and_members():
  a = _sym_with_spectrum(np.linspace(0.0, 1.0, 30), seed=19).astype(np.float32)
  stack = jnp.stack([jnp.asarray(a), 2.0 * jnp.asarray(a)])
  keys = jax.random.split(jax.random.key(20), 2)
  top = jax.jit(jax.vmap(lambda m, k: lz.top_eigenpairs(_matvec(m), 30, 1, k, num_steps=20).eigenvalues))(stack, keys)
  np.testing.assert_allclose(np.asarray(top)[:, 0], [1.0, 2.0], rtol=1e-5)
  tr = jax.vmap(lambda m, k: lz.hutchinson_trace(_matvec(m), 30, k, num_probes=4).estimate)(stack, keys)
  assert tr.shape == (2,)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda mv: lz.top_eigenpairs(mv, 10, 11, jax.random.key(0)), ValueError, "larger than the operator"),
        (lambda mv: lz.top_eigenpairs(mv, 10, 5, jax.random.key(0), num_steps=3), ValueError, "larger than num_steps"),
        (lambda mv: lz.lanczos(mv, jnp.ones(10), 11), ValueError, "larger than the operator"),
        (lambda mv: lz.lanczos(mv, jnp.ones((10, 1)), 3), ValueError, "flat vector"),
        (lambda mv: lz.lanczos(lambda v: v[:5], jnp.ones(10), 3), ValueError, "output shape"),
        (lambda mv: lz.lanczos(lambda v: (v, v), jnp.ones(10), 3), TypeError, "one array"),
        (lambda mv: lz.slq(mv, 10, jax.random.key(0), num_steps=3, num_probes=2, probe="cauchy"), ValueError, "probe"),
        (lambda mv: lz.hutchinson_trace(mv, 10, jax.random.key(0), num_probes=1), ValueError, "num_probes"),
        (lambda mv: lz.hutchpp_trace(mv, 10, jax.random.key(0), num_matvecs=33), ValueError, "larger than"),
    ],
)
def test_bad_input_named_errors(call, exc, match):
  with pytest.raises(exc, match=match):
    call(lambda v: 2.0 * v)
