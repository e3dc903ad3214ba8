"""Check 8: random labels versus real labels on the same inputs (memorising noise versus learning structure).

Prediction (the lab's pilot, docs/THEORY.md#lab-observations and #random_labels; Martin & Mahoney 2021, JMLR 22(165)
section 6; Zhang et al. 2017 for the control): on modular arithmetic a generalising network and one that memorised
random labels of the same inputs both leave the random-matrix bulk, but the generalising one concentrates into FEWER,
LARGER spikes and a LOWER stable rank than the memorising one (pilot: p = 59, weight decay 1.0). Maennel et al. 2020
(arXiv:2006.10455) warn that first-layer weights align with the inputs either way, so the comparison is over all
matrices.

Measurement: two run folders that differ only in ``data.kind`` (``modular`` versus ``random_labels``: the same
pairs, answers shuffled by a fixed permutation), same seeds, so member ``j`` of both starts from the same weights
(paired comparison). AdamW with weight decay 1.0. Per member at the last snapshot, summed or averaged over its weight
matrices: outliers beyond the Johnstone-Ma TW1 threshold at level 0.01 for the matrix's own randomized (entry-shuffled)
baseline, ``sigma^2 = ||W||_F^2 / (N M)`` = mean ESD eigenvalue (conservative: spikes inflate it), the largest
eigenvalue relative to that threshold, and the stable rank ``sum l / l_max``. The median estimator of ``sigma^2``
used elsewhere (Gavish & Donoho) assumes a noise bulk holding at least half the eigenvalues; weight decay 1.0
collapses that bulk (most eigenvalues near 0, the "rank-collapse" phase of Martin & Mahoney), the median estimate
then falls by orders of magnitude and nearly every eigenvalue counts as an outlier (seen when this check was built:
~145 of 160 per member in both runs). That count is still reported (``outliers_median_sigma2_*``), with the
fraction of matrices whose median estimate is below 1% of the mean (``bulk_collapsed_fraction``).

Tolerance: the direction of each paired difference (real - random, per seed) is judged by its mean against 3 SE
across seeds. PASS when the generalising network has fewer outliers AND a lower mean stable rank (both beyond 3 SE);
FAIL when either difference is beyond 3 SE the other way, or indistinguishable (the prediction claims a
difference); INCONCLUSIVE when the premise fails: the real-label runs must generalise (held-out accuracy >= 0.9)
and the random-label runs must memorise (training accuracy >= 0.9) with held-out accuracy near chance, otherwise
the runs are not the contrast the prediction is about.
"""

from __future__ import annotations

import pathlib

import numpy as np

from spectral.outliers import mp_outliers
from theory_checks import common
from theory_checks.noise_structure import LEVEL, matrix_metrics
from theory_checks.verdict import FAIL, INCONCLUSIVE, PASS, Verdict

NAME = "random_labels"
QUICK = {"data.modulus": 23, "data.vocab_size": 25, "data.seq_len": 4, "data.batch_size": 128,
         "data.noise_p": [0.0], "data.train_fraction": 0.5, "model.d_model": 64, "model.num_heads": 2,
         "model.num_layers": 1, "train.steps": 2500, "train.members_per_regime": 3, "train.snapshot_steps": [0, 2500],
         "train.learning_rate": 3e-3, "train.weight_decay": 1.0, "train.eval_batches": 2, "train.log_every": 100}
FULL = {"data.modulus": 59, "data.vocab_size": 61, "data.seq_len": 4, "data.batch_size": 256, "data.noise_p": [0.0],
        "data.train_fraction": 0.3, "model.d_model": 128, "model.num_heads": 4, "model.num_layers": 1,
        "train.steps": 20000, "train.members_per_regime": 4, "train.snapshot_steps": [0, 1000, 5000, 20000],
        "train.learning_rate": 1e-3, "train.weight_decay": 1.0, "train.eval_batches": 4, "train.log_every": 100}


def configs(quick: bool):
  from models.config import RunConfig, with_overrides
  over = QUICK if quick else FULL
  tag = "quick" if quick else "full"
  real = with_overrides(RunConfig(name=f"checks_modular_real_{tag}"),
                        {**over, "data.kind": "modular", "data.regime_names": ["real"]})
  rand = with_overrides(RunConfig(name=f"checks_modular_random_{tag}"),
                        {**over, "data.kind": "random_labels", "data.regime_names": ["random"]})
  return real, rand


def per_member(run) -> list[dict]:
  step = max(run.spectra)
  out = []
  for mem in run.members:
    i = mem["index"]
    outl, med_outl, collapsed, ratio, srank = 0, 0, 0, [], []
    for name, ev in run.spectra[step].items():
      e = np.sort(np.asarray(ev[i], np.float64))
      shape = run.info["matrices"][name]["shape"]
      mm = matrix_metrics(e, shape)
      trace = mp_outliers(e[None], shape, level=LEVEL, estimator="trace")
      outl += int(trace.n_outliers[0])
      med_outl += mm["n_outliers"]
      collapsed += int(mm["sigma2"] < 0.01 * e.mean())
      ratio.append(float(e[-1] / trace.threshold[0]))
      srank.append(float(e.sum() / e[-1]))
    steps, acc = run.metric("test_accuracy", i)
    _, tr = run.metric("train_accuracy", i)
    out.append(dict(seed_index=mem["seed_index"], outliers=outl, outliers_median_sigma2=med_outl,
                    bulk_collapsed_matrices=collapsed, matrices=len(run.spectra[step]),
                    lmax_over_threshold=float(np.mean(ratio)),
                    stable_rank=float(np.mean(srank)), test_accuracy=float(acc[-1]),
                    train_accuracy=float(np.mean(tr[-3:]))))
  return out


def judge(real: list[dict], rand: list[dict], modulus: int) -> tuple[str, dict]:
  by_seed = {r["seed_index"]: r for r in rand}
  pairs = [(r, by_seed[r["seed_index"]]) for r in real if r["seed_index"] in by_seed]
  facts = {}
  for key in ("outliers", "stable_rank", "lmax_over_threshold"):
    d = np.asarray([a[key] - b[key] for a, b in pairs], np.float64)
    facts[f"{key}_real_minus_random"], facts[f"{key}_diff_se"] = common.mean_se(d)
  facts["bulk_collapsed_fraction"] = float(np.mean([r["bulk_collapsed_matrices"] / r["matrices"]
                                                    for r in real + rand]))
  facts["outliers_median_sigma2_real"] = float(np.mean([r["outliers_median_sigma2"] for r in real]))
  facts["outliers_median_sigma2_random"] = float(np.mean([r["outliers_median_sigma2"] for r in rand]))
  facts["real_test_accuracy"] = float(np.mean([r["test_accuracy"] for r in real]))
  facts["random_train_accuracy"] = float(np.mean([r["train_accuracy"] for r in rand]))
  facts["random_test_accuracy"] = float(np.mean([r["test_accuracy"] for r in rand]))
  chance = 1.0 / modulus
  if facts["real_test_accuracy"] < 0.9:
    return INCONCLUSIVE, facts | dict(reason=f"real-label runs did not generalise (held-out accuracy "
                                      f"{facts['real_test_accuracy']:.3f} < 0.9)")
  if facts["random_train_accuracy"] < 0.9 or facts["random_test_accuracy"] > chance + 0.1:
    return INCONCLUSIVE, facts | dict(reason="random-label runs did not memorise (train accuracy "
                                      f"{facts['random_train_accuracy']:.3f}) or are above chance on held-out pairs")
  sig = lambda k: facts[f"{k}_real_minus_random"] / max(facts[f"{k}_diff_se"], 1e-12)
  fewer = sig("outliers") < -3 or (facts["outliers_real_minus_random"] < 0 and facts["outliers_diff_se"] == 0)
  lower = sig("stable_rank") < -3
  facts.update(fewer_outliers_when_generalising=bool(fewer), lower_stable_rank_when_generalising=bool(lower))
  return (PASS if fewer and lower else FAIL), facts


def check_runs(real_run, rand_run, modulus: int) -> Verdict:
  real, rand = per_member(real_run), per_member(rand_run)
  status, facts = judge(real, rand, modulus)
  return Verdict(
      check=NAME,
      prediction="generalising on real labels gives fewer outliers and a lower stable rank than memorising random "
      "labels of the same inputs (paired by seed)",
      source="lab pilot (docs/THEORY.md#lab-observations); Martin & Mahoney 2021 (JMLR 22(165), arXiv:1810.01075) "
      "section 6; Zhang et al. 2017 (arXiv:1611.03530); Maennel et al. 2020 (arXiv:2006.10455); "
      "docs/THEORY.md#random_labels",
      tolerance="paired differences (real - random) beyond 3 SE across seeds in the predicted direction; "
      "INCONCLUSIVE unless real generalises (held-out acc >= 0.9) and random memorises (train acc >= 0.9, held-out "
      "near chance)",
      status=status, measured=facts,
      predicted=dict(outliers_real_minus_random="< 0", stable_rank_real_minus_random="< 0",
                     lmax_over_threshold_real_minus_random="> 0 (larger spikes)"),
      details=[dict(run=str(real_run.path), members=real), dict(run=str(rand_run.path), members=rand)],
      run=f"{real_run.path},{rand_run.path}",
      series=dict(real_outliers=[r["outliers"] for r in real], random_outliers=[r["outliers"] for r in rand],
                  real_stable_rank=[r["stable_rank"] for r in real],
                  random_stable_rank=[r["stable_rank"] for r in rand]))


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0) -> Verdict:
  from models.run_folder import load_run
  from models.train import train_run
  del seed
  real_cfg, rand_cfg = configs(quick)
  real = load_run(train_run(real_cfg, runs_dir, progress=False))
  rand = load_run(train_run(rand_cfg, runs_dir, progress=False))
  return check_runs(real, rand, real_cfg.data.modulus)


def available_kinds() -> list[str]:
  from models.config import DATA_KINDS
  return list(DATA_KINDS)
