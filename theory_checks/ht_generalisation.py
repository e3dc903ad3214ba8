"""Check 9: heavy-tailed metrics against generalisation across a hyper-parameter sweep, resampled by configuration.

Prediction (Martin, Peng & Mahoney 2021, Nat. Commun. 12:4122, arXiv:2002.06716, Figs 2-4; Martin & Mahoney 2021,
JMLR 22(165), arXiv:1810.01075; docs/THEORY.md#ht_generalisation): across a sweep of training hyper-parameters, a
smaller layer-averaged power-law exponent ``alpha`` and a smaller layer-averaged alpha-weighted ``alpha log10
lambda_max`` go with better held-out performance. The claim is about ordering, so it is tested as a rank correlation
with held-out loss (rho > 0), never as a threshold. Caution: Meng & Yao 2023 (JMLR 24(78), arXiv:2106.11409) find
heavier tails with harder tasks.

Design (``Design``, run through ``lab sweep``): modular addition with a finite training split (``data.kind =
"modular"``, so held-out loss measures generalisation), a grid of configurations ``learning_rate x weight_decay``
(FULL: 6 x 5 = 30 configurations) and ``seeds`` seeds per configuration (FULL: 3), all packed into one compiled
ensemble by ``python -m lab sweep run`` (a subprocess: ``theory_checks`` never imports ``lab``; the sweep is
resumable and a finished one is reused). The check reads only what the sweep stored: ``results.csv``
(``lab.sweep.summarize``: per point x snapshot x matrix the CSN power-law fit, ``lambda_max`` and held-out loss) and
each pack's ``run.json`` (matrix shapes).

Measurement, at the last snapshot of every finished point (member). A matrix ``W`` of shape ``(a, b)`` has ``N =
max(a, b)``, ``M = min(a, b)`` and ESD eigenvalues ``l`` of ``W^T W / N`` (``spectral.esd``).
- Matrices with ``M < MIN_M = 16`` are left out (e.g. the ``4 x d`` positional embedding: four eigenvalues carry no
  tail), and so are fits with fewer than ``MIN_TAIL = 10`` tail points or a failed fit (``alpha_status``). Even
  with tails of 10 or more, pure-noise Gaussian 64 x 64 matrices give CSN alphas of 2.2 to 5.6 (5th to 95th
  percentile of 500, docs/THEORY.md#ht_generalisation), so one fit says little and only averages can order
  anything; every exclusion is counted and reported by matrix.
- Per member, over its remaining matrices ``l``: ``alpha = mean_l alpha_l``; ``alpha_weighted = mean_l alpha_l
  log10(N_l lambda_max,l)`` in Martin & Mahoney's unnormalised convention (eigenvalues of ``W^T W``, ours times
  ``N``); ``log10_lambda_max = mean_l log10(N_l lambda_max,l)`` over the same matrices. ``alpha_weighted`` without
  its ``log lambda_max`` factor is ``alpha`` itself; ``log10_lambda_max`` alone shows what the factor contributes.
  Weight decay shrinks ``lambda_max`` directly and also changes held-out loss, so a correlation carried by
  ``log10_lambda_max`` is the weight-decay confound, not heavy tails.
- Per configuration: the mean over its seeds of each metric and of the held-out loss (``test_loss``, nats).

Statistic and tolerance (fixed before running). Seeds of one configuration are replicates of one treatment: they
share its learning rate and weight decay, so they are not independent draws from the sweep, and a bootstrap over
members treats 3 correlated seeds as 3 configurations and gives intervals that are too narrow (demonstrated in
``calibrate`` and the tests). The unit of resampling is therefore the configuration, the cluster bootstrap (Davison
& Hinkley 1997, Bootstrap Methods and their Application, section 3.8; Field & Welsh 2007, JRSS B 69:369, who show
that resampling clusters is consistent when clusters are independent, and resampling members is not): rho is the
Spearman correlation of per-configuration mean metric and mean held-out loss, and its 95% interval is the
percentile interval of ``BOOTS = 2000`` resamples of configurations with replacement (Efron & Tibshirani 1993,
ch. 13). A permutation test stratified by configuration would give a p-value; the bootstrap gives the interval the
verdict needs. PASS when the intervals of ``alpha`` AND ``alpha_weighted`` lie above 0; FAIL when either lies below
0 (the opposite ordering); INCONCLUSIVE when an interval contains 0, or when fewer than ``MIN_CONFIGS = 8``
configurations have a measurement. Reported, not judged: the same for ``log10_lambda_max``; the within-weight-decay
correlation (the mean of the Spearman rhos inside each weight-decay stratum, weighted by stratum size, with a
bootstrap of configurations inside strata), which holds weight decay fixed; the member-level bootstrap interval of
the old check, for comparison. ``sign = -1`` flips the predicted direction (the deliberately wrong prediction).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import pathlib

import numpy as np
from scipy import stats

from theory_checks import common
from theory_checks.verdict import FAIL, INCONCLUSIVE, PASS, Verdict

NAME = "ht_generalisation"
MIN_TAIL = 10
"""Fewest tail points an alpha fit may have to enter (spectral.power_law.DEFAULT_MIN_TAIL)."""
MIN_M = 16
"""Smallest M = min(a, b) of a matrix whose alpha enters."""
MIN_CONFIGS = 8
"""Fewest configurations with a measurement for a verdict other than INCONCLUSIVE."""
BOOTS = 2000
LEVEL = 0.95
JUDGED = ("alpha", "alpha_weighted")
METRICS = ("alpha", "alpha_weighted", "log10_lambda_max")


@dataclasses.dataclass(frozen=True)
class Design:
  """The sweep: configurations ``learning_rates x weight_decays``, ``seeds`` seeds each, ``steps`` AdamW steps of a
  one-layer transformer of width ``d_model`` on ``a + b mod modulus`` with ``train_fraction`` of the pairs for
  training."""

  learning_rates: tuple[float, ...]
  weight_decays: tuple[float, ...]
  seeds: int
  steps: int
  d_model: int = 32
  modulus: int = 23
  train_fraction: float = 0.5
  batch_size: int = 128
  eval_batches: int = 4

  @property
  def configurations(self) -> int:
    return len(self.learning_rates) * len(self.weight_decays)


QUICK = Design(learning_rates=(1e-3, 3e-3, 1e-2), weight_decays=(0.0, 0.3, 1.0, 2.0), seeds=3, steps=600)
FULL = Design(learning_rates=(1e-3, 1.6e-3, 2.5e-3, 4e-3, 6.3e-3, 1e-2), weight_decays=(0.0, 0.1, 0.3, 1.0, 2.0),
              seeds=3, steps=1200, d_model=64)


def sweep_dict(design: Design, tag: str) -> dict:
  """The sweep file (as a dict, ``lab.sweep_spec.sweep_from_dict``) of ``design``, named ``checks_ht_sweep_<tag>``."""
  m = design.modulus
  base = {"data": {"kind": "modular", "modulus": m, "vocab_size": m + 2, "seq_len": 4, "batch_size": design.batch_size,
                   "noise_p": [0.0], "regime_names": ["modular"], "train_fraction": design.train_fraction},
          "model": {"d_model": design.d_model, "num_heads": 2, "num_layers": 1},
          "train": {"steps": design.steps, "snapshot_steps": [0, design.steps], "members_per_regime": 1,
                    "eval_batches": design.eval_batches, "log_every": 100, "checkpoint_every": 0}}
  axes = {"learning_rate": list(design.learning_rates), "weight_decay": list(design.weight_decays),
          "seed": list(range(design.seeds))}
  members = design.configurations * design.seeds
  return {"sweep": {"name": f"checks_ht_sweep_{tag}", "max_members": members}, "base": base, "axes": axes}


# ------------------------------------------------------------------------------------------------ reading the sweep


def read_sweep(folder: str | pathlib.Path) -> tuple[list[dict], dict[str, dict[str, tuple[int, int]]], list[str]]:
  """What a finished sweep stored: the rows of ``results.csv`` (strings, as written), per pack the matrix shapes of
  its ``runs/<pack>/run.json`` and the sweep's axis names (``sweep.json``)."""
  folder = pathlib.Path(folder)
  path = folder / "results.csv"
  if not path.exists():
    raise ValueError(f"folder: expected a summarised sweep folder with results.csv, got {folder} without one; run "
                     "python -m lab sweep summarize on it")
  with path.open(newline="") as f:
    rows = list(csv.DictReader(f))
  shapes = {}
  for pack in sorted({r["pack"] for r in rows}):
    info = folder / "runs" / pack / "run.json"
    if info.exists():
      shapes[pack] = {k: tuple(v["shape"]) for k, v in json.loads(info.read_text())["matrices"].items()}
  axes = sorted(json.loads((folder / "sweep.json").read_text())["axes"])
  return rows, shapes, axes


def _number(text: str) -> float:
  try:
    return float(text)
  except (TypeError, ValueError):
    return float("nan")


def member_table(rows: list[dict], shapes: dict[str, dict[str, tuple[int, int]]], axes, *, min_tail: int = MIN_TAIL,
                 min_m: int = MIN_M) -> tuple[list[dict], dict]:
  """Per finished point (member) at its last snapshot: its axis values, held-out loss and the layer averages
  ``alpha``, ``alpha_weighted`` and ``log10_lambda_max`` (module docstring) over the matrices with ``M >= min_m`` and
  a fit with ``n_tail >= min_tail``.

  Returns ``(members, exclusions)``; ``exclusions`` counts what was left out and why: ``small_matrices`` (name ->
  shape, M < min_m), ``short_tails`` and ``failed_fits`` (name -> number of members), ``points_not_done`` (ids).
  """
  if int(min_tail) != min_tail or min_tail < 2:
    raise ValueError(f"min_tail: expected an integer >= 2, got {min_tail!r}")
  by_point: dict[str, list[dict]] = {}
  for r in rows:
    by_point.setdefault(r["point"], []).append(r)
  excl = dict(small_matrices={}, short_tails={}, failed_fits={}, points_not_done=[])
  members = []
  for pid, prs in sorted(by_point.items()):
    if prs[0]["state"] != "done" or not prs[0].get("step"):
      excl["points_not_done"].append(pid)
      continue
    last = max(int(r["step"]) for r in prs)
    prs = [r for r in prs if int(r["step"]) == last]
    alphas, weighted, logs, tails = [], [], [], []
    for r in prs:
      shape = shapes[r["pack"]][r["matrix"]]
      n, m = max(shape), min(shape)
      if m < min_m:
        excl["small_matrices"][r["matrix"]] = list(shape)
        continue
      alpha, n_tail, lmax = _number(r["alpha"]), _number(r["n_tail"]), _number(r["lambda_max"])
      if r.get("alpha_status", "ok") != "ok" or not np.isfinite(alpha) or not lmax > 0:
        excl["failed_fits"][r["matrix"]] = excl["failed_fits"].get(r["matrix"], 0) + 1
        continue
      if not n_tail >= min_tail:
        excl["short_tails"][r["matrix"]] = excl["short_tails"].get(r["matrix"], 0) + 1
        continue
      log_l = math.log10(n * lmax)  # Martin & Mahoney: eigenvalues of W^T W, N times ours
      alphas.append(alpha)
      weighted.append(alpha * log_l)
      logs.append(log_l)
      tails.append(n_tail)
    mean = lambda v: float(np.mean(v)) if v else float("nan")
    members.append(dict(point=pid, step=last, **{a: _number(prs[0][a]) for a in axes},
                        test_loss=_number(prs[0].get("test_loss")), matrices=len(alphas), alpha=mean(alphas),
                        alpha_weighted=mean(weighted), log10_lambda_max=mean(logs), n_tail=mean(tails)))
  return members, excl


def config_table(members: list[dict], axes) -> list[dict]:
  """Per configuration (the values of every axis but ``seed``): the means over its seeds of ``METRICS`` and
  ``test_loss`` and ``n_tail`` (the mean tail size of the fits that entered; members with a NaN value left out of
  that mean) and ``seeds``, the number of members."""
  keys = [a for a in axes if a != "seed"]
  groups: dict[tuple, list[dict]] = {}
  for mem in members:
    groups.setdefault(tuple(mem[k] for k in keys), []).append(mem)
  out = []
  for key, mems in sorted(groups.items()):
    row = dict(zip(keys, key), seeds=len(mems))
    for col in (*METRICS, "test_loss", "n_tail"):
      v = np.asarray([m[col] for m in mems], np.float64)
      row[col] = float(np.mean(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")
    out.append(row)
  return out


# ------------------------------------------------------------------------------------------------------ statistics


def spearman_rows(x, y) -> np.ndarray:
  """Spearman rho of ``x`` and ``y`` along the last axis, (..., n) -> (...): Pearson correlation of average ranks
  (ties share their mean rank, as in ``scipy.stats.spearmanr``); NaN where either row is constant."""
  rx = stats.rankdata(np.asarray(x, np.float64), axis=-1)
  ry = stats.rankdata(np.asarray(y, np.float64), axis=-1)
  rx, ry = rx - rx.mean(axis=-1, keepdims=True), ry - ry.mean(axis=-1, keepdims=True)
  den = np.sqrt((rx * rx).sum(axis=-1) * (ry * ry).sum(axis=-1))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, (rx * ry).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def _percentile(reps: np.ndarray, level: float) -> tuple[float, float]:
  reps = reps[np.isfinite(reps)]
  if reps.size == 0:
    return float("nan"), float("nan")
  lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
  return float(lo), float(hi)


def spearman_ci(x, y, *, boots: int = BOOTS, level: float = LEVEL, seed: int = 0) -> tuple[float, float, float]:
  """Spearman rho of paired ``x, y`` (n,) and its percentile bootstrap interval, pairs resampled with replacement
  (Efron & Tibshirani 1993, ch. 13). Valid when the pairs are independent: given per-configuration means it is the
  cluster bootstrap; given members of clustered configurations it is over-confident (module docstring)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape != y.shape or x.ndim != 1 or x.size < 3:
    raise ValueError(f"x, y: expected two 1-D arrays of one length >= 3, got shapes {x.shape} and {y.shape}")
  idx = np.random.default_rng(seed).integers(0, x.size, size=(boots, x.size))
  return (float(spearman_rows(x, y)), *_percentile(spearman_rows(x[idx], y[idx]), level))


def stratified_spearman(x, y, strata) -> float:
  """Mean of the Spearman rhos of ``x, y`` inside each stratum (strata with at least 3 members and a defined rho),
  weighted by stratum size: the rank correlation with the stratifying variable (weight decay) held fixed. NaN when no
  stratum has one."""
  x, y, strata = (np.asarray(a) for a in (x, y, strata))
  rhos, weights = [], []
  for s in np.unique(strata):
    sel = strata == s
    if sel.sum() >= 3:
      r = float(spearman_rows(x[sel].astype(np.float64), y[sel].astype(np.float64)))
      if np.isfinite(r):
        rhos.append(r)
        weights.append(sel.sum())
  return float(np.average(rhos, weights=weights)) if rhos else float("nan")


def stratified_spearman_ci(x, y, strata, *, boots: int = BOOTS, level: float = LEVEL,
                           seed: int = 0) -> tuple[float, float, float]:
  """``stratified_spearman`` and its percentile interval from resampling units with replacement inside each stratum
  (the stratified bootstrap, Davison & Hinkley 1997, section 3.2)."""
  x, y, strata = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(strata)
  rng = np.random.default_rng(seed)
  groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
  groups = [g for g in groups if g.size >= 3]
  if not groups:
    return float("nan"), float("nan"), float("nan")
  weights = np.asarray([g.size for g in groups], np.float64)
  reps = np.zeros((boots, len(groups)))
  for j, g in enumerate(groups):
    idx = g[rng.integers(0, g.size, size=(boots, g.size))]
    reps[:, j] = spearman_rows(x[idx], y[idx])
  ok = np.isfinite(reps)
  w = np.where(ok, weights[None, :], 0.0)
  with np.errstate(invalid="ignore"):
    combined = np.where(w.sum(axis=1) > 0, (np.where(ok, reps, 0.0) * w).sum(axis=1) / w.sum(axis=1), np.nan)
  return (stratified_spearman(x, y, strata), *_percentile(combined, level))


def interval_status(lo: float, hi: float) -> str:
  """PASS when the interval lies above 0, FAIL when below, INCONCLUSIVE when it contains 0 (or is undefined)."""
  if not (np.isfinite(lo) and np.isfinite(hi)):
    return INCONCLUSIVE
  return PASS if lo > 0 else FAIL if hi < 0 else INCONCLUSIVE


def judge(configs: list[dict], *, members: list[dict] | None = None, sign: int = 1, seed: int = 0,
          boots: int = BOOTS, stratum: str = "weight_decay") -> tuple[str, dict]:
  """The verdict from per-configuration means (``config_table``): the cluster-bootstrap interval of Spearman rho
  between ``sign`` x metric and held-out loss for ``METRICS`` (``JUDGED`` decide), the within-``stratum``
  correlation (with ``within_<stratum>_reading_<metric>``: what ``interval_status`` would say of its interval;
  reported, not judged), and, when ``members`` are given, the member-level bootstrap interval for comparison."""
  if sign not in (1, -1):
    raise ValueError(f"sign: expected 1 or -1, got {sign!r}")
  loss = np.asarray([c["test_loss"] for c in configs], np.float64)
  facts, verdicts = {}, {}
  for i, key in enumerate(METRICS):
    x = sign * np.asarray([c[key] for c in configs], np.float64)
    ok = np.isfinite(x) & np.isfinite(loss)
    facts[f"configurations_{key}"] = int(ok.sum())
    if ok.sum() < MIN_CONFIGS:
      facts.update({f"spearman_{key}": float("nan"), f"ci95_{key}": [float("nan")] * 2})
      verdicts[key] = INCONCLUSIVE
      continue
    rho, lo, hi = spearman_ci(x[ok], loss[ok], boots=boots, seed=seed + i)
    facts.update({f"spearman_{key}": rho, f"ci95_{key}": [lo, hi]})
    verdicts[key] = interval_status(lo, hi)
    if stratum and all(stratum in c for c in configs):
      strata = np.asarray([c[stratum] for c in configs])[ok]
      rho_w, lo_w, hi_w = stratified_spearman_ci(x[ok], loss[ok], strata, boots=boots, seed=seed + 10 + i)
      facts.update({f"within_{stratum}_spearman_{key}": rho_w, f"within_{stratum}_ci95_{key}": [lo_w, hi_w],
                    f"within_{stratum}_reading_{key}": interval_status(lo_w, hi_w)})
    if members is not None:
      mx = sign * np.asarray([m[key] for m in members], np.float64)
      ml = np.asarray([m["test_loss"] for m in members], np.float64)
      mok = np.isfinite(mx) & np.isfinite(ml)
      if mok.sum() >= 3:
        rho_m, lo_m, hi_m = spearman_ci(mx[mok], ml[mok], boots=boots, seed=seed + 20 + i)
        facts.update({f"member_spearman_{key}": rho_m, f"member_bootstrap_ci95_{key}": [lo_m, hi_m]})
  facts["configurations"] = len(configs)
  judged = [verdicts[k] for k in JUDGED]
  status = FAIL if FAIL in judged else PASS if all(v == PASS for v in judged) else INCONCLUSIVE
  if min(facts[f"configurations_{k}"] for k in JUDGED) < MIN_CONFIGS:
    facts["reason"] = f"fewer than {MIN_CONFIGS} configurations with a measurement"
  return status, facts


# ------------------------------------------------------------------------------------------- planted configurations


def planted_members(configs: int, seeds: int, *, effect: float, noise_sd: float = 0.3, seed: int = 0) -> list[dict]:
  """Synthetic members of ``configs`` configurations with ``seeds`` seeds each, for calibration and tests.

  Configuration ``c`` has a metric level ``a_c ~ N(0, 1)`` and a loss level ``b_c = effect a_c + e_c``, ``e_c ~ N(0,
  1)``; its members add independent ``N(0, noise_sd^2)`` to both. ``effect = 0`` is the null with clustering as
  strong as ``1 / noise_sd^2``: members of one configuration agree, configurations are independent. ``alpha`` and
  ``alpha_weighted`` carry the metric, ``log10_lambda_max`` an independent level; ``weight_decay`` cycles over 3
  strata. Returns rows in the form of ``member_table``'s members (axes ``learning_rate, seed, weight_decay``)."""
  if configs < 1 or seeds < 1:
    raise ValueError(f"configs, seeds: expected >= 1, got {configs}, {seeds}")
  rng = np.random.default_rng(seed)
  a, e, g = rng.normal(size=(3, configs))
  b = effect * a + e
  out = []
  for c in range(configs):
    for s in range(seeds):
      x, y, z = rng.normal(0.0, noise_sd, size=3)
      out.append(dict(point=f"pt{c * seeds + s:04d}", learning_rate=float(c), weight_decay=float(c % 3), seed=float(s),
                      test_loss=b[c] + y, alpha=a[c] + x, alpha_weighted=a[c] + x, log10_lambda_max=g[c] + z,
                      n_tail=float("nan")))
  return out


AXES = ("learning_rate", "seed", "weight_decay")


def rejection_rates(trials: int, *, configs: int = 30, seeds: int = 3, effect: float = 0.0, noise_sd: float = 0.3,
                    boots: int = 1000, level: float = LEVEL, seed: int = 0) -> dict:
  """Over ``trials`` planted sweeps (``planted_members``): how often the cluster (configuration) bootstrap interval
  of rho excludes 0, and how often the member-level bootstrap interval does."""
  cluster = member = 0
  for t in range(trials):
    mems = planted_members(configs, seeds, effect=effect, noise_sd=noise_sd, seed=seed * 100_003 + t)
    conf = config_table(mems, AXES)
    _, lo, hi = spearman_ci([c["alpha"] for c in conf], [c["test_loss"] for c in conf], boots=boots, level=level,
                            seed=t)
    cluster += not lo <= 0 <= hi
    _, lo, hi = spearman_ci([m["alpha"] for m in mems], [m["test_loss"] for m in mems], boots=boots, level=level,
                            seed=t)
    member += not lo <= 0 <= hi
  return dict(cluster=cluster / trials, member=member / trials)


def calibrate(quick: bool = False, seed: int = 0, *, trials: int | None = None, configs: int = 30,
              seeds: int = 3) -> dict:
  """False-alarm rate of the configuration-level interval on the clustered null (``effect = 0``, members of a
  configuration nearly identical, ``noise_sd = 0.3``), the member-level bootstrap's rejection rate on the same null
  (the over-confidence this check removes; not a false alarm of this check), and the power at ``effect = 1`` (rho
  between configuration levels about 0.7)."""
  trials = trials or (100 if quick else 400)
  level = 1.0 - LEVEL
  null = rejection_rates(trials, configs=configs, seeds=seeds, effect=0.0, seed=seed)
  alt = rejection_rates(trials, configs=configs, seeds=seeds, effect=1.0, seed=seed + 1)
  return dict(check=NAME, level=level, trials=trials, configs=configs, seeds=seeds,
              bound=common.rate_bound(trials, level), false_alarm=null["cluster"],
              member_bootstrap_rejections_on_null=null["member"], power=alt["cluster"])


# ------------------------------------------------------------------------------------------------------ the check


def check_sweep(folder: str | pathlib.Path, *, sign: int = 1, seed: int = 0, boots: int = BOOTS) -> Verdict:
  """The verdict from a finished, summarised sweep folder (``results.csv``, ``runs/<pack>/run.json``)."""
  folder = pathlib.Path(folder)
  rows, shapes, axes = read_sweep(folder)
  members, excl = member_table(rows, shapes, axes)
  configs = config_table(members, axes)
  status, facts = judge(configs, members=members, sign=sign, seed=seed, boots=boots)
  seeds = [c["seeds"] for c in configs]
  measured = dict(facts, members=len(members), seeds_per_configuration=[min(seeds, default=0), max(seeds, default=0)],
                  matrices_per_member=[min((m["matrices"] for m in members), default=0),
                                       max((m["matrices"] for m in members), default=0)],
                  excluded_small_matrices=excl["small_matrices"], excluded_short_tails=excl["short_tails"],
                  excluded_failed_fits=excl["failed_fits"], points_not_done=excl["points_not_done"],
                  min_tail=MIN_TAIL, min_m=MIN_M)
  word = "> 0" if sign == 1 else "< 0"
  return Verdict(
      check=NAME,
      prediction=(f"Spearman rho(layer-averaged alpha, held-out loss) {word} and rho(alpha-weighted alpha log10 "
                  f"lambda_max, held-out loss) {word} across configurations (learning rate x weight decay) of a "
                  "sweep" + ("" if sign == 1 else " (deliberately wrong direction)")),
      source="Martin, Peng & Mahoney 2021 (Nat. Commun. 12:4122, arXiv:2002.06716, Figs 2-4); Martin & Mahoney 2021 "
      "(JMLR 22(165), arXiv:1810.01075); cluster bootstrap: Field & Welsh 2007 (JRSS B 69:369); "
      "docs/THEORY.md#ht_generalisation",
      tolerance=f"Spearman rho of per-configuration means, percentile 95% interval from {boots} bootstrap resamples "
      f"of configurations (the cluster bootstrap): PASS if the intervals of alpha and alpha-weighted lie above 0, "
      f"FAIL if either lies below 0, INCONCLUSIVE if one contains 0 or fewer than {MIN_CONFIGS} configurations were "
      f"measured; alpha only from matrices with M >= {MIN_M} and tails of >= {MIN_TAIL} points",
      status=status, measured=measured, predicted={f"spearman_{k}": word for k in JUDGED},
      details=[dict(part="configuration", **c) for c in configs] + [dict(part="member", **m) for m in members],
      run=str(folder),
      series={k: [c[k] for c in configs]
              for k in (*[a for a in axes if a != "seed"], *METRICS, "test_loss", "n_tail", "seeds")})


def sweep_folder(runs_dir: str | pathlib.Path, quick: bool) -> pathlib.Path:
  return pathlib.Path(runs_dir) / "sweeps" / sweep_dict(QUICK if quick else FULL, "quick" if quick else "full")[
      "sweep"]["name"]


def run_lab_sweep(raw: dict, runs_dir: str | pathlib.Path) -> pathlib.Path:
  """Write the sweep file ``raw`` beside its folder and run it with ``python -m lab sweep run`` (which trains the
  missing points, resumes unfinished packs and writes results.csv), in a subprocess: theory_checks never imports
  lab. A sweep folder whose points are all done and whose results.csv is newer than its manifest is reused."""
  import subprocess
  import sys
  parent = pathlib.Path(runs_dir) / "sweeps"
  folder = parent / raw["sweep"]["name"]
  manifest, results = folder / "manifest.json", folder / "results.csv"
  if manifest.exists() and results.exists() and results.stat().st_mtime >= manifest.stat().st_mtime:
    points = json.loads(manifest.read_text())["points"].values()
    if all(p["state"] == "done" for p in points):
      return folder
  parent.mkdir(parents=True, exist_ok=True)
  path = parent / f"{raw['sweep']['name']}.json"
  path.write_text(json.dumps(raw, indent=2) + "\n")
  proc = subprocess.run([sys.executable, "-m", "lab", "sweep", "run", str(path), "--runs", str(runs_dir),
                         "--no-progress"], capture_output=True, text=True)
  if proc.returncode != 0:
    raise RuntimeError(f"python -m lab sweep run {path} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
  return folder


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0) -> Verdict:
  design, tag = (QUICK, "quick") if quick else (FULL, "full")
  return check_sweep(run_lab_sweep(sweep_dict(design, tag), runs_dir), seed=seed)
