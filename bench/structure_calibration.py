"""Calibration of the structure rank (spectral/structure.py): false alarms on null matrices, power on planted spikes.

    nice -n 5 python bench/structure_calibration.py [--null 1000] [--power 200] [--quick] [--json PATH]

False alarms: the fraction of null matrices with structure rank >= 1 (the family-wise false-alarm rate, nominal
``level``), with a Clopper-Pearson 95% interval, per shape (16x32, 32x128, 128x512) and entry law: iid Gaussian,
Student-t(3), Student-t(2.5), row/column-scaled Gaussian ``D_r G D_c`` (scales uniform in [0.5, 2]) and, as a case
the null is NOT exact for, centred exponential entries (skewed). Default method (TW1 tail on 24 draws) throughout;
the exact Monte Carlo p-value (99 draws) on 32x128 for comparison.

Power: planted ``W = theta sum_i u_i v_i^T + G / sqrt(N)`` (BBP convention, ``spectral.bbp``; k = 1 and k = 3 equal
spikes) at ``theta / theta_c`` from below to above the threshold ``theta_c = q^(1/4)``; reported: P(rank >= 1),
P(rank = k), P(rank > k) and, for reference, the power of the oracle that knows the noise is iid N(0, 1/N)
(Johnstone's Tracy-Widom test on the top eigenvalue, ``spectral.tracy_widom``), which no test without that
knowledge can beat for k = 1.

Exactly k: k = 3 spikes at 4-6 theta_c in each noise law (scaled to unit mean square), and for the heavy-tailed
laws also at 2-3 times the noise's own median top singular value (which, not theta_c, is the scale a spike must
clear when the largest entries set the top of the spectrum): P(rank = k) and the over-detection rate P(rank > k),
the false-alarm rate of the tests after deflation.

The screen (``StructureOptions.screen_draws``; on by default) can only lower a rank, so the false alarms measured
with it are at most those without it; the power table gives both, and the fraction of matrices whose rank the
screen changed (it can only lower it: ``screen_raised`` in the JSON checks that).

Seeds are fixed, so the tables are reproducible; the numbers in docs/STRUCTURE.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from spectral import bbp  # noqa: E402
from spectral import structure as st  # noqa: E402
from spectral import tracy_widom as tw  # noqa: E402

LAWS = ("gaussian", "t3", "t2.5", "scaled", "exp (skewed)")
SHAPES = ((16, 32), (32, 128), (128, 512))
RATIOS = (0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0)
CHUNK_ENTRIES = 2**24  # matrices per structure_rank_batch call: about 64 MB of float32


def null_matrices(law: str, rng, count: int, shape) -> np.ndarray:
  a, b = shape
  if law == "gaussian":
    return rng.standard_normal((count, a, b))
  if law == "t3":
    return rng.standard_t(3.0, (count, a, b))
  if law == "t2.5":
    return rng.standard_t(2.5, (count, a, b))
  if law == "scaled":
    return rng.uniform(0.5, 2.0, (count, a, 1)) * rng.standard_normal((count, a, b)) * rng.uniform(0.5, 2.0,
                                                                                                   (count, 1, b))
  if law == "exp (skewed)":
    return rng.exponential(1.0, (count, a, b)) - 1.0
  raise ValueError(f"law: unknown {law!r}")


def ranks_of(ws: np.ndarray, seed: int, **options) -> np.ndarray:
  per_call = max(1, CHUNK_ENTRIES // (ws.shape[1] * ws.shape[2]))
  out = []
  for start in range(0, ws.shape[0], per_call):
    chunk = ws[start:start + per_call].astype(np.float32)
    out.extend(r.rank for r in st.structure_rank_batch(chunk, seed=seed + start, **options))
  return np.asarray(out)


def interval(hits: int, n: int) -> tuple[float, float]:
  lo = stats.beta.ppf(0.025, hits, n - hits + 1) if hits > 0 else 0.0
  hi = stats.beta.ppf(0.975, hits + 1, n - hits) if hits < n else 1.0
  return float(lo), float(hi)


def false_alarms(n: int, level: float, shapes, laws, options: dict, label: str) -> list[dict]:
  rows = []
  for si, shape in enumerate(shapes):
    for li, law in enumerate(laws):
      rng = np.random.default_rng([1, si, li])
      t0 = time.perf_counter()
      ranks = ranks_of(null_matrices(law, rng, n, shape), seed=1000 * si + 100 * li, level=level, **options)
      hits = int(np.sum(ranks > 0))
      lo, hi = interval(hits, n)
      rows.append(dict(method=label, shape=f"{shape[0]}x{shape[1]}", law=law, n=n, false_alarms=hits,
                       rate=hits / n, ci95=(lo, hi), max_rank=int(ranks.max()), seconds=time.perf_counter() - t0))
      print(f"  {label:10s} {rows[-1]['shape']:8s} {law:13s} {hits:4d}/{n}  rate {hits / n:.4f}  "
            f"95% CI [{lo:.4f}, {hi:.4f}]  ({rows[-1]['seconds']:.0f} s)", flush=True)
  return rows


def oracle_rejects(ws: np.ndarray, level: float) -> np.ndarray:
  """Johnstone's TW1 test with the noise variance known: ``l_max(Z^T Z) > mu + s * TW1^-1(1 - level)``,
  ``Z = sqrt(N) W`` (unit-variance noise entries)."""
  a, b = ws.shape[1:]
  n, m = max(a, b), min(a, b)
  mu, s = tw.johnstone_centring_scaling(n, m)
  top = np.linalg.norm(ws.astype(np.float64) * np.sqrt(n), ord=2, axis=(1, 2)) ** 2
  return top > mu + s * tw.tw_quantile(1.0 - level, beta=1)


def power(n: int, level: float, shapes, ks, ratios) -> list[dict]:
  rows = []
  for si, shape in enumerate(shapes):
    q = min(shape) / max(shape)
    theta_c = bbp.bbp_threshold(q)
    for k in ks:
      for ri, ratio in enumerate(ratios):
        key = 7919 * si + 131 * k + ri
        ws = np.stack([np.asarray(bbp.plant_spikes(key * 100_000 + i, shape, [ratio * theta_c] * k)[0])
                       for i in range(n)])
        t0 = time.perf_counter()
        ranks = ranks_of(ws, seed=key, level=level)
        unscreened = ranks_of(ws, seed=key, level=level, screen_draws=0)  # what the screen costs in power
        oracle = float(np.mean(oracle_rejects(ws, level)))
        rows.append(dict(shape=f"{shape[0]}x{shape[1]}", k=k, ratio=ratio, theta=ratio * theta_c, n=n,
                         p_detect=float(np.mean(ranks >= 1)), p_exact=float(np.mean(ranks == k)),
                         p_over=float(np.mean(ranks > k)), mean_rank=float(np.mean(ranks)), oracle_detect=oracle,
                         p_detect_unscreened=float(np.mean(unscreened >= 1)),
                         screen_changed=float(np.mean(ranks != unscreened)),
                         screen_raised=float(np.mean(ranks > unscreened)), seconds=time.perf_counter() - t0))
        r = rows[-1]
        print(f"  {r['shape']:8s} k={k} theta/theta_c={ratio:4.2f}  P(rank>=1) {r['p_detect']:.3f}  "
              f"P(rank=k) {r['p_exact']:.3f}  P(rank>k) {r['p_over']:.3f}  mean rank {r['mean_rank']:.2f}  "
              f"oracle TW {oracle:.3f}  no screen: P(rank>=1) {r['p_detect_unscreened']:.3f}, rank changed "
              f"{r['screen_changed']:.3f}  ({r['seconds']:.0f} s)", flush=True)
  return rows


def planted_in(law: str, rng, shape, thetas) -> np.ndarray:
  """``sum_i theta_i u_i v_i^T + E / sqrt(N)`` with noise ``E`` of ``law`` scaled to unit mean square."""
  a, b = shape
  e = null_matrices(law, rng, 1, shape)[0]
  e = e / np.sqrt(np.mean(e**2))
  u = np.linalg.qr(rng.standard_normal((a, len(thetas))))[0]
  v = np.linalg.qr(rng.standard_normal((b, len(thetas))))[0]
  return (u * np.asarray(thetas)) @ v.T + e / np.sqrt(max(a, b))


def noise_top(law: str, shape, draws: int = 20) -> float:
  """Median top singular value of ``E / sqrt(N)`` for unit-mean-square noise ``E`` of ``law``: the scale a spike
  must clear. For light tails it is the bulk edge ``1 + sqrt(q)``; for heavy tails the largest entries set it and it
  grows with the size (about ``max |E_ij| / sqrt(N)``)."""
  rng = np.random.default_rng([3, *shape])
  tops = []
  for _ in range(draws):
    e = null_matrices(law, rng, 1, shape)[0]
    tops.append(np.linalg.norm(e / np.sqrt(np.mean(e**2)), ord=2) / np.sqrt(max(shape)))
  return float(np.median(tops))


def exact_k(n: int, level: float, shapes, laws, k: int = 3, scale: str = "bbp", ratio: float = 4.0) -> list[dict]:
  """Rank recovered for ``k`` planted spikes (strengths spread over [1, 1.5] times ``ratio`` times the scale:
  ``theta_c`` for ``scale="bbp"``, the noise's median top singular value for ``scale="noise top"``) in each noise
  law: P(rank = k), the over-detection rate P(rank > k) and P(rank < k)."""
  rows = []
  for si, shape in enumerate(shapes):
    for li, law in enumerate(laws):
      unit = bbp.bbp_threshold(min(shape) / max(shape)) if scale == "bbp" else noise_top(law, shape)
      rng = np.random.default_rng([2, si, li])
      ws = np.stack([planted_in(law, rng, shape, ratio * unit * np.linspace(1.0, 1.5, k)) for _ in range(n)])
      t0 = time.perf_counter()
      ranks = ranks_of(ws, seed=500 * si + 50 * li, level=level)
      rows.append(dict(shape=f"{shape[0]}x{shape[1]}", law=law, k=k, scale=scale, ratio=ratio, unit=unit, n=n,
                       p_exact=float(np.mean(ranks == k)), p_over=float(np.mean(ranks > k)),
                       p_under=float(np.mean(ranks < k)), seconds=time.perf_counter() - t0))
      r = rows[-1]
      print(f"  {r['shape']:8s} {law:13s} k={k} at {ratio}-{1.5 * ratio} x {scale} ({unit:.2f})  P(rank=k) "
            f"{r['p_exact']:.3f}  P(rank>k) {r['p_over']:.3f}  P(rank<k) {r['p_under']:.3f}  ({r['seconds']:.0f} s)",
            flush=True)
  return rows


def markdown(fa: list[dict], pw: list[dict], ek: list[dict], level: float) -> str:
  lines = [f"False alarms at level {level} (fraction of null matrices with structure rank >= 1):", "",
           "| method | shape | entries | n | rate | 95% CI |", "| --- | --- | --- | --- | --- | --- |"]
  for r in fa:
    lines.append(f"| {r['method']} | {r['shape']} | {r['law']} | {r['n']} | {r['rate']:.4f} | "
                 f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}] |")
  lines += ["", "Power against k planted spikes of strength theta (Gaussian noise):", "",
            "| shape | k | theta/theta_c | n | P(rank>=1) | P(rank=k) | P(rank>k) | mean rank | oracle TW (k=1 ref.) "
            "| P(rank>=1), no screen | rank changed by the screen |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in pw:
    lines.append(f"| {r['shape']} | {r['k']} | {r['ratio']:.2f} | {r['n']} | {r['p_detect']:.3f} | "
                 f"{r['p_exact']:.3f} | {r['p_over']:.3f} | {r['mean_rank']:.2f} | {r['oracle_detect']:.3f} | "
                 f"{r['p_detect_unscreened']:.3f} | {r['screen_changed']:.3f} |")
  lines += ["", "Exactly k: planted spikes in each noise law (over-detection is a false alarm):", "",
            "| shape | noise | k | strengths theta | n | P(rank=k) | P(rank>k) | P(rank<k) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in ek:
    unit = "theta_c" if r["scale"] == "bbp" else f"noise top ({r['unit']:.2f})"
    lines.append(f"| {r['shape']} | {r['law']} | {r['k']} | {r['ratio']:.1f}-{1.5 * r['ratio']:.1f} x {unit} | "
                 f"{r['n']} | {r['p_exact']:.3f} | {r['p_over']:.3f} | {r['p_under']:.3f} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--null", type=int, default=1000, help="null matrices per shape and law (1000)")
  parser.add_argument("--power", type=int, default=200, help="planted matrices per power cell (200)")
  parser.add_argument("--level", type=float, default=0.01)
  parser.add_argument("--quick", action="store_true", help="100 null / 40 power matrices, for a smoke run")
  parser.add_argument("--skip-mc", action="store_true", help="skip the Monte Carlo p-value rows")
  parser.add_argument("--only-exact-k", action="store_true", help="only the exactly-k table")
  parser.add_argument("--json", dest="json_path", help="write every number as JSON")
  args = parser.parse_args()
  n_null, n_power = (100, 40) if args.quick else (args.null, args.power)
  dev = jax.devices()[0]
  print(f"machine: {platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | "
        f"jax {jax.__version__} {jax.default_backend()} {dev.device_kind}")
  print(f"method: {st.StructureOptions().method()}")
  t0 = time.perf_counter()
  if args.only_exact_k:
    ek = exact_k(n_power, args.level, SHAPES[1:], LAWS[:4], scale="bbp", ratio=4.0)
    ek += exact_k(n_power, args.level, SHAPES[1:], LAWS[1:3], scale="noise top", ratio=2.0)
    print(markdown([], [], ek, args.level))
    return
  print("false alarms:")
  fa = false_alarms(n_null, args.level, SHAPES, LAWS, {}, "tail, 24")
  if not args.skip_mc:
    fa += false_alarms(n_null, args.level, SHAPES[1:2], ("gaussian", "t2.5", "scaled"),
                       {"p_value": "mc", "draws": 99}, "MC, 99")
  print("power:")
  pw = power(n_power, args.level, SHAPES[1:], (1, 3), RATIOS)
  print("exactly k:")
  ek = exact_k(n_power, args.level, SHAPES[1:], LAWS[:4], scale="bbp", ratio=4.0)
  ek += exact_k(n_power, args.level, SHAPES[1:], LAWS[1:3], scale="noise top", ratio=2.0)
  print()
  print(markdown(fa, pw, ek, args.level))
  print(f"\ntotal {time.perf_counter() - t0:.0f} s")
  if args.json_path:
    with open(args.json_path, "w") as f:
      json.dump({"level": args.level, "method": st.StructureOptions().method(), "false_alarms": fa, "power": pw,
                 "exactly_k": ek}, f, indent=1)


if __name__ == "__main__":
  main()
