"""Figure: Tracy-Widom histogram of centred and scaled largest eigenvalues against the TW1 density.

Input: the stored result of the check ``tw_fluctuations`` (``python -m theory_checks tw_fluctuations --quick``),
``<runs>/checks/tw_fluctuations.json``. Series read (``SERIES``, as the check writes it):
- ``scaled_lmax``: the Johnstone-Ma scaled maxima ``(N l_max / sigma^2 - mu) / s`` of independent matrices
  (docs/THEORY.md#tw_fluctuations).
Shape, seeds and beta come from the verdict's ``details``; the KS distance and its critical value from ``measured``
and ``predicted``. Left: histogram against the TW1 density (TW2 dotted, to show what a wrong law looks like); right:
empirical CDF against the TW1 CDF (Bornemann quadrature, ``spectral.tracy_widom``).
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import inputs, style
from spectral import tracy_widom as tw

NAME = "tw_histogram"
INPUT = "check"
CHECK = "tw_fluctuations"
SERIES = ("scaled_lmax",)
DESCRIPTION = "histogram and CDF of TW-scaled largest eigenvalues vs TW1 (check tw_fluctuations)"


def plotted_numbers(verdict: inputs.Verdict, bins: int = 30) -> dict:
  t = inputs.as_float_array(inputs.series(verdict, "scaled_lmax", figure=NAME), "scaled_lmax")
  t = t[np.isfinite(t)]
  if t.size < 2:
    raise inputs.VerdictFormatError(f"{CHECK}: expected at least 2 scaled maxima, got {t.size}")
  lo, hi = min(-6.0, t.min()), max(4.0, t.max())
  edges = np.linspace(lo, hi, bins + 1)
  hist, _ = np.histogram(t, bins=edges, density=True)
  grid = np.linspace(lo, hi, 161)
  return dict(check=verdict.check, status=verdict.status, shape=inputs.detail(verdict, "shape"),
              beta=inputs.detail(verdict, "beta", 1), scaled_lmax=t.tolist(), edges=edges.tolist(),
              hist=hist.tolist(), grid=grid.tolist(), tw1_pdf=tw.tw_pdf(grid, 1, nodes=40).tolist(),
              tw2_pdf=tw.tw_pdf(grid, 2, nodes=40).tolist(), tw1_cdf=tw.tw_cdf(grid, 1, nodes=40).tolist(),
              ks_distance=verdict.measured.get("ks_distance"), ks_critical=verdict.predicted.get("ks_distance"))


def make_figure(verdict: inputs.Verdict, out_dir: str | pathlib.Path, *, columns: int = 2) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt

  data = plotted_numbers(verdict)
  t = np.sort(np.asarray(data["scaled_lmax"]))
  grid = np.asarray(data["grid"])
  with plt.rc_context(style.RC):
    fig, (a1, a2) = style.panel_grid(2, columns, max_per_row=2 if columns == 2 else 1,
                                       panel_height=2.2 if columns == 2 else 1.7)
    a1.stairs(data["hist"], data["edges"], fill=True, color=style.OKABE_ITO[5], alpha=0.5, lw=0,
              label=f"{t.size} matrices")
    a1.plot(grid, data["tw1_pdf"], color=style.THEORY_COLOUR, lw=1.1, label="TW1")
    a1.plot(grid, data["tw2_pdf"], color=style.SECONDARY_COLOUR, ls=":", lw=1.0, label="TW2")
    a1.set_xlabel(r"scaled $\lambda_{\max}$: $(N\lambda_{\max}/\sigma^2-\mu)/s$")
    a1.set_ylabel("density")
    a1.set_title("histogram")
    a1.legend(frameon=False, loc="upper left")
    ks = data["ks_distance"]
    a2.plot(t, np.arange(1, t.size + 1) / t.size, color=style.OKABE_ITO[5], lw=1.0, drawstyle="steps-post",
            label="empirical" + (f"\nKS = {ks:.3f} ({data['ks_critical']})" if isinstance(ks, (int, float)) else ""))
    a2.plot(grid, data["tw1_cdf"], color=style.THEORY_COLOUR, lw=1.0, ls="--", label="TW1 CDF")
    a2.set_title("CDF")
    a2.set_xlabel(r"scaled $\lambda_{\max}$")
    a2.set_ylabel("cumulative probability")
    a2.legend(frameon=False, loc="upper left")
    shape = data["shape"]
    where = f"{shape[0]}x{shape[1]} Gaussian matrices" if shape else "scaled maxima"
    style.suptitle(fig, f"Tracy-Widom fluctuations of the largest eigenvalue: {where} [{data['status']}]", columns)
  runs, config = inputs.check_provenance(verdict)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=runs, config=config, plotted=data)
