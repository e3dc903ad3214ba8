"""Paper figures from stored run folders and theory-check results.

  python -m figures list
  python -m figures NAME [--runs DIR] [--run NAME_OR_PATH ...] [--matrix M ...] [--checks DIR] [--out DIR]
                         [--columns 1|2] [--make-missing]
  python -m figures all  [same options]

Example: ``python -m figures esd_by_regime --matrix blocks.0.attn.value.kernel --out figs``.

Figures read ``--runs`` (run folders, default ``runs``) and check results ``<CHECK>.json`` (``models.check_result``)
from ``--checks DIR``, by default from ``<runs>/checks`` and then the checks folder of the run (``--run``, else the
main job's run), and write ``NAME.pdf``, ``NAME.png`` and ``NAME.json`` (provenance and the plotted
numbers) into ``--out`` (default ``<runs>/figures``). Nothing is trained or measured here: when an input is missing
the command says which command produces it; with ``--make-missing`` it runs that command's quick version
(``python -m lab main --quick``, ``python -m theory_checks run CHECK --quick``), printing it first.
Exit status: 0 when every requested figure was drawn, 2 when some input was missing or an argument is wrong, 1 on
other errors. ``--debug`` (anywhere) shows tracebacks.
"""

from __future__ import annotations

import argparse
import inspect
import pathlib
import subprocess
import sys

from figures import inputs, registry
from models.run_folder import RunFormatError
from spectral import cli


def matrix_options(mod, run, matrices: list[str]) -> dict:
  """``make_figure`` keyword arguments choosing the ``--matrix`` matrices of ``run`` (none when not given)."""
  if not matrices:
    return {}
  unknown = [m for m in matrices if m not in run.info["matrices"]]
  if unknown:
    raise ValueError(f"--matrix: expected weight matrices of run {run.name} ({', '.join(sorted(run.info['matrices']))})"
                     f", got {', '.join(unknown)}; copy a name from this list")
  params = inspect.signature(mod.make_figure).parameters
  if "matrices" in params:
    return dict(matrices=list(matrices))
  if "matrix" in params and len(matrices) == 1:
    return dict(matrix=matrices[0])
  if "matrix" in params:
    raise ValueError(f"--matrix: expected one matrix for figure {mod.NAME}, got {len(matrices)}; give one --matrix")
  return {}


def _draw(name: str, args) -> list[pathlib.Path]:
  mod = registry.get_figure(name)
  out = pathlib.Path(args.out) if args.out else pathlib.Path(args.runs) / "figures"
  checks = [pathlib.Path(args.checks)] if args.checks else inputs.default_checks_dirs(args.runs, args.run)
  if mod.INPUT == "run":
    run = inputs.resolve_run(args.runs, args.run[0] if args.run else None)
    return mod.make_figure(run, out, columns=args.columns, **matrix_options(mod, run, args.matrix))
  if mod.INPUT == "runs":
    runs = ([inputs.resolve_run(args.runs, n) for n in args.run] if args.run
            else mod.default_runs(args.runs))
    return mod.make_figure(runs, out, columns=args.columns)
  verdict = inputs.load_verdict(checks, mod.CHECK)
  return mod.make_figure(verdict, out, columns=args.columns)


def _make_missing(err: inputs.MissingInput, args) -> None:
  cmd = list(err.command)
  if cmd[:4] == ["python", "-m", "lab", "main"] and "--quick" not in cmd:
    cmd.append("--quick")
  print(f"--make-missing: running {' '.join(cmd)}", flush=True)
  subprocess.run([sys.executable] + cmd[1:], check=True)


def draw(name: str, args) -> tuple[list[pathlib.Path], str | None]:
  """Draw one figure; returns (paths, None) or ([], message) when an input is missing."""
  try:
    return _draw(name, args), None
  except inputs.MissingInput as e:
    if not args.make_missing:
      return [], str(e)
    try:
      _make_missing(e, args)
    except (subprocess.CalledProcessError, FileNotFoundError) as e2:
      return [], f"{e}\n  --make-missing failed: {e2}"
    try:
      return _draw(name, args), None
    except inputs.MissingInput as e3:
      return [], f"{e3}\n  (still missing after --make-missing)"


def build_parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m figures", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("name", help="a figure name, 'list' or 'all'")
  parser.add_argument("--runs", default="runs", metavar="DIR", help="folder holding run folders (default: runs)")
  parser.add_argument("--run", action="append", default=[], metavar="NAME_OR_PATH",
                      help="a run name under --runs or a path to a run folder (default: noise_vs_structure, or the "
                           "only finished run); repeat for figures that read several runs")
  parser.add_argument("--matrix", action="append", default=[], metavar="M",
                      help="weight matrix to draw (esd_by_regime, metrics_evolution: repeatable; esd_tail: one); "
                           "default: the first and last blocks' MLP output; names as in run.json")
  parser.add_argument("--checks", metavar="DIR",
                      help="folder of check results <CHECK>.json (default: <runs>/checks, then the run's checks folder)")
  parser.add_argument("--out", metavar="DIR", help="output folder (default: <runs>/figures)")
  parser.add_argument("--columns", type=int, choices=(1, 2), default=2,
                      help="paper layout width in columns (default 2)")
  parser.add_argument("--make-missing", action="store_true",
                      help="run the quick command producing a missing input (never the full-size one)")
  cli.add_debug_flag(parser)
  return parser


def describe_run_input(args) -> str:
  """Which run folder the run-based figures draw (or why none), for the first line of the output."""
  try:
    return f"run: {inputs.resolve_run_dir(args.runs, args.run[0] if args.run else None)}"
  except (inputs.MissingInput, ValueError) as e:
    return f"run: none ({cli.one_line(e)})"


def _main(argv: list[str]) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.name == "list":
    for n in registry.figure_names():
      mod = registry.get_figure(n)
      src = f"check {mod.CHECK}" if mod.INPUT == "check" else mod.INPUT
      print(f"{n:22s} [{src}] {mod.DESCRIPTION}")
    return 0
  names = registry.figure_names() if args.name == "all" else [args.name]
  if args.name != "all" and args.name not in registry.figure_names():
    parser.error(f"argument name: invalid choice: {args.name!r} (choose from {', '.join(registry.figure_names())}, "
                 "list, all)")
  if any(registry.get_figure(n).INPUT != "check" for n in names):
    print(describe_run_input(args))
  missing, failed = [], []
  for n in names:
    try:
      paths, problem = draw(n, args)
    except (RunFormatError, inputs.VerdictFormatError, KeyError, ValueError) as e:
      failed.append(n)
      print(f"{n}: error: {cli.error_message(e)}", file=sys.stderr)
      continue
    if problem:
      missing.append(n)
      print(f"{n}: skipped, missing input: {problem}", file=sys.stderr)
    else:
      for p in paths:
        print(f"{n}: {p}")
  if failed:
    return 1
  return 2 if missing else 0


def main(argv=None) -> int:
  return cli.run(_main, argv)


if __name__ == "__main__":
  sys.exit(main())
