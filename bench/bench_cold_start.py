"""Cold start: ``python -m spectral analyze FILE`` timed as a whole process, beside WeightWatcher's, on two files.

    python bench/bench_cold_start.py [--threads 1] [--skip-ww] [--keep DIR]

What a user times is one process from start to finish. Two safetensors files are written (float32, Student-t(3)
entries x 0.02, fixed seed):

- ``gpt2``: 48 GPT-2-small-shaped matrices, 4 shapes (12 x 768x2304, 768x768, 768x3072, 3072x768);
- ``mixed``: 16 matrices of 13 shapes, from the lab's small shapes (16x32, 32x128, 128x512) to 1024x256.

Each row is one subprocess, wall time from spawn to exit (imports, reading, analysis, printing):

- ``ours``: ``python -m spectral analyze FILE`` (every metric of the table: the ESD metrics on the default
  ``--backend auto``, the host numpy path on a CPU, nothing compiled; and the structure rank, compiled JAX programs
  per bucket of shapes), then ``--no-structure`` (the ESD metrics alone: the set WeightWatcher's default computes),
  ``--randomize`` (the ESD metrics twice, on the matrix and on its entry-shuffled copy), and ``--backend jax`` (the
  compiled ESD path accelerators use); each first with an empty persistent compilation cache (``--compile-cache``
  pointing at a new folder), then again with the cache the first run filled;
- ``ww``: a script that imports torch and weightwatcher, reads the same file, builds ``torch.nn.Linear`` layers and
  runs ``WeightWatcher(model).analyze()`` with its defaults.

Warm (in one process, after a first pass) times are printed as well. Threads are pinned alike for every process
(OMP/OpenBLAS/MKL, XLA's intra-op pool, torch). Each process is reported in wall seconds and in CPU seconds (user +
system of the child, all its threads), the steadier measure on a shared machine, where wall time includes time spent
waiting for a core; ratios are given for both. The machine is named and its load average printed before and after.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

_WW_SCRIPT = r"""
import sys, time
t0 = time.perf_counter()
import logging
import numpy as np
import torch
import weightwatcher as ww
from safetensors.numpy import load_file
logging.getLogger("weightwatcher").setLevel(logging.ERROR)
torch.set_num_threads(int(sys.argv[2]))
layers = []
for name, w in load_file(sys.argv[1]).items():
  lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=False)
  with torch.no_grad():
    lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))  # torch stores (out, in)
  layers.append(lin)
watcher = ww.WeightWatcher(model=torch.nn.Sequential(*layers))
t1 = time.perf_counter()
details = watcher.analyze()
t2 = time.perf_counter()
if len(sys.argv) > 3:
  c2 = time.process_time()
  details = watcher.analyze()
  print(f"WARM {time.perf_counter() - t2:.3f} WARMCPU {time.process_time() - c2:.3f}")
print(f"LAYERS {len(details)} FIRST {t2 - t1:.3f} SETUP {t1 - t0:.3f}")
"""

_OURS_WARM = r"""
import sys, time
from spectral import checkpoint_analysis, checkpoint_io
ckpt = checkpoint_io.open_checkpoint(sys.argv[1])
kw = dict(randomize=sys.argv[2] == "1", progress=False, backend=sys.argv[3])
t = time.perf_counter(); rows, _ = checkpoint_analysis.analyze_checkpoint(ckpt, **kw); first = time.perf_counter() - t
t, c = time.perf_counter(), time.process_time()
rows, _ = checkpoint_analysis.analyze_checkpoint(ckpt, **kw)
print(f"WARM {time.perf_counter() - t:.3f} WARMCPU {time.process_time() - c:.3f} FIRST {first:.3f} ROWS {len(rows)}")
"""


def _env(threads: int) -> dict:
  env = dict(os.environ)
  for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    env[var] = str(threads)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
                      f" intra_op_parallelism_threads={threads}").strip()
  env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _children_cpu() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str], env: dict) -> tuple[float, float, str]:
  """(wall seconds, CPU seconds of the child, its stdout) of one subprocess."""
  t, c = time.perf_counter(), _children_cpu()
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
  wall, cpu = time.perf_counter() - t, _children_cpu() - c
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  return wall, cpu, proc.stdout


def _tagged(out: str, tag: str) -> float:
  words = out.split()
  return float(words[words.index(tag) + 1])


def machine() -> str:
  model = platform.processor() or platform.machine()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  return f"{model}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, Python " \
         f"{platform.python_version()}"


def write_files(folder: pathlib.Path) -> dict[str, pathlib.Path]:
  import numpy as np
  from safetensors.numpy import save_file

  rng = np.random.default_rng(0)
  t = lambda shape: (0.02 * rng.standard_t(3, size=shape)).astype(np.float32)
  d = 768
  gpt2 = {f"h.{b}.{k}": t(s) for b in range(12) for k, s in (("attn.c_attn", (d, 3 * d)), ("attn.c_proj", (d, d)),
                                                             ("mlp.c_fc", (d, 4 * d)), ("mlp.c_proj", (4 * d, d)))}
  shapes = [(16, 32), (32, 128), (128, 512), (64, 64), (64, 256), (256, 64), (128, 128), (256, 256), (256, 1024),
            (1024, 256), (384, 1536), (512, 512), (768, 768), (16, 32), (128, 512), (256, 256)]
  mixed = {f"m.{i}.weight": t(s) for i, s in enumerate(shapes)}
  paths = {"gpt2": folder / "gpt2.safetensors", "mixed": folder / "mixed.safetensors"}
  save_file(gpt2, str(paths["gpt2"]))
  save_file(mixed, str(paths["mixed"]))
  return paths


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--threads", type=int, default=1, help="threads per process, pinned alike (1)")
  parser.add_argument("--skip-ww", action="store_true", help="do not run WeightWatcher")
  parser.add_argument("--keep", metavar="DIR", help="write the files and caches here instead of a temporary folder")
  parser.add_argument("--only", choices=("gpt2", "mixed"), help="run one file only")
  args = parser.parse_args()
  env = _env(args.threads)
  print(f"machine: {machine()}; threads per process: {args.threads}; load average before: {os.getloadavg()}")
  with tempfile.TemporaryDirectory() as tmp:
    work = pathlib.Path(args.keep or tmp)
    work.mkdir(parents=True, exist_ok=True)
    files = write_files(work)
    py = sys.executable
    for label, path in files.items():
      if args.only and label != args.only:
        continue
      print(f"\n== {label}: {path.stat().st_size / 2**20:.0f} MiB")
      ww = None
      if not args.skip_ww:
        try:
          wall, cpu, out = _run([py, "-c", _WW_SCRIPT, str(path), str(args.threads)], env)
          ww = (wall, cpu)
          print(f"  ww   cold process                    {wall:7.2f} s wall {cpu:7.2f} s CPU   (setup "
                f"{_tagged(out, 'SETUP'):.2f} s, analyze {_tagged(out, 'FIRST'):.2f} s wall, "
                f"{int(_tagged(out, 'LAYERS'))} layers analysed)")
          _, _, out = _run([py, "-c", _WW_SCRIPT, str(path), str(args.threads), "warm"], env)
          ww_warm = (_tagged(out, "WARM"), _tagged(out, "WARMCPU"))
          print(f"  ww   warm analyze() in-process       {ww_warm[0]:7.2f} s wall {ww_warm[1]:7.2f} s CPU")
        except (RuntimeError, ValueError) as err:
          print(f"  ww   skipped: {str(err).splitlines()[-1]} (install the 'bench' extra: weightwatcher, torch)")
      for name, extra in (("ours", []), ("ours --no-structure", ["--no-structure"]),
                          ("ours --randomize", ["--randomize"]),
                          ("ours --backend jax", ["--backend", "jax"])):
        cache = work / f"cache-{label}-{'-'.join(extra) or 'default'}"
        cmd = [py, "-m", "spectral", "analyze", str(path), "--no-progress", "--compile-cache", str(cache), *extra]
        for state in ("empty cache", "warm cache"):
          wall, cpu, _ = _run(cmd, env)
          ratio = f"   ww / ours = {ww[0] / wall:5.2f}x wall, {ww[1] / cpu:5.2f}x CPU" if ww else ""
          print(f"  {name:20s} {state:11s} {wall:7.2f} s wall {cpu:7.2f} s CPU{ratio}")
      for backend, randomize in (("auto", "0"), ("auto", "1")):
        _, _, out = _run([py, "-c", _OURS_WARM, str(path), randomize, backend], env)
        warm = (_tagged(out, "WARM"), _tagged(out, "WARMCPU"))
        ratio = (f"   ww warm / ours warm = {ww_warm[0] / warm[0]:5.2f}x wall, {ww_warm[1] / warm[1]:5.2f}x CPU"
                 if ww and randomize == "0" else "")
        print(f"  ours {'--randomize ' if randomize == '1' else ''}warm analysis in-process  {warm[0]:7.2f} s wall "
              f"{warm[1]:7.2f} s CPU{ratio}")
  print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
  main()
