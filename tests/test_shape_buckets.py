"""Shape buckets (spectral/shape_buckets.py) and the structure test on zero-padded batches of many shapes
(``spectral.structure.structure_rank_many``): the plan, exact random draws under padding, equal results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spectral import checkpoint_analysis, shape_buckets
from spectral import structure as st


def test_small_shapes_share_a_bucket_and_large_ones_do_not():
  plan = shape_buckets.plan_buckets([(16, 32), (32, 128), (64, 64), (32, 128)])
  assert plan == [((64, 128), [0, 1, 2, 3])]
  plan = shape_buckets.plan_buckets([(4096, 4096), (4096, 11008), (4096, 11008)])
  assert plan == [((4096, 4096), [0]), ((4096, 11008), [1, 2])]


def test_merge_follows_the_cost_model():
  # Merging (10, 100) into (10, 200) adds 10 * 100 padded entries: worth it exactly when that costs less than a
  # compilation.
  shapes = [(10, 100), (10, 200)]
  assert len(shape_buckets.plan_buckets(shapes, compile_seconds=1.0, entry_seconds=0.99e-3)) == 1
  assert len(shape_buckets.plan_buckets(shapes, compile_seconds=1.0, entry_seconds=1.01e-3)) == 2


def test_classes_are_never_mixed_and_bad_input_is_named():
  plan = shape_buckets.plan_buckets([(16, 32), (16, 32), (64, 64)], classes=["a", "b", "a"])
  assert plan == [((64, 64), [0, 2]), ((16, 32), [1])]
  with pytest.raises(ValueError, match=r"shapes\[1\]: expected \(m, n\) with 1 <= m <= n"):
    shape_buckets.plan_buckets([(2, 3), (5, 4)])
  with pytest.raises(ValueError, match="classes: expected one per shape"):
    shape_buckets.plan_buckets([(2, 3)], classes=[1, 2])
  with pytest.raises(ValueError, match="positive costs"):
    shape_buckets.plan_buckets([(2, 3)], entry_seconds=0.0)


@pytest.mark.parametrize("rows", [1, 5, 100, 4096, 5000])
def test_gaussian_start_is_the_exact_shape_draw(rows):
  key = jax.random.key(11)
  np.testing.assert_array_equal(np.asarray(st._gaussian_rows(key, rows, 8)),
                                np.asarray(jax.random.normal(key, (rows, 8), jnp.float32)))


def test_padded_sign_flips_are_the_unpadded_ones():
  key = jax.random.key(3)
  x = np.random.default_rng(0).standard_normal((20, 70)).astype(np.float32)
  for m, n in [(20, 70), (7, 33), (20, 32), (5, 3)]:
    padded = np.zeros((2, 24, 140), np.float32)
    padded[1, :m, :n] = x[:m, :n]
    flipped = np.asarray(st.sign_flip(jnp.asarray(padded), key, jnp.asarray([5, -(-n // 32)], jnp.int32)))
    alone = np.asarray(st.sign_flip(jnp.asarray(x[None, :m, :n]), key))[0]
    np.testing.assert_array_equal(flipped[1, :m, :n], alone)
    assert not np.any(flipped[1, m:]) and not np.any(flipped[1, :, n:])  # the padding stays zero
    assert np.mean(np.sign(alone) != np.sign(x[:m, :n])) > 0.2  # it does flip


def _planted(rng, a, b, k, strength=3.0):
  n = max(a, b)
  u = np.linalg.qr(rng.standard_normal((a, k)))[0]
  v = np.linalg.qr(rng.standard_normal((b, k)))[0]
  return (rng.standard_normal((a, b)) + strength * np.sqrt(n) * (u * np.linspace(1, 0.5, k)) @ v.T).astype(
      np.float32), u, v


def test_one_batch_per_shape_is_structure_rank_batch_bit_for_bit():
  rng = np.random.default_rng(1)
  a1, a2 = _planted(rng, 48, 120, 2)[0], rng.standard_normal((48, 120)).astype(np.float32)
  b = _planted(rng, 130, 40, 3)[0]
  many = st.structure_rank_many([a1, b, a2], seed=2, buckets=False)
  batch = st.structure_rank_batch(np.stack([a1, a2]), seed=2) + st.structure_rank_batch(b[None], seed=2)
  for got, want in zip([many[0], many[2], many[1]], batch):
    assert (got.rank, got.status, got.shape, got.rounds, got.null_draws) == (
        want.rank, want.status, want.shape, want.rounds, want.null_draws)
    for field in ("singular_values", "null_thresholds", "p_values", "u", "v", "s"):
      np.testing.assert_array_equal(getattr(got, field), getattr(want, field))


def test_padded_buckets_give_each_matrix_its_own_test():
  rng = np.random.default_rng(4)
  planted = [_planted(rng, 40, 100, 3), _planted(rng, 150, 64, 3), _planted(rng, 96, 96, 3, strength=5.0)]
  ws = [p[0] for p in planted] + [rng.standard_normal((64, 200)).astype(np.float32),
                                  (rng.standard_t(3, (100, 33))).astype(np.float32)]
  dims = [(min(w.shape), max(w.shape)) for w in ws]
  assert len(shape_buckets.plan_buckets(dims)) == 1  # the case under test: every shape padded into one bucket
  exact = st.structure_rank_many(ws, seed=6, buckets=False)
  padded = st.structure_rank_many(ws, seed=6)
  for w, e, p in zip(ws, exact, padded):
    assert p.rank == e.rank and p.status == e.status and p.shape == w.shape
    assert p.u.shape == (w.shape[0], p.rank) and p.v.shape == (w.shape[1], p.rank)
    # The first round (statistics, null, p-values) is the exact-shape one up to float32 round-off.
    np.testing.assert_allclose(p.singular_values[0], e.singular_values[0], rtol=1e-5)
    np.testing.assert_allclose(p.null_thresholds[0], e.null_thresholds[0], rtol=1e-4)
    np.testing.assert_allclose(p.singular_values, e.singular_values, rtol=1e-4)
  assert [p.rank for p in padded] == [3, 3, 3, 0, 0]
  for (_, u, v), p, e in zip(planted, padded, exact):  # in each matrix's own coordinates: the exact-shape
    # components, and the planted ones as far as the noise allows (BBP overlap of the weakest: about 0.88)
    assert np.min(np.linalg.svd(e.u.T @ p.u, compute_uv=False)) > 0.99
    assert np.min(np.linalg.svd(e.v.T @ p.v, compute_uv=False)) > 0.99
    assert np.min(np.linalg.svd(u.T @ p.u, compute_uv=False)) > 0.8
    assert np.min(np.linalg.svd(v.T @ p.v, compute_uv=False)) > 0.8


def test_many_shapes_bad_input_and_non_finite_members():
  rng = np.random.default_rng(5)
  good = rng.standard_normal((20, 30)).astype(np.float32)
  bad = good.copy()
  bad[3, 4] = np.nan
  results = st.structure_rank_many([good, bad, good.T.copy()])
  assert results[1].rank == -1 and results[1].status.startswith("error")
  assert results[0].rank == 0 and results[2].rank == 0 and results[2].shape == (30, 20)
  with pytest.raises(ValueError, match=r"ws\[1\]: expected a 2-D matrix"):
    st.structure_rank_many([good, np.ones(5, np.float32)])
  with pytest.raises(ValueError, match=r"inits\[0\]: expected the shape of ws\[0\]"):
    st.structure_rank_many([good], inits=[good.T])
  with pytest.raises(ValueError, match=r"ws\[1\] \(3x30\): max_rank"):
    st.structure_rank_many([good, good[:3]], max_rank=5)


def test_checkpoint_structure_defers_small_matrices_and_fills_every_row(monkeypatch):
  rng = np.random.default_rng(7)
  mats = {f"t{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate([(8, 40), (64, 64), (9, 30)])}
  calls = []

  def structure(matrices, seed):
    calls.append(sorted(matrices))
    return [{"name": k, "structure_rank": seed, "structure_status": "ok"} for k in matrices]

  monkeypatch.setattr(checkpoint_analysis, "STRUCTURE_DEFER_ENTRIES", 1000)
  buffer = checkpoint_analysis._StructureBuffer(structure, seed=9)
  rows = []
  for name, m in mats.items():
    new = [{"name": name}]
    buffer.add({name: m}, new)
    rows.extend(new)
  assert calls == [["t1"]]  # the large matrix at once, the small ones kept
  assert rows[0]["structure_rank"] is None and rows[1]["structure_rank"] == 9
  buffer.flush()
  assert calls == [["t1"], ["t0", "t2"]]
  assert [r["structure_rank"] for r in rows] == [9, 9, 9]
