"""Empirical spectral densities (ESDs) of weight matrices.

Convention (docs/THEORY.md#conventions): for ``W`` of shape ``(a, b)`` let ``N = max(a, b)``, ``M = min(a, b)`` and
``q = M / N <= 1``. Orient ``W`` as ``W_s`` with ``M`` rows (``W`` or ``W^T``). The ESD is the ``M`` eigenvalues of
the ``M x M`` correlation matrix

    X = W_s W_s^T / N,

so that iid entries of variance ``sigma^2`` give Marchenko-Pastur with ratio ``q`` and edges
``sigma^2 (1 +- sqrt(q))^2``. The singular values of ``W / sqrt(N)`` are the square roots of these eigenvalues.
WeightWatcher uses the unnormalised ``W^T W``: its eigenvalues are ``N`` times ours (see ``to_weightwatcher``).

Two paths:
- ``esd_reference``: numpy/LAPACK in float64 on the host, the reference every other path is held against;
- ``esd``: JAX, jit-compiled and batched over leading axes, float32 on device (upcast from bf16/fp16).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg


def validate_matrix(w, name: str = "w") -> np.ndarray | jax.Array:
  """Raise a ``ValueError`` naming ``name`` unless ``w`` is a finite, non-degenerate, floating 2-D matrix.

  Checks: rank 2, both dimensions >= 2 (a 1 x n matrix has a single eigenvalue and no spectrum), a floating dtype
  (integer weights are almost always a loading mistake), finite entries, and not all zero.
  """
  shape = getattr(w, "shape", None)
  if shape is None:
    raise TypeError(f"{name}: expected an array, got {type(w).__name__}")
  if len(shape) != 2:
    raise ValueError(f"{name}: expected a 2-D matrix, got an array of rank {len(shape)} with shape {tuple(shape)}")
  if min(shape) < 2:
    raise ValueError(f"{name}: expected both dimensions >= 2, got shape {tuple(shape)} (empty or 1 x n matrix)")
  if not jnp.issubdtype(w.dtype, jnp.floating):
    raise ValueError(f"{name}: expected a floating dtype, got {w.dtype}")
  arr = np.asarray(w)
  if arr.dtype not in (np.float32, np.float64):
    arr = arr.astype(np.float32)  # bf16/fp16 widen exactly; float32/float64 are checked in place (no copy)
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name}: matrix of shape {tuple(shape)} has NaN or Inf entries")
  if not np.any(arr):
    raise ValueError(f"{name}: matrix of shape {tuple(shape)} is all zeros (degenerate spectrum)")
  return w


def aspect_ratio(shape) -> float:
  """``q = M / N = min(a, b) / max(a, b)`` for a matrix of shape ``(a, b)``."""
  a, b = int(shape[-2]), int(shape[-1])
  return min(a, b) / max(a, b)


def _oriented(w):
  """``W_s``: ``w`` (..., a, b) transposed if needed so that it has ``M = min(a, b)`` rows."""
  a, b = w.shape[-2], w.shape[-1]
  if a <= b:
    return w
  return np.swapaxes(w, -1, -2) if isinstance(w, np.ndarray) else jnp.swapaxes(w, -1, -2)


def esd_reference(w: np.ndarray) -> np.ndarray:
  """Float64 reference ESD: ascending eigenvalues (M,) of ``X = W_s W_s^T / N`` by LAPACK ``eigvalsh``.

  Args:
    w: (a, b) matrix, any floating dtype.

  Returns:
    (M,) float64 eigenvalues in ascending order, clipped at zero (the Gram matrix is positive semi-definite; tiny
    negative values are round-off).
  """
  validate_matrix(w)
  w = np.asarray(w, dtype=np.float64)
  ws = _oriented(w)
  n = max(w.shape)
  return np.clip(np.linalg.eigvalsh(ws @ ws.T / n), 0.0, None)


def after(x, *arrays):
  """``x``, computed in the program only once every array of ``arrays`` (``None`` skipped) is: a data dependency
  that orders a program's LAPACK kernels one after another. The value of ``x`` is unchanged where the arrays are
  finite (a NaN or an infinity in them makes a floating ``x`` NaN; a NaN sum makes an integer ``x`` zero).

  jaxlib's batched CPU kernels (eigh, QR, SVD) split their batch over the intra-op pool and block until it is done;
  on a 2-core machine two such kernels in flight at once each held one of the pool's two threads while the pieces
  they queued waited for a free one: a deadlock (gdb: both ``tf_XLAEigen`` threads in ``lapack_ssyevd_ffi ->
  ParallelBatchMap -> BlockingCounter::Wait``). Feeding each kernel's input through ``after(input, previous)``
  excludes that within a program. An optimization barrier (this function's first form) does not: XLA's CPU compiler
  removes it and keeps no control dependency (jax 0.10.2), so the kernels stayed independent. What survives
  compilation is arithmetic: ``x + 0 * s`` with ``s`` a sum over the arrays (XLA does not fold ``0 * s`` for floats,
  since ``s`` may be NaN); integers take ``where(isnan(s), 0, x)``.
  """
  arrays = [a for a in arrays if a is not None]
  if not arrays:
    return x
  s = sum(jnp.sum(jnp.asarray(a, jnp.float32)) for a in arrays)
  if jnp.issubdtype(x.dtype, jnp.inexact):
    return x + jnp.zeros((), x.dtype) * s.astype(x.dtype)
  return jnp.where(jnp.isnan(s), jnp.zeros_like(x), x)


@jax.jit
def _esd_batched(w):
  ws = _oriented(w)
  n = max(w.shape[-2], w.shape[-1])
  gram = jnp.einsum("...ik,...jk->...ij", ws, ws, precision=jax.lax.Precision.HIGHEST) / n
  return jnp.clip(jnp.linalg.eigvalsh(gram), 0.0, None)


def esd(w) -> jax.Array:
  """Accelerated ESD, batched over leading axes: ``w`` (..., a, b) -> ascending eigenvalues (..., M).

  Computes ``eigvalsh(W_s W_s^T / N)`` in float32 on the default device (bf16/fp16 inputs are upcast first; float64
  is kept when ``jax_enable_x64`` is on). Its error against ``esd_reference`` is bounded in the tests.
  """
  w = jnp.asarray(w)
  if w.ndim < 2:
    raise ValueError(f"w: expected a matrix or a batch of matrices (rank >= 2), got shape {w.shape}")
  if not jnp.issubdtype(w.dtype, jnp.floating):
    raise ValueError(f"w: expected a floating dtype, got {w.dtype}")
  if w.dtype in (jnp.bfloat16, jnp.float16):
    w = w.astype(jnp.float32)
  return _esd_batched(w)


def singular_values_normalised(eigenvalues):
  """Singular values of ``W / sqrt(N)`` from ESD eigenvalues: ``s = sqrt(lambda)``."""
  xp = jnp if isinstance(eigenvalues, jax.Array) else np
  return xp.sqrt(xp.clip(eigenvalues, 0.0, None))


def to_weightwatcher(eigenvalues, shape) -> np.ndarray:
  """Map our ESD eigenvalues to WeightWatcher's, which are those of the unnormalised ``W^T W``: multiply by ``N``."""
  return np.asarray(eigenvalues) * max(int(shape[-2]), int(shape[-1]))


def _eigvalsh_host(gram):
  return np.linalg.eigvalsh(np.asarray(gram)).astype(gram.dtype)


def _gram_eigvalsh(ws, n: int, host_eigh: bool):
  gram = jnp.einsum("...ik,...jk->...ij", ws, ws, precision=jax.lax.Precision.HIGHEST) / n
  if host_eigh:
    # LAPACK syevd via numpy (eigenvalues only) is ~3x faster than XLA's CPU eigh, which also forms eigenvectors.
    ev = jax.pure_callback(_eigvalsh_host, jax.ShapeDtypeStruct(gram.shape[:-1], gram.dtype), gram,
                           vmap_method="broadcast_all")
  else:
    ev = jnp.linalg.eigvalsh(gram)
  return jnp.clip(ev, 0.0, None)


@functools.partial(jax.jit, static_argnames=("host_eigh",))
def esd_oriented_batch(ws, host_eigh: bool = False):
  """ESDs of a batch ``ws`` (B, M, N) already oriented (M <= N rows), float32/float64 -> (B, M) ascending.

  ``host_eigh=True`` runs the eigenvalue step on the host (numpy LAPACK) inside the compiled computation, the fast
  choice on CPU backends; on GPU/TPU keep it False.
  """
  return _gram_eigvalsh(ws, ws.shape[-1], host_eigh)


def esd_oriented_batch_host(ws) -> np.ndarray:
  """Host twin of ``esd_oriented_batch``: (B, M, N) oriented -> (B, M) ascending, numpy/LAPACK, nothing compiled.

  Per matrix: ``W_s W_s^T`` by BLAS (numpy uses ``syrk`` for ``a @ a.T``, half the flops of a general product), then
  LAPACK ``syevd`` eigenvalues (divide and conquer, no eigenvectors), in the input precision (float32 or float64).
  """
  ws = np.asarray(ws)
  if ws.ndim != 3 or ws.shape[1] > ws.shape[2]:
    raise ValueError(f"ws: expected an oriented batch (B, M, N) with M <= N, got shape {ws.shape}")
  out = np.empty(ws.shape[:2], ws.dtype)
  for i, w in enumerate(ws):
    gram = w @ w.T
    gram /= ws.shape[2]
    out[i] = scipy.linalg.eigh(gram, eigvals_only=True, driver="evd", overwrite_a=True, check_finite=False)
  return np.clip(out, 0.0, None)


@functools.partial(jax.jit, static_argnames=("host_eigh",))
def shuffled_esd_oriented_batch(ws, keys, host_eigh: bool = False):
  """ESDs of entry-shuffled copies: each matrix's entries permuted by its own key (B keys)."""
  b, m, n = ws.shape
  flat = ws.reshape((b, m * n))
  shuffled = jax.vmap(lambda k, v: jax.random.permutation(k, v))(keys, flat).reshape((b, m, n))
  return _gram_eigvalsh(shuffled, n, host_eigh)


def esd_top_k(w, k: int, *, iters: int = 12, oversample: int = 16, seed: int = 0) -> jax.Array:
  """Top-``k`` ESD eigenvalues (descending) of ``X = W_s W_s^T / N`` without forming ``X`` (tail-only mode).

  Randomized block Krylov-free subspace iteration (Halko, Martinsson & Tropp 2011, SIAM Rev. 53:217, Alg. 4.4) with
  block ``b = k + oversample``, ``iters`` power steps re-orthonormalised by QR, then Rayleigh-Ritz on
  ``Q^T X Q``. Only matvecs ``X V = W_s (W_s^T V) / N`` are used: memory ``O((M + N) b)`` beyond ``W`` itself. The
  Ritz values converge to the top eigenvalues at rate ``(l_(b+1) / l_j)^(2 iters)``; error bounded in the tests.
  """
  w = jnp.asarray(w)
  if w.ndim != 2:
    raise ValueError(f"w: expected a 2-D matrix, got shape {w.shape}")
  if w.dtype in (jnp.bfloat16, jnp.float16) or not jnp.issubdtype(w.dtype, jnp.floating):
    w = w.astype(jnp.float32)
  ws = _oriented(w)
  m = ws.shape[0]
  if not 1 <= k <= m:
    raise ValueError(f"k: expected 1 <= k <= M = {m}, got {k}")
  b = min(m, k + oversample)
  return _top_k(ws, jax.random.key(seed), k, b, iters)


@functools.partial(jax.jit, static_argnames=("k", "b", "iters"))
def _top_k(ws, key, k: int, b: int, iters: int):
  m, n = ws.shape
  hp = jax.lax.Precision.HIGHEST
  apply_x = lambda v: jnp.matmul(ws, jnp.matmul(ws.T, v, precision=hp), precision=hp) / n
  q, _ = jnp.linalg.qr(jax.random.normal(key, (m, b), ws.dtype))
  q = jax.lax.fori_loop(0, iters, lambda _, q: jnp.linalg.qr(apply_x(q))[0], q)
  small = q.T @ apply_x(q)
  ritz = jnp.linalg.eigvalsh(0.5 * (small + small.T))
  return jnp.clip(ritz[::-1][:k], 0.0, None)
