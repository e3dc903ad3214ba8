"""The chunked shuffle draws every permutation with equal probability, and keeps the entries."""

import itertools

import numpy as np
import pytest
from scipy import stats

from spectral import shuffle


@pytest.mark.parametrize("n, chunk", [(5, 2), (4, 1)])
def test_every_permutation_equally_likely(n, chunk):
  rng = np.random.default_rng(0)
  index = {p: i for i, p in enumerate(itertools.permutations(range(n)))}
  draws = 100 * len(index)
  counts = np.zeros(len(index))
  for _ in range(draws):
    counts[index[tuple(shuffle.permute(np.arange(n), rng, chunk=chunk))]] += 1
  assert stats.chisquare(counts).pvalue > 1e-3


def test_large_input_keeps_its_entries_and_shape():
  x = np.random.default_rng(1).normal(size=(300, 1000)).astype(np.float32)
  y = shuffle.permute(x, np.random.default_rng(2), chunk=4096)
  assert y.shape == x.shape and y.dtype == x.dtype
  np.testing.assert_array_equal(np.sort(y, axis=None), np.sort(x, axis=None))
  assert abs(np.corrcoef(x.ravel(), y.ravel())[0, 1]) < 0.01
  np.testing.assert_array_equal(shuffle.permute(x, np.random.default_rng(2), chunk=4096), y)  # seeded
  with pytest.raises(ValueError, match="chunk"):
    shuffle.permute(x, np.random.default_rng(0), chunk=0)
