"""Command line: ``python -m spectral analyze WEIGHTS [--json P] [--csv P] [--report P] [--level L] [--randomize]``
``[--init W0] [--subspaces S.npz] [--fourier] [--no-structure]``.

Prints one row per matrix (name, shape, status and the main metrics, each rounded to its uncertainty where it has
one, with a line of units under the table) and writes the full table (every metric of
``spectral.metrics.METRIC_NAMES``) as JSON (a list of row objects) and/or CSV, saying where, and with ``--report`` a
self-contained HTML report of per-layer plots (``spectral.report``). Every array in the file gets a row: vectors
(1-D arrays such as biases) with status ``skipped: ...``, bad matrices with ``error: ...``, matrices whose fits
failed with ``fit failed: ...`` (``spectral.analyze``). ``--debug`` (anywhere) shows tracebacks.

WEIGHTS is an ``.npz`` or ``.safetensors`` file, a Hugging Face folder of sharded safetensors (with
``model.safetensors.index.json``) or an Orbax checkpoint folder, read one tensor at a time
(``spectral.checkpoint_io``, ``spectral.checkpoint_analysis``); ``--include``/``--exclude``/``--layers`` select,
``--qkv`` splits fused q/k/v projections, ``--per-head`` cuts attention heads (``spectral.model_layout`` states the
naming rules). On a CPU the analysis compiles nothing by default (``--backend auto``); compiled paths cache their
executables across runs in a persistent JAX compilation cache (``--compile-cache``, on by default).

Structure (``spectral.structure``, docs/STRUCTURE.md): every row also gets ``structure_rank``, the number of
singular directions the matrix's own sign-flip null cannot produce at ``--level``, with ``structure_status``; with
``--init W0`` (a file with the same names) the update ``W - W0`` is analysed. The top structured component is
attributed (``top_component``, ``top_overlap``, ``top_side``) to named subspaces when some are known: the arrays of
``--subspaces S.npz`` (name -> basis ``(n, d)``; e.g. ``dc``, ``positions``, ``tokens``, ``teacher``), each tried
on every matrix side with ``n`` rows, and with ``--fourier`` the Fourier modes ``fourier:k`` over the index of
every side (meaningful for sides indexed by tokens or positions, such as an embedding's rows).

Example: ``python -m spectral analyze weights.npz --randomize --json table.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pathlib
import sys

import numpy as np

from spectral import analyze as analyze_lib
from spectral import checkpoint_analysis
from spectral import checkpoint_io
from spectral import cli
from spectral import model_layout
from spectral import weights_io

# (column header, metric, its standard error or None): the printed columns; --randomize adds _RAND_SHOWN.
_SHOWN = (("alpha +- se", "alpha", "alpha_se"), ("xmin", "xmin", None), ("n_tail", "n_tail", None),
          ("log10_spectral_norm", "log10_spectral_norm", None), ("stable_rank", "stable_rank", None),
          ("mp_sigma2", "mp_sigma2", None), ("n_outliers", "n_outliers", None), ("mp_ks", "mp_ks", None),
          ("spacing_ratio +- se", "spacing_ratio", "spacing_ratio_se"),
          ("structure_rank", "structure_rank", None), ("top_component", "top_component", None))
_RAND_SHOWN = (("rand_alpha +- se", "rand_alpha", "rand_alpha_se"), ("rand_n_outliers", "rand_n_outliers", None),
               ("rand_mp_ks", "rand_mp_ks", None))
UNITS = ("units: xmin, mp_sigma2 are eigenvalues of X = W^T W / N (squared weight-entry units); log10_spectral_norm = "
         "log10 of the largest; alpha (tail exponent), stable_rank, mp_ks (KS distance in [0, 1]) and spacing_ratio "
         "(GOE 0.531, Poisson 0.386) have none; structure_rank counts singular directions beyond the sign-flip null (docs/STRUCTURE.md), top_component names the top one's best subspace (overlap); n_tail, n_outliers count eigenvalues (n_outliers: beyond the "
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


def _shown(row, key) -> str:
  if key == "top_component" and row.get("top_overlap") is not None:
    return f"{row['top_component']} ({row['top_overlap']:.2f})"
  return _fmt(row.get(key))


def format_table(rows) -> str:
  shown = _SHOWN + (_RAND_SHOWN if rows and "rand_alpha" in rows[0] else ())
  head = ["name", "shape", "status", *(h for h, _, _ in shown)]
  body = [[r["name"], "x".join(map(str, r["shape"])), r["status"],
           *(_shown(r, k) if k == "top_component" else _fmt(r.get(k), r.get(se) if se else None) for _, k, se in shown)] for r in rows]
  widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
  widths[2] = min(widths[2], 80)
  line = lambda cells: "  ".join(str(c)[:w].ljust(w) for c, w in zip(cells, widths))
  return "\n".join([line(head), line(["-" * w for w in widths]), *(line(b) for b in body)])


_SPECTRA = ("eigenvalues", "rand_eigenvalues")


def report(matrices, *, level=0.01, randomize=False, seed=0, per_head=False, json_path=None, csv_path=None,
           structure=True, inits=None, subspaces=None):
  """Analyse ``matrices`` (name -> array), print the table and write it as JSON / CSV when paths are given.

  With ``structure`` the rows gain ``analyze.STRUCTURE_COLUMNS`` (``analyze.structure_table``: ``inits`` and
  ``subspaces`` as there)."""
  rows = analyze_lib.analyze(matrices, level=level, randomize=randomize, seed=seed, per_head=per_head)
  extra = (analyze_lib.structure_table(matrices, inits=inits, level=level, seed=seed, per_head=per_head,
                                       subspaces=subspaces) if structure else ())
  analyze_lib.with_structure_columns(rows, extra)
  print(format_table(rows))
  print(UNITS + (f"; {RAND_UNITS}" if randomize else ""))
  write_table(rows, json_path, csv_path, randomize=randomize)
  return rows


def write_table(rows, json_path=None, csv_path=None, *, randomize=False) -> None:
  """Write ``rows`` as JSON (a list of objects) and/or CSV, saying where; spectra kept for plots are left out."""
  rows = [{k: v for k, v in r.items() if k not in _SPECTRA} for r in rows]
  what = f"every metric of every matrix{', rand_* included' if randomize else ''}"
  if json_path:
    with open(json_path, "w") as f:
      json.dump([{k: _jsonable(v) for k, v in r.items()} for r in rows], f, indent=1)
    print(f"wrote {json_path} (JSON, {what})")
  if csv_path:
    with open(csv_path, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      for r in rows:
        writer.writerow({k: ("x".join(map(str, v)) if k == "shape" else _jsonable(v)) for k, v in r.items()})
    print(f"wrote {csv_path} (CSV, {what})")


def default_compile_cache() -> pathlib.Path:
  """``$SPECTRAL_CACHE_DIR/jax``, else ``$XDG_CACHE_HOME/spectral-lab/jax``, else ``~/.cache/spectral-lab/jax``."""
  if os.environ.get("SPECTRAL_CACHE_DIR"):
    return pathlib.Path(os.environ["SPECTRAL_CACHE_DIR"]) / "jax"
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base) / "spectral-lab" / "jax"


def enable_compile_cache(path) -> None:
  """JAX's persistent compilation cache in ``path``, for every compiled program however quick to compile."""
  import jax

  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _add_checkpoint_options(p) -> None:
  g = p.add_argument_group("real checkpoints (spectral/model_layout.py states the naming rules)")
  g.add_argument("--include", metavar="REGEX", help="analyse only tensors whose name matches REGEX (re.search)")
  g.add_argument("--exclude", metavar="REGEX", help="skip tensors whose name matches REGEX")
  g.add_argument("--layers", metavar="SPEC", help="keep only layers in SPEC, e.g. '0-3,10' (tensors with no layer "
                 "index, such as embeddings and the lm-head, are kept; drop them with --exclude)")
  g.add_argument("--qkv", choices=checkpoint_analysis.QKV_MODES, default="split",
                 help="fused q/k/v projections (c_attn, query_key_value, qkv_proj, Wqkv): analyse the q, k and v "
                      "pieces (split, default), the stored matrix (fused), or both")
  g.add_argument("--qkv-layout", choices=model_layout.QKV_LAYOUTS, default=None,
                 help="how the fused axis is packed: contiguous [q|k|v] (GPT-2, Phi, Falcon-7B) or interleaved per "
                      "head group (GPT-NeoX, Bloom, Falcon-40B); default: from config.json, else contiguous")
  g.add_argument("--num-heads", type=int, default=None,
                 help="query heads (default: config.json); needed to split grouped-query fused q/k/v and for "
                      "--per-head on 2-D projections")
  g.add_argument("--num-kv-heads", type=int, default=None,
                 help="key/value heads for grouped-query attention (default: config.json, else --num-heads)")
  g.add_argument("--head-dim", type=int, default=None,
                 help="size of one head (default: config.json, else model width / --num-heads)")
  g.add_argument("--weight-layout", choices=model_layout.WEIGHT_LAYOUTS, default="auto",
                 help="2-D weights stored (out, in) like torch Linear or (in, out) like GPT-2 Conv1D and Flax "
                      "kernels; auto decides by name (it matters only for --per-head)")
  g.add_argument("--report", metavar="PATH", help="also write a self-contained HTML report of per-layer plots")
  g.add_argument("--tail-k", type=int, default=None, metavar="K",
                 help="tail-only mode for every matrix: the top K eigenvalues by subspace iteration")
  g.add_argument("--max-full-dim", type=int, default=8192, metavar="M",
                 help="matrices whose smaller side exceeds M use tail-only mode (default 8192)")
  g.add_argument("--backend", choices=("auto", "jax", "numpy"), default="auto",
                 help="numpy: host LAPACK and numpy metrics, nothing compiled; jax: compiled and batched; auto "
                      "(default): numpy on a CPU, jax on accelerators")
  g.add_argument("--compile-cache", metavar="DIR", default=None,
                 help=f"persistent JAX compilation cache (default {default_compile_cache()}, or $SPECTRAL_CACHE_DIR)")
  g.add_argument("--no-compile-cache", action="store_true", help="do not use a persistent compilation cache")
  g.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _selection(args) -> checkpoint_analysis.Selection:
  layers = model_layout.parse_layers(args.layers) if args.layers is not None else None
  attention = model_layout.AttentionShape(num_heads=args.num_heads, num_kv_heads=args.num_kv_heads,
                                          head_dim=args.head_dim, qkv_layout=args.qkv_layout)
  return checkpoint_analysis.Selection(include=args.include, exclude=args.exclude, layers=layers, qkv=args.qkv,
                                       per_head=args.per_head, attention=attention,
                                       weight_layout=args.weight_layout)


def analyze_main(args) -> int:
  """``python -m spectral analyze``: open, select, stream, print, write; bad input raises ``ValueError`` (one
  ``error:`` line and exit status 2 under ``cli.run``)."""
  if not 0 < args.level < 1:
    raise ValueError(f"--level: expected a probability in (0, 1), got {args.level}")
  if args.tail_k is not None and args.tail_k < 2:
    raise ValueError(f"--tail-k: expected an integer >= 2, got {args.tail_k}")
  sel = _selection(args)
  ckpt = checkpoint_io.open_checkpoint(args.weights)
  if not args.no_compile_cache:
    enable_compile_cache(args.compile_cache or default_compile_cache())
  rows, notes = checkpoint_analysis.analyze_checkpoint(
      ckpt, sel, level=args.level, randomize=args.randomize, seed=args.seed, backend=args.backend,
      keep_spectra=bool(args.report), progress=not args.no_progress, tail_k=args.tail_k,
      max_full_dim=args.max_full_dim, structure=None if args.no_structure else _structure_columns(args))
  if args.no_structure:
    analyze_lib.with_structure_columns(rows)
  for note in notes:
    print(f"note: {note}", file=sys.stderr)
  if not any(len(r["shape"]) >= 2 for r in rows):
    raise ValueError(f"WEIGHTS: expected at least one selected matrix, got no matrix among the "
                     f"{len(ckpt.entries)} tensors of {args.weights}; check --include, --exclude and --layers")
  print(format_table(rows))
  print(UNITS + (f"; {RAND_UNITS}" if args.randomize else ""))
  write_table(rows, args.json_path, args.csv_path, randomize=args.randomize)
  if args.report:
    from spectral import report as report_lib

    report_lib.write_report(rows, args.report, source=str(args.weights), notes=notes,
                            settings={"level": args.level, "randomize": args.randomize, "seed": args.seed})
    print(f"wrote {args.report} (HTML report, per-layer ESD plots)")
  return 0


def _structure_columns(args):
  """``fn(matrices, seed)``: the structure columns (``analyze.structure_table``) of some stored tensors' matrices
  (``checkpoint_analysis.analyze_checkpoint`` passes small ones together), with ``--init`` (loaded once) and the
  subspaces of ``--subspaces`` / ``--fourier``."""
  inits = weights_io.load_weights(args.init) if args.init else None

  def columns(matrices, seed):
    subspaces = _subspaces(args.subspaces, args.fourier, matrices, args.per_head)
    return analyze_lib.structure_table(matrices, inits=inits, level=args.level, seed=seed, per_head=args.per_head,
                                       subspaces=subspaces)

  return columns


def add_analyze_parser(sub) -> None:
  p = sub.add_parser("analyze", help="spectral metrics of every matrix in a weights file or checkpoint folder")
  p.add_argument("weights", help=".npz or .safetensors file, a folder of sharded safetensors with "
                 "model.safetensors.index.json, or an Orbax checkpoint folder")
  p.add_argument("--json", dest="json_path", metavar="PATH", help="also write the full table (every metric) as JSON")
  p.add_argument("--csv", dest="csv_path", metavar="PATH", help="also write the full table as CSV")
  p.add_argument("--level", type=float, default=0.01, help="false-alarm level of the outlier count (0.01)")
  p.add_argument("--randomize", action="store_true", help="add the entry-shuffled baseline (rand_* columns)")
  p.add_argument("--seed", type=int, default=0, help="seed of the shuffles and of tail-only iterations (default 0)")
  p.add_argument("--per-head", action="store_true",
                 help="also analyse each attention head: 3-D kernels, and 2-D projections given --num-heads or a "
                      "config.json")
  _add_checkpoint_options(p)
  p.add_argument("--init", metavar="W0", help="initial weights (same names): analyse the structure of the update W - W0")
  p.add_argument("--subspaces", metavar="S.npz",
                 help=".npz of named bases (n, d) to attribute the top structured component to")
  p.add_argument("--fourier", action="store_true", help="attribute to the Fourier modes over every side's index too")
  p.add_argument("--no-structure", action="store_true",
                 help="skip the structure rank: faster, most of all on a first run, whose time is partly "
                      "compiling the structure test once per bucket of matrix shapes (docs/real_checkpoints.md)")


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
  return analyze_main(build_parser().parse_args(argv))


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
