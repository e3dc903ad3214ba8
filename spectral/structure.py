"""Structure rank: how many singular directions of a matrix its own sign-flip null cannot produce.

Question: which singular directions of a matrix ``X`` (a weight ``W``, or its update ``dW = W - W0``) would not
appear if its entries were independent? The null is the matrix's own random sign flips ``X o S``, ``S`` iid
uniform +-1 (Hong, Sheng & Dobriban 2020, "Selecting the number of components in PCA via random signflips",
arXiv:2012.02985), applied sequentially with deflation, as in deflated parallel analysis (Dobriban & Owen 2019,
J. R. Stat. Soc. B 81:163, arXiv:1710.00479; Buja & Eyuboglu 1992 for parallel analysis).

Why sign flips. If the entries ``x_ij`` are independent and symmetric about zero, with ANY variances (a profile
``D_r G D_c``, heavy tails, different laws per entry), then ``X o S`` has exactly the law of ``X``. So is each of
``X o S_1, ..., X o S_B`` and, conditionally on ``|X|``, the ``B + 1`` matrices ``X, X o S_1, ...`` are exchangeable:
any statistic computed the same way on all of them gives an exact Monte Carlo test. No Marchenko-Pastur shape, no
``sigma^2`` fit and no normalisation are needed. Assumptions and where the test is NOT exact:
- entries dependent across rows/columns (correlated noise, ``G Sigma^(1/2)``): every correlation is "structure"
  here, by design;
- a non-zero mean (a constant offset ``c 1 1^T``, a row mean): sign flips remove it, so it counts as a structured
  (rank-one, ``dc``) direction, arguably the right answer;
- skewed zero-mean entries: the flipped law is the symmetrised one; the top singular value depends on the entries'
  law only through its variance profile and largest entries, so the test is close to exact (measured in
  ``docs/STRUCTURE.md``);
- components after the first (see below) are tested on an estimated residual: approximate, measured.

The statistic. ``T(X)`` = the top Ritz values of ``X / sqrt(N)`` from a block Krylov space (Musco & Musco 2015,
arXiv:1504.05477) of ``steps`` blocks of width ``block`` (plus the accepted count, see below) grown from a seeded Gaussian start ``Y0`` shared by the
observed matrix and every null draw. Because the same deterministic procedure is applied to ``X`` and to each
``X o S_d``, the exchangeability argument holds for ``T`` itself: an unconverged Krylov estimate cannot make the
test anti-conservative (it can only cost power, and ``block * steps = 32`` Krylov directions put the Ritz value of
a bulk edge within a fraction of its Tracy-Widom fluctuation). Ritz values never exceed the singular values they
approximate (Cauchy interlacing).

Sequential deflation. With ``k`` components accepted (``L_hat``: the top-``k`` singular triplets of ``X``, refined
by block Krylov and re-estimated together whenever more are accepted), the statistics are the ``(k+1)``-th,
``(k+2)``-th, ... Ritz values of ``X`` (estimates of ``sigma_{k+1}(X), ...``), and each null draw is
``L_hat + c (R o S_d)``: the accepted part kept, the residual ``R = X - L_hat`` sign-flipped, rescaled by ``c``
(``flip_energy_scale``: the removal took the noise's energy in the removed directions, about ``k (1/M + 1/N)`` of
it) and the same ``(k+1)``-th Ritz value taken. Keeping ``L_hat`` in the draws puts into the null what the
components do to ``sigma_{k+1}`` in ``X``: interlacing, the bulk's reduced dimension, and the mixing of a large
heavy-tailed entry with a component of similar size. (Flipping the residual alone spreads its energy over all
``M x N`` directions while ``R`` has ``M - k`` and puts the null edge too low, by about 3.6% for ``k = 3`` in
32 x 128; with heavy tails, deflating a component that had absorbed a large entry removed that entry from every
later null: both made the test after deflation anti-conservative.) The leading run of statistics beyond the null
threshold is accepted (at most ``block`` per round), and the next round tests again; the test stops at the first
round that accepts nothing. Deflation keeps strong components from inflating the null of weaker ones (in ``X o S``
a component's energy is spread into the noise). Under the global null (independent symmetric entries) the first
comparison is the exact test at ``level``, so the family-wise false-alarm rate, ``P(rank >= 1)``, is ``level``
(exactly with the Monte Carlo p-value, to the accuracy of the tail model otherwise). Later comparisons are
approximate (``R`` stands in for the noise); comparing ``sigma_{k+2}`` with the null of ``sigma_{k+1}`` is
conservative. Measured limits (docs/STRUCTURE.md): deflation flattens a strongly heterogeneous variance profile,
so after deflation a ``D_r G D_c`` noise with a 16x variance range over-detects at about 2-4% at level 1%; with
heavy tails, components no larger than the noise's largest entries mix with them and the rank is then off by one
or two.

P-values (``p_value``):
- ``"tail"`` (default): the ``draws`` null values are fitted by a Tracy-Widom-1 location-scale law (mean and
  standard deviation; the top singular value of a matrix of independent entries with a variance profile has TW1
  edge fluctuations) and the p-value is ``P(Z >= (t - mean) / sd)`` for the pivot ``Z = (t_0 - mean_B) / sd_B``
  of ``B + 1`` iid TW1 draws, whose law is simulated once per ``B`` (seeded, cached): this accounts for the
  estimation error of the mean and sd from only ``B`` draws. Calibrated in ``docs/STRUCTURE.md``.
- ``"mc"``: the exact Monte Carlo p-value ``(1 + #{null >= t}) / (B + 1)``; needs ``B >= 1 / level - 1`` draws.

Conventions: ``X`` has shape ``(a, b)``, ``N = max(a, b)``, ``M = min(a, b)``. Singular values are those of
``X / sqrt(N)`` (the lab's ESD convention, ``spectral.esd``: squared, they are ESD eigenvalues), so iid
unit-variance entries have their bulk edge at ``1 + sqrt(M / N)``. ``u (a, rank)``, ``v (b, rank)``, ``s (rank,)``:
``X ~ sqrt(N) u diag(s) v^T + remainder`` in the original coordinates. Computation in float32.

Randomness: ``seed`` fixes everything. Round ``r`` uses ``key_r = fold_in(key(seed), r)``; the Krylov start is
drawn from ``fold_in(key_r, 0)`` and null draw ``d``'s signs from ``fold_in(fold_in(key_r, 1), d)``, shared by all
matrices of a batch, so a matrix's first round does not depend on the other matrices of its batch (up to float
round-off of batched products); its later rounds do, through the batch's Krylov width and the refinement's random
columns (``_sequential_test``; any width gives a valid test). Same seed, same input: bit-identical result on one
machine.

Cost (docs/STRUCTURE.md, "Cost"): each round is one Krylov run on ``X`` and ``draws`` on flipped matrices, each
``2 steps`` passes over a materialised ``M x N`` float32 matrix with ``width`` columns: skinny products whose speed
is that of the memory holding the matrix. The draws are therefore dispatched in cache-sized blocks of matrices
(``draw_dispatches``), one draw per dispatch, and the blocking changes no draw (same keys, same statistic).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from spectral import tracy_widom as tw

P_VALUE_MODES = ("tail", "mc")


@dataclasses.dataclass(frozen=True)
class StructureOptions:
  """Options of the sign-flip test (the ``**method_options`` of ``structure_rank``).

  Attributes:
    draws: null draws (sign-flip matrices) per round.
    block: Krylov block width, also the most components accepted per round.
    steps: Krylov blocks (``block * steps`` directions; capped so that it does not exceed ``M``).
    p_value: ``"tail"`` (TW1 location-scale tail on ``draws`` values) or ``"mc"`` (exact Monte Carlo p-value).
    refine_steps: Krylov blocks used to refine the accepted components of ``X`` before deflation.
    oversample: extra directions in the refinement block beyond the accepted components.
    resolution: a component whose statistic is below ``resolution`` times the matrix's top singular value is not
      tested: float32 Ritz values from the Gram-type products ``X X^T`` resolve singular values only down to about
      ``sqrt(eps_32) ~ 3e-4`` of the top, so below that an exactly low-rank matrix shows only round-off.
    screen_draws: the screen (``_screen``): in each round, the first ``screen_draws`` null draws are computed for
      every matrix and the remaining ``draws - screen_draws`` only for the matrices whose p-value on those first
      draws is at most ``screen_p``; the others stop there, not significant. ``0`` (or ``>= draws``): no screen.
    screen_p: the screen's p-value bound (see ``screen_draws``).
  """
  draws: int = 24
  block: int = 8
  steps: int = 4
  p_value: str = "tail"
  refine_steps: int = 4
  oversample: int = 8
  resolution: float = 1e-3
  screen_draws: int = 8
  screen_p: float = 0.25

  def __post_init__(self):
    for name in ("draws", "block", "steps", "refine_steps"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not isinstance(self.oversample, (int, np.integer)) or self.oversample < 0:
      raise ValueError(f"oversample: expected a non-negative integer, got {self.oversample!r}")
    if self.draws < 4:
      raise ValueError(f"draws: expected at least 4 null draws, got {self.draws}")
    if not 0.0 <= self.resolution < 1.0:
      raise ValueError(f"resolution: expected a fraction in [0, 1), got {self.resolution!r}")
    if (not isinstance(self.screen_draws, (int, np.integer)) or isinstance(self.screen_draws, bool)
        or self.screen_draws < 0 or 0 < self.screen_draws < 4):
      raise ValueError(f"screen_draws: expected 0 (no screen) or at least 4 draws, got {self.screen_draws!r}")
    if not 0.0 < self.screen_p <= 1.0:
      raise ValueError(f"screen_p: expected a p-value bound in (0, 1], got {self.screen_p!r}")
    if self.p_value not in P_VALUE_MODES:
      raise ValueError(f"p_value: expected one of {P_VALUE_MODES}, got {self.p_value!r}")

  def screened(self) -> bool:
    return 0 < self.screen_draws < self.draws

  def method(self) -> str:
    tail = "TW1 location-scale tail" if self.p_value == "tail" else "Monte Carlo p-value"
    screen = (f", screened after {self.screen_draws} draws at p <= {self.screen_p:g}" if self.screened() else "")
    return (f"signflip-deflated (Hong, Sheng & Dobriban 2020): {tail} on {self.draws} draws per round{screen}, "
            f"block Krylov {self.block}x{self.steps}")


@dataclasses.dataclass(frozen=True)
class StructureResult:
  """Structure rank of one matrix (see the module docstring for conventions).

  Attributes:
    rank: number of structured components at ``level`` (``-1`` when ``status`` is an error).
    singular_values: (t,) the observed statistic of each tested component, descending: Ritz estimates of the
      singular values ``sigma_j`` of ``X / sqrt(N)`` (``j = 1..t``; ``t = rank + 1`` unless ``max_rank`` stopped
      the test). Equal to the singular values up to Krylov convergence (1e-3 relative or better for components
      separated from the bulk; a lower bound near the bulk edge).
    null_thresholds: (t,) the threshold each tested value was compared with (the ``1 - level`` point of its null).
    p_values: (t,) p-value of each tested component. For the last one, where the screen stopped the test
      (``null_draws`` short of ``draws`` per round), the p-value and threshold are those of the first
      ``screen_draws`` draws.
    u: (a, rank) left singular vectors of the structured components, in the original coordinates.
    v: (b, rank) right singular vectors.
    s: (rank,) their singular values (of ``X / sqrt(N)``), refined.
    level: the false-alarm level.
    method: the null and its options, in words.
    status: ``"ok"``, ``"ok (zero matrix)"``, ``"ok (max_rank reached)"``, ``"ok (remainder below resolution)"``
      (an exactly low-rank matrix: what is left after deflation is float32 round-off, see ``resolution``) or
      ``"error: ..."``.
    shape: ``(a, b)``.
    rounds: deflation rounds run.
    null_draws: null draws computed for this matrix, over all rounds (``draws`` per round without the screen).
  """
  rank: int
  singular_values: np.ndarray
  null_thresholds: np.ndarray
  p_values: np.ndarray
  u: np.ndarray
  v: np.ndarray
  s: np.ndarray
  level: float
  method: str
  status: str
  shape: tuple[int, int] = ()
  rounds: int = 0
  null_draws: int = 0


# --------------------------------------------------------------------------------------------------------------
# Block Krylov Ritz triplets (jit-friendly, batched over leading axes).

_HP = jax.lax.Precision.HIGHEST


def _t(x):
  return jnp.swapaxes(x, -1, -2)


def _orth(z):
  return jnp.linalg.qr(z)[0]


def _block_krylov(apply, apply_t, y0, steps: int):
  """Ritz triplets of an operator ``A`` (..., M, N) from ``span{A Y0, (A A^T) A Y0, ...}`` of ``steps`` blocks.

  ``apply(y)`` = ``A y`` for ``y`` (..., N, w) and ``apply_t(z)`` = ``A^T z`` for ``z`` (..., M, w). Block Lanczos
  with full reorthogonalisation (each new block projected off the basis twice, then QR). The Rayleigh-Ritz step is
  made robust to a rank-deficient basis (an exhausted Krylov space, an exactly low-rank ``A``) by whitening the
  basis through its Gram matrix, so every Ritz value is that of an orthonormal basis of the same space and never
  exceeds the corresponding singular value of ``A``.

  Returns:
    ``(sv (..., r), left (..., M, r), right (..., N, r))`` with ``r = steps * width``, descending Ritz values.
  """
  q = _orth(apply(y0))
  qs, ws = [q], []
  for i in range(steps):
    w = apply_t(q)  # A^T Q_i
    ws.append(w)
    if i == steps - 1:
      break
    z = apply(w)
    basis = jnp.concatenate(qs, axis=-1)
    for _ in range(2):
      z = z - jnp.matmul(basis, jnp.matmul(_t(basis), z, precision=_HP), precision=_HP)
    q = _orth(z)
    qs.append(q)
  basis = jnp.concatenate(qs, axis=-1)  # (..., M, r), orthonormal up to breakdown
  xtq = jnp.concatenate(ws, axis=-1)  # (..., N, r) = A^T basis
  g_eval, g_vec = jnp.linalg.eigh(jnp.matmul(_t(basis), basis, precision=_HP))
  keep = g_eval > 1e-6 * jnp.max(g_eval, axis=-1, keepdims=True)
  whiten = g_vec * jnp.where(keep, jax.lax.rsqrt(jnp.where(keep, g_eval, 1.0)), 0.0)[..., None, :]
  b = jnp.matmul(xtq, whiten, precision=_HP)  # A^T P for the orthonormal basis P = basis @ whiten
  evals, evecs = jnp.linalg.eigh(jnp.matmul(_t(b), b, precision=_HP))
  evals, evecs = evals[..., ::-1], evecs[..., ::-1]
  sv = jnp.sqrt(jnp.clip(evals, 0.0, None))
  left = jnp.matmul(basis, jnp.matmul(whiten, evecs, precision=_HP), precision=_HP)
  right = jnp.matmul(b, evecs, precision=_HP) / jnp.where(sv > 0, sv, 1.0)[..., None, :]
  return sv, left, right


def _matrix_krylov(x, y0, steps: int, xt=None):
  """``_block_krylov`` of an explicit matrix ``x`` (..., M, N); ``xt``: its materialised transpose, if any."""
  apply_t = (lambda z: jnp.matmul(_t(x), z, precision=_HP)) if xt is None else (
      lambda z: jnp.matmul(xt, z, precision=_HP))
  return _block_krylov(lambda y: jnp.matmul(x, y, precision=_HP), apply_t, y0, steps)


# From this many entries of a batch's (padded) matrix on, the test keeps a transposed copy of each matrix it
# multiplies (the matrix, the residual, the flipped draws): XLA's CPU product ``x^T z`` (contracting the leading axis
# of ``x``) was 5-8x slower than ``x y`` (one thread, jax 0.10.2, 8 columns: 4096x11008 53-59 ms against 11.7 ms,
# 768x3072 6.1 ms against 0.8 ms). The whole test of t(3) noise matrices, one thread, idle 2-core VM, without and with
# the copy: 2 x 768x768 0.21 -> 0.12 CPU s, 2 x 1024x1024 0.48 -> 0.27, 2 x 768x2304 1.39 -> 1.03, 2 x 768x3072
# 0.79 -> 0.45, 4096x4096 3.88 -> 3.23, 4096x11008 12.1 -> 7.5. The copy costs one more matrix of memory per matrix
# of the batch. Below the threshold the products are as before, bit for bit (every theory check's matrices, at most
# 256x1024, are below it); above it the values equal the plain products' to float32 round-off (tested).
_TRANSPOSED_ENTRIES = 1 << 19


def flip_energy_scale(resid, u, v):
  """Scale ``c`` restoring the noise energy that removing the components ``u, v`` took from the residual.

  If ``X = L + E`` and the top-``k`` part is removed, ``R = X - L_hat ~ P_u E P_v`` with ``P_u = I - u u^T``,
  ``P_v = I - v v^T`` (orthonormal or zero columns ``u`` (..., M, k), ``v`` (..., N, k)): the removal also took the
  noise's energy in those directions, about ``k (1/M + 1/N)`` of it. For a matrix with ``R``'s entry magnitudes and
  random signs the expected fraction kept by the projection is ``sum_mj R_mj^2 (1 - l_m)(1 - r_j) / |R|_F^2`` with
  leverages ``l_m = |u_m|^2``, ``r_j = |v_j|^2`` (cross terms vanish in expectation); ``c`` is the inverse square
  root of it, so ``c (R o S)`` carries the energy ``E`` had. Weighting by the entries keeps it right when the
  removed directions are localised on a few large entries.
  """
  r2 = resid * resid
  lu = 1.0 - jnp.sum(u * u, axis=-1)  # (..., M)
  lv = 1.0 - jnp.sum(v * v, axis=-1)  # (..., N)
  kept = jnp.sum(r2 * lu[..., :, None] * lv[..., None, :], axis=(-2, -1))
  total = jnp.sum(r2, axis=(-2, -1))
  return jnp.sqrt(total / jnp.maximum(kept, jnp.finfo(resid.dtype).tiny))


def sign_flip(x, key, row_words=None):
  """``x o S`` for ``S`` iid uniform +-1 (shared over the leading batch axes), by xor-ing the float sign bit.

  32 signs come from each random ``uint32``; for a matrix ``(M, N)`` that is ``M * ceil(N / 32)`` random words, the
  word of row ``r`` and column block ``c`` being word ``r * ceil(N / 32) + c`` of ``bits(key, (M * ceil(N / 32),))``
  (JAX's partitionable threefry, the default since 0.5: word ``i`` of a draw of any shape is a function of ``i``
  and the key alone). ``row_words`` (B,): for a batch ``x`` (B, M, N) of zero-padded matrices whose true column
  counts ``n_b`` need ``row_words[b] = ceil(n_b / 32)`` words per row, matrix ``b`` gets exactly the signs it would
  get unpadded, on its true ``(m_b, n_b)`` block (its padding gets other signs, and stays zero).
  """
  words = _sign_words(key, *x.shape[-2:], row_words)
  return _flipped(x, _sign_bits(words, x.shape[-1]))


def sign_flip_pair(x, xt, key, row_words=None):
  """``(x o S, (x o S)^T)`` from ``x`` (B, M, N) and its transpose ``xt`` (B, N, M), both materialised, with the
  signs of ``sign_flip(x, key, row_words)``: the transposed copy lets ``(x o S)^T z`` be a product over the
  contiguous axis (``_TRANSPOSED_ENTRIES``)."""
  words = _sign_words(key, *x.shape[-2:], row_words)
  shifts = jnp.arange(32, dtype=jnp.uint32).reshape((1,) * (words.ndim - 1) + (32, 1))
  bits_t = (_t(words)[..., :, None, :] >> shifts) & jnp.uint32(1)  # (..., cols, 32, M): bit j of word (r, c)
  bits_t = bits_t.reshape(bits_t.shape[:-3] + (-1, words.shape[-2]))[..., :x.shape[-1], :]
  return _flipped(x, _sign_bits(words, x.shape[-1])), _flipped(xt, bits_t)


def _sign_words(key, m: int, n: int, row_words=None):
  """The random words of ``sign_flip``: (M, ceil(N / 32)), or (B, M, ceil(N / 32)) with ``row_words``."""
  cols = -(-n // 32)
  if row_words is None:
    return jax.random.bits(key, (m, cols), jnp.uint32)
  # matrix b's word (r, c) is word r * row_words[b] + c of the flat draw, < m * cols for r < m, c < cols
  flat = jax.random.bits(key, (m * cols,), jnp.uint32)
  return flat[jnp.arange(m)[None, :, None] * row_words[:, None, None] + jnp.arange(cols)[None, None, :]]


def _sign_bits(words, n: int):
  """The signs (0 or 1) of ``_sign_words`` unpacked to ``(..., M, n)``: bit ``j`` of word ``(r, c)`` is column
  ``32 c + j`` of row ``r``."""
  shifts = jnp.arange(32, dtype=jnp.uint32).reshape((1,) * words.ndim + (32,))
  return ((words[..., None] >> shifts) & jnp.uint32(1)).reshape(words.shape[:-1] + (-1,))[..., :n]


def _flipped(x, bits):
  """``x`` with its float sign bit xor-ed with ``bits`` (broadcast over ``x``'s leading axes)."""
  bits = bits.reshape((1,) * (x.ndim - bits.ndim) + bits.shape)
  raw = jax.lax.bitcast_convert_type(x, jnp.uint32)
  return jax.lax.bitcast_convert_type(raw ^ (bits << jnp.uint32(31)), jnp.float32)


# Bytes of flipped float32 matrices one dispatch of null draws holds (``matrices x draws x M x N x 4``): about half
# of a CPU's last-level cache, so that a dispatch's flipped matrices stay cached through the ``2 steps`` passes of
# its Krylov iteration. Measured (bench/bench_structure.py and its breakdown, 2-core VM, load 3-10): one null draw
# of 12 768x3072 matrices took 1.27 s as one (12, 768, 3072) dispatch (113 MB: every pass from memory), 1.38 s with
# 8 draws vmapped into one dispatch, and 0.52-0.68 s as 12 dispatches of one matrix. Vmapping draws into one
# dispatch never helped on the CPU (one round of 2 192x768 matrices: 128 ms as 2 dispatches of 24 vmapped draws,
# 51 ms as 24 dispatches of one draw), so a dispatch holds one draw and as many matrices as fit.
_DISPATCH_BYTES = 16 << 20


def _balanced(total: int, most: int) -> int:
  """The size of ``ceil(total / most)`` equal parts covering ``total`` (the last part padded), ``<= most``."""
  return -(-total // -(-total // max(1, min(total, most))))


def draw_dispatches(batch: int, draws: int, m: int, n: int, budget: int = _DISPATCH_BYTES) -> tuple[int, int]:
  """``(matrices, draws)`` per dispatch of null draws for a batch (``batch``, M, N): one draw, and as many matrices
  as fit ``budget`` bytes of flipped float32 matrices (at least 1), balanced so that every dispatch has the same
  shape (one compile per round shape); the last block of matrices overlaps the one before it. ``draws`` is part of
  the signature for layouts that vmap several draws into one dispatch (``_round_statistics`` accepts them)."""
  del draws
  return _balanced(batch, budget // (4 * m * n)), 1


def _round_statistics(x, u, s, v, ks, key, *, draws: int, width: int, steps: int, block: int,
                      dispatch: tuple[int, int] | None = None):
  """One round of the sequential test for a batch ``x`` (B, M, N), already scaled by ``1 / sqrt(N)``, every draw
  for every matrix (``_round_observed`` then ``_round_null``; the test itself screens, see ``_screen``).

  ``u`` (B, M, K), ``s`` (B, K), ``v`` (B, N, K): the ``ks`` (B,) components accepted so far (the top singular
  triplets of ``x``; zero-padded). The statistic is the ``(k+1)``-th, ..., ``(k+block)``-th Ritz values of a block
  Krylov space of ``width`` columns and ``steps`` blocks grown from a seeded start shared by every matrix and draw.
  The null draws are ``L_hat + c (R o S_d)``: the accepted part kept, the residual ``R = x - L_hat`` sign-flipped
  and rescaled (``flip_energy_scale``), and the same statistic taken, so that the interaction of the accepted
  components with the noise (the interlacing of ``sigma_(k+1)``, a large entry mixing with a component) is in
  the null as it is in ``x``. With ``k = 0`` the draws are plain flips ``x o S_d``: the exact test.

  Returns the observed statistics (B, block), the observed right Ritz vectors (B, N, width) and the null
  statistics (B, draws).
  """
  observed = _round_observed(x, u, s, v, ks, key, width=width, steps=steps, block=block)
  null = _round_null(observed, u, s, v, ks, key, range(draws), steps=steps, dispatch=dispatch)
  return observed.statistics, observed.right, null


@dataclasses.dataclass(frozen=True)
class _Observed:
  """What a round computes once per matrix: the observed statistics (B, block), right Ritz vectors (B, N, width),
  the residual ``R = x - L_hat`` (B, M, N), its flip scale (B, 1, 1), the Krylov start (B, N, width) and, for a
  batch of zero-padded matrices, the sign words per row of each (``sign_flip``; ``None`` when every matrix fills
  the batch's shape)."""
  statistics: jax.Array
  right: jax.Array
  resid: jax.Array
  scale: jax.Array
  y0: jax.Array
  row_words: jax.Array | None = None
  resid_t: jax.Array | None = None


def _round_observed(x, u, s, v, ks, key, *, width: int, steps: int, block: int, row_words=None) -> _Observed:
  """The observed part of a round (``_round_statistics``); ``row_words`` as in ``sign_flip``."""
  y0 = _gaussian_rows(jax.random.fold_in(key, 0), x.shape[-1], width)
  y0 = jnp.broadcast_to(y0, x.shape[:-2] + y0.shape)
  ks = jnp.asarray(ks, jnp.int32)
  # Every program of the test is waited for before the next is dispatched (see ``_round_null``).
  if _uses_transposed(x):
    xt = jax.block_until_ready(_transposed(x))
    sv, right = jax.block_until_ready(_observed_ritz(x, y0, xt, steps=steps))
    del xt
    resid, scale, resid_t = jax.block_until_ready(_residual_scale_and_transposed(x, u, s, v))
  else:
    sv, right = jax.block_until_ready(_observed_ritz(x, y0, steps=steps))
    (resid, scale), resid_t = jax.block_until_ready(_residual_and_scale(x, u, s, v)), None
  index = ks[:, None] + jnp.arange(block)[None, :]
  stats = jnp.take_along_axis(sv, jnp.minimum(index, sv.shape[-1] - 1), axis=-1)
  return _Observed(stats, right, resid, scale, y0, row_words, resid_t)


def _uses_transposed(x) -> bool:
  """Whether the test of a batch ``x`` (B, M, N) multiplies by materialised transposes (``_TRANSPOSED_ENTRIES``)."""
  return x.shape[-2] * x.shape[-1] >= _TRANSPOSED_ENTRIES


@jax.jit
def _transposed(x):
  return _t(x)


def _round_null(observed: _Observed, u, s, v, ks, key, draws: range, *, steps: int, rows=None,
                dispatch: tuple[int, int] | None = None) -> np.ndarray:
  """Null statistics (B, len(draws)) of the draws ``draws`` (a range of draw indices) of a round.

  Draw ``d`` uses the key ``fold_in(fold_in(key, 1), d)`` whatever the blocking and whichever draws are asked for,
  so the null values depend on the layout only through float round-off of batched products. The draws are
  computed in dispatches of ``dispatch = (matrices, draws)`` (default ``draw_dispatches``: a cache-sized block of
  matrices, one draw), each ONE call of a compiled function that ``vmap``s the statistic over its draw keys (the
  last block of draws padded with extra draws that are computed and discarded). ``rows`` (B,) bool: compute only
  the blocks of matrices holding a ``True`` row (every row by default); the rows not asked for are NaN, also where
  their block was computed, so that what a matrix gets never depends on the other matrices of its batch. The
  dispatches are separate calls rather than a ``lax.map``/``scan``: XLA's CPU runtime was seen to deadlock
  intermittently (every Eigen worker waiting for work) inside the while loop of a ``lax.map`` over these draws. Each
  dispatch is waited for before the next is made: jaxlib's batched LAPACK kernels (QR, eigh) split their batch over
  the intra-op pool and block until it is done, and two of them in flight at once on a 2-thread pool deadlocked
  (gdb: both pool threads in ``ParallelBatchMap``'s ``BlockingCounter::Wait``; seen in the training snapshots,
  ``models.steps.spectra_of``). One program in flight at a time excludes that here.
  """
  resid = observed.resid
  nb = resid.shape[0]
  rows = np.ones(nb, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
  out = np.full((nb, len(draws)), np.nan, np.float32)
  if len(draws) == 0 or not rows.any():
    return out
  size, chunk = draw_dispatches(nb, len(draws), *resid.shape[1:]) if dispatch is None else dispatch
  count = -(-len(draws) // chunk) * chunk
  keys = _fold_in_range(jax.random.fold_in(key, 1), draws.start + count)[draws.start:].reshape(-1, chunk)
  ks = jnp.asarray(ks, jnp.int32)
  starts = [min(start, nb - size) for start in range(0, nb, size)]  # the last block overlaps the one before it
  starts = [start for start in starts if rows[start:start + size].any()]
  for start in starts:  # np.asarray waits for each dispatch before the next is made: one program in flight
    part = [np.asarray(_null_statistics(resid, u, s, v, observed.scale, observed.y0, ks, k, start, size=size,
                                        steps=steps, row_words=observed.row_words, resid_t=observed.resid_t))
            for k in keys]
    out[start:start + size] = np.concatenate(part, axis=-1)[:, :len(draws)]
  out[~rows] = np.nan
  return out


@functools.partial(jax.jit, static_argnums=(1, 2))
def _gaussian_block(key, rows: int, width: int):
  return jax.random.normal(key, (rows, width), jnp.float32)


def _gaussian_rows(key, rows: int, width: int):
  """``jax.random.normal(key, (rows, width))``, float32, from one program per power of two of ``rows``.

  The partitionable threefry gives entry ``(i, j)`` of a ``(R, width)`` draw from the flat index ``i * width + j``
  alone, so the first ``rows`` rows of a taller draw are this draw exactly (tested); sharing the program saves
  its compilation (0.4 s on a CPU) for every matrix side that has no program yet. At least 4096 rows are drawn
  (32 k values: a negligible cost), so that every side up to 4096 shares one program.
  """
  return _gaussian_block(key, max(4096, 1 << max(0, rows - 1).bit_length()), width)[:rows]


@functools.partial(jax.jit, static_argnums=(1,))
def _fold_in_range(key, count: int):
  """``fold_in(key, d)`` for ``d = 0..count-1`` (count,)."""
  return jax.vmap(lambda d: jax.random.fold_in(key, d))(jnp.arange(count, dtype=jnp.uint32))


@functools.partial(jax.jit, static_argnames=("steps",))
def _observed_ritz(x, y0, xt=None, *, steps: int):
  sv, _, right = _matrix_krylov(x, y0, steps, xt)
  return sv, right[..., :y0.shape[-1]]


@jax.jit
def _residual_and_scale(x, u, s, v):
  resid = x - jnp.matmul(u * s[..., None, :], _t(v), precision=_HP)
  return resid, flip_energy_scale(resid, u, v)[:, None, None]


@jax.jit
def _residual_scale_and_transposed(x, u, s, v):
  """``_residual_and_scale`` and the residual's transpose, materialised (an output)."""
  resid, scale = _residual_and_scale(x, u, s, v)
  return resid, scale, _t(resid)


def _null_statistic(resid, u, s, v, scale, y0, ks, key, row_words=None, resid_t=None, *, steps: int):
  """The ``(k+1)``-th Ritz value (B,) of ``L_hat + scale (resid o S)``, ``L_hat = u diag(s) v^T``; with ``resid_t``
  (the residual's transpose) the transposed products use a flipped copy of it (``sign_flip_pair``)."""
  if resid_t is None:
    f = sign_flip(resid, key, row_words) * scale
    f_t = _t(f)
  else:
    f, f_t = sign_flip_pair(resid, resid_t, key, row_words)
    f, f_t = f * scale, f_t * scale
  low = lambda a, b, y: jnp.matmul(a * s[..., None, :], jnp.matmul(_t(b), y, precision=_HP), precision=_HP)
  apply = lambda y: jnp.matmul(f, y, precision=_HP) + low(u, v, y)
  apply_t = lambda z: jnp.matmul(f_t, z, precision=_HP) + low(v, u, z)
  sv = _block_krylov(apply, apply_t, y0, steps)[0]
  return jnp.take_along_axis(sv, ks[:, None], axis=-1)[:, 0]


@functools.partial(jax.jit, static_argnames=("size", "steps"))
def _null_statistics(resid, u, s, v, scale, y0, ks, keys, start, *, size: int, steps: int, row_words=None,
                     resid_t=None):
  """``_null_statistic`` of the matrices ``start .. start + size - 1`` of the batch for each key of ``keys`` (C,),
  in one dispatch: (size, C)."""
  part = [jax.lax.dynamic_slice_in_dim(a, start, size, axis=0) for a in (resid, u, s, v, scale, y0, ks)]
  words, part_t = (None if a is None else jax.lax.dynamic_slice_in_dim(a, start, size, axis=0)
                   for a in (row_words, resid_t))
  if keys.shape[0] == 1:  # one draw (the default): the computation of one draw without a vmap
    return _null_statistic(*part, keys[0], words, part_t, steps=steps)[:, None]
  return _t(jax.vmap(lambda key: _null_statistic(*part, key, words, part_t, steps=steps))(keys))


@functools.partial(jax.jit, static_argnames=("steps",))
def _refine(x, y0, xt=None, *, steps: int):
  """Ritz triplets of ``x`` (B, M, N) from a warm start ``y0`` (B, N, w): the accepted components."""
  return _matrix_krylov(x, y0, steps, xt)


def _screen(observed: _Observed, u, s, v, ks, key, active, opts: StructureOptions, p_fn, steps: int):
  """The null draws of a round for the ``active`` (B,) matrices, screened: ``(null (B, draws), passed (B,))``.

  Without a screen (``opts.screened()`` false) every draw is computed and every matrix passes. With it, the first
  ``screen_draws`` draws are computed for the active matrices; a matrix whose first observed statistic has a
  p-value above ``screen_p`` against them stops there (``passed`` false: not significant, and its remaining draws
  are NaN); the others get the remaining draws, the same draws (same keys) the unscreened test would use. So a
  screened test rejects only where the unscreened one with the same seed rejects: its rank is at most the
  unscreened rank, matrix by matrix, its false-alarm rate at most the unscreened one's, and the two differ only
  where a component significant on all ``draws`` looked ordinary on the first ``screen_draws``. With the Monte
  Carlo p-value that never happens when ``screen_p >= (e + 1) / (screen_draws + 1)``, ``e = floor(level (draws +
  1)) - 1`` the exceedances the level allows (``e = 0`` at level 0.01 with 99 draws): a significant value exceeds
  at most ``e`` of all draws, hence of the first ones.
  The saving: under the null about a fraction ``1 - screen_p`` of the matrices stop after ``screen_draws`` draws.
  This is a curtailed test in the spirit of Besag & Clifford (1991, Biometrika 78:301), who stop drawing once the
  outcome is clear; here the stopping only ever removes rejections, so no recalibration of the level is needed.
  """
  if not opts.screened():
    return _round_null(observed, u, s, v, ks, key, range(opts.draws), steps=steps, rows=active), active.copy()
  first = _round_null(observed, u, s, v, ks, key, range(opts.screen_draws), steps=steps, rows=active)
  t_obs = np.asarray(observed.statistics, np.float64)
  passed = np.zeros_like(active)
  for i in np.flatnonzero(active):
    passed[i] = p_fn(t_obs[i, :1], first[i].astype(np.float64), 0.5)[0][0] <= opts.screen_p
  rest = _round_null(observed, u, s, v, ks, key, range(opts.screen_draws, opts.draws), steps=steps, rows=passed)
  return np.concatenate([first, rest], axis=1), passed


# --------------------------------------------------------------------------------------------------------------
# P-values.

@functools.lru_cache(maxsize=1)
def _tw1_quantile_table() -> tuple[np.ndarray, np.ndarray]:
  """TW1 distribution function on a grid (Bornemann's quadrature, 24 nodes: 1e-8 accurate), for inverse sampling."""
  grid = np.linspace(-7.0, 6.5, 271)
  cdf = np.maximum.accumulate(tw.tw_cdf(grid, beta=1, nodes=24))
  return grid, cdf


@functools.lru_cache(maxsize=32)
def _tw1_pivot(draws: int, n_sim: int = 200_000) -> np.ndarray:
  """Sorted simulated values of the pivot ``Z = (t_0 - mean(t_1..t_B)) / sd(t_1..t_B)`` for iid TW1 ``t_i``.

  ``Z`` does not depend on the location and scale of the law, so for a null that is a TW1 location-scale family
  its survival function is the exact p-value of the standardised statistic, estimation error included.
  Seeded (numpy ``default_rng(draws)``), so p-values are reproducible.
  """
  grid, cdf = _tw1_quantile_table()
  rng = np.random.default_rng(draws)
  uniform = rng.uniform(cdf[0], cdf[-1], size=(n_sim, draws + 1))
  t = np.interp(uniform, cdf, grid)
  null = t[:, 1:]
  z = (t[:, 0] - null.mean(axis=1)) / null.std(axis=1, ddof=1)
  return np.sort(z)


def _tail_p_values(stat: np.ndarray, null: np.ndarray, level: float) -> tuple[np.ndarray, float]:
  """TW1 location-scale p-values of ``stat`` (k,) against ``null`` (B,) draws, and the threshold at ``level``."""
  pivot = _tw1_pivot(null.shape[0])
  mean, sd = float(np.mean(null)), float(np.std(null, ddof=1))
  sd = max(sd, 1e-6 * abs(mean), np.finfo(np.float32).tiny)
  z = (np.asarray(stat, np.float64) - mean) / sd
  exceed = pivot.shape[0] - np.searchsorted(pivot, z, side="left")
  p = (1.0 + exceed) / (pivot.shape[0] + 1.0)
  # Threshold: the smallest standardised value whose p-value is <= level.
  need = int(math.floor(level * (pivot.shape[0] + 1.0) - 1.0))
  c = pivot[pivot.shape[0] - need - 1] if 0 <= need < pivot.shape[0] else np.inf
  return p, mean + c * sd


def _mc_p_values(stat: np.ndarray, null: np.ndarray, level: float) -> tuple[np.ndarray, float]:
  """Exact Monte Carlo p-values ``(1 + #{null >= t}) / (B + 1)`` and the threshold at ``level``."""
  b = null.shape[0]
  ordered = np.sort(np.asarray(null, np.float64))
  exceed = b - np.searchsorted(ordered, np.asarray(stat, np.float64), side="left")
  p = (1.0 + exceed) / (b + 1.0)
  allowed = int(math.floor(level * (b + 1.0) + 1e-9)) - 1  # exceedances allowed for p <= level
  return p, float(ordered[b - allowed - 1]) if allowed >= 0 else np.inf  # inf: no value reaches the level


# --------------------------------------------------------------------------------------------------------------
# Public API.

def _validate_level(level: float) -> float:
  level = float(level)
  if not 0.0 < level < 1.0:
    raise ValueError(f"level: expected a false-alarm probability in (0, 1), got {level}")
  return level


def _as_float_batch(x, name: str, ndim: int = 3) -> np.ndarray:
  """``x`` as a floating numpy array of ``ndim`` axes (3: a batch (B, a, b); 2: one matrix), bf16/fp16 upcast."""
  arr = np.asarray(x)
  if arr.dtype.kind == "V" or str(arr.dtype) in ("bfloat16", "float16"):
    arr = np.asarray(jnp.asarray(x, jnp.float32))
  if arr.ndim != ndim:
    what = "a batch of matrices (B, a, b)" if ndim == 3 else "a 2-D matrix"
    raise ValueError(f"{name}: expected {what}, got an array of shape {arr.shape}")
  if arr.size == 0 or min(arr.shape[-2:]) < 2:
    what = "B >= 1 matrices with both" if ndim == 3 else "both"
    raise ValueError(f"{name}: expected {what} dimensions >= 2, got shape {arr.shape}")
  if arr.dtype.kind not in "f":
    raise ValueError(f"{name}: expected a floating dtype, got {arr.dtype}")
  return arr


def _error_result(shape, level, method, status) -> StructureResult:
  a, b = shape
  empty = np.zeros((0,))
  return StructureResult(rank=-1, singular_values=empty, null_thresholds=empty, p_values=empty,
                         u=np.zeros((a, 0)), v=np.zeros((b, 0)), s=empty, level=level, method=method,
                         status=status, shape=(a, b), rounds=0)


def default_max_rank(shape) -> int:
  """The most components ``structure_rank_batch`` accepts by default in an ``a x b`` matrix: ``min(M - 1, 64)``,
  ``M = min(a, b)``; a rank equal to it is a lower bound."""
  return min(min(shape) - 1, 64)


def structure_rank_batch(ws, *, inits=None, level: float = 0.01, seed: int = 0, max_rank: int | None = None,
                         **method_options) -> list[StructureResult]:
  """Structure rank of each matrix of a batch ``ws`` (B, a, b) against its own sign-flip null (module docstring).

  Args:
    ws: (B, a, b) matrices of one shape (numpy or JAX; bf16/fp16 upcast).
    inits: optional (B, a, b) initial values; then ``dW = ws - inits`` is analysed.
    level: false-alarm level of each test; the family-wise rate under independent entries.
    seed: integer seed of the Krylov start and the sign flips.
    max_rank: the most components to accept (default ``default_max_rank``: ``min(M - 1, 64)``).
    **method_options: fields of ``StructureOptions`` (``draws``, ``block``, ``steps``, ``p_value``,
      ``refine_steps``, ``oversample``).

  Returns:
    One ``StructureResult`` per matrix. A matrix with NaN/Inf entries gets ``rank = -1`` and an error status; an
    all-zero matrix (``dW = 0``) gets rank 0.

  Raises:
    ValueError: for a batch that is not (B, a, b) floating, a bad ``inits`` shape, ``level`` or option.
  """
  opts = StructureOptions(**method_options)
  level = _validate_level(level)
  x = _minus_init(_as_float_batch(ws, "ws"), inits, "ws", "inits", ndim=3)
  nb, a, b = x.shape
  m, n = min(a, b), max(a, b)
  max_rank = _validated_max_rank(max_rank, (a, b))
  _check_mc_draws(opts, level)
  finite = np.all(np.isfinite(x), axis=(1, 2))
  batch = _Batch(xs=jnp.asarray(_oriented_scaled(x, finite)), dims=np.tile([m, n], (nb, 1)),
                 shapes=[(a, b)] * nb, finite=finite, nonzero=np.any(x != 0, axis=(1, 2)),
                 max_rank=np.full(nb, max_rank))
  return _sequential_test(batch, opts, level, seed)


def structure_rank_many(ws, *, inits=None, level: float = 0.01, seed: int = 0, max_rank: int | None = None,
                        buckets: bool = True, **method_options) -> list[StructureResult]:
  """Structure rank of each matrix of ``ws``, a sequence of matrices of any shapes, in a few padded batches.

  The matrices of one shape ``(m, n)`` (after transposing so that ``m <= n``) form one batch, as in
  ``structure_rank_batch``, cut into chunks of equal size that fit a dispatch's cache-sized block
  (``_DISPATCH_BYTES``; the last chunk filled up with zero matrices that are not tested). With ``buckets`` (default),
  batches of different shapes are also zero-padded into one where that saves more compilation than the padding
  costs (``spectral.shape_buckets.plan_buckets``; only shapes with the same first-round Krylov block and step
  count). Padding leaves the test as it was: a zero-padded matrix
  has the singular values of the matrix (and zeros), its Krylov start is the first ``n`` rows of the padded start
  (``_gaussian_rows``) and its sign flips are its own shape's (``sign_flip``), so the first round (the whole test
  of a matrix with nothing structured) gives what the matrix's exact-shape batch gives, up to float32 round-off of
  the longer products (tested). Later rounds depend on the batch through their Krylov width and the refinement's
  random columns, as they do within any batch (``_sequential_test``).

  Args:
    ws: sequence of 2-D matrices (numpy or JAX; bf16/fp16 upcast), each with both dimensions >= 2.
    inits: optional sequence of initial values, one per matrix and of its shape; then ``dW = w - init``.
    level, seed, **method_options: as in ``structure_rank_batch``.
    max_rank: the most components to accept in each matrix (default: each matrix's ``default_max_rank``).
    buckets: pad batches of different shapes together (``False``: one batch per shape).

  Returns:
    One ``StructureResult`` per matrix, in the order of ``ws``.

  Raises:
    ValueError: naming the matrix (``ws[i]``, ``inits[i]``) that is not a floating 2-D matrix with both dimensions
      >= 2 or whose init has another shape; or for a bad ``level``, ``max_rank`` or option.
  """
  from spectral import shape_buckets

  opts = StructureOptions(**method_options)
  level = _validate_level(level)
  _check_mc_draws(opts, level)
  ws = list(ws)
  if inits is not None and len(inits) != len(ws):
    raise ValueError(f"inits: expected one initial value per matrix ({len(ws)}), got {len(inits)}")
  prepared, dims, classes, ranks = [], [], [], []
  for i, w in enumerate(ws):
    x = _minus_init(_as_float_batch(w, f"ws[{i}]", ndim=2), None if inits is None else inits[i], f"ws[{i}]",
                    f"inits[{i}]", ndim=2)
    m, n = min(x.shape), max(x.shape)
    try:
      ranks.append(_validated_max_rank(max_rank, x.shape))
    except ValueError as err:
      raise ValueError(f"ws[{i}] ({x.shape[0]}x{x.shape[1]}): {err}") from None
    prepared.append(x)
    dims.append((m, n))
    block = min(opts.block, m)
    classes.append((block, max(1, min(opts.steps, m // block))))
  if buckets:
    plan = shape_buckets.plan_buckets(dims, classes)
  else:
    groups = {}
    for i, d in enumerate(dims):
      groups.setdefault(d, []).append(i)
    plan = list(groups.items())
  results = [None] * len(ws)
  for (big_m, big_n), bucket in plan:
    # Chunks of equal size (one compile per bucket), each about a dispatch's cache-sized block of matrices: one
    # program over a batch far larger than the cache runs every pass from memory (``_DISPATCH_BYTES``). The last
    # chunk is filled up with zero matrices (not tested, dropped).
    size = _balanced(len(bucket), _DISPATCH_BYTES // (4 * big_m * big_n))
    for start in range(0, len(bucket), size):
      members = bucket[start:start + size]
      xs = np.zeros((size, big_m, big_n), np.float32)
      finite = np.ones(size, dtype=bool)
      nonzero = np.zeros(size, dtype=bool)
      for j, i in enumerate(members):
        finite[j], nonzero[j] = np.all(np.isfinite(prepared[i])), np.any(prepared[i] != 0)
        m, n = dims[i]
        xs[j, :m, :n] = _oriented_scaled(prepared[i], finite[j])
      # The filling matrices take the first member's shape, so that they never make a cohort of their own.
      fill = [members[0]] * (size - len(members))
      batch = _Batch(xs=jnp.asarray(xs), dims=np.array([dims[i] for i in members + fill]),
                     shapes=[prepared[i].shape for i in members + fill], finite=finite, nonzero=nonzero,
                     max_rank=np.array([ranks[i] for i in members] + [0] * len(fill)))
      for i, res in zip(members, _sequential_test(batch, opts, level, seed)):
        results[i] = res
  return results


def _minus_init(x: np.ndarray, init, name: str, init_name: str, ndim: int) -> np.ndarray:
  """``x`` itself, or ``x - init`` in float64 (the update ``dW``) when an ``init`` is given, of ``x``'s shape."""
  if init is None:
    return x
  x0 = _as_float_batch(init, init_name, ndim=ndim)
  if x0.shape != x.shape:
    raise ValueError(f"{init_name}: expected the shape of {name} {x.shape}, got {x0.shape}")
  return x.astype(np.float64) - x0.astype(np.float64)


def _oriented_scaled(x: np.ndarray, finite) -> np.ndarray:
  """Matrices ``x`` (..., a, b) as the test takes them: zero where ``finite`` (...,) is false, transposed when
  ``a > b``, divided by ``sqrt(max(a, b))`` (singular values in the lab's convention), float32."""
  a, b = x.shape[-2:]
  x = np.where(np.asarray(finite)[..., None, None], x, 0.0)
  if a > b:
    x = np.swapaxes(x, -1, -2)
  return (x / np.sqrt(max(a, b))).astype(np.float32)


def _validated_max_rank(max_rank, shape) -> int:
  m = min(shape)
  if max_rank is None:
    return default_max_rank(shape)
  if not isinstance(max_rank, (int, np.integer)) or not 0 <= max_rank <= m - 1:
    raise ValueError(f"max_rank: expected an integer in [0, M - 1 = {m - 1}], got {max_rank!r}")
  return int(max_rank)


def _check_mc_draws(opts: StructureOptions, level: float) -> None:
  if opts.p_value == "mc" and math.floor(level * (opts.draws + 1) + 1e-9) < 1:
    raise ValueError(f"draws: the Monte Carlo p-value at level {level} needs at least {math.ceil(1 / level) - 1} "
                     f"draws, got {opts.draws}")


@dataclasses.dataclass(frozen=True)
class _Batch:
  """Matrices ready for the test. ``xs`` (B, M, N) float32: matrix ``i`` of original shape ``shapes[i] = (a, b)``,
  transposed when ``a > b``, scaled by ``1 / sqrt(n_i)`` and zero-padded from its ``dims[i] = (m_i, n_i)``
  (``min, max`` of ``a, b``); non-finite matrices are zero here and flagged in ``finite`` (B,); ``nonzero`` (B,);
  ``max_rank`` (B,) the most components to accept in each."""
  xs: jax.Array
  dims: np.ndarray
  shapes: list
  finite: np.ndarray
  nonzero: np.ndarray
  max_rank: np.ndarray


def _cohorts(keys: np.ndarray) -> list:
  """The rows (B,) sharing each distinct row of ``keys`` (B, k), as index arrays; ``[None]`` (all rows, as one
  batch) when every row has the same key."""
  distinct, which = np.unique(keys, axis=0, return_inverse=True)
  if len(distinct) == 1:
    return [None]
  return [np.flatnonzero(which.ravel() == j) for j in range(len(distinct))]


def _rows(a, idx):
  """``a[idx]`` (``a`` itself for ``idx = None``)."""
  return a if idx is None else a[idx]


def _sequential_test(batch: _Batch, opts: StructureOptions, level: float, seed: int) -> list[StructureResult]:
  """The sequential sign-flip test (module docstring) of every matrix of ``batch``.

  Rounds are batched: the components accepted so far are padded to ``kpad``, a multiple of 8 over the batch's
  largest count, and each round's Krylov width is ``min(m_i, kpad + block)``. So a matrix's later rounds can
  depend on the other matrices of its batch through that width (any width gives a valid test: the same statistic
  is taken on the matrix and on its draws). The matrices of a round whose width and step count differ (padded
  matrices of different ``m_i``) are run as separate cohorts.
  """
  method = opts.method()
  nb, big_m, big_n = batch.xs.shape
  m_i, n_i = batch.dims[:, 0], batch.dims[:, 1]
  block = min(opts.block, int(m_i.min()))
  p_fn = _tail_p_values if opts.p_value == "tail" else _mc_p_values
  key = jax.random.key(int(seed))
  words = -(-n_i // 32)
  row_words = None if np.all(words == -(-big_n // 32)) else jnp.asarray(words, jnp.int32)
  max_rank = batch.max_rank

  accepted = np.zeros(nb, dtype=int)
  active = batch.finite & batch.nonzero & (max_rank > 0)
  stats, thresholds, pvals = ([[] for _ in range(nb)] for _ in range(3))
  capped = np.zeros(nb, dtype=bool)
  rounds = np.zeros(nb, dtype=int)
  floor = np.zeros(nb)
  resolved = np.zeros(nb, dtype=bool)
  draws_used = np.zeros(nb, dtype=int)
  most = int(max_rank.max())
  u_acc, s_acc, v_acc = np.zeros((nb, big_m, most)), np.zeros((nb, most)), np.zeros((nb, big_n, most))
  r = 0
  while np.any(active):
    round_key = jax.random.fold_in(key, r)
    kpad = _round_up(int(np.max(accepted)), 8)  # padded component count: bounds recompilation
    widths = np.minimum(m_i, kpad + block)
    steps = np.maximum(1, np.minimum(opts.steps, m_i // widths))
    u, sv_acc, v = (_padded(c, kpad) for c in (u_acc, s_acc, v_acc))
    parts = []
    for idx in _cohorts(np.stack([widths, steps], axis=1)):
      first = 0 if idx is None else idx[0]
      part = [jnp.asarray(_rows(c, idx), jnp.float32) for c in (u, sv_acc, v)]
      observed = _round_observed(
          _rows(batch.xs, idx), *part, _rows(accepted, idx), round_key, width=int(widths[first]),
          steps=int(steps[first]), block=block, row_words=None if row_words is None else _rows(row_words, idx))
      parts.append((idx, part, observed))
    t_obs = _stitched([(idx, np.asarray(o.statistics, np.float64)) for idx, _, o in parts], nb)
    if r == 0:
      floor = opts.resolution * t_obs[:, 0]
    below = active & (t_obs[:, 0] <= floor)  # only round-off is left
    active[below], resolved[below] = False, True
    null = np.full((nb, opts.draws), np.nan, np.float32)
    passed = np.zeros(nb, dtype=bool)
    for idx, part, observed in parts:
      first = 0 if idx is None else idx[0]
      rows = slice(None) if idx is None else idx
      null[rows], passed[rows] = _screen(observed, *part, accepted[rows], round_key, active[rows], opts, p_fn,
                                         int(steps[first]))
    draws_used += np.where(active, np.sum(np.isfinite(null), axis=1), 0)
    new = np.zeros(nb, dtype=int)
    for i in np.flatnonzero(active):
      rounds[i] += 1
      drawn = null[i][np.isfinite(null[i])].astype(np.float64)
      p, thr = p_fn(t_obs[i], drawn, level)
      limit = min(block, max_rank[i] - accepted[i], widths[i] - accepted[i])
      run = 0
      while passed[i] and run < limit and p[run] <= level and t_obs[i, run] > floor[i]:
        run += 1
      tested = max(run, 1)  # a failed test after accepted ones is repeated against next round's null
      stats[i].extend(t_obs[i, :tested])
      thresholds[i].extend([thr] * tested)
      pvals[i].extend(p[:tested])
      new[i] = run
      if run == 0:
        active[i] = False
      elif accepted[i] + run >= max_rank[i]:
        active[i], capped[i] = False, True
    if not np.any(new):
      break
    total = accepted + new
    k = int(np.max(total))
    for idx, sv, left, rvec in _refined(batch.xs, m_i, [(idx, o.right) for idx, _, o in parts], k, opts, round_key):
      for j, i in enumerate(range(nb) if idx is None else idx):
        if new[i]:  # all components of a grown matrix, re-estimated together: top singular triplets
          t = total[i]
          u_acc[i, :, :t], s_acc[i, :t], v_acc[i, :, :t] = left[j, :, :t], sv[j, :t], rvec[j, :, :t]
    accepted = total
    r += 1

  results = []
  for i in range(nb):
    if not batch.finite[i]:
      results.append(_error_result(batch.shapes[i], level, method, "error: analysed matrix has NaN or Inf entries"))
      continue
    k = int(accepted[i])
    u_i, v_i = u_acc[i, :m_i[i], :k], v_acc[i, :n_i[i], :k]
    a, b = batch.shapes[i]
    if a > b:
      u_i, v_i = v_i, u_i
    status = "ok" if batch.nonzero[i] else "ok (zero matrix)"
    if capped[i]:
      status = "ok (max_rank reached)"
    elif resolved[i]:
      status = "ok (remainder below resolution)"
    results.append(StructureResult(
        rank=k, singular_values=np.asarray(stats[i], np.float64), null_thresholds=np.asarray(thresholds[i]),
        p_values=np.asarray(pvals[i]), u=u_i.copy(), v=v_i.copy(), s=s_acc[i, :k].copy(), level=level,
        method=method, status=status, shape=(a, b), rounds=int(rounds[i]), null_draws=int(draws_used[i])))
  return results


def _stitched(parts, nb: int):
  """Rows ``(idx, values)`` of cohorts put back in batch order: (nb, ...), zero-padded where a cohort's trailing
  axes are the shorter (right Ritz vectors of a narrower Krylov width); the values themselves for one cohort of the
  whole batch (``idx = None``)."""
  if len(parts) == 1 and parts[0][0] is None:
    return parts[0][1]
  parts = [(idx, np.asarray(values)) for idx, values in parts]
  trailing = tuple(max(v.shape[d] for _, v in parts) for d in range(1, parts[0][1].ndim))
  out = np.zeros((nb,) + trailing, parts[0][1].dtype)
  for idx, values in parts:
    out[(idx,) + tuple(slice(0, d) for d in values.shape[1:])] = values
  return out


def _round_up(k: int, multiple: int) -> int:
  return -(-k // multiple) * multiple


def _padded(c: np.ndarray, width: int) -> np.ndarray:
  """The first ``width`` components (last axis) of ``c``, zero-padded when it has fewer."""
  out = np.zeros(c.shape[:-1] + (width,), c.dtype)
  take = min(width, c.shape[-1])
  out[..., :take] = c[..., :take]
  return out


def _refined(xs, m_i: np.ndarray, rights, k: int, opts: StructureOptions, round_key):
  """Top-``k`` Ritz triplets of ``xs`` (B, M, N) by block Krylov warm-started from this round's right Ritz vectors
  plus ``oversample`` Gaussian columns: the accepted components, re-estimated together.

  ``m_i`` (B,): each matrix's true row count; ``rights``: ``(rows, right (b, N, width))`` per cohort of the round
  (``rows = None``: the whole batch). Yields ``(rows, sv, left, right)`` (float64) per cohort of equal refinement
  width and steps (one, the whole batch, when every ``m_i`` is equal).
  """
  nb, _, n = xs.shape
  widths = np.minimum(m_i, _round_up(k + opts.oversample, 8))
  steps = np.maximum(1, np.minimum(opts.refine_steps, m_i // widths))
  right = _stitched(rights, nb)
  for idx in _cohorts(np.stack([widths, steps], axis=1)):
    first = 0 if idx is None else idx[0]
    width = int(widths[first])
    extra = jax.random.normal(jax.random.fold_in(round_key, 2), (nb if idx is None else len(idx), n, width),
                              jnp.float32)
    start = jnp.concatenate([jnp.asarray(_rows(right, idx))[..., :k], extra], axis=-1)[..., :width]
    x = _rows(xs, idx)
    xt = jax.block_until_ready(_transposed(x)) if _uses_transposed(x) else None
    yield (idx, *(np.asarray(t, np.float64) for t in _refine(x, start, xt, steps=int(steps[first]))))


def structure_rank(w, *, init=None, level: float = 0.01, seed: int = 0, max_rank: int | None = None,
                   **method_options) -> StructureResult:
  """Structure rank of one matrix ``w`` (a, b), or of ``dW = w - init`` when ``init`` is given.

  See ``structure_rank_batch`` (this is a batch of one) and the module docstring for the null and conventions.

  Raises:
    ValueError: ``w`` (or ``init``) is not a floating 2-D matrix with both dimensions >= 2, or has NaN/Inf
      entries; or a bad ``level``, ``max_rank`` or option.
  """
  arr = np.asarray(w) if getattr(w, "shape", None) is None else w
  shape = tuple(getattr(arr, "shape", ()))
  if len(shape) != 2:
    raise ValueError(f"w: expected a 2-D matrix, got an array of shape {shape}")
  if min(shape) < 2:
    raise ValueError(f"w: expected both dimensions >= 2, got shape {shape} (empty or 1 x n matrix)")
  if init is not None:
    init_shape = tuple(getattr(init, "shape", np.shape(init)))
    if init_shape != shape:
      raise ValueError(f"init: expected the shape of w {shape}, got {init_shape}")
    init = np.asarray(init)[None]
  result = structure_rank_batch(np.asarray(arr)[None] if not isinstance(arr, jax.Array) else arr[None],
                                inits=init, level=level, seed=seed, max_rank=max_rank, **method_options)[0]
  if result.status.startswith("error"):
    name = "w - init" if init is not None else "w"
    raise ValueError(f"{name}: {result.status.removeprefix('error: ')}")
  return result
