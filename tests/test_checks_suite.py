"""Checks 4-10: small-size verdicts are well formed, the right predictions PASS, deliberately wrong ones FAIL."""

import numpy as np
import pytest

from lab.main_job import tiny_config
from models import run_folder
from models.train import train_run
from theory_checks import (hessian_outliers, ht_generalisation, jacobian_spectra, noise_structure, random_labels,
                           rank_collapse, wigner_goe)
from theory_checks.__main__ import main
from theory_checks.registry import CHECKS

from tests.test_checks_calibration import assert_well_formed


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  return run_folder.load_run(train_run(tiny_config("chk_suite"), tmp_path_factory.mktemp("runs"), progress=False))


def test_registry_has_the_twelve_checks():
  assert len(CHECKS) == 12


def test_wigner_goe(tiny_run):
  v = wigner_goe.check(n=50, seeds=8, run=tiny_run)
  assert_well_formed(v)
  assert v.status == "PASS", v.measured
  assert wigner_goe.check(n=50, seeds=8, radius=2.2).status == "FAIL"
  assert wigner_goe.check(n=50, seeds=8, r_pred=wigner_goe.wigner.POISSON_MEAN_SPACING_RATIO).status == "FAIL"


def test_jacobian_spectra():
  kw = dict(n=32, seeds=8, depths=(1, 2))
  v = jacobian_spectra.check(**kw)
  assert_well_formed(v)
  assert v.status == "PASS", v.measured["failing"]
  assert jacobian_spectra.check(weights_pred="orthogonal", **kw).status == "FAIL"
  assert jacobian_spectra.check(depth_offset=1, **kw).status == "FAIL"


def test_rank_collapse():
  v = rank_collapse.run(quick=True)
  assert_well_formed(v)
  assert v.status == "PASS"
  assert rank_collapse.check(predict_skip_collapses=True).status == "FAIL"


def test_hessian_outliers():
  v = hessian_outliers.check(samples=1024, steps=200)
  assert_well_formed(v)
  assert v.measured["lanczos_rel_error_vs_dense"] < 1e-3
  assert v.status in ("PASS", "FAIL", "INCONCLUSIVE")
  assert hessian_outliers.check(samples=1024, steps=200, c_pred=9).status in ("FAIL", "INCONCLUSIVE")
  assert hessian_outliers.count_at_largest_gap([10.0, 9.0, 8.0, 1.0, 0.9, 0.8])[0] == 3


def test_noise_structure_reads_runs_and_judges(tiny_run):
  v = noise_structure.check_runs(tiny_run)
  assert_well_formed(v)
  assert len(v.series["p"]) == 3
  # Forced outcomes on synthetic summaries: the rule can FAIL and can be INCONCLUSIVE.
  reg = lambda p, other, acc: dict(p=p, seeds=3, matrices=10, other_count=other, total_mean=other / 3,
                                   test_accuracy=acc)
  init = {r: dict(total_mean=0.0) for r in ("noise", "meso", "structured")}
  good = dict(init=init, trained=dict(noise=reg(1.0, 0, 0.02), meso=reg(0.5, 4, 0.5), structured=reg(0.0, 0, 1.0)))
  assert noise_structure.judge(good)[0] == "PASS"
  bad = dict(init=init, trained=dict(noise=reg(1.0, 9, 0.02), meso=reg(0.5, 4, 0.5), structured=reg(0.0, 0, 1.0)))
  assert noise_structure.judge(bad)[0] == "FAIL"
  unlearned = dict(init=init, trained=dict(noise=reg(1.0, 0, 0.02), meso=reg(0.5, 4, 0.5),
                                           structured=reg(0.0, 0, 0.3)))
  assert noise_structure.judge(unlearned)[0] == "INCONCLUSIVE"


def test_ht_generalisation_judge():
  rng = np.random.default_rng(0)
  alpha = rng.uniform(2, 6, size=24)
  rows = [dict(alpha=a, alpha_weighted=2 * a, test_loss=a + 0.1 * rng.normal()) for a in alpha]
  assert ht_generalisation.judge(rows)[0] == "PASS"
  assert ht_generalisation.judge(rows, sign=-1)[0] == "FAIL"
  noise = [dict(r, test_loss=rng.normal()) for r in rows]
  assert ht_generalisation.judge(noise)[0] in ("INCONCLUSIVE", "FAIL")


def test_random_labels_judge():
  mem = lambda s, out, sr, test, train: dict(seed_index=s, outliers=out, outliers_median_sigma2=out,
                                             bulk_collapsed_matrices=0, matrices=10, lmax_over_threshold=2.0,
                                             stable_rank=sr, test_accuracy=test, train_accuracy=train)
  real = [mem(s, 2 + s % 2, 3.0 + 0.1 * s, 0.95, 1.0) for s in range(4)]
  rand = [mem(s, 8 + s % 2, 6.0 + 0.2 * s, 0.04, 1.0) for s in range(4)]
  assert random_labels.judge(real, rand, 23)[0] == "PASS"
  assert random_labels.judge(rand, real, 23)[0] in ("FAIL", "INCONCLUSIVE")
  assert random_labels.judge([dict(r, test_accuracy=0.95) for r in rand],
                             [dict(r, test_accuracy=0.04) for r in real], 23)[0] == "FAIL"
  assert random_labels.judge([dict(r, test_accuracy=0.3) for r in real], rand, 23)[0] == "INCONCLUSIVE"


def test_spearman_bootstrap_ci():
  x = np.arange(20.0)
  rho, lo, hi = ht_generalisation.spearman_ci(x, x**3, boots=300)
  assert rho == pytest.approx(1.0) and lo > 0.9
  rng = np.random.default_rng(0)
  rho, lo, hi = ht_generalisation.spearman_ci(rng.normal(size=40), rng.normal(size=40), boots=300)
  assert lo < 0 < hi


@pytest.mark.slow
def test_cli_all_quick(tmp_path):
  assert main(["all", "--quick", "--runs", str(tmp_path)]) in (0, 1)
  for name in CHECKS:
    assert (tmp_path / "checks" / name / "result.json").exists()
