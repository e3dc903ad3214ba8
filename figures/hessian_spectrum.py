"""Figure: Hessian spectral density by stochastic Lanczos quadrature with its outliers, and the top eigenvalues over
training.

Input: the stored result of the Hessian check (``CHECK``; ``python -m theory_checks hessian_outliers --quick``),
``<runs>/checks/hessian_outliers/result.json``. Series read (``SERIES``; first name preferred, aliases accepted):
- ``slq_grid``, ``slq_density``: the SLQ density estimate of the Hessian spectrum on a grid (Ghorbani et al. 2019);
  or, for models small enough for a dense Hessian, ``dense_eigenvalues`` (every eigenvalue; drawn as a histogram)
  -- one of the two is required;
- ``ritz_values``: the Lanczos Ritz values (top eigenvalue estimates) at the final step;
- ``outlier_count`` (optional; else ``measured["outliers"]``): how many Ritz values the check counts as outliers;
- ``steps``, ``top_eigenvalues`` (optional): training steps and the top-k eigenvalues at each (steps x k).
Left: the density on a log scale with the Ritz values as a rug (outliers in colour); right (when present): the top
eigenvalues against training step. The class-count prediction (about C outliers, Papyan 2020) is the check's.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import inputs, style

NAME = "hessian_spectrum"
INPUT = "check"
CHECK = "hessian_outliers"
SERIES = {"grid": ("slq_grid", "density_grid"), "density": ("slq_density", "density"),
          "ritz": ("ritz_values", "top_eigenvalues_final"),
          "dense": ("dense_eigenvalues",), "outliers": ("outlier_count", "n_outliers"),
          "steps": ("steps", "training_steps"), "top": ("top_eigenvalues", "top_eigenvalues_by_step")}
DESCRIPTION = "Hessian SLQ density with outliers and top eigenvalues over training (Hessian check)"


def plotted_numbers(verdict: dict) -> dict:
  get = lambda k, required=True: inputs.series(verdict, SERIES[k], figure=NAME, required=required)
  dense = get("dense", False)
  if dense is not None and get("density", False) is None:
    # Exact spectrum: a histogram density on a grid of bin centres (same drawing as SLQ).
    ev = inputs.as_float_array(dense, "dense_eigenvalues").ravel()
    counts, edges = np.histogram(ev, bins=60)
    grid, dens, source = 0.5 * (edges[1:] + edges[:-1]), counts / (ev.size * np.diff(edges)), "dense"
  else:
    grid = inputs.as_float_array(get("grid"), "slq_grid").ravel()
    dens = inputs.as_float_array(get("density"), "slq_density").ravel()
    source = "slq"
  if grid.shape != dens.shape:
    raise inputs.VerdictFormatError(f"slq_grid and slq_density differ in length: {grid.size} vs {dens.size}")
  ritz = np.sort(inputs.as_float_array(get("ritz"), "ritz_values").ravel())[::-1]
  n_out = get("outliers", False)
  if n_out is None:
    n_out = verdict["measured"].get("outliers", verdict["measured"].get("n_outliers"))
  steps, top = get("steps", False), get("top", False)
  out = dict(check=verdict["check"], status=verdict["status"], density_source=source, slq_grid=grid.tolist(),
             slq_density=dens.tolist(),
             ritz_values=ritz.tolist(), outlier_count=None if n_out is None else int(n_out),
             num_classes=verdict["predicted"].get("outliers", verdict["predicted"].get("num_classes")))
  if steps is not None and top is not None:
    top = inputs.as_float_array(top, "top_eigenvalues")
    steps = inputs.as_float_array(steps, "steps").ravel()
    if top.ndim != 2 or top.shape[0] != steps.size:
      raise inputs.VerdictFormatError(f"top_eigenvalues: expected (steps={steps.size}, k), got {top.shape}")
    out.update(steps=steps.tolist(), top_eigenvalues=top.tolist())
  return out


def make_figure(verdict: dict, out_dir: str | pathlib.Path, *, columns: int = 2) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt

  data = plotted_numbers(verdict)
  has_steps = "steps" in data
  blue, orange = style.OKABE_ITO[5], style.OKABE_ITO[6]
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(2 if has_steps else 1, columns, max_per_row=2 if columns == 2 else 1,
                                 panel_height=2.3 if columns == 2 else 1.8)
    ax = axes[0]
    grid, dens = np.asarray(data["slq_grid"]), np.asarray(data["slq_density"])
    floor = max(dens[dens > 0].min() if np.any(dens > 0) else 1e-12, dens.max() * 1e-5)
    if data["density_source"] == "dense":
      ax.semilogy(grid, np.where(dens > 0, dens, np.nan), "o", color=blue, ms=2.5,
                  label="exact density (dense Hessian, histogram)")
    else:
      ax.semilogy(grid, np.maximum(dens, floor), color=blue, lw=1.0, label="SLQ density")
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
    if data["num_classes"] is not None:
      title += f" (predicted ~{data['num_classes']})"
    ax.set_title(title)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, frameon=False)
    if has_steps:
      ax = axes[1]
      steps, top = np.asarray(data["steps"]), np.asarray(data["top_eigenvalues"])
      for j in range(top.shape[1]):
        ax.plot(steps, top[:, j], "-o", ms=2, lw=0.9, color=orange if j < k else style.SECONDARY_COLOUR)
      ax.set_xlabel("training step")
      ax.set_ylabel(r"top Hessian eigenvalues $\lambda_i$")
      ax.set_title(f"top {top.shape[1]} eigenvalues over training")
    how = "stochastic Lanczos quadrature" if data["density_source"] == "slq" else "dense, with Lanczos Ritz values"
    style.suptitle(fig, f"Hessian spectrum ({how}) [{data['status']}]", columns)
  runs, config = inputs.check_provenance(verdict)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=runs, config=config, plotted=data)
