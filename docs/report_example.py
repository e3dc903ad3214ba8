"""Regenerate ``docs/real_checkpoint_report.png``: a page of the HTML report of a synthetic GPT-2-shaped checkpoint.

    python docs/report_example.py [--out docs/real_checkpoint_report.png] [--keep DIR]

The checkpoint is a Hugging Face-style folder (two bf16 safetensors shards, ``model.safetensors.index.json``,
``config.json`` with 4 heads and tied embeddings) of 4 GPT-2 blocks of width 128, made here with no download: entries
Student-t with tails growing heavier with depth (t(5) ... t(2)) plus planted rank-one spikes (``l`` in attention and
``2 l`` in the MLP of block ``l``). It is analysed by ``python -m spectral analyze FOLDER --randomize --report R.html``
and the report's overview and last layer are stacked into one PNG.
"""

from __future__ import annotations

import argparse
import base64
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent


def write_checkpoint(folder: pathlib.Path, width: int = 128, layers: int = 4) -> None:
  rng = np.random.default_rng(0)

  def matrix(shape, dof, spikes):
    w = (rng.standard_t(dof, size=shape) if dof else rng.normal(size=shape)) / np.sqrt(max(shape))
    for s in range(spikes):
      u, v = rng.normal(size=shape[0]), rng.normal(size=shape[1])
      w += (3.0 + s) * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    return (0.02 * w).astype(np.float32).astype(ml_dtypes.bfloat16)

  d = width
  shards: list[dict] = [{}, {}]
  shards[0]["transformer.wte.weight"] = matrix((1000, d), 4, 2)
  for layer in range(layers):
    s = shards[layer * 2 // layers]
    s[f"transformer.h.{layer}.attn.c_attn.weight"] = matrix((d, 3 * d), 5 - layer, layer)
    s[f"transformer.h.{layer}.attn.c_proj.weight"] = matrix((d, d), 5 - layer, layer)
    s[f"transformer.h.{layer}.mlp.c_fc.weight"] = matrix((d, 4 * d), 6 - layer, 2 * layer)
    s[f"transformer.h.{layer}.mlp.c_proj.weight"] = matrix((4 * d, d), None if layer == 0 else 6 - layer, 2 * layer)
  weight_map = {}
  for i, shard in enumerate(shards):
    name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    save_file(shard, str(folder / name), metadata={"format": "pt"})
    weight_map.update({k: name for k in shard})
  (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
  (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_head": 4, "tie_word_embeddings": True}))


def page_png(report: pathlib.Path, out: pathlib.Path) -> None:
  """Stack the report's overview and its last layer figure into one PNG."""
  import matplotlib.image as mpimg
  import matplotlib.pyplot as plt

  images = dict(re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]*)"', report.read_text()))
  layers = sorted((k for k in images if k.startswith("layer ")), key=lambda k: int(k.split()[1]))
  picks = [mpimg.imread(__import__("io").BytesIO(base64.b64decode(images[k])), format="png")
           for k in ("overview", layers[-1])]
  width = max(p.shape[1] for p in picks)
  fig = plt.figure(figsize=(width / 100, sum(p.shape[0] for p in picks) / 100 + 0.4), dpi=100)
  top = 1.0 - 0.4 / fig.get_figheight()
  fig.text(0.01, top + 0.005, "python -m spectral analyze gpt2-like/ --randomize --report report.html "
           "(synthetic checkpoint, docs/report_example.py)", fontsize=10, family="monospace")
  y = top
  for p in picks:
    h = p.shape[0] / 100 / fig.get_figheight()
    ax = fig.add_axes((0, y - h, p.shape[1] / width, h))
    ax.imshow(p)
    ax.axis("off")
    y -= h
  fig.savefig(out, dpi=100)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=str(ROOT / "docs" / "real_checkpoint_report.png"), help="PNG to write")
  parser.add_argument("--keep", metavar="DIR", help="keep the checkpoint and the HTML report in DIR")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    work = pathlib.Path(args.keep or tmp)
    folder = work / "gpt2-like"
    folder.mkdir(parents=True, exist_ok=True)
    write_checkpoint(folder)
    report = work / "report.html"
    subprocess.run([sys.executable, "-m", "spectral", "analyze", str(folder), "--randomize", "--no-progress",
                    "--report", str(report)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    page_png(report, pathlib.Path(args.out))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
