"""Check 13: do spectral signals warn, before held-out accuracy jumps, that a network is about to grok?

Claims tested (each from single runs or a few seeds, none at a fixed false-positive rate): a gap in the spectrum of
recent parameter updates appears 600-1,700 steps before grokking, in 24/24 runs with weight decay and 0-1/24 without
(Xu 2026, arXiv:2603.15678, arXiv:2603.28964); HT-SR ``alpha < 2`` with correlation traps heralds anti-grokking
(Prakash & Martin 2025, arXiv:2506.04434); distributional spectral diagnostics reach AUROC ~0.93 (arXiv:2605.08237);
the non-spectral inter/intra-class distance ratio leads by 950 +- 250 steps over 8 seeds (arXiv:2604.20923).

Benchmark (one compiled ensemble program per run family; seeds split into calibration and evaluation sets BEFORE
anything trains: ``Design.calibration_seeds`` and the evaluation seeds, disjoint, fixed by the design or by
``--seeds``). Modular addition ``a + b mod P`` (``data.kind = modular``), a one-layer transformer, AdamW:

- ``grok``: weight decay ``WD`` at the train fraction ``f`` (the positives: members whose test accuracy reaches 90%);
- ``no_wd``: the same members, same seeds, weight decay 0 (in the same compiled program);
- ``random_labels``: the same pairs with shuffled answers, weight decay ``WD`` (memorisable, never generalisable);
- ``small_fraction``: train fraction ``f_small`` below the critical one, weight decay ``WD``.
Controls that reach 50% test accuracy anyway and ``grok`` members that never reach 90% are reported and left out.

A second task (``GROUP_QUICK``/``GROUP_FULL``): composition in the symmetric group ``S_4`` (24 elements, non-abelian;
``data.kind = group``, ``[a, OP, b, =, a b]`` with ``(a b)(x) = a(b(x))``; Power et al. 2022, arXiv:2201.02177, grok
``S_5``; Chughtai et al. 2023, arXiv:2302.03025), the same model, as the families ``grok_group`` (with its ``no_wd``
twins) and ``small_fraction_group``, at the full size (``--quick`` is the modular task alone; ``run(...,
second_task=True)`` adds S4's quick smoke test). Each task is evaluated on its own: thresholds and orientations from its own
calibration controls, its own table. ``fourier_top3`` is not measured on it (Fourier modes over residues do not apply).

Signals (``models.signals`` writes the dense summaries during training, every ``snapshot_every`` steps; this module
only reads run folders): ``update_gap`` (``sigma_1 / sigma_2`` of the last ``update_window`` snapshot-to-snapshot
parameter updates, from their sketches), ``fourier_top3`` (fraction of ``||dW||^2`` of the token embedding in its
three strongest non-constant Fourier modes), ``structure_rank`` of ``dW`` of the embedding (sign-flip null at level
1%, ``spectral.structure``; sparse cadence, every ``weights_every`` snapshots, because it costs ~1 s per batch),
``stable_rank`` of the embedding and ``alpha`` (mean HT-SR power-law exponent of the matrices with ``M >= 64``) from
the stored ESDs, ``trap_max`` (the largest shuffled-ESD eigenvalue over its MP edge, over matrices), ``hessian_top``
(top Hessian eigenvalue, ``models.tracking``, full design only), and the non-spectral baselines ``class_ratio``
(inter/intra-class scatter of the last hidden layer) and ``loss_gap`` (test minus train loss).

Protocol (``theory_checks.alarms``): per signal, a trailing mean of ``smooth`` snapshots, a direction learned on the
calibration runs, a threshold set on the calibration controls by split conformal calibration at false-positive
rate ``FPR``, no alarm before step ``start`` (the memorisation phase). On the evaluation seeds: detection rate
(alarm strictly before test accuracy first reaches 50%), lead times to 50% and 90%, false-positive rate on held-out
controls, run-level AUROC at fixed horizons (grokking runs not yet at 50% against all controls).

Verdict (rule fixed before running): the claim under test is Xu's, the strongest one: with weight decay the update
gap warns before the jump in every run, 600-1,700 steps ahead. PASS when ``update_gap`` detects at least 90% of the
held-out grokking runs at the nominal FPR with median lead to 50% accuracy of at least 600 steps; FAIL when the
Wilson 95% upper bound of its detection rate is below 90%, or at least 10 runs are detected and their median lead is
below 600 steps; INCONCLUSIVE otherwise, and at any design FPR above 5% (the quick size, whose two calibration seeds
certify only 20%).
Each task is judged by this rule on its own; the check FAILs if either task fails, PASSes if both pass, and is
INCONCLUSIVE otherwise. Whether any spectral signal beats the non-spectral baseline is reported, not judged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import pathlib
import warnings

import numpy as np

from theory_checks import alarms, common
from theory_checks.verdict import FAIL, INCONCLUSIVE, PASS, Verdict

NAME = "early_warning"
STRUCTURE_LEVEL = 0.01
CLAIM_DETECTION = 0.9
CLAIM_LEAD = 600.0
CLAIM_FPR = 0.05  # the claim is judged at this false-positive rate or below (the quick size cannot certify it)
SPECTRAL = ("update_gap", "fourier_top3", "structure_rank", "stable_rank", "alpha", "trap_max", "hessian_top")
BASELINES = ("class_ratio", "loss_gap")
FAMILIES = ("grok", "random_labels", "small_fraction")  # run families; grok holds the no_wd controls too
GROUP_FAMILIES = ("grok_group", "small_fraction_group")  # the second task's families; grok_group holds its no_wd


@dataclasses.dataclass(frozen=True)
class Design:
  """Sizes of one task of one version of the check (``QUICK``/``FULL``: modular addition; ``GROUP_QUICK``/
  ``GROUP_FULL``: composition in the group ``group``, whose order is ``modulus``)."""

  modulus: int
  train_fraction: float
  small_fraction: float
  weight_decay: float
  learning_rate: float
  d_model: int
  steps: int
  snapshot_every: int
  calibration_seeds: tuple[int, ...]
  evaluation_seeds: tuple[int, ...]
  control_seeds: int  # random_labels / small_fraction: the first so many seeds of each split
  fpr: float
  start: int
  smooth: int
  update_window: int
  weights_every: int
  horizons: tuple[int, ...]
  hessian: bool
  sketch_dim: int = 128
  group: str = ""  # "" = modular addition mod ``modulus``; else composition in this group (models.data, kind group)

  def __post_init__(self):
    if self.group:
      from models.config import group_order
      if group_order(self.group) != self.modulus:
        raise ValueError(f"modulus: expected the order of {self.group}, {group_order(self.group)}, got {self.modulus}")

  @property
  def task(self) -> str:
    """The task's name in tables and measured keys: ``modular`` or the group's name (``S4``)."""
    return self.group or "modular"

  @property
  def families(self) -> tuple[str, ...]:
    return GROUP_FAMILIES if self.group else FAMILIES


QUICK = Design(modulus=23, train_fraction=0.5, small_fraction=0.2, weight_decay=1.0, learning_rate=3e-3, d_model=64,
               steps=1500, snapshot_every=50, calibration_seeds=(0, 1), evaluation_seeds=(100, 101),
               control_seeds=2, fpr=0.2, start=200, smooth=2, update_window=6, weights_every=4, horizons=(400, 600),
               hessian=False)
FULL = Design(modulus=23, train_fraction=0.5, small_fraction=0.2, weight_decay=1.0, learning_rate=3e-3, d_model=64,
              steps=1600, snapshot_every=50, calibration_seeds=tuple(range(10)), evaluation_seeds=tuple(range(100, 140)),
              control_seeds=8, fpr=0.05, start=200, smooth=2, update_window=6, weights_every=4, horizons=(400, 600),
              hessian=True)

# The second task (composition in S_4, models.data kind "group"), sized by measured runs (docs/THEORY.md#early_warning):
# at train fraction 0.7 (lr 3e-3, weight decay 1) members memorise by step ~400 and reach 50% held-out accuracy at
# steps 500-1,100; at 0.4, 8 of 8 members stay below 7% for 1,500 steps (at 0.5 one reached 48%: too close to the
# critical fraction); without weight decay they stay at chance. QUICK is tiny (one calibration and one evaluation seed,
# 6 members; its 2 calibration controls certify only FPR 1/3); FULL is 50 members x 2,000 steps (about 25-28
# CPU-minutes at the measured 15-17 ms per member-step), so its 9 calibration controls certify FPR 0.1, not 0.05.
GROUP_QUICK = Design(modulus=24, group="S4", train_fraction=0.7, small_fraction=0.4, weight_decay=1.0,
                     learning_rate=3e-3, d_model=64, steps=1500, snapshot_every=50, calibration_seeds=(0,),
                     evaluation_seeds=(100,), control_seeds=1, fpr=0.34, start=200, smooth=2, update_window=6,
                     weights_every=4, horizons=(600, 800), hessian=False)
GROUP_FULL = dataclasses.replace(GROUP_QUICK, steps=2000, calibration_seeds=tuple(range(6)),
                                 evaluation_seeds=tuple(range(100, 116)), control_seeds=3, fpr=0.1)


def parse_seeds(items) -> tuple[int, ...]:
  """Seeds from ``["100-131", "7", ...]`` (inclusive ranges or integers), sorted and unique."""
  out = set()
  for item in items:
    for part in str(item).split(","):
      part = part.strip()
      if not part:
        continue
      try:
        if "-" in part[1:]:
          lo, hi = part.split("-", 1) if not part.startswith("-") else (part, part)
          lo, hi = int(lo), int(hi)
          if hi < lo:
            raise ValueError
          out.update(range(lo, hi + 1))
        else:
          out.add(int(part))
      except ValueError:
        raise ValueError(f"--seeds: expected integers or ranges like 100-131, got {part!r}") from None
  if not out or min(out) < 0:
    raise ValueError(f"--seeds: expected non-negative seeds, got {sorted(out)}")
  return tuple(sorted(out))


def with_evaluation_seeds(design: Design, seeds) -> Design:
  """The design with other evaluation seeds (disjoint from its calibration seeds)."""
  seeds = tuple(sorted(set(int(s) for s in seeds)))
  clash = sorted(set(seeds) & set(design.calibration_seeds))
  if clash:
    raise ValueError(f"--seeds: expected evaluation seeds disjoint from the calibration seeds "
                     f"{list(design.calibration_seeds)}, got {clash} in both")
  return dataclasses.replace(design, evaluation_seeds=seeds)


def _seed_tag(seeds) -> str:
  return hashlib.sha1(",".join(map(str, seeds)).encode()).hexdigest()[:8]


def family_seeds(design: Design, family: str) -> tuple[int, ...]:
  """Seeds trained in a family: every seed for ``grok`` / ``grok_group`` (and its ``no_wd`` twin), the first
  ``control_seeds`` of each split for the other controls."""
  if family in ("grok", "grok_group"):
    return tuple(design.calibration_seeds) + tuple(design.evaluation_seeds)
  c = design.control_seeds
  return tuple(design.calibration_seeds[:c]) + tuple(design.evaluation_seeds[:c])


def family_config(design: Design, family: str, tag: str):
  """The run config of one family of ``design``'s task: one compiled ensemble over its seeds (and weight decays for
  ``grok`` / ``grok_group``). Members' regimes: ``grok``, ``no_wd``, ``random_labels``, ``small_fraction``."""
  from models.config import MemberSpec, RunConfig, with_overrides
  if family not in design.families:
    raise ValueError(f"family: expected one of {design.families} for task {design.task}, got {family!r}")
  base = family.removesuffix("_group")
  seeds = family_seeds(design, family)
  snaps = list(range(0, design.steps + 1, design.snapshot_every))
  if snaps[-1] != design.steps:
    snaps.append(design.steps)
  over = {"data.kind": "random_labels" if base == "random_labels" else "modular", "data.modulus": design.modulus,
          "data.vocab_size": design.modulus + 2, "data.seq_len": 4, "data.batch_size": 128,
          "data.train_fraction": design.small_fraction if base == "small_fraction" else design.train_fraction,
          "model.num_layers": 1, "model.d_model": design.d_model, "model.num_heads": 2,
          "train.learning_rate": design.learning_rate, "train.weight_decay": design.weight_decay,
          "train.steps": design.steps, "train.snapshot_steps": snaps, "train.checkpoint_every": 500,
          "train.log_every": design.snapshot_every, "train.eval_batches": 4,
          "tracking.track_signals": True, "tracking.signals_sketch_dim": design.sketch_dim,
          "tracking.signals_weights_every": design.weights_every}
  if design.group:  # vocabulary: the |G| = modulus elements, OP and =
    del over["data.modulus"]
    over |= {"data.kind": "group", "data.group": design.group}
  if design.hessian:
    over |= {"tracking.track_hessian": True, "tracking.hessian_top_k": 1, "tracking.hessian_lanczos_steps": 8,
             "tracking.hessian_trace_matvecs": 6}
  cfg = with_overrides(RunConfig(name=f"checks_early_warning_{tag}_{family}_{_seed_tag(seeds)}"), over)
  wds = (design.weight_decay, 0.0) if base == "grok" else (design.weight_decay,)
  members = tuple(MemberSpec(seed_index=s, noise_p=0.0, weight_decay=wd,
                             regime=base if wd > 0 else "no_wd") for s in seeds for wd in wds)
  return dataclasses.replace(cfg, ensemble=dataclasses.replace(cfg.ensemble, members=members))


# --- signals from a run folder ----------------------------------------------------------------------------------------


def update_gaps(sketches_TxK: np.ndarray, window: int) -> np.ndarray:
  """``sigma_1 / sigma_2`` of the last ``window`` updates ``d_k = s_k - s_{k-1}`` (sketched), per snapshot ``(T,)``;
  NaN until ``window`` updates exist. Causal: entry ``k`` uses snapshots ``<= k``."""
  s = np.asarray(sketches_TxK, np.float64)
  d = np.diff(s, axis=0)
  out = np.full(s.shape[0], np.nan)
  for k in range(window, s.shape[0]):
    ev = np.linalg.eigvalsh(d[k - window:k] @ d[k - window:k].T)[::-1]
    out[k] = math.sqrt(max(ev[0], 0.0) / max(ev[1], 1e-300))
  return out


def _stack(run, name: str, steps) -> np.ndarray:
  return np.stack([run.signals[s][name] for s in steps])  # (T, members, ...)


def member_signals(run, window: int, seed: int = 0) -> dict:
  """Per member of a finished run: ``steps``, ``test_accuracy`` and every signal of the module docstring, each
  ``(members, T)`` on the snapshot steps (NaN where a signal is not measured at that step)."""
  from spectral.metrics import batch_metrics
  from spectral.structure import structure_rank_batch
  cfg, members = run.config, run.members
  steps = sorted(run.signals)
  n, t_n = len(members), len(steps)
  out = dict(steps=np.asarray(steps, np.float64))
  metric = lambda name: np.stack([run.metric(name, i)[1] for i in range(n)])
  test_steps = run.metric("test_accuracy", 0)[0]
  if list(test_steps) != steps:
    raise ValueError(f"{run.path}: expected test accuracy at every signal snapshot")
  out["test_accuracy"] = metric("test_accuracy")
  train_loss = {}
  for i in range(n):
    s, v = run.metric("train_loss", i)
    train_loss[i] = dict(zip(s.tolist(), v.tolist()))
  out["loss_gap"] = metric("test_loss") - np.asarray([[train_loss[i].get(s, np.nan) for s in steps]
                                                      for i in range(n)])
  sk = _stack(run, "sketch", steps)  # (T, n, K)
  out["update_gap"] = np.stack([update_gaps(sk[:, i], window) for i in range(n)])
  out["fourier_top3"] = np.full((n, t_n), np.nan)  # modular tasks only (Fourier modes over the residues)
  if "fourier_embed" in run.signals[steps[0]]:
    fe = _stack(run, "fourier_embed", steps)[:, :, 1:]  # non-constant modes
    out["fourier_top3"] = np.sort(fe, axis=-1)[:, :, -3:].sum(-1).T
  out["class_ratio"] = _stack(run, "class_ratio", steps).T
  traps = [k for k in run.signals[steps[0]] if k.startswith("trap_")]
  out["trap_max"] = np.max(np.stack([_stack(run, k, steps)[:, :, 0] for k in traps]), axis=0).T
  # ESD-based: stable rank of the embedding, mean alpha of the matrices with M >= 64 (one batched fit per shape)
  emb = np.stack([run.spectra[s]["embed.embedding"] for s in steps])  # (T, n, M)
  out["stable_rank"] = (emb.sum(-1) / emb.max(-1)).T
  shapes = {k: tuple(v["shape"]) for k, v in run.info["matrices"].items()}
  alphas = []
  for name, shape in shapes.items():
    if min(shape) < 64:
      continue
    ev = np.stack([run.spectra[s][name] for s in steps]).reshape(t_n * n, -1)
    rows = batch_metrics(ev, shape)
    alphas.append(np.asarray([r["alpha"] for r in rows], np.float64).reshape(t_n, n))
  with warnings.catch_warnings():  # steps where no fit succeeded are NaN
    warnings.simplefilter("ignore", RuntimeWarning)
    out["alpha"] = np.nanmean(np.stack(alphas), axis=0).T if alphas else np.full((n, t_n), np.nan)
  # structure rank of dW of the embedding at the sparse steps where it was kept
  sparse = [s for s in steps if "dw_embed" in run.signals[s]]
  out["structure_rank"] = np.full((n, t_n), np.nan)
  if sparse:
    dws = np.stack([run.signals[s]["dw_embed"] for s in sparse])  # (S, n, V, d)
    flat = dws.reshape(-1, *dws.shape[2:])
    nonzero = np.any(flat != 0, axis=(1, 2))
    ranks = np.zeros(flat.shape[0])
    res = structure_rank_batch(flat[nonzero], level=STRUCTURE_LEVEL, seed=seed)
    ranks[nonzero] = [r.rank for r in res]
    idx = [steps.index(s) for s in sparse]
    out["structure_rank"][:, idx] = ranks.reshape(len(sparse), n).T
  out["hessian_top"] = np.full((n, t_n), np.nan)
  if cfg["tracking"]["track_hessian"]:
    out["hessian_top"] = metric("hessian_top_1")
  return out


# --- the protocol -----------------------------------------------------------------------------------------------------


def trajectories(runs: dict, design: Design, seed: int = 0) -> tuple[dict, dict, list[dict]]:
  """``(calibration, evaluation, excluded)``: per signal the lists of ``alarms.Trajectory`` of each split."""
  cal, ev, excluded = {}, {}, []
  cal_seeds = set(design.calibration_seeds)
  for family, run in runs.items():
    sig = member_signals(run, design.update_window, seed)
    steps = sig["steps"]
    for i, m in enumerate(run.members):
      kind = m["regime"]
      acc = sig["test_accuracy"][i]
      t50, t90 = alarms.crossing_step(steps, acc, 0.5), alarms.crossing_step(steps, acc, 0.9)
      positive = kind == "grok"
      if positive and not np.isfinite(t90):
        excluded.append(dict(seed=m["seed_index"], kind=kind, reason="never reached 90% test accuracy"))
        continue
      if not positive and np.isfinite(t50):
        excluded.append(dict(seed=m["seed_index"], kind=kind, reason=f"control reached 50% test accuracy at {t50:g}"))
        continue
      split = cal if m["seed_index"] in cal_seeds else ev
      for name in SPECTRAL + BASELINES:
        split.setdefault(name, []).append(alarms.Trajectory(steps, sig[name][i], positive, kind,
                                                            t50 if positive else math.nan,
                                                            t90 if positive else math.nan, m["seed_index"]))
  return cal, ev, excluded


def wilson_upper(k: int, n: int, z: float = 1.96) -> float:
  if n == 0:
    return math.nan
  p = k / n
  return float((p + z * z / (2 * n) + z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n))


def evaluate(cal: dict, ev: dict, design: Design) -> dict:
  """Per signal: ``alarms.evaluate_signal`` on the split trajectories (signals never measured are skipped)."""
  out = {}
  for name in SPECTRAL + BASELINES:
    if name not in cal or all(not np.isfinite(t.values).any() for t in cal[name]):
      continue
    out[name] = alarms.evaluate_signal(cal[name], ev.get(name, []), fpr=design.fpr, start=design.start,
                                       smooth=design.smooth, horizons=design.horizons)
  return out


def table(results: dict, horizon: float) -> str:
  """The printed table: one row per signal."""
  head = (f"{'signal':16s} {'kind':12s} {'detected':>9s} {'lead to 50% [IQR]':>22s} {'lead to 90%':>12s} "
          f"{'FPR held-out':>12s} {'AUROC@' + format(horizon, 'g'):>10s}")
  lines = [head, "-" * len(head)]
  for name, r in results.items():
    det = f"{round(r['detection_rate'] * r['n_positives'])}/{r['n_positives']}" if r["n_positives"] else "0/0"
    lead = (f"{r['lead50_median']:.0f} [{r['lead50_q25']:.0f}, {r['lead50_q75']:.0f}]"
            if np.isfinite(r["lead50_median"]) else "-")
    lead90 = f"{r['lead90_median']:.0f}" if np.isfinite(r["lead90_median"]) else "-"
    a = r["auroc"].get(float(horizon), {})
    fp = f"{round(r['fpr'] * r['n_controls'])}/{r['n_controls']}" if r["n_controls"] else "0/0"
    lines.append(f"{name:16s} {'spectral' if name in SPECTRAL else 'baseline':12s} {det:>9s} {lead:>22s} "
                 f"{lead90:>12s} {fp:>12s} {a.get('auroc', math.nan):>10.2f}")
  return "\n".join(lines)


def judge(results: dict, design: Design) -> tuple[str, str]:
  r = results.get("update_gap")
  if r is None or r["n_positives"] == 0:
    return INCONCLUSIVE, "no grokking runs with an update-gap trajectory"
  k, n = round(r["detection_rate"] * r["n_positives"]), r["n_positives"]
  lead = r["lead50_median"]
  if math.isinf(r["threshold"]):
    return INCONCLUSIVE, (f"{r['n_calibration_controls']} calibration controls cannot certify FPR {design.fpr} "
                          "(threshold +inf)")
  if design.fpr > CLAIM_FPR:
    return INCONCLUSIVE, (f"update gap detects {k}/{n} (median lead {lead:g}) at FPR {design.fpr:g}; the claim is "
                          f"judged at FPR <= {CLAIM_FPR:g} only (the full size)")
  if r["detection_rate"] >= CLAIM_DETECTION and np.isfinite(lead) and lead >= CLAIM_LEAD:
    return PASS, f"update gap detects {k}/{n} with median lead {lead:.0f} steps"
  if wilson_upper(k, n) < CLAIM_DETECTION:
    return FAIL, f"update gap detects {k}/{n} (Wilson 95% upper bound {wilson_upper(k, n):.2f} < {CLAIM_DETECTION})"
  if k >= 10 and np.isfinite(lead) and lead < CLAIM_LEAD:
    return FAIL, f"update gap's median lead {lead:.0f} < {CLAIM_LEAD:.0f} steps over {k} detected runs"
  return INCONCLUSIVE, f"update gap detects {k}/{n}, median lead {lead}: too few runs to decide"


def _aligned_series(cal: dict, ev: dict, results: dict, design: Design) -> dict:
  """Per signal, for the figure: evaluation positives' trajectories aligned at their t50 (median and quartiles on a
  grid of offsets), controls' median and quartiles over steps, the raw threshold, and alarm offsets."""
  series = {}
  step = float(design.snapshot_every)
  grid = np.arange(-1200.0, 600.0 + step, step)
  for name, r in results.items():
    pos = [t for t in ev[name] if t.positive]
    neg = [t for t in ev[name] if not t.positive]
    aligned = np.full((len(pos), grid.size), np.nan)
    for j, t in enumerate(pos):
      y = alarms.trailing_mean(t.values, design.smooth)
      off = np.asarray(t.steps) - t.t50
      for g, o in enumerate(grid):
        hit = np.flatnonzero(np.isclose(off, o))
        if hit.size:
          aligned[j, g] = y[hit[0]]
    ctrl = np.asarray([alarms.trailing_mean(t.values, design.smooth) for t in neg]) if neg else np.zeros((0, 0))
    def q(a, p):
      if not (a.size and np.isfinite(a).any()):
        return []
      with warnings.catch_warnings():  # offsets no run reaches are NaN columns
        warnings.simplefilter("ignore", RuntimeWarning)
        return [None if not np.isfinite(v) else float(v) for v in np.nanpercentile(a, p, axis=0)]
    series[name] = dict(offset=grid.tolist(), pos_median=q(aligned, 50), pos_q25=q(aligned, 25),
                        pos_q75=q(aligned, 75), ctrl_steps=np.asarray(neg[0].steps).tolist() if neg else [],
                        ctrl_median=q(ctrl, 50), ctrl_q25=q(ctrl, 25), ctrl_q75=q(ctrl, 75),
                        threshold=(r["sign"] * r["threshold"]) if np.isfinite(r["threshold"]) else None,
                        alarm_offsets=[a["alarm"] - a["t50"] for a in r["alarms"]
                                       if a["positive"] and np.isfinite(a["alarm"])],
                        t50_median=float(np.median([t.t50 for t in pos])) if pos else None)
  return series


def _task_summary(runs: dict, design: Design, seed: int) -> dict:
  """One task's evaluation: its own calibration controls set its thresholds (``trajectories``, ``evaluate``), its
  verdict by ``judge``, its table and its measured numbers."""
  cal, ev, excluded = trajectories(runs, design, seed)
  results = evaluate(cal, ev, design)
  status, reason = judge(results, design)
  base = max((results[b]["detection_rate"] for b in BASELINES if b in results), default=math.nan)
  base_lead = max((results[b]["lead50_median"] for b in BASELINES if b in results
                   and np.isfinite(results[b]["lead50_median"])), default=math.nan)
  better = [s for s in SPECTRAL if s in results and results[s]["detection_rate"] > base]
  measured = dict(reason=reason, spectral_beating_baseline_detection=better,
                  baseline_best_detection=base, baseline_best_lead50=base_lead, excluded=len(excluded),
                  positives_evaluated=results[next(iter(results))]["n_positives"] if results else 0,
                  controls_evaluated=results[next(iter(results))]["n_controls"] if results else 0,
                  update_gap_detection=results.get("update_gap", {}).get("detection_rate", math.nan),
                  update_gap_lead50=results.get("update_gap", {}).get("lead50_median", math.nan))
  return dict(status=status, measured=measured, results=results, excluded=excluded,
              table=table(results, float(design.horizons[0])),
              aligned=_aligned_series(cal, ev, results, design))


def combined_status(statuses) -> str:
  """The check's verdict over tasks, each judged by the same rule: FAIL if any task fails, PASS if every task
  passes, INCONCLUSIVE otherwise."""
  statuses = list(statuses)
  if FAIL in statuses:
    return FAIL
  return PASS if statuses and all(st == PASS for st in statuses) else INCONCLUSIVE


def task_title(design: Design) -> str:
  return (f"composition in the group {design.group} (order {design.modulus})" if design.group
          else f"modular addition mod {design.modulus}")


def check_runs(runs: dict, design: Design, *, seed: int = 0, second: tuple[dict, Design] | None = None) -> Verdict:
  """The verdict on the modular task's ``runs`` (family -> loaded run) and, with ``second = (runs, design)``, a
  second task's, calibrated and tabled separately; the modular task's measured numbers, series and table keep their
  keys, the second task's are prefixed by its name (``S4_update_gap_detection``) and its series sit under
  ``tasks``."""
  main = _task_summary(runs, design, seed)
  status, measured, text = main["status"], dict(main["measured"]), main["table"]
  details = [dict(part="design", **dataclasses.asdict(design)),
             *[dict(part="excluded", **e) for e in main["excluded"]],
             *[dict(part="signal", signal=k, **{kk: vv for kk, vv in v.items()}) for k, v in main["results"].items()]]
  tasks, run_paths = {}, [str(r.path) for r in runs.values()]
  if second is not None:
    g_runs, g_design = second
    if not g_design.group:
      raise ValueError("second: expected a group task's design (Design.group set)")
    g = _task_summary(g_runs, g_design, seed)
    name = g_design.task
    status = combined_status([main["status"], g["status"]])
    measured["reason"] = f"{design.task}: {main['measured']['reason']}; {name}: {g['measured']['reason']}"
    measured[f"{design.task}_status"], measured[f"{name}_status"] = main["status"], g["status"]
    measured |= {f"{name}_{k}": v for k, v in g["measured"].items()}
    text = f"task {design.task}: {task_title(design)}\n{text}\n\ntask {name}: {task_title(g_design)}\n{g['table']}"
    details += [dict(part="design", task=name, **dataclasses.asdict(g_design)),
                *[dict(part="excluded", task=name, **e) for e in g["excluded"]],
                *[dict(part="signal", task=name, signal=k, **v) for k, v in g["results"].items()]]
    tasks[name] = dict(title=task_title(g_design), signals=list(g["results"]), aligned=g["aligned"],
                       fpr=g_design.fpr, table=g["table"])
    run_paths += [str(r.path) for r in g_runs.values()]
  predicted = dict(update_gap_detection=f">= {CLAIM_DETECTION} (Xu 2026: 24/24)",
                   update_gap_lead50=f">= {CLAIM_LEAD:.0f} steps (Xu 2026: 600-1,700)",
                   baseline_best_lead50="950 +- 250 steps (class ratio, arXiv:2604.20923)")
  series = dict(signals=list(main["results"]), aligned=main["aligned"], fpr=design.fpr, table=text)
  if tasks:
    series["tasks"] = tasks
  return Verdict(
      check=NAME,
      prediction="with weight decay, the gap in the spectrum of recent parameter updates warns before test accuracy "
      f"jumps in >= {CLAIM_DETECTION:.0%} of grokking runs, >= {CLAIM_LEAD:.0f} steps ahead, at a false-positive "
      f"rate of {design.fpr:g} on controls that do not grok (no weight decay, random labels, small train fraction)"
      + (f", on each task ({design.task}, {', '.join(tasks)})" if tasks else ""),
      source="Xu 2026 (arXiv:2603.15678, arXiv:2603.28964); Prakash & Martin 2025 (arXiv:2506.04434); "
      "arXiv:2605.08237; arXiv:2604.20923 (baseline); docs/THEORY.md#early_warning",
      tolerance=f"PASS: update_gap detection >= {CLAIM_DETECTION} and median lead >= {CLAIM_LEAD:.0f}; FAIL: Wilson "
      f"95% upper bound of its detection < {CLAIM_DETECTION}, or >= 10 detected with median lead < {CLAIM_LEAD:.0f}; "
      f"thresholds by split conformal calibration on {len(design.calibration_seeds)} calibration seeds' controls"
      + ("; per task, each on its own calibration controls; FAIL if any task fails, PASS if all pass" if tasks else ""),
      status=status, measured=measured, predicted=predicted, details=details,
      run=",".join(run_paths), series=series)


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0,
        seeds=None, second_task: bool | None = None) -> Verdict:
  """Train (or reuse) the run families and judge; ``seeds``: evaluation seeds replacing the designs' (the same seeds
  for both tasks). ``second_task`` (default: the full size only) adds the S4 task: at the quick size it certifies
  nothing (FPR 1/3) and took about 2 of the 7 minutes of the quick check on an idle 2-core VM, so ``--quick`` is the
  modular task alone (208 s wall, 335 CPU-s on that VM); ``second_task=True`` runs its quick smoke test too."""
  from models.run_folder import load_run
  from models.train import train_run
  design, g_design, tag = (QUICK, GROUP_QUICK, "quick") if quick else (FULL, GROUP_FULL, "full")
  if second_task is None:
    second_task = not quick
  if seeds is not None:
    design = with_evaluation_seeds(design, parse_seeds(seeds))
    g_design = with_evaluation_seeds(g_design, parse_seeds(seeds))
  load = lambda d: {f: load_run(train_run(family_config(d, f, tag), runs_dir, progress=False)) for f in d.families}
  runs = load(design)
  return check_runs(runs, design, seed=seed, second=(load(g_design), g_design) if second_task else None)
