"""Shape buckets: which matrices of many shapes to zero-pad to a common shape, so that a compiled computation is
compiled a few times rather than once per shape.

A jitted program is compiled once per input shape. For a file of matrices of many shapes (a checkpoint's mixed
projections, the lab's small models) the compilations can cost more than the computation: the structure test
(``spectral.structure``) compiles about 2.5 s of programs per new shape on a CPU, while it computes a 256 x 1024
matrix in about 0.1 s. Padding a matrix into a larger shape costs computation in proportion to the added entries;
merging two shapes saves one set of compilations. ``plan_buckets`` merges greedily while the saving exceeds the
cost, under the model

    cost(bucket) = compile_seconds + entry_seconds * count * M_bucket * N_bucket,

merging, at each step, the pair of buckets of the same class whose merge lowers the total cost the most (their
merged shape: the larger ``M`` and the larger ``N``), until no merge lowers it. Shapes are ``(m, n)`` with
``m <= n`` (a caller transposes). Deterministic: the plan depends only on the list of shapes and classes.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

# The structure test on this lab's development VM (2-core AMD EPYC, one thread, jax 0.10.2, CPU): compiling its
# programs for a new shape took 2.5 s (JAX_LOG_COMPILES on a 13-shape file: observed Krylov 0.75 s, null draws
# 1.0 s, Gaussian start 0.4 s, residual 0.06 s); the whole test of a noise matrix took 150-380 ns per entry
# (screened: 9 Krylov runs; 4 x 256 x 1024 in 0.27 s, 4 x 768 x 1536 in 1.8 s).
COMPILE_SECONDS = 2.5
ENTRY_SECONDS = 3e-7


def plan_buckets(shapes: Sequence[tuple[int, int]], classes: Sequence[Hashable] | None = None, *,
                 compile_seconds: float = COMPILE_SECONDS,
                 entry_seconds: float = ENTRY_SECONDS) -> list[tuple[tuple[int, int], list[int]]]:
  """Group ``shapes`` into padded buckets (module docstring).

  Args:
    shapes: ``(m, n)`` per matrix, ``1 <= m <= n``.
    classes: one hashable per matrix; only matrices of one class share a bucket (default: all one class).
    compile_seconds: cost of a new bucket (its compilation), > 0.
    entry_seconds: cost of one padded entry of one matrix, > 0.

  Returns:
    ``[((M, N), [indices]), ...]``: every index once, each bucket's ``M, N`` the largest of its members', in the
    order of each bucket's first member.

  Raises:
    ValueError: for a shape that is not ``(m, n)`` with ``1 <= m <= n``, a ``classes`` of another length, or a
      cost that is not positive.
  """
  shapes = [tuple(int(d) for d in s) for s in shapes]
  for i, s in enumerate(shapes):
    if len(s) != 2 or not 1 <= s[0] <= s[1]:
      raise ValueError(f"shapes[{i}]: expected (m, n) with 1 <= m <= n, got {s}")
  classes = [None] * len(shapes) if classes is None else list(classes)
  if len(classes) != len(shapes):
    raise ValueError(f"classes: expected one per shape ({len(shapes)}), got {len(classes)}")
  if not (compile_seconds > 0 and entry_seconds > 0):
    raise ValueError(f"compile_seconds, entry_seconds: expected positive costs, got {compile_seconds}, "
                     f"{entry_seconds}")

  def cost(shape, count):
    return compile_seconds + entry_seconds * count * shape[0] * shape[1]

  buckets = []  # [class, (M, N), members], one per distinct (class, shape) to start
  where = {}
  for i, (c, s) in enumerate(zip(classes, shapes)):
    if (c, s) not in where:
      where[(c, s)] = len(buckets)
      buckets.append([c, s, []])
    buckets[where[(c, s)]][2].append(i)
  while True:
    best, pair = 0.0, None
    for a in range(len(buckets)):
      for b in range(a + 1, len(buckets)):
        (ca, sa, ia), (cb, sb, ib) = buckets[a], buckets[b]
        if ca != cb:
          continue
        merged = (max(sa[0], sb[0]), max(sa[1], sb[1]))
        saving = cost(sa, len(ia)) + cost(sb, len(ib)) - cost(merged, len(ia) + len(ib))
        if saving > best:
          best, pair = saving, (a, b, merged)
    if pair is None:
      break
    a, b, merged = pair
    buckets[a] = [buckets[a][0], merged, sorted(buckets[a][2] + buckets[b][2])]
    del buckets[b]
  buckets.sort(key=lambda bucket: bucket[2][0])
  return [(s, members) for _, s, members in buckets]
