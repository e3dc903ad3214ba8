"""One shared style for every paper figure: sizes, a colour-blind-safe palette, fixed colours per regime, saving
with provenance (run, config hash, package version) in the file metadata and a sidecar JSON of the plotted numbers."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
REGIME_COLOURS = {"noise": "#D55E00", "meso": "#E69F00", "structured": "#0072B2", "natural": "#009E73"}
# A regime without one of the names above is coloured by its noise probability p, so the same p has the same colour
# in every figure and every run (p = 1 noise vermillion, p = 0.5 orange, p = 0 blue, as the named regimes).
P_COLOURS = ((1.0, "#D55E00"), (0.75, "#CC79A7"), (0.5, "#E69F00"), (0.25, "#56B4E9"), (0.0, "#0072B2"))
THEORY_COLOUR = "#000000"
SECONDARY_COLOUR = "#777777"  # a second reference curve (e.g. Poisson beside GOE)
ONE_COLUMN_IN = 3.4
TWO_COLUMN_IN = 7.0
PANEL_HEIGHT_IN = 2.0

RC = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False, "pdf.fonttype": 42,
    "ps.fonttype": 42, "savefig.dpi": 200, "figure.constrained_layout.use": True,
}


def regime_colour(regime: str, index: int = 0, noise_p: float | None = None) -> str:
  """Fixed colour of a regime: by name (noise, meso, structured, natural), else by its noise probability ``p``
  (nearest of ``P_COLOURS`` within 0.05), else the Okabe-Ito colour number ``index + 1``."""
  if regime in REGIME_COLOURS:
    return REGIME_COLOURS[regime]
  if regime.startswith("natural"):
    return REGIME_COLOURS["natural"]
  if noise_p is not None:
    p, colour = min(P_COLOURS, key=lambda pc: abs(pc[0] - noise_p))
    if abs(p - noise_p) <= 0.05:
      return colour
  return OKABE_ITO[(index + 1) % len(OKABE_ITO)]


def width_in(columns: int) -> float:
  """Figure width in inches for a one- or two-column paper layout."""
  if columns not in (1, 2):
    raise ValueError(f"columns: expected 1 or 2, got {columns!r}")
  return ONE_COLUMN_IN if columns == 1 else TWO_COLUMN_IN


def panel_grid(n_panels: int, columns: int = 2, *, max_per_row: int | None = None, panel_height: float = 0,
               **kwargs):
  """A figure with ``n_panels`` axes in rows (at most 2 per row in one column, 4 in two columns by default).

  Returns ``(fig, axes)`` with ``axes`` a flat list of the ``n_panels`` used axes (spare grid cells are removed).
  """
  import numpy as np

  per_row = max_per_row or (2 if columns == 1 else 4)
  ncols = min(n_panels, per_row)
  nrows = -(-n_panels // ncols)
  height = (panel_height or (1.6 if columns == 1 else PANEL_HEIGHT_IN)) * nrows + 0.35
  fig, axes = plt.subplots(nrows, ncols, figsize=(width_in(columns), height), squeeze=False, **kwargs)
  flat = list(np.ravel(axes))
  for ax in flat[n_panels:]:
    ax.remove()
  return fig, flat[:n_panels]


def config_hash(config: dict[str, Any]) -> str:
  return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def package_version() -> str:
  try:
    return importlib.metadata.version("spectral-lab")
  except importlib.metadata.PackageNotFoundError:
    return "0+unknown"


def panel_labels(fig) -> list[dict[str, str]]:
  """Title, axis labels and scales of every visible panel (written to the sidecar's ``layout``)."""
  return [dict(title=ax.get_title(), xlabel=ax.get_xlabel(), ylabel=ax.get_ylabel(), xscale=ax.get_xscale(),
               yscale=ax.get_yscale()) for ax in fig.axes if ax.get_visible() and ax.axison]


def _texts(fig):
  out = []
  if fig._suptitle is not None and fig._suptitle.get_text():
    out.append(("suptitle", fig._suptitle))
  for i, ax in enumerate(fig.axes):
    if not (ax.get_visible() and ax.axison):
      continue
    for what, t in (("title", ax.title), ("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label)):
      if t.get_text() and t.get_visible():
        out.append((f"axes{i}.{what}", t))
    for axis, name in ((ax.xaxis, "xtick"), (ax.yaxis, "ytick")):
      for tick in axis._update_ticks():  # only the ticks inside the view limits, which are the ones drawn
        for t in (tick.label1, tick.label2):
          if t.get_text() and t.get_visible():
            out.append((f"axes{i}.{name}", t))
    for t in ax.texts:
      if t.get_text() and t.get_visible():
        out.append((f"axes{i}.text", t))
  return out


def text_overlaps(fig) -> list[str]:
  """Pairs of text labels (titles, axis labels, tick labels, annotations, suptitle) whose boxes intersect, and
  legends covering another panel's labels. Call after ``fig.canvas.draw()``. Written to the sidecar; tests assert
  it is empty."""
  renderer = fig.canvas.get_renderer()
  boxes = []
  for name, t in _texts(fig):
    try:
      bb = t.get_window_extent(renderer)
    except RuntimeError:
      continue
    if bb.width > 0 and bb.height > 0:
      boxes.append((name, t.get_text(), bb.shrunk(1.0, 0.9)))
  legends = [("figlegend", lg.get_window_extent(renderer)) for lg in fig.legends]
  legends += [(f"axes{i}.legend", ax.get_legend().get_window_extent(renderer)) for i, ax in enumerate(fig.axes)
              if ax.get_legend() is not None]
  out = []
  frame = fig.bbox
  for n, t, b in boxes + [(ln, "legend", lb) for ln, lb in legends]:
    if b.x0 < frame.x0 - 1 or b.y0 < frame.y0 - 1 or b.x1 > frame.x1 + 1 or b.y1 > frame.y1 + 1:
      out.append(f"{n} {t!r} is cut off by the figure edge")
  for i in range(len(boxes)):
    for j in range(i + 1, len(boxes)):
      (n1, t1, b1), (n2, t2, b2) = boxes[i], boxes[j]
      if b1.overlaps(b2):
        out.append(f"{n1} {t1!r} overlaps {n2} {t2!r}")
  for ln, lb in legends:
    for n, t, b in boxes:
      if lb.overlaps(b):
        out.append(f"{ln} overlaps {n} {t!r}")
  return out


def save_figure(fig, out_stem: str | pathlib.Path, *, figure: str, runs: list[str], config: dict[str, Any],
                plotted: dict[str, Any]) -> list[pathlib.Path]:
  """Write ``out_stem.pdf``, ``out_stem.png`` and ``out_stem.json`` (provenance + exact plotted numbers)."""
  out_stem = pathlib.Path(out_stem)
  out_stem.parent.mkdir(parents=True, exist_ok=True)
  provenance = dict(figure=figure, runs=runs, config_hash=config_hash(config), package_version=package_version())
  subject = json.dumps(provenance, sort_keys=True)
  pdf, png, side = (out_stem.with_suffix(s) for s in (".pdf", ".png", ".json"))
  with plt.rc_context(RC):  # savefig reads pdf.fonttype etc. at save time
    fig.canvas.draw()
    layout = dict(panels=panel_labels(fig), text_overlaps=text_overlaps(fig))
    fig.savefig(pdf, metadata={"Title": figure, "Subject": subject, "Creator": "spectral-lab"})
    fig.savefig(png, metadata={"Title": figure, "Description": subject, "Software": "spectral-lab"})
  plt.close(fig)
  side.write_text(json.dumps(dict(provenance=provenance, layout=layout, plotted=plotted), indent=2) + "\n")
  return [pdf, png, side]


def shared_legend(fig, axes, columns: int = 2) -> None:
  """One legend below all panels, each label once (the first handle drawn with it)."""
  handles = {}
  for ax in axes:
    for h, lab in zip(*ax.get_legend_handles_labels()):
      handles.setdefault(lab, h)
  fig.legend(list(handles.values()), list(handles), loc="outside lower center", frameon=False,
             ncol=4 if columns == 2 else 2, fontsize=6.5)


def suptitle(fig, text: str, columns: int = 2) -> None:
  """A figure title wrapped to the column width (about 42 characters per line in one column, 110 in two)."""
  import textwrap

  width = 42 if columns == 1 else 110
  fig.suptitle("\n".join(textwrap.wrap(text, width, break_long_words=False)))


def tidy_log_axis(ax, axis: str = "both") -> None:
  """Major decade labels only on log axes (minor labels such as 2x10^-3 collide on narrow panels)."""
  from matplotlib.ticker import LogLocator, NullFormatter

  for name in ("x", "y") if axis == "both" else (axis,):
    a = ax.xaxis if name == "x" else ax.yaxis
    if a.get_scale() == "log":
      a.set_major_locator(LogLocator(base=10, numticks=6))
      a.set_minor_formatter(NullFormatter())
