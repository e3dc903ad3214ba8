"""Overlaps with named subspaces (spectral/attribution.py)."""

import numpy as np
import pytest

from spectral import attribution as at


def test_fourier_basis_is_orthonormal_and_spans_the_mode():
  for n, k, width in ((16, 0, 1), (16, 8, 1), (16, 3, 2), (15, 7, 2)):
    b = at.fourier_basis(n, k)
    assert b.shape == (n, width)
    np.testing.assert_allclose(b.T @ b, np.eye(width), atol=1e-12)
  modes = np.concatenate([at.fourier_basis(12, k) for k in range(7)], axis=1)
  np.testing.assert_allclose(modes.T @ modes, np.eye(12), atol=1e-12)  # the modes 0..n/2 tile R^n
  shifted = np.cos(2 * np.pi * 3 * (np.arange(20) + 0.7) / 20)  # any phase of mode 3
  assert at.subspace_overlaps(shifted, {"f3": at.fourier_basis(20, 3)})["f3"][0] == pytest.approx(1.0)
  with pytest.raises(ValueError, match="k"):
    at.fourier_basis(10, 6)


def test_overlaps_are_squared_projection_norms_with_rank_deficient_bases():
  rng = np.random.default_rng(0)
  q = np.linalg.qr(rng.standard_normal((30, 3)))[0]
  redundant = np.concatenate([q, q[:, :1] + q[:, 1:2], 5.0 * q[:, 2:]], axis=1)  # rank 3, 5 columns
  x = 0.6 * q[:, 0] + 0.8 * rng.standard_normal(30)
  expected = np.sum((q.T @ (x / np.linalg.norm(x))) ** 2)
  out = at.subspace_overlaps(np.stack([x, q[:, 1]], axis=1), {"s": redundant})
  np.testing.assert_allclose(out["s"], [expected, 1.0], atol=1e-12)
  assert at.orthonormal_basis(redundant).shape == (30, 3)
  assert at.chance_overlap(30, 3) == pytest.approx(0.1)
  with pytest.raises(ValueError, match="rows"):
    at.subspace_overlaps(x, {"bad": np.ones((29, 1))})
  with pytest.raises(ValueError, match="non-zero"):
    at.subspace_overlaps(np.zeros(30), {"s": q})


def test_attribute_best_match_or_other():
  n = 32
  subspaces = {**at.fourier_subspaces(n, [1, 2, 5]), "dc": np.ones((n, 1))}
  vecs = np.stack([at.fourier_basis(n, 5)[:, 1], np.ones(n) + 0.1 * at.fourier_basis(n, 2)[:, 0],
                   at.fourier_basis(n, 9)[:, 0]], axis=1)
  found = at.attribute(vecs, subspaces, threshold=0.9)
  assert found[0] == ("fourier:5", pytest.approx(1.0))
  assert found[1][0] == "dc" and found[1][1] > 0.9
  assert found[2][0] == "other" and found[2][1] < 1e-12
  left, right = at.split_by_side({"dc": np.ones((n, 1)), "e0": np.eye(4)[:, :1]}, (n, 4))
  assert list(left) == ["dc"] and list(right) == ["e0"]
  comps = at.attribute_components(vecs[:, :2], np.eye(4)[:, :2], left, right)
  assert comps[0]["left"][0] == "other" and comps[0]["right"] == ("e0", pytest.approx(1.0))
  assert comps[0]["best"] == ("right", "e0", pytest.approx(1.0))
  assert comps[1]["best"][:2] == ("left", "dc")
