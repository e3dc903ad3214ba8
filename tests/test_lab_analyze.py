"""python -m lab analyze: a member's checkpointed weights through the spectral engine agree with the stored spectra."""

import json

import numpy as np
import pytest

from lab.__main__ import main
from lab.main_job import tiny_config
from models import run_folder
from models.train import train_run


def test_analyze_a_run_member_matches_the_stored_spectra(tmp_path, capsys):
  run_dir = train_run(tiny_config("an"), tmp_path, progress=False)
  out = tmp_path / "table.json"
  assert main(["analyze", str(run_dir), "--member", "2", "--json", str(out)]) == 0
  assert "checkpoint step 20" in capsys.readouterr().out
  rows = {r["name"]: r for r in json.loads(out.read_text())}
  run = run_folder.load_run(run_dir)
  assert set(rows) == set(run.spectra[20])
  for name, ev in run.spectra[20].items():
    assert rows[name]["status"] == "ok"
    assert rows[name]["log10_spectral_norm"] == pytest.approx(np.log10(ev[2].max()), abs=1e-4)
  assert main(["analyze", str(run_dir), "--member", "99"]) == 2
  assert "error: --member: expected a member index 0..5" in capsys.readouterr().err
