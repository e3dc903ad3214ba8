"""Check 6: rank collapse of token representations in attention-only stacks at initialisation, and its prevention
by skip connections.

Prediction (Dong, Cordonnier & Loukas 2021, arXiv:2103.03404, Theorem 2.2 and section 3; docs/THEORY.md#rank_collapse):
for a pure self-attention stack (no skip, no MLP) the residual ``res(X) = X - 1 x^T`` (``x`` the token mean, the
Frobenius-optimal rank-one-in-tokens fit) obeys ``||res(SAN(X))|| <= c ||res(X)||^3`` per layer: it shrinks doubly
exponentially with depth (``-log r`` multiplies by about 3 per layer once small). Skip connections ``X + SA(X)``
remove the cubic contraction: the residual then shrinks at most geometrically (their section 3.1, paths of length 0).

Measurement: ``seeds`` stacks of ``depth`` multi-head attention layers in pure JAX (models/ has no attention-only
variant on main), tokens ``X_0`` (n x d) iid N(0, 1), ``W_Q, W_K, W_V, W_O`` iid N(0, 1/d), softmax with
``1/sqrt(d_head)``, all seeds in one vmapped computation. ``r_l = ||res(X_l)||_F / ||X_l||_F``, geometric mean over
seeds per layer.

Tolerances (float32 sets a floor near 1e-7 on ``r``, so "collapsed" means ``r < 1e-4``):
- pure attention collapses within ``depth`` layers and doubly exponentially: over consecutive layers with
  ``r_(l+1) > 1e-6`` (above the float32 floor) and after the first layer (``r_0 ~ 1`` gives no leverage),
  ``log r_(l+1) / log r_l >= 2`` (geometric decay would give ratios ``(l+1)/l <= 1.5`` for l >= 2; the cubic
  map gives ~3);
- with skip connections the stack does not collapse: ``r_depth > 1e-2``, at least 100x the floor, in every seed.
``predict_skip_collapses=True`` is the deliberately wrong prediction (skip connections do not help).
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from theory_checks import common
from theory_checks.verdict import FAIL, PASS, Verdict

NAME = "rank_collapse"


def sizes(quick: bool) -> dict:
  return dict(n=16, d=32, heads=2, depth=8, seeds=32) if quick else dict(n=64, d=256, heads=8, depth=16, seeds=64)


@functools.partial(jax.jit, static_argnames=("n", "d", "heads", "depth", "skip", "seeds"))
def residual_curves(key, n: int, d: int, heads: int, depth: int, skip: bool, seeds: int):
  """(seeds, depth + 1) relative residuals ``r_l`` of attention-only stacks (with or without skip connections)."""
  dk = d // heads

  def res(x):
    return jnp.linalg.norm(x - x.mean(0, keepdims=True)) / jnp.linalg.norm(x)

  def one(k):
    kx, kw = jax.random.split(k)
    x = jax.random.normal(kx, (n, d))
    ws = jax.random.normal(kw, (depth, 4, d, d)) / jnp.sqrt(jnp.float32(d))

    def layer(x, w):
      q, kk, v = ((x @ w[i]).reshape(n, heads, dk) for i in range(3))
      a = jax.nn.softmax(jnp.einsum("ihd,jhd->hij", q, kk) / jnp.sqrt(jnp.float32(dk)), axis=-1)
      out = jnp.einsum("hij,jhd->ihd", a, v).reshape(n, d) @ w[3]
      x = x + out if skip else out
      return x, res(x)

    _, rs = jax.lax.scan(layer, x, ws)
    return jnp.concatenate([res(x)[None], rs])

  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(seeds))
  return jax.vmap(one)(keys)


def check(n=16, d=32, heads=2, depth=8, seeds=32, seed: int = 0, *, predict_skip_collapses: bool = False) -> Verdict:
  key = jax.random.PRNGKey(seed)
  pure = np.asarray(residual_curves(jax.random.fold_in(key, 0), n, d, heads, depth, False, seeds), np.float64)
  skip = np.asarray(residual_curves(jax.random.fold_in(key, 1), n, d, heads, depth, True, seeds), np.float64)
  tiny = 1e-30
  gpure = np.exp(np.mean(np.log(np.maximum(pure, tiny)), axis=0))
  gskip = np.exp(np.mean(np.log(np.maximum(skip, tiny)), axis=0))
  collapsed_at = int(np.argmax(gpure < 1e-4)) if np.any(gpure < 1e-4) else -1
  log_ratios = [float(np.log(gpure[l + 1]) / np.log(gpure[l])) for l in range(1, depth)
                if gpure[l] < 1.0 and gpure[l + 1] > 1e-6]
  doubly_exp = bool(collapsed_at > 0 and log_ratios and min(log_ratios) >= 2.0)
  skip_min_final = float(skip[:, -1].min())
  skip_no_collapse = skip_min_final > 1e-2
  ok = doubly_exp and (not skip_no_collapse if predict_skip_collapses else skip_no_collapse)
  return Verdict(
      check=NAME,
      prediction="pure attention: r_l = ||X - 1 x^T|| / ||X|| -> 0 doubly exponentially in depth; with skip "
      "connections " + ("it collapses as well (deliberately wrong)" if predict_skip_collapses else
                        "no collapse (at most geometric decay)"),
      source="Dong, Cordonnier & Loukas 2021 (arXiv:2103.03404) Thm 2.2, section 3.1; docs/THEORY.md#rank_collapse",
      tolerance="pure: r < 1e-4 within depth and log r_(l+1)/log r_l >= 2 before the float32 floor (geometric "
      "decay gives <= 1.5); skip: r_depth > 1e-2 in every seed",
      status=PASS if ok else FAIL,
      measured=dict(pure_collapse_layer=collapsed_at, pure_min_log_ratio=min(log_ratios) if log_ratios else None,
                    skip_final_residual_min=skip_min_final, skip_final_residual_geomean=float(gskip[-1]),
                    pure_final_residual_geomean=float(gpure[-1])),
      predicted=dict(pure_collapse_layer=f"<= {depth}", pure_min_log_ratio=">= 2 (cubic map: ~3)",
                     skip_final_residual_min="<= 1e-2" if predict_skip_collapses else "> 1e-2"),
      details=[dict(n=n, d=d, heads=heads, depth=depth, seeds=seeds, log_ratios=log_ratios)],
      series=dict(layer=np.arange(depth + 1), pure_residual_geomean=gpure, skip_residual_geomean=gskip,
                  pure_residual=pure, skip_residual=skip))


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0) -> Verdict:
  del runs_dir
  return check(seed=seed, **sizes(quick))
