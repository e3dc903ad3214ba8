"""Registry of theory checks: name -> description, ``run(quick, runs_dir, seed) -> Verdict`` and, for checks with a
nominal false-alarm level, ``calibrate(quick, seed) -> dict`` (false-alarm rate on exact nulls, power on planted
alternatives)."""

from __future__ import annotations

import dataclasses
from typing import Callable

from theory_checks import bbp, mp_at_init, tw_fluctuations


@dataclasses.dataclass(frozen=True)
class Check:
  name: str
  description: str
  run: Callable
  calibrate: Callable | None = None
  check_run: Callable | None = None  # a function of a loaded run folder, for checks that read one


CHECKS = {c.name: c for c in [
    Check(mp_at_init.NAME, "1. weight ESDs at initialisation follow Marchenko-Pastur (bulk KS) and Tracy-Widom (edge)",
          mp_at_init.run, mp_at_init.calibrate, mp_at_init.check_run),
    Check(tw_fluctuations.NAME, "2. largest eigenvalues over many seeds follow TW1 (KS goodness of fit)",
          tw_fluctuations.run, tw_fluctuations.calibrate),
    Check(bbp.NAME, "3. BBP transition: threshold q^(1/4), outlier position and overlaps of planted spikes",
          bbp.run, bbp.calibrate),
]}


def get_check(name: str) -> Check:
  if name not in CHECKS:
    raise KeyError(f"check {name!r} unknown; available: {sorted(CHECKS)}")
  return CHECKS[name]
