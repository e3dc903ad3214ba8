"""Figure: the BBP transition, predicted against measured outlier location, singular-vector overlaps, detection.

Input: the stored result of the check ``bbp`` (``python -m theory_checks bbp --quick``),
``<runs>/checks/bbp.json``. Model: ``W = theta u v^T + G / sqrt(N)`` (docs/THEORY.md#bbp), threshold
``theta_c = q^(1/4)``. Series read (``SERIES``, as the check writes them):
- ``theta``, ``s1_mean``, ``s1_sd``: spike strengths and the measured top singular value of ``W`` (mean, sd over
  seeds);
- ``overlap_u_mean``, ``overlap_v_mean``: measured squared overlaps (long side u, short side v);
- ``curve_theta``, ``curve_detection_rate``: fraction of seeds whose largest eigenvalue passes the Tracy-Widom test,
  across the critical window;
- ``theory_theta``, ``theory_s1``, ``theory_overlap_u``, ``theory_overlap_v``: the predicted curves.
The aspect ratio ``q`` (for the threshold line) is the ``q_pred`` of the verdict's details.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import inputs, style
from spectral import bbp

NAME = "bbp_transition"
INPUT = "check"
CHECK = "bbp"
SERIES = ("theta", "s1_mean", "s1_sd", "overlap_u_mean", "overlap_v_mean", "curve_theta", "curve_detection_rate",
          "theory_theta", "theory_s1", "theory_overlap_u", "theory_overlap_v")
DESCRIPTION = "BBP transition: predicted vs measured outlier location, overlaps and detection rate (check bbp)"


def plotted_numbers(verdict: inputs.Verdict) -> dict:
  out = {k: inputs.as_float_array(inputs.series(verdict, k, figure=NAME), k).tolist() for k in SERIES}
  q = inputs.detail(verdict, "q_pred")
  if q is None:
    raise inputs.MissingInput(f"figure {NAME!r}: check {CHECK!r} result has no q_pred in its details",
                              inputs.check_command(CHECK))
  out.update(check=verdict.check, status=verdict.status, q=q, theta_c=bbp.bbp_threshold(q),
             theta_50_detection=verdict.measured.get("theta_50_detection"))
  return out


def make_figure(verdict: inputs.Verdict, out_dir: str | pathlib.Path, *, columns: int = 2) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt

  data = plotted_numbers(verdict)
  th = np.asarray(data["theta"])
  blue, orange, green = style.OKABE_ITO[5], style.OKABE_ITO[6], style.OKABE_ITO[3]
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(3, columns, max_per_row=3 if columns == 2 else 1,
                                 panel_height=2.2 if columns == 2 else 1.6)
    ax = axes[0]
    ax.plot(data["theory_theta"], data["theory_s1"], color=style.THEORY_COLOUR, lw=1.0, label=r"predicted $s_1$")
    ax.errorbar(th, data["s1_mean"], yerr=data["s1_sd"], fmt="o", color=blue, ms=3.5, capsize=2,
                label=r"measured $s_1$ (mean $\pm$ sd)")
    ax.set_ylabel(r"top singular value $s_1$ of $W$")
    ax.set_title("outlier location")
    ax = axes[1]
    ax.plot(data["theory_theta"], data["theory_overlap_u"], color=style.THEORY_COLOUR, lw=1.0,
            label=r"predicted $|\langle\hat u,u\rangle|^2$")
    ax.plot(data["theory_theta"], data["theory_overlap_v"], color=style.THEORY_COLOUR, lw=1.0, ls="--",
            label=r"predicted $|\langle\hat v,v\rangle|^2$")
    ax.plot(th, data["overlap_u_mean"], "o", color=blue, ms=3.5, label="measured u (long side)")
    ax.plot(th, data["overlap_v_mean"], "s", color=orange, ms=3.5, label="measured v (short side)")
    ax.set_ylabel("squared overlap")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("singular-vector overlaps")
    ax = axes[2]
    ax.plot(data["curve_theta"], data["curve_detection_rate"], "-o", color=green, ms=3, lw=1.0,
            label="fraction detected (TW test)")
    ax.set_ylabel("detection rate")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("detection across the window")
    for ax in axes:
      ax.axvline(data["theta_c"], color=style.SECONDARY_COLOUR, ls=":", lw=1.0,
                 label=r"threshold $\theta_c = q^{1/4}$")
      ax.set_xlabel(r"spike strength $\theta$")
    style.shared_legend(fig, axes, columns)
    style.suptitle(fig, f"BBP transition (q = {data['q']:.3g}) [{data['status']}]", columns)
  runs, config = inputs.check_provenance(verdict)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=runs, config=config, plotted=data)
