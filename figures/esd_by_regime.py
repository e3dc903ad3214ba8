"""Figure: ESDs of chosen weight matrices per data regime against the fitted Marchenko-Pastur density.

Input: one run folder. Grid: one row per matrix, one column per regime, at one snapshot step (default the last).
Per panel: histogram of the eigenvalues of ``X = W^T W / N`` pooled over the regime's members (density normalised by
all eigenvalues, spikes included, so it is comparable with MP); MP(q, sigma^2) with sigma^2 fitted per member by the
median method (Gavish & Donoho 2014) and averaged; the bulk edge ``lambda_+ = sigma^2 (1 + sqrt q)^2``; the
Tracy-Widom margin, shaded from ``lambda_+`` to the Johnstone-Ma threshold at false-alarm ``measure.LEVEL`` with the
median-estimate correction (``spectral.tracy_widom.wishart_tw_threshold``); spikes (eigenvalues above each member's
own threshold, as ``spectral.metrics`` counts them) as a rug in the regime colour, with their count in the panel
title (never over the data or the margin). The figure says in a note that sigma^2 is median-fitted, unlike the
``mp_at_init`` check, which tests the initialiser's stated sigma^2 at step 0: after training the stated variance no
longer describes the bulk, while the median fit does. ``matrices`` (``python -m figures esd_by_regime --matrix M``)
chooses the matrices drawn, one row each.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import measure, style
from models.run_folder import Run
from spectral import tracy_widom as tw
from spectral.esd import aspect_ratio
from spectral.marchenko_pastur import mp_edges, mp_pdf

NAME = "esd_by_regime"
INPUT = "run"
DESCRIPTION = "ESD per regime vs fitted Marchenko-Pastur, bulk edge, Tracy-Widom margin, spikes"


def plotted_numbers(run: Run, matrices: list[str] | str | None = None, step: int | None = None,
                    level: float = measure.LEVEL) -> dict:
  """The numbers the figure draws (also written to the sidecar JSON).

  Returns ``{step, level, matrices: {matrix: {shape, q, regimes: {regime: {...}}}}}`` with per regime: ``noise_p``,
  ``members`` (indices), ``eigenvalues`` (one list per member, as stored), ``sigma2`` and ``tw_threshold`` and
  ``n_outliers`` per member, ``sigma2_mean``, ``mp_edge`` and ``tw_threshold_mean`` (drawn), ``spikes`` (the
  eigenvalues above their member's threshold, pooled).
  """
  step = max(run.spectra) if step is None else step
  matrices = measure.default_matrices(run) if matrices is None else (
      [matrices] if isinstance(matrices, str) else list(matrices))
  out = {}
  for matrix in matrices:
    measure.check_snapshot(run, step, matrix)
    shape = run.info["matrices"][matrix]["shape"]
    q = aspect_ratio(shape)
    rows = measure.member_metrics(run, step, matrix, level)
    regs = {}
    for (m, row) in zip(run.members, rows):
      ev = run.spectra[step][matrix][m["index"]]
      r = regs.setdefault(m["regime"], dict(noise_p=m["noise_p"], members=[], eigenvalues=[], sigma2=[],
                                            tw_threshold=[], n_outliers=[], spikes=[]))
      r["members"].append(m["index"])
      r["eigenvalues"].append(ev.tolist())
      r["sigma2"].append(row["mp_sigma2"])
      r["tw_threshold"].append(row["tw_threshold"])
      r["n_outliers"].append(row["n_outliers"])
      r["spikes"].extend(float(x) for x in ev if x > row["tw_threshold"])
    for r in regs.values():
      r["sigma2_mean"] = float(np.mean(r["sigma2"]))
      r["mp_edge"] = mp_edges(q, r["sigma2_mean"])[1]
      r["tw_threshold_mean"] = tw.wishart_tw_threshold(shape, r["sigma2_mean"], level,
                                                       tw.median_sigma2_relative_sd(shape))
    out[matrix] = dict(shape=shape, q=q, regimes=regs)
  return dict(step=step, level=level, matrices=out)


def short_name(matrix: str) -> str:
  return matrix.removesuffix(".kernel")


def make_figure(run: Run, out_dir: str | pathlib.Path, *, matrix: str | None = None,
                matrices: list[str] | None = None, step: int | None = None, columns: int = 2,
                level: float = measure.LEVEL) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt
  from matplotlib.legend_handler import HandlerTuple
  from matplotlib.lines import Line2D
  from matplotlib.patches import Patch

  if matrices is None and matrix is None and columns == 1:
    matrix = measure.default_matrix(run)
  data = plotted_numbers(run, matrices if matrices is not None else matrix, step, level)
  names = list(data["matrices"])
  regimes = list(data["matrices"][names[0]]["regimes"])
  per_row = min(len(regimes), 2 if columns == 1 else 5)
  rows_per_matrix = -(-len(regimes) // per_row)
  nrows = rows_per_matrix * len(names)
  with plt.rc_context(style.RC):
    fig, axes = plt.subplots(nrows, per_row, figsize=(style.width_in(columns), 1.6 * nrows + 0.7), squeeze=False,
                             sharex=True)
    used = {(mi * rows_per_matrix + ri // per_row, ri % per_row) for mi in range(len(names))
            for ri in range(len(regimes))}
    colours = []
    for mi, matrix in enumerate(names):
      d = data["matrices"][matrix]
      for ri, regime in enumerate(regimes):
        row, col = mi * rows_per_matrix + ri // per_row, ri % per_row
        ax = axes[row][col]
        r = d["regimes"][regime]
        colour = style.regime_colour(regime, ri, r["noise_p"])
        if mi == 0:
          colours.append(colour)
        lo, hi = mp_edges(d["q"], r["sigma2_mean"])
        # x in units of the bulk edge: every panel has the MP edge at 1 and the same axis.
        ev = np.concatenate([np.asarray(e, dtype=np.float64) for e in r["eigenvalues"]]) / hi
        spikes = np.asarray(r["spikes"]) / hi
        bulk = np.sort(ev)[: ev.size - spikes.size] if spikes.size else ev
        thr = r["tw_threshold_mean"] / hi
        counts, edges = np.histogram(bulk, bins=30, range=(0.0, max(bulk.max(), 1.0) * 1.02))
        dens = counts / (ev.size * np.diff(edges))
        ax.stairs(dens, edges, fill=True, color=colour, alpha=0.55, lw=0)
        xs = np.linspace(lo / hi, 1.0, 400)
        mp_x = hi * mp_pdf(xs * hi, d["q"], r["sigma2_mean"])
        ax.plot(xs, mp_x, color=style.THEORY_COLOUR, lw=1.0)
        ymax = max(dens.max(), float(np.nanmax(mp_x[5:-5]))) * 1.45
        ax.axvspan(1.0, thr, color=style.SECONDARY_COLOUR, alpha=0.45, lw=0)
        ax.axvline(1.0, color=style.THEORY_COLOUR, ls="--", lw=0.8)
        if spikes.size:
          ax.vlines(spikes, 0, 0.22 * ymax, color=colour, lw=1.6)
          ax.plot(spikes, np.full(spikes.size, 0.22 * ymax), "v", color=colour, ms=3.5)
        ax.set_ylim(0, ymax)
        n_members = len(r["members"])
        p = r["noise_p"]
        label = f"{regime}" + (f" (p = {p:g})" if p is not None else "")
        ax.set_title(f"{label}\n{spikes.size} spike{'s' if spikes.size != 1 else ''} in {n_members} seeds",
                     fontsize=7.5, linespacing=1.3)
        ax.set_xlabel(r"$\lambda / \lambda_+$")
        ax.xaxis.set_tick_params(labelbottom=True)
        if col == 0:
          ax.set_ylabel("density" if len(names) == 1 else f"{short_name(matrix)}\ndensity")
    xmax = max(max(np.max(np.concatenate([np.asarray(e) for e in r["eigenvalues"]])), r["tw_threshold_mean"])
               / mp_edges(d["q"], r["sigma2_mean"])[1]
               for d in data["matrices"].values() for r in d["regimes"].values())
    axes[0][0].set_xlim(0, xmax * 1.08)
    for row in range(nrows):
      for col in range(per_row):
        if (row, col) not in used:
          axes[row][col].remove()
    # Swatches in the regime colours, as drawn (one per regime, side by side).
    esd_swatch = tuple(Patch(color=c, alpha=0.55, lw=0) for c in colours)
    spike_swatch = tuple(Line2D([], [], color=c, marker="v", ms=3.5, lw=1.6) for c in colours)
    handles = [esd_swatch, Line2D([], [], color=style.THEORY_COLOUR, lw=1.0),
               Line2D([], [], color=style.THEORY_COLOUR, ls="--", lw=0.8),
               Patch(color=style.SECONDARY_COLOUR, alpha=0.45, lw=0), spike_swatch]
    labels = ["ESD (pooled seeds)", "MP, median-fitted $\\sigma^2$", "bulk edge $\\lambda_+$",
              f"Tracy-Widom margin ({100 * (1 - level):g}%)", "spikes (beyond TW)"]
    where = f"step {data['step']}" if len(names) > 1 else f"{short_name(names[0])}, step {data['step']}"
    sep = "\n" if columns == 1 else ": "
    fig.suptitle(f"ESD of $W^TW/N$ vs Marchenko-Pastur{sep}{where}")
    note = ("$\\sigma^2$ fitted per member by the median (Gavish-Donoho);\nthe mp_at_init check instead tests the "
            "initialiser's stated $\\sigma^2$ at step 0")
    fig.legend(handles, labels, loc="outside lower center", ncol=3 if columns == 2 else 2, frameon=False,
               handler_map={tuple: HandlerTuple(ndivide=None, pad=0.1)}, handlelength=3.0 if columns == 2 else 2.2,
               title=note, title_fontsize=6)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=[run.name], config=run.config,
                           plotted=data)
