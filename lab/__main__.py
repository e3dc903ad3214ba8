"""The lab's command line.

  python -m lab main [--config FILE] [--set key=value ...] [--runs DIR] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import sys

from models.config import load_config, with_overrides
from lab.main_job import default_config, run_main_job, tiny_config


def parse_override(text: str) -> tuple[str, object]:
  if "=" not in text:
    raise argparse.ArgumentTypeError(f"--set: expected key=value, got {text!r}")
  key, raw = text.split("=", 1)
  try:
    value = json.loads(raw)
  except json.JSONDecodeError:
    value = raw
  return key, value


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  p_main = sub.add_parser("main", help="the flagship experiment: noise vs structure vs the meso-scale")
  p_main.add_argument("--config", help="a .json or .toml RunConfig (unknown keys are an error)")
  p_main.add_argument("--set", action="append", default=[], type=parse_override, metavar="KEY=VALUE",
                      help="override a config value, e.g. --set train.steps=100")
  p_main.add_argument("--runs", default="runs", help="folder holding run folders (default: runs)")
  p_main.add_argument("--tiny", action="store_true", help="a seconds-long smoke-test size")
  p_main.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  if args.command == "main":
    cfg = load_config(args.config) if args.config else (tiny_config() if args.tiny else default_config())
    if args.set:
      cfg = with_overrides(cfg, dict(args.set))
    run_main_job(cfg, args.runs, progress=not args.no_progress)
  return 0


if __name__ == "__main__":
  sys.exit(main())
