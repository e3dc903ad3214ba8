"""Check 11 (learning_bbp): the threshold algebra, the transition judge on the plug-in estimator (right threshold
PASSes, a wrong one FAILs), the rank judge and its power rule, and the whole check on tiny runs."""

import dataclasses
import math

import numpy as np
import pytest

from spectral import bbp
from theory_checks import learning_bbp as lb

from tests.test_checks_calibration import assert_well_formed


def test_effective_snr_and_beta_are_inverse():
  beta = lb.beta_for(2.5, 5120, 16, 2)
  assert lb.effective_snr(0.0, beta, 5120, 16, 2) == pytest.approx(2.5)
  assert lb.effective_snr(0.6, beta, 5120, 16, 2) == pytest.approx(1.0)  # (1 - p) scales theta
  assert lb.effective_snr(0.0, beta, 4 * 5120, 16, 2) == pytest.approx(5.0)  # sqrt(n)


def test_predicted_overlap_is_bgn_with_q_one():
  theta = np.linspace(0.1, 4.0, 40)
  u, v = bbp.bbp_overlaps(theta, 1.0)
  np.testing.assert_allclose(lb.predicted_overlap(theta), u, atol=1e-12)
  np.testing.assert_allclose(u, v, atol=1e-12)
  assert lb.predicted_overlap(math.sqrt(2.0)) == pytest.approx(0.5)  # the half-plateau point


def test_crossing_interpolates_and_refuses_outside_the_grid():
  assert lb.crossing([1, 2, 3], [0.2, 0.4, 0.8]) == pytest.approx(2.25)
  assert math.isnan(lb.crossing([1, 2, 3], [0.6, 0.7, 0.8]))  # above from the start
  assert math.isnan(lb.crossing([1, 2, 3], [0.1, 0.2, 0.3]))  # never


@pytest.fixture(scope="module")
def plugin_overlaps():
  """Overlaps of the plug-in estimator at the quick design (numpy, about a second): the ideal learner."""
  return lb.simulate_plugin(lb.QUICK, lb.QUICK.thetas, seeds=8, seed=3)


def test_transition_judge_passes_the_right_threshold_and_fails_a_wrong_one(plugin_overlaps):
  thetas = lb.QUICK.thetas
  status, facts = lb.judge_transition(thetas, plugin_overlaps)
  assert status == "PASS", facts
  assert facts["theta_half_se"] > 0 and abs(facts["theta_half_measured"] - math.sqrt(2)) < 0.2
  # A theory that put the threshold at the naive "signal singular value equals the noise edge" (theta_c = 2, the
  # outlier location of a spike at the threshold) or at half the BBP value is rejected by the same rule.
  assert lb.judge_transition(thetas, plugin_overlaps, theta_c_pred=2.0)[0] == "FAIL"
  assert lb.judge_transition(thetas, plugin_overlaps, theta_c_pred=0.5)[0] == "FAIL"


def test_transition_judge_is_inconclusive_without_a_crossing(plugin_overlaps):
  status, facts = lb.judge_transition(lb.QUICK.thetas, 0.2 * plugin_overlaps)
  assert status == "INCONCLUSIVE" and "does not cross" in facts["reason"]


def _rows(learned_by_seed):
  return [dict(seed_index=j, overlap=0.9, counts={m: dict(rank=x, dc=0, positions=0, teacher=x, learned=x)
                                                  for m in lb.MATRICES}) for j, x in enumerate(learned_by_seed)]


def test_rank_judge_counts_misses_and_skips_underpowered_ranks():
  assert lb.rank_test_power(6.0, 1, 16) > lb.POWER_MARGIN > lb.rank_test_power(6.0, 3, 16)
  ok = {1: _rows([1, 1, 1, 1, 1]), 2: _rows([2, 2, 3, 2, 2]), 3: _rows([0, 1, 0, 0, 1])}
  status, facts = lb.judge_ranks(ok, 5, 6.0, 16)
  assert status == "PASS" and not facts["table"][3]["judged"] and facts["allowed_misses"] == 1
  bad = {1: _rows([1, 1, 1, 1, 1]), 2: _rows([1, 1, 2, 2, 2])}
  assert lb.judge_ranks(bad, 5, 6.0, 16)[0] == "FAIL"
  assert lb.judge_ranks({3: _rows([3] * 5)}, 5, 6.0, 16)[0] == "INCONCLUSIVE"  # nothing judgeable


TINY = dataclasses.replace(lb.QUICK, vocab_size=8, train_sequences=64, batch_size=16, d_model=16, steps=30,
                           thetas=(1.0, 3.0), seeds=2, ranks=(1,), theta_rank=4.0)


@pytest.mark.slow  # about 30 s on a loaded 2-core machine (two trainings, five structure-rank shapes)
def test_check_runs_on_tiny_runs(tmp_path):
  from models.run_folder import load_run
  from models.train import train_run
  sweep = load_run(train_run(lb.sweep_config(TINY, "tiny"), tmp_path, progress=False))
  ranks = {1: load_run(train_run(lb.rank_config(TINY, 1, "tiny"), tmp_path, progress=False))}
  v = lb.check_runs(sweep, ranks, TINY, plugin_seeds=2)
  assert_well_formed(v)
  s = v.series
  assert len(s["overlap_mean"]) == 2 and s["ranks"] == [1] and len(s["rank_map_learned_by_seed"][0]) == 2
  members = [d for d in v.details if d.get("part") == "member"]
  assert sorted(round(d["theta"], 6) for d in members) == [1.0, 1.0, 3.0, 3.0]
  for d in members:
    assert 0.0 <= d["overlap"] <= 1.0 and set(d["counts"]) == set(lb.MATRICES)


@pytest.mark.slow
def test_quick_check_passes(tmp_path):
  v = lb.run(quick=True, runs_dir=tmp_path)
  assert_well_formed(v)
  assert v.status == "PASS", v.summary()
