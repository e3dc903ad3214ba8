"""Checks 1-3: quick verdicts are well formed, deliberately wrong predictions FAIL, and calibration holds.

Calibration tolerance: ``k`` false alarms among ``n`` independent trials at nominal level ``p`` must stay within the
Binomial(n, p) 99.9% quantile (a correct test fails this 0.1% of the time; at a fixed seed it is deterministic), and
the rate must not exceed twice nominal by more than that allowance: the issue's "twice nominal is a bug" rule.
"""

import json

import numpy as np

from theory_checks import bbp, common, mp_at_init, tw_fluctuations
from theory_checks.__main__ import main
from theory_checks.verdict import Verdict

WELL_FORMED_KEYS = {"check", "prediction", "source", "tolerance", "status", "measured", "predicted", "details",
                    "run", "series"}


def assert_well_formed(v: Verdict):
  d = v.to_dict()
  assert set(d) == WELL_FORMED_KEYS
  assert d["status"] in ("PASS", "FAIL", "INCONCLUSIVE")
  assert d["prediction"] and d["source"] and d["tolerance"] and d["measured"]
  json.dumps(d)


def assert_calibrated(rate: float, trials: int, level: float):
  allowed = common.binomial_upper_quantile(trials, level, 0.999)
  assert rate * trials <= allowed, (rate, trials, allowed)


def test_tw_fluctuations_quick_pass_and_wrong_law_fails():
  v = tw_fluctuations.run(quick=True)
  assert_well_formed(v)
  assert v.status == "PASS"
  assert len(v.series["scaled_lmax"]) == tw_fluctuations.sizes(True)["seeds"]
  assert tw_fluctuations.check(shape=(40, 20), seeds=400, beta=2).status == "FAIL"
  assert tw_fluctuations.check(shape=(40, 20), seeds=400, thetas=[1.5]).status == "FAIL"


def test_tw_fluctuations_calibration():
  c = tw_fluctuations.calibrate(quick=True, seed=0, replicates=100, seeds=200)
  assert_calibrated(c["false_alarm"], c["trials"], c["level"])
  assert c["power"] >= 0.95


def test_bbp_quick_pass_and_wrong_q_fails():
  v = bbp.run(quick=True)
  assert_well_formed(v)
  assert v.status == "PASS", v.details
  assert bbp.check(q_pred=1.0).status == "FAIL"


def test_bbp_calibration():
  c = bbp.calibrate(quick=True, seed=0, trials=300)
  assert_calibrated(c["false_alarm"], c["trials"], c["level"])
  assert_calibrated(c["false_alarm_below_half_threshold"], c["trials"], c["level"])
  # Power at 1.5 theta_c (N = 100): the outlier sits ~2 fluctuation sd above the 99% TW threshold.
  assert c["power"] >= 0.8


def test_mp_at_init_calibration():
  c = mp_at_init.calibrate(quick=True, seed=0, shapes=[(16, 16), (16, 64)], trials=150, null_draws=200)
  # The bulk critical value is itself a Monte Carlo quantile (200 draws), which adds its own error to the rate:
  # allow the binomial tolerance on the estimated rate plus the 99.9% range of the quantile's coverage.
  assert c["false_alarm_bulk"] * c["trials"] <= common.binomial_upper_quantile(c["trials"], 0.01, 0.999) + 4
  assert_calibrated(c["false_alarm_edge"], c["trials"], c["level"])
  assert c["power_bulk"] >= 0.7 and c["power_edge"] >= 0.7


def test_cli_runs_a_check_and_writes_json(tmp_path, capsys):
  out = tmp_path / "v.json"
  assert main(["bbp", "--quick", "--json", str(out)]) == 0
  d = json.loads(out.read_text())
  assert d["status"] == "PASS" and d["check"] == "bbp"
  assert np.all(np.diff(d["series"]["curve_theta"]) > 0)
  assert main(["list"]) == 0
  assert "tw_fluctuations" in capsys.readouterr().out
