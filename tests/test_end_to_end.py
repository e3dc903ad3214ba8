"""The main job at a tiny size, end to end: run folder, verdict, figure, summary; rerun does not retrain."""

import json

import numpy as np
import pytest

from lab.main_job import run_main_job
from models.presets import tiny_config
from models import run_folder
from models.config import config_from_dict
from theory_checks.__main__ import main as checks_main


def test_main_job_tiny(tmp_path, capsys):
  cfg = tiny_config("tiny")  # the run ``python -m theory_checks mp_at_init --quick`` reads
  out = run_main_job(cfg, tmp_path, progress=False, null_draws=100)
  run_dir = out["run"]
  for f in ("config.json", "run.json", "metrics.csv", "DONE", "spectra/step_000000.npz", "spectra/step_000020.npz"):
    assert (run_dir / f).exists(), f
  run = run_folder.load_run(run_dir)
  assert config_from_dict(run.config) == cfg
  assert run.info["format_version"] == run_folder.FORMAT_VERSION
  assert len(run.members) == cfg.num_members
  # Stored spectra equal a recomputation from nothing but the ESD convention's shapes.
  ev = run.spectra[20]["blocks.0.mlp_in.kernel"]
  assert ev.shape == (cfg.num_members, 16) and np.all(np.diff(ev, axis=1) >= 0)
  verdict = json.loads(out["verdict"].read_text())
  assert verdict["check"] == "mp_at_init" and verdict["status"] in ("PASS", "FAIL")
  assert verdict["status"] == "PASS"  # untrained Gaussian weights: the null holds by construction
  assert out["figure"].stat().st_size > 10_000
  printed = capsys.readouterr().out
  assert "entropy floor" in printed and "run folder:" in printed
  # A finished run is never recomputed: the DONE marker is untouched on a second call.
  mtime = (run_dir / "DONE").stat().st_mtime_ns
  run_main_job(cfg, tmp_path, progress=False, null_draws=100)
  assert (run_dir / "DONE").stat().st_mtime_ns == mtime
  # One location for check results: the check's own command rewrites the main job's verdict file, beside the run.
  assert out["verdict"] == run_dir / "checks" / "mp_at_init.json"
  out["verdict"].unlink()
  assert checks_main(["mp_at_init", "--quick", "--runs", str(tmp_path)]) == 0
  assert json.loads(out["verdict"].read_text())["run"] == str(run_dir)


def test_unknown_format_version_is_a_clear_error(tmp_path):
  (tmp_path / "run.json").write_text(json.dumps({"format_version": 999, "package_version": "9.9"}))
  with pytest.raises(run_folder.RunFormatError, match="format version 999"):
    run_folder.load_run(tmp_path)
  with pytest.raises(run_folder.RunFormatError, match="not a run folder"):
    run_folder.load_run(tmp_path / "nothing")
