"""Figure: log-log tail of the ESD with the Clauset-Shalizi-Newman power-law fit, one panel per regime.

Input: one run folder; one matrix (default the last block's MLP output) at one step (default the last).
Per panel: the empirical complementary CDF ``P(L >= lambda)`` of the ESD (eigenvalues of ``X = W^T W / N``) of every
member of the regime (thin staircase lines), the representative member (``seed_index``, default 0) as points, its
fitted power law ``P(L >= lambda) = (n_tail / M) (lambda / xmin)^(1 - alpha)`` from ``xmin`` on, and ``xmin``
marked; the panel title gives ``alpha +- se`` (CSN 2009 eqs. 3.1, 3.2; ``spectral.power_law`` via
``spectral.metrics``), rounded to the standard error, and the tail size; one legend below names every mark. A CCDF
is used rather than a binned density because it needs no bins and is what the KS fit compares.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import measure, style
from models.run_folder import Run
from spectral.cli import round_to_uncertainty

NAME = "esd_tail"
INPUT = "run"
DESCRIPTION = "log-log ESD tail (CCDF) with power-law fit, xmin and alpha +- se per regime"


def ccdf(ev) -> tuple[np.ndarray, np.ndarray]:
  """Sorted eigenvalues and ``P(L >= x_i) = (M - i) / M`` (i = 0..M-1)."""
  x = np.sort(np.asarray(ev, dtype=np.float64))
  return x, (x.size - np.arange(x.size)) / x.size


def plotted_numbers(run: Run, matrix: str | None = None, step: int | None = None, seed_index: int = 0) -> dict:
  """Per regime: every member's eigenvalues (for the thin CCDFs), the representative member's index, eigenvalues
  and CCDF, its fit (``alpha``, ``alpha_se``, ``xmin``, ``n_tail``, ``alpha_ks``) and the alphas of all members."""
  step = max(run.spectra) if step is None else step
  matrix = measure.default_matrix(run) if matrix is None else matrix
  rows = measure.member_metrics(run, step, matrix)
  by_index = {m["index"]: row for m, row in zip(run.members, rows)}
  regimes = {}
  for regime, p, members in measure.regimes(run):
    rep = next((m for m in members if m["seed_index"] == seed_index), members[0])
    fit = by_index[rep["index"]]
    x, y = ccdf(run.spectra[step][matrix][rep["index"]])
    regimes[regime] = dict(
        noise_p=p, members=[m["index"] for m in members],
        eigenvalues=[run.spectra[step][matrix][m["index"]].tolist() for m in members],
        representative=rep["index"], x=x.tolist(), ccdf=y.tolist(),
        alpha=fit["alpha"], alpha_se=fit["alpha_se"], xmin=fit["xmin"], n_tail=fit["n_tail"],
        alpha_ks=fit["alpha_ks"], alphas=[by_index[m["index"]]["alpha"] for m in members])
  return dict(matrix=matrix, step=step, shape=run.info["matrices"][matrix]["shape"], regimes=regimes)


def make_figure(run: Run, out_dir: str | pathlib.Path, *, matrix: str | None = None, step: int | None = None,
                seed_index: int = 0, columns: int = 2) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt
  from matplotlib.legend_handler import HandlerTuple
  from matplotlib.lines import Line2D

  data = plotted_numbers(run, matrix, step, seed_index)
  regimes = list(data["regimes"])
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(len(regimes), columns, max_per_row=2 if columns == 1 else 5, sharey=True,
                                 panel_height=2.1 if columns == 1 else 0)
    colours = []
    for i, (ax, regime) in enumerate(zip(axes, regimes)):
      r = data["regimes"][regime]
      colour = style.regime_colour(regime, i, r["noise_p"])
      colours.append(colour)
      for ev in r["eigenvalues"]:
        x, y = ccdf(ev)
        ax.loglog(x, y, color=colour, lw=0.6, alpha=0.45, drawstyle="steps-post")
      x, y = np.asarray(r["x"]), np.asarray(r["ccdf"])
      ax.loglog(x, y, "o", color=colour, ms=2.2, mew=0)
      p = r["noise_p"]
      title = f"{regime}" + (f" (p = {p:g})" if p is not None else "")
      if np.isfinite(r["alpha"]):
        xf = np.geomspace(r["xmin"], x.max(), 50)
        m = x.size
        ax.loglog(xf, r["n_tail"] / m * (xf / r["xmin"]) ** (1.0 - r["alpha"]), color=style.THEORY_COLOUR, lw=1.1)
        ax.plot(r["xmin"], r["n_tail"] / m, "D", mfc="white", mec=style.THEORY_COLOUR, ms=4, mew=1.0)
        alpha = round_to_uncertainty(r["alpha"], r["alpha_se"], r" $\pm$ ")
        title += f"\n$\\alpha$ = {alpha}, $n_{{tail}}$ = {r['n_tail']}"
      ax.set_title(title, fontsize=7.5, linespacing=1.3)
      ax.set_xlabel(r"eigenvalue $\lambda$ of $W^TW/N$")
      ax.set_ylabel(r"$P(\Lambda \geq \lambda)$" if i % (2 if columns == 1 else 5) == 0 else "")
      style.tidy_log_axis(ax)
    # One legend for every panel, its swatches in the regime colours as drawn.
    rep = data["regimes"][regimes[0]]
    handles = [tuple(Line2D([], [], color=c, lw=0.6, alpha=0.6, drawstyle="steps-post") for c in colours),
               tuple(Line2D([], [], color=c, marker="o", ms=2.5, lw=0) for c in colours),
               Line2D([], [], color=style.THEORY_COLOUR, lw=1.1),
               Line2D([], [], color=style.THEORY_COLOUR, marker="D", mfc="white", ms=4, lw=0)]
    labels = [f"each seed's ESD ({len(rep['eigenvalues'])} seeds)",
              f"seed {rep['members'].index(rep['representative'])}'s ESD (fitted)",
              r"power-law fit from $x_{\min}$", r"$x_{\min}$"]
    fig.legend(handles, labels, loc="outside lower center", ncol=2 if columns == 1 else 4, frameon=False,
               handler_map={tuple: HandlerTuple(ndivide=None, pad=0.1)}, handlelength=2.6)
    style.suptitle(fig, f"ESD tail and power-law fit: {data['matrix'].removesuffix('.kernel')}, step {data['step']}",
                   columns)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=[run.name], config=run.config,
                           plotted=data)
