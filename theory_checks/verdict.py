"""The form every theory check returns: a prediction with its source, a measurement, a tolerance, a verdict."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np

from spectral.cli import format_number, round_to_uncertainty

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


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
    run: the run folder(s) the measurement read.
    series: raw arrays a figure draws (name -> list), e.g. scaled maxima for a Tracy-Widom histogram, so figures
      read stored check results and never rerun a measurement.
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
