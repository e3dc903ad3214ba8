"""Command line: ``python -m spectral analyze WEIGHTS [--json PATH] [--csv PATH] [--level L] [--randomize]``.

Prints one row per matrix (name, shape, status and the main metrics) and writes the full table (every metric of
``spectral.metrics.METRIC_NAMES``) as JSON (a list of row objects) and/or CSV. Every array in the file gets a row:
vectors (1-D arrays such as biases) with status ``skipped: ...``, bad matrices with ``error: ...``, matrices whose
fits failed with ``fit failed: ...`` (``spectral.analyze``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys

import numpy as np

from spectral import analyze as analyze_lib
from spectral import weights_io

_SHOWN = ("alpha", "alpha_se", "xmin", "n_tail", "log10_spectral_norm", "stable_rank", "mp_sigma2", "n_outliers",
          "mp_ks", "spacing_ratio")


def _fmt(v) -> str:
  if v is None:
    return "-"
  if isinstance(v, float):
    return "nan" if math.isnan(v) else f"{v:.4g}"
  return str(v)


def _jsonable(v):
  if isinstance(v, (np.floating, float)):
    return None if not math.isfinite(float(v)) else float(v)
  if isinstance(v, np.integer):
    return int(v)
  if isinstance(v, tuple):
    return list(v)
  return v


def format_table(rows) -> str:
  head = ["name", "shape", "status", *_SHOWN]
  body = [[r["name"], "x".join(map(str, r["shape"])), r["status"], *(_fmt(r[k]) for k in _SHOWN)] for r in rows]
  widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
  widths[2] = min(widths[2], 80)
  line = lambda cells: "  ".join(str(c)[:w].ljust(w) for c, w in zip(cells, widths))
  return "\n".join([line(head), line(["-" * w for w in widths]), *(line(b) for b in body)])


def report(matrices, *, level=0.01, randomize=False, seed=0, per_head=False, json_path=None, csv_path=None):
  """Analyse ``matrices`` (name -> array), print the table and write it as JSON / CSV when paths are given."""
  rows = analyze_lib.analyze(matrices, level=level, randomize=randomize, seed=seed, per_head=per_head)
  print(format_table(rows))
  if json_path:
    with open(json_path, "w") as f:
      json.dump([{k: _jsonable(v) for k, v in r.items()} for r in rows], f, indent=1)
  if csv_path:
    with open(csv_path, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      for r in rows:
        writer.writerow({k: ("x".join(map(str, v)) if k == "shape" else _jsonable(v)) for k, v in r.items()})
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m spectral", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("analyze", help="spectral metrics of every matrix in a weights file")
  p.add_argument("weights", help=".npz or .safetensors file of named matrices")
  p.add_argument("--json", dest="json_path")
  p.add_argument("--csv", dest="csv_path")
  p.add_argument("--level", type=float, default=0.01, help="false-alarm level of the outlier count (0.01)")
  p.add_argument("--randomize", action="store_true", help="add the entry-shuffled baseline (rand_* columns)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--per-head", action="store_true", help="also analyse each head of 3-D attention kernels")
  args = parser.parse_args(argv)
  try:
    arrays = weights_io.load_weights(args.weights)
  except (ValueError, FileNotFoundError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  if not 0 < args.level < 1:
    print(f"error: --level: expected a probability in (0, 1), got {args.level}", file=sys.stderr)
    return 2
  report(arrays, level=args.level, randomize=args.randomize, seed=args.seed, per_head=args.per_head,
         json_path=args.json_path, csv_path=args.csv_path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
