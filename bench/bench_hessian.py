"""Cost of curvature and Jacobian spectra, measured side by side in one run (ratios, never asserted).

1. One Hessian-vector product (forward-over-reverse) relative to one gradient of the training loss of the real model,
   ``models.transformer.Transformer`` at the default ``RunConfig`` (theory: a small constant, about 2-4), and a
   Gauss-Newton product; peak temporary memory from XLA's memory analysis.
2. A 100-step SLQ density (one probe) relative to one gradient.
3. Input-output Jacobian spectrum: materialised Jacobian + SVD versus matrix-free Lanczos (top k) at growing width.
4. Tracking overhead at the flagship's default snapshot schedule (``models.tracking``): seconds per snapshot of the
   weight spectra + evaluation, of Jacobian tracking and of Hessian tracking (every member, default settings), and
   the training time with tracking off versus Jacobian + Hessian tracking on, ``steps x step + snapshots x
   snapshot``, all timed here after compilation.

Run: ``PYTHONPATH=. python bench/bench_hessian.py [--quick] [--skip-tracking]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from bench import bench_ensemble  # noqa: E402
from models.members import graphdef_of, init_params, member_key  # noqa: E402
from models.steps import loss_and_accuracy, resolve_strategy  # noqa: E402
from models.config import RunConfig  # noqa: E402
from models.data import make_task  # noqa: E402
from spectral import hessian as hs  # noqa: E402
from spectral import jacobian as jc  # noqa: E402
from spectral import lanczos as lz  # noqa: E402


def timeit(fn, *args, repeats=5):
  jax.block_until_ready(fn(*args))  # compile + warm up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def temp_bytes(fn, *args):
  try:
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes
  except Exception:  # some backends do not report memory
    return float("nan")


def bench_curvature(quick):
  cfg = RunConfig()
  graphdef, task = graphdef_of(cfg), make_task(cfg.data)
  params = init_params(cfg, member_key(cfg, 0))
  tokens, weights = task.train_batch(jax.random.key(1), 0, 0.5)
  loss = lambda p, b: loss_and_accuracy(graphdef, p, b, weights)[0]
  flat, _ = ravel_pytree(params)
  m = cfg.model
  print(f"models.transformer.Transformer, default config: {m.num_layers} blocks, d_model {m.d_model}, {m.num_heads} "
        f"heads, {m.norm}-LayerNorm, {m.activation}; vocab {cfg.data.vocab_size}, seq {cfg.data.seq_len}, batch "
        f"{cfg.data.batch_size}; {flat.size} parameters")
  v = jax.random.normal(jax.random.key(2), flat.shape)

  def logits_fn(p, b):
    return nnx.merge(graphdef, p)(b[:, :-1])

  def output_loss(o, b):
    ce = optax.softmax_cross_entropy_with_integer_labels(o, b[:, 1:])
    return ce.mean() if weights is None else (ce * jnp.asarray(weights)[None, :]).sum() / (weights.sum() * b.shape[0])

  grad_fn = jax.jit(lambda p: ravel_pytree(jax.grad(loss)(p, tokens))[0])
  hvp_fn = jax.jit(lambda p, v: hs.hessian_operator(loss, p, tokens, check=False).matvec(v))
  gn_fn = jax.jit(lambda p, v: hs.gauss_newton_operator(logits_fn, output_loss, p, tokens, check=False).matvec(v))
  steps = 20 if quick else 100
  slq_fn = jax.jit(lambda p, k: lz.slq(hs.hessian_operator(loss, p, tokens, check=False).matvec, flat.size, k,
                                       num_steps=steps, num_probes=1))
  t_grad = timeit(grad_fn, params)
  t_hvp = timeit(hvp_fn, params, v)
  t_gn = timeit(gn_fn, params, v)
  t_slq = timeit(slq_fn, params, jax.random.key(3), repeats=2)
  print(f"{'operation':<34}{'seconds':>10}{'x gradient':>12}{'temp MiB':>10}")
  rows = [("gradient", t_grad, temp_bytes(grad_fn, params)),
          ("Hessian-vector product", t_hvp, temp_bytes(hvp_fn, params, v)),
          ("Gauss-Newton-vector product", t_gn, temp_bytes(gn_fn, params, v)),
          (f"SLQ, {steps} steps, 1 probe", t_slq, temp_bytes(slq_fn, params, jax.random.key(3)))]
  for name, t, mem in rows:
    print(f"{name:<34}{t:>10.4f}{t / t_grad:>12.2f}{mem / 2**20:>10.2f}")
  print(f"SLQ per step / HVP: {t_slq / steps / t_hvp:.2f} (the rest is reorthogonalisation against {steps} vectors"
        f" of {flat.size} and the tridiagonal eigh)")


def bench_jacobian(quick):
  widths = [32, 64, 128, 256] if quick else [64, 128, 256, 512, 1024]
  k, steps = 8, 64
  print(f"\nJacobian of a 2-layer tanh MLP R^n -> R^n (hidden n): top {k} singular values")
  print(f"{'n':>6}{'exact (jac+SVD) s':>20}{'Lanczos min(n, {0}) steps s'.format(steps):>30}"
        f"{'exact / Lanczos':>17}{'max rel diff':>14}")
  for n in widths:
    k1, k2, k3 = jax.random.split(jax.random.key(n), 3)
    w1 = jax.random.normal(k1, (n, n)) / np.sqrt(n)
    w2 = jax.random.normal(k2, (n, n)) / np.sqrt(n)
    x = jax.random.normal(k3, (n,))
    fn = lambda w1, w2, x: w2 @ jnp.tanh(w1 @ x)
    exact = jax.jit(lambda w1, w2, x: jc.jacobian_singular_values(lambda y: fn(w1, w2, y), x, k, method="exact"))
    free = jax.jit(lambda w1, w2, x: jc.jacobian_singular_values(lambda y: fn(w1, w2, y), x, k, method="lanczos",
                                                                 num_steps=min(n, steps)))
    t_exact = timeit(exact, w1, w2, x, repeats=3)
    t_free = timeit(free, w1, w2, x, repeats=3)
    diff = float(jnp.max(jnp.abs(free(w1, w2, x) / exact(w1, w2, x) - 1.0)))
    print(f"{n:>6}{t_exact:>20.4f}{t_free:>30.4f}{t_exact / t_free:>17.2f}{diff:>14.1e}")


def bench_tracking(step_repeats: int = 10):
  cfg = RunConfig()
  strategy = resolve_strategy(cfg.train.ensemble_strategy)
  n_snap, steps = len(cfg.train.snapshot_steps), cfg.train.steps
  step_t, snap_t, _ = bench_ensemble.spectral_overhead(strategy, step_repeats)
  costs = bench_ensemble.tracking_costs(strategy, hessian=True)
  print(f"\nTracking at the flagship's default schedule: {cfg.num_members} members ({strategy}), {n_snap} snapshots "
        f"over {steps} steps; one training step {step_t * 1e3:.1f} ms")
  print(f"{'per snapshot, every member':<64}{'seconds':>9}{'compile s':>11}{'x step':>8}{'overhead':>10}")
  train_t = steps * step_t
  print(f"{'weight spectra (ESD of every matrix) + held-out evaluation':<64}{snap_t:>9.3f}{'':>11}"
        f"{snap_t / step_t:>8.1f}{n_snap * snap_t / train_t:>10.1%}")
  for name, what, compile_t, t in costs:
    print(f"{name + ' (' + what + ')':<64}{t:>9.3f}{compile_t:>11.1f}{t / step_t:>8.1f}{n_snap * t / train_t:>10.1%}")
  off = train_t + n_snap * snap_t
  on = off + n_snap * sum(t for *_, t in costs)
  print(f"training time (compiled, excluding compilation): tracking off {off:.1f} s, Jacobian + Hessian tracking on "
        f"{on:.1f} s, ratio on / off {on / off:.2f}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
  parser.add_argument("--skip-tracking", action="store_true", help="skip the tracking overhead (minutes on a CPU)")
  args = parser.parse_args()
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
  bench_curvature(args.quick)
  bench_jacobian(args.quick)
  if not args.skip_tracking:
    bench_tracking(3 if args.quick else 10)


if __name__ == "__main__":
  main()
