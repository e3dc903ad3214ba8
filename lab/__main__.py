"""The lab's command line.

  python -m lab main [--config FILE] [--set KEY=VALUE ...] [--runs DIR] [--quick] [--no-progress]
  python -m lab config [--config FILE] [--set KEY=VALUE ...] [--quick]
  python -m lab sweep run SWEEP.toml [--runs DIR] [--dry-run] [--retry-failed] [--no-progress]
  python -m lab sweep status SWEEP [--runs DIR]
  python -m lab sweep summarize SWEEP [--runs DIR]
  python -m lab analyze [--run NAME_OR_PATH] [--runs DIR] [--member I] [--step S] [--json P] [--csv P] [--randomize]
                        [--no-structure]

Examples:
  python -m lab main --quick
  python -m lab main --set train.steps=100 --set name=short
  python -m lab config
  python -m lab analyze --run noise_vs_structure --member 4

``--set`` values are read as JSON, else as a string: ``train.steps=100``, ``data.kind=markov``,
``data.noise_p=[1,0.5,0]``, ``model.tie_embeddings=true``. ``--distributed`` (before the command) calls
``jax.distributed.initialize()`` first, for multi-host runs. ``--debug`` (anywhere) shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from models.config import load_config, with_overrides
from models.presets import TINY_OVERRIDES, default_config, tiny_config
from lab.main_job import run_main_job
from spectral import cli

RUNS_HELP = "folder holding run folders (default: runs)"


def parse_override(text: str) -> tuple[str, object]:
  """``KEY=VALUE`` with VALUE read as JSON (numbers, true/false, [lists]), else kept as a string."""
  if "=" not in text:
    raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as train.steps=100, got {text!r}")
  key, raw = text.split("=", 1)
  try:
    value = json.loads(raw)
  except json.JSONDecodeError:
    value = raw
  return key, value


def add_config_arguments(p: argparse.ArgumentParser) -> None:
  """The options that make a run config: a file, the quick size, overrides (in that order)."""
  p.add_argument("--config", metavar="FILE", help="a .toml or .json run config (see 'python -m lab config'; "
                                                  "unknown keys are an error)")
  p.add_argument("--set", action="append", default=[], type=parse_override, metavar="KEY=VALUE",
                 help="override one config key, applied last; VALUE is read as JSON, else as a string "
                      "(train.steps=100, data.kind=markov, data.noise_p=[1,0.5,0]); repeatable")
  p.add_argument("--quick", action="store_true",
                 help="a seconds-long size: the default config shrunk (run name 'tiny'), or the --config file with "
                      "the same sizes (name '<name>_quick')")
  p.add_argument("--tiny", action="store_true", dest="quick", help=argparse.SUPPRESS)  # deprecated alias


def add_main_parser(sub) -> None:
  p = sub.add_parser("main", help="the flagship experiment: noise vs structure vs the meso-scale",
                     description="Train the noise-vs-structure ensemble (or the --config run), check Marchenko-"
                                 "Pastur at initialisation, draw the ESD figure and print a summary. A finished run "
                                 "is reused, a killed one resumed.")
  add_config_arguments(p)
  p.add_argument("--runs", default="runs", metavar="DIR", help=RUNS_HELP)
  p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")


def add_config_parser(sub) -> None:
  p = sub.add_parser("config", help="print the run config (every key, type, default and meaning) as TOML",
                     description="Print a run config as a TOML file with every key, its type, value and meaning: "
                                 "the default, or what --config / --quick / --set make of it. Save it, edit it, "
                                 "and pass it back with --config.")
  add_config_arguments(p)


def add_sweep_parser(sub) -> None:
  p = sub.add_parser("sweep", help="batch runs: sweeps packed into vmapped ensembles, resumable, growable")
  sweep_sub = p.add_subparsers(dest="sweep_command", required=True)
  p_run = sweep_sub.add_parser("run", help="run, resume or grow a sweep (only points without results are trained)")
  p_run.add_argument("sweep_file", metavar="SWEEP.toml", help="the sweep file (lab/sweep_spec.py documents it)")
  p_run.add_argument("--runs", default="runs", metavar="DIR",
                     help="runs folder; the sweep folder is DIR/sweeps/<sweep name> (default: runs)")
  p_run.add_argument("--out", help=argparse.SUPPRESS)  # deprecated: the parent folder of sweep folders
  p_run.add_argument("--dry-run", action="store_true", help="print the packing plan and memory estimate only")
  p_run.add_argument("--retry-failed", action="store_true", help="rerun points recorded as failed")
  p_run.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
  for name, text in (("status", "a table of every point: values, pack, member, state (a dead worker shows as "
                                "interrupted)"),
                     ("summarize", "write results.csv (one row per point x snapshot x matrix) and its column "
                                   "dictionary results_columns.md")):
    ps = sweep_sub.add_parser(name, help=text)
    ps.add_argument("sweep", metavar="SWEEP", help="a sweep folder, or a sweep name under DIR/sweeps")
    ps.add_argument("--runs", default="runs", metavar="DIR", help=RUNS_HELP)


def add_analyze_parser(sub) -> None:
  p = sub.add_parser("analyze", help="spectral metrics table of one member's weights from a run's checkpoint")
  p.add_argument("run_dir", nargs="?", metavar="RUN", help="same as --run (kept for compatibility)")
  p.add_argument("--run", metavar="NAME_OR_PATH",
                 help="a run name under --runs or a path to a run folder (default: noise_vs_structure, or the only "
                      "finished run); for a sweep, one pack: SWEEPDIR/runs/<pack> (results.csv's pack column)")
  p.add_argument("--runs", default="runs", metavar="DIR", help=RUNS_HELP)
  p.add_argument("--member", type=int, default=0, metavar="I",
                 help="ensemble member index, as in run.json and results.csv's member column (default 0)")
  p.add_argument("--step", type=int, default=None, metavar="S", help="checkpoint step (default: the latest saved)")
  p.add_argument("--json", dest="json_path", metavar="PATH", help="also write the full table (every metric) as JSON")
  p.add_argument("--csv", dest="csv_path", metavar="PATH", help="also write the full table as CSV")
  p.add_argument("--level", type=float, default=0.01, metavar="L",
                 help="false-alarm level of the Tracy-Widom outlier count (default 0.01)")
  p.add_argument("--randomize", action="store_true",
                 help="add the entry-shuffled baseline (rand_* columns): the same metrics with the structure destroyed")
  p.add_argument("--seed", type=int, default=0, help="seed of the --randomize shuffle and the structure null (default 0)")
  p.add_argument("--no-structure", action="store_true",
                 help="skip the structure rank of W - W0 (W0 regenerated from the member's seed; docs/STRUCTURE.md)")


def build_parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m lab", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--distributed", action="store_true",
                      help="call jax.distributed.initialize() first (TPU pods, Slurm); only process 0 writes files")
  cli.add_debug_flag(parser)
  sub = parser.add_subparsers(dest="command", required=True)
  add_main_parser(sub)
  add_config_parser(sub)
  add_sweep_parser(sub)
  add_analyze_parser(sub)
  return parser


def config_from_args(args):
  """The run config of ``--config`` / ``--quick`` / ``--set``: the file (or the default), then the quick sizes,
  then the overrides."""
  if args.config is None:
    cfg = tiny_config() if args.quick else default_config()
  else:
    cfg = load_config(args.config)
    if args.quick:
      try:
        cfg = with_overrides(cfg, TINY_OVERRIDES | {"name": f"{cfg.name}_quick"})
      except (ValueError, TypeError) as e:
        raise ValueError(f"{e}; --quick sets {', '.join(TINY_OVERRIDES)}: give the failing key a value that fits "
                         "with --set, or drop --quick") from None
  return with_overrides(cfg, dict(args.set)) if args.set else cfg


def _main(argv: list[str]) -> int:
  args = build_parser().parse_args(argv)
  if args.distributed:
    from models.sharding import initialize_distributed

    initialize_distributed()
  if args.command == "analyze":
    return analyze_main(args)
  if args.command == "sweep":
    return sweep_main(args)
  cfg = config_from_args(args)
  if args.command == "config":
    from models.config_reference import config_toml

    print(config_toml(cfg, header=CONFIG_HEADER), end="")
    return 0
  run_main_job(cfg, args.runs, progress=not args.no_progress)
  return 0


CONFIG_HEADER = """A run config for python -m lab main --config FILE.toml (this one: what python -m lab config printed).
Every key is optional in a file; a missing key keeps its default. Each line: key = value  # type: meaning.
On the command line: --set section.key=VALUE, VALUE read as JSON, else as a string."""


def main(argv=None) -> int:
  return cli.run(_main, argv)


def resolve_run_folder(args) -> pathlib.Path:
  """The run folder ``lab analyze`` reads: ``--run`` or the positional RUN (a name under ``--runs`` or a path), by
  default the main job's run or the only finished one. A sweep folder is an error pointing at its packs."""
  from figures.inputs import resolve_run_dir

  if args.run and args.run_dir and args.run != args.run_dir:
    raise ValueError(f"--run: expected one run, got --run {args.run} and RUN {args.run_dir}; give one of them")
  name = args.run or args.run_dir
  path = pathlib.Path(name) if name else None
  if path is not None and (path / "manifest.json").exists():
    packs = sorted(p.name for p in (path / "runs").iterdir()) if (path / "runs").is_dir() else []
    raise ValueError(f"--run: expected a run folder, got the sweep folder {path}; analyze one of its packs, "
                     f"--run {path}/runs/<pack> --member <member> (the pack and member columns of results.csv; "
                     f"packs here: {', '.join(packs) or 'none yet'})")
  return resolve_run_dir(args.runs, name)


def analyze_main(args) -> int:
  """The checkpointed weights of one member, analysed by ``spectral`` (the run-folder loader of ``spectral analyze``),
  with the member's identity (regime, seed, hyper-parameters) printed first."""
  import jax

  from models import run_folder
  from models.train import load_trained_params
  from models.weight_matrices import weight_matrices
  from spectral.__main__ import report

  run_dir = resolve_run_folder(args)
  info = run_folder.read_json(run_dir / "run.json")
  members = info["members"]
  if not 0 <= args.member < len(members):
    raise ValueError(f"--member: expected a member index 0..{len(members) - 1} of {run_dir}, got {args.member}; "
                     "run.json lists the members")
  saved = run_folder.checkpoint_steps(run_dir)
  if not saved:
    raise ValueError(f"--run: expected a run folder with checkpoints, got {run_dir} without any; train it with "
                     "python -m lab main (its spectra/ hold the eigenvalues of every snapshot meanwhile)")
  if args.step is not None and args.step not in saved:
    raise ValueError(f"--step: expected a saved checkpoint step ({', '.join(map(str, saved))}), got {args.step}; "
                     "only the last train.checkpoint_keep checkpoints are kept (spectra/ holds the eigenvalues of "
                     "every snapshot step)")
  step, cfg, params = load_trained_params(run_dir, args.step)
  member = jax.tree_util.tree_map(lambda x: x[args.member], params)
  print(f"run {run_dir}, checkpoint step {step}")
  print(describe_member(run_dir, members[args.member], len(members)))
  inits, spaces = (None, None) if args.no_structure else member_structure_inputs(cfg, member, args.member)
  report(weight_matrices(member), level=args.level, randomize=args.randomize, seed=args.seed,
         json_path=args.json_path, csv_path=args.csv_path, structure=not args.no_structure, inits=inits,
         subspaces=spaces)
  return 0


def describe_member(run_dir: pathlib.Path, m: dict, count: int) -> str:
  """One line naming a member: index, regime and noise p, seed index, hyper-parameters, and for a sweep pack the
  sweep point it is (from the sweep's manifest.json two folders up)."""
  text = (f"member {m['index']} of {count}: regime {m['regime']} (p = {m['noise_p']:g}), seed index "
          f"{m['seed_index']}, learning rate {m['learning_rate']:g}, weight decay {m['weight_decay']:g}, init scale "
          f"{m['init_scale']:g}")
  manifest = run_dir.parent.parent / "manifest.json"
  if run_dir.parent.name == "runs" and manifest.exists():
    points = json.loads(manifest.read_text())["points"]
    for pid, p in points.items():
      if p["pack"] == run_dir.name and p["member"] == m["index"]:
        values = ", ".join(f"{k} = {v}" for k, v in sorted(p["values"].items()))
        text += f"\nsweep point {pid}: {values}"
  return text


def member_structure_inputs(cfg, member_params, index: int):
  """For the structure columns of ``analyze``: member ``index``'s initial weight matrices ``W0``, regenerated from
  its seed by the same vmapped initialisation over all members that training ran (so ``W - W0`` is exact), and
  its named subspaces (``models.subspaces.matrix_subspaces``) from one held-out batch of its own data."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from models import subspaces, train
  from models.data import make_task
  from models.weight_matrices import weight_matrices

  members = train.members_of(cfg)
  keys = jnp.stack([train.member_key(cfg, m.seed_index) for m in members])
  w0 = train.init_members(cfg, keys, train.member_hparams(members)["init_scale"])
  w0 = jax.tree_util.tree_map(lambda x: x[index], w0)
  tokens = make_task(cfg.data).eval_batch(jax.random.fold_in(keys[index], 2), 0, members[index].noise_p)[0]
  model = nnx.merge(train.graphdef_of(cfg), member_params)
  return weight_matrices(w0), subspaces.matrix_subspaces(model, tokens[:, :-1], include_circuits=False)


def sweep_main(args) -> int:
  from lab import sweep, sweep_spec

  if args.sweep_command == "run":
    spec = sweep_spec.load_sweep(args.sweep_file)
    parent = pathlib.Path(args.out) if args.out else pathlib.Path(args.runs) / "sweeps"
    plan = sweep.plan_sweep(spec, parent / spec.name)
    print(sweep.plan_summary(spec, plan))
    if args.dry_run:
      return 0
    folder = sweep.run_sweep(spec, parent, retry_failed=args.retry_failed, progress=not args.no_progress)
    print(f"sweep folder: {folder}")
    print(sweep.format_status(sweep.status(folder)))
    print(f"results: {sweep.summarize(folder)} (columns explained in {folder / sweep.COLUMNS_FILE})")
    return 0
  folder = sweep.resolve_sweep_folder(args.runs, args.sweep)
  if args.sweep_command == "summarize":
    print(f"results: {sweep.summarize(folder)} (columns explained in {folder / sweep.COLUMNS_FILE})")
  else:
    print(sweep.format_status(sweep.status(folder)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
