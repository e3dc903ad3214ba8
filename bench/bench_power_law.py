"""Benchmark: the power-law fit's time and peak memory, against an earlier revision of it, in one run.

    python bench/bench_power_law.py [--baseline REV] [--threads 1] [--repeats 3] [--subsets 2500,5000,10000]

Cases (each in its own child process, so that each peak RSS is its own):
- ``gpt2``: the 48 ESDs of the GPT-2-small-shaped matrices of ``bench_weight_spectra.py`` (Student-t(3) x 0.02,
  seed 0), fitted as 4 batches of 12 (one per shape), with ``ks="sup", min_tail=2`` (the same work for both
  revisions) and with the current defaults;
- ``fires``: CSN's forest-fire sizes (203,785 values, from the ``powerlaw`` wheel), current code only: an all-pairs
  fit needs about 4 M^2 bytes = 166 GB there;
- ``fires:N``: random subsets of N fire sizes, both revisions, to show how the baseline's memory grows.

``--baseline REV`` loads ``spectral/power_law.py`` of that git revision (default: the parent of the blocked fit) as
a separate module. Prints the first call (compile + run), the best of ``--repeats`` further calls and the peak RSS
of each child, and the ratios baseline / current.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = "7a13d94"  # main before spectral-robust: all-pairs (M x M) KS, ks="sup", min_tail=2 defaults


def _pin_threads(n: int) -> None:
  for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(n)
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'}"
                             f" intra_op_parallelism_threads={n}").strip()


def _power_law_module(rev: str | None):
  if rev is None:
    sys.path.insert(0, str(ROOT))
    from spectral import power_law
    return power_law
  source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:spectral/power_law.py"], check=True,
                          capture_output=True, text=True).stdout
  path = pathlib.Path(tempfile.mkdtemp()) / "power_law_baseline.py"
  path.write_text(source)
  spec = importlib.util.spec_from_file_location("power_law_baseline", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _gpt2_spectra():
  import numpy as np
  sys.path.insert(0, str(ROOT))
  from spectral import esd
  rng = np.random.default_rng(0)
  d = 768
  shapes = {"attn.qkv": (d, 3 * d), "attn.proj": (d, d), "mlp.fc": (d, 4 * d), "mlp.proj": (4 * d, d)}
  mats = [(k, (0.02 * rng.standard_t(3, size=s)).astype(np.float32)) for _ in range(12) for k, s in shapes.items()]
  by_shape: dict[str, list] = {}
  for k, w in mats:
    by_shape.setdefault(k, []).append(np.asarray(esd.esd(w)))
  return [np.stack(v) for v in by_shape.values()]


def child(case: str, rev: str | None, repeats: int, kwargs: dict) -> dict:
  import jax
  import numpy as np
  if case == "gpt2":
    batches = _gpt2_spectra()
  else:
    import powerlaw
    x = powerlaw.load_test_dataset("fires")
    if ":" in case:
      x = np.random.default_rng(0).permutation(x)[: int(case.split(":")[1])]
    batches = [x[None]]
  pl = _power_law_module(rev)
  rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

  def run():
    return [jax.block_until_ready(pl.fit_power_law(b, **kwargs)) for b in batches]

  t = time.perf_counter()
  fits = run()
  first = time.perf_counter() - t
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    run()
    best = min(best, time.perf_counter() - t)
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  f = fits[0]
  return dict(first_s=first, best_s=best, peak_rss_mib=rss / 1024, rss_before_fit_mib=rss_before / 1024,
              alpha0=float(np.ravel(f.alpha)[0]), xmin0=float(np.ravel(f.xmin)[0]),
              n_tail0=int(np.ravel(f.n_tail)[0]))


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision of the earlier power_law.py")
  parser.add_argument("--threads", type=int, default=1)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--subsets", default="2500,5000,10000", help="fire subset sizes fitted by both revisions")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  args = parser.parse_args()
  _pin_threads(args.threads)
  if args.child:
    case, rev, kwargs = json.loads(args.child)
    print(json.dumps(child(case, rev, args.repeats, kwargs)))
    return

  import platform
  print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"threads={args.threads}; baseline {args.baseline}")
  same_work = dict(ks="sup", min_tail=2)
  cases = [("gpt2", same_work, True), ("gpt2", {}, False), ("fires", {}, False)]
  cases += [(f"fires:{n}", same_work, True) for n in args.subsets.split(",") if n]

  def spawn(case, rev, kwargs):
    out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--repeats", str(args.repeats),
                          "--child", json.dumps([case, rev, kwargs])], capture_output=True, text=True)
    if out.returncode != 0:
      return dict(error=(out.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])

  def show(label, r):
    if "error" in r:
      return f"{label:9s} failed: {r['error'][:100]}"
    return (f"{label:9s} first {r['first_s']:7.2f} s  best {r['best_s']:8.3f} s  peak RSS {r['peak_rss_mib']:7.0f} MiB"
            f" (+{r['peak_rss_mib'] - r['rss_before_fit_mib']:.0f} in the fit)  alpha[0] {r['alpha0']:.4f} "
            f"xmin[0] {r['xmin0']:.6g} n_tail[0] {r['n_tail0']}")

  for case, kwargs, compare in cases:
    print(f"{case} {kwargs or 'defaults'}:")
    new = spawn(case, None, kwargs)
    print("  " + show("current", new))
    if compare:
      old = spawn(case, args.baseline, kwargs)
      print("  " + show("baseline", old))
      if "error" not in old and "error" not in new:
        print(f"  baseline / current: time {old['best_s'] / new['best_s']:.2f}x, fit memory "
              f"{(old['peak_rss_mib'] - old['rss_before_fit_mib']) / max(new['peak_rss_mib'] - new['rss_before_fit_mib'], 1):.1f}x")


if __name__ == "__main__":
  main()
