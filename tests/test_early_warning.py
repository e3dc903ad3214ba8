"""Alarm-rule calibration (theory_checks.alarms) on synthetic trajectories with a known change point."""

import math

import numpy as np
import pytest

from theory_checks import alarms as al
from theory_checks.common import binomial_upper_quantile

STEPS = np.arange(0, 2000, 20, dtype=float)
START = 200.0
LEAD = 600.0  # the jump happens this long after the change point


def null_runs(rng, n, kind="control"):
  """AR(1) noise with unit stationary variance: controls that never change."""
  out = []
  for i in range(n):
    e = rng.standard_normal(STEPS.size)
    x = np.empty_like(e)
    x[0] = e[0]
    for k in range(1, x.size):
      x[k] = 0.7 * x[k - 1] + math.sqrt(1 - 0.49) * e[k]
    out.append(al.Trajectory(STEPS, x, False, kind, seed=i))
  return out


def change_runs(rng, n, shift=12.0):
  """The same noise plus a step of ``shift`` at a known change point tau; the 'jump' (t50) at tau + LEAD."""
  out = []
  for i, t in enumerate(null_runs(rng, n)):
    tau = float(rng.choice(STEPS[(STEPS >= 400) & (STEPS <= 1200)]))
    x = t.values + shift * (STEPS >= tau)
    out.append(al.Trajectory(STEPS, x, True, "grok", t50=tau + LEAD, t90=tau + LEAD + 100, seed=1000 + i))
  return out


def test_conformal_threshold_order_statistic():
  stats = np.arange(1.0, 20.0)  # n = 19
  assert al.conformal_threshold(stats, 0.05) == 19.0  # ceil(20 * 0.95) = 19
  assert al.conformal_threshold(stats, 0.5) == 10.0
  assert al.conformal_threshold(stats[:10], 0.05) == math.inf  # n = 10 < 1/0.05 - 1: cannot certify 5%
  with pytest.raises(ValueError, match="fpr"):
    al.conformal_threshold(stats, 0.0)


def test_trailing_mean_is_causal():
  x = np.array([1.0, np.nan, 3.0, 5.0])
  np.testing.assert_allclose(al.trailing_mean(x, 2), [1.0, 1.0, 3.0, 4.0])
  y = x.copy()
  y[3] = 100.0  # a change in the future never moves the past
  np.testing.assert_allclose(al.trailing_mean(y, 2)[:3], al.trailing_mean(x, 2)[:3])


def test_auroc_known_values():
  assert al.auroc([2, 3], [0, 1]) == 1.0
  assert al.auroc([0, 1], [2, 3]) == 0.0
  assert al.auroc([1, 1], [1, 1]) == 0.5
  assert math.isnan(al.auroc([], [1]))


def test_lead_time_recovered_and_fpr_at_nominal_level():
  """Controls: AR(1) noise. Positives: the same plus a 12-sigma step at tau. The alarm rings at tau exactly (the
  step is far above any calibrated threshold), so the lead to t50 is LEAD in every run; the held-out controls alarm
  at the nominal rate (binomial 99% band around the conformal guarantee)."""
  rng = np.random.default_rng(0)
  fpr = 0.05
  cal = null_runs(rng, 199) + change_runs(rng, 20)
  ev = null_runs(rng, 600, kind="held-out") + change_runs(rng, 40)
  res = al.evaluate_signal(cal, ev, fpr=fpr, start=START, horizons=(300.0,))
  assert res["sign"] == 1.0
  assert res["detection_rate"] == 1.0
  assert res["lead50"] == [LEAD] * 40
  assert res["lead50_median"] == LEAD and res["lead90_median"] == LEAD + 100
  n = res["n_controls"]
  fired = round(res["fpr"] * n)
  # Conformal: P(alarm) in [fpr - 1/(n_cal + 1), fpr]; the count is binomial around it (99% two-sided band).
  assert binomial_upper_quantile(n, fpr - 1 / 200, 0.005) <= fired <= binomial_upper_quantile(n, fpr, 0.995)


def test_weak_change_detected_late_and_negative_signals_oriented():
  """A signal that moves down is oriented by the calibration runs; a weak step (1.5 sigma) is found later or not at
  all. A lead above the true one is an alarm before the change point, a false alarm: about as frequent as on
  controls."""
  rng = np.random.default_rng(1)
  flip = lambda ts: [al.Trajectory(t.steps, -t.values, t.positive, t.kind, t.t50, t.t90, t.seed) for t in ts]
  cal = flip(null_runs(rng, 99) + change_runs(rng, 20, shift=1.5))
  ev = flip(null_runs(rng, 100) + change_runs(rng, 40, shift=1.5))
  res = al.evaluate_signal(cal, ev, fpr=0.1, start=START, smooth=3, horizons=(1300.0,))
  assert res["sign"] == -1.0
  assert 0.0 < res["detection_rate"] < 1.0
  early = sum(lead > LEAD for lead in res["lead50"])
  assert early <= binomial_upper_quantile(40, 0.1, 0.995)
  assert np.median(res["lead50"]) < LEAD
  assert res["auroc"][1300.0]["auroc"] > 0.5


def test_no_signal_gives_chance_auroc_and_no_lead():
  """Positives that are pure noise: the AUROC is near 1/2 and detections happen at about the FPR."""
  rng = np.random.default_rng(2)
  ev_pos = [al.Trajectory(t.steps, t.values, True, "grok", t50=1500.0, t90=1600.0) for t in null_runs(rng, 300)]
  cal = null_runs(rng, 199)
  res = al.evaluate_signal(cal, null_runs(rng, 300) + ev_pos, fpr=0.05, start=START, horizons=(1400.0,), sign=1.0)
  assert abs(res["auroc"][1400.0]["auroc"] - 0.5) < 0.08
  assert res["detection_rate"] < 0.12


def test_bad_trajectory_rejected():
  with pytest.raises(ValueError, match="steps"):
    al.Trajectory(np.array([0.0, 0.0]), np.array([1.0, 2.0]), True)
  with pytest.raises(ValueError, match="calibration"):
    al.evaluate_signal([al.Trajectory(STEPS, STEPS, True)], [], fpr=0.05, start=0.0)


def test_figure_renders_from_a_stored_verdict(tmp_path):
  import json

  import figure_fixtures
  from figures import early_warning as fig
  from figures import inputs

  figure_fixtures.write_verdicts(tmp_path / "checks")
  verdict = inputs.load_verdict(tmp_path / "checks", "early_warning")
  paths = fig.make_figure(verdict, tmp_path / "out")
  side = json.loads(paths[-1].read_text())
  assert side["plotted"]["signals"] == ["update_gap", "class_ratio"]
  assert side["layout"]["text_overlaps"] == []


def test_seeds_parsing_and_split():
  from theory_checks import early_warning as ew
  assert ew.parse_seeds(["100-103", "7", "9,8"]) == (7, 8, 9, 100, 101, 102, 103)
  with pytest.raises(ValueError, match="--seeds"):
    ew.parse_seeds(["x"])
  with pytest.raises(ValueError, match="disjoint"):
    ew.with_evaluation_seeds(ew.QUICK, [0, 500])
  d = ew.with_evaluation_seeds(ew.QUICK, [500, 501])
  assert d.evaluation_seeds == (500, 501) and d.calibration_seeds == ew.QUICK.calibration_seeds
  cfg = ew.family_config(d, "grok", "t")
  seeds = [m.seed_index for m in cfg.members()]
  assert seeds == [s for s in (*d.calibration_seeds, 500, 501) for _ in range(2)]
  assert {m.weight_decay for m in cfg.members()} == {0.0, d.weight_decay}
  assert ew.family_config(d, "random_labels", "t").data.kind == "random_labels"
  assert ew.family_config(d, "small_fraction", "t").data.train_fraction == d.small_fraction


def test_update_gap_planted_direction():
  """Updates along one fixed direction (plus small noise): sigma_1 / sigma_2 large; isotropic updates: near 1-2."""
  from theory_checks import early_warning as ew
  rng = np.random.default_rng(3)
  u = rng.standard_normal(128)
  drift = np.cumsum(u[None, :] + 0.05 * rng.standard_normal((20, 128)), axis=0)
  iso = np.cumsum(rng.standard_normal((20, 128)), axis=0)
  g_drift, g_iso = ew.update_gaps(drift, 6), ew.update_gaps(iso, 6)
  assert np.all(np.isnan(g_drift[:6])) and np.all(np.isfinite(g_drift[6:]))
  assert g_drift[10] > 10.0 and g_iso[10] < 2.0


def test_cli_seeds_only_for_checks_that_take_them(capsys):
  from theory_checks.__main__ import main
  assert main(["run", "bbp", "--seeds", "5"]) == 2
  assert "--seeds: expected checks that take evaluation seeds (early_warning)" in capsys.readouterr().err


def test_judge_rule():
  """The verdict rule on planted update-gap results: PASS, FAIL by detection, FAIL by lead, INCONCLUSIVE at the
  quick size's FPR."""
  import dataclasses

  from theory_checks import early_warning as ew
  full = dataclasses.replace(ew.QUICK, fpr=0.05)
  res = lambda k, n, lead: {"update_gap": dict(n_positives=n, detection_rate=k / n, lead50_median=lead,
                                               threshold=1.0, n_calibration_controls=40)}
  assert ew.judge(res(19, 20, 700.0), full)[0] == "PASS"
  assert ew.judge(res(5, 20, 700.0), full)[0] == "FAIL"
  assert ew.judge(res(19, 20, 300.0), full)[0] == "FAIL"
  assert ew.judge(res(2, 3, 700.0), full)[0] == "INCONCLUSIVE"
  assert ew.judge(res(19, 20, 700.0), ew.QUICK)[0] == "INCONCLUSIVE"


def test_modular_families_unchanged_and_group_families():
  """The modular families keep their run names (the seed tags of the stored designs); the group task's families
  train composition in S_4 with their own names, the no-weight-decay twins in the grok program."""
  import dataclasses

  from theory_checks import early_warning as ew
  names = {f: ew.family_config(ew.QUICK, f, "quick").name for f in ew.FAMILIES}
  assert names == {f: f"checks_early_warning_quick_{f}_cc384dc7" for f in ew.FAMILIES}
  assert ew.family_config(ew.FULL, "grok", "full").name == "checks_early_warning_full_grok_ecd1872a"
  assert ew.family_config(ew.QUICK, "grok", "quick").data.kind == "modular"
  g = ew.GROUP_QUICK
  cfg = ew.family_config(g, "grok_group", "quick")
  assert cfg.name.startswith("checks_early_warning_quick_grok_group_")
  assert (cfg.data.kind, cfg.data.group, cfg.data.vocab_size) == ("group", "S4", 26)
  assert {(m.regime, m.weight_decay) for m in cfg.members()} == {("grok", g.weight_decay), ("no_wd", 0.0)}
  small = ew.family_config(g, "small_fraction_group", "quick")
  assert small.data.train_fraction == g.small_fraction and {m.regime for m in small.members()} == {"small_fraction"}
  with pytest.raises(ValueError, match="family"):
    ew.family_config(g, "random_labels", "quick")
  with pytest.raises(ValueError, match="family"):
    ew.family_config(ew.QUICK, "grok_group", "quick")
  with pytest.raises(ValueError, match="modulus"):
    dataclasses.replace(g, modulus=23)


class _FakeRun:
  def __init__(self, path):
    self.path = path


def test_per_task_calibration_and_tables(monkeypatch):
  """Two tasks whose controls differ in scale (the group task's 5x larger): each task's threshold comes from its own
  calibration controls, so both detect their planted change points at their nominal FPR; the modular table and
  measured numbers are those of the modular task alone."""
  import dataclasses

  from theory_checks import early_warning as ew
  rng = np.random.default_rng(4)
  scale = dict(modular=1.0, S4=5.0)

  def planted(task, n_null, n_change):
    ts = null_runs(rng, n_null) + change_runs(rng, n_change, shift=12.0 * scale[task])
    return [dataclasses.replace(t, values=t.values * (scale[task] if not t.positive else 1.0)) for t in ts]

  made = {t: (planted(t, 39, 10), planted(t, 40, 20)) for t in scale}

  def fake_trajectories(runs, design, seed=0):
    cal, ev = made[design.task]
    return {"update_gap": cal, "class_ratio": cal}, {"update_gap": ev, "class_ratio": ev}, []

  monkeypatch.setattr(ew, "trajectories", fake_trajectories)
  design = dataclasses.replace(ew.QUICK, fpr=0.05, horizons=(300.0,), snapshot_every=20)
  g_design = dataclasses.replace(ew.GROUP_QUICK, fpr=0.05, horizons=(300.0,), snapshot_every=20)
  alone = ew.check_runs({"grok": _FakeRun("m")}, design)
  both = ew.check_runs({"grok": _FakeRun("m")}, design, second=({"grok_group": _FakeRun("g")}, g_design))
  thresholds = {(d.get("task", "modular"), d["signal"]): d["threshold"] for d in both.details if d["part"] == "signal"}
  assert thresholds[("S4", "update_gap")] > 3.0 * thresholds[("modular", "update_gap")]
  assert both.measured["update_gap_detection"] == alone.measured["update_gap_detection"] == 1.0
  assert both.measured["S4_update_gap_detection"] == 1.0 and both.measured["S4_update_gap_lead50"] == LEAD
  text = both.series["table"]
  assert text.startswith("task modular: modular addition mod 23\n" + alone.series["table"])
  assert "\n\ntask S4: composition in the group S4 (order 24)\n" in text
  assert both.series["tasks"]["S4"]["signals"] == ["update_gap", "class_ratio"]
  assert both.series["aligned"] == alone.series["aligned"]
  assert both.status == ew.combined_status([alone.status, both.measured["S4_status"]])
  assert ew.combined_status(["PASS", "PASS"]) == "PASS" and ew.combined_status(["PASS", "FAIL"]) == "FAIL"
  assert ew.combined_status(["PASS", "INCONCLUSIVE"]) == "INCONCLUSIVE"


def test_figure_renders_a_second_task(tmp_path):
  import json

  import figure_fixtures
  from figures import early_warning as fig
  from figures import inputs

  path = figure_fixtures.result_file(tmp_path / "checks", "early_warning")
  path.parent.mkdir(parents=True)
  path.write_text(json.dumps(figure_fixtures.early_warning_verdict(tasks=("S4",))))
  verdict = inputs.load_verdict(tmp_path / "checks", "early_warning")
  paths = fig.make_figure(verdict, tmp_path / "out")
  side = json.loads(paths[-1].read_text())
  assert side["plotted"]["tasks"]["S4"]["signals"] == ["update_gap", "class_ratio"]
  assert side["layout"]["text_overlaps"] == []


@pytest.mark.parametrize("quick, second_task, tasks", [(True, None, ["modular"]), (True, True, ["modular", "S4"]),
                                                       (False, None, ["modular", "S4"])])
def test_quick_runs_the_modular_task_alone_unless_asked(monkeypatch, tmp_path, quick, second_task, tasks):
  import models.run_folder
  import models.train
  from theory_checks import early_warning as ew
  trained = []
  monkeypatch.setattr(models.train, "train_run", lambda cfg, runs_dir, progress: trained.append(cfg.data.kind) or cfg)
  monkeypatch.setattr(models.run_folder, "load_run", lambda cfg: cfg)
  seen = {}
  monkeypatch.setattr(ew, "check_runs", lambda runs, design, seed, second: seen.update(design=design, second=second))
  ew.run(quick=quick, runs_dir=tmp_path, second_task=second_task)
  got = ["modular"] + (["S4"] if seen["second"] is not None else [])
  assert got == tasks
  assert ("group" in trained) == ("S4" in tasks)
  assert seen["design"] is (ew.QUICK if quick else ew.FULL)
