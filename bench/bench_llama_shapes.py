"""Llama-7B shapes on the CPU: the full analysis against the float64 eigvalsh floor and WeightWatcher's default.

    python bench/bench_llama_shapes.py [--threads 1] [--dists t3,gauss] [--skip-ww] [--skip-tail] [--skip-cli]
                                       [--small]

Matrices are generated in the benchmark (no download): Student-t(3) ("t3", heavy-tailed) and Gaussian ("gauss")
entries x 0.02 at the three Llama-7B shapes 4096x4096 (q, k, v, o), 11008x4096 (gate, up; torch (out, in)) and
4096x11008 (down); seed fixed; generation time excluded. Every (method, matrix) pair runs in its own subprocess
(threads pinned alike), so that its peak RSS (``ru_maxrss``) is its own, and the methods run one after the other on
each matrix before the next matrix, so that a shared machine's changing load hits them alike:

- ``floor``: float64 ``W_s W_s^T / N`` (BLAS syrk) and LAPACK ``dsyevd`` eigenvalues (scipy), the least any exact
  float64 ESD costs; numpy's ``eigvalsh`` on the first matrix is printed beside it for reference;
- ``ours``: ``spectral.analyze.analyze(..., randomize=True)`` with the default CPU backend: every metric of the table
  on the matrix AND on its entry-shuffled copy (the randomized baseline), i.e. two float32 ESDs per matrix.
  ``cold`` is the first analysis in a fresh process (imports excluded, printed apart), ``warm`` a second analysis of
  the same matrix in that process, ``plain`` a third analysis without the baseline (what WeightWatcher's default
  computes: one ESD), ``structure_cold`` / ``structure_warm`` the structure rank (``analyze.structure_table``, the
  columns ``python -m spectral analyze`` adds by default: null draws of sign-flipped copies): the process's first
  call (compiling its programs) and a second. ``full`` = warm + structure_warm is the command line's default metric
  set with ``--randomize``; the ratios are printed for it too;
- ``ww``: WeightWatcher ``analyze()`` with its defaults on a one-layer torch model per matrix;
- ``tail``: one Llama-70B-shaped 8192x28672 Student-t(3) matrix in tail-only mode (top 500 eigenvalues);
- ``cli``: one Llama-7B layer (q, k, v, o, gate, up, down) written as a bf16 sharded safetensors folder with its
  index (3 shards), analysed by ``python -m spectral analyze FOLDER --randomize`` as a whole process: wall time and
  peak RSS against the largest shard, extrapolated to 32 layers (stated as such).

Ratios printed: ours / floor (goal <= 1.25) and WeightWatcher / ours (goal >= 3), per shape and in total, cold and
warm, in CPU seconds of each process (user + system, all threads; steadier than wall time on a shared machine) and in
wall seconds. ``--small`` divides every dimension by 8 for a quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from bench_cold_start import _env, machine  # noqa: E402  (same thread pinning and machine line)

SHAPES = {"4096x4096": (4096, 4096), "11008x4096": (11008, 4096), "4096x11008": (4096, 11008)}
LAYER = {"q_proj": "4096x4096", "k_proj": "4096x4096", "v_proj": "4096x4096", "o_proj": "4096x4096",
         "gate_proj": "11008x4096", "up_proj": "11008x4096", "down_proj": "4096x11008"}


def _shape(label: str, small: bool) -> tuple[int, int]:
  a, b = SHAPES[label] if label in SHAPES else tuple(int(x) for x in label.split("x"))
  return (a // 8, b // 8) if small else (a, b)


def make(dist: str, label: str, small: bool, seed: int = 0):
  import numpy as np

  rng = np.random.default_rng([seed, list(SHAPES).index(label) if label in SHAPES else 9, int(dist == "t3")])
  shape = _shape(label, small)
  w = rng.standard_t(3, size=shape) if dist == "t3" else rng.standard_normal(shape)
  return (0.02 * w).astype(np.float32)


def _peak_rss_mib(children: bool = False) -> float:
  import resource

  who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
  return resource.getrusage(who).ru_maxrss / 1024.0


class _Clock:
  """Wall time and this process's CPU time (user + system, all threads) of a ``with`` block."""

  def __enter__(self):
    self.t, self.c = time.perf_counter(), time.process_time()
    return self

  def __exit__(self, *exc):
    self.wall, self.cpu = time.perf_counter() - self.t, time.process_time() - self.c


def worker(kind: str, args) -> dict:
  """One measurement in this (fresh) process: ``kind`` on the matrix ``args.case`` ("dist:shape").

  Returns wall and CPU seconds per timed step (``<step>`` and ``<step>_cpu``) and the peak RSS.
  """
  import numpy as np

  dist, label = args.case.split(":") if args.case else ("t3", "")
  out: dict = {"kind": kind}

  def record(step: str, clock: _Clock) -> None:
    out[step], out[f"{step}_cpu"] = clock.wall, clock.cpu

  if kind == "floor":
    import scipy.linalg

    w = make(dist, label, args.small)
    with _Clock() as gram_clock:
      w64 = w.astype(np.float64)
      ws = w64 if w64.shape[0] <= w64.shape[1] else w64.T
      gram = ws @ ws.T
      gram /= max(w.shape)
    if args.numpy_eigvalsh:
      with _Clock() as np_clock:
        np.linalg.eigvalsh(gram)
      record("numpy_eigvalsh", np_clock)
    with _Clock() as eig_clock:
      scipy.linalg.eigh(gram, eigvals_only=True, driver="evd", overwrite_a=True, check_finite=False)
    out["time"], out["time_cpu"] = gram_clock.wall + eig_clock.wall, gram_clock.cpu + eig_clock.cpu
  elif kind == "ours":
    with _Clock() as clock:
      from spectral import analyze
    record("import", clock)
    w = make(dist, label, args.small)
    for phase in ("cold", "warm"):
      with _Clock() as clock:
        rows = analyze.analyze({args.case: w}, randomize=True, backend="auto")  # as the CLI
      record(phase, clock)
    with _Clock() as clock:
      analyze.analyze({args.case: w}, randomize=False, backend="auto")
    record("plain", clock)
    for phase in ("structure_cold", "structure_warm"):  # the CLI's default structure columns (no --no-structure)
      with _Clock() as clock:
        srows = analyze.structure_table({args.case: w}, seed=0)
      record(phase, clock)
    out["alpha"] = (rows[0]["alpha"], rows[0]["rand_alpha"], rows[0]["status"])
    out["structure_rank"] = (srows[0]["structure_rank"], srows[0]["structure_status"])
  elif kind == "ww":
    with _Clock() as clock:
      import logging

      import torch
      import weightwatcher as ww
    record("import", clock)
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    w = make(dist, label, args.small)
    lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=False)
    with torch.no_grad():
      lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
    del w
    watcher = ww.WeightWatcher(model=torch.nn.Sequential(lin))
    with _Clock() as clock:
      details = watcher.analyze()
    record("time", clock)
    out["alpha"] = float(details["alpha"].iloc[0])
  elif kind == "tail":
    from spectral import analyze

    w = make("t3", "8192x28672", args.small)
    with _Clock() as clock:
      rows = analyze.analyze({"w": w}, tail_k=500, backend="auto")
    record("time", clock)
    out["alpha"] = rows[0]["alpha"]
  elif kind == "cli":
    out.update(_cli_layer(args))
  out["peak_rss_mib"] = _peak_rss_mib()
  return out


def _cli_layer(args) -> dict:
  """Write one Llama layer as a bf16 3-shard folder and time ``python -m spectral analyze`` on it."""
  import ml_dtypes
  import numpy as np
  from safetensors.numpy import save_file

  with tempfile.TemporaryDirectory() as tmp:
    folder = pathlib.Path(tmp)
    names = [f"model.layers.0.{'self_attn' if p.endswith(('q_proj', 'k_proj', 'v_proj', 'o_proj')) else 'mlp'}.{p}"
             f".weight" for p in LAYER]
    groups = [names[:4], names[4:6], names[6:]]
    weight_map = {}
    for i, group in enumerate(groups):
      shard = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
      tensors = {}
      for n in group:
        w = make("t3", LAYER[n.split(".")[-2]], args.small)
        tensors[n] = w.astype(ml_dtypes.bfloat16)
      save_file(tensors, str(folder / shard), metadata={"format": "pt"})
      del tensors
      weight_map.update({n: shard for n in group})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    shard_mib = max(p.stat().st_size for p in folder.glob("*.safetensors")) / 2**20
    biggest = max(np.prod(_shape(s, args.small)) for s in LAYER.values()) * 4 / 2**20
    cache = folder / "cache"
    cmd = [sys.executable, "-m", "spectral", "analyze", str(folder), "--randomize", "--no-progress",
           "--compile-cache", str(cache)]
    import resource

    t = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(args.threads), capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode:
      raise RuntimeError(proc.stderr[-2000:])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cli_wall": wall, "cli_cpu": usage.ru_utime + usage.ru_stime,
            "cli_peak_rss_mib": _peak_rss_mib(children=True), "largest_shard_mib": shard_mib,
            "largest_matrix_f32_mib": float(biggest), "cli_rows": proc.stdout.count("\n") - 2}


def _spawn(kind: str, argv: list[str], threads: int) -> dict:
  cmd = [sys.executable, __file__, "--worker", kind, *argv]
  proc = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True, cwd=ROOT)
  if proc.returncode:
    raise RuntimeError(f"worker {kind} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--threads", type=int, default=1, help="threads per process, pinned alike (1)")
  parser.add_argument("--dists", default="t3,gauss", help="comma-separated: t3 (Student-t(3)), gauss")
  parser.add_argument("--skip-ww", action="store_true", help="do not run WeightWatcher")
  parser.add_argument("--skip-tail", action="store_true", help="skip the 8192x28672 tail-only matrix")
  parser.add_argument("--skip-cli", action="store_true", help="skip the bf16 sharded-folder command-line run")
  parser.add_argument("--small", action="store_true", help="every dimension / 8, for a quick run")
  parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated subset of {', '.join(SHAPES)}")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--case", help=argparse.SUPPRESS)
  parser.add_argument("--numpy-eigvalsh", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(worker(args.worker, args)))
    return
  argv = ["--threads", str(args.threads)] + (["--small"] if args.small else [])
  print(f"machine: {machine()}; threads per process: {args.threads}; load average before: {os.getloadavg()}")
  print(f"shapes: {', '.join(f'{k} -> {_shape(k, args.small)}' for k in SHAPES)}; distributions: {args.dists}",
        flush=True)
  kinds = ["floor", "ours"] + ([] if args.skip_ww else ["ww"])
  res: dict[str, dict] = {k: {} for k in kinds}
  first = True
  for dist in args.dists.split(","):
    for label in args.shapes.split(","):
      case = f"{dist}:{label}"
      for kind in kinds:
        extra = ["--numpy-eigvalsh"] if kind == "floor" and first else []
        try:
          res[kind][case] = _spawn(kind, argv + ["--case", case] + extra, args.threads)
        except RuntimeError as err:
          print(f"{kind} {case}: failed ({str(err).strip().splitlines()[-1]})")
          if kind == "ww":
            kinds.remove("ww")
            res.pop("ww")
          continue
      first = False
      line = "  ".join(f"{k} {res[k][case].get('time_cpu', res[k][case].get('cold_cpu', float('nan'))):.1f} CPU s"
                       for k in kinds if case in res[k])
      print(f"[{case}: {line}]", flush=True)
  floor, ours, ww = res["floor"], res["ours"], res.get("ww")
  for unit, sfx in (("CPU seconds (user + system of the process; steadier on a shared machine)", "_cpu"),
                    ("wall seconds", "")):
    print(f"\nper matrix, {unit}: floor = float64 Gram + dsyevd; ours = every metric + the randomized baseline; "
          f"plain = ours without the baseline (one ESD, like WeightWatcher's default)")
    print(f"{'case':18s} {'floor':>7s} {'ours cold':>9s} {'ours warm':>9s} {'cold/floor':>10s} {'warm/floor':>10s}"
          + (f" {'ww':>7s} {'ww/cold':>7s} {'ww/warm':>7s} {'plain':>7s} {'ww/plain':>8s}" if ww else ""))
    tot = dict(floor=0.0, cold=0.0, warm=0.0, ww=0.0, plain=0.0)
    for case in floor:
      f, c, w = floor[case]["time" + sfx], ours[case]["cold" + sfx], ours[case]["warm" + sfx]
      tot["floor"], tot["cold"], tot["warm"] = tot["floor"] + f, tot["cold"] + c, tot["warm"] + w
      line = f"{case:18s} {f:7.1f} {c:9.1f} {w:9.1f} {c / f:10.2f} {w / f:10.2f}"
      if ww:
        wv, pl = ww[case]["time" + sfx], ours[case]["plain" + sfx]
        tot["ww"], tot["plain"] = tot["ww"] + wv, tot["plain"] + pl
        line += f" {wv:7.1f} {wv / c:7.2f} {wv / w:7.2f} {pl:7.1f} {wv / pl:8.2f}"
      print(line)
    line = (f"{'total':18s} {tot['floor']:7.1f} {tot['cold']:9.1f} {tot['warm']:9.1f} "
            f"{tot['cold'] / tot['floor']:10.2f} {tot['warm'] / tot['floor']:10.2f}")
    if ww:
      line += (f" {tot['ww']:7.1f} {tot['ww'] / tot['cold']:7.2f} {tot['ww'] / tot['warm']:7.2f} "
               f"{tot['plain']:7.1f} {tot['ww'] / tot['plain']:8.2f}")
    print(line)
  print("goals: ours / floor <= 1.25 (with the randomized baseline); ww / ours >= 3")
  for unit, sfx in (("CPU s", "_cpu"), ("wall s", "")):
    print(f"\nthe command line's default metric set (+ structure rank), warm, {unit}: plain + structure (no baseline), "
          f"full = warm + structure (with the baseline)")
    print(f"{'case':18s} {'floor':>7s} {'struct':>7s} {'struct cold':>11s} {'plain+s':>7s} {'full':>7s} "
          f"{'(p+s)/fl':>8s} {'full/fl':>7s}" + (f" {'ww/(p+s)':>8s} {'ww/full':>7s}" if ww else ""))
    t = dict(floor=0.0, s=0.0, sc=0.0, ps=0.0, full=0.0, ww=0.0)
    for case in floor:
      f, r = floor[case]["time" + sfx], ours[case]
      sw, sc = r["structure_warm" + sfx], r["structure_cold" + sfx]
      ps, full = r["plain" + sfx] + sw, r["warm" + sfx] + sw
      for k, v in (("floor", f), ("s", sw), ("sc", sc), ("ps", ps), ("full", full)):
        t[k] += v
      line = f"{case:18s} {f:7.1f} {sw:7.1f} {sc:11.1f} {ps:7.1f} {full:7.1f} {ps / f:8.2f} {full / f:7.2f}"
      if ww:
        wv = ww[case]["time" + sfx]
        t["ww"] += wv
        line += f" {wv / ps:8.2f} {wv / full:7.2f}"
      print(line)
    line = (f"{'total':18s} {t['floor']:7.1f} {t['s']:7.1f} {t['sc']:11.1f} {t['ps']:7.1f} {t['full']:7.1f} "
            f"{t['ps'] / t['floor']:8.2f} {t['full'] / t['floor']:7.2f}")
    if ww:
      line += f" {t['ww'] / t['ps']:8.2f} {t['ww'] / t['full']:7.2f}"
    print(line)
  first_case = next(iter(floor))
  print(f"numpy float64 eigvalsh alone on {first_case}: {floor[first_case]['numpy_eigvalsh_cpu']:.1f} CPU s (the "
        f"floor uses scipy's dsyevd)")
  any_ours = next(iter(ours.values()))
  print(f"imports (wall): spectral {any_ours['import']:.1f} s" +
        (f", weightwatcher + torch {next(iter(ww.values()))['import']:.1f} s" if ww else ""))
  print("structure rank (rank, status): " + ", ".join(f"{c} {tuple(r['structure_rank'])}" for c, r in ours.items()))
  per = {label: ours[f"t3:{label}"]["warm_cpu"] for label in SHAPES if f"t3:{label}" in ours}
  if len(per) == 3:
    layer = sum(per[s] for s in LAYER.values())
    print(f"one Llama-7B layer (4 x 4096x4096 + 2 x 11008x4096 + 4096x11008, t3, warm): {layer:.0f} CPU s; x 32 "
          f"layers = {32 * layer / 60:.0f} CPU min (extrapolated; embeddings and lm-head not included)")
  print("alpha (ours, shuffled, status" + (" | ww):" if ww else "):"))
  for case, r in ours.items():
    a, ra, st = r["alpha"]
    print(f"  {case:18s} {a:7.3f} {ra:7.3f} {st:8s}" + (f" | {ww[case]['alpha']:7.3f}" if ww else ""))
  peaks = {k: max(v["peak_rss_mib"] for v in res[k].values()) for k in res}
  print("peak RSS per process, the largest over matrices (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
  if not args.skip_tail:
    tail = _spawn("tail", argv, args.threads)
    print(f"tail-only 8192x28672 (top 500, no baseline): {tail['time']:.1f} s wall, {tail['time_cpu']:.1f} CPU s, "
          f"peak RSS {tail['peak_rss_mib']:.0f} MiB, alpha {tail['alpha']:.3f}", flush=True)
  if not args.skip_cli:
    c = _spawn("cli", argv, args.threads)
    print(f"CLI on one bf16 layer in 3 shards (--randomize): {c['cli_wall']:.1f} s wall, {c['cli_cpu']:.1f} CPU s as a "
          f"process, peak RSS {c['cli_peak_rss_mib']:.0f} MiB (largest shard {c['largest_shard_mib']:.0f} MiB, largest "
          f"matrix in float32 {c['largest_matrix_f32_mib']:.0f} MiB); x 32 layers = {32 * c['cli_cpu'] / 60:.0f} CPU "
          f"min (extrapolated)")
  print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
  main()
