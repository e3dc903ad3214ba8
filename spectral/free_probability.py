"""Free-probability predictions for Jacobian spectra at initialisation (numpy, float64).

1. Deep linear Gaussian networks: the Fuss-Catalan law.
   Convention: ``J = W_L ... W_1`` with ``L`` square ``N x N`` matrices of iid entries of mean 0 and variance ``1/N``
   (variance ``1/fan_in``). As ``N -> inf`` the squared singular values of ``J`` (eigenvalues of ``J J^T``) follow the
   Fuss-Catalan distribution with parameter ``L``: moments ``m_k = binom((L + 1) k, k) / (L k + 1)`` (``L = 1`` is
   Marchenko-Pastur at ``q = 1``: 1, 2, 5, 14), support ``[0, (L + 1)^(L + 1) / L^L]``. Its density has the explicit
   parametrisation (Haagerup & Moller 2013, arXiv:1211.4457; Neuschel 2014, arXiv:1311.0365), for
   ``0 < u < pi / (L + 1)``:

       x(u) = sin((L + 1) u)^(L + 1) / (sin(u) sin(L u)^L),
       p(x(u)) = sin(u)^2 sin(L u)^(L - 1) / (pi sin((L + 1) u)^L),

   with ``x`` decreasing from the right edge to 0. Orthogonal weights make ``J`` exactly orthogonal (isometry).

2. Mean-field signal propagation (Poole et al. 2016; Schoenholz et al. 2017; Pennington, Schoenholz, Ganguli 2017,
   arXiv:1711.04735, and 2018, arXiv:1802.09979). Convention: ``h_{l+1} = W_{l+1} phi(h_l) + b_{l+1}``, weights of
   variance ``sigma_w^2 / fan_in``, biases of variance ``sigma_b^2``. The pre-activation variance obeys

       q_{l+1} = sigma_w^2 E[phi(sqrt(q_l) z)^2] + sigma_b^2,   z ~ N(0, 1),

   with fixed point ``q*``; ``chi = sigma_w^2 E[phi'(sqrt(q*) z)^2]``. With inputs at ``q*`` the input-output
   Jacobian ``J = D_L W_L ... D_1 W_1`` has mean squared singular value ``m_1 = chi^L`` and normalised variance

       m_2 / m_1^2 - 1 = L (mu_2 / mu_1^2 - 1 - s_1),   mu_k = E[phi'(sqrt(q*) z)^(2k)],

   ``s_1 = -1`` for Gaussian and ``0`` for orthogonal weights (PSG 2017, section on the moments of ``J J^T``; at
   criticality ``chi = 1`` this is the variance ``L (mu_2/mu_1^2 - 1 - s_1)``, docs/THEORY.md#jacobian_spectra).
   Linear Gaussian: ``L``, matching Fuss-Catalan ``m_2 - 1 = L``. Gaussian expectations use Gauss-Hermite quadrature
   with an even number of nodes, exact for ReLU (the nodes are symmetric and avoid 0).
   ReLU and linear networks are degenerate: without bias the variance map is ``q -> chi q``, so at criticality every
   ``q`` is a fixed point (``fixed_point_q`` returns the input's ``q0``) and with ``sigma_b > 0`` there is no finite
   critical point.

3. Products of free matrices: the free multiplicative convolution, sampled. If ``J_l = U_l S_l V_l^T`` with the
   singular-vector frames Haar-distributed and independent across ``l`` (rotation-invariant, hence asymptotically
   free, Voiculescu 1991; the setting of Pennington, Schoenholz & Ganguli 2018, arXiv:1802.09979), the squared
   singular values of ``J = J_{n-1} ... J_0`` follow, as ``D -> inf``, the free multiplicative convolution
   ``mu_{n-1} [x] ... [x] mu_0`` of the laws ``mu_l`` of the squared singular values of ``J_l``. At finite ``D`` the
   same model is sampled exactly: the singular values of ``J`` have the law of those of
   ``S_{n-1} O_{n-1} S_{n-2} ... O_1 S_0`` with ``O_l`` independent Haar orthogonal matrices
   (``free_product_singular_values``), so the finite-size fluctuations of the prediction come with it. With Gaussian
   ``G_l / sqrt(D)`` factors this is the Fuss-Catalan law of item 1.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

Activation = str | tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]

ACTIVATIONS = {
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(np.float64)),
    "linear": (lambda x: x, np.ones_like),
}

def _depth(depth) -> int:
  if not isinstance(depth, (int, np.integer)) or isinstance(depth, bool) or depth < 1:
    raise ValueError(f"depth: expected an int >= 1, got {depth!r}")
  return int(depth)


def fuss_catalan_moment(k: int, depth: int) -> float:
  """``m_k = binom((L + 1) k, k) / (L k + 1)`` for ``L = depth`` (an integer, returned as float; ``m_0 = 1``)."""
  depth = _depth(depth)
  if not isinstance(k, (int, np.integer)) or k < 0:
    raise ValueError(f"k: expected an int >= 0, got {k!r}")
  return float(math.comb((depth + 1) * int(k), int(k)) // (depth * int(k) + 1))


def fuss_catalan_edge(depth: int) -> float:
  """Right edge ``(L + 1)^(L + 1) / L^L`` of the Fuss-Catalan support (4 for ``L = 1``, 6.75 for ``L = 2``)."""
  depth = _depth(depth)
  return (depth + 1) ** (depth + 1) / depth**depth


def fuss_catalan_parametric(u, depth: int) -> tuple[np.ndarray, np.ndarray]:
  """``(x(u), p(x(u)))`` on ``0 < u < pi / (L + 1)`` (Haagerup-Moller / Neuschel parametrisation, module doc)."""
  depth = _depth(depth)
  u = np.asarray(u, np.float64)
  s1, sl, sl1 = np.sin(u), np.sin(depth * u), np.sin((depth + 1) * u)
  x = sl1 ** (depth + 1) / (s1 * sl**depth)
  p = s1**2 * sl ** (depth - 1) / (np.pi * sl1**depth)
  return x, p


def fuss_catalan_pdf(x, depth: int) -> np.ndarray:
  """Fuss-Catalan density at ``x`` (0 outside ``(0, edge)``), by inverting ``x(u)`` with vectorised bisection."""
  depth = _depth(depth)
  x = np.asarray(x, np.float64)
  inside = (x > 0.0) & (x < fuss_catalan_edge(depth))
  lo = np.zeros_like(x)  # x(0+) = edge
  hi = np.full_like(x, np.pi / (depth + 1))  # x -> 0
  for _ in range(200):  # interval pi/(L+1) / 2^200: far below float64 resolution
    mid = 0.5 * (lo + hi)
    xm = fuss_catalan_parametric(mid, depth)[0]
    right = xm > x  # x(u) is decreasing: the root lies above mid
    lo, hi = np.where(right, mid, lo), np.where(right, hi, mid)
  dens = fuss_catalan_parametric(0.5 * (lo + hi), depth)[1]
  return np.where(inside, dens, 0.0)


def _activation(phi: Activation):
  if isinstance(phi, str):
    if phi not in ACTIVATIONS:
      raise ValueError(f"phi: expected one of {sorted(ACTIVATIONS)} or a (phi, dphi) pair, got {phi!r}")
    return ACTIVATIONS[phi]
  if isinstance(phi, tuple) and len(phi) == 2 and all(callable(f) for f in phi):
    return phi
  raise TypeError(f"phi: expected an activation name or a (phi, dphi) pair of callables, got {type(phi).__name__}")


def _gauss_rule(panels: int = 400, nodes: int = 10, z_max: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
  """Composite Gauss-Legendre nodes/weights for ``E[f(z)]``, ``z ~ N(0, 1)``, on ``[-z_max, z_max]``.

  Panels of width ``2 z_max / panels`` with a breakpoint at 0, so kinks at 0 (ReLU) are integrated exactly; narrow
  features such as ``tanh'(sqrt(q) z)`` at large ``q`` (width ``1/sqrt(q)``) stay resolved, which plain
  Gauss-Hermite does not do. The mass beyond ``z_max = 10`` is ``< 2e-23``.
  """
  x, w = np.polynomial.legendre.leggauss(nodes)
  edges = np.linspace(-z_max, z_max, panels + 1)
  half = 0.5 * np.diff(edges)
  mid = 0.5 * (edges[1:] + edges[:-1])
  z = (mid[:, None] + half[:, None] * x[None, :]).ravel()
  weights = (half[:, None] * w[None, :]).ravel() * np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
  return z, weights


_Z, _W = _gauss_rule()


def gaussian_expectation(f: Callable[[np.ndarray], np.ndarray], q: float) -> float:
  """``E[f(sqrt(q) z)]``, ``z ~ N(0, 1)``, by composite Gauss-Legendre quadrature (``_gauss_rule``)."""
  return float(np.sum(_W * f(np.sqrt(max(q, 0.0)) * _Z)))


def _check_sigmas(sigma_w: float, sigma_b: float) -> tuple[float, float]:
  sigma_w, sigma_b = float(sigma_w), float(sigma_b)
  if not (np.isfinite(sigma_w) and sigma_w > 0.0):
    raise ValueError(f"sigma_w: expected a finite positive number, got {sigma_w}")
  if not (np.isfinite(sigma_b) and sigma_b >= 0.0):
    raise ValueError(f"sigma_b: expected a finite non-negative number, got {sigma_b}")
  return sigma_w, sigma_b


def variance_map(q: float, sigma_w: float, sigma_b: float, phi: Activation = "tanh") -> float:
  """One layer of the pre-activation variance recursion ``sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2``."""
  sigma_w, sigma_b = _check_sigmas(sigma_w, sigma_b)
  f, _ = _activation(phi)
  return sigma_w**2 * gaussian_expectation(lambda h: f(h) ** 2, q) + sigma_b**2


def _bisect(g, lo: float, hi: float, iters: int = 200) -> float:
  g_lo = g(lo)
  for _ in range(iters):
    mid = 0.5 * (lo + hi)
    if mid in (lo, hi):
      break
    g_mid = g(mid)
    if (g_mid > 0) == (g_lo > 0):
      lo, g_lo = mid, g_mid
    else:
      hi = mid
  return 0.5 * (lo + hi)


def fixed_point_q(sigma_w: float, sigma_b: float, phi: Activation = "tanh", *, q0: float = 1.0,
                  q_max: float = 1e8) -> float:
  """Fixed point ``q*`` of ``variance_map`` (a root of ``g(q) = variance_map(q) - q`` by bisection).

  - ``sigma_b > 0``: ``g(0) = sigma_b^2 > 0``; the root is bracketed by doubling ``q`` until ``g < 0``. If ``g`` stays
    positive up to ``q_max`` (ReLU or linear with ``chi >= 1``) there is no finite fixed point: ``ValueError``.
  - ``sigma_b = 0``: ``q = 0`` is a fixed point. If the map fixes ``q0`` (ReLU/linear at criticality, where every
    ``q`` is fixed) return ``q0``, the input's variance. If ``g > 0`` just above 0 (``chi(0) > 1``, e.g. tanh with
    ``sigma_w > 1``) return the non-zero root; otherwise return 0 (the signal dies).
  """
  sigma_w, sigma_b = _check_sigmas(sigma_w, sigma_b)
  g = lambda q: variance_map(q, sigma_w, sigma_b, phi) - q
  if sigma_b == 0.0:
    if abs(g(q0)) <= 1e-12 * q0:
      return float(q0)
    lo = 1e-10 * q0
    if g(lo) <= 0.0:
      return 0.0
  else:
    lo = 0.0
  hi = max(q0, 1.0)
  while g(hi) > 0.0:
    hi *= 2.0
    if hi > q_max:
      raise ValueError(f"no finite fixed point q* for phi={phi!r}, sigma_w={sigma_w}, sigma_b={sigma_b}: the "
                       f"pre-activation variance grows without bound (chi >= 1 for a homogeneous activation)")
  return _bisect(g, lo, hi)


def phi_prime_moment(q: float, k: int, phi: Activation = "tanh") -> float:
  """``mu_k = E[phi'(sqrt(q) z)^(2k)]``."""
  _, df = _activation(phi)
  return gaussian_expectation(lambda h: df(h) ** (2 * k), q)


def chi(sigma_w: float, sigma_b: float, phi: Activation = "tanh", *, q: float | None = None) -> float:
  """``chi = sigma_w^2 E[phi'(sqrt(q) z)^2]`` at ``q = q*`` (default) or a given ``q``."""
  sigma_w, sigma_b = _check_sigmas(sigma_w, sigma_b)
  q = fixed_point_q(sigma_w, sigma_b, phi) if q is None else float(q)
  return sigma_w**2 * phi_prime_moment(q, 1, phi)


def jacobian_moments(depth: int, sigma_w: float, sigma_b: float, phi: Activation = "tanh", *,
                     weights: str = "gaussian", q: float | None = None) -> tuple[float, float]:
  """``(m_1, m_2)``: the first two moments of the squared singular values of the depth-``L`` Jacobian.

  ``m_1 = chi^L`` and ``m_2 = m_1^2 (1 + L (mu_2 / mu_1^2 - 1 - s_1))`` with ``s_1 = -1`` (``weights="gaussian"``)
  or ``0`` (``"orthogonal"``), at ``q = q*`` unless given (PSG 2017; module doc). At criticality the variance
  ``m_2 - m_1^2`` is ``L (mu_2 / mu_1^2 - 1 - s_1)``.
  """
  depth = _depth(depth)
  if weights not in ("gaussian", "orthogonal"):
    raise ValueError(f"weights: expected 'gaussian' or 'orthogonal', got {weights!r}")
  s1 = -1.0 if weights == "gaussian" else 0.0
  sigma_w, sigma_b = _check_sigmas(sigma_w, sigma_b)
  q = fixed_point_q(sigma_w, sigma_b, phi) if q is None else float(q)
  mu1, mu2 = phi_prime_moment(q, 1, phi), phi_prime_moment(q, 2, phi)
  if mu1 == 0.0:
    raise ValueError(f"phi' vanishes almost surely at q={q} (dead network): moments undefined")
  m1 = (sigma_w**2 * mu1) ** depth
  return m1, m1**2 * (1.0 + depth * (mu2 / mu1**2 - 1.0 - s1))


def critical_sigma_w(sigma_b: float, phi: Activation = "tanh", *, sigma_w_max: float = 100.0) -> float:
  """``sigma_w`` with ``chi(sigma_w, sigma_b) = 1`` at the fixed point ``q*(sigma_w, sigma_b)`` (order-chaos edge).

  ReLU and linear (homogeneous ``phi``): ``chi = sigma_w^2 E[phi'^2]`` does not depend on ``q``, so the answer is
  ``1 / sqrt(E[phi'(z)^2])`` (``sqrt 2`` and ``1``), and only with ``sigma_b = 0`` (otherwise ``q*`` diverges at
  ``chi = 1``: ``ValueError``). Others: bisection on ``log chi``, bracketed from ``1e-3`` and by doubling from 1 up to ``sigma_w_max``.
  """
  _, sigma_b = _check_sigmas(1.0, sigma_b)
  if phi in ("relu", "linear"):
    if sigma_b > 0.0:
      raise ValueError(f"phi={phi!r} has no critical point with sigma_b={sigma_b} > 0: q* diverges as chi -> 1")
    return 1.0 / math.sqrt(phi_prime_moment(1.0, 1, phi))
  g = lambda sw: math.log(chi(sw, sigma_b, phi))
  lo, hi = 1e-3, 1.0
  while g(hi) <= 0.0:
    hi *= 2.0
    if hi > sigma_w_max:
      raise ValueError(f"chi stays below 1 for sigma_w up to {sigma_w_max} (phi={phi!r}, sigma_b={sigma_b})")
  if g(lo) >= 0.0:
    raise ValueError(f"chi >= 1 already at sigma_w={lo} (phi={phi!r}, sigma_b={sigma_b}): no order-chaos transition")
  return _bisect(g, lo, hi, iters=80)


def haar_orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
  """One ``n x n`` Haar-distributed orthogonal matrix: the Q of a Gaussian matrix's QR with the signs of R's diagonal
  moved into Q (Mezzadri 2007, arXiv:math-ph/0609050), float64."""
  q, r = np.linalg.qr(rng.standard_normal((n, n)))
  return q * np.sign(np.diag(r))[None, :]


def free_product_singular_values(singular_values, *, draws: int, seed: int = 0, chunk: int = 32) -> np.ndarray:
  """Samples of the singular values of a product of rotation-invariant factors with given singular values (item 3).

  Args:
    singular_values: ``(n_factors, D)``: the singular values of ``J_0, ..., J_{n-1}`` (factor 0 acts first).
    draws: number of independent products ``S_{n-1} O_{n-1} ... O_1 S_0`` (``O_l`` Haar orthogonal).
    seed: numpy seed of the Haar draws (same seed, same samples).
    chunk: products computed together (stacked QR, matmul and SVD); the Gaussian stream is drawn in the same order
      as one product at a time, so the samples do not depend on ``chunk``.

  Returns:
    ``(draws, D)`` singular values of each product, descending, float64.

  The many small (D x D) factorisations run with BLAS limited to one thread: a multi-threaded OpenBLAS spends far
  more time synchronising than computing at these sizes, and on a loaded machine it was measured 19x slower in wall
  time (D = 128, 5 factors, 139 draws: 84 s against 4.5 s, both one product at a time).
  """
  from threadpoolctl import threadpool_limits
  s = np.asarray(singular_values, np.float64)
  if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 1:
    raise ValueError(f"singular_values: expected a non-empty (n_factors, D) array, got shape {s.shape}")
  if not np.all(np.isfinite(s)) or np.any(s < 0):
    raise ValueError("singular_values: expected finite, non-negative values")
  if draws < 1:
    raise ValueError(f"draws: expected >= 1, got {draws}")
  if chunk < 1:
    raise ValueError(f"chunk: expected >= 1, got {chunk}")
  rng = np.random.default_rng(seed)
  n_factors, d = s.shape
  out = np.empty((draws, d))
  with threadpool_limits(limits=1, user_api="blas"):
    for start in range(0, draws, chunk):
      c = min(chunk, draws - start)
      # (c, n_factors - 1, d, d): product-major, as c x (n_factors - 1) successive draws of one (d, d) Gaussian.
      q, r = np.linalg.qr(rng.standard_normal((c, n_factors - 1, d, d)))
      q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]  # Haar (Mezzadri 2007)
      prod = np.broadcast_to(np.diag(s[0]), (c, d, d))
      for l in range(1, n_factors):
        prod = s[l][:, None] * (q[:, l - 1] @ prod)
      out[start:start + c] = np.linalg.svd(prod, compute_uv=False)
  return out
