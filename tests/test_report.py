"""The HTML report: self-contained, one figure per layer, the structure-rank panel only when the column exists."""

import re

import numpy as np

from spectral import analyze
from spectral import report


def _rows(rng, structure: bool):
  mats = {f"blocks.{i}.{k}": rng.standard_t(4, size=s).astype(np.float32)
          for i in range(2) for k, s in (("attn", (24, 24)), ("mlp", (24, 96)))}
  mats["embed"] = rng.normal(size=(80, 24)).astype(np.float32)
  rows = analyze.analyze(mats, randomize=True, backend="numpy", keep_spectra=True)
  if structure:
    for i, r in enumerate(rows):
      r["structure_rank"] = i % 3
  return rows


def test_report_is_self_contained_with_a_figure_per_layer(tmp_path):
  rows = _rows(np.random.default_rng(0), structure=False)
  rows.append({"name": "blocks.1.bad", "shape": (4, 4), "status": "error: NaN", "eigenvalues": None})
  path = report.write_report(rows, tmp_path / "r.html", source="w.npz", notes=["a note"])
  text = path.read_text()
  images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,', text)
  assert images == ["overview", "layer 0", "layer 1", "matrices without a layer index"]
  assert "src=\"http" not in text and "<script" not in text
  assert "No <code>structure_rank</code> column" in text and "a note" in text and "error: NaN" in text


def test_structure_rank_panel_when_the_column_exists(tmp_path):
  text = report.write_report(_rows(np.random.default_rng(1), structure=True), tmp_path / "r.html").read_text()
  assert "No <code>structure_rank</code>" not in text and "<th>structure_rank</th>" in text
