"""The affine-noise data generator: exact rule, uniform noise, stated noise fraction, exact entropy rate."""

import math

import jax
import numpy as np
import pytest
from scipy import stats

from models.config import DataConfig
from models.data import affine_noise_batch, affine_noise_entropy_rate, batch_for_step, rule_mismatch_fraction

CFG = DataConfig(vocab_size=16, seq_len=64, batch_size=256)


def test_structured_rule_is_exact():
  tokens = np.asarray(affine_noise_batch(CFG, jax.random.PRNGKey(0), 0.0))
  assert tokens.shape == (256, 65) and tokens.dtype == np.int32
  np.testing.assert_array_equal(tokens[:, 1:], (CFG.affine_a * tokens[:, :-1] + CFG.affine_b) % CFG.vocab_size)


def test_noise_is_uniform_by_chi_square():
  tokens = np.asarray(affine_noise_batch(CFG, jax.random.PRNGKey(1), 1.0))
  counts = np.bincount(tokens.ravel(), minlength=CFG.vocab_size)
  assert stats.chisquare(counts).pvalue > 0.01
  # Consecutive tokens are independent: the pair table is uniform too.
  pairs = np.bincount((tokens[:, :-1] * CFG.vocab_size + tokens[:, 1:]).ravel(), minlength=CFG.vocab_size**2)
  assert stats.chisquare(pairs).pvalue > 0.01
  # The test can fail: the structured stream is far from uniform pairs.
  structured = np.asarray(affine_noise_batch(CFG, jax.random.PRNGKey(1), 0.0))
  spairs = np.bincount((structured[:, :-1] * CFG.vocab_size + structured[:, 1:]).ravel(),
                       minlength=CFG.vocab_size**2)
  assert stats.chisquare(spairs).pvalue < 1e-10


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_meso_mixture_has_the_stated_noise_fraction(p):
  tokens = np.asarray(affine_noise_batch(CFG, jax.random.PRNGKey(2), p))
  n = tokens[:, 1:].size
  expected = p * (1 - 1 / CFG.vocab_size)  # a replaced token equals the rule's token with probability 1/V
  se = math.sqrt(expected * (1 - expected) / n)
  assert abs(rule_mismatch_fraction(tokens, CFG) - expected) < 5 * se


def test_entropy_rate_endpoints_and_value():
  assert affine_noise_entropy_rate(1.0, 64) == pytest.approx(6.0)
  assert affine_noise_entropy_rate(0.0, 64) == 0.0
  p, v = 0.5, 64
  hit, miss = 1 - p + p / v, p / v
  assert affine_noise_entropy_rate(p, v) == pytest.approx(-hit * math.log2(hit) - (v - 1) * miss * math.log2(miss))
  with pytest.raises(ValueError, match="p: expected a probability"):
    affine_noise_entropy_rate(1.5, 64)


def test_batches_are_a_pure_function_of_key_and_step():
  key = jax.random.PRNGKey(3)
  a = batch_for_step(CFG, key, 7, 0.5)
  b = batch_for_step(CFG, key, 7, 0.5)
  c = batch_for_step(CFG, key, 8, 0.5)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
