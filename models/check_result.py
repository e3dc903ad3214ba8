"""Where theory-check results live: one rule for every writer (``python -m lab main``, ``python -m theory_checks``)
and every reader (``python -m figures``).

A check's result is the JSON file ``<folder>/checks/<CHECK>.json``, where ``<folder>`` is the run folder the check
measured (the first one when it reads several, e.g. ``runs/noise_vs_structure``), or the folder of run folders
itself (``runs``) for a check that trains nothing and reads no run folder (pure random matrices). So the main job's
verdict and ``python -m theory_checks mp_at_init`` write the same file, beside the run they judge.

Results written by older versions of the lab as ``<folder>/checks/<CHECK>/result.json`` are still read
(``existing_result``).
"""

from __future__ import annotations

import pathlib

CHECKS_FOLDER = "checks"


def checks_dir(folder: str | pathlib.Path) -> pathlib.Path:
  """The folder holding the check results of ``folder`` (a run folder, or the folder of run folders)."""
  return pathlib.Path(folder) / CHECKS_FOLDER


def result_file(checks: str | pathlib.Path, check: str) -> pathlib.Path:
  """The result of ``check`` inside a checks folder: ``<checks>/<check>.json``."""
  return pathlib.Path(checks) / f"{check}.json"


def result_path(folder: str | pathlib.Path, check: str) -> pathlib.Path:
  """The result of ``check`` measured on ``folder``: ``<folder>/checks/<check>.json``."""
  return result_file(checks_dir(folder), check)


def result_folder(run: str, runs_dir: str | pathlib.Path) -> pathlib.Path:
  """The folder whose ``checks/`` holds a result: the first run folder named in the verdict's ``run`` field
  (comma-separated when it read several), else ``runs_dir`` (a check that read no run folder)."""
  first = run.split(",")[0].strip() if run else ""
  return pathlib.Path(first) if first else pathlib.Path(runs_dir)


def existing_result(checks: str | pathlib.Path, check: str) -> pathlib.Path | None:
  """The stored result of ``check`` in a checks folder: ``<check>.json``, else the older layout
  ``<check>/result.json``; ``None`` when neither exists."""
  for path in (result_file(checks, check), pathlib.Path(checks) / check / "result.json"):
    if path.exists():
      return path
  return None
