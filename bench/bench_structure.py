"""Benchmark: structure rank of GPT-2-small-shaped matrices as a ratio to the plain full-spectrum analysis.

    python bench/bench_structure.py [--small] [--threads 2] [--repeats 1] [--draws 24] [--compare]

The 48 matrices of ``bench_weight_spectra.py`` (12 blocks of 768x2304, 768x768, 768x3072, 3072x768; Student-t(3)
entries times 0.02, fixed seed), in one process with threads pinned alike (set before JAX is imported):
(a) ``spectral.analyze.analyze`` (every metric from the full spectrum), the reference;
(b) ``spectral.structure.structure_rank_batch`` per shape group (the null draws, Krylov statistics, deflation);
(c) the same on the 48 matrices with a rank-3 update planted in each (several deflation rounds);
(b') with ``--compare``: (b) with one ``(B, M, N)`` dispatch per null draw, the layout before cache-sized dispatches,
and (b0) (b) without the screen (``screen_draws=0``: every null draw for every matrix, the test before the screen);
and where the time of (b) goes: one round in full, its observed Krylov statistic, one null draw (sign flip +
Krylov, in cache-sized dispatches and as one ``(B, M, N)`` dispatch) and the flip alone, each timed separately. Compile time is excluded (a warm-up call), printed once. Goal: (b) <= 3 x (a).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_weight_spectra import _pin_threads, gpt2_small_matrices  # noqa: E402  (the same matrices, pinned alike)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--small", action="store_true", help="2 blocks at 1/4 size, for a quick run")
  parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--draws", type=int, default=None, help="null draws per round (default: the method's)")
  parser.add_argument("--compare", action="store_true",
                      help="also time (b) with one (B, M, N) dispatch per null draw (the earlier layout)")
  args = parser.parse_args()
  _pin_threads(args.threads)

  import jax
  import jax.numpy as jnp
  import numpy as np

  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from spectral import analyze as analyze_lib
  from spectral import structure as st

  d = 192 if args.small else 768
  mats = gpt2_small_matrices(args.small)
  rng = np.random.default_rng(1)
  options = {} if args.draws is None else {"draws": args.draws}
  opts_draws = st.StructureOptions(**options).draws
  dev = jax.devices()[0]
  print(f"{len(mats)} matrices, d={d}; {platform.node()} | {platform.processor() or platform.machine()} | "
        f"{os.cpu_count()} CPUs | jax {jax.__version__} {jax.default_backend()} {dev.device_kind}; "
        f"threads={args.threads}")
  print(f"method: {st.StructureOptions(**options).method()}")

  def timed(fn, repeats=args.repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
      t = time.perf_counter()
      out = fn()
      jax.block_until_ready(jax.tree_util.tree_leaves(out)) if out is not None else None
      best = min(best, time.perf_counter() - t)
    return best, out

  groups: dict[tuple, list[str]] = {}
  for name, w in mats.items():
    groups.setdefault(w.shape, []).append(name)
  batches = {shape: np.stack([mats[n] for n in names]) for shape, names in groups.items()}

  def structure_all(source):
    return [r for b in source.values() for r in st.structure_rank_batch(b, seed=0, **options)]

  planted = {}
  for shape, batch in batches.items():
    a, b = shape
    u = np.linalg.qr(rng.standard_normal((a, 3)))[0]
    v = np.linalg.qr(rng.standard_normal((b, 3)))[0]
    # theta = 5-7.5 in BBP units of the noise's standard deviation: clear of the t(3) noise's largest entries.
    scale = 0.02 * np.sqrt(3.0) * np.sqrt(max(a, b)) * 5.0
    planted[shape] = (batch + (u * scale * np.array([1.5, 1.25, 1.0])) @ v.T).astype(np.float32)

  t_compile, _ = timed(lambda: (analyze_lib.analyze(mats), structure_all(batches), structure_all(planted)), 1)
  t_analyze, _ = timed(lambda: analyze_lib.analyze(mats))
  t_struct, results = timed(lambda: structure_all(batches))
  t_planted, planted_results = timed(lambda: structure_all(planted))
  if args.compare:
    layout = st.draw_dispatches
    st.draw_dispatches = lambda batch, draws, m, n: (batch, 1)  # main's layout: one (B, M, N) dispatch a draw
    timed(lambda: structure_all(batches), 1)
    t_main_layout, main_results = timed(lambda: structure_all(batches))
    st.draw_dispatches = layout
    same = [r.rank for r in main_results] == [r.rank for r in results]
    compare = (f"(b') as (b), one dispatch a draw (earlier): {t_main_layout:8.2f} s   ratio to (a) "
               f"{t_main_layout / t_analyze:5.2f}; ranks identical to (b): {same}")
    unscreened = {**options, "screen_draws": 0}
    structure_unscreened = lambda: [r for b in batches.values()
                                    for r in st.structure_rank_batch(b, seed=0, **unscreened)]
    timed(structure_unscreened, 1)
    t_unscreened, full_results = timed(structure_unscreened)
    same = [r.rank for r in full_results] == [r.rank for r in results]
    draws = sum(r.null_draws for r in results) / len(results)
    compare += (f"\n(b0) as (b), no screen (every draw):      {t_unscreened:8.2f} s   ratio to (a) "
                f"{t_unscreened / t_analyze:5.2f}; (b) / (b0) {t_struct / t_unscreened:.2f}; ranks identical to "
                f"(b): {same}; null draws per matrix in (b) {draws:.1f} (of {opts_draws})")
  ranks = [r.rank for r in results]
  planted_ranks = [r.rank for r in planted_results]
  rounds = sum(r.rounds for r in planted_results)
  print(f"warm-up (compiles, TW1 tables): {t_compile:.1f} s")
  print(f"(a) spectral.analyze, all metrics:          {t_analyze:8.2f} s")
  print(f"(b) structure rank, iid t(3) matrices:      {t_struct:8.2f} s   ratio to (a) {t_struct / t_analyze:5.2f}"
        f"  (goal <= 3); ranks {sorted(set(ranks))} (nonzero: {sum(r > 0 for r in ranks)} of {len(ranks)})")
  print(f"(c) structure rank, rank-3 planted:         {t_planted:8.2f} s   ratio to (a) {t_planted / t_analyze:5.2f}"
        f"; ranks {sorted(set(planted_ranks))}, {rounds} rounds in all")
  if args.compare:
    print(compare)

  # Where (b) goes, for the largest group: one round in full, its observed statistic, one null draw, one flip.
  opts = st.StructureOptions(**options)
  shape = max(batches, key=lambda s: s[0] * s[1])
  x = batches[shape] if shape[0] <= shape[1] else np.swapaxes(batches[shape], 1, 2)
  x = jnp.asarray(x / np.sqrt(max(shape)))
  nb, m, n = x.shape
  key = jax.random.key(0)
  y0 = jnp.broadcast_to(jax.random.normal(key, (n, opts.block)), (nb, n, opts.block))
  u, v, s0 = jnp.zeros((nb, m, 0)), jnp.zeros((nb, n, 0)), jnp.zeros((nb, 0))
  scale = jnp.ones((nb, 1, 1))
  ks = jnp.zeros((nb,), jnp.int32)  # the first round's statistic: the top Ritz value
  size, chunk = st.draw_dispatches(nb, opts.draws, m, n)
  keys = jax.random.split(key, chunk)
  one_draw = jax.jit(st._null_statistic, static_argnames="steps")  # main's layout: one (B, M, N) dispatch a draw
  flip = jax.jit(st.sign_flip)
  pieces = {
      "round": lambda: st._round_statistics(x, u, s0, v, np.zeros(nb, int), key, draws=opts.draws, width=opts.block,
                                            steps=opts.steps, block=opts.block),
      "observed": lambda: st._observed_ritz(x, y0, steps=opts.steps),
      "draw": lambda: [st._null_statistics(x, u, s0, v, scale, y0, ks, keys, i, size=size, steps=opts.steps)
                       for i in range(0, nb, size)],
      "draw_whole": lambda: one_draw(x, u, s0, v, scale, y0, ks, key, steps=opts.steps),
      "flip": lambda: flip(x, key),
  }
  for fn in pieces.values():
    timed(fn, 1)
  t = {name: timed(fn, 3)[0] for name, fn in pieces.items()}
  t["draw"] /= chunk
  share = len(groups[shape]) * max(shape) * min(shape) / sum(w.size for w in mats.values())
  print(f"breakdown, group {shape[0]}x{shape[1]} ({nb} matrices, {share:.0%} of all entries): one round "
        f"{t['round']:.2f} s = observed Krylov {t['observed']:.3f} s + {opts.draws} null draws x "
        f"{t['draw']:.3f} s (dispatches of {size} matrices x {chunk} draws; sign flip alone {t['flip']:.3f} s a draw, "
        f"{t['flip'] / t['draw']:.0%}); one draw as one ({nb}, {m}, {n}) dispatch (main's layout) "
        f"{t['draw_whole']:.3f} s")


if __name__ == "__main__":
  main()
