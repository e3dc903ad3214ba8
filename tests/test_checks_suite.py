"""Checks 4-10: small-size verdicts are well formed, the right predictions PASS, deliberately wrong ones FAIL."""

import json

import pytest

from models.presets import tiny_config
from models import run_folder
from models.train import train_run
from theory_checks import (hessian_outliers, jacobian_spectra, noise_structure, rank_collapse,
                           wigner_goe)
from theory_checks import __main__ as cli
from theory_checks import runner
from theory_checks.__main__ import main
from theory_checks.registry import CHECKS, Check
from theory_checks.verdict import Verdict

from tests.test_checks_calibration import assert_well_formed


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  return run_folder.load_run(train_run(tiny_config("chk_suite"), tmp_path_factory.mktemp("runs"), progress=False))


def test_registry_has_the_fourteen_checks():
  assert len(CHECKS) == 14


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


@pytest.fixture(scope="module")
def hessian_measurement():
  """One trained classifier's Hessian, judged by the three tests below (measuring is the expensive part)."""
  return hessian_outliers.measure(**HESSIAN_SMALL)


def test_hessian_outliers(hessian_measurement):
  v = hessian_outliers.judge(hessian_measurement)
  assert_well_formed(v)
  assert v.measured["lanczos_rel_error_vs_dense"] < 1e-3
  assert v.status == "PASS", v.measured
  assert v.measured["outliers"] in (3, 4)
  # The split is clear, so a wrong class count cannot hide behind INCONCLUSIVE.
  assert hessian_outliers.judge(hessian_measurement, c_pred=9).status == "FAIL"
  assert hessian_outliers.count_at_largest_gap([10.0, 9.0, 8.0, 1.0, 0.9, 0.8])[0] == 3


def test_hessian_outliers_rejects_an_off_by_one_count(monkeypatch, hessian_measurement):
  # A wrong counting rule (the index of the largest gap instead of the number of values above it) must FAIL.
  right = hessian_outliers.count_at_largest_gap
  monkeypatch.setattr(hessian_outliers, "count_at_largest_gap", lambda v: (right(v)[0] - 1, *right(v)[1:]))
  v = hessian_outliers.judge(hessian_measurement)
  assert v.measured["outliers"] == 2 and v.status == "FAIL", v.measured


@pytest.mark.slow  # structure rank of dW for every matrix of six members at two checkpoints: ~3 min on loaded 2 cores
def test_noise_structure_reads_runs_and_judges(tiny_run):
  # The judging rule's outcomes are forced on synthetic rows in tests/test_noise_structure.py; here the whole path
  # (checkpoints, regenerated inits, structure rank, attribution, remainder, dynamics) on a real tiny run.
  v = noise_structure.check_runs(tiny_run)
  assert_well_formed(v)
  assert v.series["p"] == [1.0, 0.5, 0.0] and v.series["dynamics_steps"] == [5, 20]
  assert v.status in ("FAIL", "INCONCLUSIVE", "PASS")
  assert v.series["total_excess_mean"][0] == 0.0  # p = 1 is its own matched control


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
  monkeypatch.setattr(runner, "get_check", fake.__getitem__)
  assert main(["all", "--runs", str(tmp_path), "--jobs", "1"]) == code  # fakes live in this process only
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


def test_noise_structure_measurement_is_stored_per_matrix_and_resumes(tiny_run, monkeypatch):
  regimes = [tiny_run.members[0]["regime"]]
  calls = []
  real = noise_structure.structure_rank_batch
  monkeypatch.setattr(noise_structure, "structure_rank_batch", lambda *a, **k: calls.append(1) or real(*a, **k))
  fresh = noise_structure.measure_run(tiny_run, regimes=regimes, remainder=False)
  n = len(fresh[0]["matrices"])
  assert len(calls) == n
  folder = noise_structure.measurement_folder(tiny_run, step=fresh[0]["step"], regimes=regimes, remainder=False,
                                              seed=0)
  stored = sorted(folder.glob("*.json"))
  assert len(stored) == n
  stored[0].unlink()  # a measurement killed before its last matrix: only that matrix is measured again
  record = json.loads(stored[1].read_text())
  stored[1].write_text(json.dumps(dict(record, version=-1)))  # another version's rows are not trusted
  again = noise_structure.measure_run(tiny_run, regimes=regimes, remainder=False)
  assert len(calls) == n + 2
  assert json.dumps(again) == json.dumps(fresh)  # the same rows, keys in the same order (NaN included)
  for name, mrow in fresh[0]["matrices"].items():
    assert mrow["rank_cap"] == min(min(tiny_run.info["matrices"][name]["shape"]) - 1, 64)
  noise_structure.measure_run(tiny_run, regimes=regimes, remainder=False)
  assert len(calls) == n + 2  # everything stored now
  other_seed = noise_structure.measure_run(tiny_run, regimes=regimes, remainder=False, seed=1, store=False)
  assert len(calls) == 2 * n + 2 and not noise_structure.measurement_folder(
      tiny_run, step=fresh[0]["step"], regimes=regimes, remainder=False, seed=1).exists()
  assert [r["member"] for r in other_seed] == [r["member"] for r in fresh]
