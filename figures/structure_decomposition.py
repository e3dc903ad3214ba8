"""Figure: the structure decomposition of ``dW = W - W0`` along the data knob (check ``noise_structure``).

Input: the stored result of the check ``noise_structure`` (``python -m theory_checks run noise_structure --quick``).
Three panels:
- the structure rank of ``dW`` summed over every weight matrix of a member, split by attribution into DC,
  positional, token and other directions (stacked bars, mean over seeds), per regime: noise (``p = 1``), the
  meso-scale (``p = 0.5``), the exact rule (``p = 0``) and natural text (regimes named ``natural_...``);
- the meso curve on the entropy axis: the learned count (token + other) and its excess over the matched ``p = 1``
  seed against the entropy rate over ``log2 V`` (exact for the affine chain; an LZMA upper bound for text), mean +- SE;
- the dynamics of the learned count at ``p = 0.5`` over training (and its excess over the matched noise seed).
Series read (``SERIES``): ``regime``, ``p``, ``natural``, ``entropy_norm``, ``total_<category>_mean`` for each of
``dc``, ``positional``, ``token``, ``other``; ``total_learned_mean``, ``total_learned_se``, ``total_excess_mean``,
``total_excess_se``; optionally ``text`` (the regime comes from a text run: its ``p = 1`` control is drawn apart
from the affine chain), ``dynamics_steps``, ``dynamics_learned_mean``, ``dynamics_learned_se``,
``dynamics_excess_mean``, ``dynamics_excess_se``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import inputs, style

NAME = "structure_decomposition"
INPUT = "check"
CHECK = "noise_structure"
CATEGORIES = ("dc", "positional", "token", "other")
REQUIRED = ("regime", "p", "natural", "entropy_norm", *(f"total_{c}_mean" for c in CATEGORIES), "total_learned_mean",
            "total_learned_se", "total_excess_mean", "total_excess_se")
OPTIONAL = ("text", "dynamics_steps", "dynamics_learned_mean", "dynamics_learned_se", "dynamics_excess_mean",
            "dynamics_excess_se")
SERIES = REQUIRED + OPTIONAL
DESCRIPTION = "structure rank of dW by attribution per regime, the meso curve on the entropy axis, spike dynamics"
BAR_REGIMES = ((1.0, "noise"), (0.5, "meso"), (0.0, "structured"))


def _floats(x) -> list[float]:
  return [float("nan") if v is None else float(v) for v in x]


def plotted_numbers(verdict: inputs.Verdict) -> dict:
  get = lambda k: inputs.series(verdict, k, figure=NAME)
  regimes = [str(r) for r in get("regime")]
  n = len(regimes)
  cols = {k: _floats(get(k)) for k in REQUIRED if k not in ("regime", "natural")}
  natural = [bool(x) for x in get("natural")]
  text = [bool(x) for x in verdict.series.get("text") or natural]
  for k, vals in cols.items():
    if len(vals) != n:
      raise inputs.VerdictFormatError(f"{CHECK}: series {k} must have one value per regime ({n}), got {len(vals)}")
  bars = []
  for p, label in BAR_REGIMES:
    hit = [i for i in range(n) if not text[i] and abs(cols["p"][i] - p) < 1e-9]
    if hit:
      bars.append(dict(label=f"{label} (p={p:g})", index=hit[0]))
  bars += [dict(label=regimes[i].replace("_", " "), index=i) for i in range(n) if natural[i]]
  stacks = {c: [cols[f"total_{c}_mean"][b["index"]] for b in bars] for c in CATEGORIES}
  if len(text) != n:
    raise inputs.VerdictFormatError(f"{CHECK}: series text must have one value per regime ({n}), got {len(text)}")
  out = dict(check=verdict.check, status=verdict.status, regimes=regimes, natural=natural, text=text,
             bar_labels=[b["label"] for b in bars], stacks=stacks, **cols)
  steps = verdict.series.get("dynamics_steps")
  if steps:
    out["dynamics"] = dict(steps=[int(s) for s in steps],
                           **{k: _floats(verdict.series[f"dynamics_{k}"]) for k in
                              ("learned_mean", "learned_se", "excess_mean", "excess_se")})
    out["rises_then_falls"] = verdict.measured.get("meso_spike_rises_then_falls")
  return out


def make_figure(verdict: inputs.Verdict, out_dir: str | pathlib.Path, *, columns: int = 2) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt

  d = plotted_numbers(verdict)
  colours = dict(dc=style.OKABE_ITO[7], positional=style.OKABE_ITO[2], token=style.OKABE_ITO[5],
                 other=style.OKABE_ITO[6])
  n_panels = 3 if "dynamics" in d else 2
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(n_panels, columns, max_per_row=2 if columns == 2 else 1,
                                 panel_height=2.4 if columns == 2 else 2.0, layout="constrained")
    ax = axes[0]
    x = np.arange(len(d["bar_labels"]))
    bottom = np.zeros(len(x))
    for c in CATEGORIES:
      vals = np.nan_to_num(np.asarray(d["stacks"][c], np.float64))
      ax.bar(x, vals, 0.7, bottom=bottom, color=colours[c], label=c)
      bottom += vals
    ax.set_xticks(x, d["bar_labels"], rotation=25, ha="right", fontsize=6)
    ax.set_xlabel("regime")
    ax.set_ylabel("structured directions of dW")
    ax.set_title("rank by attribution")
    ax.set_ylim(0, max(float(bottom.max()), 1.0) * 1.35)  # headroom for the legend above the bars
    ax.legend(frameon=False, fontsize=6, loc="upper center", ncol=4)

    ax = axes[1]
    h = np.asarray(d["entropy_norm"])
    nat, txt = np.asarray(d["natural"]), np.asarray(d["text"])
    ctrl = txt & ~nat  # a text run's p = 1 control
    for key, label, colour, marker in (("total_learned", "learned (token + other)", style.OKABE_ITO[5], "o"),
                                       ("total_excess", "excess over matched p = 1", style.OKABE_ITO[6], "s")):
      y, e = np.asarray(d[f"{key}_mean"]), np.nan_to_num(np.asarray(d[f"{key}_se"]))
      order = np.argsort(h[~txt])
      ax.errorbar(h[~txt][order], y[~txt][order], e[~txt][order], color=colour, marker=marker, ms=3, lw=1,
                  capsize=2, label=label + " (affine chain)")
      if nat.any():
        ax.errorbar(h[nat], y[nat], e[nat], color=colour, marker="*", ms=7, ls="none", capsize=2,
                    label=label + " (text)")
      if ctrl.any():
        ax.errorbar(h[ctrl], y[ctrl], e[ctrl], color=colour, marker="*", mfc="white", ms=7, ls="none", capsize=2,
                    label=label + " (text, p = 1)")
    ax.axhline(0.0, color=style.SECONDARY_COLOUR, lw=0.6, ls=":")
    ax.set_xlabel(r"entropy rate / $\log_2 V$")
    ax.set_ylabel("directions per member")
    ax.set_title("meso curve")
    ax.legend(frameon=False, fontsize=5.5)

    if "dynamics" in d:
      ax = axes[2]
      dyn = d["dynamics"]
      for key, label, colour in (("learned", "learned at p = 0.5", style.REGIME_COLOURS["meso"]),
                                 ("excess", "excess over matched p = 1", style.OKABE_ITO[6])):
        ax.errorbar(dyn["steps"], dyn[f"{key}_mean"], np.nan_to_num(dyn[f"{key}_se"]), color=colour, marker="o",
                    ms=3, lw=1, capsize=2, label=label)
      ax.axhline(0.0, color=style.SECONDARY_COLOUR, lw=0.6, ls=":")
      ax.set_xscale("log")
      style.tidy_log_axis(ax, "x")
      ax.set_xlabel("training step")
      ax.set_ylabel("directions per member")
      verdict_word = {True: "rises, falls", False: "no rise-fall", None: ""}[d.get("rises_then_falls")]
      ax.set_title("p = 0.5 over training" + (f": {verdict_word}" if verdict_word else ""))
      ax.legend(frameon=False, fontsize=6)
    style.suptitle(fig, f"Structure of dW = W - W0 along p [{d['status']}]", columns)
  runs, config = inputs.check_provenance(verdict)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=runs, config=config, plotted=d)
