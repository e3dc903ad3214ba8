"""Figure: the network Jacobian against the free product of its blocks, per regime, over training.

Input: the stored result of the check ``trained_jacobians``. Panel 1: the Kolmogorov distance between the measured
squared singular values of the per-token network Jacobian and the free multiplicative convolution of its own blocks'
(sampled with Haar rotations), per regime, at every snapshot step (mean and standard error over members; 0 at
initialisation is the prediction). Panel 2: the measured top singular value over the free prediction's median top
one (1 = the edge the free product predicts). Panel 3: at the last step, the overlap of the Jacobian's top outlier
directions with the span of the weight spikes' residual-stream directions, beside its chance level.
Series read (``SERIES``): ``regime``, ``steps``, ``ks_mean``, ``ks_se``, ``edge_ratio_mean``, ``edge_ratio_se``,
``spike_overlap``, ``spike_overlap_chance``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import inputs, style

NAME = "trained_jacobians"
INPUT = "check"
CHECK = "trained_jacobians"
SERIES = ("regime", "steps", "ks_mean", "ks_se", "edge_ratio_mean", "edge_ratio_se", "spike_overlap",
          "spike_overlap_chance")
DESCRIPTION = "network Jacobian vs the free product of its blocks per regime over training (check trained_jacobians)"


def plotted_numbers(verdict: inputs.Verdict) -> dict:
  get = lambda k: inputs.series(verdict, k, figure=NAME)
  regimes = [str(r) for r in get("regime")]
  steps = [int(s) for s in get("steps")]
  out = dict(check=verdict.check, status=verdict.status, regimes=regimes, steps=steps)
  for key in SERIES[2:]:
    val = get(key)
    if len(val) != len(regimes):
      raise inputs.VerdictFormatError(f"{CHECK}: series {key!r} must have one entry per regime")
    if key.endswith(("_mean", "_se")):
      val = [[float(x) for x in row] for row in val]
      if any(len(row) != len(steps) for row in val):
        raise inputs.VerdictFormatError(f"{CHECK}: series {key!r} must have one value per step")
    else:
      val = [float(x) for x in val]
    out[key] = val
  return out


def make_figure(verdict: inputs.Verdict, out_dir: str | pathlib.Path, *, columns: int = 2) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt

  d = plotted_numbers(verdict)
  steps = np.asarray(d["steps"], np.float64)
  x = np.where(steps > 0, steps, max(1.0, steps[steps > 0].min() / 3 if np.any(steps > 0) else 1.0))
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(3, columns, max_per_row=3 if columns == 2 else 1,
                                 panel_height=2.2 if columns == 2 else 1.8)
    for i, regime in enumerate(d["regimes"]):
      colour = style.regime_colour(regime, i)
      for ax, key in zip(axes[:2], ("ks", "edge_ratio")):
        m, se = np.asarray(d[f"{key}_mean"][i]), np.asarray(d[f"{key}_se"][i])
        ax.errorbar(x, m, yerr=np.nan_to_num(se), color=colour, marker="o", ms=3, lw=1, capsize=2, label=regime)
    axes[1].axhline(1.0, color=style.THEORY_COLOUR, ls="--", lw=0.9, label="free prediction")
    for ax, label, title in zip(axes[:2], ("KS distance", "top s.v. / predicted"),
                                ("departure from the free product", "edge")):
      ax.set_title(title)
      ax.set_xscale("log")
      ax.set_xlabel("training step (0 at the left edge)")
      ax.set_ylabel(label)
    pos = np.arange(len(d["regimes"]))
    axes[2].bar(pos - 0.2, d["spike_overlap"], 0.4, color=[style.regime_colour(r, i) for i, r in
                                                             enumerate(d["regimes"])], label="measured")
    axes[2].bar(pos + 0.2, d["spike_overlap_chance"], 0.4, color="white", edgecolor="0.4", label="chance")
    axes[2].set_xticks(pos)
    axes[2].set_xticklabels(d["regimes"])
    axes[2].set_ylabel("overlap with weight spikes")
    axes[2].set_xlabel("regime (last step)")
    axes[2].set_title("top Jacobian directions")
    axes[2].set_ylim(0, 1)
    axes[0].legend(frameon=False, fontsize=6.5)
    axes[2].legend(frameon=False, fontsize=6.5)
    style.suptitle(fig, f"Network Jacobian vs free product of its blocks [{d['status']}]", columns)
  runs, config = inputs.check_provenance(verdict)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=runs, config=config, plotted=d)
