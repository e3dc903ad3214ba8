"""Figure: the BBP transition, predicted against measured outlier location, singular-vector overlaps, detection.

Input: the stored result of the check ``bbp`` (``python -m theory_checks bbp --quick``),
``<runs>/checks/bbp/result.json``. Model: ``W = theta u v^T + G / sqrt(N)`` (docs/THEORY.md#bbp), threshold
``theta_c = q^(1/4)``. Series read (``SERIES``):
- ``theta``, ``s1_mean``, ``s1_sd``: spike strengths and the measured top singular value of ``W`` (mean, sd over
  seeds);
- ``overlap_u_mean``, ``overlap_v_mean``: measured squared overlaps (long side u, short side v);
- ``curve_theta``, ``curve_detection_rate`` (optional): fraction of seeds whose largest eigenvalue passes the
  Tracy-Widom test, across the critical window;
- ``theory_theta``, ``theory_s1``, ``theory_overlap_u``, ``theory_overlap_v`` (optional): the predicted curves;
  when absent they are computed with ``spectral.bbp`` from ``q`` in the verdict's details.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import inputs, style
from spectral import bbp

NAME = "bbp_transition"
INPUT = "check"
CHECK = "bbp"
SERIES = {k: (k,) for k in ("theta", "s1_mean", "s1_sd", "overlap_u_mean", "overlap_v_mean", "curve_theta",
                            "curve_detection_rate", "theory_theta", "theory_s1", "theory_overlap_u",
                            "theory_overlap_v")}
DESCRIPTION = "BBP transition: predicted vs measured outlier location, overlaps and detection rate (check bbp)"


def plotted_numbers(verdict: dict) -> dict:
  get = lambda k, required=True: inputs.series(verdict, SERIES[k], figure=NAME, required=required)
  out = {k: inputs.as_float_array(get(k), k).tolist() for k in ("theta", "s1_mean", "overlap_u_mean",
                                                                 "overlap_v_mean")}
  sd = get("s1_sd", False)
  out["s1_sd"] = inputs.as_float_array(sd, "s1_sd").tolist() if sd is not None else [0.0] * len(out["theta"])
  q = inputs.detail(verdict, "q_pred", inputs.detail(verdict, "q"))
  theory = {k: get(k, False) for k in ("theory_theta", "theory_s1", "theory_overlap_u", "theory_overlap_v")}
  if any(v is None for v in theory.values()):
    if q is None:
      raise inputs.MissingInput(f"figure {NAME!r}: check {CHECK!r} result has neither the theory curves nor q",
                                inputs.check_command(CHECK))
    grid = np.linspace(0.05, max(3.0, max(out["theta"]) * 1.05), 120)
    ou, ov = bbp.bbp_overlaps(grid, q)
    theory = dict(theory_theta=grid, theory_s1=bbp.bbp_top_singular_value(grid, q), theory_overlap_u=ou,
                  theory_overlap_v=ov)
  out.update({k: inputs.as_float_array(v, k).tolist() for k, v in theory.items()})
  ct, cr = get("curve_theta", False), get("curve_detection_rate", False)
  out["curve_theta"] = None if ct is None else inputs.as_float_array(ct, "curve_theta").tolist()
  out["curve_detection_rate"] = None if cr is None else inputs.as_float_array(cr, "curve_detection_rate").tolist()
  out.update(check=verdict["check"], status=verdict["status"], q=q,
             theta_c=None if q is None else bbp.bbp_threshold(q),
             theta_50_detection=verdict["measured"].get("theta_50_detection"))
  return out


def make_figure(verdict: dict, out_dir: str | pathlib.Path, *, columns: int = 2) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt

  data = plotted_numbers(verdict)
  has_curve = data["curve_theta"] is not None
  n = 3 if has_curve else 2
  th = np.asarray(data["theta"])
  blue, orange, green = style.OKABE_ITO[5], style.OKABE_ITO[6], style.OKABE_ITO[3]
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(n, columns, max_per_row=3 if columns == 2 else 1,
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
    if has_curve:
      ax = axes[2]
      ax.plot(data["curve_theta"], data["curve_detection_rate"], "-o", color=green, ms=3, lw=1.0,
              label="fraction detected (TW test)")
      ax.set_ylabel("detection rate")
      ax.set_ylim(-0.03, 1.03)
      ax.set_title("detection across the window")
    for ax in axes:
      if data["theta_c"] is not None:
        ax.axvline(data["theta_c"], color=style.SECONDARY_COLOUR, ls=":", lw=1.0,
                   label=r"threshold $\theta_c = q^{1/4}$")
      ax.set_xlabel(r"spike strength $\theta$")
    handles, labels = {}, []
    for ax in axes:
      for h, lab in zip(*ax.get_legend_handles_labels()):
        handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", frameon=False,
               ncol=4 if columns == 2 else 2, fontsize=6.5)
    q = data["q"]
    style.suptitle(fig, f"BBP transition" + (f" (q = {q:.3g})" if q is not None else "") + f" [{data['status']}]",
                   columns)
  runs, config = inputs.check_provenance(verdict)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=runs, config=config, plotted=data)
