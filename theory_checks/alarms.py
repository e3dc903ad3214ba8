"""Alarm rules for early-warning signals: thresholds calibrated on control runs, lead times, run-level AUROC.

A run ``r`` gives a signal trajectory ``x_r(t)`` at snapshot steps ``t_1 < t_2 < ...`` (numpy, float64). The alarm
rule is online (causal): the signal is smoothed by a trailing mean over the last ``smooth`` snapshots,
``y_r(t_k) = mean(x_r(t_{k-smooth+1}), ..., x_r(t_k))`` (finite values only), oriented by a sign ``s`` fixed on the
calibration runs, and the alarm rings at the first step ``t >= start`` with ``s y_r(t) > h``. Before ``start`` (a
burn-in: every run, grokking or not, first memorises its training set, and every signal moves then) no alarm rings.

Calibration (split conformal, Vovk, Gammerman & Shafer 2005; Lei et al. 2018, arXiv:1604.04173). With ``n``
calibration controls and their run statistics ``m_c = max_{start <= t <= end} s y_c(t)`` (an alarm ever rings on
control ``c`` iff ``m_c > h``), the threshold is the ``ceil((n + 1)(1 - a))``-th smallest ``m_c``: for a held-out
control exchangeable with the calibration controls, ``P(alarm) <= a`` (and ``>= a - 1 / (n + 1)`` without ties).
When ``ceil((n + 1)(1 - a)) > n`` no finite threshold certifies ``a`` and the threshold is ``+inf`` (never alarm):
a level ``a`` needs ``n >= 1 / a - 1`` controls.

Orientation. ``s`` is the sign for which the run statistic separates the calibration grokking runs (before their
jump, ``t < t_50``) from the calibration controls better (``orientation``): which way a signal moves is learned on
calibration seeds only, never on the evaluation seeds.

Reported per signal on held-out runs (``evaluate_signal``): the detection rate (grokking runs whose alarm rings
strictly before test accuracy first reaches 50%, ``t_50``), the lead times ``t_50 - t_alarm`` and ``t_90 -
t_alarm`` of those runs, the false-positive rate (held-out controls with an alarm anywhere after the burn-in), and the
run-level AUROC at fixed horizons ``H``: the score ``max_{start <= t <= H} s y(t)`` of the grokking runs that have not
jumped yet (``t_50 > H``) against every control (Mann-Whitney, ties count 1/2; Hanley & McNeil 1982).

Everything here is pure numpy and takes plain arrays, so it is tested on synthetic trajectories with a known change
point (``tests/test_early_warning.py``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["Trajectory", "trailing_mean", "run_statistic", "conformal_threshold", "first_alarm", "auroc",
           "orientation", "crossing_step", "evaluate_signal"]


@dataclasses.dataclass(frozen=True)
class Trajectory:
  """One run's signal: ``steps (T,)`` ascending snapshot steps, ``values (T,)`` (NaN where undefined), whether it
  groks (``positive``), its control kind (``"grok"`` for positives) and its jump steps ``t50``, ``t90`` (NaN when
  never reached)."""

  steps: np.ndarray
  values: np.ndarray
  positive: bool
  kind: str = ""
  t50: float = math.nan
  t90: float = math.nan
  seed: int = -1

  def __post_init__(self):
    steps, values = np.asarray(self.steps), np.asarray(self.values)
    if steps.ndim != 1 or values.shape != steps.shape:
      raise ValueError(f"steps, values: expected two (T,) arrays of one length, got {steps.shape}, {values.shape}")
    if steps.size > 1 and np.any(np.diff(steps) <= 0):
      raise ValueError("steps: expected strictly ascending snapshot steps")


def trailing_mean(values, window: int) -> np.ndarray:
  """Causal smoothing: ``y[k]`` = mean of the finite values among ``values[k - window + 1 .. k]`` (NaN if none)."""
  if not isinstance(window, (int, np.integer)) or window < 1:
    raise ValueError(f"window: expected an integer >= 1, got {window!r}")
  x = np.asarray(values, np.float64)
  ok = np.isfinite(x)
  csum = np.concatenate([[0.0], np.cumsum(np.where(ok, x, 0.0))])
  ccount = np.concatenate([[0], np.cumsum(ok)])
  hi = np.arange(1, x.size + 1)
  lo = np.maximum(hi - window, 0)
  count = ccount[hi] - ccount[lo]
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), np.nan)


def _oriented(traj: Trajectory, sign: float, smooth: int) -> np.ndarray:
  return sign * trailing_mean(traj.values, smooth)


def run_statistic(traj: Trajectory, *, sign: float = 1.0, smooth: int = 1, start: float = 0.0,
                  horizon: float = math.inf) -> float:
  """``max_{start <= t <= horizon} s y(t)``; ``-inf`` when no finite value lies in the window."""
  y = _oriented(traj, sign, smooth)
  steps = np.asarray(traj.steps)
  sel = (steps >= start) & (steps <= horizon) & np.isfinite(y)
  return float(y[sel].max()) if sel.any() else -math.inf


def conformal_threshold(control_stats, fpr: float) -> float:
  """The ``ceil((n + 1)(1 - fpr))``-th smallest of ``n`` control run statistics (``+inf`` when that exceeds ``n``):
  a held-out exchangeable control alarms (statistic ``> h``) with probability at most ``fpr``."""
  if not 0.0 < fpr < 1.0:
    raise ValueError(f"fpr: expected a false-positive rate in (0, 1), got {fpr!r}")
  stats = np.sort(np.asarray(control_stats, np.float64))
  n = stats.size
  if n == 0:
    raise ValueError("control_stats: expected at least one calibration control")
  k = math.ceil((n + 1) * (1.0 - fpr))
  return float(stats[k - 1]) if k <= n else math.inf


def first_alarm(traj: Trajectory, threshold: float, *, sign: float = 1.0, smooth: int = 1,
                start: float = 0.0) -> float:
  """First snapshot step ``t >= start`` with ``s y(t) > threshold`` (NaN: never)."""
  y = _oriented(traj, sign, smooth)
  steps = np.asarray(traj.steps)
  hit = np.flatnonzero((steps >= start) & np.isfinite(y) & (y > threshold))
  return float(steps[hit[0]]) if hit.size else math.nan


def auroc(positive_scores, negative_scores) -> float:
  """``P(score_pos > score_neg) + P(tie) / 2`` over all pairs (the Mann-Whitney AUROC); NaN if a side is empty."""
  pos, neg = np.asarray(positive_scores, np.float64), np.asarray(negative_scores, np.float64)
  if pos.size == 0 or neg.size == 0:
    return math.nan
  greater = (pos[:, None] > neg[None, :]).mean()
  ties = (pos[:, None] == neg[None, :]).mean()
  return float(greater + 0.5 * ties)


def _before_jump(t: Trajectory) -> float:
  """The last step an alarm on ``t`` can still be early: just before ``t50`` (the whole run when it never jumps)."""
  return t.t50 - 1e-9 if np.isfinite(t.t50) else math.inf


def orientation(positives: list[Trajectory], controls: list[Trajectory], *, smooth: int, start: float) -> float:
  """+1 or -1: the sign whose run statistic has the larger AUROC of positives (before their jump, ``t < t50``)
  against controls (whole runs); +1 on a tie."""
  score = lambda s: auroc([run_statistic(t, sign=s, smooth=smooth, start=start, horizon=_before_jump(t))
                           for t in positives],
                          [run_statistic(t, sign=s, smooth=smooth, start=start) for t in controls])
  up, down = score(1.0), score(-1.0)
  return -1.0 if (np.isfinite(down) and (not np.isfinite(up) or down > up)) else 1.0


def crossing_step(steps, values, level: float) -> float:
  """First step at which ``values >= level`` (NaN: never)."""
  hit = np.flatnonzero(np.asarray(values, np.float64) >= level)
  return float(np.asarray(steps)[hit[0]]) if hit.size else math.nan


def _quartiles(x) -> tuple[float, float, float]:
  x = np.asarray(x, np.float64)
  if x.size == 0:
    return math.nan, math.nan, math.nan
  q = np.percentile(x, [25, 50, 75])
  return float(q[1]), float(q[0]), float(q[2])


def evaluate_signal(calibration: list[Trajectory], evaluation: list[Trajectory], *, fpr: float, start: float,
                    smooth: int = 1, horizons=(), sign: float | None = None) -> dict:
  """Calibrate the alarm on ``calibration`` (its controls set the threshold, positives and controls the sign) and
  measure it on ``evaluation`` (module docstring).

  Returns a dict: ``sign``, ``threshold``, ``n_calibration_controls``, ``detection_rate`` (alarmed strictly before
  ``t50``, over evaluation positives), ``lead50`` / ``lead90`` lists (``t - t_alarm`` of detected runs), their
  median and quartiles, ``fpr`` (evaluation controls ever alarmed after ``start``), ``fpr_by_kind``, ``auroc`` at
  each horizon (``{H: value}``, with the positive count), and per-run ``alarms``.
  """
  cal_pos = [t for t in calibration if t.positive]
  cal_neg = [t for t in calibration if not t.positive]
  if not cal_neg:
    raise ValueError("calibration: expected at least one control trajectory (positive=False)")
  if sign is None:
    sign = orientation(cal_pos, cal_neg, smooth=smooth, start=start) if cal_pos else 1.0
  stats = [run_statistic(t, sign=sign, smooth=smooth, start=start) for t in cal_neg]
  threshold = conformal_threshold(stats, fpr)
  alarms = [dict(seed=t.seed, kind=t.kind, positive=t.positive, t50=t.t50, t90=t.t90,
                 alarm=first_alarm(t, threshold, sign=sign, smooth=smooth, start=start)) for t in evaluation]
  pos = [a for a in alarms if a["positive"]]
  neg = [a for a in alarms if not a["positive"]]
  detected = [a for a in pos if np.isfinite(a["alarm"]) and np.isfinite(a["t50"]) and a["alarm"] < a["t50"]]
  lead50 = [a["t50"] - a["alarm"] for a in detected]
  lead90 = [a["t90"] - a["alarm"] for a in detected if np.isfinite(a["t90"])]
  fired = lambda a: bool(np.isfinite(a["alarm"]))
  kinds = sorted({a["kind"] for a in neg})
  out = dict(sign=float(sign), threshold=threshold, n_calibration_controls=len(cal_neg),
             n_positives=len(pos), n_controls=len(neg),
             detection_rate=len(detected) / len(pos) if pos else math.nan,
             lead50=lead50, lead90=lead90,
             fpr=float(np.mean([fired(a) for a in neg])) if neg else math.nan,
             fpr_by_kind={k: float(np.mean([fired(a) for a in neg if a["kind"] == k])) for k in kinds},
             alarms=alarms)
  out["lead50_median"], out["lead50_q25"], out["lead50_q75"] = _quartiles(lead50)
  out["lead90_median"], out["lead90_q25"], out["lead90_q75"] = _quartiles(lead90)
  out["auroc"] = {}
  for h in horizons:
    p_scores = [run_statistic(t, sign=sign, smooth=smooth, start=start, horizon=h) for t in evaluation
                if t.positive and not (t.t50 <= h)]
    n_scores = [run_statistic(t, sign=sign, smooth=smooth, start=start, horizon=h) for t in evaluation
                if not t.positive]
    out["auroc"][float(h)] = dict(auroc=auroc(p_scores, n_scores), positives=len(p_scores), controls=len(n_scores))
  return out
