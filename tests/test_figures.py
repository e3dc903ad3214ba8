"""Paper figures render from tiny stored fixtures: a tiny trained run folder and synthetic check verdicts.

Each figure: PNG not blank (pixel variance), the expected number of panels, every panel's axes labelled, no
overlapping text, provenance in the PDF/PNG metadata and the sidecar, and sidecar numbers equal to the stored
inputs. Inputs of an unknown format give a clear error; missing inputs name the command that produces them.
"""

import dataclasses
import json
import pathlib

import matplotlib.image
import numpy as np
import pytest

import figure_fixtures
from figures import (bbp_transition, esd_by_regime, esd_tail, hessian_spectrum, inputs, jacobian_spectra, meso_curve,
                     metrics_evolution, registry, spacing_ratios, structure_decomposition, structure_rank_vs_k, style,
                     teacher_overlap, trained_jacobians, tw_histogram)
from figures.__main__ import main as figures_main
from models.presets import tiny_config
from models import run_folder
from models.check_result import Verdict, result_path
from models.train import train_run
from theory_checks import bbp as bbp_check
from theory_checks import hessian_outliers, tw_fluctuations
from theory_checks import jacobian_spectra as jacobian_check


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  runs = tmp_path_factory.mktemp("runs")
  train_run(tiny_config("tiny_fig"), runs, progress=False)
  return runs, run_folder.load_run(runs / "tiny_fig")


def check_outputs(paths, n_panels, run_names):
  pdf, png, side = paths
  assert pdf.suffix == ".pdf" and png.suffix == ".png" and side.suffix == ".json"
  image = matplotlib.image.imread(png)
  assert image.ndim == 3 and image[..., :3].std() > 0.05, "blank image"
  sidecar = json.loads(side.read_text())
  prov = sidecar["provenance"]
  assert prov["runs"] == run_names and len(prov["config_hash"]) == 12 and prov["package_version"]
  layout = sidecar["layout"]
  assert len(layout["panels"]) == n_panels
  for panel in layout["panels"]:
    assert panel["xlabel"] and panel["title"], panel
  assert any(p["ylabel"] for p in layout["panels"])
  assert layout["text_overlaps"] == []
  raw = pdf.read_bytes()
  assert prov["config_hash"].encode() in raw and b"Type3" not in raw  # provenance; fonts embedded as TrueType (42)
  from PIL import Image
  assert prov["config_hash"] in Image.open(png).info["Description"]
  return sidecar


@pytest.mark.parametrize("columns", [2, 1])
def test_esd_by_regime(tiny_run, tmp_path, columns):
  _, run = tiny_run
  paths = esd_by_regime.make_figure(run, tmp_path, columns=columns, step=20)
  side = check_outputs(paths, 3, [run.name])
  plotted = side["plotted"]
  (matrix, d), = plotted["matrices"].items()
  assert matrix == "blocks.0.mlp_out.kernel" and d["shape"] == run.info["matrices"][matrix]["shape"]
  for regime, r in d["regimes"].items():
    stored = run.spectra[20][matrix][r["members"]]
    np.testing.assert_array_equal(np.asarray(r["eigenvalues"], dtype=np.float32), stored)
    assert all(m["regime"] == regime for m in run.members if m["index"] in r["members"])
    assert r["tw_threshold_mean"] > r["mp_edge"]
    assert len(r["spikes"]) == sum(r["n_outliers"])


def test_esd_tail(tiny_run, tmp_path):
  _, run = tiny_run
  side = check_outputs(esd_tail.make_figure(run, tmp_path), 3, [run.name])
  r = side["plotted"]["regimes"]["noise"]
  stored = run.spectra[max(run.spectra)]["blocks.0.mlp_out.kernel"][r["representative"]]
  np.testing.assert_allclose(r["x"], np.sort(stored.astype(np.float64)))
  assert r["ccdf"][0] == 1.0 and r["alpha"] > 1 and r["xmin"] in r["x"]


def test_metrics_evolution(tiny_run, tmp_path):
  _, run = tiny_run
  side = check_outputs(metrics_evolution.make_figure(run, tmp_path), 3, [run.name])
  (matrix, regs), = side["plotted"]["matrices"].items()
  assert side["plotted"]["steps"] == sorted(run.spectra)
  from spectral.metrics import batch_metrics
  r = regs["meso"]
  rows = batch_metrics(run.spectra[5][matrix][r["members"]].astype(np.float64), run.info["matrices"][matrix]["shape"])
  assert [row["n_outliers"] for row in rows] == [v[1] for v in r["n_outliers"]]
  np.testing.assert_allclose([row["alpha"] for row in rows], [v[1] for v in r["alpha"]])


def test_meso_curve_with_natural_text_run(tiny_run, tmp_path):
  runs_dir, run = tiny_run
  side = check_outputs(meso_curve.make_figure([run], tmp_path, columns=1), 8, [run.name])
  for p in side["plotted"]["points"]:
    m = run.members[p["member"]]
    assert p["entropy_rate_bits"] == m["entropy_rate_bits"] and p["noise_p"] == m["noise_p"]
    assert p["test_loss_bits"] == pytest.approx(run.metric("test_loss", p["member"])[1][-1] / np.log(2))
  # A run whose regime is natural text has no p: it joins the entropy axis (a copy of the tiny run, relabelled).
  import shutil
  runs2 = tmp_path / "runs2"
  shutil.copytree(runs_dir / "tiny_fig", runs2 / inputs.DEFAULT_RUN)
  nat = runs2 / "natural_copy"
  shutil.copytree(runs_dir / "tiny_fig", nat)
  info = json.loads((nat / "run.json").read_text())
  for m in info["members"]:
    m["regime"], m["noise_p"] = "natural", None
  (nat / "run.json").write_text(json.dumps(info))
  both = meso_curve.default_runs(runs2)
  assert [r.name for r in both] == [inputs.DEFAULT_RUN, "natural_copy"]
  side = check_outputs(meso_curve.make_figure(both, tmp_path / "nat"), 8, [inputs.DEFAULT_RUN, "natural_copy"])
  assert any(r["natural"] for r in side["plotted"]["regimes"].values())


def test_spacing_ratios(tiny_run, tmp_path):
  _, run = tiny_run
  side = check_outputs(spacing_ratios.make_figure(run, tmp_path), 4, [run.name])
  panels = side["plotted"]["panels"]
  assert list(panels)[0].startswith("init") and panels["noise"]["step"] == 20
  assert all(0 <= r <= 1 for r in panels["noise"]["ratios"])
  from scipy import integrate
  assert integrate.quad(spacing_ratios.goe_surmise, 0, 1)[0] == pytest.approx(1.0, abs=1e-9)
  assert integrate.quad(lambda r: r * spacing_ratios.goe_surmise(r), 0, 1)[0] == pytest.approx(0.5359, abs=1e-3)
  assert integrate.quad(spacing_ratios.poisson_ratio, 0, 1)[0] == pytest.approx(1.0)


CHECK_FIGURES = [(tw_histogram, 2), (bbp_transition, 3), (jacobian_spectra, 3), (hessian_spectrum, 1),
                 (teacher_overlap, 2), (structure_rank_vs_k, 2), (trained_jacobians, 3), (structure_decomposition, 3)]


def series_names(module, verdict) -> list[str]:
  """The figure's ``SERIES`` with ``<L>`` expanded over the verdict's depths."""
  depths = verdict.series.get("depths", [])
  return [n.replace("<L>", str(d)) for n in module.SERIES for d in (depths if "<L>" in n else [None])]


@pytest.mark.parametrize("module,n_panels", CHECK_FIGURES, ids=[m.NAME for m, _ in CHECK_FIGURES])
def test_check_figures_from_stored_verdicts(tmp_path, module, n_panels):
  verdicts = figure_fixtures.write_verdicts(tmp_path / "checks")
  verdict = inputs.load_verdict(tmp_path / "checks", module.CHECK)
  assert isinstance(verdict, Verdict) and verdict.to_dict() == Verdict.from_dict(verdicts[module.CHECK]).to_dict()
  side = check_outputs(module.make_figure(verdict, tmp_path / "out"), n_panels, [f"checks/{module.CHECK}"])
  plotted, series = side["plotted"], verdicts[module.CHECK]["series"]
  for name in series_names(module, verdict):  # every series drawn under its own name is the stored one, unchanged
    if name in plotted:
      np.testing.assert_allclose(np.sort(np.ravel(plotted[name])), np.sort(np.ravel(series[name])))
  if module is jacobian_spectra:
    for panel, depth in zip(plotted["panels"], series["depths"]):
      s2 = np.asarray(series[f"linear_sq_sv_depth_{depth}"])
      np.testing.assert_allclose(panel["sq_singular_values"], s2[s2 > 0])
      assert panel["orthogonal_max_deviation"] < 1e-6 and "tanh_hist" in panel
  if module is tw_histogram:
    np.testing.assert_allclose(plotted["scaled_lmax"], series["scaled_lmax"])
  if module is hessian_spectrum:
    assert plotted["outlier_count"] == 3 and plotted["ritz_values"][:3] == [10.5, 9.8, 8.9]
  if module is structure_rank_vs_k:
    assert plotted["counts"]["map"] == series["rank_map_learned_by_seed"] and plotted["judged"] == [True, True, False]


REAL_CHECKS = {  # each check at a size of seconds
    "tw_histogram": lambda: tw_fluctuations.check(shape=(20, 10), seeds=60),
    "bbp_transition": lambda: bbp_check.check(shape=(40, 20), seeds=6, curve_points=3),
    "jacobian_spectra": lambda: jacobian_check.check(n=12, seeds=3, depths=(1, 2)),
    "hessian_spectrum": lambda: hessian_outliers.check(classes=3, dim=4, hidden=8, samples=128, steps=20, k=10),
    "teacher_overlap": lambda: _tiny_learning_bbp(),
    "structure_rank_vs_k": lambda: _tiny_learning_bbp(),
    "trained_jacobians": lambda: _tiny_trained_jacobians(),
    "structure_decomposition": lambda: _tiny_noise_structure(),
}


def _tiny_trained_jacobians():
  """trained_jacobians on two seconds-long tracked runs (the tiny model), in a temporary folder."""
  import tempfile

  from models.config import with_overrides
  from models.presets import TINY_OVERRIDES
  from models.run_folder import load_run
  from models.train import train_run
  from theory_checks import trained_jacobians as tj

  with tempfile.TemporaryDirectory() as tmp:
    tiny = {**TINY_OVERRIDES, "model.num_layers": 2, "tracking.track_jacobian": True,
            "tracking.jacobian_probe_batch": 2}
    runs = [load_run(train_run(with_overrides(c, {**tiny, "data.vocab_size": c.data.vocab_size}), tmp,
                               progress=False)) for c in tj.configs(quick=True)]
    return tj.check_runs(*runs)


def _tiny_noise_structure():
  """noise_structure on the tiny main-job config (one training), in a temporary folder."""
  import tempfile

  from models.presets import tiny_config
  from models.run_folder import load_run
  from models.train import train_run
  from theory_checks import noise_structure

  with tempfile.TemporaryDirectory() as tmp:
    return noise_structure.check_runs(load_run(train_run(tiny_config("tiny_ns"), tmp, progress=False)))


def _tiny_learning_bbp():
  """learning_bbp on the tiny design of tests/test_learning_bbp.py (two trainings), in a temporary folder."""
  import tempfile

  from models.run_folder import load_run
  from models.train import train_run
  from theory_checks import learning_bbp as lb
  from tests.test_learning_bbp import TINY

  with tempfile.TemporaryDirectory() as tmp:
    sweep = load_run(train_run(lb.sweep_config(TINY, "tiny"), tmp, progress=False))
    ranks = {1: load_run(train_run(lb.rank_config(TINY, 1, "tiny"), tmp, progress=False))}
    return lb.check_runs(sweep, ranks, TINY, plugin_seeds=2)


COMPILE_HEAVY = {"jacobian_spectra", "hessian_spectrum", "teacher_overlap", "structure_rank_vs_k",  # slow on 2 cores
                 "trained_jacobians", "structure_decomposition"}


@pytest.mark.parametrize("module", [pytest.param(m, marks=[pytest.mark.slow] if m.NAME in COMPILE_HEAVY else [])
                                    for m, _ in CHECK_FIGURES], ids=[m.NAME for m, _ in CHECK_FIGURES])
def test_check_figures_read_what_their_checks_write(module):
  """No alias tables: every series a figure reads is one its check writes, and it needs no other."""
  verdict = REAL_CHECKS[module.NAME]()
  assert verdict.check == module.CHECK
  names = series_names(module, verdict)
  assert set(names) <= set(verdict.series), sorted(set(names) - set(verdict.series))
  only = dataclasses.replace(verdict, series={n: verdict.series[n] for n in names})
  module.plotted_numbers(Verdict.from_dict(only.to_dict()))


def test_missing_series_names_the_check(tmp_path):
  v = figure_fixtures.bbp_verdict()
  del v["series"]["s1_mean"]
  with pytest.raises(inputs.MissingInput, match="python -m theory_checks run bbp --quick"):
    bbp_transition.make_figure(Verdict.from_dict(v), tmp_path)


def test_regime_colours_are_fixed():
  assert style.regime_colour("noise") == style.regime_colour("p1", 3, 1.0) == "#D55E00"
  assert style.regime_colour("structured") == style.regime_colour("x", 0, 0.0)
  assert style.regime_colour("natural_text") == style.REGIME_COLOURS["natural"]


def test_unknown_format_version_is_a_clear_error(tmp_path, capsys):
  bad = tmp_path / "runs" / "old"
  bad.mkdir(parents=True)
  (bad / "run.json").write_text(json.dumps({"format_version": 999, "package_version": "9.9"}))
  (bad / "DONE").write_text("done\n")
  with pytest.raises(run_folder.RunFormatError, match="format version 999"):
    inputs.resolve_run(tmp_path / "runs")
  assert figures_main(["esd_by_regime", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "o")]) == 1
  assert "format version 999" in capsys.readouterr().err
  with pytest.raises(inputs.VerdictFormatError, match="missing"):
    Verdict.from_dict({"check": "x"})
  with pytest.raises(inputs.VerdictFormatError, match="status"):
    Verdict.from_dict(dict(figure_fixtures.tw_verdict(), status="MAYBE"))


def test_missing_inputs_name_the_command(tmp_path, capsys):
  with pytest.raises(inputs.MissingInput, match="python -m lab main"):
    inputs.resolve_run(tmp_path)
  with pytest.raises(inputs.MissingInput, match="python -m theory_checks run tracy_widom --quick"):
    inputs.load_verdict(tmp_path, "tracy_widom")
  assert figures_main(["all", "--runs", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
  err = capsys.readouterr().err
  assert "produce it with: python -m lab main" in err


def test_check_results_are_found_where_checks_write_them(tmp_path):
  runs = tmp_path / "runs"
  v = figure_fixtures.tw_verdict()
  # A check that read the main job's run stores its result beside that run; the default search finds it there.
  path = result_path(runs / inputs.DEFAULT_RUN, "tw_fluctuations")
  path.parent.mkdir(parents=True)
  path.write_text(json.dumps(v))
  assert inputs.load_verdict(inputs.default_checks_dirs(runs), "tw_fluctuations").series == v["series"]
  # Results in the layout of older lab versions (<CHECK>/result.json) are still read.
  old = tmp_path / "old_checks" / "bbp" / "result.json"
  old.parent.mkdir(parents=True)
  old.write_text(json.dumps(figure_fixtures.bbp_verdict()))
  assert inputs.load_verdict(tmp_path / "old_checks", "bbp").check == "bbp"
  with pytest.raises(inputs.MissingInput, match="old_checks/tw_fluctuations.json"):
    inputs.load_verdict(tmp_path / "old_checks", "tw_fluctuations")


def test_cli_list_and_all(tiny_run, tmp_path, capsys, monkeypatch):
  """``list`` names every figure; ``all`` draws every registered figure once, in registry order, prints each path,
  and its exit status says what went wrong. The drawing itself is each figure's own test above (the real redraw of
  all of them: ``test_cli_all_draws_every_figure``, ``-m slow``)."""
  import figures.__main__ as cli_main

  runs, _ = tiny_run
  assert figures_main(["list"]) == 0
  listed = capsys.readouterr().out
  assert all(n in listed for n in registry.figure_names())
  drawn = []

  def fake_draw(name, args):
    drawn.append(name)
    assert pathlib.Path(args.runs) == runs and pathlib.Path(args.out) == tmp_path
    if name == fail:
      raise ValueError("bad input")
    return [tmp_path / f"{name}.png"]

  monkeypatch.setattr(cli_main, "_draw", fake_draw)
  argv = ["all", "--runs", str(runs), "--out", str(tmp_path)]
  fail = None
  assert figures_main(argv) == 0
  assert drawn == list(registry.figure_names())
  out = capsys.readouterr().out
  assert all(f"{n}: {tmp_path / f'{n}.png'}" in out for n in drawn)
  # One figure failing: the others are still drawn, the failure is named, the status is 1.
  drawn.clear()
  fail = registry.figure_names()[1]
  assert figures_main(argv) == 1
  assert drawn == list(registry.figure_names())
  assert f"{fail}: error: bad input" in capsys.readouterr().err


@pytest.mark.slow  # redraws every figure (each has its own test above): about a minute and a half on 2 cores
def test_cli_all_draws_every_figure(tiny_run, tmp_path):
  runs, _ = tiny_run
  figure_fixtures.write_verdicts(tmp_path / "checks")
  code = figures_main(["all", "--runs", str(runs), "--checks", str(tmp_path / "checks"), "--out", str(tmp_path)])
  assert code == 0
  for n in registry.figure_names():
    assert (tmp_path / f"{n}.png").exists() and (tmp_path / f"{n}.pdf").exists() and (tmp_path / f"{n}.json").exists()
