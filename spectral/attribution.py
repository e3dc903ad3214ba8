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
  """Best-matching named subspace of each column of ``vectors``: ``(name, overlap)``, or ``("other", best)`` when
  no overlap reaches ``threshold``.

  Ties go to the smaller subspace (the more specific name). Compare ``overlap`` with ``chance_overlap`` of the
  chosen subspace: a large subspace (e.g. ``tokens``) gives a large overlap to any vector.
  """
  if not 0.0 < threshold <= 1.0:
    raise ValueError(f"threshold: expected a value in (0, 1], got {threshold}")
  x = _as_matrix(vectors, "vectors")
  if not subspaces:
    return [(OTHER, 0.0)] * x.shape[1]
  overlaps = subspace_overlaps(x, subspaces)
  dims = {name: orthonormal_basis(b).shape[1] for name, b in subspaces.items()}
  names = sorted(overlaps, key=lambda name: dims[name])
  out = []
  for j in range(x.shape[1]):
    best = max(names, key=lambda name: overlaps[name][j])  # max keeps the first (smallest) of equal overlaps
    value = float(overlaps[best][j])
    out.append((best, value) if value >= threshold else (OTHER, value))
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
