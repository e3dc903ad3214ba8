"""The flagship experiment, "noise versus structure", end to end.

config (``models.presets``) -> train the ensemble (models.train) -> run folder -> theory check (theory_checks) and
figure (figures), both reading the run folder only -> printed summary and output paths. The verdict is stored where
every check result lives (``models.check_result``): ``<run folder>/checks/mp_at_init.json``.
"""

from __future__ import annotations

import pathlib

from models.check_result import result_path
from models.config import RunConfig, config_from_dict
from models.config_reference import config_differences
from models.run_folder import checkpoint_steps, load_run, read_json
from models.train import train_run
from figures import esd_by_regime
from lab.summary import format_summary
from theory_checks import mp_at_init


def announce_run(cfg: RunConfig, runs_dir: str | pathlib.Path) -> None:
  """Say what training ``cfg`` into ``runs_dir`` will do with a folder already there: reuse a finished run, or resume
  an unfinished one at its last checkpoint. A folder of the same name holding another config is an error naming the
  keys that differ and the way out (``--set name=...``)."""
  run_dir = pathlib.Path(runs_dir) / cfg.name
  if not (run_dir / "config.json").exists():
    return
  stored = config_from_dict(read_json(run_dir / "config.json"))
  done, steps = (run_dir / "DONE").exists(), checkpoint_steps(run_dir)
  if stored != cfg and (done or steps):
    changed = "; ".join(config_differences(stored, cfg))
    raise ValueError(f"name: expected a run name not used by another config, got {cfg.name!r}, which {run_dir} "
                     f"holds with another config ({changed}); add --set name={cfg.name}_2 (any new name), or use "
                     "another --runs folder")
  if done:
    print(f"reusing finished run {run_dir} (same config; nothing is retrained: delete the folder or choose another "
          "name to train again)", flush=True)
  elif steps:
    print(f"resuming {run_dir} at step {steps[-1]} (its last checkpoint)", flush=True)


def run_main_job(cfg: RunConfig, runs_dir: str | pathlib.Path = "runs", *, progress: bool = True,
                 null_draws: int = 400) -> dict[str, pathlib.Path]:
  announce_run(cfg, runs_dir)
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
