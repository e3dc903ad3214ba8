"""Figure: structure rank of what a network learned against the rank k of the planted teacher.

Input: the stored result of the check ``learning_bbp``. For each planted rank ``k`` (one run of ``seeds`` members at
``theta = theta_rank``, well above the BBP threshold), the number of learned structured directions (not DC, not
positional) of the token-to-logit map and of ``dW`` of the embedding, unembedding and MLP matrices, per seed; the
prediction is the diagonal ``k``. Ranks at which the sign-flip test lacks power by construction are drawn hollow.
Series read (``SERIES``): ``ranks``, ``rank_judged``, ``rank_map_learned_by_seed`` and, optionally,
``rank_embed_learned_by_seed``, ``rank_unembed_learned_by_seed``, ``rank_mlp_in_learned_by_seed``,
``rank_mlp_out_learned_by_seed`` (each a list over ``ranks`` of per-seed counts), ``theta_rank``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import inputs, style

NAME = "structure_rank_vs_k"
INPUT = "check"
CHECK = "learning_bbp"
MATRICES = ("map", "embed", "unembed", "mlp_in", "mlp_out")
SERIES = ("ranks", "rank_judged", "theta_rank", *(f"rank_{m}_learned_by_seed" for m in MATRICES))
DESCRIPTION = "structure rank of the learned map and of dW against the planted teacher rank k (check learning_bbp)"


def plotted_numbers(verdict: inputs.Verdict) -> dict:
  get = lambda k, required=True: (inputs.series(verdict, k, figure=NAME) if required else verdict.series.get(k))
  ranks = [int(k) for k in get("ranks")]
  judged = [bool(x) for x in get("rank_judged")]
  counts = {}
  for m in MATRICES:
    x = get(f"rank_{m}_learned_by_seed", m == "map")
    if x is not None:
      if len(x) != len(ranks):
        raise inputs.VerdictFormatError(f"{CHECK}: rank_{m}_learned_by_seed must have one list per rank")
      counts[m] = [[int(c) for c in row] for row in x]
  return dict(check=verdict.check, status=verdict.status, ranks=ranks, judged=judged, counts=counts,
              theta_rank=get("theta_rank", False), rank_status=verdict.measured.get("rank_status"))


def make_figure(verdict: inputs.Verdict, out_dir: str | pathlib.Path, *, columns: int = 2) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt

  d = plotted_numbers(verdict)
  ks = np.asarray(d["ranks"])
  colours = dict(map=style.OKABE_ITO[5], embed=style.OKABE_ITO[3], unembed=style.OKABE_ITO[6],
                 mlp_in=style.OKABE_ITO[1], mlp_out=style.OKABE_ITO[7])
  labels = dict(map="token-to-logit map", embed=r"$dW$ embedding", unembed=r"$dW$ unembedding",
                mlp_in=r"$dW$ MLP in", mlp_out=r"$dW$ MLP out")
  groups = [[m for m in ("map", "embed", "unembed") if m in d["counts"]],
            [m for m in ("mlp_in", "mlp_out") if m in d["counts"]]]
  groups = [g for g in groups if g]
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(len(groups), columns, max_per_row=2 if columns == 2 else 1,
                                 panel_height=2.4 if columns == 2 else 1.9)
    for ax, mats, title in zip(axes, groups, ("token-side: map and its factors", "MLP (model side)")):
      width = 0.8 / len(mats)
      for i, m in enumerate(mats):
        off = (i - (len(mats) - 1) / 2) * width
        for j, (k, row) in enumerate(zip(ks, d["counts"][m])):
          row = np.asarray(row, np.float64)
          jitter = np.linspace(-0.4, 0.4, row.size) * width
          face = colours[m] if d["judged"][j] else "white"
          ax.scatter(k + off + jitter, row, s=10, facecolors=face, edgecolors=colours[m], lw=0.7,
                     label=labels[m] if j == 0 else None, zorder=3)
          ax.plot([k + off - width / 2, k + off + width / 2], [row.mean()] * 2, color=colours[m], lw=1.2)
      for j, k in enumerate(ks):
        ax.plot([k - 0.45, k + 0.45], [k, k], color=style.THEORY_COLOUR, lw=0.9, ls="--",
                label="prediction: rank = k" if j == 0 else None)
      ax.set_xticks(ks)
      ax.set_xlabel("planted teacher rank k")
      ax.set_ylabel("learned structured directions")
      ax.set_title(title)
      ax.legend(frameon=False, fontsize=6.5, loc="upper left" if ax is axes[0] else "center right")
    theta = d["theta_rank"]
    note = "" if all(d["judged"]) else ", hollow: underpowered"
    style.suptitle(fig, "Structure rank vs planted rank k" + (f" at theta = {theta:g}" if theta is not None else "") +
                   f" (dots: seeds{note}) [{d['status']}]", columns)
  runs, config = inputs.check_provenance(verdict)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=runs, config=config, plotted=d)
