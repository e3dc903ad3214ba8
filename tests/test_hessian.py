"""Matrix-free curvature products and spectra against the materialised float64 Hessian of a small tanh MLP.

The model: a 2-layer tanh MLP 5 -> 24 -> 3 (219 parameters) with softmax cross-entropy on 16 examples. Everything runs
in float64 (``jax.enable_x64``) so the comparisons with ``jax.hessian`` + ``numpy.linalg.eigh`` are limited by the
algorithms, not by round-off.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from spectral import hessian as hs
from spectral import lanczos as lz

D_IN, HIDDEN, CLASSES, BATCH = 5, 24, 3, 16


def _init(key):
  k1, k2, k3 = jax.random.split(key, 3)
  return {
      "w1": jax.random.normal(k1, (D_IN, HIDDEN)) / np.sqrt(D_IN),
      "b1": 0.1 * jax.random.normal(k3, (HIDDEN,)),
      "w2": jax.random.normal(k2, (HIDDEN, CLASSES)) / np.sqrt(HIDDEN),
      "b2": jnp.zeros((CLASSES,)),
  }


def _logits(params, batch):
  h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"][None, :])
  return h @ params["w2"] + params["b2"][None, :]


def _per_example_loss(params, batch):
  logp = jax.nn.log_softmax(_logits(params, batch))
  return -jnp.take_along_axis(logp, batch["y"][:, None], axis=1)[:, 0]


def _loss(params, batch):
  return jnp.mean(_per_example_loss(params, batch))


def _output_loss(logits, batch):
  logp = jax.nn.log_softmax(logits)
  return -jnp.mean(jnp.take_along_axis(logp, batch["y"][:, None], axis=1))


def _batch(key):
  kx, ky = jax.random.split(key)
  return {"x": jax.random.normal(kx, (BATCH, D_IN)), "y": jax.random.randint(ky, (BATCH,), 0, CLASSES)}


@pytest.fixture(scope="module")
def setup():
  with jax.enable_x64(True):
    params = _init(jax.random.key(0))
    batch = _batch(jax.random.key(1))
    flat, unravel = ravel_pytree(params)
    hess = np.asarray(jax.hessian(lambda f: _loss(unravel(f), batch))(flat))
    yield params, batch, flat, unravel, hess


def test_hvp_matches_dense_hessian(setup):
  params, batch, flat, _, hess = setup
  with jax.enable_x64(True):
    op = hs.hessian_operator(_loss, params, batch)
    assert op.dim == flat.shape[0] == 5 * 24 + 24 + 24 * 3 + 3
    v = np.random.default_rng(2).normal(size=op.dim)
    np.testing.assert_allclose(np.asarray(op.matvec(jnp.asarray(v))), hess @ v, rtol=1e-10, atol=1e-12)


def test_stacked_batches_average_to_full_data_hessian(setup):
  params, _, flat, unravel, _ = setup
  with jax.enable_x64(True):
    batches = [_batch(jax.random.key(10 + i)) for i in range(3)]
    full = jax.tree.map(lambda *xs: jnp.concatenate(xs), *batches)
    hess_full = np.asarray(jax.hessian(lambda f: _loss(unravel(f), full))(flat))
    op = hs.hessian_operator(_loss, params, hs.stack_batches(iter(batches)), stacked=True)
    v = np.random.default_rng(3).normal(size=op.dim)
    np.testing.assert_allclose(np.asarray(op.matvec(jnp.asarray(v))), hess_full @ v, rtol=1e-10, atol=1e-12)


def test_gauss_newton_and_fisher_match_materialised(setup):
  params, batch, flat, unravel, _ = setup
  with jax.enable_x64(True):
    jac = np.asarray(jax.jacobian(lambda f: _logits(unravel(f), batch).reshape(-1))(flat))  # (B C, P)
    logits = _logits(params, batch)
    h_out = np.asarray(jax.hessian(lambda o: _output_loss(o.reshape(BATCH, CLASSES), batch))(logits.reshape(-1)))
    ggn = jac.T @ h_out @ jac
    grads = np.asarray(jax.jacobian(lambda f: _per_example_loss(unravel(f), batch))(flat))  # (B, P)
    fisher = grads.T @ grads / BATCH
    v = np.random.default_rng(4).normal(size=flat.shape[0])
    gn_op = hs.gauss_newton_operator(_logits, _output_loss, params, batch)
    fi_op = hs.empirical_fisher_operator(_per_example_loss, params, batch)
    np.testing.assert_allclose(np.asarray(gn_op.matvec(jnp.asarray(v))), ggn @ v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(fi_op.matvec(jnp.asarray(v))), fisher @ v, rtol=1e-10, atol=1e-12)
    # Rank of the GGN is at most B (C - 1) = 32 (softmax Hessian has a null direction per example): Lanczos hits
    # the breakdown and must still return exact top eigenvalues.
    top = lz.top_eigenpairs(gn_op.matvec, gn_op.dim, 3, jax.random.key(5), num_steps=60, dtype=gn_op.dtype)
    np.testing.assert_allclose(np.asarray(top.eigenvalues), np.linalg.eigvalsh(ggn)[::-1][:3], rtol=1e-8)


def test_top_eigenvalues_within_1e4_of_eigh(setup):
  params, batch, _, _, hess = setup
  with jax.enable_x64(True):
    exact = np.linalg.eigvalsh(hess)
    k = 3
    got = jax.jit(lambda p, key: hs.hessian_top_eigenvalues(_loss, p, batch, k, key, num_steps=60))(
        params, jax.random.key(6))
    np.testing.assert_allclose(np.asarray(got), exact[::-1][:k], rtol=1e-4)
    low = hs.hessian_top_eigenvalues(_loss, params, batch, 1, jax.random.key(6), num_steps=60, which="smallest")
    np.testing.assert_allclose(np.asarray(low), exact[:1], rtol=1e-4)


def test_trace_estimates_within_stated_stderr(setup):
  params, batch, _, _, hess = setup
  with jax.enable_x64(True):
    exact = np.trace(hess)
    for method in ("hutchinson", "hutch++"):
      est = hs.hessian_trace(_loss, params, batch, jax.random.key(7), num_matvecs=60, method=method)
      # 3 standard errors: a two-sided normal interval that fails with probability 0.3% at a fixed seed.
      assert abs(float(est.estimate) - exact) < 3.0 * float(est.stderr), (method, est, exact)
      assert float(est.stderr) < 0.2 * abs(exact)


def test_slq_density_within_w1_bound(setup):
  params, batch, _, _, hess = setup
  with jax.enable_x64(True):
    exact = np.linalg.eigvalsh(hess)
    n, m, p = len(exact), 25, 8
    quad = hs.hessian_slq(_loss, params, batch, jax.random.key(8), num_steps=m, num_probes=p)
    w1 = lz.wasserstein1(quad.nodes, quad.weights, exact, np.ones(n))
    width = exact.max() - exact.min()
    # Same two-term bound as tests/test_lanczos.py (Chen, Trogdon, Ubaru 2021 structure): quadrature
    # pi width / (4 m) by Jackson's theorem, sampling 3 x width / sqrt(2 n p).
    bound = width * (np.pi / (4 * m) + 3.0 / np.sqrt(2.0 * n * p))
    assert w1 < bound, (w1, bound)


def test_vmap_over_ensemble_members(setup):
  _, batch, _, _, _ = setup
  members = [_init(jax.random.fold_in(jax.random.key(9), i)) for i in range(2)]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
  keys = jax.random.split(jax.random.key(10), 2)
  fn = lambda p, key: hs.hessian_top_eigenvalues(_loss, p, batch, 2, key, num_steps=40)
  got = jax.jit(jax.vmap(fn))(stacked, keys)
  assert got.shape == (2, 2)
  for i in range(2):
    np.testing.assert_allclose(np.asarray(got[i]), np.asarray(fn(members[i], keys[i])), rtol=1e-5)


def test_bad_inputs_named_errors(setup):
  params, batch, _, _, _ = setup
  key = jax.random.key(0)
  bad = dict(params, w1=params["w1"].at[0, 0].set(jnp.nan))
  with pytest.raises(ValueError, match=r"params\['w1'\]: has NaN"):
    hs.hessian_top_eigenvalues(_loss, bad, batch, 1, key)
  with pytest.raises(ValueError, match="loss is not finite"):
    hs.hessian_top_eigenvalues(lambda p, b: _loss(p, b) + jnp.log(0.0), params, batch, 1, key)
  with pytest.raises(TypeError, match="one scalar array"):
    hs.hessian_trace(lambda p, b: (_loss(p, b), 0.0), params, batch, key)
  with pytest.raises(ValueError, match="scalar loss"):
    hs.hessian_trace(_per_example_loss, params, batch, key)
  with pytest.raises(ValueError, match="larger than the operator dimension"):
    hs.hessian_top_eigenvalues(_loss, params, batch, 10_000, key)
  with pytest.raises(TypeError, match="floating array"):
    hs.hessian_operator(_loss, dict(params, b2=jnp.zeros(3, jnp.int32)), batch)
