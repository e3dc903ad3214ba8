"""Checks 4-10: small-size verdicts are well formed, the right predictions PASS, deliberately wrong ones FAIL."""

import json

import numpy as np
import pytest

from models.presets import tiny_config
from models import run_folder
from models.train import train_run
from theory_checks import (hessian_outliers, ht_generalisation, jacobian_spectra, noise_structure, random_labels,
                           rank_collapse, wigner_goe)
from theory_checks import __main__ as cli
from theory_checks.__main__ import main
from theory_checks.registry import CHECKS, Check
from theory_checks.verdict import Verdict

from tests.test_checks_calibration import assert_well_formed


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  return run_folder.load_run(train_run(tiny_config("chk_suite"), tmp_path_factory.mktemp("runs"), progress=False))


def test_registry_has_the_thirteen_checks():
  assert len(CHECKS) == 13


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


HESSIAN_SMALL = dict(samples=1024, steps=200)  # 4 classes: the top Ritz values split clearly after C - 1 = 3


def test_hessian_outliers():
  v = hessian_outliers.check(**HESSIAN_SMALL)
  assert_well_formed(v)
  assert v.measured["lanczos_rel_error_vs_dense"] < 1e-3
  assert v.status == "PASS", v.measured
  assert v.measured["outliers"] in (3, 4)
  # The split is clear, so a wrong class count cannot hide behind INCONCLUSIVE.
  assert hessian_outliers.check(c_pred=9, **HESSIAN_SMALL).status == "FAIL"
  assert hessian_outliers.count_at_largest_gap([10.0, 9.0, 8.0, 1.0, 0.9, 0.8])[0] == 3


def test_hessian_outliers_rejects_an_off_by_one_count(monkeypatch):
  # A wrong counting rule (the index of the largest gap instead of the number of values above it) must FAIL.
  right = hessian_outliers.count_at_largest_gap
  monkeypatch.setattr(hessian_outliers, "count_at_largest_gap", lambda v: (right(v)[0] - 1, *right(v)[1:]))
  v = hessian_outliers.check(**HESSIAN_SMALL)
  assert v.measured["outliers"] == 2 and v.status == "FAIL", v.measured


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
  # Losses unrelated to alpha: both bootstrap intervals contain 0 (rho 0.27, CI [-0.14, 0.58]), the sweep cannot tell.
  noise = [dict(r, test_loss=rng.normal()) for r in rows]
  assert ht_generalisation.judge(noise)[0] == "INCONCLUSIVE"


def test_random_labels_judge():
  mem = lambda s, out, sr, test, train: dict(seed_index=s, outliers=out, outliers_median_sigma2=out,
                                             bulk_collapsed_matrices=0, matrices=10, lmax_over_threshold=2.0,
                                             stable_rank=sr, test_accuracy=test, train_accuracy=train)
  real = [mem(s, 2 + s % 2, 3.0 + 0.1 * s, 0.95, 1.0) for s in range(4)]
  rand = [mem(s, 8 + s % 2, 6.0 + 0.2 * s, 0.04, 1.0) for s in range(4)]
  assert random_labels.judge(real, rand, 23)[0] == "PASS"
  # Runs swapped wholesale: the "real" runs do not generalise, so the premise fails, whatever the spectra say.
  status, facts = random_labels.judge(rand, real, 23)
  assert status == "INCONCLUSIVE" and "did not generalise" in facts["reason"]
  # The wrong direction with the premise met FAILs, and so does no difference at all (the prediction claims one).
  assert random_labels.judge([dict(r, test_accuracy=0.95) for r in rand],
                             [dict(r, test_accuracy=0.04) for r in real], 23)[0] == "FAIL"
  assert random_labels.judge(real, [dict(r, test_accuracy=0.04) for r in real], 23)[0] == "FAIL"
  assert random_labels.judge([dict(r, test_accuracy=0.3) for r in real], rand, 23)[0] == "INCONCLUSIVE"


def test_spearman_bootstrap_ci():
  x = np.arange(20.0)
  rho, lo, hi = ht_generalisation.spearman_ci(x, x**3, boots=300)
  assert rho == pytest.approx(1.0) and lo > 0.9
  rng = np.random.default_rng(0)
  rho, lo, hi = ht_generalisation.spearman_ci(rng.normal(size=40), rng.normal(size=40), boots=300)
  assert lo < 0 < hi


def test_verdict_rejects_an_unknown_status():
  with pytest.raises(ValueError, match="status"):
    Verdict(check="x", prediction="p", source="s", tolerance="t", status="pass", measured={}, predicted={})


def _fake_check(name, status):
  verdict = Verdict(check=name, prediction="p", source="s", tolerance="t", status=status, measured={"x": 1},
                    predicted={"x": 1})
  return Check(name, "fake", lambda quick, runs_dir, seed: verdict)


@pytest.mark.parametrize("statuses, code", [(("PASS", "INCONCLUSIVE"), 0), (("PASS", "FAIL", "INCONCLUSIVE"), 1),
                                            (("PASS",), 0)])
def test_cli_exit_status_is_one_exactly_when_a_check_fails(monkeypatch, tmp_path, capsys, statuses, code):
  fake = {f"fake{i}": _fake_check(f"fake{i}", s) for i, s in enumerate(statuses)}
  monkeypatch.setattr(cli, "CHECKS", fake)
  monkeypatch.setattr(cli, "get_check", fake.__getitem__)
  assert main(["all", "--runs", str(tmp_path)]) == code
  for name, check in fake.items():
    assert main([name, "--runs", str(tmp_path)]) == int(check.run(True, tmp_path, 0).status == "FAIL")
  capsys.readouterr()


# Checks whose predictions are theorems at the sizes used: their quick runs must PASS. Checks 7-9 test empirical
# claims about trained networks; their verdicts are whatever the runs say.
THEOREM_CHECKS = ("mp_at_init", "tw_fluctuations", "bbp", "wigner_goe", "jacobian_spectra", "rank_collapse",
                  "hessian_outliers")


@pytest.mark.slow
def test_cli_all_quick(tmp_path):
  code = main(["all", "--quick", "--runs", str(tmp_path)])
  statuses = {}
  for name in CHECKS:  # beside the run folder each check read, or in <runs>/checks when it read none
    paths = list(tmp_path.glob(f"**/checks/{name}.json"))
    assert len(paths) == 1, (name, paths)
    result = json.loads(paths[0].read_text())
    assert result["check"] == name
    statuses[name] = result["status"]
  assert code == int("FAIL" in statuses.values()), statuses
  assert all(statuses[name] == "PASS" for name in THEOREM_CHECKS), statuses
