"""The MP-at-initialisation check can fail, and its family-wise rule is calibrated."""

import numpy as np

from models.presets import tiny_config
from models import run_folder
from models.train import train_run
from theory_checks import mp_at_init


def test_check_passes_at_truth_and_fails_on_a_wrong_prediction(tmp_path):
  cfg = tiny_config("chk")
  run = run_folder.load_run(train_run(cfg, tmp_path, progress=False))
  assert mp_at_init.check_run(run, null_draws=100).status == "PASS"
  assert mp_at_init.check_run(run, null_draws=100, variance_factor=1.5).status == "FAIL"


def test_binomial_quantile():
  # P(Bin(100, 0.01) <= 3) = 0.9816, <= 4 = 0.9966
  assert mp_at_init.binomial_upper_quantile(100, 0.01, 0.99) == 4
  assert mp_at_init.binomial_upper_quantile(100, 0.01, 0.98) == 3


def test_null_critical_value_is_calibrated():
  # Fresh Gaussian matrices exceed the simulated 90% critical value about 10% of the time.
  shape, level = (12, 30), 0.1
  crit = mp_at_init.null_ks_critical_value(shape, level, draws=2000, seed=1)
  rng = np.random.default_rng(99)
  from spectral.esd import esd_reference
  from spectral.marchenko_pastur import mp_ks_distance
  stats = [12 * mp_ks_distance(esd_reference(rng.standard_normal(shape)), 0.4, 1.0) for _ in range(1000)]
  rate = np.mean(np.asarray(stats) > crit)
  assert abs(rate - level) < 4 * np.sqrt(level * (1 - level) / 1000) + 0.015
