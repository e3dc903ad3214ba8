"""Lanczos with full reorthogonalisation, Ritz pairs, stochastic Lanczos quadrature and trace estimators.

Everything here acts on a symmetric linear operator ``A`` of size ``n x n`` given only as a matvec on flat vectors,
``matvec: (n,) -> (n,)``. Nothing of size ``n^2`` is formed; memory is ``O(num_steps * n)`` for the Krylov basis.
Pytrees (model parameters) are flattened with ``jax.flatten_util.ravel_pytree`` by the callers (``hessian.py``,
``jacobian.py``).

Conventions:
- ``lanczos`` runs a fixed number ``m`` of steps (static), so it jit-compiles to one ``fori_loop``. It returns the
  tridiagonal ``T = tridiag(betas, alphas, betas)`` with ``alphas (m,)`` and ``betas (m - 1,)`` and, optionally, the
  orthonormal basis ``Q`` as rows ``(m, n)`` with ``Q A Q^T = T`` (up to round-off).
- Full reorthogonalisation: every new Lanczos vector is projected off all previous ones (classical Gram-Schmidt,
  applied twice, "twice is enough"), so Ritz values do not duplicate in finite precision.
- Breakdown (``beta_j ~ 0``: the Krylov space of the start vector is invariant) is handled by setting ``beta_j = 0``
  and continuing with a fresh vector orthogonal to the basis, so ``T`` stays the restriction of ``A`` to an
  orthonormal basis; its extra blocks carry zero quadrature weight for the start vector.
- Randomness is explicit (``key``); every function is vmappable over keys and over operators built from vmapped
  parameters (ensemble members).

Stochastic Lanczos quadrature (SLQ; Golub & Meurant 2010; Ubaru, Chen, Saad 2017; for neural-network Hessians
Ghorbani, Krishnan, Xiao 2019, arXiv:1901.10159): for a probe ``v`` with ``E[v v^T] = I`` the weighted spectral
measure ``psi_v = sum_i (u_i . v)^2 / |v|^2 delta_{lambda_i}`` has expectation ``(1/n) sum_i delta_{lambda_i}``, the
empirical spectral measure. ``m`` Lanczos steps from ``v / |v|`` give its ``m``-point Gauss quadrature: nodes are the
eigenvalues ``theta_j`` of ``T`` and weights ``(e_1 . s_j)^2`` (first components of its eigenvectors), exact for
polynomials of degree ``<= 2m - 1``. SLQ averages these over ``num_probes`` probes.

Error (Chen, Trogdon, Ubaru 2021, arXiv:2105.06595): in Wasserstein-1, the SLQ measure is within
``t |lambda_max - lambda_min|`` of the true one with probability ``>= 1 - eta`` after ``ceil(12/t + 1/2)`` steps on
``ceil(4 t^-2 ln(2n/eta) / (n + 2))`` unit-sphere probes: a ``width / m`` quadrature term plus a
``width / sqrt(n * num_probes)`` sampling term. The quadrature term alone obeys the sharper
``W1(psi_v, Gauss_m) <= pi * width / (4 m)`` (Jackson's theorem for 1-Lipschitz functions at degree ``2m - 1``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from spectral import tpu_safe

Matvec = Callable[[jax.Array], jax.Array]


class LanczosResult(NamedTuple):
  """Tridiagonal ``T`` of ``m`` Lanczos steps: ``alphas (m,)``, ``betas (m - 1,)``; ``basis (m, n)`` or None."""
  alphas: jax.Array
  betas: jax.Array
  basis: jax.Array | None


class EigenResult(NamedTuple):
  """``k`` Ritz pairs: ``eigenvalues (k,)``, ``eigenvectors (k, n)`` (rows, unit norm) and the residual norms
  ``|A y - theta y|`` (k,): each Ritz value is within its residual norm of an eigenvalue of ``A``."""
  eigenvalues: jax.Array
  eigenvectors: jax.Array
  residual_norms: jax.Array


class QuadratureResult(NamedTuple):
  """SLQ Gauss quadrature per probe: ``nodes (p, m)`` (Ritz values) and ``weights (p, m)`` (each row sums to 1)."""
  nodes: jax.Array
  weights: jax.Array


class TraceEstimate(NamedTuple):
  """A stochastic trace estimate and its standard error (sample standard deviation over the random part / sqrt)."""
  estimate: jax.Array
  stderr: jax.Array


def default_float_dtype():
  """float64 when ``jax_enable_x64`` is on, else float32; always float32 under the TPU-safe switch
  (``spectral.tpu_safe``)."""
  return jnp.dtype(jnp.float32) if tpu_safe.tpu_safe() else jnp.result_type(float)


def check_num_steps(num_steps: int, dim: int, name: str = "num_steps") -> int:
  """Raise unless ``1 <= num_steps <= dim`` (a Krylov space of ``R^dim`` has at most ``dim`` dimensions)."""
  if not isinstance(num_steps, (int, np.integer)) or isinstance(num_steps, bool):
    raise TypeError(f"{name}: expected a static Python int, got {type(num_steps).__name__}")
  if num_steps < 1:
    raise ValueError(f"{name}: expected >= 1, got {num_steps}")
  if num_steps > dim:
    raise ValueError(f"{name}={num_steps} is larger than the operator dimension {dim}")
  return int(num_steps)


def check_k(k: int, dim: int, name: str = "k") -> int:
  """Raise unless ``1 <= k <= dim``."""
  return check_num_steps(k, dim, name)


def _check_matvec_shape(matvec: Matvec, dim: int, dtype) -> None:
  out = jax.eval_shape(matvec, jax.ShapeDtypeStruct((dim,), dtype))
  if not isinstance(out, jax.ShapeDtypeStruct):
    raise TypeError(f"matvec: expected it to return one array of shape ({dim},), got {type(out).__name__}")
  if out.shape != (dim,):
    raise ValueError(f"matvec: expected output shape ({dim},) for an input of shape ({dim},), got {out.shape}")


def _project_out(basis, w):
  """``w - Q^T (Q w)`` twice (rows of ``Q`` orthonormal or zero)."""
  hi = jax.lax.Precision.HIGHEST
  w = w - jnp.matmul(jnp.matmul(basis, w, precision=hi), basis, precision=hi)
  return w - jnp.matmul(jnp.matmul(basis, w, precision=hi), basis, precision=hi)


def lanczos(matvec: Matvec, v0: jax.Array, num_steps: int, *, return_basis: bool = False) -> LanczosResult:
  """``num_steps`` steps of Lanczos with full reorthogonalisation from ``v0`` (normalised internally).

  Args:
    matvec: ``v (n,) -> A v (n,)`` for a symmetric ``A``; traced once inside a ``fori_loop``.
    v0: (n,) nonzero start vector (its dtype sets the working precision).
    num_steps: static number of steps ``m``, ``1 <= m <= n``.
    return_basis: also return the ``(m, n)`` orthonormal basis (needed for Ritz vectors).

  Returns:
    ``LanczosResult(alphas (m,), betas (m - 1,), basis (m, n) | None)``.
  """
  v0 = jnp.asarray(v0)
  if v0.ndim != 1:
    raise ValueError(f"v0: expected a flat vector of shape (n,), got shape {v0.shape}")
  if not jnp.issubdtype(v0.dtype, jnp.floating):
    raise ValueError(f"v0: expected a floating dtype, got {v0.dtype}")
  n = v0.shape[0]
  m = check_num_steps(num_steps, n)
  _check_matvec_shape(matvec, n, v0.dtype)
  dtype = v0.dtype
  eps = jnp.finfo(dtype).eps
  q0 = v0 / jnp.linalg.norm(v0)
  basis = jnp.zeros((m + 1, n), dtype).at[0].set(q0)
  alphas = jnp.zeros((m,), dtype)
  betas = jnp.zeros((m,), dtype)
  fresh_key = jax.random.key(0x1a5c05)

  def step(j, carry):
    basis, alphas, betas, scale = carry
    q = basis[j]
    w = matvec(q).astype(dtype)
    alpha = jnp.vdot(q, w)
    w = _project_out(basis, w)
    beta = jnp.linalg.norm(w)
    scale = jnp.maximum(scale, jnp.maximum(jnp.abs(alpha), beta))
    # Breakdown: the Krylov space is invariant. Continue with a fresh direction orthogonal to the basis, beta = 0.
    broke = beta <= 10.0 * eps * jnp.sqrt(n) * scale
    # lax.cond: the fresh draw and its projection cost as much as the reorthogonalisation, so only pay on breakdown
    # (under vmap the cond becomes a select and both branches run).
    def fresh_direction(_):
      fresh = _project_out(basis, jax.random.normal(jax.random.fold_in(fresh_key, j), (n,), dtype))
      return fresh / jnp.linalg.norm(fresh)
    q_next = jax.lax.cond(broke, fresh_direction, lambda _: w / jnp.where(broke, 1.0, beta), None)
    beta = jnp.where(broke, 0.0, beta)
    return basis.at[j + 1].set(q_next), alphas.at[j].set(alpha), betas.at[j].set(beta), scale

  init = (basis, alphas, betas, jnp.zeros((), dtype))
  basis, alphas, betas, _ = jax.lax.fori_loop(0, m, step, init)
  return LanczosResult(alphas, betas[: m - 1], basis[:m] if return_basis else None)


def tridiagonal_matrix(alphas: jax.Array, betas: jax.Array) -> jax.Array:
  """Dense ``(m, m)`` symmetric tridiagonal matrix with diagonal ``alphas`` and off-diagonals ``betas``."""
  return jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)


def tridiagonal_eigh(alphas: jax.Array, betas: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Eigen-decomposition of ``T``: ascending eigenvalues ``(m,)`` and eigenvectors as columns ``(m, m)``."""
  return jnp.linalg.eigh(tridiagonal_matrix(alphas, betas))


def random_probes(key: jax.Array, num: int, dim: int, kind: str = "rademacher", dtype=None) -> jax.Array:
  """``(num, dim)`` probe vectors with ``E[v v^T] = I``: Rademacher (+-1) or standard Gaussian."""
  dtype = default_float_dtype() if dtype is None else dtype
  if kind == "rademacher":
    return jax.random.rademacher(key, (num, dim), dtype=dtype)
  if kind == "gaussian":
    return jax.random.normal(key, (num, dim), dtype=dtype)
  raise ValueError(f"probe kind: expected 'rademacher' or 'gaussian', got {kind!r}")


def top_eigenpairs(
    matvec: Matvec, dim: int, k: int, key: jax.Array, *, num_steps: int | None = None, which: str = "largest",
    dtype=None,
) -> EigenResult:
  """``k`` extreme eigenpairs of ``A`` from the Ritz pairs of ``num_steps`` Lanczos steps from a Gaussian start.

  Args:
    matvec: ``(dim,) -> (dim,)`` symmetric operator.
    dim: operator dimension ``n``.
    k: static number of pairs, ``1 <= k <= num_steps``.
    key: PRNG key for the start vector.
    num_steps: Lanczos steps ``m`` (default ``min(dim, max(4 k, 40))``). Extreme, well-separated eigenvalues converge
      geometrically in ``m``; check ``residual_norms``.
    which: ``"largest"`` (algebraic, descending), ``"smallest"`` (ascending) or ``"magnitude"`` (largest ``|theta|``,
      ordered by decreasing magnitude).
    dtype: working dtype (default float32, float64 under x64).

  Returns:
    ``EigenResult(eigenvalues (k,), eigenvectors (k, dim), residual_norms (k,))``.
  """
  dtype = default_float_dtype() if dtype is None else dtype
  k = check_k(k, dim)
  m = min(dim, max(4 * k, 40)) if num_steps is None else check_num_steps(num_steps, dim)
  if k > m:
    raise ValueError(f"k={k} is larger than num_steps={m}: Lanczos yields at most num_steps Ritz pairs")
  v0 = jax.random.normal(key, (dim,), dtype)
  res = lanczos(matvec, v0, m, return_basis=True)
  theta, s = tridiagonal_eigh(res.alphas, res.betas)
  if which == "largest":
    order = jnp.arange(m - 1, m - 1 - k, -1)
  elif which == "smallest":
    order = jnp.arange(k)
  elif which == "magnitude":
    order = jnp.argsort(-jnp.abs(theta))[:k]
  else:
    raise ValueError(f"which: expected 'largest', 'smallest' or 'magnitude', got {which!r}")
  # Residual |A y_j - theta_j y_j| computed directly (k extra products; robust after a breakdown, unlike the
  # classical |beta_m s_{m,j}| shortcut).
  vectors = jnp.matmul(s[:, order].T, res.basis, precision=jax.lax.Precision.HIGHEST)
  vectors = vectors / jnp.linalg.norm(vectors, axis=1, keepdims=True)
  values = theta[order]
  residuals = jnp.linalg.norm(jax.lax.map(matvec, vectors) - values[:, None] * vectors, axis=1)
  return EigenResult(values, vectors, residuals)


def slq(
    matvec: Matvec, dim: int, key: jax.Array, *, num_steps: int, num_probes: int, probe: str = "rademacher",
    dtype=None,
) -> QuadratureResult:
  """Stochastic Lanczos quadrature nodes and weights (Ghorbani et al. 2019, Alg. 1; Chen et al. 2021).

  Each probe ``v_p`` (Rademacher or Gaussian, key ``fold_in(key, p)``) gives ``m = num_steps`` Lanczos steps; the
  eigen-decomposition ``T = S diag(theta) S^T`` gives nodes ``theta (m,)`` and weights ``S[0, :]^2`` summing to 1.
  The SLQ measure ``(1/p) sum_p sum_j w_pj delta_{theta_pj}`` estimates the empirical spectral measure
  ``(1/n) sum_i delta_{lambda_i}``. Probes run one after another (``lax.map``), so memory is one Krylov basis.

  Returns:
    ``QuadratureResult(nodes (num_probes, m), weights (num_probes, m))``.
  """
  dtype = default_float_dtype() if dtype is None else dtype
  m = check_num_steps(num_steps, dim)
  if not isinstance(num_probes, (int, np.integer)) or num_probes < 1:
    raise ValueError(f"num_probes: expected a static int >= 1, got {num_probes!r}")
  random_probes(key, 1, 1, probe)  # validates the probe kind eagerly

  def one(p):
    v = random_probes(jax.random.fold_in(key, p), 1, dim, probe, dtype)[0]
    res = lanczos(matvec, v, m)
    theta, s = tridiagonal_eigh(res.alphas, res.betas)
    return theta, s[0, :] ** 2

  nodes, weights = jax.lax.map(one, jnp.arange(num_probes))
  return QuadratureResult(nodes, weights)


def slq_density(quad: QuadratureResult, grid: jax.Array, width: float) -> jax.Array:
  """Smoothed SLQ density on ``grid (G,)``: ``(1/p) sum_{p,j} w_pj N(x; theta_pj, width^2)``.

  The Gaussian kernel of standard deviation ``width`` turns the discrete quadrature measure into a density that
  integrates to 1 over the real line (check the grid covers the spectrum plus a few ``width``). Smoothing moves the
  measure by ``width * sqrt(2 / pi)`` in Wasserstein-1 at most; pick ``width`` about the spectral width divided by
  ``num_steps`` (the quadrature resolution) or larger.
  """
  grid = jnp.asarray(grid)
  if grid.ndim != 1:
    raise ValueError(f"grid: expected shape (G,), got {grid.shape}")
  width = jnp.asarray(width, grid.dtype)
  z = (grid[:, None, None] - quad.nodes[None, :, :]) / width
  kernel = jnp.exp(-0.5 * z * z) / (width * jnp.sqrt(2.0 * jnp.pi))
  return jnp.sum(kernel * quad.weights[None, :, :], axis=(1, 2)) / quad.nodes.shape[0]


def slq_spectral_sum(quad: QuadratureResult, fn: Callable[[jax.Array], jax.Array], dim: int) -> jax.Array:
  """``tr f(A) ~ n (1/p) sum_{p,j} w_pj f(theta_pj)`` (e.g. ``fn = lambda x: x`` for the trace)."""
  return dim * jnp.mean(jnp.sum(quad.weights * fn(quad.nodes), axis=1))


def hutchinson_trace(
    matvec: Matvec, dim: int, key: jax.Array, *, num_probes: int, probe: str = "rademacher", dtype=None,
) -> TraceEstimate:
  """Girard-Hutchinson estimate ``(1/p) sum_p v_p^T A v_p`` of ``tr A`` with standard error ``sd / sqrt(p)``.

  Unbiased for ``E[v v^T] = I``. With Rademacher probes ``Var(v^T A v) = 2 (|A|_F^2 - sum_i A_ii^2)``; with Gaussian
  ``2 |A|_F^2``. The standard error uses the sample standard deviation (``ddof = 1``), so ``num_probes >= 2``.
  """
  dtype = default_float_dtype() if dtype is None else dtype
  if not isinstance(num_probes, (int, np.integer)) or num_probes < 2:
    raise ValueError(f"num_probes: expected a static int >= 2 (for a standard error), got {num_probes!r}")
  _check_matvec_shape(matvec, dim, dtype)
  vs = random_probes(key, num_probes, dim, probe, dtype)
  samples = jnp.sum(vs * jax.lax.map(matvec, vs), axis=1)
  return TraceEstimate(jnp.mean(samples), jnp.std(samples, ddof=1) / jnp.sqrt(num_probes))


def hutchpp_trace(
    matvec: Matvec, dim: int, key: jax.Array, *, num_matvecs: int, probe: str = "rademacher", dtype=None,
) -> TraceEstimate:
  """Hutch++ (Meyer, Musco, Musco, Woodruff 2021, arXiv:2010.09649, Alg. 1) with ``num_matvecs = 3 s`` products.

  ``S (n, s)`` random, ``Q = qr(A S)``; then ``tr A = tr(Q^T A Q) + tr((I - QQ^T) A (I - QQ^T))``, the first term
  exactly (``s`` products) and the second by Hutchinson with ``s`` probes ``G`` projected off ``Q``. The standard
  error is that of the Hutchinson part (the first term is deterministic given ``Q``). Needs ``s >= 2`` and
  ``s <= n``.
  """
  dtype = default_float_dtype() if dtype is None else dtype
  s = int(num_matvecs) // 3
  if s < 2:
    raise ValueError(f"num_matvecs: expected >= 6 (three groups of at least 2), got {num_matvecs}")
  if s > dim:
    raise ValueError(f"num_matvecs // 3 = {s} is larger than the operator dimension {dim}")
  _check_matvec_shape(matvec, dim, dtype)
  k_sketch, k_probe = jax.random.split(key)
  sketch = random_probes(k_sketch, s, dim, probe, dtype)
  q, _ = jnp.linalg.qr(jax.lax.map(matvec, sketch).T)  # (n, s) orthonormal columns
  hi = jax.lax.Precision.HIGHEST
  low_rank = jnp.sum(q.T * jax.lax.map(matvec, q.T))
  g = random_probes(k_probe, s, dim, probe, dtype)
  g = g - jnp.matmul(jnp.matmul(g, q, precision=hi), q.T, precision=hi)
  samples = jnp.sum(g * jax.lax.map(matvec, g), axis=1)
  return TraceEstimate(low_rank + jnp.mean(samples), jnp.std(samples, ddof=1) / jnp.sqrt(s))


def wasserstein1(x_a, w_a, x_b, w_b) -> float:
  """Wasserstein-1 distance ``int |F_a - F_b| dx`` between two discrete measures on the line (numpy, float64).

  ``x_*`` are atoms and ``w_*`` non-negative weights of any shape (flattened), each set normalised to total mass 1.
  """
  x_a, w_a = np.ravel(np.asarray(x_a, np.float64)), np.ravel(np.asarray(w_a, np.float64))
  x_b, w_b = np.ravel(np.asarray(x_b, np.float64)), np.ravel(np.asarray(w_b, np.float64))
  if x_a.shape != w_a.shape or x_b.shape != w_b.shape:
    raise ValueError("wasserstein1: atoms and weights must have the same size")
  xs = np.concatenate([x_a, x_b])
  signed = np.concatenate([w_a / w_a.sum(), -w_b / w_b.sum()])
  order = np.argsort(xs, kind="stable")
  xs, cdf_diff = xs[order], np.cumsum(signed[order])
  return float(np.sum(np.abs(cdf_diff[:-1]) * np.diff(xs)))
