"""Figure: the meso-scale curve, spectral metrics and held-out loss against the structure knob p and against the
measured entropy rate in bits per token; natural text on the same entropy axis when a run with it exists.

Input: one or more run folders (a sweep of ``data.noise_p`` and, optionally, a run whose regime is named
``natural...`` or has no ``noise_p``: it has no p, so on the p axis it appears as a horizontal dotted line, and on
the entropy axis as a point at its measured entropy rate ``entropy_rate_bits``).
Per member at the last snapshot (or ``step``): held-out loss in bits per token (``test_loss / ln 2``, the natural
companion of the entropy rate, which is the loss floor: dashed line), and from the stored ESDs
(``spectral.metrics``), either over all weight matrices (default: outliers summed, alpha and ``M x KS`` averaged) or
for one ``matrix``: TW-calibrated outlier count (``measure.LEVEL``), power-law alpha, bulk KS distance times ``M``.
Points: mean over a regime's members with error bars of one standard deviation (the ensemble spread).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from figures import inputs, measure, style
from models.run_folder import Run

NAME = "meso_curve"
INPUT = "runs"
DESCRIPTION = "held-out loss and spectral metrics vs noise p and vs entropy rate (natural text on the same axis)"
METRICS = (("test_loss_bits", "held-out loss (bits/token)"), ("n_outliers", "outliers (TW 1%)"),
           ("alpha", r"power-law $\alpha$"), ("m_ks", r"bulk KS $\times M$"))


def is_natural(member: dict) -> bool:
  return member.get("noise_p") is None or str(member["regime"]).startswith("natural")


def default_runs(runs_dir) -> list[Run]:
  """The default run (``inputs.resolve_run``) plus every other finished run that holds natural text."""
  main = inputs.resolve_run(runs_dir)
  out = [main]
  for path in inputs.finished_runs(runs_dir):
    if path.name == main.name:
      continue
    try:
      run = inputs.load_run(path)
    except inputs.RunFormatError:
      continue
    if any(is_natural(m) for m in run.members):
      out.append(run)
  return out


def member_points(run: Run, step: int | None, matrix: str | None, level: float) -> list[dict]:
  step = max(run.spectra) if step is None else step
  names = [matrix] if matrix is not None else sorted(run.spectra[step])
  per_matrix = {n: measure.member_metrics(run, step, n, level) for n in names}
  points = []
  for i, m in enumerate(run.members):
    steps, losses = run.metric("test_loss", m["index"])
    if step not in steps:
      raise KeyError(f"run {run.name}: no test_loss at step {step} for member {m['index']}")
    rows = [per_matrix[n][i] for n in names]
    dims = [min(run.info["matrices"][n]["shape"]) for n in names]
    points.append(dict(
        run=run.name, member=m["index"], regime=m["regime"], noise_p=None if is_natural(m) else m["noise_p"],
        entropy_rate_bits=m["entropy_rate_bits"], natural=is_natural(m),
        test_loss_bits=float(losses[list(steps).index(step)]) / math.log(2),
        n_outliers=int(sum(r["n_outliers"] for r in rows)),
        alpha=float(np.nanmean([r["alpha"] for r in rows])),
        m_ks=float(np.nanmean([d * r["mp_ks"] for d, r in zip(dims, rows)]))))
  return points


def plotted_numbers(runs: list[Run] | Run, step: int | None = None, matrix: str | None = None,
                    level: float = measure.LEVEL) -> dict:
  """Per member points and per regime means/standard deviations of every metric in ``METRICS``."""
  runs = [runs] if isinstance(runs, Run) else list(runs)
  points = [p for run in runs for p in member_points(run, step, matrix, level)]
  regimes = {}
  for p in points:
    key = f"{p['run']}/{p['regime']}" if len(runs) > 1 else p["regime"]
    regimes.setdefault(key, dict(regime=p["regime"], noise_p=p["noise_p"], natural=p["natural"],
                                 entropy_rate_bits=p["entropy_rate_bits"], members=[]))["members"].append(p)
  for r in regimes.values():
    for key, _ in METRICS:
      vals = np.asarray([p[key] for p in r["members"]], dtype=np.float64)
      r[f"{key}_mean"] = float(np.nanmean(vals))
      r[f"{key}_sd"] = float(np.nanstd(vals)) if vals.size > 1 else 0.0
    r["members"] = [p["member"] for p in r["members"]]
  aggregate = "one matrix" if matrix else "outliers summed, alpha and M x KS averaged over all weight matrices"
  return dict(step=step, matrix=matrix, aggregate=aggregate, level=level, points=points, regimes=regimes)


def make_figure(runs: list[Run] | Run, out_dir: str | pathlib.Path, *, step: int | None = None,
                matrix: str | None = None, columns: int = 2, level: float = measure.LEVEL) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt
  from matplotlib.lines import Line2D
  from matplotlib.ticker import MaxNLocator

  runs = [runs] if isinstance(runs, Run) else list(runs)
  data = plotted_numbers(runs, step, matrix, level)
  regs = data["regimes"]
  knob = sorted((r for r in regs.values() if not r["natural"]), key=lambda r: r["noise_p"])
  natural = [r for r in regs.values() if r["natural"]]
  axes_x = (("noise_p", "noise probability p"),
            ("entropy_rate_bits", "entropy rate (bits/token)" if columns == 2 else "H (bits/token)"))
  with plt.rc_context(style.RC):
    if columns == 2:
      fig, grid = plt.subplots(2, len(METRICS), figsize=(style.width_in(2), 4.3), squeeze=False)
      cell = lambda xi, mi: grid[xi][mi]
    else:
      fig, grid = plt.subplots(len(METRICS), 2, figsize=(style.width_in(1), 1.5 * len(METRICS) + 0.8),
                               squeeze=False)
      cell = lambda xi, mi: grid[mi][xi]
    for xi, (xkey, xlabel) in enumerate(axes_x):
      for mi, (key, ylabel) in enumerate(METRICS):
        ax = cell(xi, mi)
        if knob:
          xs = [r[xkey] for r in knob]
          ax.plot(xs, [r[f"{key}_mean"] for r in knob], color=style.SECONDARY_COLOUR, lw=0.8, zorder=1)
        for i, r in enumerate(knob):
          colour = style.regime_colour(r["regime"], i, r["noise_p"])
          ax.errorbar(r[xkey], r[f"{key}_mean"], yerr=r[f"{key}_sd"], fmt="o", color=colour, ms=4, capsize=2,
                      zorder=3)
        for r in natural:
          colour = style.regime_colour(r["regime"])
          if xkey == "noise_p":
            ax.axhline(r[f"{key}_mean"], color=colour, ls=":", lw=1.0)
          else:
            ax.errorbar(r[xkey], r[f"{key}_mean"], yerr=r[f"{key}_sd"], fmt="*", color=colour, ms=7, capsize=2,
                        zorder=3)
        if key == "test_loss_bits":
          if xkey == "entropy_rate_bits":
            pts = [r["entropy_rate_bits"] for r in regs.values()]
            lim = np.array([min(pts), max(pts)])
            ax.plot(lim, lim, color=style.THEORY_COLOUR, ls="--", lw=0.8, zorder=2)
          elif knob:
            ax.plot([r["noise_p"] for r in knob], [r["entropy_rate_bits"] for r in knob], color=style.THEORY_COLOUR,
                    ls="--", lw=0.8, zorder=2)
        if key == "n_outliers":
          ax.yaxis.set_major_locator(MaxNLocator(integer=True))
          ax.set_ylim(-0.3, max(1.0, ax.get_ylim()[1]))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"vs {'p' if xkey == 'noise_p' else 'entropy rate'}", fontsize=7)
    handles = [Line2D([], [], color=style.regime_colour(r["regime"], i, r["noise_p"]), marker="o", ls="",
                      label=r["regime"]) for i, r in enumerate(knob)]
    handles += [Line2D([], [], color=style.regime_colour(r["regime"]), marker="*", ms=7, ls=":", label=r["regime"])
                for r in natural]
    handles.append(Line2D([], [], color=style.THEORY_COLOUR, ls="--", lw=0.8, label="entropy floor"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 7 if columns == 2 else 3),
               frameon=False)
    what = data["matrix"].removesuffix(".kernel") if data["matrix"] else "all matrices"
    style.suptitle(fig, f"Meso-scale curve ({what}; mean $\\pm$ sd over seeds)"
                   + ("; H: entropy rate" if columns == 1 else ""), columns)
  names = [r.name for r in runs]
  config = runs[0].config if len(runs) == 1 else {r.name: r.config for r in runs}
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=names, config=config,
                           plotted=data)
