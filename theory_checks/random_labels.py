"""Check 8: random labels versus real labels on the same inputs (memorising noise versus learning structure).

Prediction (THEORY.md sections 5 and the pilot; Martin & Mahoney 2021, JMLR 22(165) section 6; Maennel et al. 2020,
arXiv:2006.10455): a network that memorises random labels and one that generalises on real labels differ in their
weight spectra; the pilot (modular addition, p = 59, weight decay 1.0) found tens of outliers per matrix in both,
with the generalising network concentrated into fewer, larger spikes and a lower stable rank, while first-layer
weights align with the inputs' principal components under either labelling.

Status: NOT MEASURED. The check needs a random-labels data generator (real inputs, shuffled targets) and a task with
a held-out split such as modular arithmetic; on main and on the ``models`` branch at the time of writing the only
generator is ``affine_noise`` (``models.config.DataConfig.kind``). The check reports INCONCLUSIVE with that reason
until such a generator exists; it is not a stub counted as done.
"""

from __future__ import annotations

import pathlib

from theory_checks import common
from theory_checks.verdict import INCONCLUSIVE, Verdict

NAME = "random_labels"
NEEDS = ("random_labels", "modular")


def available_kinds() -> list[str]:
  """Data kinds the installed ``models.config.DataConfig`` accepts, probed by construction."""
  from models.config import DataConfig
  kinds = []
  for kind in ("affine_noise",) + NEEDS:
    try:
      DataConfig(kind=kind)
      kinds.append(kind)
    except (ValueError, TypeError):
      pass
  return kinds


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0) -> Verdict:
  del quick, runs_dir, seed
  kinds = available_kinds()
  missing = [k for k in NEEDS if k not in kinds]
  return Verdict(
      check=NAME,
      prediction="memorising random labels and generalising on real labels leave different spectra: the "
      "generalising network has fewer, larger spikes and a lower stable rank (THEORY.md pilot)",
      source="Martin & Mahoney 2021 section 6; Maennel et al. 2020 (arXiv:2006.10455); THEORY.md pilot observation",
      tolerance="not applied: nothing measured",
      status=INCONCLUSIVE,
      measured=dict(reason=f"models lacks the data generators {missing}; available kinds: {kinds}"),
      predicted=dict(reason="needs random-labels and modular-arithmetic generators (issue 4)"),
  )
