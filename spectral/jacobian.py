"""Singular values of input-output Jacobians: exact (materialised + SVD) and matrix-free (Lanczos on J^T J).

Conventions:
- ``fn`` maps one array ``x`` (any shape, ``n = x.size`` entries) to one floating array (``o`` entries); its Jacobian
  ``J = d vec(fn(x)) / d vec(x)`` is ``(o, n)`` in row-major (C) order of both arrays. For ``f(params, x)`` pass
  ``functools.partial(f, params)`` (or a lambda) and vmap over ``params`` for ensemble members; vmap over ``x`` for a
  batch of inputs. Nothing here imports Flax.
- Singular values are returned in descending order; there are ``min(o, n)`` of them (the rest are zero).
- Exact path: ``jax.jacfwd`` when ``n <= o`` (``n`` forward passes) else ``jax.jacrev`` (``o`` backward passes),
  then ``jnp.linalg.svd``; memory ``o * n``.
- Matrix-free path: ``jax.linearize`` once, then Lanczos with full reorthogonalisation on ``J^T J`` (``(n, n)``,
  applied as ``v -> J^T (J v)`` with the transposed linearisation); its top Ritz values are the squared top singular
  values. Memory ``O(num_steps * n)``. In float32 a singular value ``s`` carries an absolute error of roughly
  ``eps * s_max^2 / s`` (the Gram matrix squares the condition number), so use it for the top of the spectrum.
- Transformer-like functions on sequences ``x_LxD (L, d) -> (L, d_out)``: the per-token Jacobian
  ``d out[position] / d x[source_position]`` is ``(d_out, d)`` (``source_position`` defaults to ``position``, the
  diagonal block); the full sequence Jacobian is ``(L d_out, L d)``.

Bad input: a non-floating or non-finite ``x``, an ``fn`` that returns anything but one floating array (or a
non-finite one), ``k`` larger than ``min(o, n)`` and a position out of range raise errors naming the problem
(value checks run on concrete inputs only; under jit/vmap only shapes are checked).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from spectral import lanczos as lz

ArrayFn = Callable[[jax.Array], jax.Array]

EXACT_MAX_DIM = 1024
"""``method="auto"`` materialises the Jacobian when all singular values are asked for or both sizes are at most
this; otherwise it runs Lanczos. See bench/bench_hessian.py for the measured crossover."""


def _check_fn_and_x(fn: ArrayFn, x, name: str = "fn") -> tuple[jax.Array, jax.ShapeDtypeStruct]:
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    raise TypeError(f"x: expected an array, got {type(x).__name__}")
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"x: expected a floating array, got dtype {x.dtype}")
  if x.size == 0:
    raise ValueError(f"x: expected a non-empty array, got shape {x.shape}")
  out = jax.eval_shape(fn, x)
  if not isinstance(out, jax.ShapeDtypeStruct):
    raise TypeError(f"{name}: expected it to return one array, got {type(out).__name__}")
  if not jnp.issubdtype(out.dtype, jnp.floating):
    raise TypeError(f"{name}: expected a floating output, got dtype {out.dtype}")
  if int(np.prod(out.shape)) == 0:
    raise ValueError(f"{name}: returned an empty array of shape {out.shape}")
  if not isinstance(x, jax.core.Tracer):
    if not bool(np.all(np.isfinite(np.asarray(x)))):
      raise ValueError(f"x: has NaN or Inf entries (shape {x.shape})")
    value = fn(x)
    if not isinstance(value, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(value))):
      raise ValueError(f"{name}: output has NaN or Inf entries at this input")
  return x, out


def _flat_fn(fn: ArrayFn, x: jax.Array) -> Callable[[jax.Array], jax.Array]:
  return lambda v: jnp.reshape(fn(jnp.reshape(v, x.shape)), (-1,))


def jacobian_matrix(fn: ArrayFn, x: jax.Array) -> jax.Array:
  """Materialised Jacobian ``(o, n)`` of ``vec(fn(x))`` in ``vec(x)`` (jacfwd if ``n <= o`` else jacrev)."""
  x, out = _check_fn_and_x(fn, x)
  n, o = x.size, int(np.prod(out.shape))
  flat = _flat_fn(fn, x)
  jac = jax.jacfwd(flat) if n <= o else jax.jacrev(flat)
  return jac(jnp.reshape(x, (-1,)))


def _resolve_k(k: int | None, rank: int) -> int:
  return rank if k is None else lz.check_k(k, rank)


def jacobian_singular_values(
    fn: ArrayFn, x: jax.Array, k: int | None = None, *, method: str = "auto", key: jax.Array | None = None,
    num_steps: int | None = None,
) -> jax.Array:
  """Top ``k`` singular values ``(k,)`` (descending) of the Jacobian of ``fn`` at ``x``.

  Args:
    fn: ``x -> y``, one floating array to one floating array.
    x: the input at which the Jacobian is taken.
    k: static number of singular values (default all ``min(o, n)``).
    method: ``"exact"`` (materialise + SVD), ``"lanczos"`` (matrix-free on ``J^T J``) or ``"auto"``
      (exact when ``k`` is None or ``max(o, n) <= EXACT_MAX_DIM``).
    key: PRNG key for the Lanczos start (default ``jax.random.key(0)``).
    num_steps: Lanczos steps (default ``min(n, max(4 k, 40))``); converged top values are accurate once the Ritz
      residuals are small, which needs more steps when the top singular values are clustered.
  """
  x, out = _check_fn_and_x(fn, x)
  n, o = x.size, int(np.prod(out.shape))
  k = _resolve_k(k, min(n, o))
  if method == "auto":
    method = "exact" if k == min(n, o) or max(n, o) <= EXACT_MAX_DIM else "lanczos"
  if method == "exact":
    return jnp.linalg.svd(jacobian_matrix(fn, x), compute_uv=False)[:k]
  if method != "lanczos":
    raise ValueError(f"method: expected 'auto', 'exact' or 'lanczos', got {method!r}")
  flat = _flat_fn(fn, x)
  _, jvp_fn = jax.linearize(flat, jnp.reshape(x, (-1,)))
  vjp_fn = jax.linear_transpose(jvp_fn, jnp.reshape(x, (-1,)))
  gram = lambda v: vjp_fn(jvp_fn(v))[0]
  key = jax.random.key(0) if key is None else key
  top = lz.top_eigenpairs(gram, n, k, key, num_steps=num_steps, dtype=x.dtype)
  return jnp.sqrt(jnp.clip(top.eigenvalues, 0.0, None))


def _check_sequence(fn: ArrayFn, x_LxD, position: int, source_position: int | None):
  x_LxD, out = _check_fn_and_x(fn, x_LxD)
  if x_LxD.ndim != 2:
    raise ValueError(f"x_LxD: expected a sequence of shape (L, d), got shape {x_LxD.shape}")
  seq_len = x_LxD.shape[0]
  if len(out.shape) != 2 or out.shape[0] != seq_len:
    raise ValueError(f"fn: expected it to map (L, d) = {x_LxD.shape} to (L, d_out), got output shape {out.shape}")
  source_position = position if source_position is None else source_position
  for name, pos in (("position", position), ("source_position", source_position)):
    if not isinstance(pos, (int, np.integer)) or not 0 <= pos < seq_len:
      raise ValueError(f"{name}: expected a static int in [0, {seq_len}), got {pos!r}")
  return x_LxD, int(position), int(source_position)


def per_token_jacobian(fn: ArrayFn, x_LxD: jax.Array, position: int, *, source_position: int | None = None):
  """``d fn(x)[position] / d x[source_position]``, a ``(d_out, d)`` matrix (by ``jax.jacfwd``, ``d`` passes)."""
  x_LxD, position, source_position = _check_sequence(fn, x_LxD, position, source_position)
  token = lambda x_D: fn(x_LxD.at[source_position].set(x_D))[position]
  return jax.jacfwd(token)(x_LxD[source_position])


def per_token_jacobian_singular_values(
    fn: ArrayFn, x_LxD: jax.Array, position: int, *, source_position: int | None = None, k: int | None = None,
) -> jax.Array:
  """Singular values (descending, ``min(d_out, d)`` or ``k``) of ``per_token_jacobian``; exact (``d`` is small)."""
  jac = per_token_jacobian(fn, x_LxD, position, source_position=source_position)
  return jnp.linalg.svd(jac, compute_uv=False)[: _resolve_k(k, min(jac.shape))]


def sequence_jacobian_singular_values(
    fn: ArrayFn, x_LxD: jax.Array, k: int | None = None, *, method: str = "auto", key: jax.Array | None = None,
    num_steps: int | None = None,
) -> jax.Array:
  """Singular values of the full ``(L d_out, L d)`` sequence Jacobian (see ``jacobian_singular_values``)."""
  x_LxD, _, _ = _check_sequence(fn, x_LxD, 0, None)
  return jacobian_singular_values(fn, x_LxD, k, method=method, key=key, num_steps=num_steps)
