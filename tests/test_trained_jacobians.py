"""Check 13 (trained_jacobians): the sampled free product, the freeness test on planted products, the overlap."""

import numpy as np
import pytest

from spectral import free_probability as fp
from theory_checks import trained_jacobians as tj


def _ginibre_sv(rng, d, n):
  return np.stack([np.linalg.svd(rng.standard_normal((d, d)) / np.sqrt(d), compute_uv=False) for _ in range(n)])


def test_free_product_of_gaussian_factors_is_fuss_catalan():
  rng = np.random.default_rng(0)
  for depth in (2, 3):
    x = fp.free_product_singular_values(_ginibre_sv(rng, 100, depth), draws=8, seed=1) ** 2
    # m1 and m2 of Fuss-Catalan(depth): 1 and depth + 1; the factors' own finite-D moments set the scale
    assert abs(x.mean() - fp.fuss_catalan_moment(1, depth)) < 0.05
    assert abs((x ** 2).mean() - fp.fuss_catalan_moment(2, depth)) < 0.12 * fp.fuss_catalan_moment(2, depth)


def test_free_product_is_reproducible_and_validates():
  sv = np.abs(np.random.default_rng(1).standard_normal((2, 8)))
  np.testing.assert_array_equal(fp.free_product_singular_values(sv, draws=3, seed=4),
                                fp.free_product_singular_values(sv, draws=3, seed=4))
  with pytest.raises(ValueError, match="singular_values"):
    fp.free_product_singular_values(np.ones(8), draws=2)
  with pytest.raises(ValueError, match="singular_values"):
    fp.free_product_singular_values(-np.ones((2, 8)), draws=2)
  with pytest.raises(ValueError, match="draws"):
    fp.free_product_singular_values(np.ones((2, 8)), draws=0)


def _blocks(rng, d, probes):
  """Block Jacobians of a residual-like network: I + G / sqrt(d) scaled, two blocks per probe."""
  return [[np.eye(d) + 0.8 * rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(2)] for _ in range(probes)]


def test_stacked_draws_are_the_products_taken_one_at_a_time():
  """The chunked sampler equals the definition S_2 O_2 S_1 O_1 S_0 built one product at a time from the same stream."""
  rng = np.random.default_rng(3)
  s = np.abs(rng.standard_normal((3, 12))) + 0.2
  stream = np.random.default_rng(11)
  expected = []
  for _ in range(9):
    prod = np.diag(s[0])
    for l in (1, 2):
      prod = s[l][:, None] * (fp.haar_orthogonal(stream, 12) @ prod)
    expected.append(np.linalg.svd(prod, compute_uv=False))
  for chunk in (1, 4, 9, 50):
    np.testing.assert_array_equal(fp.free_product_singular_values(s, draws=9, seed=11, chunk=chunk),
                                  np.asarray(expected))
  with pytest.raises(ValueError, match="chunk"):
    fp.free_product_singular_values(s, draws=9, chunk=0)


def test_freeness_holds_for_rotated_blocks_and_fails_for_aligned_ones():
  rng = np.random.default_rng(2)
  d, probes = 48, 4
  blocks = _blocks(rng, d, probes)
  block_sv = np.stack([[np.linalg.svd(j, compute_uv=False) for j in b] for b in blocks])
  # free: independently rotated blocks, so the product is a draw of the model itself
  free_net = np.stack([np.linalg.svd(fp.haar_orthogonal(rng, d) @ b[1] @ fp.haar_orthogonal(rng, d) @ b[0],
                                     compute_uv=False) for b in blocks])
  free = tj.compare_to_free_product(block_sv, free_net, seed=0)
  assert free["p_value"] > tj.LEVEL
  assert free["outliers"] < 1.0
  # aligned: block 1's input frame equals block 0's output frame, top directions multiply (the trained-circuit case)
  aligned_net = np.stack([np.sort(sv[0])[::-1] * np.sort(sv[1])[::-1] for sv in block_sv])
  aligned = tj.compare_to_free_product(block_sv, aligned_net, seed=0)
  assert aligned["p_value"] <= tj.LEVEL
  assert aligned["edge_ratio"] > 1.1 and aligned["outliers"] >= 1.0


def test_compare_validates_shapes():
  with pytest.raises(ValueError, match="block_sv, net_sv"):
    tj.compare_to_free_product(np.ones((2, 2, 8)), np.ones((3, 8)))
  with pytest.raises(ValueError, match="finite"):
    tj.compare_to_free_product(np.ones((2, 2, 8)), np.full((2, 8), np.nan))


def test_spike_overlap_finds_the_planted_direction():
  rng = np.random.default_rng(3)
  d = 64
  e = np.zeros((d, 1))
  e[5] = 1.0
  jac = 0.5 * np.eye(d) + 6.0 * e @ e.T
  overlap, chance = tj.spike_overlap(jac, e, k=1)
  assert overlap > 0.99 and chance == pytest.approx(1 / d)
  overlap_r, chance_r = tj.spike_overlap(jac, rng.standard_normal((d, 4)), k=1)
  assert overlap_r < 0.5 and chance_r == pytest.approx(4 / d)
  assert tj.spike_overlap(jac, np.zeros((d, 0)), k=1) == (0.0, 0.0)


def test_residual_side_covers_every_matrix_of_the_transformer():
  from models.presets import tiny_config
  from models.train import init_params, member_key
  from models.weight_matrices import weight_matrices
  cfg = tiny_config()
  mats = weight_matrices(init_params(cfg, member_key(cfg, 0)))
  d = cfg.model.d_model
  for name, w in mats.items():
    side = tj.residual_side(name)
    assert side is not None, name
    assert w.shape[side] == d, (name, w.shape)


def test_judge_counts_rejections_at_init():
  row = lambda p0: dict(steps=[0, 10], per_step={"0": dict(p_value=p0), "10": dict(p_value=0.001)})
  status, facts = tj.judge([row(0.5)] * 10)
  assert status == "PASS" and facts["rejected_at_init"] == 0
  status, facts = tj.judge([row(0.001)] * 10)
  assert status == "FAIL" and facts["rejected_at_init"] == 10
