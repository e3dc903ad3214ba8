"""Figure: the ESD of one weight matrix per data regime at one step, against the fitted Marchenko-Pastur density.

One panel per regime; eigenvalues pooled over the regime's seeds; MP(q, sigma^2) with sigma^2 fitted per member by
the median method (Gavish & Donoho 2014) and averaged; the bulk edge is marked and eigenvalues beyond it are drawn
as ticks so spikes stand out.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import style
from models.run_folder import Run
from spectral.esd import aspect_ratio
from spectral.marchenko_pastur import fit_mp_sigma2, mp_edges, mp_pdf

NAME = "esd_by_regime"


def plotted_numbers(run: Run, matrix: str, step: int) -> dict:
  """The numbers the figure draws, per regime (also written to the sidecar JSON)."""
  if step not in run.spectra:
    raise KeyError(f"run {run.name}: no snapshot at step {step}; available {sorted(run.spectra)}")
  if matrix not in run.spectra[step]:
    raise KeyError(f"run {run.name}: no matrix {matrix!r}; available {sorted(run.spectra[step])}")
  shape = run.info["matrices"][matrix]["shape"]
  q = aspect_ratio(shape)
  out = {}
  for m in run.members:
    ev = run.spectra[step][matrix][m["index"]].astype(np.float64)
    r = out.setdefault(m["regime"], dict(noise_p=m["noise_p"], eigenvalues=[], sigma2=[]))
    r["eigenvalues"].extend(ev.tolist())
    r["sigma2"].append(fit_mp_sigma2(ev, q))
  for r in out.values():
    r["sigma2_mean"] = float(np.mean(r["sigma2"]))
    r["mp_edge"] = mp_edges(q, r["sigma2_mean"])[1]
    r["n_beyond_edge"] = int(np.sum(np.asarray(r["eigenvalues"]) > r["mp_edge"]))
  return dict(matrix=matrix, step=step, shape=shape, q=q, regimes=out)


def make_figure(run: Run, out_dir: str | pathlib.Path, *, matrix: str = "blocks.0.mlp_out.kernel",
                step: int | None = None) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt

  step = max(run.spectra) if step is None else step
  data = plotted_numbers(run, matrix, step)
  regimes = list(data["regimes"])
  with plt.rc_context(style.RC):
    fig, axes = plt.subplots(1, len(regimes), figsize=(style.TWO_COLUMN_IN, 2.2), squeeze=False)
    for i, (ax, regime) in enumerate(zip(axes[0], regimes)):
      r = data["regimes"][regime]
      ev = np.asarray(r["eigenvalues"])
      colour = style.regime_colour(regime, i)
      lo, hi = mp_edges(data["q"], r["sigma2_mean"])
      bulk = ev[ev <= hi * 1.5]
      ax.hist(bulk, bins=40, density=True, color=colour, alpha=0.6, label="ESD")
      xs = np.linspace(max(lo * 0.9, 1e-12), hi * 1.05, 400)
      ax.plot(xs, mp_pdf(xs, data["q"], r["sigma2_mean"]), color=style.THEORY_COLOUR, lw=1.0,
              label=f"MP, $\\sigma^2$={r['sigma2_mean']:.3g}")
      ax.axvline(hi, color=style.THEORY_COLOUR, ls="--", lw=0.8, label="bulk edge $\\lambda_+$")
      outliers = ev[ev > hi]
      if outliers.size:
        ax.plot(outliers, np.zeros_like(outliers), "|", color=colour, ms=12, mew=1.2,
                label=f"{outliers.size} beyond edge")
      ax.set_title(f"{regime} (p = {r['noise_p']:g})")
      ax.set_xlabel("eigenvalue $\\lambda$ of $W^TW/N$")
      ax.set_ylabel("density" if i == 0 else "")
      ax.legend(frameon=False, loc="upper right")
    fig.suptitle(f"{matrix}, step {step}")
  return style.save_figure(fig, pathlib.Path(out_dir) / f"{NAME}", figure=NAME, runs=[run.name],
                           config=run.config, plotted=data)
