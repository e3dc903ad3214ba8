"""Figure: squared singular values of input-output Jacobians at several depths against Fuss-Catalan and isometry.

Input: the stored result of the Jacobian check (``CHECK``; ``python -m theory_checks jacobian_spectra --quick``),
``<runs>/checks/jacobian_spectra.json``. Convention (``spectral.free_probability``): ``J = W_L ... W_1``,
square ``N x N`` weights of variance ``1/N``; the squared singular values of ``J`` follow Fuss-Catalan with parameter
``L`` (Gaussian weights); orthogonal weights make ``J`` an isometry (every squared singular value 1).
Series read (``SERIES``, as ``theory_checks.jacobian_spectra`` writes them):
- ``depths``: the depths ``L`` (D,);
- ``linear_sq_sv_depth_<L>`` for each depth: squared singular values of ``J`` for a Gaussian deep linear network;
- ``tanh_sq_sv_depth_<L>`` for each depth: the same for a tanh network at criticality (``sigma_w`` critical, input
  at ``q*``), drawn as an outline;
- orthogonal networks: the largest ``|s - 1|`` from the ``details`` rows with ``part == "orthogonal_isometry"``.
One panel per depth: the density of ``log10 s^2`` (so the Fuss-Catalan singularity at 0 stays visible), the
prediction transformed the same way (``p(x) x ln 10``), and the isometry as a vertical line at ``s^2 = 1``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import inputs, style
from spectral import free_probability as fp

NAME = "jacobian_spectra"
INPUT = "check"
CHECK = "jacobian_spectra"
SERIES = ("depths", "linear_sq_sv_depth_<L>", "tanh_sq_sv_depth_<L>")  # <L>: each of the depths
DESCRIPTION = "Jacobian squared singular values vs Fuss-Catalan / isometry at several depths (Jacobian check)"


def _per_depth(verdict: inputs.Verdict, prefix: str, depths: list[int]) -> list[np.ndarray]:
  names = [f"{prefix}_sq_sv_depth_{d}" for d in depths]
  return [inputs.as_float_array(inputs.series(verdict, n, figure=NAME), n).ravel() for n in names]


def plotted_numbers(verdict: inputs.Verdict, bins: int = 30) -> dict:
  depths = [int(d) for d in inputs.as_float_array(inputs.series(verdict, "depths", figure=NAME), "depths").ravel()]
  gauss = _per_depth(verdict, "linear", depths)
  tanh = _per_depth(verdict, "tanh", depths)
  orth_dev = {int(r["depth"]): r["measured"] for r in verdict.details
              if isinstance(r, dict) and r.get("part") == "orthogonal_isometry" and "depth" in r}
  panels = []
  for i, (depth, s2) in enumerate(zip(depths, gauss)):
    s2 = s2[s2 > 0]
    edge = fp.fuss_catalan_edge(depth)
    lo = min(np.log10(s2.min()), -3.0)
    hi = max(np.log10(s2.max()), np.log10(edge)) + 0.05
    edges = np.linspace(lo, hi, bins + 1)
    hist, _ = np.histogram(np.log10(s2), bins=edges, density=True)
    lg = np.linspace(lo, np.log10(edge), 300)
    x = 10.0**lg
    panel = dict(depth=depth, sq_singular_values=s2.tolist(), edges=edges.tolist(), hist=hist.tolist(),
                 mean=float(s2.mean()), fc_mean=fp.fuss_catalan_moment(1, depth),
                 second_moment=float(np.mean(s2**2)), fc_second_moment=fp.fuss_catalan_moment(2, depth),
                 theory_log10_x=lg.tolist(), theory_density=(fp.fuss_catalan_pdf(x, depth) * x * np.log(10)).tolist())
    if depth in orth_dev:
      panel["orthogonal_max_deviation"] = float(orth_dev[depth])
    t2 = tanh[i][tanh[i] > 0]
    th, _ = np.histogram(np.log10(t2), bins=edges, density=True)
    panel.update(tanh_sq_singular_values=t2.tolist(), tanh_hist=th.tolist(), tanh_mean=float(t2.mean()))
    panels.append(panel)
  return dict(check=verdict.check, status=verdict.status, panels=panels)


def make_figure(verdict: inputs.Verdict, out_dir: str | pathlib.Path, *, columns: int = 2) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt
  from matplotlib.lines import Line2D
  from matplotlib.patches import Patch

  data = plotted_numbers(verdict)
  panels = data["panels"]
  blue = style.OKABE_ITO[5]
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(len(panels), columns, max_per_row=2 if columns == 1 else 4)
    for i, (ax, p) in enumerate(zip(axes, panels)):
      ax.stairs(p["hist"], p["edges"], fill=True, color=blue, alpha=0.5, lw=0)
      if "tanh_hist" in p:
        ax.stairs(p["tanh_hist"], p["edges"], color=style.OKABE_ITO[3], lw=1.0)
      ax.plot(p["theory_log10_x"], p["theory_density"], color=style.THEORY_COLOUR, lw=1.0)
      ax.axvline(0.0, color=style.OKABE_ITO[6], ls="--", lw=1.0)
      text = (f"mean {p['mean']:.2f} (FC {p['fc_mean']:.0f})\n"
              f"$m_2$ {p['second_moment']:.2f} (FC {p['fc_second_moment']:.0f})")
      if p.get("orthogonal_max_deviation") is not None:
        text += f"\northogonal max$|s-1|$ {p['orthogonal_max_deviation']:.0e}"
      ax.text(0.03, 0.97, text, transform=ax.transAxes, ha="left", va="top", fontsize=6)
      ax.set_title(f"depth L = {p['depth']}")
      ax.set_xlabel(r"$\log_{10} s^2$" + (r" ($s$: singular value of $J$)" if columns == 2 else ""))
      ax.set_ylabel(r"density of $\log_{10} s^2$" if i % (2 if columns == 1 else 4) == 0 else "")
      ax.set_ylim(0, max(max(p["hist"]), max(p.get("tanh_hist", [0])), max(p["theory_density"])) * 1.45)
    handles = [Patch(color=blue, alpha=0.5, lw=0, label="Gaussian deep linear (measured)"),
               Line2D([], [], color=style.THEORY_COLOUR, lw=1.0, label="Fuss-Catalan(L)"),
               Line2D([], [], color=style.OKABE_ITO[6], ls="--", lw=1.0, label="orthogonal: isometry $s^2 = 1$")]
    if any("tanh_hist" in p for p in panels):
      handles.append(Line2D([], [], color=style.OKABE_ITO[3], lw=1.0, label="tanh at criticality (measured)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles) if columns == 2 else 1,
               frameon=False)
    style.suptitle(fig, f"Jacobian spectra of deep linear networks at initialisation [{data['status']}]", columns)
  runs, config = inputs.check_provenance(verdict)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=runs, config=config, plotted=data)
