"""Command line of the theory checks.

  python -m theory_checks list
  python -m theory_checks NAME [--quick] [--json PATH] [--runs DIR] [--seed S]
  python -m theory_checks all [--quick] [--runs DIR]
  python -m theory_checks calibrate [NAME ...] [--quick] [--json PATH]

Each check writes its verdict where every check result lives (``models.check_result``): beside the run folder it
measured, ``<runs>/<RUN>/checks/<NAME>.json`` (the main job's ``mp_at_init`` verdict is the same file), or
``<runs>/checks/<NAME>.json`` for a check that reads no run folder; ``--json PATH`` writes it there instead. It
prints a summary.
Checks that need trained models reuse the run folders under ``--runs`` (``models.train.train_run`` returns a finished
run without retraining). The exit status is 0 when no check FAILs (INCONCLUSIVE is not a failure), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from models.check_result import result_folder, result_path
from theory_checks import common
from theory_checks.registry import CHECKS, get_check
from theory_checks.verdict import FAIL


def run_one(name: str, quick: bool, runs_dir: pathlib.Path, json_path: str | None, seed: int) -> str:
  check = get_check(name)
  t0 = time.perf_counter()
  verdict = check.run(quick=quick, runs_dir=runs_dir, seed=seed)
  path = pathlib.Path(json_path) if json_path else result_path(result_folder(verdict.run, runs_dir), name)
  verdict.write_json(path)
  print(verdict.summary())
  print(f"  result:     {path}  ({time.perf_counter() - t0:.1f} s)")
  print()
  return verdict.status


def format_calibration(c: dict) -> str:
  skip = {"check", "per_shape"}
  return f"{c['check']}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in c.items() if k not in skip)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m theory_checks", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("name", help="'list', 'all', 'calibrate' or a check name")
  parser.add_argument("extra", nargs="*", help="check names for 'calibrate' (default: every calibrated check)")
  parser.add_argument("--quick", action="store_true", help="CPU-sized run (seconds); the test suite runs this")
  parser.add_argument("--json", help="where to write the verdict JSON (one check) or calibration JSON")
  parser.add_argument("--runs", default=str(common.DEFAULT_RUNS), help="folder of run folders (default: runs)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  runs_dir = pathlib.Path(args.runs)
  if args.name == "list":
    for c in CHECKS.values():
      print(f"{c.name:22s} {c.description}{'  [calibrated]' if c.calibrate else ''}")
    return 0
  if args.name == "calibrate":
    names = args.extra or [c.name for c in CHECKS.values() if c.calibrate]
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
  if args.name == "all":
    statuses = {}
    for name in CHECKS:
      statuses[name] = run_one(name, args.quick, runs_dir, None, args.seed)
    print("summary: " + ", ".join(f"{k} {v}" for k, v in statuses.items()))
    return 1 if FAIL in statuses.values() else 0
  status = run_one(args.name, args.quick, runs_dir, args.json, args.seed)
  return 1 if status == FAIL else 0


if __name__ == "__main__":
  sys.exit(main())
