"""Check 9: heavy-tailed metrics against generalisation across a hyper-parameter sweep.

Prediction (Martin & Mahoney 2021, Nat. Commun. 12:4122, Figs 2-4; JMLR 22(165); THEORY.md section 5): smaller
layer-averaged power-law alpha and alpha-weighted (``alpha log10 lambda_max``) go with better held-out performance,
tested as a rank correlation (Spearman, with a bootstrap confidence interval over runs), never as a threshold.
Cautions: Meng & Yao (JMLR 2023) find heavier tails with harder tasks.

Status: NOT MEASURED YET. A meaningful sweep needs (a) per-member hyper-parameters (learning rate, weight decay,
init scale) and (b) a task with a generalisation gap (a held-out split of a finite training set, e.g. modular
arithmetic): the affine-noise stream is infinite, so its held-out loss equals its training loss in expectation.
``models`` gained both (the ``ensemble`` section, ``data.kind = "modular"``) after this check was started; the sweep
itself was not built within the first timebox. The statistics are implemented (``spearman_ci``) and tested; the
check reports INCONCLUSIVE with that reason until the sweep is wired in.
"""

from __future__ import annotations

import pathlib

import numpy as np
from scipy import stats

from theory_checks import common
from theory_checks.random_labels import available_kinds
from theory_checks.verdict import INCONCLUSIVE, Verdict

NAME = "ht_generalisation"


def spearman_ci(x, y, *, boots: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
  """Spearman rank correlation of paired ``x, y`` and its percentile bootstrap confidence interval (pairs
  resampled with replacement; Efron & Tibshirani 1993, ch. 13)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  rho = float(stats.spearmanr(x, y).statistic)
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, x.size, size=(boots, x.size))
  reps = np.array([stats.spearmanr(x[i], y[i]).statistic for i in idx])
  reps = reps[np.isfinite(reps)]
  lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
  return rho, float(lo), float(hi)


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0) -> Verdict:
  del quick, runs_dir, seed
  kinds = available_kinds()
  return Verdict(
      check=NAME,
      prediction="Spearman(layer-averaged alpha or alpha-weighted, held-out loss) > 0 across a hyper-parameter "
      "sweep, with a bootstrap 95% CI excluding 0",
      source="Martin & Mahoney 2021 (Nat. Commun. 12:4122; JMLR 22(165)); THEORY.md section 5",
      tolerance="not applied: nothing measured",
      status=INCONCLUSIVE,
      measured=dict(reason="sweep not built yet: models now provides modular arithmetic and per-member "
                    f"hyper-parameters (data kinds: {kinds}), but no sweep run is wired into this check"),
      predicted=dict(reason="needs a modular-arithmetic hyper-parameter sweep (lr, weight decay) over >= 12 members"),
  )
