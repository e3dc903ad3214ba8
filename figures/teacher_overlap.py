"""Figure: the learned map's overlap with a planted rank-k teacher against the effective signal-to-noise ratio.

Input: the stored result of the check ``learning_bbp`` (``python -m theory_checks learning_bbp --quick``). Model
(the check's docstring): the learned token-to-logit map is the teacher ``(1 - p) beta A`` plus the sampling noise of
``n`` transitions; each planted direction has BBP strength ``theta = (1 - p) beta sqrt(n / ((V - 1) k))``, threshold
``theta_c = 1`` (q = 1) and overlap ``1 - (theta_c / theta)^2`` above it (Benaych-Georges & Nadakuditi 2012).
Series read (``SERIES``):
- ``theta``, ``overlap_mean``, ``overlap_min``, ``overlap_max``, ``overlap_by_seed``: the network's mean overlap of
  its top-k subspaces with the teacher's (both sides averaged), the seed range as a band, each seed as a dot;
- ``theory_theta``, ``theory_overlap``, ``theta_c``: the predicted curve and threshold;
- ``theta_half_predicted``, ``theta_half_measured``, ``theta_half_se``: the half-plateau points;
- ``plugin_overlap_mean`` (optional): the plug-in estimator at the same size; ``chance_overlap`` (optional);
- ``map_learned_mean`` (optional): the mean structure rank (learned directions) of the map at each ``theta``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import inputs, style

NAME = "teacher_overlap"
INPUT = "check"
CHECK = "learning_bbp"
REQUIRED = ("theta", "overlap_mean", "overlap_min", "overlap_max", "overlap_by_seed", "theory_theta",
            "theory_overlap", "theta_c", "theta_half_predicted", "theta_half_measured", "theta_half_se")
OPTIONAL = ("plugin_overlap_mean", "chance_overlap", "map_learned_mean")
SERIES = REQUIRED + OPTIONAL
DESCRIPTION = "overlap of the learned map with a planted teacher vs effective SNR, BBP threshold (check learning_bbp)"


def plotted_numbers(verdict: inputs.Verdict) -> dict:
  get = lambda k, required=True: (inputs.series(verdict, k, figure=NAME) if required else verdict.series.get(k))
  out = {}
  for k in REQUIRED + OPTIONAL:
    x = get(k, k in REQUIRED)
    out[k] = None if x is None else inputs.as_float_array(x, k).tolist()
  if np.asarray(out["overlap_by_seed"]).shape[0] != len(out["theta"]):
    raise inputs.VerdictFormatError(f"{CHECK}: overlap_by_seed must have one row per theta")
  out.update(check=verdict.check, status=verdict.status,
             transition_status=verdict.measured.get("transition_status"))
  return out


def make_figure(verdict: inputs.Verdict, out_dir: str | pathlib.Path, *, columns: int = 2) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt

  d = plotted_numbers(verdict)
  th = np.asarray(d["theta"])
  blue, orange, grey = style.OKABE_ITO[5], style.OKABE_ITO[1], style.SECONDARY_COLOUR
  has_rank = d["map_learned_mean"] is not None
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(2 if has_rank else 1, columns, max_per_row=2 if columns == 2 else 1,
                                 panel_height=2.4 if columns == 2 else 1.9)
    ax = axes[0]
    ax.fill_between(th, d["overlap_min"], d["overlap_max"], color=blue, alpha=0.2, lw=0, label="network: seed range")
    by_seed = np.asarray(d["overlap_by_seed"])
    for j in range(by_seed.shape[1]):
      ax.plot(th, by_seed[:, j], ".", color=blue, ms=2.5, alpha=0.6)
    ax.plot(th, d["overlap_mean"], "-o", color=blue, ms=3, lw=1.0, label="network: mean over seeds")
    if d["plugin_overlap_mean"] is not None:
      ax.plot(th, d["plugin_overlap_mean"], "--s", color=orange, ms=2.5, lw=0.9, label="plug-in estimator (same size)")
    ax.plot(d["theory_theta"], d["theory_overlap"], color=style.THEORY_COLOUR, lw=1.0,
            label=r"BBP: $1-(\theta_c/\theta)^2$")
    if d["chance_overlap"] is not None:
      ax.axhline(d["chance_overlap"], color=grey, lw=0.8, ls=":", label="chance (random subspace)")
    ax.axvline(d["theta_c"], color=style.THEORY_COLOUR, lw=0.8, ls=":", label=rf"predicted $\theta_c = {d['theta_c']:g}$")
    ax.axhline(0.5, color=grey, lw=0.5)
    ax.plot([d["theta_half_predicted"]], [0.5], "D", color=style.THEORY_COLOUR, ms=4, label=r"predicted $\theta_{1/2}$")
    if np.isfinite(d["theta_half_measured"]):
      ax.errorbar([d["theta_half_measured"]], [0.5], xerr=[[3 * d["theta_half_se"]], [3 * d["theta_half_se"]]],
                  fmt="o", mfc="white", color=style.OKABE_ITO[6], ms=4, capsize=2,
                  label=r"measured $\theta_{1/2}$ ($\pm$3 SE)")
    ax.set_xlabel(r"effective SNR $\theta = (1-p)\,\beta\,\sqrt{n/((V-1)k)}$")
    ax.set_ylabel("squared overlap with teacher")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("teacher overlap of the learned map")
    if has_rank:
      ax = axes[1]
      ax.plot(th, d["map_learned_mean"], "-o", color=blue, ms=3, lw=1.0, label="structure rank of the map (mean)")
      ax.axvline(d["theta_c"], color=style.THEORY_COLOUR, lw=0.8, ls=":")
      ax.set_xlabel(r"effective SNR $\theta$")
      ax.set_ylabel("structured directions")
      ax.set_title("structure rank along the sweep")
    style.shared_legend(fig, axes, columns)
    style.suptitle(fig, f"Learning a planted teacher: overlap switches on at the BBP threshold [{d['status']}]", columns)
  runs, config = inputs.check_provenance(verdict)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=runs, config=config, plotted=d)
