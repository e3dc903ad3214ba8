"""Theory-check results: the typed record every check returns and every figure reads (``Verdict``), and where it is
stored, one rule for every writer (``python -m lab main``, ``python -m theory_checks``) and every reader
(``python -m figures``). It lives in ``models`` so that both ``theory_checks`` (the writers; ``theory_checks.verdict``
re-exports it) and ``figures`` (which may not import ``theory_checks``) use the same record.

A check's result is the JSON file ``<folder>/checks/<CHECK>.json``, where ``<folder>`` is the run folder the check
measured (the first one when it reads several, e.g. ``runs/noise_vs_structure``), or the folder of run folders
itself (``runs``) for a check that trains nothing and reads no run folder (pure random matrices). So the main job's
verdict and ``python -m theory_checks mp_at_init`` write the same file, beside the run they judge.

Results written by older versions of the lab as ``<folder>/checks/<CHECK>/result.json`` are still read
(``existing_result``).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np

from spectral.cli import format_number, round_to_uncertainty

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
CHECKS_FOLDER = "checks"


class VerdictFormatError(ValueError):
  """A stored check result that is not a ``Verdict`` JSON this version of the lab can read."""


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  if isinstance(x, (np.floating, np.integer, np.bool_)):
    return x.item()
  return x


@dataclasses.dataclass(frozen=True)
class Verdict:
  """Result of one check.

  Attributes:
    check: registry name of the check.
    prediction: the statement tested, with its formula.
    source: citation (paper, equation or section).
    tolerance: the acceptance rule and why it is the right size.
    status: PASS, FAIL or INCONCLUSIVE.
    measured / predicted: the headline numbers, side by side.
    details: per-item measurements (e.g. one row per matrix).
    run: the run folder(s) the measurement read, comma-separated; empty when it read none.
    series: raw arrays a figure draws (name -> list), e.g. scaled maxima for a Tracy-Widom histogram, so figures
      read stored check results and never rerun a measurement. Each check's module documents the names it writes;
      a figure reads exactly those.
  """

  check: str
  prediction: str
  source: str
  tolerance: str
  status: str
  measured: dict[str, Any]
  predicted: dict[str, Any]
  details: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  run: str = ""
  series: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.status not in (PASS, FAIL, INCONCLUSIVE):
      raise ValueError(f"status: expected PASS, FAIL or INCONCLUSIVE, got {self.status!r}")

  def to_dict(self) -> dict[str, Any]:
    return _jsonable(dataclasses.asdict(self))

  def write_json(self, path: str | pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
    return path

  @classmethod
  def from_dict(cls, raw: Any, where: str = "verdict") -> "Verdict":
    """The record of a stored JSON object (``to_dict``'s inverse); ``VerdictFormatError`` names what is wrong."""
    if not isinstance(raw, dict):
      raise VerdictFormatError(f"{where}: expected a Verdict JSON object, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    missing = [k for k, f in fields.items() if k not in raw and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    unknown = sorted(set(raw) - set(fields))
    if missing or unknown:
      raise VerdictFormatError(f"{where}: not a Verdict JSON this lab can read (missing {missing}, unknown "
                               f"{unknown}); rerun the check with this lab version")
    for key, kind in (("measured", dict), ("predicted", dict), ("details", list), ("series", dict)):
      if key in raw and not isinstance(raw[key], kind):
        raise VerdictFormatError(f"{where}: {key!r} must be a JSON {'object' if kind is dict else 'array'}, got "
                                 f"{type(raw[key]).__name__}")
    try:
      return cls(**raw)
    except ValueError as e:
      raise VerdictFormatError(f"{where}: {e}") from None

  @classmethod
  def read_json(cls, path: str | pathlib.Path) -> "Verdict":
    return cls.from_dict(json.loads(pathlib.Path(path).read_text()), str(path))

  def summary(self) -> str:
    """The verdict in a few lines; measured numbers rounded to their standard error where the check states one
    (``<key>_se``), else to four significant digits (the JSON keeps full precision)."""
    lines = [f"[{self.status}] {self.check}", f"  prediction: {self.prediction}", f"  source:     {self.source}",
             f"  tolerance:  {self.tolerance}"]
    for k in sorted(set(self.measured) | set(self.predicted)):
      se = self.measured.get(f"{k}_se")
      measured = (round_to_uncertainty(self.measured[k], se) if k in self.measured and _is_number(se)
                  else _shown(self.measured.get(k, "-")))
      lines.append(f"  {k}: measured {measured}, predicted {_shown(self.predicted.get(k, '-'))}")
    if self.run:
      lines.append(f"  run:        {self.run}")
    return "\n".join(lines)


def _is_number(x) -> bool:
  return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _shown(x):
  """``x`` for the printed summary: floats to four significant digits, inside lists and dicts too."""
  if isinstance(x, (float, np.floating)):
    return format_number(x)
  if isinstance(x, (list, tuple)):
    return "[" + ", ".join(str(_shown(v)) for v in x) + "]"
  if isinstance(x, dict):
    return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in x.items()) + "}"
  return x


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
