"""Uniformly random permutation of an array's entries, cache-friendly: the entry-shuffled baseline of big matrices.

Fisher-Yates on ``n`` entries touches memory at random, one cache miss per entry: on a 4096 x 11008 float32 matrix
numpy's ``Generator.permutation`` costs more CPU time than the matrix's Gram product. ``permute`` draws the same
distribution (every one of the ``n!`` orders equally likely) while touching memory in cache-sized chunks, the
two-pass distributed shuffle (Sanders 1998, "Random permutations on distributed, external and hierarchical memory",
Inf. Process. Lett. 67:305):

1. Cut the positions into ``C`` chunks of at most ``chunk`` entries (input chunk ``c`` and output chunk ``d`` have the
   same sizes ``s_1..s_C``). Draw the table ``T[c, d]`` = number of entries of input chunk ``c`` that a uniform
   permutation sends into output chunk ``d``: input chunk ``c``'s images are a uniform ``s_c``-subset of the positions
   still free, so given the rows before it, ``T[c, :]`` is multivariate hypergeometric with the free capacities of
   the output chunks as colours.
2. Shuffle each input chunk uniformly (Fisher-Yates inside the chunk, in cache) and cut it into consecutive pieces
   of sizes ``T[c, :]``: which entries go to which output chunk is then a uniform choice given ``T``.
3. Place the pieces into their output chunks and shuffle each output chunk uniformly.

Every step is uniform given the previous ones, so the composed permutation is uniform. With a single chunk it is
one Fisher-Yates shuffle. Seeded by the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import numpy as np

DEFAULT_CHUNK = 1 << 18  # 256 Ki entries: 1 MiB of float32, an L2 cache (raised to n / 256 for bigger arrays)


def permute(x, rng: np.random.Generator, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
  """A uniformly random permutation of the entries of ``x`` (any shape; the result has ``x``'s shape), as a copy."""
  x = np.asarray(x)
  if int(chunk) != chunk or chunk < 1:
    raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")
  flat = np.array(x.reshape(-1), copy=True)
  n = flat.size
  chunk = max(int(chunk), -(-n // 256))  # at most 256 chunks, so at most 65536 pieces to place
  if n <= chunk:
    rng.shuffle(flat)
    return flat.reshape(x.shape)
  bounds = np.arange(0, n + chunk, chunk).clip(max=n)
  bounds = bounds[np.concatenate([[True], np.diff(bounds) > 0])]
  sizes = np.diff(bounds)
  # Step 1: the table T, row by row (multivariate hypergeometric on the capacities still free).
  free = sizes.copy()
  table = np.empty((sizes.size, sizes.size), np.int64)
  for c, s in enumerate(sizes):
    table[c] = rng.multivariate_hypergeometric(free, int(s))
    free -= table[c]
  # Step 2: shuffle input chunks in place.
  for lo, hi in zip(bounds[:-1], bounds[1:]):
    rng.shuffle(flat[lo:hi])
  # Step 3: piece (c, d) starts at bounds[c] + sum_{d' < d} T[c, d'] and lands at bounds[d] + sum_{c' < c} T[c', d].
  src = bounds[:-1, None] + np.cumsum(table, axis=1) - table
  dst = bounds[None, :-1] + np.cumsum(table, axis=0) - table
  out = np.empty_like(flat)
  for d in range(sizes.size):
    for c in np.flatnonzero(table[:, d]):
      k = table[c, d]
      out[dst[c, d]:dst[c, d] + k] = flat[src[c, d]:src[c, d] + k]
  for lo, hi in zip(bounds[:-1], bounds[1:]):
    rng.shuffle(out[lo:hi])
  return out.reshape(x.shape)
