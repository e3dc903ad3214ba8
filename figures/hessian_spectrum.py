"""Figure: the Hessian spectrum of a small classifier, every eigenvalue, with the Lanczos Ritz values and the outliers.

Input: the stored result of the Hessian check (``CHECK``; ``python -m theory_checks hessian_outliers --quick``),
``<runs>/checks/hessian_outliers.json``. Series read (``SERIES``, as the check writes them):
- ``dense_eigenvalues``: every eigenvalue of the (dense) Hessian, drawn as a histogram density;
- ``ritz_values``: the top Lanczos Ritz values, drawn as a rug.
The outlier count is the check's ``measured["outliers"]`` and the prediction its ``predicted["outliers"]`` (about C,
or C-1, outliers for C classes; Papyan 2020).
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import inputs, style

NAME = "hessian_spectrum"
INPUT = "check"
CHECK = "hessian_outliers"
SERIES = ("dense_eigenvalues", "ritz_values")
DESCRIPTION = "Hessian spectrum (dense) with its Lanczos Ritz values and outliers (Hessian check)"


def plotted_numbers(verdict: inputs.Verdict, bins: int = 60) -> dict:
  ev = inputs.as_float_array(inputs.series(verdict, "dense_eigenvalues", figure=NAME), "dense_eigenvalues").ravel()
  counts, edges = np.histogram(ev, bins=bins)
  grid, dens = 0.5 * (edges[1:] + edges[:-1]), counts / (ev.size * np.diff(edges))
  ritz = np.sort(inputs.as_float_array(inputs.series(verdict, "ritz_values", figure=NAME), "ritz_values").ravel())
  n_out = verdict.measured.get("outliers")
  return dict(check=verdict.check, status=verdict.status, grid=grid.tolist(), density=dens.tolist(),
              dense_eigenvalues=ev.tolist(), ritz_values=ritz[::-1].tolist(),
              outlier_count=None if n_out is None else int(n_out), predicted=verdict.predicted.get("outliers"))


def make_figure(verdict: inputs.Verdict, out_dir: str | pathlib.Path, *, columns: int = 2) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt

  data = plotted_numbers(verdict)
  blue, orange = style.OKABE_ITO[5], style.OKABE_ITO[6]
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(1, columns, max_per_row=1, panel_height=2.3 if columns == 2 else 1.8)
    ax = axes[0]
    grid, dens = np.asarray(data["grid"]), np.asarray(data["density"])
    floor = max(dens[dens > 0].min() if np.any(dens > 0) else 1e-12, dens.max() * 1e-5)
    ax.semilogy(grid, np.where(dens > 0, dens, np.nan), "o", color=blue, ms=2.5,
                label="exact density (dense Hessian, histogram)")
    ritz = np.asarray(data["ritz_values"])
    k = data["outlier_count"] or 0
    ybot = floor * 0.4
    ax.plot(ritz[k:], np.full(ritz.size - k, ybot), "|", color=style.SECONDARY_COLOUR, ms=10, mew=1.0,
            label="Ritz values")
    if k:
      ax.plot(ritz[:k], np.full(k, ybot), "|", color=orange, ms=14, mew=1.6, label=f"{k} outliers")
    ax.set_xlabel(r"Hessian eigenvalue $\lambda$")
    ax.set_ylabel("density (log scale)")
    ax.set_ylim(floor * 0.2, dens.max() * 2)
    title = "spectrum after training"
    if data["predicted"] is not None:
      title += f" (predicted {data['predicted']} outliers)"
    ax.set_title(title)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, frameon=False)
    style.suptitle(fig, f"Hessian spectrum (dense, with Lanczos Ritz values) [{data['status']}]", columns)
  runs, config = inputs.check_provenance(verdict)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=runs, config=config, plotted=data)
