"""One self-contained HTML report of an analysis (``python -m spectral analyze ... --report PATH``).

Every image is a PNG embedded as base64, so the file can be mailed or opened offline. Sections:

1. **Overview**: per layer and per kind of matrix (the name with its layer index replaced by ``*``), the power-law
   ``alpha`` (with the entry-shuffled baseline dashed when ``--randomize`` ran), the Tracy-Widom outlier count and,
   when the table has a ``structure_rank`` column (``spectral.structure``, when installed), the structure rank beside
   any ``structure_rank_*`` companion columns of its null; without that column the panel is left out and the report
   says so.
2. **Per layer**: one figure per layer (and one for matrices without a layer index: embeddings, lm-head), a panel
   per matrix: the ESD as a density histogram on log-log axes (log-spaced bins), the Marchenko-Pastur density with
   the fitted ``mp_sigma2`` and ``q = M / N``, the power-law fit ``p(x) = (n_tail / M) (alpha - 1) / xmin
   (x / xmin)^-alpha`` on ``[xmin, lambda_max]`` (the tail's share of the ESD), the Tracy-Widom threshold, and the
   shuffled baseline's ESD as a grey outline. Per-head rows are summarised as alpha per head, not drawn one by one.
3. **Table**: the main columns for every row, errors included, and the notes of the run.

Rows must carry their spectra (``spectral.analyze.analyze(..., keep_spectra=True)``).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import math
import pathlib
import re

import numpy as np

from spectral import marchenko_pastur as mp
from spectral import model_layout

_TABLE_COLUMNS = ("alpha", "alpha_se", "n_tail", "lambda_max", "stable_rank", "mp_sigma2", "n_outliers", "mp_ks",
                  "spacing_ratio", "structure_rank", "rand_alpha", "rand_n_outliers")
_HEAD = re.compile(r"\[head=(\d+)\]$")


def _png(fig) -> str:
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=90)
  import matplotlib.pyplot as plt

  plt.close(fig)
  return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig, alt: str) -> str:
  return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'


def _finite(v) -> bool:
  return v is not None and isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))


def _kind(name: str) -> str:
  return re.sub(r"(?:(?<=^)|(?<=[./]))([A-Za-z]\w*_)?\d+(?=[./]|$)", r"\1*", name, count=1)


def esd_panel(ax, row: dict) -> None:
  """Draw one matrix's ESD (log-log density histogram), its MP fit, power-law fit, TW threshold and baseline."""
  ev = np.asarray(row.get("eigenvalues"), np.float64)
  ev = ev[np.isfinite(ev) & (ev > 0)]
  if ev.size < 2:
    ax.text(0.5, 0.5, "no spectrum", ha="center", va="center", transform=ax.transAxes)
    return
  shape = row["shape"][-2:]
  m, n = min(shape), max(shape)
  # The smallest 1% is left out: near-square matrices have eigenvalues down to ~0, which would stretch a log axis.
  lo, hi = np.quantile(ev, 0.01) if ev.size >= 100 else ev.min(), ev.max()
  rand = np.asarray(row.get("rand_eigenvalues") if row.get("rand_eigenvalues") is not None else [], np.float64)
  rand = rand[np.isfinite(rand) & (rand > 0)]
  if rand.size:
    lo, hi = min(lo, np.quantile(rand, 0.01) if rand.size >= 100 else rand.min()), max(hi, rand.max())
  bins = np.geomspace(lo * 0.999, hi * 1.001, max(10, min(80, int(2 * np.sqrt(ev.size)))))
  scale = ev.size / m  # tail-only rows hold the top k of M eigenvalues: densities are shares of all M
  dens, _ = np.histogram(ev, bins=bins)
  width = np.diff(bins)
  ax.stairs(dens / (m * width), bins, fill=True, color="C0", alpha=0.55, label="ESD (density)")
  if rand.size:
    rd, _ = np.histogram(rand, bins=bins)
    ax.stairs(rd / (m * width), bins, color="0.35", lw=0.9, label="entry-shuffled ESD")
  sigma2 = row.get("mp_sigma2")
  if _finite(sigma2) and sigma2 > 0 and scale == 1.0:
    a, b = mp.mp_edges(m / n, sigma2)
    x = np.geomspace(max(a, lo), b, 200)
    ax.plot(x, mp.mp_pdf(x, m / n, sigma2), color="C1", lw=1.3, label="Marchenko-Pastur fit")
  alpha, xmin, n_tail = row.get("alpha"), row.get("xmin"), row.get("n_tail")
  if _finite(alpha) and _finite(xmin) and n_tail:
    x = np.geomspace(xmin, hi, 50)
    ax.plot(x, (n_tail / m) * (alpha - 1.0) / xmin * (x / xmin) ** (-alpha), color="C3", lw=1.3,
            label="power-law fit from xmin")
    ax.axvline(xmin, color="C3", lw=0.6, ls=":")
  thr = row.get("tw_threshold")
  if _finite(thr):
    ax.axvline(thr, color="k", lw=0.8, ls="--", label="Tracy-Widom threshold")
  ax.set_xscale("log")
  ax.set_yscale("log")
  from matplotlib.ticker import NullFormatter

  ax.xaxis.set_minor_formatter(NullFormatter())
  ax.yaxis.set_minor_formatter(NullFormatter())
  ax.tick_params(labelsize=6)


def _panel_title(row: dict, prefix: str) -> str:
  first = f"{_short(row['name'], prefix)}  {'x'.join(map(str, row['shape']))}"
  alpha, sigma2 = row.get("alpha"), row.get("mp_sigma2")
  stats = [f"alpha={alpha:.2f}" if _finite(alpha) else "alpha=-",
           f"sigma2={sigma2:.2g}" if _finite(sigma2) else None, f"outliers={row.get('n_outliers')}"]
  if _finite(row.get("rand_alpha")):
    stats.append(f"shuffled alpha={row['rand_alpha']:.2f}")
  return first + "\n" + ", ".join(s for s in stats if s)


def _short(name: str, prefix: str) -> str:
  return name[len(prefix):] if prefix and name.startswith(prefix) else name


def _layer_figure(rows: list[dict], title: str):
  import matplotlib.pyplot as plt

  cols = min(4, len(rows))
  nrows = math.ceil(len(rows) / cols)
  fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows + 0.8), squeeze=False, layout="constrained")
  prefix = _common_prefix([r["name"] for r in rows])
  for ax, row in zip(axes.flat, rows):
    esd_panel(ax, row)
    ax.set_title(_panel_title(row, prefix), fontsize=6.5)
  for ax in list(axes.flat)[len(rows):]:
    ax.axis("off")
  handles = {}
  for ax in axes.flat:
    for h, lab in zip(*ax.get_legend_handles_labels()):
      handles.setdefault(lab, h)
  fig.suptitle((f"{title}: {prefix}*" if prefix else title) + "   (x: eigenvalue of $W_s W_s^T / N$, y: density; "
               "both log)", fontsize=8)
  fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles), fontsize=6.5,
             frameon=False)
  return fig


def _common_prefix(names: list[str]) -> str:
  if len(names) < 2:
    return ""
  prefix = names[0]
  for n in names[1:]:
    while not n.startswith(prefix):
      prefix = prefix[:-1]
  return prefix[: max(prefix.rfind("."), prefix.rfind("/")) + 1]


def _overview_figure(rows: list[dict]):
  import matplotlib.pyplot as plt

  layered = [r for r in rows if model_layout.layer_index(r["name"]) is not None and not _HEAD.search(r["name"])
             and _finite(r.get("alpha"))]
  if not layered:
    return None
  has_structure = any(_finite(r.get("structure_rank")) for r in rows)
  panels = ["alpha", "n_outliers"] + (["structure_rank"] if has_structure else [])
  fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
  kinds: dict[str, list[dict]] = {}
  for r in layered:
    kinds.setdefault(_kind(r["name"]), []).append(r)
  for c, (kind, rs) in enumerate(sorted(kinds.items())):
    xs = [model_layout.layer_index(r["name"]) for r in rs]
    colour = f"C{c % 10}"
    for ax, key in zip(axes[0], panels):
      ys = [r.get(key) if _finite(r.get(key)) else np.nan for r in rs]
      ax.plot(xs, ys, "o-", ms=3, lw=1, color=colour, label=kind)
      if key != "structure_rank" and any(_finite(r.get(f"rand_{key}")) for r in rs):
        ax.plot(xs, [r.get(f"rand_{key}") if _finite(r.get(f"rand_{key}")) else np.nan for r in rs], "--",
                lw=0.8, color=colour)
      if key == "structure_rank":
        for extra in sorted({k for r in rs for k in r if k.startswith("structure_rank_") and _finite(r.get(k))}):
          ax.plot(xs, [r.get(extra) if _finite(r.get(extra)) else np.nan for r in rs], ":", lw=0.8, color=colour)
  titles = {"alpha": "power-law alpha (dashed: shuffled)", "n_outliers": "TW outliers (dashed: shuffled)",
            "structure_rank": "structure rank (dotted: null columns)"}
  from matplotlib.ticker import MaxNLocator

  for ax, key in zip(axes[0], panels):
    ax.set_title(titles[key], fontsize=9)
    ax.set_xlabel("layer", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=7)
  axes[0][0].legend(fontsize=6, frameon=False)
  fig.tight_layout()
  return fig


def _heads_figure(rows: list[dict]):
  import matplotlib.pyplot as plt

  heads: dict[str, list[tuple[int, float]]] = {}
  for r in rows:
    m = _HEAD.search(r["name"])
    if m and _finite(r.get("alpha")):
      heads.setdefault(r["name"][: m.start()], []).append((int(m.group(1)), float(r["alpha"])))
  if not heads:
    return None
  fig, ax = plt.subplots(figsize=(9, 0.22 * len(heads) + 1.2))
  for i, (name, hs) in enumerate(heads.items()):
    h, a = zip(*hs)
    ax.scatter(a, [i] * len(a), s=8, c=h, cmap="viridis")
  ax.set_yticks(range(len(heads)), list(heads), fontsize=5)
  ax.set_xlabel("power-law alpha of each head (colour: head index)", fontsize=8)
  fig.tight_layout()
  return fig


def _fmt(v) -> str:
  if v is None:
    return "-"
  if isinstance(v, (float, np.floating)):
    return "nan" if not math.isfinite(float(v)) else f"{float(v):.4g}"
  return html.escape(str(v))


def write_report(rows: list[dict], path, *, source: str = "", notes=(), settings: dict | None = None) -> pathlib.Path:
  """Write the HTML report of ``rows`` (with spectra) to ``path``; returns the path. See the module docstring."""
  import matplotlib

  matplotlib.use("Agg")
  path = pathlib.Path(path)
  parts = [f"<h1>Spectral analysis of {html.escape(source)}</h1>",
           f"<p>{datetime.datetime.now().isoformat(timespec='seconds')} &middot; {len(rows)} matrices &middot; "
           f"{html.escape(', '.join(f'{k}={v}' for k, v in (settings or {}).items()))}. ESD of <i>W</i> (a x b): "
           "eigenvalues of <i>W<sub>s</sub> W<sub>s</sub><sup>T</sup> / N</i>, N = max(a, b), M = min(a, b).</p>"]
  if notes:
    parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
  parts.append("<h2>Overview</h2>")
  if not any(_finite(r.get("structure_rank")) for r in rows):
    parts.append("<p>No <code>structure_rank</code> column in this table: the structure-rank panel is left out.</p>")
  if (fig := _overview_figure(rows)) is not None:
    parts.append(_img(fig, "overview"))
  if (fig := _heads_figure(rows)) is not None:
    parts.append("<h2>Heads</h2>" + _img(fig, "alpha per head"))
  groups: dict[object, list[dict]] = {}
  for r in rows:
    if r.get("eigenvalues") is not None and not _HEAD.search(r["name"]):
      groups.setdefault(model_layout.layer_index(r["name"]), []).append(r)
  parts.append("<h2>Per layer</h2>")
  order = sorted(groups, key=lambda k: (k is None, k if k is not None else 0))
  for key in order:
    title = f"layer {key}" if key is not None else "matrices without a layer index"
    parts.append(f"<h3>{title}</h3>" + _img(_layer_figure(groups[key], title), title))
  cols = [c for c in _TABLE_COLUMNS if any(c in r for r in rows)]
  head = "".join(f"<th>{c}</th>" for c in ("name", "shape", "status", *cols))
  body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in (
      r["name"], "x".join(map(str, r["shape"])), r["status"], *(r.get(c) for c in cols))) + "</tr>" for r in rows)
  parts.append(f"<h2>Table</h2><table><tr>{head}</tr>{body}</table>")
  style = ("body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}img{max-width:100%}"
           "table{border-collapse:collapse;font-size:11px}td,th{border:1px solid #ccc;padding:2px 5px}")
  path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>spectral report</title>"
                  f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
  return path
