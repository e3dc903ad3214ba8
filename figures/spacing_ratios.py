"""Figure: level-spacing ratio distributions of the weight ESDs against GOE (Wigner-like surmise) and Poisson.

Input: one run folder. Ratios ``r = min(s_i / s_(i-1), s_(i-1) / s_i)`` of consecutive spacings of the central half
of each ESD (``spectral.wigner.spacing_ratios``; no unfolding needed), pooled over every weight matrix and member of a
regime at the last snapshot (or ``step``); a first panel pools every member at initialisation (step 0, when stored)
as the control. Reference densities on ``[0, 1]`` for ``r`` = min(r, 1/r) (Atas, Bogomolny, Giraud, Roux 2013, PRL
110:084101): GOE surmise ``P(r) = 2 (27/8) (r + r^2) / (1 + r + r^2)^(5/2)`` (mean 0.5307 at large N), Poisson
``P(r) = 2 / (1 + r)^2`` (mean ``2 ln 2 - 1 = 0.386``). Legends give the measured mean with its standard error.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import measure, style
from models.run_folder import Run
from spectral import wigner

NAME = "spacing_ratios"
INPUT = "run"
DESCRIPTION = "level-spacing ratio histograms per regime vs GOE surmise and Poisson (step 0 as control)"


def goe_surmise(r) -> np.ndarray:
  """Density of min(r, 1/r) under the beta = 1 Wigner-like surmise (Atas et al. 2013, eq. 7, folded onto [0, 1])."""
  r = np.asarray(r, dtype=np.float64)
  return 2.0 * (27.0 / 8.0) * (r + r**2) / (1.0 + r + r**2) ** 2.5


def poisson_ratio(r) -> np.ndarray:
  """Density of min(r, 1/r) for uncorrelated (Poisson) levels: ``2 / (1 + r)^2`` on [0, 1]."""
  r = np.asarray(r, dtype=np.float64)
  return 2.0 / (1.0 + r) ** 2


def ratios_of(run: Run, step: int, members: list[int]) -> np.ndarray:
  out = []
  for name, ev in sorted(run.spectra[step].items()):
    if ev.shape[1] < 8:
      continue
    r = np.asarray(wigner.spacing_ratios(ev[members].astype(np.float64)))
    out.append(r[np.isfinite(r)])
  return np.concatenate(out) if out else np.zeros(0)


def plotted_numbers(run: Run, step: int | None = None, bins: int = 20) -> dict:
  """Panels (``init`` when step 0 is stored, then one per regime): pooled ratios, histogram, mean and its SE."""
  step = max(run.spectra) if step is None else step
  measure.check_snapshot(run, step)
  panels = {}
  edges = np.linspace(0.0, 1.0, bins + 1)
  groups = []
  if 0 in run.spectra and step != 0:
    groups.append(("initialisation (all)", None, 0, [m["index"] for m in run.members]))
  groups += [(regime, p, step, [m["index"] for m in members]) for regime, p, members in measure.regimes(run)]
  for label, p, s, members in groups:
    r = ratios_of(run, s, members)
    hist, _ = np.histogram(r, bins=edges, density=True)
    panels[label] = dict(noise_p=p, step=s, members=members, n_ratios=int(r.size), mean=float(r.mean()),
                         se=float(r.std() / np.sqrt(r.size)), hist=hist.tolist(), ratios=r.tolist())
  return dict(step=step, edges=edges.tolist(), goe_mean=wigner.GOE_MEAN_SPACING_RATIO,
              poisson_mean=float(wigner.POISSON_MEAN_SPACING_RATIO), panels=panels)


def make_figure(run: Run, out_dir: str | pathlib.Path, *, step: int | None = None, columns: int = 2
                ) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt
  from matplotlib.lines import Line2D

  data = plotted_numbers(run, step)
  labels = list(data["panels"])
  edges = np.asarray(data["edges"])
  rs = np.linspace(0.0, 1.0, 200)
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(len(labels), columns, max_per_row=2 if columns == 1 else 4, sharey=True)
    for i, (ax, label) in enumerate(zip(axes, labels)):
      d = data["panels"][label]
      colour = style.SECONDARY_COLOUR if d["noise_p"] is None and label.startswith("init") else \
          style.regime_colour(label, i, d["noise_p"])
      ax.stairs(d["hist"], edges, fill=True, color=colour, alpha=0.55, lw=0)
      ax.plot(rs, goe_surmise(rs), color=style.THEORY_COLOUR, lw=1.0)
      ax.plot(rs, poisson_ratio(rs), color=style.THEORY_COLOUR, ls=":", lw=1.0)
      ax.text(0.03, 0.97, f"$\\langle r\\rangle$ = {d['mean']:.3f} $\\pm$ {d['se']:.3f}\n({d['n_ratios']} ratios)",
              transform=ax.transAxes, ha="left", va="top", fontsize=6.5)
      ax.set_ylim(0, 2.6)
      p = d["noise_p"]
      title = label if p is None else f"{label} (p = {p:g})"
      ax.set_title(title + ("" if label.startswith("init") else f", step {d['step']}"))
      ax.set_xlabel(r"spacing ratio $r$")
      ax.set_ylabel("density" if i % (2 if columns == 1 else 4) == 0 else "")
    handles = [Line2D([], [], color=style.THEORY_COLOUR, lw=1.0,
                      label=f"GOE surmise ($\\langle r\\rangle$ = {data['goe_mean']:.4f})"),
               Line2D([], [], color=style.THEORY_COLOUR, ls=":", lw=1.0,
                      label=f"Poisson ($\\langle r\\rangle$ = {data['poisson_mean']:.4f})")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False)
    style.suptitle(fig, f"Level-spacing ratios of all weight ESDs (central half), {run.name}", columns)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=[run.name], config=run.config,
                           plotted=data)
