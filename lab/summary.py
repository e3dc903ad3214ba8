"""The main job's printed summary, computed from a run folder only.

Per regime: final training and held-out loss (mean +- sd over seeds, nats) beside the entropy floor
(entropy rate x ln 2); per weight matrix and regime at the last snapshot: ``lambda_max / lambda_+`` (largest ESD
eigenvalue over the MP bulk edge, sigma^2 fitted by the median method) and the number of eigenvalues beyond the edge,
both averaged over seeds, and the number of eigenvalues beyond the Tracy-Widom threshold at a 1% false-alarm level
(``spectral.outliers.mp_outliers``: Johnstone-Ma centring and scaling, widened for the estimated sigma^2).
"""

from __future__ import annotations

import math

import numpy as np

from models.run_folder import Run
from spectral.outliers import mp_outliers

TW_LEVEL = 0.01


def spectral_summary(run: Run, step: int | None = None) -> dict[str, dict[str, dict[str, float]]]:
  """matrix -> regime -> {"max_over_edge", "n_beyond_edge", "n_outliers_tw"} (means over the regime's members)."""
  step = max(run.spectra) if step is None else step
  out: dict[str, dict[str, dict[str, list]]] = {}
  for name, ev_members in sorted(run.spectra[step].items()):
    shape = tuple(run.info["matrices"][name]["shape"])
    ev_all = np.asarray(ev_members, np.float64)
    res = mp_outliers(ev_all, shape, level=TW_LEVEL)
    for m in run.members:
      i = m["index"]
      ev, edge = ev_all[i], res.edge[i]
      cell = out.setdefault(name, {}).setdefault(m["regime"], {"max_over_edge": [], "n_beyond_edge": [],
                                                               "n_outliers_tw": []})
      cell["max_over_edge"].append(ev.max() / edge)
      cell["n_beyond_edge"].append(float(np.sum(ev > edge)))
      cell["n_outliers_tw"].append(float(res.n_outliers[i]))
  return {n: {r: {k: float(np.mean(v)) for k, v in c.items()} for r, c in regs.items()} for n, regs in out.items()}


def loss_summary(run: Run) -> dict[str, dict[str, float]]:
  """regime -> final train/test loss mean and sd over members, and the entropy floor in nats."""
  out: dict[str, dict[str, list]] = {}
  for m in run.members:
    cell = out.setdefault(m["regime"], {"train": [], "test": [], "floor": m["entropy_rate_bits"] * math.log(2)})
    cell["train"].append(run.metric("train_loss", m["index"])[1][-1])
    cell["test"].append(run.metric("test_loss", m["index"])[1][-1])
  return {r: dict(train_mean=float(np.mean(c["train"])), train_sd=float(np.std(c["train"])),
                  test_mean=float(np.mean(c["test"])), test_sd=float(np.std(c["test"])), floor=c["floor"])
          for r, c in out.items()}


def format_summary(run: Run) -> str:
  losses = loss_summary(run)
  spectra = spectral_summary(run)
  regimes = list(losses)
  step = max(run.spectra)
  w = 26
  lines = [f"Run {run.name}: {len(run.members)} members, step {step}", "",
           "regime".ljust(12) + "train loss".rjust(18) + "test loss".rjust(18) + "entropy floor".rjust(16)]
  lines.append("".ljust(12) + "(nats/token)".rjust(18) + "(nats/token)".rjust(18) + "(nats/token)".rjust(16))
  for r, s in losses.items():
    lines.append(r.ljust(12) + f"{s['train_mean']:.4f} +- {s['train_sd']:.4f}".rjust(18)
                 + f"{s['test_mean']:.4f} +- {s['test_sd']:.4f}".rjust(18) + f"{s['floor']:.4f}".rjust(16))
  lines.append("(bits/token = nats/token / ln 2 = nats/token x 1.4427; the figures use bits/token)")
  lines += ["", "lambda_max / MP edge  |  #eigenvalues beyond the edge  |  #outliers beyond the Tracy-Widom "
            f"threshold at {TW_LEVEL:.0%} (means over seeds)",
            "matrix".ljust(w) + "".join(r.rjust(22) for r in regimes)]
  for name, regs in spectra.items():
    lines.append(name.ljust(w) + "".join(
        f"{regs[r]['max_over_edge']:.2f} | {regs[r]['n_beyond_edge']:.1f} | {regs[r]['n_outliers_tw']:.1f}".rjust(22)
        for r in regimes))
  return "\n".join(lines)
