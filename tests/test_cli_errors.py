"""The one error convention of the four command lines, and each friction point a newcomer met.

Every bad argument, key or file is one ``error: <argument or key>: expected <what>, got <what>; <what to do>`` line on
stderr with exit status 2, and no traceback unless ``--debug`` is given.
"""

import argparse
import json
import tomllib

import pytest

from figures.__main__ import main as figures_main
from lab.__main__ import main as lab_main
from lab.main_job import announce_run
from models.presets import tiny_config
from models.config import with_overrides
from models.train import train_run
from spectral.__main__ import main as spectral_main
from theory_checks.__main__ import main as checks_main


def one_error_line(capsys) -> str:
  """The single stderr line of a failed command (and nothing that looks like a traceback)."""
  err = capsys.readouterr().err
  lines = [line for line in err.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  assert "Traceback" not in err
  return lines[0]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  """A finished one-regime run (the smallest that checkpoints), trained once for the module."""
  runs = tmp_path_factory.mktemp("runs")
  cfg = with_overrides(tiny_config("small"), {"data.noise_p": [0.0], "data.regime_names": ["structured"]})
  return runs, train_run(cfg, runs, progress=False), cfg


def test_misspelt_section_names_itself(tmp_path, capsys):
  bad = tmp_path / "bad.toml"
  bad.write_text("[trian]\nsteps = 10\n")
  assert lab_main(["main", "--config", str(bad), "--runs", str(tmp_path)]) == 2
  line = one_error_line(capsys)
  assert line.startswith("error: trian: expected a section or key of a run config (data, ensemble, model, name, "
                         "tracking, train), got an unknown key; did you mean 'train'?")


def test_set_values_are_json_and_lists_say_how(tmp_path, capsys):
  assert lab_main(["main", "--set", "train.snapshot_steps=0,5,20", "--runs", str(tmp_path)]) == 2
  assert "--set train.snapshot_steps=[0,5,20]" in one_error_line(capsys)
  assert lab_main(["main", "--set", "trainsteps", "--runs", str(tmp_path)]) == 2
  assert one_error_line(capsys).startswith("error: --set: expected KEY=VALUE such as train.steps=100")


def test_debug_shows_the_traceback(tmp_path):
  with pytest.raises(ValueError, match="trian"):
    lab_main(["main", "--set", "trian.steps=1", "--runs", str(tmp_path), "--debug"])


def _sweep(tmp_path, axes: str):
  path = tmp_path / "s.toml"
  path.write_text('[sweep]\nname = "e"\n[base]\ntrain = { steps = 10 }\n[axes]\n' + axes)
  return path


def test_sweep_axis_typo_lists_the_axis_names(tmp_path, capsys):
  assert lab_main(["sweep", "run", str(_sweep(tmp_path, "learning_rat = [0.1]\n")), "--dry-run"]) == 2
  line = one_error_line(capsys)
  assert "axes.learning_rat: expected a member-level axis (seed, p, learning_rate, weight_decay, init_scale)" in line
  assert "did you mean 'learning_rate'" in line and "tracking" not in line


def test_negative_learning_rate_blames_its_own_point(tmp_path, capsys):
  path = _sweep(tmp_path, "seed = [0, 1]\nlearning_rate = [1e-3, -1e-3]\n")
  assert lab_main(["sweep", "run", str(path), "--dry-run"]) == 2
  line = one_error_line(capsys)
  assert line.startswith("error: axes.learning_rate: expected a value > 0, got -0.001 (sweep point pt0002-")
  assert "learning_rate=-0.001 seed=0)" in line  # the point with the negative value, not the first point


def test_noise_probability_is_reported_under_its_axis_name(tmp_path, capsys):
  assert lab_main(["sweep", "run", str(_sweep(tmp_path, "p = [0.5, 1.5]\n")), "--dry-run"]) == 2
  line = one_error_line(capsys)
  assert line.startswith("error: axes.p: expected a probability in [0, 1], got 1.5 (sweep point pt0001-")
  assert "noise_p" not in line and "ensemble" not in line


def test_analyze_unsaved_step_lists_the_saved_ones(small_run, capsys):
  runs, run_dir, _ = small_run
  assert lab_main(["analyze", "--runs", str(runs), "--run", "small", "--step", "7"]) == 2
  line = one_error_line(capsys)
  assert line.startswith("error: --step: expected a saved checkpoint step (5, 20), got 7;")


def test_analyze_prints_the_member_identity(small_run, capsys):
  runs, run_dir, _ = small_run
  assert lab_main(["analyze", "--run", str(run_dir), "--member", "1", "--randomize"]) == 0
  out = capsys.readouterr().out
  assert "member 1 of 2: regime structured (p = 0), seed index 1, learning rate 0.001, weight decay 0" in out
  assert "rand_alpha +- se" in out and "units: " in out


def test_analyze_on_a_sweep_folder_points_at_its_packs(tmp_path, capsys):
  folder = tmp_path / "sweeps" / "s"
  (folder / "runs" / "s-pack000-00-abc").mkdir(parents=True)
  (folder / "manifest.json").write_text(json.dumps({"manifest_version": 1, "points": {}}))
  assert lab_main(["analyze", str(folder)]) == 2
  line = one_error_line(capsys)
  assert line.startswith(f"error: --run: expected a run folder, got the sweep folder {folder}; analyze one of its "
                         f"packs, --run {folder}/runs/<pack> --member <member>")
  assert "s-pack000-00-abc" in line


def test_analyze_unknown_run_lists_the_runs(small_run, capsys):
  runs, _, _ = small_run
  assert lab_main(["analyze", "--runs", str(runs), "--run", "nope"]) == 2
  assert "--run: expected a run name under" in one_error_line(capsys)


def test_run_name_clash_suggests_a_new_name(small_run, capsys):
  runs, _, cfg = small_run
  with pytest.raises(ValueError, match=r"^name: expected a run name not used by another config, got 'small', .*"
                                       r"\(train.steps: 20 -> 10; train.snapshot_steps: \[0, 5, 20\] -> \[0, 5, 10\]\);"
                                       r" add --set name=small_2"):
    announce_run(with_overrides(cfg, {"train.steps": 10, "train.snapshot_steps": [0, 5, 10]}), runs)
  announce_run(cfg, runs)
  assert capsys.readouterr().out.startswith(f"reusing finished run {runs / 'small'}")


def test_config_file_with_quick_keeps_quick(tmp_path, capsys):
  path = tmp_path / "mine.toml"
  path.write_text('name = "mine"\n[train]\nsteps = 5000\nlearning_rate = 0.003\n')
  assert lab_main(["config", "--config", str(path), "--quick"]) == 0
  cfg = tomllib.loads(capsys.readouterr().out)
  assert cfg["name"] == "mine_quick" and cfg["train"]["steps"] == 20 and cfg["model"]["d_model"] == 16
  assert cfg["train"]["learning_rate"] == 0.003  # the file's other values survive
  # Without --config, --quick is the tiny config; --tiny is still accepted as an alias.
  assert lab_main(["config", "--tiny"]) == 0
  assert tomllib.loads(capsys.readouterr().out)["name"] == "tiny"


def test_theory_checks_errors(tmp_path, capsys):
  assert checks_main(["run", "no_such_check"]) == 2
  assert one_error_line(capsys).startswith("error: NAME: expected a check name (mp_at_init, tw_fluctuations")
  assert checks_main(["run", "bbp", "tw_fluctuations", "--json", str(tmp_path / "x.json")]) == 2
  assert one_error_line(capsys).startswith("error: --json: expected one check, got 2")
  assert checks_main(["all", "--bogus"]) == 2
  assert "--bogus" in one_error_line(capsys)


def test_spectral_and_figures_errors(small_run, tmp_path, capsys):
  assert spectral_main(["analyze", str(tmp_path / "missing.npz")]) == 2
  assert one_error_line(capsys).startswith("error: ")
  assert spectral_main(["analyze", "w.npz", "--level", "2"]) == 2
  assert one_error_line(capsys).startswith("error: --level: expected a probability in (0, 1), got 2.0")
  runs, _, _ = small_run
  assert figures_main(["esd_by_regime", "--runs", str(runs), "--run", "small", "--matrix", "nope",
                       "--out", str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert "--matrix: expected weight matrices of run small (blocks.0.attn.key.kernel" in err
  assert figures_main(["nope"]) == 2
  assert one_error_line(capsys).startswith("error: name: expected one of esd_by_regime, esd_tail")


def test_figures_all_names_its_run(small_run, tmp_path, capsys):
  runs, run_dir, _ = small_run
  assert figures_main(["esd_by_regime", "--runs", str(runs), "--run", "small", "--out", str(tmp_path),
                       "--matrix", "blocks.0.attn.value.kernel", "--matrix", "blocks.0.mlp_in.kernel"]) == 0
  out = capsys.readouterr().out
  assert out.startswith(f"run: {run_dir}\n")
  side = json.loads((tmp_path / "esd_by_regime.json").read_text())
  assert list(side["plotted"]["matrices"]) == ["blocks.0.attn.value.kernel", "blocks.0.mlp_in.kernel"]


def _parsers(parser):
  """``parser`` and every subcommand's parser, recursively."""
  yield parser
  for action in parser._actions:
    if isinstance(action, argparse._SubParsersAction):
      for sub in action.choices.values():
        yield from _parsers(sub)


@pytest.mark.parametrize("package", ["lab", "theory_checks", "figures", "spectral"])
def test_every_option_has_help_and_debug_exists(package):
  import importlib

  parser = importlib.import_module(f"{package}.__main__").build_parser()
  assert any("--debug" in a.option_strings for a in parser._actions)
  for p in _parsers(parser):
    for action in p._actions:
      if action.option_strings or action.dest not in ("command", "sweep_command"):
        assert action.help, f"{p.prog} {action.option_strings or action.dest}: no help text"
