"""Structure rank against the sign-flip null (spectral/structure.py): known answers, invariances, bad input."""

import numpy as np
import pytest
from scipy import stats

from spectral import attribution, bbp
from spectral import structure as st


def noise(kind: str, rng, shape) -> np.ndarray:
  """Null matrices of ``shape`` (..., a, b) with unit-variance-scale entries of the named law."""
  if kind == "gaussian":
    return rng.standard_normal(shape)
  if kind == "t3":
    return rng.standard_t(3.0, shape)
  if kind == "t2.5":
    return rng.standard_t(2.5, shape)
  if kind == "scaled":  # D_r G D_c, scales uniform in [0.5, 2]
    rows = rng.uniform(0.5, 2.0, shape[:-1] + (1,))
    cols = rng.uniform(0.5, 2.0, shape[:-2] + (1, shape[-1]))
    return rows * rng.standard_normal(shape) * cols
  raise ValueError(kind)


def planted(kind: str, rng, shape, thetas, above_noise_top: float = 0.0):
  """``W = sum_i theta_i u_i v_i^T + E / sqrt(N)`` (BBP convention) with the noise ``E`` of ``kind`` scaled to unit
  variance per entry on average; returns (W, u (a, k), v (b, k)).

  With ``above_noise_top = c`` the strengths are raised to at least ``c`` times the top singular value of
  ``E / sqrt(N)``: for heavy tails the largest entries, not ``theta_c``, set the scale a spike must clear."""
  a, b = shape
  n = max(a, b)
  e = noise(kind, rng, shape)
  e = e / np.sqrt(np.mean(e**2))
  thetas = np.maximum(np.asarray(thetas), above_noise_top * np.linalg.norm(e, ord=2) / np.sqrt(n))
  u = np.linalg.qr(rng.standard_normal((a, len(thetas))))[0]
  v = np.linalg.qr(rng.standard_normal((b, len(thetas))))[0]
  return (u * thetas) @ v.T + e / np.sqrt(n), u, v


def false_alarm_bound(n: int, level: float, tail: float = 1e-3) -> int:
  """The largest count of false alarms among ``n`` exact tests at ``level`` that is not rejected at ``tail``."""
  return int(stats.binom.ppf(1.0 - tail, n, level))


@pytest.mark.parametrize("kind", ["gaussian", "t3", "t2.5", "scaled"])
def test_null_matrices_have_structure_rank_zero(kind):
  rng = np.random.default_rng(["gaussian", "t3", "t2.5", "scaled"].index(kind))
  ws = noise(kind, rng, (16, 24, 80)).astype(np.float32)
  ranks = [r.rank for r in st.structure_rank_batch(ws, level=0.01, seed=3)]
  assert all(r >= 0 for r in ranks)
  assert sum(r > 0 for r in ranks) <= false_alarm_bound(16, 0.01), ranks


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gaussian", "t3", "t2.5", "scaled"])
def test_null_false_alarm_rate_over_many_seeds(kind):
  rng = np.random.default_rng(10 + ["gaussian", "t3", "t2.5", "scaled"].index(kind))
  n = 400
  ws = noise(kind, rng, (n, 32, 128)).astype(np.float32)
  ranks = [r.rank for r in st.structure_rank_batch(ws, level=0.01, seed=4)]
  assert sum(r > 0 for r in ranks) <= false_alarm_bound(n, 0.01), sum(r > 0 for r in ranks)


@pytest.mark.parametrize("kind", ["gaussian", "t3", "t2.5", "scaled"])
@pytest.mark.parametrize("k", [1, 3])
def test_planted_rank_k_is_found_exactly(kind, k):
  rng = np.random.default_rng(7 * k)
  shape = (64, 192)
  theta_c = bbp.bbp_threshold(64 / 192)
  ws = np.stack([planted(kind, rng, shape, theta_c * np.linspace(4.0, 5.0, k), above_noise_top=2.5)[0]
                 for _ in range(4)])
  # Over-detection is a false alarm of the test after deflation (probability ~ level per matrix): at 1e-3 the
  # 4 matrices x 8 cases of this test give exactly k unless the deflated null is wrong.
  results = st.structure_rank_batch(ws.astype(np.float32), seed=5, level=1e-3)
  assert [r.rank for r in results] == [k] * 4
  for r in results:
    assert r.u.shape == (64, k) and r.v.shape == (192, k) and r.s.shape == (k,)
    assert r.singular_values.shape == r.null_thresholds.shape == r.p_values.shape == (k + 1,)
    assert np.all(r.p_values[:k] <= 1e-3) and r.p_values[k] > 1e-3
    assert np.all(r.singular_values[:k] > r.null_thresholds[:k])


def test_components_are_the_planted_directions_in_original_coordinates():
  rng = np.random.default_rng(11)
  theta_c = bbp.bbp_threshold(48 / 160)
  w, u, v = planted("gaussian", rng, (160, 48), [6.0 * theta_c, 4.0 * theta_c])  # tall: oriented internally
  r = st.structure_rank(w.astype(np.float32), seed=0)
  assert r.rank == 2 and r.u.shape == (160, 2) and r.v.shape == (48, 2)
  predicted_u, predicted_v = bbp.bbp_overlaps([6.0 * theta_c, 4.0 * theta_c], 48 / 160)
  np.testing.assert_allclose(np.sum((u.T @ r.u) ** 2, axis=0), predicted_u, atol=0.05)
  np.testing.assert_allclose(np.sum((v.T @ r.v) ** 2, axis=0), predicted_v, atol=0.05)
  recon = np.sqrt(160) * (r.u * r.s) @ r.v.T
  top = np.linalg.svd(w * 1.0, compute_uv=True)
  best = (top[0][:, :2] * top[1][:2]) @ top[2][:2]
  np.testing.assert_allclose(recon, best, atol=1e-3 * np.abs(best).max() + 1e-4)
  np.testing.assert_allclose(r.s, top[1][:2] / np.sqrt(160), rtol=1e-4)


def test_update_from_init_is_analysed():
  rng = np.random.default_rng(12)
  w0 = rng.standard_t(3.0, (40, 120)).astype(np.float32)  # heavy-tailed init: structure lives only in dW
  dw, _, _ = planted("gaussian", rng, (40, 120), [5.0 * bbp.bbp_threshold(40 / 120)])
  w = w0 + 0.01 * dw.astype(np.float32)
  assert st.structure_rank(w, init=w0, seed=1).rank == 1
  zero = st.structure_rank(w0, init=w0)
  assert zero.rank == 0 and zero.status == "ok (zero matrix)"


def test_planted_named_directions_are_attributed():
  rng = np.random.default_rng(13)
  n_tokens, d = 64, 96
  four = attribution.fourier_basis(n_tokens, 3)
  dc = attribution.fourier_basis(n_tokens, 0)
  u = np.stack([four[:, 0], dc[:, 0]], axis=1)
  v = np.linalg.qr(rng.standard_normal((d, 2)))[0]
  theta_c = bbp.bbp_threshold(n_tokens / d)
  w = (u * np.array([8.0, 6.0]) * theta_c) @ v.T + rng.standard_normal((n_tokens, d)) / np.sqrt(d)
  r = st.structure_rank(w.astype(np.float32), seed=2)
  assert r.rank == 2
  subspaces = {**attribution.fourier_subspaces(n_tokens), "dc": dc}
  found = attribution.attribute(r.u, subspaces, threshold=0.9)
  assert found[0][0] == "fourier:3" and found[0][1] >= 0.9
  assert found[1][0] in ("dc", "fourier:0") and found[1][1] >= 0.9


def test_same_seed_is_bit_identical_and_seeds_differ():
  rng = np.random.default_rng(14)
  theta_c = bbp.bbp_threshold(32 / 96)
  ws = np.stack([planted("t3", rng, (32, 96), [3.0 * theta_c])[0] for _ in range(3)]).astype(np.float32)
  a = st.structure_rank_batch(ws, seed=9)
  b = st.structure_rank_batch(ws, seed=9)
  c = st.structure_rank_batch(ws, seed=10)
  for x, y in zip(a, b):
    for field in ("singular_values", "null_thresholds", "p_values", "u", "v", "s"):
      assert np.array_equal(getattr(x, field), getattr(y, field)), field
  assert any(not np.array_equal(x.null_thresholds, z.null_thresholds) for x, z in zip(a, c))


def test_monte_carlo_p_values_and_options():
  rng = np.random.default_rng(15)
  w = noise("gaussian", rng, (24, 64)).astype(np.float32)
  r = st.structure_rank(w, p_value="mc", draws=99, seed=0, screen_draws=0)
  assert r.rank >= 0 and "Monte Carlo" in r.method and r.null_draws == 99 * r.rounds
  assert np.all((r.p_values * 100) == np.round(r.p_values * 100))  # (1 + #exceedances) / (B + 1)
  with pytest.raises(ValueError, match="screen_draws"):
    st.structure_rank(w, screen_draws=2)
  with pytest.raises(ValueError, match="screen_p"):
    st.structure_rank(w, screen_p=0.0)
  with pytest.raises(ValueError, match="draws"):
    st.structure_rank(w, p_value="mc", draws=20)
  with pytest.raises(ValueError, match="p_value"):
    st.structure_rank(w, p_value="bootstrap")
  with pytest.raises(TypeError):
    st.structure_rank(w, not_an_option=1)
  capped = st.structure_rank(planted("gaussian", rng, (24, 64), [5.0, 4.0, 3.0])[0], max_rank=2)
  assert capped.rank == 2 and capped.status == "ok (max_rank reached)"


def test_bad_input_is_named():
  with pytest.raises(ValueError, match="NaN"):
    st.structure_rank(np.full((8, 8), np.nan, np.float32))
  with pytest.raises(ValueError, match="2-D"):
    st.structure_rank(np.ones(5, np.float32))
  with pytest.raises(ValueError, match="both dimensions"):
    st.structure_rank(np.ones((0, 5), np.float32))
  with pytest.raises(ValueError, match="init"):
    st.structure_rank(np.ones((4, 5), np.float32), init=np.ones((5, 4), np.float32))
  with pytest.raises(ValueError, match="level"):
    st.structure_rank(np.eye(4, dtype=np.float32), level=1.5)
  with pytest.raises(ValueError, match="ws"):
    st.structure_rank_batch(np.ones((4, 5), np.float32))
  batch = np.random.default_rng(0).standard_normal((2, 8, 12)).astype(np.float32)
  batch[1, 0, 0] = np.inf
  good, bad = st.structure_rank_batch(batch)
  assert good.status == "ok" and bad.rank == -1 and bad.status.startswith("error") and "NaN or Inf" in bad.status


def test_exactly_low_rank_matrix():
  rng = np.random.default_rng(16)
  u, v = rng.standard_normal((30, 2)), rng.standard_normal((70, 2))
  r = st.structure_rank((u @ v.T).astype(np.float32), seed=0)
  # The third singular value is round-off, below the float32 Ritz resolution (~sqrt(eps) of the top): not tested.
  assert r.rank == 2 and r.status == "ok (remainder below resolution)" and r.singular_values.shape == (2,)


def test_batched_null_draws_equal_one_draw_at_a_time():
  """The null statistics of a round, computed ``chunk`` draws per dispatch (vmap over the draw keys), are those of
  one draw at a time with draw ``d``'s key ``fold_in(fold_in(key, 1), d)``, after deflation (k = 2 accepted)."""
  import jax
  import jax.numpy as jnp

  rng = np.random.default_rng(17)
  shape, draws, k, steps = (24, 80), 11, 2, 2
  ws = np.stack([planted(kind, rng, shape, [6.0, 5.0])[0] for kind in ("gaussian", "t3", "scaled")])
  x = jnp.asarray(ws / np.sqrt(shape[1]), jnp.float32)
  svd = np.linalg.svd(np.asarray(x, np.float64))
  u = jnp.asarray(svd[0][:, :, :8] * (np.arange(8) < k), jnp.float32)  # zero-padded to 8 like the rounds
  v = jnp.asarray(np.swapaxes(svd[2], 1, 2)[:, :, :8] * (np.arange(8) < k), jnp.float32)
  s = jnp.asarray(svd[1][:, :8] * (np.arange(8) < k), jnp.float32)
  ks, key = np.full(3, k), jax.random.key(5)
  # Blocks of 2 matrices (the second overlapping the first) x 4 draws (the 12th computed and discarded).
  _, _, batched = st._round_statistics(x, u, s, v, ks, key, draws=draws, width=16, steps=steps, block=8,
                                       dispatch=(2, 4))
  resid, scale = st._residual_and_scale(x, u, s, v)
  y0 = jnp.broadcast_to(jax.random.normal(jax.random.fold_in(key, 0), (shape[1], 16), jnp.float32), (3, shape[1], 16))
  one = jax.jit(st._null_statistic, static_argnames="steps")
  flip_key = jax.random.fold_in(key, 1)
  one_at_a_time = np.stack([one(resid, u, s, v, scale, y0, jnp.asarray(ks, jnp.int32), jax.random.fold_in(flip_key, d),
                                steps=steps) for d in range(draws)], -1)
  assert batched.shape == (3, draws)
  np.testing.assert_allclose(batched, one_at_a_time, rtol=2e-6)  # float32 round-off of the batched products
  assert np.all(np.std(one_at_a_time, axis=1) > 1e-3 * np.mean(one_at_a_time, axis=1))  # distinct flips
  assert st.draw_dispatches(12, 24, 768, 3072) == (1, 1)  # 9.4 MB a matrix: one flipped matrix per dispatch
  assert st.draw_dispatches(12, 24, 768, 768) == (6, 1)  # 7 fit in 16 MiB: 2 equal blocks of 6
  assert st.draw_dispatches(400, 24, 32, 128) == (400, 1)  # 1024 fit: the whole batch


def test_screen_only_removes_rejections_and_saves_draws():
  """The screen (first 8 draws, continue at p <= 0.25) gives, matrix by matrix, a rank at most the unscreened
  test's with the same seed, the same accepted components where the ranks agree, and under the null stops most
  matrices after 8 draws; with the Monte Carlo p-value at level 0.01 (99 draws) it changes no rank at all."""
  rng = np.random.default_rng(21)
  shape = (24, 96)
  theta_c = bbp.bbp_threshold(24 / 96)
  ws = [noise(kind, rng, shape) / np.sqrt(96) for kind in ("gaussian", "t3", "scaled") for _ in range(8)]
  ws += [planted(kind, rng, shape, [ratio * theta_c])[0] for kind in ("gaussian", "t3")
         for ratio in (1.25, 1.5, 1.75, 2.0, 2.5, 3.5)]  # around the finite-size threshold: where they could differ
  ws = np.stack(ws).astype(np.float32)
  for opts in ({}, dict(p_value="mc", draws=99)):
    screened = st.structure_rank_batch(ws, seed=4, **opts)
    full = st.structure_rank_batch(ws, seed=4, screen_draws=0, **opts)
    ranks, full_ranks = np.array([r.rank for r in screened]), np.array([r.rank for r in full])
    assert np.all(ranks <= full_ranks), (ranks, full_ranks)
    if opts:
      assert np.array_equal(ranks, full_ranks)
    for a, b in zip(screened, full):
      if a.rank == b.rank:
        assert np.array_equal(a.s, b.s) and np.array_equal(a.u, b.u)
      assert b.null_draws == b.rounds * (opts.get("draws", 24))
    assert sum(r.rank > 0 for r in full[24:]) >= 4  # the planted half has detections for the screen to keep
    null_draws = np.array([r.null_draws for r in screened[:24]])
    assert np.all((null_draws == 8) | (null_draws == opts.get("draws", 24)))
    assert np.mean(null_draws == 8) >= 0.5, null_draws  # about 1 - screen_p of null matrices stop after 8


def test_screened_result_does_not_depend_on_the_batch():
  """A matrix's screened result is the same alone as in a batch whose other matrices pass the screen (their
  remaining draws are computed in the same dispatch and must not reach it)."""
  rng = np.random.default_rng(22)
  theta_c = bbp.bbp_threshold(24 / 96)
  strong = [planted("gaussian", rng, (24, 96), [4.0 * theta_c])[0] for _ in range(3)]
  ws = np.stack([noise("gaussian", rng, (24, 96)) / np.sqrt(96)] + strong).astype(np.float32)
  together = st.structure_rank_batch(ws, seed=6)
  alone = st.structure_rank_batch(ws[:1], seed=6)[0]
  assert [r.rank for r in together[1:]] == [1, 1, 1]
  assert together[0].null_draws == alone.null_draws
  np.testing.assert_allclose(together[0].p_values, alone.p_values, rtol=1e-5)  # batched products' round-off
  assert together[0].rank == alone.rank


def test_transposed_copies_change_nothing_but_round_off(monkeypatch):
  # Large matrices are multiplied through materialised transposes (``_TRANSPOSED_ENTRIES``): the flipped copy and
  # its transpose carry the same signs, and the test's values are the plain products' to float32 round-off.
  import jax
  import jax.numpy as jnp

  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 24, 140)).astype(np.float32))
  for row_words in (None, jnp.asarray([5, 3], jnp.int32)):
    f, f_t = st.sign_flip_pair(x, jnp.swapaxes(x, 1, 2), jax.random.key(4), row_words)
    np.testing.assert_array_equal(np.asarray(f), np.asarray(st.sign_flip(x, jax.random.key(4), row_words)))
    np.testing.assert_array_equal(np.asarray(f_t), np.swapaxes(np.asarray(f), 1, 2))
  rng = np.random.default_rng(12)
  ws = np.stack([planted("t3", rng, (40, 120), [6.0, 5.0, 4.0], above_noise_top=1.5)[0] for _ in range(2)] +
                [noise("gaussian", rng, (40, 120)) / np.sqrt(120)]).astype(np.float32)
  plain = st.structure_rank_batch(ws, seed=2)
  assert 40 * 120 < st._TRANSPOSED_ENTRIES
  monkeypatch.setattr(st, "_TRANSPOSED_ENTRIES", 1)
  copied = st.structure_rank_batch(ws, seed=2)
  assert [r.rank for r in copied] == [r.rank for r in plain] == [3, 3, 0]
  for a, b in zip(plain, copied):
    assert a.rounds == b.rounds and a.null_draws == b.null_draws
    np.testing.assert_allclose(b.singular_values, a.singular_values, rtol=1e-5)
    np.testing.assert_allclose(b.null_thresholds, a.null_thresholds, rtol=1e-4)
    np.testing.assert_allclose(np.abs(b.u.T @ a.u), np.eye(a.rank), atol=1e-4)
