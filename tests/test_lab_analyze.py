"""python -m lab analyze: a member's checkpointed weights through the spectral engine agree with the stored spectra."""

import json

import numpy as np
import pytest

from lab.__main__ import main
from models.presets import tiny_config
from models import run_folder
from models.train import train_run
from spectral.power_law import DEFAULT_MIN_TAIL


def test_analyze_a_run_member_matches_the_stored_spectra(tmp_path, capsys):
  run_dir = train_run(tiny_config("an"), tmp_path, progress=False)
  out = tmp_path / "table.json"
  assert main(["analyze", str(run_dir), "--member", "2", "--json", str(out)]) == 0
  assert "checkpoint step 20" in capsys.readouterr().out
  rows = {r["name"]: r for r in json.loads(out.read_text())}
  run = run_folder.load_run(run_dir)
  assert set(rows) == set(run.spectra[20])
  for name, ev in run.spectra[20].items():
    # Matrices with fewer than min_tail = 10 eigenvalues get their row, with the power-law fit flagged as failed.
    expected = "ok" if ev.shape[1] >= DEFAULT_MIN_TAIL else "fit failed: power law failed"
    assert rows[name]["status"].startswith(expected), rows[name]["status"]
    assert rows[name]["log10_spectral_norm"] == pytest.approx(np.log10(ev[2].max()), abs=1e-4)
  assert main(["analyze", str(run_dir), "--member", "99"]) == 2
  assert "error: --member: expected a member index 0..5" in capsys.readouterr().err
