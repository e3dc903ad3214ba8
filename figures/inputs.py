"""What figures read: finished run folders (``models.run_folder``) and stored theory-check results
(``models.check_result.Verdict``, the record the checks write).

Figures never train and never rerun a measurement. When an input is missing they raise ``MissingInput``, whose
message names the command that produces it (``python -m lab main ...`` for runs, ``python -m theory_checks NAME
--quick`` for check results); ``python -m figures all --make-missing`` runs exactly those quick commands.

Check results live where ``models.check_result`` says: ``<runs>/checks/<CHECK>.json`` for a check that reads no run
folder, ``<runs>/<RUN>/checks/<CHECK>.json`` beside the run folder a check measured. A figure reads the
``series`` field (raw arrays) of the verdict; each check-based figure module lists in ``SERIES`` the names it reads,
exactly as its check writes them (no aliases).
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterable

import numpy as np

from models.check_result import Verdict, VerdictFormatError, checks_dir, existing_result, result_file
from models.run_folder import Run, RunFormatError, load_run

DEFAULT_RUN = "noise_vs_structure"  # the main job's run name (``python -m lab main``)


class MissingInput(FileNotFoundError):
  """A run folder or check result a figure needs is not there; ``command`` produces it."""

  def __init__(self, message: str, command: list[str]):
    super().__init__(f"{message}\n  produce it with: {' '.join(command)}")
    self.command = command


def run_command(runs_dir: str | pathlib.Path, quick: bool = False) -> list[str]:
  cmd = ["python", "-m", "lab", "main", "--runs", str(runs_dir)]
  return cmd + ["--quick"] if quick else cmd


def check_command(check: str, path: str | pathlib.Path | None = None) -> list[str]:
  cmd = ["python", "-m", "theory_checks", "run", check, "--quick"]
  return cmd + ["--json", str(path)] if path is not None else cmd


def finished_runs(runs_dir: str | pathlib.Path) -> list[pathlib.Path]:
  """Run folders (with ``run.json`` and ``DONE``) directly under ``runs_dir``, sorted by name."""
  runs_dir = pathlib.Path(runs_dir)
  if not runs_dir.is_dir():
    return []
  return sorted(p for p in runs_dir.iterdir() if (p / "run.json").exists() and (p / "DONE").exists())


def resolve_run_dir(runs_dir: str | pathlib.Path, name: str | None = None) -> pathlib.Path:
  """The run folder ``name``: a path to a run folder, else a name under ``runs_dir``; without a name the main job's
  run, or the only finished run there.

  Raises ``MissingInput`` (with the command that makes one) when there is none and ``ValueError`` when the choice is
  ambiguous.
  """
  runs_dir = pathlib.Path(runs_dir)
  if name is not None:
    path = pathlib.Path(name) if (pathlib.Path(name) / "run.json").exists() else runs_dir / name
    if not (path / "run.json").exists():
      known = ", ".join(p.name for p in finished_runs(runs_dir)) or "none"
      raise MissingInput(f"--run: expected a run name under {runs_dir} (finished runs there: {known}) or a path to a "
                         f"run folder, got {name!r}", run_command(runs_dir) + ["--set", f"name={name}"])
    return path
  runs = finished_runs(runs_dir)
  if not runs:
    raise MissingInput(f"no finished run folder under {runs_dir}", run_command(runs_dir))
  by_name = {p.name: p for p in runs}
  if DEFAULT_RUN in by_name:
    return by_name[DEFAULT_RUN]
  if len(runs) == 1:
    return runs[0]
  raise ValueError(f"--run: expected a run name, got none, and {runs_dir} holds several runs ({', '.join(by_name)}) "
                   f"but none named {DEFAULT_RUN!r}; choose one with --run NAME")


def resolve_run(runs_dir: str | pathlib.Path, name: str | None = None) -> Run:
  """The run folder ``resolve_run_dir(runs_dir, name)``, loaded; ``RunFormatError`` when the folder is of a format
  version this lab cannot read."""
  return load_run(resolve_run_dir(runs_dir, name))


def default_checks_dirs(runs_dir: str | pathlib.Path, run_names: Iterable[str] = ()) -> list[pathlib.Path]:
  """Checks folders searched by default: the runs folder's own (checks that read no run folder), then those of the
  named run folders, or of the main job's run when none is named."""
  return [checks_dir(runs_dir)] + [checks_dir(pathlib.Path(runs_dir) / n) for n in (list(run_names) or [DEFAULT_RUN])]


def load_verdict(checks: str | pathlib.Path | Iterable[str | pathlib.Path], check: str) -> Verdict:
  """The stored ``Verdict`` of ``check``, from the first checks folder (or list of them) holding it;
  ``MissingInput`` names the command producing it."""
  dirs = [checks] if isinstance(checks, (str, pathlib.Path)) else list(checks)
  for d in dirs:
    path = existing_result(d, check)
    if path is not None:
      return Verdict.read_json(path)
  wanted = result_file(dirs[0], check)
  raise MissingInput(f"no result of check {check!r} at {' or '.join(str(result_file(d, check)) for d in dirs)}",
                     check_command(check, wanted))


def series(verdict: Verdict, name: str, *, figure: str):
  """``verdict.series[name]``; when it is absent, ``MissingInput`` names the check that must produce it."""
  if verdict.series.get(name) is None:
    raise MissingInput(f"figure {figure!r}: check {verdict.check!r} result has no series {name!r} (present: "
                       f"{sorted(verdict.series)}); rerun the check with a lab version that stores it",
                       check_command(verdict.check))
  return verdict.series[name]


def as_float_array(x, name: str) -> np.ndarray:
  try:
    return np.asarray(x, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise VerdictFormatError(f"series {name!r}: expected numbers, got {str(x)[:80]}") from e


def detail(verdict: Verdict, key: str, default=None):
  """The first value of ``key`` in the verdict's ``details`` rows (e.g. ``shape`` or ``q``), else ``default``."""
  for row in verdict.details:
    if isinstance(row, dict) and key in row:
      return row[key]
  return default


def check_provenance(verdict: Verdict) -> tuple[list[str], dict[str, Any]]:
  """(runs, config) for ``style.save_figure``: the verdict's run folder and the whole verdict as the hashed config,
  so the config hash identifies the exact stored result the figure was drawn from."""
  return [verdict.run or f"checks/{verdict.check}"], verdict.to_dict()


__all__ = ["MissingInput", "RunFormatError", "Verdict", "VerdictFormatError", "resolve_run", "load_verdict", "series"]
