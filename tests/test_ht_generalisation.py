"""Check 9 (ht_generalisation): the configuration-level statistic on planted sweeps, the exclusions of the alpha
measurement, and the whole measurement path (stored spectra -> lab.sweep.summarize -> the check) on planted
power-law spectra with a known exponent."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from lab import sweep
from models import run_folder
from spectral import power_law
from theory_checks import ht_generalisation as ht
from theory_checks.registry import CHECKS

from tests.test_checks_calibration import assert_calibrated, assert_well_formed


def test_spearman_rows_matches_scipy_with_ties():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 5, size=(20, 12)).astype(float)  # many ties, as in bootstrap resamples
  y = rng.normal(size=(20, 12))
  want = [stats.spearmanr(a, b).statistic for a, b in zip(x, y)]
  np.testing.assert_allclose(ht.spearman_rows(x, y), want, atol=1e-12)
  assert np.isnan(ht.spearman_rows(np.ones(5), np.arange(5.0)))


def test_planted_monotone_metric_passes_and_the_wrong_direction_fails():
  members = ht.planted_members(30, 3, effect=3.0, seed=1)
  configs = ht.config_table(members, ht.AXES)
  assert len(configs) == 30 and {c["seeds"] for c in configs} == {3}
  status, facts = ht.judge(configs, members=members, boots=500)
  assert status == "PASS", facts
  assert facts["ci95_alpha"][0] > 0 and facts["ci95_alpha_weighted"][0] > 0
  assert ht.judge(configs, sign=-1, boots=500)[0] == "FAIL"
  # Too few configurations: no verdict either way.
  status, facts = ht.judge(configs[:ht.MIN_CONFIGS - 1], boots=200)
  assert status == "INCONCLUSIVE" and "fewer than" in facts["reason"]


def test_null_is_inconclusive_at_the_nominal_rate_and_the_member_bootstrap_is_not():
  # Independent configurations whose 3 seeds nearly agree (strong clustering): resampling configurations keeps the
  # nominal 5%; resampling members treats each configuration as 3 and rejects far more often.
  trials = 150
  rates = ht.rejection_rates(trials, effect=0.0, boots=400, seed=3)
  assert_calibrated(rates["cluster"], trials, 0.05)
  assert rates["member"] >= 0.15 and rates["member"] >= 2 * rates["cluster"], rates


def test_within_weight_decay_correlation_removes_a_stratum_confound():
  # Metric and loss both follow weight decay and nothing else: the sweep-wide rho is large, the within-stratum rho
  # is not.
  rng = np.random.default_rng(4)
  wd = np.repeat([0.0, 0.3, 1.0, 2.0], 8)
  metric, loss = wd + 0.05 * rng.normal(size=wd.size), wd + 0.05 * rng.normal(size=wd.size)
  rho, lo, _ = ht.spearman_ci(metric, loss, boots=500)
  assert lo > 0.5
  rho_w, lo_w, hi_w = ht.stratified_spearman_ci(metric, loss, wd, boots=500)
  assert lo_w < 0 < hi_w and abs(rho_w) < 0.5
  configs = [dict(weight_decay=w, alpha=a, alpha_weighted=a, log10_lambda_max=a, test_loss=b)
             for w, a, b in zip(wd, metric, loss)]
  status, facts = ht.judge(configs, boots=300)
  assert status == "PASS" and facts["within_weight_decay_reading_alpha"] == "INCONCLUSIVE", facts


def _row(point, matrix, *, alpha, n_tail, lmax=0.1, status="ok", state="done", step=100, loss=1.0):
  return dict(point=point, pack="p", member="0", state=state, step=str(step), matrix=matrix, learning_rate="0.001",
              weight_decay="0.1", seed="0", test_loss=str(loss), alpha=str(alpha), n_tail=str(n_tail),
              lambda_max=str(lmax), alpha_status=status)


def test_member_table_drops_short_tails_small_matrices_and_failed_points():
  shapes = {"p": {"big": (64, 128), "square": (32, 32), "pos_embed": (4, 64), "short": (64, 64), "bad": (64, 64)}}
  rows = [_row("a", "big", alpha=2.0, n_tail=40), _row("a", "square", alpha=4.0, n_tail=10),
          _row("a", "pos_embed", alpha=50.0, n_tail=4), _row("a", "short", alpha=90.0, n_tail=9),
          _row("a", "bad", alpha=float("nan"), n_tail=0, status="failed: 4 valid values"),
          _row("a", "big", alpha=7.0, n_tail=40, step=0),  # an earlier snapshot: not read
          _row("b", "big", alpha=3.0, n_tail=30, state="failed")]
  members, excl = ht.member_table(rows, shapes, ht.AXES)
  assert [m["point"] for m in members] == ["a"]
  m = members[0]
  assert m["matrices"] == 2 and m["alpha"] == pytest.approx(3.0)
  # Martin & Mahoney's alpha-weighted: alpha log10(N lambda_max), N = max(a, b) of each matrix.
  assert m["alpha_weighted"] == pytest.approx((2.0 * math.log10(12.8) + 4.0 * math.log10(3.2)) / 2)
  assert m["log10_lambda_max"] == pytest.approx((math.log10(12.8) + math.log10(3.2)) / 2)
  assert excl == dict(small_matrices={"pos_embed": [4, 64]}, short_tails={"short": 1}, failed_fits={"bad": 1},
                      points_not_done=["b"])
  with pytest.raises(ValueError, match="min_tail"):
    ht.member_table(rows, shapes, ht.AXES, min_tail=1)


SHAPES = {"blocks.0.mlp_in.kernel": (64, 128), "blocks.0.attn.query.kernel": (64, 64), "pos_embed": (4, 64)}
N_LAMBDA_MAX = 100.0  # every planted spectrum is scaled so that N lambda_max = 100: alpha-weighted = 2 alpha


def _planted_sweep(folder, alphas, seeds, rng):
  """A sweep folder as lab.sweep writes it (manifest, sweep.json, one finished pack with run.json, metrics.csv and
  spectra), whose configuration c has Pareto ESDs of exponent alphas[c] and held-out loss alphas[c] + noise; the
  last point is a diverged member with absurd values."""
  pack = "planted-pack000-00-abcdef"
  run_dir = folder / "runs" / pack
  (run_dir / "spectra").mkdir(parents=True)
  points, metrics, spectra = {}, [], {name: [] for name in SHAPES}
  member = 0
  for c, a in enumerate(alphas):
    loss_c = a + 0.2 * rng.normal()
    for s in range(seeds + (c == len(alphas) - 1)):
      values = dict(learning_rate=float(c), weight_decay=float(c % 2), seed=s)
      points[f"pt{member:04d}-{member:08x}"] = dict(pack=pack, member=member, values=values,
                                                      state="failed" if s == seeds else "done", error="")
      metrics.append((100, member, "", "test_loss", loss_c + 0.05 * rng.normal() + 100.0 * (s == seeds)))
      for name, shape in SHAPES.items():
        n, m = max(shape), min(shape)
        ev = rng.uniform(size=m) ** (-1.0 / (a - 1.0))  # density ~ x^-a on [1, inf)
        spectra[name].append(np.sort(ev * N_LAMBDA_MAX / (n * ev.max())))
      member += 1
  run_folder.atomic_write_json(run_dir / "run.json", dict(
      format_version=run_folder.FORMAT_VERSION, members=[dict(index=i) for i in range(member)],
      matrices={k: dict(shape=list(v)) for k, v in SHAPES.items()}))
  run_folder.atomic_write_json(run_dir / "config.json", {})
  run_folder.append_metrics(run_dir, metrics)
  run_folder.write_spectra(run_dir, 100, {k: np.asarray(v, np.float32) for k, v in spectra.items()})
  (run_dir / "DONE").write_text("")
  run_folder.atomic_write_json(folder / "manifest.json", dict(manifest_version=sweep.MANIFEST_VERSION, points=points))
  run_folder.atomic_write_json(folder / "sweep.json", dict(axes=dict(learning_rate=[], weight_decay=[], seed=[])))
  return member, spectra


def test_measurement_path_recovers_planted_exponents_and_passes(tmp_path):
  rng = np.random.default_rng(7)
  alphas = np.linspace(2.0, 5.0, 10)
  total, spectra = _planted_sweep(tmp_path, alphas, 3, rng)
  sweep.summarize(tmp_path)  # the CSN fits of every stored spectrum, as `lab sweep` writes them
  v = ht.check_sweep(tmp_path, boots=500)
  assert_well_formed(v)
  assert v.status == "PASS", v.measured
  m = v.measured
  assert m["members"] == total - 1 and len(m["points_not_done"]) == 1
  assert m["excluded_small_matrices"] == {"pos_embed": [4, 64]}
  assert m["matrices_per_member"] == [2, 2] and m["seeds_per_configuration"] == [3, 3]
  assert m["ci95_alpha"][0] > 0 and m["ci95_alpha_weighted"][0] > 0
  # The stored fits reach the check unchanged: each configuration's alpha is the mean of CSN fits (tails >= 10) of
  # its 2 x 3 planted spectra, refitted here from the spectra themselves; and they order the planted exponents.
  fits = {k: np.asarray(power_law.fit_power_law(np.asarray(spectra[k], np.float32), min_tail=10).alpha)
          for k in SHAPES if k != "pos_embed"}
  per_member = np.mean(list(fits.values()), axis=0)
  want = per_member[:3 * len(alphas)].reshape(len(alphas), 3).mean(axis=1)  # the last member diverged: left out
  np.testing.assert_allclose(v.series["alpha"], want, rtol=1e-5)
  assert stats.spearmanr(v.series["alpha"], alphas).statistic > 0.9
  # N lambda_max = 100 everywhere: log10 lambda_max is 2 and alpha-weighted exactly 2 alpha (the M & M convention).
  np.testing.assert_allclose(v.series["log10_lambda_max"], 2.0, atol=1e-5)
  np.testing.assert_allclose(v.series["alpha_weighted"], 2 * np.asarray(v.series["alpha"]), rtol=1e-5)
  assert not np.isfinite(m["spearman_log10_lambda_max"])  # a constant says nothing: reported as NaN, not 0
  # The wrong direction fails on the same stored sweep.
  assert ht.check_sweep(tmp_path, sign=-1, boots=500).status == "FAIL"


def test_full_design_meets_the_minimum_and_goes_through_lab_sweep():
  from lab import sweep_spec
  full = ht.sweep_dict(ht.FULL, "full")
  assert ht.FULL.configurations >= 30 and ht.FULL.seeds >= 3
  spec = sweep_spec.sweep_from_dict(full)
  packs = sweep_spec.plan_packs(spec)
  assert len(packs) == 1 and len(packs[0].points) == ht.FULL.configurations * ht.FULL.seeds
  assert sweep_spec.plan_packs(sweep_spec.sweep_from_dict(ht.sweep_dict(ht.QUICK, "quick")))
  assert CHECKS[ht.NAME].calibrate is ht.calibrate


def test_calibration():
  c = ht.calibrate(quick=True, trials=30)
  assert_calibrated(c["false_alarm"], c["trials"], c["level"])
  assert c["power"] >= 0.8 and c["member_bootstrap_rejections_on_null"] > c["false_alarm"]
  json.dumps(c)


@pytest.mark.slow
def test_quick_run_through_lab_sweep(tmp_path):
  v = ht.run(quick=True, runs_dir=tmp_path)
  assert_well_formed(v)
  assert v.measured["configurations"] == ht.QUICK.configurations
  assert v.measured["seeds_per_configuration"] == [ht.QUICK.seeds, ht.QUICK.seeds]
  assert "pos_embed" in v.measured["excluded_small_matrices"]
  assert (tmp_path / "sweeps" / "checks_ht_sweep_quick" / "results.csv").exists()
