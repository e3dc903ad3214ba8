"""The flagship experiment, "noise versus structure", end to end.

config (``models.presets``) -> train the ensemble (models.train) -> run folder -> theory check (theory_checks) and
figure (figures), both reading the run folder only -> printed summary and output paths. The verdict is stored where
every check result lives (``models.check_result``): ``<run folder>/checks/mp_at_init.json``.
"""

from __future__ import annotations

import pathlib

from models.check_result import result_path
from models.config import RunConfig
from models.run_folder import load_run
from models.train import train_run
from figures import esd_by_regime
from lab.summary import format_summary
from theory_checks import mp_at_init


def run_main_job(cfg: RunConfig, runs_dir: str | pathlib.Path = "runs", *, progress: bool = True,
                 null_draws: int = 400) -> dict[str, pathlib.Path]:
  run_dir = train_run(cfg, runs_dir, progress=progress)
  run = load_run(run_dir)
  verdict = mp_at_init.check_run(run, null_draws=null_draws)
  verdict_path = verdict.write_json(result_path(run_dir, verdict.check))
  figure_paths = esd_by_regime.make_figure(run, run_dir / "figures")
  print()
  print(format_summary(run))
  print()
  print(verdict.summary())
  print()
  print(f"run folder: {run_dir}")
  print(f"verdict:    {verdict_path}")
  for p in figure_paths:
    print(f"figure:     {p}")
  return dict(run=run_dir, verdict=verdict_path, figure=figure_paths[1])
