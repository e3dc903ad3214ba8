"""Figure: each early-warning signal's trajectory aligned at the grokking jump, with ensemble bands and alarms.

Input: the stored result of the check ``early_warning`` (``python -m theory_checks early_warning --quick``). One panel
per signal. Held-out grokking runs are aligned at the step where their held-out accuracy first reaches 50%
(offset 0): median (line) and interquartile band. Held-out controls (no weight decay, random labels, small train
fraction), which have no jump, are drawn against the same offset axis shifted by the grokking runs' median ``t50``:
median and interquartile band. The calibrated alarm threshold (set on calibration controls at the check's
false-positive rate) is a horizontal line; each grokking run's alarm is a tick at its offset from the jump (left of
0: before the jump).
Series read (``SERIES``): ``signals`` (names, in order), ``aligned`` (name -> ``offset``, ``pos_median``,
``pos_q25``, ``pos_q75``, ``ctrl_steps``, ``ctrl_median``, ``ctrl_q25``, ``ctrl_q75``, ``threshold``,
``alarm_offsets``, ``t50_median``), ``fpr``; optional ``tasks`` (a second task, e.g. group composition: name ->
``title``, ``signals``, ``aligned``, ``fpr``), whose panels follow the modular task's, titled ``<task>: <signal>``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from figures import inputs, style

NAME = "early_warning"
INPUT = "check"
CHECK = "early_warning"
SERIES = ("signals", "aligned", "fpr")
KEYS = ("offset", "pos_median", "pos_q25", "pos_q75", "ctrl_steps", "ctrl_median", "ctrl_q25", "ctrl_q75",
        "threshold", "alarm_offsets", "t50_median")
DESCRIPTION = "early-warning signals aligned at the grokking jump, controls, calibrated alarms (check early_warning)"


def _panels(names, aligned, where: str) -> dict:
  out = {}
  for n in names:
    if n not in aligned:
      raise inputs.VerdictFormatError(f"{CHECK}: {where} has no entry for signal {n!r}")
    missing = [k for k in KEYS if k not in aligned[n]]
    if missing:
      raise inputs.VerdictFormatError(f"{CHECK}: {where}[{n!r}] misses {missing}")
    out[n] = {k: aligned[n][k] for k in KEYS}
  return out


def plotted_numbers(verdict: inputs.Verdict) -> dict:
  names = list(inputs.series(verdict, "signals", figure=NAME))
  aligned = inputs.series(verdict, "aligned", figure=NAME)
  out = dict(check=verdict.check, status=verdict.status, fpr=float(inputs.series(verdict, "fpr", figure=NAME)),
             signals=names, panels=_panels(names, aligned, "aligned"))
  tasks = verdict.series.get("tasks") or {}
  if tasks:
    out["tasks"] = {}
  for task, t in tasks.items():
    missing = [k for k in ("signals", "aligned", "fpr") if k not in t]
    if missing:
      raise inputs.VerdictFormatError(f"{CHECK}: tasks[{task!r}] misses {missing}")
    out["tasks"][task] = dict(title=t.get("title", task), fpr=float(t["fpr"]), signals=list(t["signals"]),
                              panels=_panels(t["signals"], t["aligned"], f"tasks[{task!r}].aligned"))
  return out


def _arr(x):
  return np.asarray([np.nan if v is None else v for v in x], np.float64) if x else np.zeros(0)


def make_figure(verdict: inputs.Verdict, out_dir: str | pathlib.Path, *, columns: int = 2) -> list[pathlib.Path]:
  import matplotlib.pyplot as plt

  d = plotted_numbers(verdict)
  blue, orange = style.OKABE_ITO[5], style.OKABE_ITO[1]
  tasks = d.get("tasks", {})
  panels = [(name if not tasks else f"modular: {name}", d["panels"][name], d["fpr"]) for name in d["signals"]]
  panels += [(f"{task}: {name}", t["panels"][name], t["fpr"]) for task, t in tasks.items() for name in t["signals"]]
  with plt.rc_context(style.RC):
    fig, axes = style.panel_grid(max(len(panels), 1), columns, max_per_row=3 if columns == 2 else 2,
                                 panel_height=1.7)
    for ax, (title, p, fpr) in zip(axes, panels):
      off = _arr(p["offset"])
      if len(p["pos_median"]):
        ax.fill_between(off, _arr(p["pos_q25"]), _arr(p["pos_q75"]), color=blue, alpha=0.25, lw=0,
                        label="grokking: IQR")
        ax.plot(off, _arr(p["pos_median"]), color=blue, lw=1.0, label="grokking: median")
      if len(p["ctrl_median"]) and p["t50_median"] is not None:
        cx = _arr(p["ctrl_steps"]) - p["t50_median"]
        sel = (cx >= off.min()) & (cx <= off.max()) if off.size else np.ones(cx.size, bool)
        ax.fill_between(cx[sel], _arr(p["ctrl_q25"])[sel], _arr(p["ctrl_q75"])[sel], color=orange, alpha=0.2, lw=0,
                        label="controls: IQR")
        ax.plot(cx[sel], _arr(p["ctrl_median"])[sel], color=orange, lw=0.9, ls="--", label="controls: median")
      if p["threshold"] is not None:
        ax.axhline(p["threshold"], color=style.THEORY_COLOUR, lw=0.8, ls=":",
                   label=f"threshold (FPR {fpr:g})")
      for a in p["alarm_offsets"]:
        ax.axvline(a, ymin=0.0, ymax=0.08, color=style.OKABE_ITO[6], lw=1.0)
      ax.plot([], [], "|", color=style.OKABE_ITO[6], label="alarms")
      ax.axvline(0.0, color=style.SECONDARY_COLOUR, lw=0.6)
      ax.set_title(title)
      ax.set_xlabel("steps from 50% held-out accuracy")
    style.shared_legend(fig, axes, columns)
    style.suptitle(fig, f"Early warning of grokking: signals aligned at the jump, alarms at a fixed FPR "
                        f"[{d['status']}]", columns)
  runs, config = inputs.check_provenance(verdict)
  return style.save_figure(fig, pathlib.Path(out_dir) / NAME, figure=NAME, runs=runs, config=config, plotted=d)
