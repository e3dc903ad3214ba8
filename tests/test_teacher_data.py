"""The planted rank-k teacher (``data.kind = "teacher"``): exact entropy rate, recoverable subspaces, a sampler that
follows the stated chain, per-member fixed training pools, and the subspaces recorded in run.json."""

import math

import jax
import numpy as np
import pytest
from scipy import stats

from models.presets import tiny_config
from models import run_folder
from models.config import DataConfig, with_overrides
from models.data import make_task, make_teacher, markov_entropy_rate, stationary_distribution, teacher_of
from models.token_map import centre_rows_and_columns
from models.train import train_run

CFG = DataConfig(kind="teacher", vocab_size=8, seq_len=64, batch_size=512, teacher_rank=2, teacher_scale=2.0)


def _sample(cfg, p, seed=0):
  return np.asarray(make_task(cfg).eval_batch(jax.random.PRNGKey(seed), 0, p)[0])


def _monte_carlo_bits(transition, tokens):
  """Mean of ``-log2 P(x_{t+1} | x_t)`` over sampled transitions (unbiased for the rate when ``x_0 ~ pi``) and its
  standard error from the per-sequence means (sequences are independent)."""
  per_sequence = -np.log2(transition[tokens[:, :-1], tokens[:, 1:]]).mean(axis=1)
  return per_sequence.mean(), per_sequence.std(ddof=1) / math.sqrt(per_sequence.size)


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_entropy_rate_is_exact_against_monte_carlo(p):
  task, teacher = make_task(CFG), teacher_of(CFG)
  bits, exact = task.entropy_rate(p)
  assert exact
  mc, se = _monte_carlo_bits(teacher.transition_matrix(p), _sample(CFG, p))
  assert abs(mc - bits) < 4 * se, (mc, se, bits)
  assert 0.0 < bits < 3.0  # below log2 V: the teacher is informative


def test_wrong_entropy_formula_is_caught():
  """The same Monte Carlo comparison rejects the rate with a uniform start distribution instead of the stationary one
  (the chain's ``pi`` is far from uniform at beta = 2), so the comparison above has power."""
  transition = teacher_of(CFG).transition_matrix(0.0)
  wrong = float(np.full(8, 1 / 8) @ -(transition * np.log2(transition)).sum(axis=1))
  mc, se = _monte_carlo_bits(transition, _sample(CFG, 0.0))
  assert abs(mc - wrong) > 8 * se
  assert abs(wrong - markov_entropy_rate(transition)) > 0.05


def test_limits_of_the_rate():
  assert make_task(CFG).entropy_rate(1.0)[0] == pytest.approx(3.0)  # pure noise: log2 V
  flat = with_overrides_data(teacher_scale=0.0)
  assert make_task(flat).entropy_rate(0.0)[0] == pytest.approx(3.0)  # beta = 0: uniform next token


def with_overrides_data(**kw):
  return DataConfig(**{**CFG.__dict__, **kw})


def test_sampler_follows_the_stated_chain():
  p = 0.3
  teacher = teacher_of(CFG)
  transition = teacher.transition_matrix(p)
  tok = _sample(CFG, p, seed=1)
  counts = np.zeros((8, 8))
  np.add.at(counts, (tok[:, :-1].ravel(), tok[:, 1:].ravel()), 1)
  for x in range(8):  # one chi-square test per row, family-wise at 1e-3
    assert stats.chisquare(counts[x], counts[x].sum() * transition[x]).pvalue > 1e-3 / 8
  pi = stationary_distribution(transition)
  assert stats.chisquare(np.bincount(tok[:, 0], minlength=8), 512 * pi).pvalue > 1e-3
  np.testing.assert_allclose(pi @ transition, pi, atol=1e-14)


def test_teacher_geometry():
  t = make_teacher(16, 3, 1.5, seed=4)
  np.testing.assert_allclose(t.u.T @ t.u, np.eye(3), atol=1e-12)
  np.testing.assert_allclose(t.w.T @ t.w, np.eye(3), atol=1e-12)
  a = t.logit_map()
  np.testing.assert_allclose(a.sum(axis=0), 0, atol=1e-12)
  np.testing.assert_allclose(a.sum(axis=1), 0, atol=1e-12)
  assert np.sqrt(np.mean(a**2)) == pytest.approx(1.5)  # beta is the RMS teacher logit
  assert not np.allclose(make_teacher(16, 3, 1.5, seed=5).u, t.u)


def _subspace_overlap(a, b):
  """``||a^T b||_F^2 / k`` for orthonormal ``(n, k)`` frames: 1 for equal spans, about ``k / n`` for random ones."""
  return float(np.sum((a.T @ b) ** 2) / a.shape[1])


@pytest.mark.parametrize("p, floor", [(0.0, 1.0 - 1e-10), (0.3, 0.99), (0.8, 0.98)])
def test_planted_subspaces_are_recovered_from_the_generating_map(p, floor):
  """SVD of the centred log-probability map ``log P`` recovers ``U`` and ``W``: exactly at ``p = 0`` (``log softmax``
  is ``beta A`` plus a per-row constant), and to first order in ``(1 - p) beta A`` through the mixture with uniform
  noise (``log((1 - p) S + p / V) = -log V + (1 - p) beta A + O(((1 - p) beta A)^2)`` up to row constants), so there
  the singular values are ``(1 - p) beta V / sqrt(k)`` to about 10% at beta = 0.5."""
  t = make_teacher(16, 3, 0.5, seed=2)
  m = centre_rows_and_columns(np.log(t.transition_matrix(p)))
  u, s, vt = np.linalg.svd(m)
  assert _subspace_overlap(t.u, u[:, :3]) >= floor and _subspace_overlap(t.w, vt[:3].T) >= floor
  np.testing.assert_allclose(s[:3], (1 - p) * 0.5 * 16 / math.sqrt(3), rtol=1e-10 if p == 0.0 else 0.1)
  if p == 0.0:
    assert s[3] < 1e-10
  random = np.linalg.qr(np.random.default_rng(0).normal(size=(16, 3)))[0]
  assert _subspace_overlap(t.u, random) < 0.6  # the overlap can fail


def test_training_pool_is_fixed_per_member_and_heldout_is_fresh():
  cfg = DataConfig(kind="teacher", vocab_size=8, seq_len=6, batch_size=32, teacher_train_sequences=5)
  task = make_task(cfg)
  key = jax.random.PRNGKey(3)
  seen = {tuple(r) for s in range(4) for r in np.asarray(task.train_batch(key, s, 0.2)[0])}
  assert len(seen) <= 5
  assert np.array_equal(task.train_batch(key, 7, 0.2)[0], task.train_batch(key, 7, 0.2)[0])
  other = {tuple(r) for r in np.asarray(task.train_batch(jax.random.PRNGKey(4), 0, 0.2)[0])}
  assert not other <= seen  # another member has another pool
  held = {tuple(r) for r in np.asarray(task.eval_batch(key, 0, 0.2)[0])}
  assert len(held) > 5
  assert task.info["train_transitions"] == 30


def test_bad_teacher_configs():
  with pytest.raises(ValueError, match="data.teacher_rank"):
    DataConfig(kind="teacher", vocab_size=8, teacher_rank=8)
  with pytest.raises(ValueError, match="data.teacher_scale"):
    DataConfig(kind="teacher", teacher_scale=-1.0)
  with pytest.raises(ValueError, match="data.teacher_train_sequences"):
    DataConfig(kind="teacher", teacher_train_sequences=-1)
  with pytest.raises(ValueError, match="rank"):
    make_teacher(8, 0, 1.0, 0)


def test_run_json_records_the_planted_subspaces(tmp_path):
  cfg = with_overrides(tiny_config("teacher_tiny"), {"data.kind": "teacher", "data.teacher_rank": 3,
                                                     "data.teacher_train_sequences": 16, "train.steps": 4,
                                                     "train.snapshot_steps": [0, 4], "train.members_per_regime": 1})
  run = run_folder.load_run(train_run(cfg, tmp_path, progress=False))
  data = run.info["data"]
  teacher = teacher_of(cfg.data)
  np.testing.assert_allclose(np.asarray(data["teacher_u"]), teacher.u)
  np.testing.assert_allclose(np.asarray(data["teacher_w"]), teacher.w)
  assert np.asarray(data["teacher_u"]).shape == (16, 3) and len(data["teacher_singular_values"]) == 3
  for m in run.members:
    assert m["entropy_rate_exact"] and m["entropy_rate_bits"] == pytest.approx(
        make_task(cfg.data).entropy_rate(m["noise_p"])[0])
    assert np.isfinite(run.metric("test_loss", m["index"])[1]).all()


@pytest.mark.parametrize("p, v", [(0.5, 64), (0.9, 16), (0.05, 32)])
def test_affine_bayes_map_is_beta_times_a_centred_permutation(p, v):
  from models.data import affine_bayes_log_probability_map, affine_bayes_margin
  cfg = DataConfig(vocab_size=v)
  s = np.linalg.svd(centre_rows_and_columns(affine_bayes_log_probability_map(p, cfg)), compute_uv=False)
  beta = affine_bayes_margin(p, v)
  assert beta == pytest.approx(math.log(1 + (1 - p) * v / p))
  np.testing.assert_allclose(s[: v - 1], beta, rtol=1e-12)
  assert s[-1] < 1e-10 * beta
  # Not a permutation (gcd(a, V) = 2): the flat spectrum is lost, so the test above can fail.
  s2 = np.linalg.svd(centre_rows_and_columns(affine_bayes_log_probability_map(p, DataConfig(vocab_size=v, affine_a=2))),
                     compute_uv=False)
  assert not np.allclose(s2[: v - 1], beta, rtol=1e-3)
  assert affine_bayes_margin(1.0, v) == 0.0 and affine_bayes_margin(0.0, v) == math.inf
