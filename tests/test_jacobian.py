"""Input-output Jacobian singular values: exact vs matrix-free vs numpy SVD, sequences, batching, bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spectral import jacobian as jc


def _mlp(params, x):
  """A 2-layer tanh MLP on a vector: (n,) -> (o,)."""
  return params["w2"] @ jnp.tanh(params["w1"] @ x)


def _mlp_params(key, n, h, o):
  k1, k2 = jax.random.split(key)
  return {"w1": 1.5 * jax.random.normal(k1, (h, n)) / np.sqrt(n), "w2": jax.random.normal(k2, (o, h)) / np.sqrt(h)}


def _attention_block(params, x_LxD):
  """One pre-norm-free softmax attention layer with a residual: (L, d) -> (L, d), in plain jax.numpy."""
  q, k, v = x_LxD @ params["wq"], x_LxD @ params["wk"], x_LxD @ params["wv"]
  scores = q @ k.T / np.sqrt(q.shape[1])
  return x_LxD + jax.nn.softmax(scores, axis=-1) @ v @ params["wo"]


def _attention_params(key, d):
  ks = jax.random.split(key, 4)
  return {name: jax.random.normal(kk, (d, d)) / np.sqrt(d) for name, kk in zip(["wq", "wk", "wv", "wo"], ks)}


def test_exact_singular_values_of_linear_map_match_numpy():
  with jax.enable_x64(True):
    a = np.random.default_rng(0).normal(size=(7, 12))
    fn = lambda x: jnp.reshape(jnp.asarray(a) @ jnp.reshape(x, (-1,)), (7,))
    got = jc.jacobian_singular_values(fn, jnp.ones((3, 4)), method="exact")  # input shape is flattened C-order
    np.testing.assert_allclose(np.asarray(got), np.linalg.svd(a, compute_uv=False), rtol=1e-12)
    assert got.shape == (7,)
    np.testing.assert_allclose(np.asarray(jc.jacobian_matrix(fn, jnp.ones((3, 4)))), a, rtol=1e-12)


@pytest.mark.parametrize("n, o", [(60, 40), (40, 60)])
def test_matrix_free_matches_exact_on_tanh_mlp(n, o):
  with jax.enable_x64(True):
    params = _mlp_params(jax.random.key(1), n, 80, o)
    x = jax.random.normal(jax.random.key(2), (n,))
    fn = functools.partial(_mlp, params)
    exact = np.asarray(jc.jacobian_singular_values(fn, x, method="exact"))
    assert exact.shape == (min(n, o),)
    # Full Krylov space (num_steps = n): every singular value, limited by float64 round-off on the squared Gram
    # spectrum: |s^2 - s_hat^2| <~ 1e-13 s_max^2, hence the absolute tolerance on the small ones.
    free = np.asarray(jc.jacobian_singular_values(fn, x, min(n, o), method="lanczos", num_steps=n))
    np.testing.assert_allclose(free, exact, rtol=1e-8, atol=1e-5 * exact[0])
    # Top 3 from a short run: within 1e-4 relative (the bar for top-k).
    top = np.asarray(jc.jacobian_singular_values(fn, x, 3, method="lanczos", num_steps=30))
    np.testing.assert_allclose(top, exact[:3], rtol=1e-4)


def test_float32_matrix_free_top_values_bounded_against_float64():
  params = _mlp_params(jax.random.key(3), 50, 64, 50)
  x = jax.random.normal(jax.random.key(4), (50,))
  top = np.asarray(jc.jacobian_singular_values(functools.partial(_mlp, params), x, 2, method="lanczos",
                                               num_steps=50))
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), params)
    ref = np.asarray(jc.jacobian_singular_values(functools.partial(_mlp, p64), jnp.asarray(np.asarray(x), jnp.float64)))
  # float32 Gram eigenvalues: error ~ n eps32 s_max^2 ~ 50 * 1.2e-7 relative on s^2, half that on s.
  np.testing.assert_allclose(top, ref[:2], rtol=1e-5)


def test_vmap_over_inputs_and_members():
  members = jax.vmap(lambda k: _mlp_params(k, 10, 16, 8))(jax.random.split(jax.random.key(5), 3))
  xs = jax.random.normal(jax.random.key(6), (4, 10))
  per_member = lambda p, x: jc.jacobian_singular_values(functools.partial(_mlp, p), x, 3, method="exact")
  got = jax.jit(jax.vmap(jax.vmap(per_member, in_axes=(None, 0)), in_axes=(0, None)))(members, xs)
  assert got.shape == (3, 4, 3)
  for i in range(3):
    for j in range(4):
      p = jax.tree.map(lambda a: a[i], members)
      np.testing.assert_allclose(np.asarray(got[i, j]), np.asarray(per_member(p, xs[j])), rtol=1e-5)
  free = jax.vmap(lambda p, x: jc.jacobian_singular_values(functools.partial(_mlp, p), x, 2, method="lanczos",
                                                           num_steps=10))(members, xs[:3])
  np.testing.assert_allclose(np.asarray(free), np.asarray(got[jnp.arange(3), jnp.arange(3), :2]), rtol=1e-4)


def test_per_token_jacobian_is_a_block_of_the_sequence_jacobian():
  with jax.enable_x64(True):
    seq_len, d = 5, 6
    fn = functools.partial(_attention_block, _attention_params(jax.random.key(7), d))
    x = jax.random.normal(jax.random.key(8), (seq_len, d))
    full = np.asarray(jc.jacobian_matrix(fn, x)).reshape(seq_len, d, seq_len, d)
    for t, s in [(2, 2), (3, 1), (0, 4)]:
      block = np.asarray(jc.per_token_jacobian(fn, x, t, source_position=s))
      np.testing.assert_allclose(block, full[t, :, s, :], rtol=1e-12, atol=1e-14)
    sv = jc.per_token_jacobian_singular_values(fn, x, 2)
    np.testing.assert_allclose(np.asarray(sv), np.linalg.svd(full[2, :, 2, :], compute_uv=False), rtol=1e-12)
    seq = jc.sequence_jacobian_singular_values(fn, x)
    assert seq.shape == (seq_len * d,)
    np.testing.assert_allclose(np.asarray(seq), np.linalg.svd(full.reshape(30, 30), compute_uv=False), rtol=1e-10)
    top = jc.sequence_jacobian_singular_values(fn, x, 2, method="lanczos", num_steps=30)
    np.testing.assert_allclose(np.asarray(top), np.asarray(seq[:2]), rtol=1e-8)


def test_per_token_vmapped_over_members_and_jitted():
  d = 4
  members = jax.vmap(lambda k: _attention_params(k, d))(jax.random.split(jax.random.key(9), 2))
  x = jax.random.normal(jax.random.key(10), (3, d))
  fn = lambda p: jc.per_token_jacobian_singular_values(functools.partial(_attention_block, p), x, 1)
  got = jax.jit(jax.vmap(fn))(members)
  assert got.shape == (2, d)
  np.testing.assert_allclose(np.asarray(got[1]), np.asarray(fn(jax.tree.map(lambda a: a[1], members))), rtol=1e-5)


def test_bad_inputs_named_errors():
  fn = lambda x: jnp.tanh(x)
  with pytest.raises(TypeError, match="one array"):
    jc.jacobian_singular_values(lambda x: (x, x), jnp.ones(3))
  with pytest.raises(TypeError, match="floating output"):
    jc.jacobian_singular_values(lambda x: (x > 0).astype(jnp.int32), jnp.ones(3))
  with pytest.raises(TypeError, match="x: expected a floating"):
    jc.jacobian_singular_values(fn, jnp.ones(3, jnp.int32))
  with pytest.raises(TypeError, match="x: expected an array"):
    jc.jacobian_singular_values(fn, [1.0, 2.0])
  with pytest.raises(ValueError, match="x: has NaN"):
    jc.jacobian_singular_values(fn, jnp.array([1.0, jnp.nan]))
  with pytest.raises(ValueError, match="output has NaN"):
    jc.jacobian_singular_values(lambda x: jnp.log(x - 5.0), jnp.ones(3))
  with pytest.raises(ValueError, match="larger than the operator dimension"):
    jc.jacobian_singular_values(fn, jnp.ones(3), 4)
  with pytest.raises(ValueError, match="method"):
    jc.jacobian_singular_values(fn, jnp.ones(3), 2, method="svd")
  with pytest.raises(ValueError, match="position"):
    jc.per_token_jacobian(fn, jnp.ones((3, 2)), 3)
  with pytest.raises(ValueError, match=r"\(L, d\)"):
    jc.per_token_jacobian(fn, jnp.ones(6), 0)
  with pytest.raises(ValueError, match="d_out"):
    jc.per_token_jacobian(lambda x: x.T, jnp.ones((3, 2)), 0)
