"""Figure: log-log tail of the ESD with the Clauset-Shalizi-Newman power-law fit, one panel per regime.

Input: one run folder; one matrix (default the last block's MLP output) at one step (default the last).
Per panel: the empirical complementary CDF ``P(L >= lambda)`` of the ESD (eigenvalues of ``X = W^T W / N``) of every
member of the regime (thin lines), the representative member (``seed_index``, default 0) as points, its fitted
power law ``P(L >= lambda) = (n_tail / M) (lambda / xmin)^(1 - alpha)`` from ``xmin`` on, and ``xmin`` marked; the
legend gives ``alpha +- se`` (CSN 2009 eqs. 3.1, 3.2; ``spectral.power_law`` via ``spectral.metrics``) and the tail
size. A CCDF is used rather than a binned density because it needs no bins and is what the KS fit compares.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import measure, style
from models.run_folder import Run

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

  data = plotted_numbers(run, matrix, step, seed_index)
  regimes = list(data["regimes"])
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(len(regimes), columns, max_per_row=2 if columns == 1 else 5, sharey=True,
                                 panel_height=2.1 if columns == 1 else 0)
    for i, (ax, regime) in enumerate(zip(axes, regimes)):
      r = data["regimes"][regime]
      colour = style.regime_colour(regime, i, r["noise_p"])
      for ev in r["eigenvalues"]:
        x, y = ccdf(ev)
        ax.loglog(x, y, color=colour, lw=0.6, alpha=0.45, drawstyle="steps-post")
      x, y = np.asarray(r["x"]), np.asarray(r["ccdf"])
      ax.loglog(x, y, "o", color=colour, ms=2.2, mew=0, label=f"ESD (seed {r['members'].index(r['representative'])})")
      if np.isfinite(r["alpha"]):
        xf = np.geomspace(r["xmin"], x.max(), 50)
        m = x.size
        ax.loglog(xf, r["n_tail"] / m * (xf / r["xmin"]) ** (1.0 - r["alpha"]), color=style.THEORY_COLOUR, lw=1.1,
                  label=f"$\\alpha$ = {r['alpha']:.2f} $\\pm$ {r['alpha_se']:.2f}\n($n_{{tail}}$ = {r['n_tail']})")
        ax.plot(r["xmin"], r["n_tail"] / m, "D", mfc="white", mec=style.THEORY_COLOUR, ms=4, mew=1.0,
                label=r"$x_{\min}$")
      p = r["noise_p"]
      ax.set_title(f"{regime}" + (f" (p = {p:g})" if p is not None else ""))
      ax.set_xlabel(r"eigenvalue $\lambda$ of $W^TW/N$")
      ax.set_ylabel(r"$P(\Lambda \geq \lambda)$" if i % (2 if columns == 1 else 5) == 0 else "")
      ax.legend(frameon=False, loc="lower left", handlelength=1.2, fontsize=6 if columns == 1 else 7)
      style.tidy_log_axis(ax)
    style.suptitle(fig, f"ESD tail and power-law fit: {data['matrix'].removesuffix('.kernel')}, step {data['step']}",
                   columns)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=[run.name], config=run.config,
                           plotted=data)
