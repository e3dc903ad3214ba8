"""Figure: evolution over training of power-law alpha, Tracy-Widom outliers and bulk KS distance, per regime.

Input: one run folder (every snapshot step). For each chosen matrix (rows; default the first and last blocks' MLP
output matrices in two columns, the last one in one column) and each metric (columns), one line per regime: the
mean over the regime's members, with a band from the smallest to the largest member (the ensemble's range; with 2-3
seeds a range is more honest than a standard deviation). Metrics (``spectral.metrics`` on the stored ESDs):
``alpha`` (CSN power-law exponent of the tail), ``n_outliers`` (eigenvalues above the Johnstone-Ma Tracy-Widom
threshold at false-alarm ``measure.LEVEL``, median-fitted sigma^2), and ``M x mp_ks`` (KS distance between the bulk
and MP(q, sigma^2) times ``M``: by rigidity pure noise gives a few units, docs/THEORY.md#tolerances). Step 0 is the
initialisation; the step axis is symmetric-log so it can be shown, ticked at 0 and at the powers of ten beyond the
linear range (so "0" and "1" never collide), labelled as plain step numbers.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import measure, style
from models.run_folder import Run

NAME = "metrics_evolution"
INPUT = "run"
DESCRIPTION = "alpha, TW outlier count and bulk KS distance over training steps per regime (ensemble bands)"
METRICS = (("alpha", r"power-law $\alpha$"), ("n_outliers", "outliers (TW 1%)"), ("m_ks", r"bulk KS $\times M$"))


def plotted_numbers(run: Run, matrices: list[str] | str | None = None, level: float = measure.LEVEL) -> dict:
  """``{steps, level, matrices: {matrix: {regime: {noise_p, members, <metric>: (members, steps) values}}}}``."""
  steps = sorted(run.spectra)
  matrices = measure.default_matrices(run) if matrices is None else (
      [matrices] if isinstance(matrices, str) else list(matrices))
  out = {}
  for matrix in matrices:
    m_dim = min(run.info["matrices"][matrix]["shape"])
    per_step = [measure.member_metrics(run, s, matrix, level) for s in steps]
    regs = {}
    for regime, p, members in measure.regimes(run):
      pos = [i for i, m in enumerate(run.members) if m["regime"] == regime]
      r = dict(noise_p=p, members=[m["index"] for m in members])
      r["alpha"] = [[per_step[k][i]["alpha"] for k in range(len(steps))] for i in pos]
      r["n_outliers"] = [[per_step[k][i]["n_outliers"] for k in range(len(steps))] for i in pos]
      r["m_ks"] = [[m_dim * per_step[k][i]["mp_ks"] for k in range(len(steps))] for i in pos]
      regs[regime] = r
    out[matrix] = regs
  return dict(steps=steps, level=level, matrices=out)


def make_figure(run: Run, out_dir: str | pathlib.Path, *, matrices: list[str] | str | None = None,
                columns: int = 2, level: float = measure.LEVEL) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt
  from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

  if matrices is None and columns == 1:
    matrices = measure.default_matrix(run)
  data = plotted_numbers(run, matrices, level)
  names = list(data["matrices"])
  steps = np.asarray(data["steps"], dtype=np.float64)
  positive = steps[steps > 0]
  linthresh = float(positive.min()) if positive.size else 1.0
  ticks = [0.0] + [10.0**k for k in range(0, 10) if linthresh <= 10.0**k <= steps.max()]
  n_rows, n_cols = (len(names), len(METRICS)) if columns == 2 else (len(METRICS) * len(names), 1)
  with plt.rc_context(style.RC):
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(style.width_in(columns), 1.7 * n_rows + 0.6), squeeze=False,
                             sharex=True)
    axes = axes.ravel()
    k = 0
    for matrix in names:
      for key, label in METRICS:
        ax = axes[k]
        k += 1
        for i, (regime, r) in enumerate(data["matrices"][matrix].items()):
          colour = style.regime_colour(regime, i, r["noise_p"])
          vals = np.asarray(r[key], dtype=np.float64)
          with np.errstate(all="ignore"):
            mean = np.nanmean(vals, axis=0)
            lo, hi = np.nanmin(vals, axis=0), np.nanmax(vals, axis=0)
          ax.plot(steps, mean, "-o", color=colour, lw=1.2, ms=2.5, label=regime)
          ax.fill_between(steps, lo, hi, color=colour, alpha=0.2, lw=0)
        ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
        ax.set_xlim(0, steps.max() * 1.05)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        ax.set_title(matrix.removesuffix(".kernel"), fontsize=7)
        if key == "n_outliers":
          ax.yaxis.set_major_locator(MaxNLocator(integer=True))
          top = max(1.0, float(np.nanmax([np.nanmax(np.asarray(r[key], dtype=np.float64))
                                           for r in data["matrices"][matrix].values()])))
          ax.set_ylim(-0.05 * top, 1.1 * top)
        ax.xaxis.set_tick_params(labelbottom=True)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5), frameon=False,
               title="regime (line: mean over seeds; band: range)", title_fontsize=7)
    style.suptitle(fig, f"Spectral metrics over training, {run.name}", columns)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=[run.name], config=run.config,
                           plotted=data)
