"""Benchmark: our weight-spectrum analysis vs the float64 eigvalsh floor and WeightWatcher, side by side.

    python bench/bench_weight_spectra.py [--small] [--threads 1] [--skip-ww]

GPT-2-small-shaped matrices (12 blocks of 768x2304, 768x768, 768x3072, 3072x768; Student-t(3) entries scaled by
0.02, fixed seed). Times, in the same process with threads pinned alike (OMP/OpenBLAS/MKL/XLA set before imports):
(a) the floor: float64 numpy ``eigvalsh`` of each Gram matrix; (b) WeightWatcher ``analyze()`` default and with
``randomize=True, mp_fit=True`` (skipped with a message when not installed); (c) ``spectral.analyze`` without and with
the randomized baseline. Prints ratios and per-matrix alpha differences where both fits choose the same xmin (ours
run with ``ks="powerlaw"`` for that comparison, WeightWatcher's eigenvalues being ``N`` times ours). On a GPU the
accelerated path runs on device; the numpy floor and WeightWatcher stay on the CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _pin_threads(n: int) -> None:
  for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = str(n)
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'}"
                             f" intra_op_parallelism_threads={n}").strip()


def gpt2_small_matrices(small: bool = False) -> dict:
  """The 48 GPT-2-small-shaped matrices (12 blocks of 768x2304, 768x768, 768x3072, 3072x768; Student-t(3) entries
  times 0.02, seed 0), or 2 blocks at 1/4 size with ``small``; float32 numpy arrays by name."""
  import numpy as np

  d, blocks = (192, 2) if small else (768, 12)
  rng = np.random.default_rng(0)
  shapes = {"attn.qkv": (d, 3 * d), "attn.proj": (d, d), "mlp.fc": (d, 4 * d), "mlp.proj": (4 * d, d)}
  return {f"blocks.{b}.{k}": (0.02 * rng.standard_t(3, size=s)).astype(np.float32)
          for b in range(blocks) for k, s in shapes.items()}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--small", action="store_true", help="2 blocks at 1/4 size, for a quick run")
  parser.add_argument("--threads", type=int, default=1)
  parser.add_argument("--skip-ww", action="store_true")
  parser.add_argument("--repeats", type=int, default=1)
  args = parser.parse_args()
  _pin_threads(args.threads)

  import jax
  import numpy as np

  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from spectral import analyze as analyze_lib

  d = 192 if args.small else 768
  mats = gpt2_small_matrices(args.small)
  print(f"{len(mats)} matrices, d={d}; backend={jax.default_backend()} device={jax.devices()[0].device_kind}; "
        f"threads={args.threads}")

  def timed(fn, repeats=args.repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
      t = time.perf_counter()
      out = fn()
      best = min(best, time.perf_counter() - t)
    return best, out

  def floor():
    out = []
    for w in mats.values():
      w64 = w.astype(np.float64)
      ws = w64 if w64.shape[0] <= w64.shape[1] else w64.T
      out.append(np.linalg.eigvalsh(ws @ ws.T / max(w.shape)))
    return out

  t_floor, _ = timed(floor)
  print(f"(a) floor, float64 Gram eigvalsh:           {t_floor:8.2f} s")

  # Warm-up compiles (one per shape) and the Tracy-Widom constants, excluded as a one-off cost; reported separately.
  t_compile, _ = timed(lambda: analyze_lib.analyze(mats, randomize=True), repeats=1)
  t_ours, rows = timed(lambda: analyze_lib.analyze(mats))
  t_ours_r, _ = timed(lambda: analyze_lib.analyze(mats, randomize=True))
  print(f"(c) ours, all metrics:                      {t_ours:8.2f} s   ratio to floor {t_ours / t_floor:5.2f}"
        f"  (target <= 1.25)")
  print(f"(c) ours, + randomized baseline (MP fit always on): {t_ours_r:8.2f} s   (first call incl. compile "
        f"{t_compile:.2f} s)")

  if args.skip_ww:
    return
  try:
    import torch
    import weightwatcher as ww
  except ImportError as err:
    print(f"(b) WeightWatcher skipped: {err} (install the 'bench' extra: weightwatcher, torch)")
    return
  import logging
  logging.getLogger("weightwatcher").setLevel(logging.ERROR)
  torch.set_num_threads(args.threads)
  layers = []
  for w in mats.values():
    lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=False)
    with torch.no_grad():
      lin.weight.copy_(torch.from_numpy(w.T.copy()))  # torch stores (out, in)
    layers.append(lin)
  model = torch.nn.Sequential(*layers)
  watcher = ww.WeightWatcher(model=model)
  t_ww, details = timed(lambda: watcher.analyze(plot=False))
  print(f"(b) WeightWatcher analyze() default:        {t_ww:8.2f} s   ours is {t_ww / t_ours:5.2f}x faster"
        f"  (target >= 2.5)")
  t_ww_r, _ = timed(lambda: watcher.analyze(plot=False, randomize=True, mp_fit=True))
  print(f"(b) WeightWatcher randomize+mp_fit:         {t_ww_r:8.2f} s   ours (+baseline) is "
        f"{t_ww_r / t_ours_r:5.2f}x faster  (target >= 10)")

  rows_pl = analyze_lib.analyze(mats, ks="powerlaw")
  same, diffs = 0, []
  for r, (_, d_row) in zip(rows_pl, details.iterrows()):
    n = max(r["shape"])
    if abs(r["xmin"] * n / d_row["xmin"] - 1) < 1e-4:
      same += 1
      diffs.append(r["alpha"] - d_row["alpha"])
    print(f"  {r['name']:22s} alpha ours {r['alpha']:7.3f} ww {d_row['alpha']:7.3f}  xmin ours*N {r['xmin'] * n:9.4g} "
          f"ww {d_row['xmin']:9.4g}")
  if diffs:
    print(f"alpha where xmin agrees ({same}/{len(rows_pl)}): max |diff| {np.max(np.abs(diffs)):.2e} (target 0.05)")
  else:
    print(f"xmin agreed on none of {len(rows_pl)} matrices")


if __name__ == "__main__":
  main()
