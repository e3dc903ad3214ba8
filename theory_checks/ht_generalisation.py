"""Check 9: heavy-tailed metrics against generalisation across a hyper-parameter sweep.

Prediction (Martin, Peng & Mahoney 2021, Nat. Commun. 12:4122, Figs 2-4; Martin & Mahoney 2021, JMLR 22(165);
docs/THEORY.md#ht_generalisation): smaller layer-averaged power-law alpha and alpha-weighted (``alpha log10
lambda_max``) go with better held-out performance, tested as a rank correlation (Spearman, with a bootstrap confidence
interval over runs), never as a threshold. Cautions: Meng & Yao (JMLR 2023) find heavier tails with harder tasks.

Measurement: one run folder on modular arithmetic (``data.kind = "modular"``, a finite training split, so held-out
loss measures generalisation) whose members differ in learning rate and weight decay (the ``ensemble`` section: all
members in one compiled step) and seed. Per member at the last snapshot: layer-averaged power-law alpha (CSN fit of
each matrix's ESD tail, ``spectral.power_law``), layer-averaged alpha-weighted ``alpha log10(N lambda_max)`` in
Martin & Mahoney's unnormalised convention (our ESD eigenvalues times N), and held-out loss.

Tolerance: Spearman rho with a percentile bootstrap 95% CI over members (pairs resampled). PASS when the CI of rho
for alpha AND for alpha-weighted lies above 0; FAIL when either CI lies below 0 (the opposite ordering);
INCONCLUSIVE when a CI contains 0 (the sweep cannot tell at this size; that is reported, not forced either way).
``sign`` = -1 flips the predicted direction (the deliberately wrong prediction of the tests).
"""

from __future__ import annotations

import pathlib

import numpy as np
from scipy import stats

from spectral import power_law
from theory_checks import common
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


QUICK = {"data.kind": "modular", "data.modulus": 23, "data.vocab_size": 25, "data.seq_len": 4,
         "data.batch_size": 128, "data.noise_p": [0.0], "data.regime_names": ["modular"], "data.train_fraction": 0.5,
         "model.d_model": 64, "model.num_heads": 2, "model.num_layers": 1, "train.steps": 1500,
         "train.members_per_regime": 2, "train.snapshot_steps": [0, 1500], "train.learning_rate": 3e-3,
         "train.eval_batches": 2, "train.log_every": 100, "ensemble.learning_rate": [1e-3, 3e-3],
         "ensemble.weight_decay": [0.0, 0.1, 1.0]}
FULL = {**QUICK, "data.modulus": 59, "data.vocab_size": 61, "data.train_fraction": 0.3, "model.d_model": 128,
        "model.num_heads": 4, "train.steps": 10000, "train.snapshot_steps": [0, 10000], "train.members_per_regime": 3,
        "ensemble.learning_rate": [3e-4, 1e-3, 3e-3], "ensemble.weight_decay": [0.0, 0.1, 0.3, 1.0]}


def config(quick: bool):
  from models.config import RunConfig, with_overrides
  return with_overrides(RunConfig(name=f"checks_ht_sweep_{'quick' if quick else 'full'}"), QUICK if quick else FULL)


def member_metrics(run) -> list[dict]:
  step = max(run.spectra)
  names = sorted(run.spectra[step])
  alphas = {n: np.asarray(power_law.fit_power_law(np.clip(run.spectra[step][n], 1e-12, None)).alpha, np.float64)
            for n in names}
  out = []
  for mem in run.members:
    i = mem["index"]
    a = np.asarray([alphas[n][i] for n in names])
    # alpha-weighted in Martin & Mahoney's (WeightWatcher's) convention: eigenvalues of the unnormalised W^T W, i.e.
    # N times ours (spectral.esd.to_weightwatcher), so alpha_weighted = alpha log10(N lambda_max).
    lmax = np.asarray([float(np.max(run.spectra[step][n][i])) * max(run.info["matrices"][n]["shape"]) for n in names])
    ok = np.isfinite(a) & (lmax > 0)
    steps, loss = run.metric("test_loss", i)
    out.append(dict(member=i, learning_rate=mem.get("learning_rate"), weight_decay=mem.get("weight_decay"),
                    alpha=float(np.mean(a[ok])), alpha_weighted=float(np.mean(a[ok] * np.log10(lmax[ok]))),
                    test_loss=float(loss[-1])))
  return out


def judge(rows: list[dict], *, sign: int = 1, seed: int = 0) -> tuple[str, dict]:
  loss = np.asarray([r["test_loss"] for r in rows])
  facts, verdicts = {}, []
  for key in ("alpha", "alpha_weighted"):
    x = np.asarray([r[key] for r in rows])
    ok = np.isfinite(x) & np.isfinite(loss)
    rho, lo, hi = spearman_ci(sign * x[ok], loss[ok], seed=seed)
    facts.update({f"spearman_{key}": rho, f"ci95_{key}": [lo, hi]})
    verdicts.append("PASS" if lo > 0 else "FAIL" if hi < 0 else INCONCLUSIVE)
  facts["members"] = len(rows)
  status = "FAIL" if "FAIL" in verdicts else ("PASS" if all(v == "PASS" for v in verdicts) else INCONCLUSIVE)
  return status, facts


def check_run(run, *, sign: int = 1) -> Verdict:
  rows = member_metrics(run)
  status, facts = judge(rows, sign=sign)
  return Verdict(
      check=NAME,
      prediction=("Spearman(layer-averaged alpha, held-out loss) > 0 and Spearman(alpha-weighted, held-out loss) > 0 "
                  "across a learning-rate x weight-decay sweep") if sign == 1 else
      "deliberately wrong: both Spearman correlations < 0",
      source="Martin, Peng & Mahoney 2021 (Nat. Commun. 12:4122, arXiv:2002.06716, Figs 2-4); Martin & Mahoney 2021 "
      "(JMLR 22(165), arXiv:1810.01075); docs/THEORY.md#ht_generalisation",
      tolerance="percentile bootstrap 95% CI of Spearman rho (2000 resamples of members): PASS if both CIs > 0, "
      "FAIL if either CI < 0, INCONCLUSIVE if a CI contains 0",
      status=status, measured=facts, predicted=dict(spearman_alpha="> 0", spearman_alpha_weighted="> 0"),
      details=rows, run=str(run.path),
      series=dict(alpha=[r["alpha"] for r in rows], alpha_weighted=[r["alpha_weighted"] for r in rows],
                  test_loss=[r["test_loss"] for r in rows], learning_rate=[r["learning_rate"] for r in rows],
                  weight_decay=[r["weight_decay"] for r in rows]))


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0) -> Verdict:
  from models.run_folder import load_run
  from models.train import train_run
  del seed
  return check_run(load_run(train_run(config(quick), runs_dir, progress=False)))
