"""Sweep benchmark: packing gain and the overhead of the manifest and checkpoints.

  python bench/bench_sweep.py [--points-seeds 8] [--lrs 4] [--steps 100] [--width 32]

(1) Packing gain. A sweep over seeds x learning rates (32 points by default) run two ways with the same total number
of training steps: packed (``lab.sweep``: one vmapped ensemble of 32 members) and point by point (32 one-member sweeps).
Prints both wall times (compilation included: a real sweep pays it, and at small sizes it dominates the point-by-point
runs) and the throughput ratio.
(2) Overhead of fault tolerance in the packed sweep at the default checkpoint interval: the time spent inside Orbax
saves and manifest writes (timed by wrapping those calls) as a fraction of the sweep's wall time.
Ratios are measured side by side in one process; nothing is asserted. The machine is printed first.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from lab import sweep, sweep_spec  # noqa: E402
from models import checkpoint, run_folder  # noqa: E402


class Stopwatch:
  """Accumulates the time spent inside wrapped functions."""

  def __init__(self):
    self.seconds = 0.0
    self.calls = 0

  def wrap(self, fn):
    def timed(*args, **kwargs):
      t = time.perf_counter()
      try:
        return fn(*args, **kwargs)
      finally:
        self.seconds += time.perf_counter() - t
        self.calls += 1

    return timed


def sweep_dict(name, seeds, lrs, steps, width, strategy):
  """A sweep over ``seeds`` (list of seed indices) x ``lrs``."""
  return {
      "sweep": {"name": name, "max_members": 1024},
      "base": {"model": {"d_model": width, "num_heads": 2, "num_layers": 2},
               "data": {"seq_len": 32, "vocab_size": 64, "batch_size": 16, "noise_p": [0.5],
                        "regime_names": ["meso"]},
               "train": {"steps": steps, "snapshot_steps": [0, steps], "eval_batches": 1, "members_per_regime": 1,
                         "ensemble_strategy": strategy}},
      "axes": {"seed": list(seeds), "learning_rate": list(lrs)},
  }


def main(argv=None):
  ap = argparse.ArgumentParser()
  ap.add_argument("--seeds", type=int, default=8)
  ap.add_argument("--lrs", default="1e-3,2e-3,3e-3,5e-3")
  ap.add_argument("--steps", type=int, default=100)
  ap.add_argument("--width", type=int, default=32)
  ap.add_argument("--strategy", default="auto")
  args = ap.parse_args(argv)
  lrs = [float(x) for x in args.lrs.split(",")]
  dev = jax.devices()[0]
  print(f"machine: {platform.node()} | {platform.machine()} | {os.cpu_count()} CPUs | jax {jax.__version__} "
        f"{jax.default_backend()} | {dev.device_kind} x {jax.device_count()}")
  points = args.seeds * len(lrs)
  print(f"sweep: {points} points (seeds x learning rates), width {args.width}, {args.steps} steps each, "
        f"strategy {args.strategy}")

  saves, manifests = Stopwatch(), Stopwatch()
  checkpoint.Checkpointer.save = saves.wrap(checkpoint.Checkpointer.save)
  sweep.run_folder.atomic_write_json = manifests.wrap(run_folder.atomic_write_json)

  with tempfile.TemporaryDirectory() as tmp:
    spec = sweep_spec.sweep_from_dict(sweep_dict("packed", range(args.seeds), lrs, args.steps, args.width,
                                                 args.strategy))
    t = time.perf_counter()
    sweep.run_sweep(spec, tmp, progress=False)
    packed = time.perf_counter() - t
    save_s, save_n, manifest_s, manifest_n = saves.seconds, saves.calls, manifests.seconds, manifests.calls

    t = time.perf_counter()
    for s in range(args.seeds):
      for lr in lrs:
        one = sweep_spec.sweep_from_dict(sweep_dict(f"solo-{s}-{lr:g}", [s], [lr], args.steps, args.width,
                                                    args.strategy))
        sweep.run_sweep(one, tmp, progress=False)
    solo = time.perf_counter() - t

  print(f"packed (1 program, {points} members):     {packed:8.2f} s")
  print(f"point by point ({points} programs):        {solo:8.2f} s")
  print(f"packing gain (throughput ratio):          {solo / packed:8.2f}x")
  print(f"checkpoint saves in the packed sweep:     {save_s:8.2f} s ({save_n} saves)")
  print(f"manifest/run.json writes (packed):        {manifest_s:8.3f} s ({manifest_n} writes)")
  print(f"fault-tolerance overhead (packed):        {100 * (save_s + manifest_s) / packed:7.2f}% of sweep time "
        "(target < 5%)")


if __name__ == "__main__":
  main()
