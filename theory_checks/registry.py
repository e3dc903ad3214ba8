"""Registry of theory checks: name -> (description, function of a run folder)."""

from __future__ import annotations

import dataclasses
from typing import Callable

from theory_checks import mp_at_init


@dataclasses.dataclass(frozen=True)
class Check:
  name: str
  description: str
  check_run: Callable


CHECKS = {
    mp_at_init.NAME: Check(mp_at_init.NAME, "weight ESDs at initialisation follow Marchenko-Pastur",
                           mp_at_init.check_run),
}


def get_check(name: str) -> Check:
  if name not in CHECKS:
    raise KeyError(f"check {name!r} unknown; available: {sorted(CHECKS)}")
  return CHECKS[name]
