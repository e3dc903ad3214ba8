"""Cost of curvature and Jacobian spectra, measured side by side in one run (ratios, never asserted).

1. One Hessian-vector product (forward-over-reverse) relative to one gradient, on a transformer-like loss (theory:
   a small constant, about 2-4), and a Gauss-Newton product; peak temporary memory from XLA's memory analysis.
2. A 100-step SLQ density (one probe) relative to one gradient.
3. Input-output Jacobian spectrum: materialised Jacobian + SVD versus matrix-free Lanczos (top k) at growing width.

The model is a stand-in written here in plain jax.numpy (pre-LayerNorm causal attention + GELU MLP blocks), because
this branch must not import ``models/``; point ``make_loss`` at the real model (``nnx.split`` / ``nnx.merge``) later.

Run: ``PYTHONPATH=. python bench/bench_hessian.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from spectral import hessian as hs
from spectral import jacobian as jc
from spectral import lanczos as lz


def init_transformer(key, vocab, d_model, heads, layers, seq_len):
  keys = iter(jax.random.split(key, 4 + 6 * layers))
  dense = lambda shape: jax.random.normal(next(keys), shape) / np.sqrt(shape[0])
  params = {"embed": jax.random.normal(next(keys), (vocab, d_model)) * 0.02,
            "pos": jax.random.normal(next(keys), (seq_len, d_model)) * 0.02,
            "unembed": dense((d_model, vocab)), "blocks": []}
  for _ in range(layers):
    params["blocks"].append({"qkv": dense((d_model, 3 * d_model)), "out": dense((d_model, d_model)),
                             "up": dense((d_model, 4 * d_model)), "down": dense((4 * d_model, d_model)),
                             "ln1": jnp.ones((d_model,)), "ln2": jnp.ones((d_model,))})
  return params


def _layer_norm(x, scale):
  x = x - jnp.mean(x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6) * scale[None, None, :]


def transformer_logits(params, tokens_BxL, heads):
  b, seq = tokens_BxL.shape
  x = params["embed"][tokens_BxL] + params["pos"][None, :seq, :]
  d = x.shape[-1]
  mask = jnp.tril(jnp.ones((seq, seq), bool))
  for blk in params["blocks"]:
    h = _layer_norm(x, blk["ln1"])
    q, k, v = jnp.split(h @ blk["qkv"], 3, axis=-1)
    split = lambda t: t.reshape(b, seq, heads, d // heads)
    scores = jnp.einsum("bqhd,bkhd->bhqk", split(q), split(k)) / np.sqrt(d // heads)
    scores = jnp.where(mask[None, None, :, :], scores, -1e9)
    att = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), split(v)).reshape(b, seq, d)
    x = x + att @ blk["out"]
    x = x + jax.nn.gelu(_layer_norm(x, blk["ln2"]) @ blk["up"]) @ blk["down"]
  return x @ params["unembed"]


def make_loss(heads):
  def loss(params, batch):
    logits = transformer_logits(params, batch[:, :-1], heads)
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, batch[:, 1:, None], axis=-1))
  return loss


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
  vocab, d_model, heads, layers, seq_len, batch = 64, 64, 4, 2, 33, 8
  params = init_transformer(jax.random.key(0), vocab, d_model, heads, layers, seq_len)
  tokens = jax.random.randint(jax.random.key(1), (batch, seq_len), 0, vocab)
  loss = make_loss(heads)
  flat, unravel = ravel_pytree(params)
  print(f"stand-in transformer: {layers} blocks, d_model {d_model}, {heads} heads, seq {seq_len - 1}, batch {batch},"
        f" {flat.size} parameters")
  v = jax.random.normal(jax.random.key(2), flat.shape)

  grad_fn = jax.jit(lambda p: ravel_pytree(jax.grad(loss)(p, tokens))[0])
  hvp_fn = jax.jit(lambda p, v: hs.hessian_operator(loss, p, tokens, check=False).matvec(v))
  gn_fn = jax.jit(lambda p, v: hs.gauss_newton_operator(
      lambda q, b: transformer_logits(q, b[:, :-1], heads),
      lambda o, b: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(o), b[:, 1:, None], axis=-1)),
      p, tokens, check=False).matvec(v))
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
  print(f"{'n':>6}{'exact (jac+SVD) s':>20}{'Lanczos {0} steps s'.format(steps):>22}{'exact / Lanczos':>17}"
        f"{'max rel diff':>14}")
  for n in widths:
    k1, k2, k3 = jax.random.split(jax.random.key(n), 3)
    w1 = jax.random.normal(k1, (n, n)) / np.sqrt(n)
    w2 = jax.random.normal(k2, (n, n)) / np.sqrt(n)
    x = jax.random.normal(k3, (n,))
    fn = lambda w1, w2, x: w2 @ jnp.tanh(w1 @ x)
    exact = jax.jit(lambda w1, w2, x: jc.jacobian_singular_values(lambda y: fn(w1, w2, y), x, k, method="exact"))
    free = jax.jit(lambda w1, w2, x: jc.jacobian_singular_values(lambda y: fn(w1, w2, y), x, k, method="lanczos",
                                                                 num_steps=steps))
    t_exact = timeit(exact, w1, w2, x, repeats=3)
    t_free = timeit(free, w1, w2, x, repeats=3)
    diff = float(jnp.max(jnp.abs(free(w1, w2, x) / exact(w1, w2, x) - 1.0)))
    print(f"{n:>6}{t_exact:>20.4f}{t_free:>22.4f}{t_exact / t_free:>17.2f}{diff:>14.1e}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
  args = parser.parse_args()
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
  bench_curvature(args.quick)
  bench_jacobian(args.quick)


if __name__ == "__main__":
  main()
