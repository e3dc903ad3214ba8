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
arXiv:1504.05477) of ``steps`` blocks of width ``block`` grown from a seeded Gaussian start ``Y0`` shared by the
observed matrix and every null draw. Because the same deterministic procedure is applied to ``X`` and to each
``X o S_d``, the exchangeability argument holds for ``T`` itself: an unconverged Krylov estimate cannot make the
test anti-conservative (it can only cost power, and ``block * steps = 32`` Krylov directions put the Ritz value of
a bulk edge within a fraction of its Tracy-Widom fluctuation). Ritz values never exceed the singular values they
approximate (Cauchy interlacing).

Sequential deflation. With ``k`` components accepted, the residual ``R_k = X - sum_{j<=k} sigma_j u_j v_j^T``
(top-``k`` triplets of ``X`` refined by block Krylov) is tested: its Ritz values ``T_1(R_k) >= T_2(R_k) >= ...``
(estimates of ``sigma_{k+1}(X), sigma_{k+2}(X), ...``) are compared with the null of the TOP Ritz value of the
projected, energy-matched flips ``c P_u (R_k o S) P_v`` (``P_u``, ``P_v`` project off the removed components;
``c`` restores on average the energy the projection takes from a flip, ``projected_flip_scale``). ``R_k`` lives in
an ``(M - k) x (N - k)`` complement; plain flips of it would spread its energy over all ``M x N`` directions and
put the null edge too low by a factor of about ``1 - k (1/M + 1/N) / 2`` (3.6% for ``k = 3`` in 32 x 128), which
makes the test after deflation anti-conservative. The leading run of those beyond the null threshold is accepted (at most ``block`` per round) and the
next round deflates them and tests again; the test stops at the first round that accepts nothing. Deflation keeps strong components from inflating the null of weaker ones (in ``X o S``
a component's energy is spread into the noise). Under the global null (independent symmetric entries) the first
comparison is the exact test at ``level``, so the family-wise false-alarm rate, ``P(rank >= 1)``, is ``level``
(exactly with the Monte Carlo p-value, to the accuracy of the tail model otherwise). Comparing ``sigma_{k+2}`` with
the null of the top value is conservative, and a residual that still holds true components has an inflated null,
also conservative.

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
matrices of a batch, so a matrix's result does not depend on the other matrices of its batch (up to float
round-off of batched products). Same seed, same input: bit-identical result on one machine.
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
  """
  draws: int = 24
  block: int = 8
  steps: int = 4
  p_value: str = "tail"
  refine_steps: int = 4
  oversample: int = 8

  def __post_init__(self):
    for name in ("draws", "block", "steps", "refine_steps"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not isinstance(self.oversample, (int, np.integer)) or self.oversample < 0:
      raise ValueError(f"oversample: expected a non-negative integer, got {self.oversample!r}")
    if self.draws < 4:
      raise ValueError(f"draws: expected at least 4 null draws, got {self.draws}")
    if self.p_value not in P_VALUE_MODES:
      raise ValueError(f"p_value: expected one of {P_VALUE_MODES}, got {self.p_value!r}")

  def method(self) -> str:
    tail = "TW1 location-scale tail" if self.p_value == "tail" else "Monte Carlo p-value"
    return (f"signflip-deflated (Hong, Sheng & Dobriban 2020): {tail} on {self.draws} draws per round, "
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
    p_values: (t,) p-value of each tested component.
    u: (a, rank) left singular vectors of the structured components, in the original coordinates.
    v: (b, rank) right singular vectors.
    s: (rank,) their singular values (of ``X / sqrt(N)``), refined.
    level: the false-alarm level.
    method: the null and its options, in words.
    status: ``"ok"``, ``"ok (zero matrix)"``, ``"ok (max_rank reached)"`` or ``"error: ..."``.
    shape: ``(a, b)``.
    rounds: deflation rounds run.
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


def _matrix_krylov(x, y0, steps: int):
  """``_block_krylov`` of an explicit matrix ``x`` (..., M, N)."""
  return _block_krylov(lambda y: jnp.matmul(x, y, precision=_HP), lambda z: jnp.matmul(_t(x), z, precision=_HP),
                       y0, steps)


def _project_off(basis, y):
  """``(I - basis basis^T) y``; zero columns of ``basis`` (components not accepted) project nothing."""
  return y - jnp.matmul(basis, jnp.matmul(_t(basis), y, precision=_HP), precision=_HP)


def projected_flip_scale(resid, u, v):
  """Scale ``c`` that gives the projected flip ``c P_u (R o S) P_v`` the energy of ``R`` on average over ``S``.

  ``P_u = I - u u^T``, ``P_v = I - v v^T`` for orthonormal (or zero) columns ``u`` (..., M, k), ``v`` (..., N, k).
  With row leverages ``l_m = |u_m|^2`` and column leverages ``r_j = |v_j|^2``, the expectation over iid signs is
  ``E |P_u (R o S) P_v|_F^2 = sum_mj R_mj^2 (1 - l_m) (1 - r_j)`` (cross terms vanish), and ``c`` is the square
  root of ``|R|_F^2`` over it: the projection removes about ``k (1/M + 1/N)`` of a flip's energy and none of ``R``'s,
  which lies in the complement already.
  """
  r2 = resid * resid
  lu = 1.0 - jnp.sum(u * u, axis=-1)  # (..., M)
  lv = 1.0 - jnp.sum(v * v, axis=-1)  # (..., N)
  kept = jnp.sum(r2 * lu[..., :, None] * lv[..., None, :], axis=(-2, -1))
  total = jnp.sum(r2, axis=(-2, -1))
  return jnp.sqrt(total / jnp.maximum(kept, jnp.finfo(resid.dtype).tiny))


def sign_flip(x, key):
  """``x o S`` for ``S`` iid uniform +-1 (shared over the leading batch axes), by xor-ing the float sign bit.

  32 signs come from each random ``uint32``; for a matrix ``(M, N)`` that is ``M * ceil(N / 32)`` random words.
  """
  m, n = x.shape[-2], x.shape[-1]
  words = jax.random.bits(key, (m, -(-n // 32)), jnp.uint32)
  shifts = jnp.arange(32, dtype=jnp.uint32)
  bits = ((words[:, :, None] >> shifts[None, None, :]) & jnp.uint32(1)).reshape(m, -1)[:, :n]
  bits = bits.reshape((1,) * (x.ndim - 2) + (m, n))
  raw = jax.lax.bitcast_convert_type(x, jnp.uint32)
  return jax.lax.bitcast_convert_type(raw ^ (bits << jnp.uint32(31)), jnp.float32)


@functools.partial(jax.jit, static_argnames=("draws", "block", "steps"))
def _round_statistics(resid, u, v, key, *, draws: int, block: int, steps: int):
  """One deflation round for a batch ``resid`` (B, M, N) of residuals, already scaled by ``1 / sqrt(N)``.

  ``u`` (B, M, K), ``v`` (B, N, K): orthonormal bases of the components removed so far (zero columns for none).
  The null draws are the projected, energy-matched flips ``c P_u (R o S_d) P_v`` (``projected_flip_scale``): the
  residual lives in the complement of the removed components, so its flips are put there too (with ``K = 0`` they
  are plain flips). Returns the observed Ritz values (B, block) with their left (B, M, block) and right
  (B, N, block) vectors, and the null top Ritz values (B, draws).
  """
  y0 = jax.random.normal(jax.random.fold_in(key, 0), (resid.shape[-1], block), jnp.float32)
  y0 = jnp.broadcast_to(y0, resid.shape[:-2] + y0.shape)
  sv, left, right = _matrix_krylov(resid, y0, steps)
  flip_key = jax.random.fold_in(key, 1)
  scale = projected_flip_scale(resid, u, v)[:, None, None]

  def one_draw(d):
    f = sign_flip(resid, jax.random.fold_in(flip_key, d)) * scale
    apply = lambda y: _project_off(u, jnp.matmul(f, _project_off(v, y), precision=_HP))
    apply_t = lambda z: _project_off(v, jnp.matmul(_t(f), _project_off(u, z), precision=_HP))
    return _block_krylov(apply, apply_t, y0, steps)[0][..., 0]

  null = jax.lax.map(one_draw, jnp.arange(draws))  # (draws, B)
  return sv[..., :block], left[..., :block], right[..., :block], null.T


@functools.partial(jax.jit, static_argnames=("steps",))
def _refine(x, y0, *, steps: int):
  """Ritz triplets of ``x`` (B, M, N) from a warm start ``y0`` (B, N, w): the components to deflate."""
  return _matrix_krylov(x, y0, steps)


@jax.jit
def _deflate(x, u, s, v):
  """``x - u diag(s) v^T`` batched; ``s`` is zero for components not (yet) accepted."""
  return x - jnp.matmul(u * s[..., None, :], _t(v), precision=_HP)


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
  return p, float(ordered[b - allowed - 1])


# --------------------------------------------------------------------------------------------------------------
# Public API.

def _validate_level(level: float) -> float:
  level = float(level)
  if not 0.0 < level < 1.0:
    raise ValueError(f"level: expected a false-alarm probability in (0, 1), got {level}")
  return level


def _as_float_batch(x, name: str) -> np.ndarray:
  arr = np.asarray(x)
  if arr.dtype.kind == "V" or str(arr.dtype) in ("bfloat16", "float16"):
    arr = np.asarray(jnp.asarray(x, jnp.float32))
  if arr.ndim != 3:
    raise ValueError(f"{name}: expected a batch of matrices (B, a, b), got an array of shape {arr.shape}")
  if arr.shape[0] == 0 or min(arr.shape[1:]) < 2:
    raise ValueError(f"{name}: expected B >= 1 matrices with both dimensions >= 2, got shape {arr.shape}")
  if arr.dtype.kind not in "f":
    raise ValueError(f"{name}: expected a floating dtype, got {arr.dtype}")
  return arr


def _error_result(shape, level, method, status) -> StructureResult:
  a, b = shape
  empty = np.zeros((0,))
  return StructureResult(rank=-1, singular_values=empty, null_thresholds=empty, p_values=empty,
                         u=np.zeros((a, 0)), v=np.zeros((b, 0)), s=empty, level=level, method=method,
                         status=status, shape=(a, b), rounds=0)


def structure_rank_batch(ws, *, inits=None, level: float = 0.01, seed: int = 0, max_rank: int | None = None,
                         **method_options) -> list[StructureResult]:
  """Structure rank of each matrix of a batch ``ws`` (B, a, b) against its own sign-flip null (module docstring).

  Args:
    ws: (B, a, b) matrices of one shape (numpy or JAX; bf16/fp16 upcast).
    inits: optional (B, a, b) initial values; then ``dW = ws - inits`` is analysed.
    level: false-alarm level of each test; the family-wise rate under independent entries.
    seed: integer seed of the Krylov start and the sign flips.
    max_rank: the most components to accept (default ``min(M - 1, 64)``).
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
  x = _as_float_batch(ws, "ws")
  if inits is not None:
    x0 = _as_float_batch(inits, "inits")
    if x0.shape != x.shape:
      raise ValueError(f"inits: expected the shape of ws {x.shape}, got {x0.shape}")
    x = x.astype(np.float64) - x0.astype(np.float64)
  nb, a, b = x.shape
  transpose = a > b
  m, n = min(a, b), max(a, b)
  if max_rank is None:
    max_rank = min(m - 1, 64)
  if not isinstance(max_rank, (int, np.integer)) or not 0 <= max_rank <= m - 1:
    raise ValueError(f"max_rank: expected an integer in [0, M - 1 = {m - 1}], got {max_rank!r}")
  if opts.p_value == "mc" and math.floor(level * (opts.draws + 1) + 1e-9) < 1:
    raise ValueError(f"draws: the Monte Carlo p-value at level {level} needs at least {math.ceil(1 / level) - 1} "
                     f"draws, got {opts.draws}")
  method = opts.method()

  finite = np.all(np.isfinite(x), axis=(1, 2))
  nonzero = np.any(x != 0, axis=(1, 2))
  xs = np.where(finite[:, None, None], x, 0.0)
  if transpose:
    xs = np.swapaxes(xs, 1, 2)
  xs = jnp.asarray((xs / np.sqrt(n)).astype(np.float32))  # (B, M, N), singular values in the lab's convention

  block = min(opts.block, m)
  steps = max(1, min(opts.steps, m // block))
  p_fn = _tail_p_values if opts.p_value == "tail" else _mc_p_values
  key = jax.random.key(int(seed))

  accepted = np.zeros(nb, dtype=int)
  active = finite & nonzero & (max_rank > 0)
  stats, thresholds, pvals = ([[] for _ in range(nb)] for _ in range(3))
  capped = np.zeros(nb, dtype=bool)
  rounds = np.zeros(nb, dtype=int)
  u_acc, s_acc, v_acc = np.zeros((nb, m, max_rank)), np.zeros((nb, max_rank)), np.zeros((nb, n, max_rank))
  resid = xs
  r = 0
  while np.any(active):
    round_key = jax.random.fold_in(key, r)
    u_basis, v_basis = _removed_bases(u_acc, v_acc, accepted)
    t_obs, _, right, null = _round_statistics(resid, u_basis, v_basis, round_key, draws=opts.draws, block=block,
                                              steps=steps)
    t_obs, null = np.asarray(t_obs, np.float64), np.asarray(null, np.float64)
    new = np.zeros(nb, dtype=int)
    for i in np.flatnonzero(active):
      rounds[i] += 1
      p, thr = p_fn(t_obs[i], null[i], level)
      limit = min(block, max_rank - accepted[i])
      run = 0
      while run < limit and p[run] <= level:
        run += 1
      tested = max(run, 1)  # a failed test after accepted ones is repeated on the deflated residual next round
      stats[i].extend(t_obs[i, :tested])
      thresholds[i].extend([thr] * tested)
      pvals[i].extend(p[:tested])
      new[i] = run
      if run == 0:
        active[i] = False
      elif accepted[i] + run >= max_rank:
        active[i], capped[i] = False, True
    if not np.any(new):
      break
    sv, left, rvec = _refined(resid, right, opts, round_key)
    for i in np.flatnonzero(new):
      lo, hi = accepted[i], accepted[i] + new[i]
      u_acc[i, :, lo:hi], s_acc[i, lo:hi], v_acc[i, :, lo:hi] = left[i, :, :new[i]], sv[i, :new[i]], rvec[i, :, :new[i]]
    accepted += new
    resid = _deflate(xs, jnp.asarray(u_acc, jnp.float32), jnp.asarray(s_acc, jnp.float32),
                     jnp.asarray(v_acc, jnp.float32))
    r += 1

  results = []
  for i in range(nb):
    if not finite[i]:
      results.append(_error_result((a, b), level, method, "error: analysed matrix has NaN or Inf entries"))
      continue
    k = int(accepted[i])
    u_i, v_i = u_acc[i, :, :k], v_acc[i, :, :k]
    if transpose:
      u_i, v_i = v_i, u_i
    status = "ok" if nonzero[i] else "ok (zero matrix)"
    if capped[i]:
      status = "ok (max_rank reached)"
    results.append(StructureResult(
        rank=k, singular_values=np.asarray(stats[i], np.float64), null_thresholds=np.asarray(thresholds[i]),
        p_values=np.asarray(pvals[i]), u=u_i.copy(), v=v_i.copy(), s=s_acc[i, :k].copy(), level=level,
        method=method, status=status, shape=(a, b), rounds=int(rounds[i])))
  return results


def _removed_bases(u_acc: np.ndarray, v_acc: np.ndarray, accepted: np.ndarray):
  """Orthonormal bases (B, M, K), (B, N, K) of each matrix's accepted components, zero-padded to a common width
  ``K`` (the largest count rounded up to a multiple of 8, to bound recompilation; 0 before any is accepted)."""
  nb, m, _ = u_acc.shape
  width = -(-int(np.max(accepted)) // 8) * 8
  u = np.zeros((nb, m, width), np.float32)
  v = np.zeros((nb, v_acc.shape[1], width), np.float32)
  for i in np.flatnonzero(accepted):
    u[i, :, :accepted[i]] = np.linalg.qr(u_acc[i, :, :accepted[i]])[0]
    v[i, :, :accepted[i]] = np.linalg.qr(v_acc[i, :, :accepted[i]])[0]
  return jnp.asarray(u), jnp.asarray(v)


def _refined(resid, right, opts: StructureOptions, round_key):
  """Top Ritz triplets of the residuals ``resid`` (B, M, N) by block Krylov warm-started from this round's Ritz
  vectors ``right`` (B, N, block) plus ``oversample`` Gaussian columns: the components accepted this round."""
  nb, m, n = resid.shape
  extra = jax.random.normal(jax.random.fold_in(round_key, 2), (nb, n, opts.oversample), jnp.float32)
  start = jnp.concatenate([right, extra], axis=-1)[..., :m]
  steps = max(1, min(opts.refine_steps, m // start.shape[-1]))
  return tuple(np.asarray(t, np.float64) for t in _refine(resid, start, steps=steps))


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
