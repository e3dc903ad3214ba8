"""Command line: ``python -m spectral analyze WEIGHTS [--json PATH] [--csv PATH] [--level L] [--randomize]``
``[--init W0] [--subspaces S.npz] [--fourier] [--no-structure]``.

Prints one row per matrix (name, shape, status and the main metrics) and writes the full table (every metric of
``spectral.metrics.METRIC_NAMES``) as JSON (a list of row objects) and/or CSV. Vectors (1-D arrays such as biases)
in the file are skipped; other bad matrices are reported with their status.

Structure (``spectral.structure``, docs/STRUCTURE.md): every row also gets ``structure_rank``, the number of
singular directions the matrix's own sign-flip null cannot produce at ``--level``, with ``structure_status``; with
``--init W0`` (a file with the same names) the update ``W - W0`` is analysed. The top structured component is
attributed (``top_component``, ``top_overlap``, ``top_side``) to named subspaces when some are known: the arrays of
``--subspaces S.npz`` (name -> basis ``(n, d)``; e.g. ``dc``, ``positions``, ``tokens``, ``teacher``), each tried
on every matrix side with ``n`` rows, and with ``--fourier`` the Fourier modes ``fourier:k`` over the index of
every side (meaningful for sides indexed by tokens or positions, such as an embedding's rows).
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
          "mp_ks", "spacing_ratio", "structure_rank", "top_component")


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


def _shown(row, key) -> str:
  if key == "top_component" and row.get("top_overlap") is not None:
    return f"{row['top_component']} ({row['top_overlap']:.2f})"
  return _fmt(row.get(key))


def format_table(rows) -> str:
  head = ["name", "shape", "status", *_SHOWN]
  body = [[r["name"], "x".join(map(str, r["shape"])), r["status"], *(_shown(r, k) for k in _SHOWN)] for r in rows]
  widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
  widths[2] = min(widths[2], 80)
  line = lambda cells: "  ".join(str(c)[:w].ljust(w) for c, w in zip(cells, widths))
  return "\n".join([line(head), line(["-" * w for w in widths]), *(line(b) for b in body)])


def report(matrices, *, level=0.01, randomize=False, seed=0, per_head=False, json_path=None, csv_path=None,
           structure=True, inits=None, subspaces=None):
  """Analyse ``matrices`` (name -> array), print the table and write it as JSON / CSV when paths are given.

  With ``structure`` the rows gain ``analyze.STRUCTURE_COLUMNS`` (``analyze.structure_table``: ``inits`` and
  ``subspaces`` as there)."""
  rows = analyze_lib.analyze(matrices, level=level, randomize=randomize, seed=seed, per_head=per_head)
  if structure:
    extra = analyze_lib.structure_table(matrices, inits=inits, level=level, seed=seed, per_head=per_head,
                                        subspaces=subspaces)
    for row, more in zip(rows, extra):
      row.update({k: more[k] for k in analyze_lib.STRUCTURE_COLUMNS})
  else:
    for row in rows:
      row.update(dict.fromkeys(analyze_lib.STRUCTURE_COLUMNS))
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
  p.add_argument("--init", help="initial weights (same names): analyse the structure of the update W - W0")
  p.add_argument("--subspaces", help=".npz of named bases (n, d) to attribute the top structured component to")
  p.add_argument("--fourier", action="store_true", help="attribute to the Fourier modes over every side's index too")
  p.add_argument("--no-structure", action="store_true", help="skip the structure rank (faster)")
  args = parser.parse_args(argv)
  try:
    arrays = weights_io.load_weights(args.weights)
    inits = weights_io.load_weights(args.init) if args.init else None
    matrices = {k: v for k, v in arrays.items() if np.ndim(v) >= 2}
    subspaces = _subspaces(args.subspaces, args.fourier, matrices, args.per_head)
  except (ValueError, FileNotFoundError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  if not 0 < args.level < 1:
    print(f"error: --level: expected a probability in (0, 1), got {args.level}", file=sys.stderr)
    return 2
  report(matrices, level=args.level, randomize=args.randomize, seed=args.seed, per_head=args.per_head,
         json_path=args.json_path, csv_path=args.csv_path, structure=not args.no_structure, inits=inits,
         subspaces=subspaces)
  return 0


def _subspaces(path, fourier: bool, matrices, per_head: bool) -> dict | None:
  """Matrix name -> (left, right) named bases: the arrays of ``--subspaces`` (a 1-D array is one direction) on each
  side whose length matches, and with ``--fourier`` the Fourier modes over every side; ``None`` if neither."""
  if not path and not fourier:
    return None
  from spectral import attribution

  named = {}
  if path:
    with np.load(path, allow_pickle=False) as loaded:
      for name in loaded.files:
        basis = np.asarray(loaded[name], np.float64)
        if basis.ndim not in (1, 2) or basis.shape[0] < 2 or not np.all(np.isfinite(basis)):
          raise ValueError(f"--subspaces: {name} must be a finite (n, d) basis with n >= 2, got shape "
                           f"{basis.shape}")
        named[name] = basis.reshape(basis.shape[0], -1)
  out = {}
  for name, x in analyze_lib.expand_matrices(matrices, per_head):
    shape = np.shape(x)
    if len(shape) != 2 or min(shape) < 2:
      continue
    left, right = attribution.split_by_side(named, shape)
    if fourier:
      left, right = {**attribution.fourier_subspaces(shape[0]), **left}, {**attribution.fourier_subspaces(shape[1]),
                                                                          **right}
    out[name] = (left, right)
  return out


if __name__ == "__main__":
  sys.exit(main())
