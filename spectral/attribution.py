"""Attribution of structured directions to named subspaces: what a singular direction is made of.

For a unit vector ``x`` in R^n and a subspace ``S`` spanned by the columns of a basis ``B`` (n, d), the overlap is the
squared norm of the orthogonal projection, ``|P_S x|^2 = |Q^T x|^2`` with ``Q`` an orthonormal basis of
``span(B)``: 1 when ``x`` lies in ``S``, 0 when orthogonal to it. A uniformly random unit vector has expected overlap
``dim(S) / n`` (the chance level, ``chance_overlap``), so an overlap is only informative against that number.

Names used by the lab (``models.subspaces`` builds the transformer ones):
- ``dc``: the mean activation direction(s) on a matrix's side (the mean LayerNorm input in the residual stream, the
  mean MLP activation in the hidden layer);
- ``positions``: the span of the positional embeddings; ``tokens``: the span of the token embeddings;
- ``teacher``: a planted ground truth, where the data has one;
- ``fourier:k``: the ``k``-th Fourier mode over ``n`` tokens, ``span{cos(2 pi k t / n), sin(2 pi k t / n)}``
  (``fourier_basis``); ``fourier:0`` is the constant vector.

Pure numpy (float64): these are small matrices.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

OTHER = "other"


def _as_matrix(x, name: str) -> np.ndarray:
  arr = np.asarray(x, dtype=np.float64)
  if arr.ndim == 1:
    arr = arr[:, None]
  if arr.ndim != 2 or arr.shape[0] == 0:
    raise ValueError(f"{name}: expected an (n, k) array of column vectors, got shape {np.shape(x)}")
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name}: has NaN or Inf entries")
  return arr


def orthonormal_basis(basis, rtol: float = 1e-8) -> np.ndarray:
  """Orthonormal basis (n, r) of the column span of ``basis`` (n, d) by SVD; ``r`` is its numerical rank
  (singular values above ``rtol`` times the largest), so rank-deficient or repeated columns are handled."""
  b = _as_matrix(basis, "basis")
  if not np.any(b):
    return np.zeros((b.shape[0], 0))
  u, s, _ = np.linalg.svd(b, full_matrices=False)
  return u[:, s > rtol * s[0]]


def chance_overlap(n: int, dim: int) -> float:
  """Expected overlap ``dim / n`` of a uniformly random unit vector in R^n with a ``dim``-dimensional subspace."""
  return float(dim) / float(n)


def subspace_overlaps(vectors, subspaces: Mapping[str, object]) -> dict[str, np.ndarray]:
  """Squared norm of the projection of each unit-normalised column of ``vectors`` onto each named subspace.

  Args:
    vectors: (n, k) column vectors (normalised here; a 1-D vector is one column).
    subspaces: name -> (n, d) basis (any spanning set: orthonormalised here, rank-deficient allowed).

  Returns:
    name -> (k,) overlaps in [0, 1].

  Raises:
    ValueError: a zero vector, a non-finite entry, or a basis whose row count differs from ``n``.
  """
  x = _as_matrix(vectors, "vectors")
  norms = np.linalg.norm(x, axis=0)
  if np.any(norms == 0):
    raise ValueError("vectors: expected non-zero column vectors")
  x = x / norms[None, :]
  out = {}
  for name, basis in subspaces.items():
    b = _as_matrix(basis, f"subspaces[{name!r}]")
    if b.shape[0] != x.shape[0]:
      raise ValueError(f"subspaces[{name!r}]: expected {x.shape[0]} rows (the vectors' dimension), got {b.shape[0]}")
    q = orthonormal_basis(b)
    out[name] = np.clip(np.sum((q.T @ x) ** 2, axis=0), 0.0, 1.0)
  return out


def fourier_basis(n: int, k: int) -> np.ndarray:
  """Orthonormal basis of the ``k``-th Fourier mode over ``n`` tokens ``t = 0..n-1``.

  ``(n, 2)``: ``sqrt(2/n) cos(2 pi k t / n)`` and ``sqrt(2/n) sin(2 pi k t / n)`` for ``0 < k < n/2``; ``(n, 1)``
  for ``k = 0`` (the constant ``1/sqrt(n)``) and, for even ``n``, ``k = n/2`` (the alternating ``(-1)^t/sqrt(n)``).
  """
  if not isinstance(n, (int, np.integer)) or n < 2:
    raise ValueError(f"n: expected an integer >= 2, got {n!r}")
  if not isinstance(k, (int, np.integer)) or not 0 <= k <= n // 2:
    raise ValueError(f"k: expected an integer in [0, n // 2 = {n // 2}], got {k!r}")
  t = np.arange(n)
  if k == 0:
    return np.full((n, 1), 1.0 / np.sqrt(n))
  if 2 * k == n:
    return (np.cos(np.pi * t) / np.sqrt(n))[:, None]
  phase = 2.0 * np.pi * k * t / n
  return np.sqrt(2.0 / n) * np.stack([np.cos(phase), np.sin(phase)], axis=1)


def fourier_subspaces(n: int, modes=None) -> dict[str, np.ndarray]:
  """``{"fourier:k": fourier_basis(n, k)}`` for ``k`` in ``modes`` (default every ``k`` in ``0..n//2``)."""
  modes = range(n // 2 + 1) if modes is None else modes
  return {f"fourier:{k}": fourier_basis(n, int(k)) for k in modes}


def attribute(vectors, subspaces: Mapping[str, object], threshold: float = 0.5) -> list[tuple[str, float]]:
  """Best-matching named subspace of each column of ``vectors``: ``(name, overlap)``, or ``("other", overlap)``.

  Subspaces are ranked by their overlap in excess of chance, ``(overlap - c) / (1 - c)`` with ``c = dim / n``
  (``chance_overlap``): 0 for a random direction, 1 inside the subspace. The best one names the vector when that
  excess reaches ``threshold``; ``overlap`` is always the plain squared projection of the best-ranked subspace. A
  subspace spanning all of R^n (e.g. a token span when the vocabulary is as large as the width) says nothing and
  is skipped. Ties go to the smaller subspace (the more specific name).
  """
  if not 0.0 < threshold <= 1.0:
    raise ValueError(f"threshold: expected a value in (0, 1], got {threshold}")
  x = _as_matrix(vectors, "vectors")
  n = x.shape[0]
  dims = {name: orthonormal_basis(b).shape[1] for name, b in subspaces.items()}
  eligible = {name: b for name, b in subspaces.items() if 0 < dims[name] < n}
  if not eligible:
    return [(OTHER, 0.0)] * x.shape[1]
  overlaps = subspace_overlaps(x, eligible)
  names = sorted(eligible, key=lambda name: dims[name])
  excess = {name: (overlaps[name] - dims[name] / n) / (1.0 - dims[name] / n) for name in names}
  out = []
  for j in range(x.shape[1]):
    best = max(names, key=lambda name: excess[name][j])  # max keeps the first (smallest) of equal scores
    value = float(overlaps[best][j])
    out.append((best, value) if excess[best][j] >= threshold else (OTHER, value))
  return out


def split_by_side(subspaces: Mapping[str, object], shape) -> tuple[dict, dict]:
  """Split one mapping of named bases into (left, right) for a matrix of ``shape`` (a, b) by row count: a basis of
  ``a`` rows goes left, of ``b`` rows right (both when ``a == b``), others nowhere."""
  a, b = int(shape[0]), int(shape[1])
  left = {name: basis for name, basis in subspaces.items() if np.shape(basis)[0] == a}
  right = {name: basis for name, basis in subspaces.items() if np.shape(basis)[0] == b}
  return left, right


def attribute_components(u, v, left: Mapping[str, object], right: Mapping[str, object],
                         threshold: float = 0.5) -> list[dict]:
  """Attribute singular triplets: each column of ``u`` (a, k) to the ``left`` subspaces (bases of ``a`` rows) and
  of ``v`` (b, k) to the ``right`` ones.

  Returns one dict per component: ``left`` and ``right`` as ``(name, overlap)`` (``("other", best)`` below
  ``threshold``; ``None`` when that side has no subspaces), and ``best``: ``(side, name, overlap)`` of the larger
  named match, or ``None`` if neither side has one.
  """
  u, v = _as_matrix(u, "u"), _as_matrix(v, "v")
  if u.shape[1] != v.shape[1]:
    raise ValueError(f"u, v: expected the same number of components, got {u.shape[1]} and {v.shape[1]}")
  sides = {side: attribute(vecs, subs, threshold) if subs else [None] * vecs.shape[1]
           for side, vecs, subs in (("left", u, left), ("right", v, right))}
  out = []
  for j in range(u.shape[1]):
    lj, rj = sides["left"][j], sides["right"][j]
    named = [(side, m) for side, m in (("left", lj), ("right", rj)) if m is not None and m[0] != OTHER]
    best = max(named, key=lambda sm: sm[1][1]) if named else None
    out.append({"left": lj, "right": rj, "best": None if best is None else (best[0], best[1][0], best[1][1])})
  return out


def fourier_power(x, n: int | None = None) -> np.ndarray:
  """Power of the rows of ``x`` (n, d) in each Fourier mode over its ``n`` rows (tokens ``t = 0..n-1``).

  ``P_k = ||Q_k^T x||_F^2`` with ``Q_k = fourier_basis(n, k)``, ``k = 0..n//2``: for ``0 < k < n/2`` it is
  ``(|X_k|^2 + |X_(n-k)|^2) / n`` summed over the columns, ``X_k = sum_t x_t exp(-2 pi i k t / n)`` the DFT over
  tokens. The modes are orthonormal and complete, so ``sum_k P_k = ||x||_F^2`` (Parseval). Returns (n//2 + 1,).
  """
  x = _as_matrix(x, "x")
  if n is not None and n != x.shape[0]:
    raise ValueError(f"x: expected {n} rows (one per token), got {x.shape[0]}")
  n = x.shape[0]
  if n < 2:
    raise ValueError(f"x: expected at least 2 rows (tokens), got {n}")
  return np.asarray([float(np.sum((fourier_basis(n, k).T @ x) ** 2)) for k in range(n // 2 + 1)])


def key_frequencies_by_mass(x, mass: float = 0.9) -> list[int]:
  """The smallest set of non-constant Fourier modes ``k >= 1`` holding at least ``mass`` of the non-DC power of
  ``x`` (n, d) (``fourier_power``), largest first; sorted ascending. A noise-free rule: with noise spread over all
  modes it counts noise modes too (``key_frequencies`` tests each mode against a null instead)."""
  if not 0.0 < mass <= 1.0:
    raise ValueError(f"mass: expected a fraction in (0, 1], got {mass!r}")
  p = fourier_power(x)[1:]
  if not np.any(p > 0):
    return []
  order = np.argsort(-p, kind="stable")
  count = int(np.searchsorted(np.cumsum(p[order]) / p.sum(), mass - 1e-12) + 1)
  return sorted(int(k) + 1 for k in order[:count])


def key_frequencies(x, *, level: float = 0.01, draws: int = 199, seed: int = 0) -> list[int]:
  """Fourier modes ``k >= 1`` of the rows of ``x`` (n, d) whose power is above the noise floor of random sign flips.

  Sequential and deflated like ``spectral.structure`` (Hong, Sheng & Dobriban 2020, arXiv:2012.02985; Dobriban &
  Owen 2019, arXiv:1710.00479). With the set ``A`` accepted so far (the constant mode ``k = 0`` is always in it:
  never tested), ``R = P_A^perp x`` is ``x`` projected off the modes of ``A``; the statistic is the largest power of
  ``R`` in a mode outside ``A``, ``T = max_k P_k(R) / dim_k``; each null draw is ``P_A^perp (R o S)`` (``S`` iid
  +-1), rescaled to ``||R||_F``, with the same statistic. If the entries of the noise are independent and symmetric,
  a flip spreads the energy evenly over the modes, so a mode stands out only when its rows are correlated the way a
  Fourier feature is. The mode of ``T`` is accepted when ``T`` exceeds the ``1 - level`` quantile of the draws; the
  test stops at the first mode that does not. Dividing by ``dim_k`` (2, or 1 for ``k = n/2``) compares modes of
  different sizes per dimension.

  Returns the accepted modes, ascending (``K = len``). Randomness: ``numpy.random.default_rng([seed, round])``.
  """
  x = _as_matrix(x, "x")
  if not 0.0 < level < 1.0:
    raise ValueError(f"level: expected a value in (0, 1), got {level!r}")
  if not isinstance(draws, (int, np.integer)) or draws < int(np.ceil(1.0 / level)) - 1:
    raise ValueError(f"draws: expected an integer >= 1/level - 1 = {int(np.ceil(1.0 / level)) - 1}, got {draws!r}")
  n = x.shape[0]
  dims = [fourier_basis(n, k).shape[1] for k in range(n // 2 + 1)]
  basis = np.concatenate([fourier_basis(n, k) for k in range(n // 2 + 1)], axis=1)  # (n, n), orthonormal
  mode_of = np.repeat(np.arange(len(dims)), dims)  # column -> mode
  to_modes = (mode_of[:, None] == np.arange(len(dims))[None, :]) / np.asarray(dims, np.float64)[None, :]
  accepted: list[int] = []
  while len(accepted) < len(dims) - 1:
    keep = ~np.isin(mode_of, [0, *accepted])  # columns of the modes still tested
    r = basis[:, keep] @ (basis[:, keep].T @ x)  # P_A^perp x
    norm = np.linalg.norm(r)
    if norm == 0:
      break
    rng = np.random.default_rng([seed, len(accepted)])
    flips = np.concatenate([r[None], r[None] * rng.choice([-1.0, 1.0], size=(draws, *r.shape))])
    coef = np.einsum("nc,bnd->bcd", basis, flips) * keep[None, :, None]  # projected off A, in mode coordinates
    energy = np.sum(coef**2, axis=(1, 2))
    scores = (np.sum(coef**2, axis=2) * (norm**2 / np.maximum(energy, 1e-300))[:, None]) @ to_modes
    scores[:, [0, *accepted]] = -np.inf
    t, k = float(scores[0].max()), int(scores[0].argmax())
    if t <= np.quantile(scores[1:].max(axis=1), 1.0 - level):
      break
    accepted.append(k)
  return sorted(accepted)
