"""What figures read: finished run folders (``models.run_folder``) and stored theory-check results (``Verdict`` JSON).

Figures never train and never rerun a measurement. When an input is missing they raise ``MissingInput``, whose
message names the command that produces it (``python -m lab main ...`` for runs, ``python -m theory_checks NAME
--quick`` for check results); ``python -m figures all --make-missing`` runs exactly those quick commands.

Check results live at ``<runs>/checks/<CHECK>/result.json`` (``theory_checks``' default). A figure reads the
``series`` field (raw arrays) of the verdict; each check-based figure module documents the series names it expects in
``SERIES`` (with accepted aliases).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Iterable

import numpy as np

from models.run_folder import Run, RunFormatError, load_run

DEFAULT_RUN = "noise_vs_structure"  # the main job's run name (``python -m lab main``)
VERDICT_KEYS = ("check", "status", "prediction", "measured", "predicted", "series")


class MissingInput(FileNotFoundError):
  """A run folder or check result a figure needs is not there; ``command`` produces it."""

  def __init__(self, message: str, command: list[str]):
    super().__init__(f"{message}\n  produce it with: {' '.join(command)}")
    self.command = command


class VerdictFormatError(ValueError):
  """A check result that is not a ``Verdict`` JSON this version of the figures can read."""


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


def verdict_path(checks_dir: str | pathlib.Path, check: str) -> pathlib.Path:
  return pathlib.Path(checks_dir) / check / "result.json"


def load_verdict(checks_dir: str | pathlib.Path, check: str) -> dict[str, Any]:
  """The stored ``Verdict`` of ``check`` as a dict; ``MissingInput`` names the command producing it."""
  path = verdict_path(checks_dir, check)
  if not path.exists():
    raise MissingInput(f"no result of check {check!r} at {path}", check_command(check, path))
  return parse_verdict(json.loads(path.read_text()), str(path))


def parse_verdict(raw: Any, where: str = "verdict") -> dict[str, Any]:
  if not isinstance(raw, dict):
    raise VerdictFormatError(f"{where}: expected a Verdict JSON object, got {type(raw).__name__}")
  missing = [k for k in VERDICT_KEYS if k not in raw]
  if missing:
    raise VerdictFormatError(f"{where}: not a Verdict JSON this lab can read (missing {missing}); rerun the check "
                             f"with this lab version")
  if not isinstance(raw["series"], dict):
    raise VerdictFormatError(f"{where}: 'series' must be an object of name -> array, got {type(raw['series']).__name__}")
  return raw


def series(verdict: dict[str, Any], names: str | Iterable[str], *, figure: str, required: bool = True):
  """The first of ``names`` (a name and its aliases) present in ``verdict["series"]``, or ``None``.

  A required series that is absent raises ``MissingInput`` naming the check that must produce it.
  """
  names = [names] if isinstance(names, str) else list(names)
  for n in names:
    if n in verdict["series"] and verdict["series"][n] is not None:
      return verdict["series"][n]
  if required:
    raise MissingInput(f"figure {figure!r}: check {verdict['check']!r} result has no series {names[0]!r} "
                       f"(accepted names {names}; present: {sorted(verdict['series'])}); rerun the check with a lab "
                       f"version that stores it", check_command(verdict["check"]))
  return None


def as_float_array(x, name: str) -> np.ndarray:
  try:
    return np.asarray(x, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise VerdictFormatError(f"series {name!r}: expected numbers, got {str(x)[:80]}") from e


def detail(verdict: dict[str, Any], key: str, default=None):
  """The first value of ``key`` in the verdict's ``details`` rows (e.g. ``shape`` or ``q``), else ``default``."""
  for row in verdict.get("details") or []:
    if isinstance(row, dict) and key in row:
      return row[key]
  return default


def check_provenance(verdict: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
  """(runs, config) for ``style.save_figure``: the verdict's run folder and the whole verdict as the hashed config,
  so the config hash identifies the exact stored result the figure was drawn from."""
  return [verdict.get("run") or f"checks/{verdict['check']}"], verdict


__all__ = ["MissingInput", "RunFormatError", "VerdictFormatError", "resolve_run", "load_verdict", "series"]
