"""Ensemble step benchmark: K members in one compiled step versus K sequential runs, per width and strategy.

  python bench/bench_ensemble.py [--widths 64,128,256] [--members 8] [--steps 20] [--device-report]

Prints, side by side and never asserted: seconds per step for K sequential solo runs (one jitted member step each)
and for the ensemble step with each strategy (``vmap``, ``map`` = ``jax.lax.map``, ``chunked`` = ``lax.map`` over
vmapped chunks), the speed-up ratio sequential / ensemble, tokens/s, and model FLOPs utilisation against this
machine's measured matmul peak (training FLOPs per token ``6 N + 12 layers d_model L``, Kaplan et al. 2020; N
non-embedding parameters). Then the cost of spectral tracking at the flagship's default snapshot schedule:
``snapshots x (time of one snapshot: ESDs of every matrix + held-out evaluation, fetched to the host)`` over
``steps x (time of one step)``, the same for Jacobian tracking (``tracking.track_jacobian`` at its default probe
batch) and, with ``--hessian-tracking``, Hessian tracking (minutes on a CPU; ``bench/bench_hessian.py`` always
prints it), and the strategy this machine should use by default.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from models.members import graphdef_of, member_hparams, member_key, members_of  # noqa: E402
from models.steps import (init_state, make_ensemble_step, make_evaluate, make_member_step, make_tracking,  # noqa: E402
                          resolve_strategy, spectra_of)
from models.config import RunConfig, with_overrides  # noqa: E402
from models.data import make_task  # noqa: E402
from models.weight_matrices import weight_matrices  # noqa: E402


def machine() -> str:
  dev = jax.devices()[0]
  return (f"{platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | "
          f"jax {jax.__version__} {jax.default_backend()} | {dev.device_kind} x {jax.device_count()}")


def matmul_peak(n: int, reps: int = 5) -> float:
  """Measured float32 FLOP/s of an n x n matmul (best of ``reps``)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  f(a, a).block_until_ready()
  best = min(_time(lambda: f(a, a).block_until_ready()) for _ in range(reps))
  return 2 * n**3 / best


def _time(fn) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def config_for(width: int, members: int) -> RunConfig:
  heads = max(1, width // 32)
  return with_overrides(RunConfig(name="bench"), {"model.d_model": width, "model.num_heads": heads,
                                                  "ensemble.members": [{"seed_index": i, "noise_p": 0.5}
                                                                       for i in range(members)]})


def flops_per_token(cfg: RunConfig) -> float:
  d, layers, length = cfg.model.d_model, cfg.model.num_layers, cfg.data.seq_len
  n = layers * (4 * d * d + 2 * cfg.model.mlp_ratio * d * d) + d * cfg.data.vocab_size
  return 6 * n + 12 * layers * d * length


def setup(cfg: RunConfig):
  members = members_of(cfg)
  keys = jnp.stack([member_key(cfg, m.seed_index) for m in members])
  hp = member_hparams(members)
  return keys, hp, graphdef_of(cfg), make_task(cfg.data)


def time_ensemble(cfg, strategy, steps) -> float:
  keys, hp, graphdef, task = setup(cfg)
  state = init_state(cfg, keys, hp)
  fn = make_ensemble_step(cfg, graphdef, strategy, task)
  state, out = fn(state, hp, keys, 0)
  jax.block_until_ready(out)
  t = time.perf_counter()
  for s in range(1, steps + 1):
    state, out = fn(state, hp, keys, s)
  jax.block_until_ready((state, out))
  return (time.perf_counter() - t) / steps


def time_sequential(cfg, steps) -> float:
  """K solo runs one after the other (same compiled member step), seconds per ensemble-equivalent step."""
  keys, hp, graphdef, task = setup(cfg)
  state = init_state(cfg, keys, hp)
  fn = jax.jit(make_member_step(cfg, graphdef, task), donate_argnums=(0,))
  solos = [(jax.tree_util.tree_map(lambda x: x[i], state), {k: v[i] for k, v in hp.items()}, keys[i])
           for i in range(keys.shape[0])]
  s0, h0, k0 = solos[0]
  jax.block_until_ready(fn(jax.tree_util.tree_map(jnp.copy, s0), h0, k0, 0))
  total = 0.0
  for st, h, k in solos:
    t = time.perf_counter()
    for s in range(1, steps + 1):
      st, out = fn(st, h, k, s)
    jax.block_until_ready((st, out))
    total += time.perf_counter() - t
  return total / steps


def spectral_overhead(strategy: str, steps: int) -> tuple[float, float, float]:
  """(seconds per step, seconds per snapshot, overhead at the default schedule) for the flagship config."""
  cfg = RunConfig()
  keys, hp, graphdef, task = setup(cfg)
  step_time = time_ensemble(cfg, strategy, steps)
  evaluate = make_evaluate(cfg, graphdef, strategy, task)
  state = init_state(cfg, keys, hp)

  def snap():
    jax.device_get((spectra_of(weight_matrices(state["params"], 1)),
                    evaluate(state["params"], keys, hp["noise_p"])))

  snap()
  snap_time = min(_time(snap) for _ in range(3))
  n_snap = len(cfg.train.snapshot_steps)
  return step_time, snap_time, n_snap * snap_time / (cfg.train.steps * step_time)


def tracking_seconds(cfg: RunConfig, strategy: str, repeats: int = 2) -> tuple[float, float]:
  """(compile seconds, seconds per snapshot: best of ``repeats``) of ``cfg``'s Jacobian/Hessian tracking over every
  member (``models.steps.make_tracking``), results fetched to the host."""
  keys, hp, graphdef, task = setup(cfg)
  track = make_tracking(cfg, graphdef, strategy, task)
  params = init_state(cfg, keys, hp)["params"]
  compile_time = _time(lambda: jax.device_get(track(params, keys, hp["noise_p"])))
  return compile_time, min(_time(lambda: jax.device_get(track(params, keys, hp["noise_p"]))) for _ in range(repeats))


def tracking_costs(strategy: str, hessian: bool) -> list[tuple[str, str, float, float]]:
  """(name, description, compile seconds, seconds per snapshot) of Jacobian tracking and, when ``hessian``, Hessian
  tracking, each alone at its default settings on the flagship config."""
  base = RunConfig()
  parts = [("Jacobian", {"tracking.track_jacobian": True})] + (
      [("Hessian", {"tracking.track_hessian": True})] if hessian else [])
  out = []
  for name, overrides in parts:
    cfg = with_overrides(base, overrides)
    compile_t, t = tracking_seconds(cfg, strategy, repeats=2 if name == "Jacobian" else 1)
    tc = cfg.tracking
    what = (f"{tc.jacobian_probe_batch} probes, {base.model.num_layers} blocks + network" if name == "Jacobian" else
            f"top {tc.hessian_top_k} by {tc.hessian_lanczos_steps} Lanczos steps + Hutch++ "
            f"{tc.hessian_trace_matvecs} products")
    out.append((name, what, compile_t, t))
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--widths", default=None, help="comma-separated d_model values (default 64,128,256; GPU adds 512)")
  ap.add_argument("--members", type=int, default=8)
  ap.add_argument("--steps", type=int, default=20)
  ap.add_argument("--strategies", default="vmap,map,chunked")
  ap.add_argument("--device-report", action="store_true", help="print every device and the memory in use")
  ap.add_argument("--skip-spectral", action="store_true")
  ap.add_argument("--hessian-tracking", action="store_true", help="also time Hessian tracking (minutes on a CPU)")
  args = ap.parse_args(argv)
  gpu = jax.default_backend() != "cpu"
  widths = [int(w) for w in (args.widths or ("64,128,256,512" if gpu else "64,128,256")).split(",")]
  strategies = args.strategies.split(",")
  print(f"machine: {machine()}")
  if args.device_report:
    for d in jax.devices():
      stats = d.memory_stats() or {}
      print(f"  device {d.id}: {d.device_kind} ({d.platform}), bytes in use {stats.get('bytes_in_use', 'n/a')}, "
            f"limit {stats.get('bytes_limit', 'n/a')}")
  peak = matmul_peak(8192 if gpu else 1024)
  print(f"measured float32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
  print(f"K = {args.members} members, {args.steps} timed steps after one compiled warm-up step; "
        "ratio = sequential time / ensemble time (> 1: the ensemble is faster)")
  header = f"{'width':>6} {'sequential s/step':>18}" + "".join(f" {s + ' s/step':>15} {'ratio':>6}" for s in strategies)
  print(header + f" {'best':>8} {'tokens/s':>10} {'MFU':>7}")
  best_by_width = {}
  for w in widths:
    cfg = config_for(w, args.members)
    seq = time_sequential(cfg, args.steps)
    times = {s: time_ensemble(cfg, s, args.steps) for s in strategies}
    best = min(times, key=times.get)
    best_by_width[w] = (best, seq / times[best])
    tokens = args.members * cfg.data.batch_size * cfg.data.seq_len / times[best]
    mfu = tokens * flops_per_token(cfg) / peak
    print(f"{w:>6} {seq:>18.4f}" + "".join(f" {times[s]:>15.4f} {seq / times[s]:>6.2f}" for s in strategies)
          + f" {best:>8} {tokens:>10.0f} {mfu:>7.1%}")
  wins = {s: sum(b == s for b, _ in best_by_width.values()) for s in strategies}
  print(f"fastest strategy per width: {', '.join(f'{w}: {b} ({r:.2f}x)' for w, (b, r) in best_by_width.items())}; "
        f"auto resolves to {resolve_strategy('auto')!r} on {jax.default_backend()} "
        f"(wins here: {wins})")
  if not args.skip_spectral:
    strategy = resolve_strategy("auto")
    step_t, snap_t, overhead = spectral_overhead(strategy, args.steps)
    cfg = RunConfig()
    print(f"spectral tracking, flagship config ({cfg.num_members} members, {strategy}): step {step_t * 1e3:.1f} ms, "
          f"snapshot {snap_t * 1e3:.1f} ms; {len(cfg.train.snapshot_steps)} snapshots over {cfg.train.steps} steps "
          f"-> overhead {overhead:.1%} (target < 10%)")
    n_snap, steps = len(cfg.train.snapshot_steps), cfg.train.steps
    for name, what, compile_t, t in tracking_costs(strategy, args.hessian_tracking):
      print(f"{name} tracking ({what}): {t * 1e3:.0f} ms per snapshot (compile {compile_t:.1f} s) -> overhead "
            f"{n_snap * t / (steps * step_t):.1%}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
