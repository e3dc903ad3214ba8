"""Registry of theory checks: name -> description, ``run(quick, runs_dir, seed) -> Verdict`` and, for checks with a
nominal false-alarm level, ``calibrate(quick, seed) -> dict`` (false-alarm rate on exact nulls, power on planted
alternatives)."""

from __future__ import annotations

import dataclasses
from typing import Callable

from theory_checks import (affine_logit_map, bbp, early_warning, hessian_outliers, ht_generalisation,
                           jacobian_spectra, learning_bbp, mp_at_init, noise_structure, random_labels, rank_collapse,
                           trained_jacobians, tw_fluctuations, wigner_goe)


@dataclasses.dataclass(frozen=True)
class Check:
  name: str
  description: str
  run: Callable
  calibrate: Callable | None = None
  check_run: Callable | None = None  # a function of a loaded run folder, for checks that read one
  seeds: bool = False  # run(..., seeds=[...]) takes the evaluation seeds (python -m theory_checks NAME --seeds ...)
  quick_seconds: float = 0.0  # measured wall seconds of its --quick run; the parallel runner starts the longest first


# quick_seconds: each check's wall time in `python -m theory_checks all --quick --jobs 1` on the idle 2-core development
# VM, 2026-12-01 (docs/THEORY.md, cost of the quick suite); used only to order the parallel runner's queue.
CHECKS = {c.name: c for c in [
    Check(mp_at_init.NAME, "1. weight ESDs at initialisation follow Marchenko-Pastur (bulk KS) and Tracy-Widom (edge)",
          mp_at_init.run, mp_at_init.calibrate, mp_at_init.check_run, quick_seconds=26),
    Check(tw_fluctuations.NAME, "2. largest eigenvalues over many seeds follow TW1 (KS goodness of fit)",
          tw_fluctuations.run, tw_fluctuations.calibrate, quick_seconds=3),
    Check(bbp.NAME, "3. BBP transition: threshold q^(1/4), outlier position and overlaps of planted spikes",
          bbp.run, bbp.calibrate, quick_seconds=3),
    Check(wigner_goe.NAME, "4. semicircle and GOE spacing ratio; bulk spacing ratio of trained weights (run folder)",
          wigner_goe.run, quick_seconds=5),
    Check(jacobian_spectra.NAME, "5. deep linear Fuss-Catalan, orthogonal isometry, tanh at criticality (input at q*)",
          jacobian_spectra.run, quick_seconds=16),
    Check(rank_collapse.NAME, "6. rank collapse in attention-only stacks; skip connections prevent it",
          rank_collapse.run, quick_seconds=7),
    Check(noise_structure.NAME, "7. noise vs structure vs meso-scale along p and natural text: structure rank of dW "
          "by attribution (DC, positional, token, other) against the matched p = 1 seed, remainder, dynamics",
          noise_structure.run, quick_seconds=203),
    Check(random_labels.NAME, "8. real vs random labels on modular arithmetic: a grokked embedding's structure rank "
          "is 2K (K key Fourier frequencies), its structured directions Fourier modes unlike a memoriser's",
          random_labels.run, quick_seconds=188),
    Check(ht_generalisation.NAME, "9. alpha / alpha-weighted vs held-out loss across a learning-rate x weight-decay "
          "sweep (lab sweep): Spearman over configurations, cluster bootstrap CI", ht_generalisation.run,
          ht_generalisation.calibrate, quick_seconds=73),
    Check(hessian_outliers.NAME, "10. Hessian of a C-class classifier: bulk + about C (or C-1) outliers",
          hessian_outliers.run, quick_seconds=23),
    Check(learning_bbp.NAME, "11. planted rank-k teacher: the learned map's teacher overlap switches on at the BBP "
          "threshold of n sampled transitions; structure rank = k above it", learning_bbp.run, quick_seconds=135),
    Check(affine_logit_map.NAME, "12. the main job's knob: the learned token-to-logit map's margin along the rule's "
          "permutation is beta(p) = ln(1 + (1-p) V / p), the Bayes map's only singular value", affine_logit_map.run,
          quick_seconds=40),
    Check(trained_jacobians.NAME, "13. network Jacobian = free product of its blocks' at init; where it departs "
          "after training, per regime (noise, meso, rule, text), and its overlap with the weight spikes",
          trained_jacobians.run, quick_seconds=111),
    Check(early_warning.NAME, "14. grokking early warning: spectral signals vs a non-spectral baseline, alarms "
          "calibrated on non-grokking controls at a fixed FPR, lead times on held-out seeds (--seeds)",
          early_warning.run, seeds=True, quick_seconds=251),
]}


def get_check(name: str) -> Check:
  if name not in CHECKS:
    raise KeyError(f"NAME: expected a check name ({', '.join(CHECKS)}), got {name!r}; 'python -m theory_checks list' "
                   "describes them")
  return CHECKS[name]
