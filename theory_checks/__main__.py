"""Command line of the theory checks.

  python -m theory_checks list
  python -m theory_checks run NAME [NAME ...] [--quick] [--json PATH] [--runs DIR] [--seed S] [--seeds S ...] [--jobs N]
  python -m theory_checks all [--quick] [--runs DIR] [--seed S] [--jobs N]
  python -m theory_checks calibrate [NAME ...] [--quick] [--json PATH] [--seed S]

``python -m theory_checks NAME ...`` is short for ``run NAME ...``; ``--debug`` (anywhere) shows tracebacks.
Example: ``python -m theory_checks run mp_at_init --quick``.

Each check writes its verdict where every check result lives (``models.check_result``): beside the run folder it
measured, ``<runs>/<RUN>/checks/<NAME>.json`` (the main job's ``mp_at_init`` verdict is the same file), or
``<runs>/checks/<NAME>.json`` for a check that reads no run folder; ``--json PATH`` writes it there instead. It
prints a summary.
Checks that need trained models reuse the run folders under ``--runs`` (``models.train.train_run`` returns a finished
run without retraining). Several checks run ``--jobs`` at a time (default 2 on a machine with 2 or more cores; 1 runs
them in this process, in order), each in its own process, its running output in ``<runs>/logs/``
(``theory_checks.runner``); a check's numbers are the same either way. The exit status is 0 when no check FAILs
(INCONCLUSIVE is not a failure), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from spectral import cli
from theory_checks import common
from theory_checks.registry import CHECKS, get_check
from theory_checks.runner import default_jobs, run_checks
from theory_checks.verdict import FAIL


def format_calibration(c: dict) -> str:
  skip = {"check", "per_shape"}
  return f"{c['check']}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in c.items() if k not in skip)


SUBCOMMANDS = ("list", "run", "all", "calibrate")


def add_common_options(p: argparse.ArgumentParser, json_help: str) -> None:
  p.add_argument("--quick", action="store_true", help="CPU-sized run (seconds to a minute); the test suite runs this")
  p.add_argument("--runs", default=str(common.DEFAULT_RUNS), metavar="DIR",
                 help="folder of run folders: trained models are reused from it, results written under it "
                      "(default: runs)")
  p.add_argument("--seed", type=int, default=0, help="root seed of the check's random draws (default 0)")
  p.add_argument("--json", metavar="PATH", help=json_help)
  p.add_argument("--jobs", type=int, metavar="N", help="checks run at once, each in its own process (default: 2 on a "
                 "machine with 2 or more cores; 1: in this process, in order)")


def add_run_parser(sub) -> None:
  p = sub.add_parser("run", help="run the named checks")
  p.add_argument("names", nargs="+", metavar="NAME", help="check names ('python -m theory_checks list')")
  add_common_options(p, "where to write the verdict JSON (one check only; default: beside its run folder or "
                        "under --runs)")
  p.add_argument("--seeds", nargs="+", metavar="S", help="evaluation seeds (integers or ranges such as 100-131) of the "
                 "checks that take them (early_warning); calibration seeds stay the design's")


def add_all_parser(sub) -> None:
  p = sub.add_parser("all", help="run every check and print a summary line")
  add_common_options(p, argparse.SUPPRESS)


def add_calibrate_parser(sub) -> None:
  p = sub.add_parser("calibrate", help="false-alarm rates on exact nulls and power on planted alternatives")
  p.add_argument("names", nargs="*", metavar="NAME", help="checks to calibrate (default: every calibrated check)")
  add_common_options(p, "also write the calibration results as JSON here")


def build_parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m theory_checks", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  cli.add_debug_flag(parser)
  sub = parser.add_subparsers(dest="command", required=True)
  sub.add_parser("list", help="the checks, one line each")
  add_run_parser(sub)
  add_all_parser(sub)
  add_calibrate_parser(sub)
  return parser


def _main(argv: list[str]) -> int:
  if argv and not argv[0].startswith("-") and argv[0] not in SUBCOMMANDS:
    argv = ["run", *argv]  # the shortcut python -m theory_checks NAME
  args = build_parser().parse_args(argv)
  if args.command == "list":
    for c in CHECKS.values():
      print(f"{c.name:22s} {c.description}{'  [calibrated]' if c.calibrate else ''}")
    return 0
  runs_dir = pathlib.Path(args.runs)
  if args.command == "calibrate":
    names = args.names or [c.name for c in CHECKS.values() if c.calibrate]
    results = []
    for name in names:
      check = get_check(name)
      if check.calibrate is None:
        print(f"{name}: no nominal level to calibrate")
        continue
      res = check.calibrate(quick=args.quick, seed=args.seed)
      results.append(res)
      print(format_calibration(res))
    if args.json:
      pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
      pathlib.Path(args.json).write_text(json.dumps(results, indent=2, default=float) + "\n")
    bad = [r for r in results if any(r.get(k, 0) > 2 * r["level"] for k in r if k.startswith("false_alarm"))]
    for r in bad:
      print(f"BUG: {r['check']} false-alarm rate above twice its nominal level {r['level']}")
    return 1 if bad else 0
  names = list(CHECKS) if args.command == "all" else args.names
  for name in names:
    get_check(name)  # every name is checked before anything runs
  seeds = getattr(args, "seeds", None)
  if seeds is not None:
    no_seeds = [n for n in names if not get_check(n).seeds]
    if no_seeds:
      raise ValueError(f"--seeds: expected checks that take evaluation seeds "
                       f"({', '.join(c.name for c in CHECKS.values() if c.seeds)}), got {', '.join(no_seeds)}")
  if args.json and len(names) > 1:
    raise ValueError(f"--json: expected one check, got {len(names)} ({', '.join(names)}); drop --json (each check "
                     "writes its own result file) or run one check")
  jobs = default_jobs(len(names)) if args.jobs is None else args.jobs
  if jobs < 1:
    raise ValueError(f"--jobs: expected a positive number of checks to run at once, got {jobs}")
  statuses = run_checks(names, quick=args.quick, runs_dir=runs_dir, json_path=args.json, seed=args.seed, seeds=seeds,
                        jobs=jobs)
  if len(names) > 1:
    print("summary: " + ", ".join(f"{k} {v}" for k, v in statuses.items()))
  return 1 if FAIL in statuses.values() else 0


def main(argv=None) -> int:
  return cli.run(_main, argv)


if __name__ == "__main__":
  sys.exit(main())
