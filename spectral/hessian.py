"""Matrix-free curvature of a loss: Hessian, Gauss-Newton and empirical Fisher products, top eigenvalues, trace, SLQ.

Conventions:
- ``loss_fn(params, batch) -> scalar`` is a pure JAX function of a parameter pytree and a batch pytree (a Flax NNX
  model enters through ``nnx.split`` / ``nnx.merge`` into such a function; this module never imports Flax).
- Curvature operators act on flat vectors of length ``P`` = number of parameters, with
  ``flat, unravel = jax.flatten_util.ravel_pytree(params)`` fixing the order. Nothing of size ``P^2`` is formed:
  one product costs a few passes through the model.
- Several batches: pass ``batch`` with a leading axis of stacked, equal-sized batches and ``stacked=True`` (use
  ``stack_batches`` on a list or an iterator). The operator is the mean over batches of the per-batch operator,
  computed with a ``lax.scan`` (one batch in memory at a time); for a mean loss this is the full-data operator.

Operators (all symmetric ``P x P``):
- Hessian ``H = d^2 L / d theta^2``: ``H v = jvp(grad L)(v)`` (forward-over-reverse; Pearlmutter 1994), about 2-4
  times the cost of a gradient.
- Generalised Gauss-Newton ``G = J^T H_out J`` for ``outputs = model_fn(params, batch)`` and
  ``L = output_loss_fn(outputs, batch)``: ``J`` the Jacobian of the outputs in the parameters, ``H_out`` the Hessian
  of the loss in the outputs (Schraudolph 2002; Martens 2020, arXiv:1412.1193). Positive semi-definite for convex
  output losses; Papyan (arXiv:1901.08244) locates the Hessian's class outliers in it.
- Empirical Fisher ``F = (1/B) sum_i g_i g_i^T`` (uncentred) from per-example losses
  ``per_example_loss_fn(params, batch) -> (B,)``: ``F v = (1/B) J_l^T (J_l v)`` with ``J_l`` the ``(B, P)``
  Jacobian of the per-example losses.

Bad input: parameters that are not floating arrays or contain NaN/Inf, a loss that is not a scalar floating array
or is not finite, raise a ``ValueError``/``TypeError`` naming the problem. The value checks run only on concrete
inputs: under ``jit``/``vmap`` they are skipped (shapes are still checked) and a non-finite loss shows as NaN.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from spectral import lanczos as lz

LossFn = Callable[[Any, Any], jax.Array]


class FlatOperator(NamedTuple):
  """A symmetric operator on flat parameter vectors: ``matvec (P,) -> (P,)``, ``dim = P``, the flat ``dtype`` and
  ``unravel`` mapping a flat vector back to the parameter pytree."""
  matvec: Callable[[jax.Array], jax.Array]
  dim: int
  dtype: Any
  unravel: Callable[[jax.Array], Any]


def _is_concrete(tree) -> bool:
  return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def check_params(params, name: str = "params") -> None:
  """Raise unless every leaf of ``params`` is a floating array and (when concrete) finite."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  if not leaves:
    raise ValueError(f"{name}: the pytree has no array leaves")
  for path, leaf in leaves:
    where = jax.tree_util.keystr(path) or "<root>"
    dtype = getattr(leaf, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(f"{name}{where}: expected a floating array, got {type(leaf).__name__} of dtype {dtype}")
    if not isinstance(leaf, jax.core.Tracer) and not bool(np.all(np.isfinite(np.asarray(leaf)))):
      raise ValueError(f"{name}{where}: has NaN or Inf entries")


def _first_batch(batch, stacked: bool):
  return jax.tree.map(lambda x: x[0], batch) if stacked else batch


def check_scalar_fn(fn, params, batch, *, stacked: bool = False, name: str = "loss_fn") -> None:
  """Raise unless ``fn(params, batch)`` is a scalar floating array, and (when concrete) finite on every batch."""
  out = jax.eval_shape(fn, params, _first_batch(batch, stacked))
  if not isinstance(out, jax.ShapeDtypeStruct):
    raise TypeError(f"{name}: expected it to return one scalar array, got {type(out).__name__}")
  if out.shape != ():
    raise ValueError(f"{name}: expected a scalar loss, got an array of shape {out.shape}")
  if not jnp.issubdtype(out.dtype, jnp.floating):
    raise TypeError(f"{name}: expected a floating loss, got dtype {out.dtype}")
  if _is_concrete((params, batch)):
    values = jax.lax.map(lambda b: fn(params, b), batch) if stacked else fn(params, batch)
    if not bool(np.all(np.isfinite(np.asarray(values)))):
      raise ValueError(f"{name}: the loss is not finite at these parameters (got {np.asarray(values)})")


def stack_batches(batches: Iterable[Any]):
  """Stack a list or iterator of equal-shaped batch pytrees along a new leading axis (for ``stacked=True``)."""
  batches = list(batches)
  if not batches:
    raise ValueError("batches: got an empty list or iterator")
  return jax.tree.map(lambda *xs: jnp.stack(xs), *batches)


def _mean_over_batches(per_batch: Callable[[Any, Any], Any], batch, stacked: bool) -> Callable[[Any], Any]:
  """``v -> mean_b per_batch(v, batch_b)`` by ``lax.scan`` when stacked, else ``v -> per_batch(v, batch)``."""
  if not stacked:
    return lambda v: per_batch(v, batch)
  num = jax.tree.leaves(batch)[0].shape[0]

  def apply(v):
    def body(acc, b):
      return jax.tree.map(jnp.add, acc, per_batch(v, b)), None
    total, _ = jax.lax.scan(body, jax.tree.map(jnp.zeros_like, v), batch)
    return jax.tree.map(lambda t: t / num, total)
  return apply


def _flat(tree_matvec, params) -> FlatOperator:
  flat, unravel = ravel_pytree(params)

  def matvec(v):
    return ravel_pytree(tree_matvec(unravel(v)))[0].astype(flat.dtype)
  return FlatOperator(matvec, int(flat.shape[0]), flat.dtype, unravel)


def hvp(loss_fn: LossFn, params, batch, tangent):
  """Hessian-vector product ``H v`` as a pytree like ``params``: ``jax.jvp`` of ``jax.grad`` (forward-over-reverse)."""
  return jax.jvp(lambda p: jax.grad(loss_fn)(p, batch), (params,), (tangent,))[1]


def hessian_operator(loss_fn: LossFn, params, batch, *, stacked: bool = False, check: bool = True) -> FlatOperator:
  """Flat Hessian operator ``v (P,) -> H v (P,)`` of ``loss_fn`` at ``params`` (mean over batches if ``stacked``)."""
  if check:
    check_params(params)
    check_scalar_fn(loss_fn, params, batch, stacked=stacked)
  return _flat(_mean_over_batches(lambda v, b: hvp(loss_fn, params, b, v), batch, stacked), params)


def gauss_newton_operator(
    model_fn: Callable[[Any, Any], jax.Array], output_loss_fn: Callable[[jax.Array, Any], jax.Array], params, batch,
    *, stacked: bool = False, check: bool = True,
) -> FlatOperator:
  """Flat generalised Gauss-Newton operator ``v -> J^T H_out J v``.

  Args:
    model_fn: ``(params, batch) -> outputs`` (one array, e.g. logits ``(B, C)``).
    output_loss_fn: ``(outputs, batch) -> scalar`` (e.g. mean cross-entropy against ``batch``'s labels).
  """
  if check:
    check_params(params)
    out = jax.eval_shape(model_fn, params, _first_batch(batch, stacked))
    if not isinstance(out, jax.ShapeDtypeStruct):
      raise TypeError(f"model_fn: expected it to return one array, got {type(out).__name__}")
    check_scalar_fn(lambda p, b: output_loss_fn(model_fn(p, b), b), params, batch, stacked=stacked,
                    name="output_loss_fn(model_fn(params, batch))")

  def per_batch(v, b):
    outputs, jvp_fn = jax.linearize(lambda p: model_fn(p, b), params)
    hj = jax.jvp(jax.grad(lambda o: output_loss_fn(o, b)), (outputs,), (jvp_fn(v),))[1]
    return jax.linear_transpose(jvp_fn, params)(hj)[0]

  return _flat(_mean_over_batches(per_batch, batch, stacked), params)


def empirical_fisher_operator(
    per_example_loss_fn: Callable[[Any, Any], jax.Array], params, batch, *, stacked: bool = False, check: bool = True,
) -> FlatOperator:
  """Flat empirical Fisher operator ``v -> (1/B) sum_i g_i (g_i . v)``, ``g_i`` per-example loss gradients.

  Args:
    per_example_loss_fn: ``(params, batch) -> (B,)`` losses of the ``B`` examples in the batch.
  """
  if check:
    check_params(params)
    out = jax.eval_shape(per_example_loss_fn, params, _first_batch(batch, stacked))
    if not isinstance(out, jax.ShapeDtypeStruct) or len(out.shape) != 1:
      raise ValueError(f"per_example_loss_fn: expected one array of shape (B,), got {out}")
    check_scalar_fn(lambda p, b: jnp.mean(per_example_loss_fn(p, b)), params, batch, stacked=stacked,
                    name="per_example_loss_fn")

  def per_batch(v, b):
    losses, jvp_fn = jax.linearize(lambda p: per_example_loss_fn(p, b), params)
    return jax.linear_transpose(jvp_fn, params)(jvp_fn(v) / losses.shape[0])[0]

  return _flat(_mean_over_batches(per_batch, batch, stacked), params)


def hessian_top_eigenpairs(
    loss_fn: LossFn, params, batch, k: int, key: jax.Array, *, num_steps: int | None = None,
    which: str = "largest", stacked: bool = False,
) -> lz.EigenResult:
  """Top-``k`` Hessian Ritz pairs by Lanczos with full reorthogonalisation.

  Returns ``EigenResult(eigenvalues (k,), eigenvectors (k, P) flat (``unravel`` them with ``ravel_pytree``),
  residual_norms (k,))``; ``num_steps`` defaults to ``min(P, max(4 k, 40))``.
  """
  op = hessian_operator(loss_fn, params, batch, stacked=stacked)
  return lz.top_eigenpairs(op.matvec, op.dim, k, key, num_steps=num_steps, which=which, dtype=op.dtype)


def hessian_top_eigenvalues(
    loss_fn: LossFn, params, batch, k: int, key: jax.Array, *, num_steps: int | None = None,
    which: str = "largest", stacked: bool = False,
) -> jax.Array:
  """Top-``k`` Hessian eigenvalues ``(k,)`` (descending for ``which="largest"``). See ``hessian_top_eigenpairs``."""
  return hessian_top_eigenpairs(loss_fn, params, batch, k, key, num_steps=num_steps, which=which,
                                stacked=stacked).eigenvalues


def hessian_trace(
    loss_fn: LossFn, params, batch, key: jax.Array, *, num_matvecs: int = 30, method: str = "hutch++",
    probe: str = "rademacher", stacked: bool = False,
) -> lz.TraceEstimate:
  """``tr H`` by Hutch++ (default) or Hutchinson with ``num_matvecs`` Hessian-vector products, with standard error."""
  op = hessian_operator(loss_fn, params, batch, stacked=stacked)
  if method == "hutch++":
    return lz.hutchpp_trace(op.matvec, op.dim, key, num_matvecs=num_matvecs, probe=probe, dtype=op.dtype)
  if method == "hutchinson":
    return lz.hutchinson_trace(op.matvec, op.dim, key, num_probes=num_matvecs, probe=probe, dtype=op.dtype)
  raise ValueError(f"method: expected 'hutch++' or 'hutchinson', got {method!r}")


def hessian_slq(
    loss_fn: LossFn, params, batch, key: jax.Array, *, num_steps: int | None = None, num_probes: int = 4,
    probe: str = "rademacher", stacked: bool = False,
) -> lz.QuadratureResult:
  """SLQ nodes and weights ``(num_probes, num_steps)`` of the Hessian spectrum; smooth with ``lanczos.slq_density``.

  Ghorbani, Krishnan, Xiao 2019 use 90 steps and a Gaussian kernel; the W1 error is at most about
  ``pi * width / (4 num_steps)`` plus ``width / sqrt(P num_probes)`` (Chen, Trogdon, Ubaru 2021), so for large ``P``
  a few probes suffice. ``num_steps`` defaults to ``min(100, P)``.
  """
  op = hessian_operator(loss_fn, params, batch, stacked=stacked)
  steps = min(100, op.dim) if num_steps is None else num_steps
  return lz.slq(op.matvec, op.dim, key, num_steps=steps, num_probes=num_probes, probe=probe, dtype=op.dtype)


def slq_density(
    loss_fn: LossFn, params, batch, key: jax.Array, grid: jax.Array, *, width: float, num_steps: int | None = None,
    num_probes: int = 4, stacked: bool = False,
) -> jax.Array:
  """Smoothed Hessian spectral density on ``grid (G,)`` (Gaussian kernel of standard deviation ``width``)."""
  quad = hessian_slq(loss_fn, params, batch, key, num_steps=num_steps, num_probes=num_probes, stacked=stacked)
  return lz.slq_density(quad, grid, width)
