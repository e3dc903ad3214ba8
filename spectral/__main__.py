"""Command line: ``python -m spectral analyze WEIGHTS [--json PATH] [--csv PATH] [--level L] [--randomize]``.

Prints one row per matrix (name, shape, status and the main metrics, each rounded to its uncertainty where it has
one, with a line of units under the table) and writes the full table (every metric of
``spectral.metrics.METRIC_NAMES``) as JSON (a list of row objects) and/or CSV, saying where. Every array in the file
gets a row: vectors (1-D arrays such as biases) with status ``skipped: ...``, bad matrices with ``error: ...``,
matrices whose fits failed with ``fit failed: ...`` (``spectral.analyze``). ``--debug`` (anywhere) shows tracebacks.

Example: ``python -m spectral analyze weights.npz --randomize --json table.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys

import numpy as np

from spectral import analyze as analyze_lib
from spectral import cli
from spectral import weights_io

# (column header, metric, its standard error or None): the printed columns; --randomize adds _RAND_SHOWN.
_SHOWN = (("alpha +- se", "alpha", "alpha_se"), ("xmin", "xmin", None), ("n_tail", "n_tail", None),
          ("log10_spectral_norm", "log10_spectral_norm", None), ("stable_rank", "stable_rank", None),
          ("mp_sigma2", "mp_sigma2", None), ("n_outliers", "n_outliers", None), ("mp_ks", "mp_ks", None),
          ("spacing_ratio +- se", "spacing_ratio", "spacing_ratio_se"))
_RAND_SHOWN = (("rand_alpha +- se", "rand_alpha", "rand_alpha_se"), ("rand_n_outliers", "rand_n_outliers", None),
               ("rand_mp_ks", "rand_mp_ks", None))
UNITS = ("units: xmin, mp_sigma2 are eigenvalues of X = W^T W / N (squared weight-entry units); log10_spectral_norm = "
         "log10 of the largest; alpha (tail exponent), stable_rank, mp_ks (KS distance in [0, 1]) and spacing_ratio "
         "(GOE 0.531, Poisson 0.386) have none; n_tail, n_outliers count eigenvalues (n_outliers: beyond the "
         "Tracy-Widom threshold at the false-alarm level)")
RAND_UNITS = "rand_*: the same metrics of an entry-shuffled copy of the matrix (structure destroyed, entries kept)"


def _fmt(v, se=None) -> str:
  if v is None:
    return "-"
  return cli.round_to_uncertainty(v, se)


def _jsonable(v):
  if isinstance(v, (np.floating, float)):
    return None if not math.isfinite(float(v)) else float(v)
  if isinstance(v, np.integer):
    return int(v)
  if isinstance(v, tuple):
    return list(v)
  return v


def format_table(rows) -> str:
  shown = _SHOWN + (_RAND_SHOWN if rows and "rand_alpha" in rows[0] else ())
  head = ["name", "shape", "status", *(h for h, _, _ in shown)]
  body = [[r["name"], "x".join(map(str, r["shape"])), r["status"],
           *(_fmt(r[k], r[se] if se else None) for _, k, se in shown)] for r in rows]
  widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
  widths[2] = min(widths[2], 80)
  line = lambda cells: "  ".join(str(c)[:w].ljust(w) for c, w in zip(cells, widths))
  return "\n".join([line(head), line(["-" * w for w in widths]), *(line(b) for b in body)])


def report(matrices, *, level=0.01, randomize=False, seed=0, per_head=False, json_path=None, csv_path=None):
  """Analyse ``matrices`` (name -> array), print the table and write it as JSON / CSV when paths are given."""
  rows = analyze_lib.analyze(matrices, level=level, randomize=randomize, seed=seed, per_head=per_head)
  print(format_table(rows))
  print(UNITS + (f"; {RAND_UNITS}" if randomize else ""))
  if json_path:
    with open(json_path, "w") as f:
      json.dump([{k: _jsonable(v) for k, v in r.items()} for r in rows], f, indent=1)
    print(f"wrote {json_path} (JSON, every metric of every matrix{', rand_* included' if randomize else ''})")
  if csv_path:
    with open(csv_path, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      for r in rows:
        writer.writerow({k: ("x".join(map(str, v)) if k == "shape" else _jsonable(v)) for k, v in r.items()})
    print(f"wrote {csv_path} (CSV, every metric of every matrix{', rand_* included' if randomize else ''})")
  return rows


def add_analyze_parser(sub) -> None:
  p = sub.add_parser("analyze", help="spectral metrics of every matrix in a weights file")
  p.add_argument("weights", help=".npz or .safetensors file of named matrices")
  p.add_argument("--json", dest="json_path", metavar="PATH", help="also write the full table (every metric) as JSON")
  p.add_argument("--csv", dest="csv_path", metavar="PATH", help="also write the full table as CSV")
  p.add_argument("--level", type=float, default=0.01, help="false-alarm level of the outlier count (0.01)")
  p.add_argument("--randomize", action="store_true", help="add the entry-shuffled baseline (rand_* columns)")
  p.add_argument("--seed", type=int, default=0, help="seed of the --randomize shuffle (default 0)")
  p.add_argument("--per-head", action="store_true", help="also analyse each head of 3-D attention kernels")


def build_parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m spectral", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  cli.add_debug_flag(parser)
  sub = parser.add_subparsers(dest="command", required=True)
  add_analyze_parser(sub)
  return parser


def main(argv=None) -> int:
  return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
  args = build_parser().parse_args(argv)
  if not 0 < args.level < 1:
    raise ValueError(f"--level: expected a probability in (0, 1), got {args.level}")
  arrays = weights_io.load_weights(args.weights)
  report(arrays, level=args.level, randomize=args.randomize, seed=args.seed, per_head=args.per_head,
         json_path=args.json_path, csv_path=args.csv_path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
