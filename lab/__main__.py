"""The lab's command line.

  python -m lab main [--config FILE] [--set key=value ...] [--runs DIR] [--tiny]
  python -m lab sweep run SWEEP.toml [--out DIR] [--dry-run] [--retry-failed]
  python -m lab sweep summarize DIR
  python -m lab sweep status DIR
  python -m lab analyze RUN_DIR [--member I] [--step S] [--json P] [--csv P] [--randomize] [--level L]
                        [--no-structure]

``--distributed`` (before the command) calls ``jax.distributed.initialize()`` first, for multi-host runs.
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
  parser.add_argument("--distributed", action="store_true",
                      help="call jax.distributed.initialize() first (TPU pods, Slurm); only process 0 writes files")
  sub = parser.add_subparsers(dest="command", required=True)
  p_main = sub.add_parser("main", help="the flagship experiment: noise vs structure vs the meso-scale")
  p_main.add_argument("--config", help="a .json or .toml RunConfig (unknown keys are an error)")
  p_main.add_argument("--set", action="append", default=[], type=parse_override, metavar="KEY=VALUE",
                      help="override a config value, e.g. --set train.steps=100")
  p_main.add_argument("--runs", default="runs", help="folder holding run folders (default: runs)")
  p_main.add_argument("--tiny", action="store_true", help="a seconds-long smoke-test size")
  p_main.add_argument("--no-progress", action="store_true")
  p_sweep = sub.add_parser("sweep", help="batch runs: sweeps packed into vmapped ensembles, resumable")
  sweep_sub = p_sweep.add_subparsers(dest="sweep_command", required=True)
  p_run = sweep_sub.add_parser("run", help="run or resume a sweep")
  p_run.add_argument("sweep_file")
  p_run.add_argument("--out", default="runs/sweeps", help="parent folder of sweep folders (default runs/sweeps)")
  p_run.add_argument("--dry-run", action="store_true", help="print the packing plan and memory estimate only")
  p_run.add_argument("--retry-failed", action="store_true", help="rerun points recorded as failed")
  p_run.add_argument("--no-progress", action="store_true")
  for name, text in (("summarize", "write results.csv, the tidy table"), ("status", "count points per state")):
    sweep_sub.add_parser(name, help=text).add_argument("folder")
  p_an = sub.add_parser("analyze", help="spectral metrics table of one member's weights from a run's checkpoint")
  p_an.add_argument("run_dir")
  p_an.add_argument("--member", type=int, default=0)
  p_an.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
  p_an.add_argument("--json", dest="json_path")
  p_an.add_argument("--csv", dest="csv_path")
  p_an.add_argument("--level", type=float, default=0.01)
  p_an.add_argument("--randomize", action="store_true")
  p_an.add_argument("--seed", type=int, default=0)
  p_an.add_argument("--no-structure", action="store_true", help="skip the structure rank of W - W0 (faster)")
  args = parser.parse_args(argv)
  if args.distributed:
    from models.sharding import initialize_distributed

    initialize_distributed()
  if args.command == "analyze":
    return analyze_main(args)
  if args.command == "sweep":
    return sweep_main(args)
  if args.command == "main":
    cfg = load_config(args.config) if args.config else (tiny_config() if args.tiny else default_config())
    if args.set:
      cfg = with_overrides(cfg, dict(args.set))
    run_main_job(cfg, args.runs, progress=not args.no_progress)
  return 0


def analyze_main(args) -> int:
  """The checkpointed weights of one member, analysed by ``spectral`` (the run-folder loader of ``spectral analyze``)."""
  import jax

  from models.train import load_trained_params
  from models.weight_matrices import weight_matrices
  from spectral.__main__ import report

  step, cfg, params = load_trained_params(args.run_dir, args.step)
  if not 0 <= args.member < cfg.num_members:
    raise SystemExit(f"error: --member: expected 0..{cfg.num_members - 1}, got {args.member}")
  member = jax.tree_util.tree_map(lambda x: x[args.member], params)
  print(f"run {args.run_dir}, member {args.member}, checkpoint step {step}")
  inits, spaces = (None, None) if args.no_structure else member_structure_inputs(cfg, member, args.member)
  report(weight_matrices(member), level=args.level, randomize=args.randomize, seed=args.seed,
         json_path=args.json_path, csv_path=args.csv_path, structure=not args.no_structure, inits=inits,
         subspaces=spaces)
  return 0


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
  w0 = jax.jit(jax.vmap(lambda k, s: train.init_params(cfg, k, s)))(keys, train.member_hparams(members)["init_scale"])
  w0 = jax.tree_util.tree_map(lambda x: x[index], w0)
  tokens = make_task(cfg.data).eval_batch(jax.random.fold_in(keys[index], 2), 0, members[index].noise_p)[0]
  model = nnx.merge(train.graphdef_of(cfg), member_params)
  return weight_matrices(w0), subspaces.matrix_subspaces(model, tokens[:, :-1], include_circuits=False)


def sweep_main(args) -> int:
  from lab import sweep, sweep_spec

  if args.sweep_command == "run":
    spec = sweep_spec.load_sweep(args.sweep_file)
    packs = sweep_spec.plan_packs(spec)
    print(sweep.plan_summary(spec, packs))
    if args.dry_run:
      return 0
    folder = sweep.run_sweep(spec, args.out, retry_failed=args.retry_failed, progress=not args.no_progress)
    print(f"sweep folder: {folder}")
    print(f"states: {sweep.status(folder).counts}")
    print(f"results: {sweep.summarize(folder)}")
  elif args.sweep_command == "summarize":
    print(f"results: {sweep.summarize(args.folder)}")
  else:
    print(sweep.status(args.folder).counts)
  return 0


if __name__ == "__main__":
  sys.exit(main())
