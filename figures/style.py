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
THEORY_COLOUR = "#000000"
ONE_COLUMN_IN = 3.4
TWO_COLUMN_IN = 7.0

RC = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False, "pdf.fonttype": 42,
    "ps.fonttype": 42, "savefig.dpi": 200, "figure.constrained_layout.use": True,
}


def regime_colour(regime: str, index: int = 0) -> str:
  return REGIME_COLOURS.get(regime, OKABE_ITO[(index + 1) % len(OKABE_ITO)])


def config_hash(config: dict[str, Any]) -> str:
  return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def package_version() -> str:
  try:
    return importlib.metadata.version("spectral-lab")
  except importlib.metadata.PackageNotFoundError:
    return "0+unknown"


def save_figure(fig, out_stem: str | pathlib.Path, *, figure: str, runs: list[str], config: dict[str, Any],
                plotted: dict[str, Any]) -> list[pathlib.Path]:
  """Write ``out_stem.pdf``, ``out_stem.png`` and ``out_stem.json`` (provenance + exact plotted numbers)."""
  out_stem = pathlib.Path(out_stem)
  out_stem.parent.mkdir(parents=True, exist_ok=True)
  provenance = dict(figure=figure, runs=runs, config_hash=config_hash(config), package_version=package_version())
  subject = json.dumps(provenance, sort_keys=True)
  pdf, png, side = (out_stem.with_suffix(s) for s in (".pdf", ".png", ".json"))
  fig.savefig(pdf, metadata={"Title": figure, "Subject": subject, "Creator": "spectral-lab"})
  fig.savefig(png, metadata={"Title": figure, "Description": subject, "Software": "spectral-lab"})
  plt.close(fig)
  side.write_text(json.dumps(dict(provenance=provenance, plotted=plotted), indent=2) + "\n")
  return [pdf, png, side]
