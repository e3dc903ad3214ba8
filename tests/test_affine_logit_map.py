"""Check 12 (affine_logit_map): the margin measurement recovers beta(p) from the Bayes map, the judge PASSes the
right margin, FAILs a wrong one and is INCONCLUSIVE on an unconverged run."""

import math

import numpy as np
import pytest

from models.config import DataConfig
from models.data import affine_bayes_log_probability_map, affine_bayes_margin
from models.token_map import centre_rows_and_columns
from theory_checks import affine_logit_map as alm

from tests.test_checks_calibration import assert_well_formed

CFG = DataConfig(vocab_size=32)


def _rule(cfg):
  x = np.arange(cfg.vocab_size)
  rule = np.zeros((cfg.vocab_size, cfg.vocab_size))
  rule[x, (cfg.affine_a * x + cfg.affine_b) % cfg.vocab_size] = 1.0
  return rule


def test_margin_of_the_bayes_map_is_beta():
  for p in (0.2, 0.5, 0.9):
    m = alm.map_along_rule(centre_rows_and_columns(affine_bayes_log_probability_map(p, CFG)), _rule(CFG))
    assert m["margin"] == pytest.approx(affine_bayes_margin(p, 32), rel=1e-12)
    assert m["alignment"] == pytest.approx(1.0) and m["off_rule_std"] < 1e-12 and m["sv_cv"] < 1e-10


def test_margin_survives_an_off_rule_residue():
  """A residue with no component along Pi (here: noise projected off Pi_c) lowers the alignment, not the margin."""
  rule = _rule(CFG)
  bayes = centre_rows_and_columns(affine_bayes_log_probability_map(0.5, CFG))
  noise = centre_rows_and_columns(np.random.default_rng(0).normal(0, 0.4, (32, 32)))
  pi_c = rule - 1 / 32
  noise -= np.sum(noise * pi_c) / np.sum(pi_c**2) * pi_c
  m = alm.map_along_rule(bayes + noise, rule)
  assert m["margin"] == pytest.approx(math.log(33), rel=1e-10) and 0.5 < m["alignment"] < 0.9
  assert m["off_rule_std"] == pytest.approx(0.4, rel=0.15)


def _row(p, margin_ratio, excess=0.01, regime="meso"):
  beta = affine_bayes_margin(p, 32)
  return dict(regime=regime, noise_p=p, beta=beta, margin=margin_ratio * beta if beta < math.inf else 10.0,
              alignment=0.8, off_rule_std=0.3, sv_mean=1.0, sv_cv=0.5, excess_test_loss_nats=excess)


def test_judge():
  noise = [_row(1.0, 0.0, regime="noise")]
  assert alm.judge([_row(0.5, 1.05), _row(0.5, 0.97)] + noise)[0] == "PASS"
  # A margin linear in the knob, (1 - p) ln V = 1.73 instead of 3.50 at V = 32, p = 0.5, is rejected.
  wrong = 0.5 * math.log(32) / affine_bayes_margin(0.5, 32)
  assert alm.judge([_row(0.5, wrong)])[0] == "FAIL"
  assert alm.judge([_row(0.5, 0.5, excess=0.3)])[0] == "INCONCLUSIVE"
  assert alm.judge(noise)[0] == "INCONCLUSIVE"


@pytest.mark.slow
def test_quick_check(tmp_path):
  v = alm.run(quick=True, runs_dir=tmp_path)
  assert_well_formed(v)
  assert v.status == "PASS", v.summary()
