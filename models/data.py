"""Token streams whose structure is a knob, generated on device as pure functions of (key, step).

Every data kind (``DataConfig.kind``) is a ``Task``: ``train_batch(key, step, p)`` and ``eval_batch(key, i, p)``
return ``(tokens_BxL1, weights_BxL)``: int32 tokens of shape ``(B, L + 1)`` (inputs ``[:, :-1]``, targets
``[:, 1:]``) and float32 weights on the ``L`` targets saying which ones are scored (``None`` = all of them). Each
task reports ``entropy_rate(p) -> (bits, exact)``: the conditional entropy per *scored* target token given its
context, i.e. the loss floor in bits (exact where it is known analytically, an estimate or upper bound otherwise).

The knob ``p`` (one per member) is the probability that a scored token is replaced by a uniform draw. With ``h(p, n)
= -(1-p+p/n) log2(1-p+p/n) - (n-1)(p/n) log2(p/n)`` the entropy of "the rule's token w.p. ``1-p+p/n``, each other
symbol w.p. ``p/n``":

- ``affine_noise`` (the flagship): ``x_0 ~ U{0..V-1}``, ``x_{t+1} = (a x_t + b) mod V`` w.p. ``1 - p``, else uniform;
  the chain continues from the replaced token. Exact rate ``h(p, V)``. With ``gcd(a, V) = 1`` the rule is a
  permutation of the vocabulary.
- ``markov``: the same with a random permutation (from ``task_seed``): transition matrix ``(1-p) P + p U`` between a
  permutation and uniform; exact rate ``h(p, V)`` (the matrix is doubly stochastic, so the uniform start is
  stationary).
- ``noise``: iid uniform tokens, ``log2 V`` bits whatever ``p``.
- ``modular``: ``[a, OP, b, =, c]`` with ``c = a op b mod P`` (``P = modulus``; OP and = are tokens ``P``, ``P+1``);
  only ``c`` is scored. A fixed split (``task_seed``) puts ``train_fraction`` of the ``P^2`` pairs in training
  (Power et al. 2022; Nanda et al. 2023 use ``P = 113``, 30%); held-out evaluation uses the other pairs, with clean
  answers. Rate ``h(p, P)``.
- ``random_labels``: the same inputs with the answers shuffled over all pairs (a fixed permutation from
  ``task_seed``): the Zhang et al. (2017) control, memorisable on the training pairs, at chance on the test pairs.
  The table is deterministic, so the rate on training pairs is ``h(p, P)`` too.
- ``group``: ``[a, OP, b, =, c]`` with ``c = a b`` the product in a finite non-abelian group ``G`` (``data.group``:
  ``S<n>``, the symmetric group of the permutations of ``{0..n-1}``, or ``D<n>``, the dihedral group of the regular
  ``n``-gon, order ``2n``), elements as tokens ``0..|G|-1``, OP and = tokens ``|G|``, ``|G|+1``. The multiplication
  is composition of maps, ``(a b)(x) = a(b(x))`` (``b`` acts first; ``group_table``). The split, the scoring and the
  clean held-out pairs are those of ``modular`` (Power et al. 2022, arXiv:2201.02177, grok ``S_5`` composition;
  Chughtai et al. 2023, arXiv:2302.03025, study group composition). Rate ``h(p, |G|)``.
- ``copy`` / ``reverse``: ``x_1..x_n SEP y_1..y_n`` with ``x`` uniform over ``V - 1`` symbols, ``y = x`` or reversed;
  only ``y`` is scored. Rate ``h(p, V - 1)``.
- ``dyck``: balanced brackets of ``dyck_types`` kinds (open ``2i``, close ``2i+1``) from depth 0: at depth 0 open,
  at ``dyck_max_depth`` close, else open or close w.p. 1/2, the opened kind uniform. The exact loss floor at ``p = 0``
  propagates the depth distribution (``dyck_entropy_rate``); for ``p > 0`` an upper bound (see ``noisy_bound``).
- ``grammar``: a random probabilistic context-free grammar (``task_seed``) whose rule probabilities are
  ``softmax(logits / grammar_temperature)`` (low temperature: nearly deterministic; high: uniform choices), emitted as
  a stream of sentences. Rate estimated: the derivation entropy per token (Monte Carlo), an upper bound.
- ``teacher``: a planted rank-``k`` teacher. ``A = U diag(s) W^T`` (``V x V``) with ``U``, ``W`` (``V x k``)
  orthonormal columns orthogonal to the constant vector (so every row and column of ``A`` sums to zero) and ``s_i =
  V / sqrt(k)`` (``||A||_F = V``: the teacher logits ``beta A`` have root-mean-square ``beta`` = ``teacher_scale``).
  The chain ``x_0 ~ pi``, ``P(x_{t+1} = y | x_t = x) = (1 - p) softmax(beta A[x])_y + p / V`` with ``pi`` its
  stationary distribution, so every transition is stationary. Exact rate ``sum_x pi(x) H(P(. | x))`` (``pi`` by
  power iteration in float64). With ``teacher_train_sequences = n > 0`` each member trains on its own fixed pool of
  ``n`` sequences (held-out batches stay fresh draws): the rate is then the held-out floor, and the training loss can
  go below it.
- ``text``: English documentation (``pydoc``: CPython's ``pydoc_data.topics``), Python source (``stdlib``) or a
  user's file, byte- or character-level; the last ``heldout_fraction`` of the corpus is held out. Rate estimated by
  LZMA compression of the training split (an upper bound).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import lzma
import math
import pathlib
import sysconfig
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from models.config import DataConfig, group_order


def symbol_entropy(p: float, n: int) -> float:
  """``h(p, n)``: entropy in bits of the rule's symbol kept w.p. ``1 - p`` else replaced by a uniform draw of ``n``."""
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"p: expected a probability in [0, 1], got {p}")
  hit = 1.0 - p + p / n
  miss = p / n
  h = -hit * math.log2(hit) if hit > 0 else 0.0
  if miss > 0:
    h -= (n - 1) * miss * math.log2(miss)
  return h + 0.0  # -0.0 -> 0.0 for p = 0


def noisy_bound(h0: float, p: float, n: int) -> float:
  """Upper bound on the rate of a process of rate ``h0`` observed through token replacement w.p. ``p`` (uniform over
  ``n``): ``H(Y) <= H(Y, Z) = h_b(p) + (1 - p) h0 + p log2 n`` with ``Z`` the replacement indicator."""
  hb = 0.0 if p in (0.0, 1.0) else -p * math.log2(p) - (1 - p) * math.log2(1 - p)
  return h0 if p == 0.0 else hb + (1 - p) * h0 + p * math.log2(n)


def affine_noise_entropy_rate(p: float, vocab_size: int) -> float:
  """Exact entropy rate in bits per token of the affine-noise chain (conditional entropy of x_{t+1} given x_t)."""
  return symbol_entropy(p, vocab_size)


def affine_bayes_margin(p: float, vocab_size: int) -> float:
  """``beta(p) = ln(1 + (1 - p) V / p)``: the log-odds of the rule's token over any other under the affine-noise
  chain (``inf`` at ``p = 0``, 0 at ``p = 1``)."""
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"p: expected a probability in [0, 1], got {p}")
  return math.inf if p == 0.0 else math.log1p((1.0 - p) * vocab_size / p)


def affine_bayes_log_probability_map(p: float, cfg: DataConfig) -> np.ndarray:
  """The Bayes-optimal next-token log-probabilities of the affine-noise chain, ``L[x, y] = log(p / V + (1 - p)
  1[y = f(x)])`` with ``f(x) = (a x + b) mod V`` (``V x V`` float64; needs ``0 < p``).

  ``L = log(p / V) 11^T + beta(p) Pi`` with ``Pi[x, y] = 1[y = f(x)]``. When ``gcd(a, V) = 1``, ``f`` is a bijection,
  ``Pi`` a permutation matrix (orthogonal, ``Pi 1 = Pi^T 1 = 1``), and the centred map ``J L J = beta(p) (Pi - 11^T /
  V) = beta(p) Pi J`` (``J = I - 11^T / V``) has singular values ``beta(p)`` with multiplicity ``V - 1`` and one 0:
  the noise knob ``p`` moves one scale, ``beta(p)``, of a full-rank, flat-spectrum map.
  """
  if not 0.0 < p <= 1.0:
    raise ValueError(f"p: expected a probability in (0, 1] (the map is -inf off the rule at p = 0), got {p}")
  v = cfg.vocab_size
  x = np.arange(v)
  rule = np.zeros((v, v))
  rule[x, (cfg.affine_a * x + cfg.affine_b) % v] = 1.0
  return np.log(p / v + (1.0 - p) * rule)


def _chain_batch(v: int, length: int, batch: int, key: jax.Array, p, next_of: Callable) -> jax.Array:
  k0, kmask, knoise = jax.random.split(key, 3)
  x0 = jax.random.randint(k0, (batch,), 0, v, dtype=jnp.int32)
  replace = jax.random.uniform(kmask, (length - 1, batch)) < p
  noise = jax.random.randint(knoise, (length - 1, batch), 0, v, dtype=jnp.int32)

  def advance(x, inputs):
    rep, nz = inputs
    nxt = jnp.where(rep, nz, next_of(x))
    return nxt, nxt

  _, rest = jax.lax.scan(advance, x0, (replace, noise))
  return jnp.concatenate([x0[None], rest], axis=0).T


def affine_noise_batch(cfg: DataConfig, key: jax.Array, p) -> jax.Array:
  """One batch of the affine-noise chain: int32 tokens of shape (batch_size, seq_len + 1).

  Args:
    cfg: data config (vocabulary V, sequence length L, batch size B, rule coefficients a, b).
    key: PRNG key; the batch is a pure function of it.
    p: noise probability in [0, 1] (a scalar, may be traced so members can differ in p).
  """
  v = cfg.vocab_size
  return _chain_batch(v, cfg.seq_len + 1, cfg.batch_size, key, p, lambda x: (cfg.affine_a * x + cfg.affine_b) % v)


def batch_for_step(cfg: DataConfig, data_key: jax.Array, step, p) -> jax.Array:
  """The affine-noise training batch of ``step``: data order is a function of (member key, step) only."""
  return affine_noise_batch(cfg, jax.random.fold_in(data_key, step), p)


def rule_mismatch_fraction(tokens: np.ndarray, cfg: DataConfig) -> float:
  """Fraction of transitions with ``x_{t+1} != (a x_t + b) mod V``; its expectation is ``p (1 - 1/V)``."""
  tokens = np.asarray(tokens)
  pred = (cfg.affine_a * tokens[:, :-1] + cfg.affine_b) % cfg.vocab_size
  return float(np.mean(pred != tokens[:, 1:]))


def replace_tokens(key: jax.Array, tokens, p, n: int, where=None):
  """Replace each token (only where ``where`` is true) by a uniform draw from ``{0..n-1}`` with probability ``p``."""
  kmask, knoise = jax.random.split(key)
  rep = jax.random.uniform(kmask, tokens.shape) < p
  if where is not None:
    rep = rep & where
  return jnp.where(rep, jax.random.randint(knoise, tokens.shape, 0, n, dtype=jnp.int32), tokens)


@dataclasses.dataclass(frozen=True)
class Task:
  """A data kind bound to its config and its shared random structure.

  ``sample(key, p, train)`` draws one batch; ``train_batch``/``eval_batch`` derive its key from (key, step) so data
  order is a function of (member key, step) only. ``weights`` is ``None`` when every target is scored.
  """

  cfg: DataConfig
  sample: Callable
  entropy_rate: Callable[[float], tuple[float, bool]]
  weights: np.ndarray | None = None
  info: dict = dataclasses.field(default_factory=dict)

  def train_batch(self, key, step, p):
    return self.sample(jax.random.fold_in(key, step), p, True), self.weights

  def eval_batch(self, key, i, p):
    return self.sample(jax.random.fold_in(key, i), p, False), self.weights


def _task_rng(cfg: DataConfig) -> np.random.Generator:
  return np.random.default_rng([cfg.task_seed, 20240611])


def group_elements(name: str) -> np.ndarray:
  """The elements of the group ``name`` as permutations of the points they act on, int64 ``(|G|, points)``; row
  ``g`` is the map ``x -> perm[g, x]`` and row 0 is the identity.

  ``S<n>``: every permutation of ``{0..n-1}`` in lexicographic order (``itertools.permutations``). ``D<n>``: the
  symmetries of the regular ``n``-gon acting on its vertices ``Z_n``, ``r^i s^j: x -> i + (-1)^j x mod n`` at index
  ``j n + i`` (``i < n``, ``j`` in {0, 1}; ``r`` the rotation by one vertex, ``s`` the reflection ``x -> -x``).
  """
  order = group_order(name)  # validates the name
  n = int(name[1:])
  if name[0] == "S":
    perms = np.asarray(list(itertools.permutations(range(n))), np.int64)
  else:
    x = np.arange(n)
    perms = np.asarray([(i + (-1) ** j * x) % n for j in (0, 1) for i in range(n)], np.int64)
  assert perms.shape[0] == order
  return perms


def group_table(name: str) -> np.ndarray:
  """The multiplication table ``T[a, b] = index of a b`` (int64 ``(|G|, |G|)``) with ``(a b)(x) = a(b(x))``: ``b``
  acts first, so ``perm[T[a, b]] = perm[a][perm[b]]``."""
  perms = group_elements(name)
  index = {tuple(p): i for i, p in enumerate(perms.tolist())}
  composed = perms[np.arange(len(perms))[:, None, None], perms[None, :, :]]  # [a, b, x] = perm[a][perm[b][x]]
  return np.asarray([[index[tuple(row)] for row in block] for block in composed.tolist()], np.int64)


def _pair_sequences(n: int, c: np.ndarray, cfg: DataConfig, shuffle: bool) -> tuple[np.ndarray, np.ndarray]:
  """Every pair ``(a, b)`` of ``n`` symbols once as ``[a, n, b, n + 1, c[a n + b]]``, split into (train, test) by
  ``task_seed`` (``train_fraction`` of the ``n^2`` pairs in training); ``shuffle``: answers permuted over pairs."""
  a, b = np.divmod(np.arange(n * n), n)
  rng = _task_rng(cfg)
  order = rng.permutation(n * n)
  n_train = max(1, int(round(cfg.train_fraction * n * n)))
  if shuffle:
    c = c[rng.permutation(n * n)]
  seqs = np.stack([a, np.full_like(a, n), b, np.full_like(a, n + 1), c], axis=1).astype(np.int32)
  return seqs[order[:n_train]], seqs[order[n_train:]]


def group_split(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
  """The fixed (train, test) sequences ``[a, OP, b, =, a b]`` (int32, (pairs, 5)) of a ``group`` config: every pair
  of group elements once, split by ``task_seed`` as ``modular_split`` splits residues."""
  if cfg.kind != "group":
    raise ValueError(f"cfg.kind: expected 'group', got {cfg.kind!r}")
  table = group_table(cfg.group)
  return _pair_sequences(table.shape[0], table.ravel(), cfg, shuffle=False)


def modular_split(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
  """The fixed (train, test) sequences ``[a, OP, b, =, c]`` (int32, (pairs, 5)) of a ``modular`` or ``random_labels``
  config: every pair once, split by ``task_seed`` (``random_labels``: the same split, answers shuffled)."""
  if cfg.kind not in ("modular", "random_labels"):
    raise ValueError(f"cfg.kind: expected 'modular' or 'random_labels', got {cfg.kind!r}")
  n = cfg.modulus
  a, b = np.divmod(np.arange(n * n), n)
  c = {"add": a + b, "sub": a - b, "mul": a * b}[cfg.modular_op] % n
  return _pair_sequences(n, c, cfg, shuffle=cfg.kind == "random_labels")


def _modular_task(cfg: DataConfig) -> Task:
  """The ``modular``, ``random_labels`` and ``group`` tasks: fixed pairs, only the answer scored, clean held-out."""
  n = group_order(cfg.group) if cfg.kind == "group" else cfg.modulus
  train_np, test_np = group_split(cfg) if cfg.kind == "group" else modular_split(cfg)
  n_train = train_np.shape[0]
  train_seqs, test_seqs = jnp.asarray(train_np), jnp.asarray(test_np)

  def sample(key, p, train):
    kidx, knoise = jax.random.split(key)
    pool = train_seqs if train else test_seqs
    tok = pool[jax.random.randint(kidx, (cfg.batch_size,), 0, pool.shape[0])]
    if train:  # held-out answers stay clean: test accuracy measures the true function
      tok = tok.at[:, 4].set(replace_tokens(knoise, tok[:, 4], p, n))
    return tok

  weights = np.zeros(4, np.float32)
  weights[3] = 1.0
  return Task(cfg, sample, lambda p: (symbol_entropy(p, n), True), weights,
              dict(train_pairs=int(n_train), test_pairs=int(n * n - n_train)))


def _copy_task(cfg: DataConfig) -> Task:
  half, sep = cfg.seq_len // 2, cfg.vocab_size - 1

  def sample(key, p, train):
    kx, knoise = jax.random.split(key)
    x = jax.random.randint(kx, (cfg.batch_size, half), 0, sep, dtype=jnp.int32)
    y = x if cfg.kind == "copy" else x[:, ::-1]
    y = replace_tokens(knoise, y, p, sep)
    return jnp.concatenate([x, jnp.full((cfg.batch_size, 1), sep, jnp.int32), y], axis=1)

  weights = np.zeros(cfg.seq_len, np.float32)
  weights[half:] = 1.0
  return Task(cfg, sample, lambda p: (symbol_entropy(p, sep), True), weights)


def dyck_entropy_rate(types: int, max_depth: int, seq_len: int) -> float:
  """Exact mean conditional entropy (bits) of targets ``x_1..x_L`` of the Dyck process started at depth 0.

  Before emitting a token at depth ``d``: ``d = 0`` opens (``log2 k`` bits for the kind), ``d = D`` closes (0 bits,
  the kind is on the stack), otherwise open/close is a fair coin and an opening picks a kind: ``1 + log2(k)/2``.
  The depth distribution is propagated exactly from ``x_0`` at depth 0.
  """
  k, d_max = types, max_depth
  h = np.full(d_max + 1, 1.0 + 0.5 * math.log2(k))
  h[0], h[d_max] = math.log2(k), 0.0
  trans = np.zeros((d_max + 1, d_max + 1))
  trans[0, 1] = trans[d_max, d_max - 1] = 1.0
  for d in range(1, d_max):
    trans[d, d - 1] = trans[d, d + 1] = 0.5
  dist = np.zeros(d_max + 1)
  dist[0] = 1.0
  total = 0.0
  for _ in range(seq_len):
    dist = dist @ trans  # depth before emitting x_t, t = 1..L
    total += float(dist @ h)
  return total / seq_len


def _dyck_task(cfg: DataConfig) -> Task:
  k, d_max, length = cfg.dyck_types, cfg.dyck_max_depth, cfg.seq_len + 1

  def one(key):
    kc, kt = jax.random.split(key)
    coins = jax.random.bernoulli(kc, 0.5, (length,))
    kinds = jax.random.randint(kt, (length,), 0, k, dtype=jnp.int32)

    def emit(carry, inp):
      stack, depth = carry
      coin, kind = inp
      opening = (depth == 0) | ((depth < d_max) & coin)
      top = stack[jnp.maximum(depth - 1, 0)]
      tok = jnp.where(opening, 2 * kind, 2 * top + 1)
      stack = jnp.where(opening, stack.at[depth % d_max].set(kind), stack)
      return (stack, jnp.where(opening, depth + 1, depth - 1)), tok

    _, toks = jax.lax.scan(emit, (jnp.zeros(d_max, jnp.int32), jnp.int32(0)), (coins, kinds))
    return toks

  def sample(key, p, train):
    kb, knoise = jax.random.split(key)
    return replace_tokens(knoise, jax.vmap(one)(jax.random.split(kb, cfg.batch_size)), p, 2 * k)

  h0 = dyck_entropy_rate(k, d_max, cfg.seq_len)
  return Task(cfg, sample, lambda p: (noisy_bound(h0, p, 2 * k), p == 0.0))


def make_grammar(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
  """A random PCFG: ``rhs[n, r] = (s1, s2)`` and rule probabilities ``probs[n, r]``.

  Symbols ``< V`` are terminals, ``V + n`` nonterminal ``n``, ``-1`` empty. Rule 0 of every nonterminal emits a
  single terminal, so derivations terminate (the generator forces it when the stack is full).
  """
  rng = _task_rng(cfg)
  nt, r, v = cfg.grammar_nonterminals, cfg.grammar_rules, cfg.vocab_size
  rhs = np.full((nt, r, 2), -1, np.int32)
  rhs[:, 0, 0] = rng.integers(0, v, nt)
  for n in range(nt):
    for j in range(1, r):
      for s in range(2):
        rhs[n, j, s] = v + rng.integers(0, nt) if rng.random() < 0.5 else rng.integers(0, v)
  logits = rng.normal(size=(nt, r)) * 2.0
  z = logits / cfg.grammar_temperature
  probs = np.exp(z - z.max(axis=1, keepdims=True))
  return rhs, probs / probs.sum(axis=1, keepdims=True)


def _grammar_task(cfg: DataConfig) -> Task:
  v, length, cap = cfg.vocab_size, cfg.seq_len + 1, 32
  rhs_np, probs_np = make_grammar(cfg)
  rhs, logp = jnp.asarray(rhs_np), jnp.asarray(np.log(probs_np), jnp.float32)

  def one(key):
    def emit(carry, k):
      def expand(c):
        stack, size, key, bits = c
        key, kr = jax.random.split(key)
        size = jnp.where(size == 0, 1, size)
        stack = jnp.where(c[1] == 0, stack.at[0].set(v), stack)  # empty: start a new sentence with S = NT 0
        n = stack[size - 1] - v
        rule = jax.random.categorical(kr, logp[n])
        rule = jnp.where(size + 1 >= cap, 0, rule)
        s1, s2 = rhs[n, rule, 0], rhs[n, rule, 1]
        two = s2 >= 0
        stack = stack.at[size - 1].set(jnp.where(two, s2, s1)).at[size].set(jnp.where(two, s1, 0))
        return stack, size + two.astype(jnp.int32), key, bits - logp[n, rule] / math.log(2)

      def needs(c):
        stack, size = c[0], c[1]
        return (size == 0) | (stack[jnp.maximum(size - 1, 0)] >= v)

      stack, size, _, bits = jax.lax.while_loop(needs, expand, (*carry[:2], k, carry[2]))
      return (stack, size - 1, jnp.float32(0)), (stack[size - 1], bits)

    keys = jax.random.split(key, length)
    _, (toks, bits) = jax.lax.scan(emit, (jnp.zeros(cap, jnp.int32), jnp.int32(0), jnp.float32(0)), keys)
    return toks, bits

  def sample(key, p, train):
    kb, knoise = jax.random.split(key)
    toks, _ = jax.vmap(one)(jax.random.split(kb, cfg.batch_size))
    return replace_tokens(knoise, toks, p, v)

  @functools.cache
  def derivation_bits() -> float:
    _, bits = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(cfg.task_seed), 256))
    return float(np.mean(np.asarray(bits)[:, 1:]))

  return Task(cfg, sample, lambda p: (noisy_bound(derivation_bits(), p, v), False))


@dataclasses.dataclass(frozen=True)
class Teacher:
  """A planted rank-``k`` bilinear teacher over ``V`` tokens: logits ``beta A[x]`` with ``A = U diag(s) W^T``.

  Attributes:
    u: ``(V, k)`` float64, orthonormal columns orthogonal to the ones vector: the input-token side (rows of ``A``).
    w: ``(V, k)`` float64, the same for the next-token side (columns of ``A``).
    singular_values: ``(k,)`` float64, each ``V / sqrt(k)``, so ``||A||_F = V`` and the entries of ``A`` have
      root-mean-square 1.
    scale: ``beta`` (``data.teacher_scale``), the root-mean-square teacher logit.
  """

  u: np.ndarray
  w: np.ndarray
  singular_values: np.ndarray
  scale: float

  @property
  def vocab_size(self) -> int:
    return self.u.shape[0]

  @property
  def rank(self) -> int:
    return self.u.shape[1]

  def logit_map(self) -> np.ndarray:
    """``beta A`` (``V x V``, float64): row ``x`` is the teacher's logits for the token after ``x``."""
    return self.scale * (self.u * self.singular_values) @ self.w.T

  def transition_matrix(self, p: float) -> np.ndarray:
    """``P = (1 - p) softmax(beta A) + p / V`` row-wise (``V x V``, float64, rows sum to 1)."""
    if not 0.0 <= p <= 1.0:
      raise ValueError(f"p: expected a probability in [0, 1], got {p}")
    z = self.logit_map()
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (1.0 - p) * e / e.sum(axis=1, keepdims=True) + p / self.vocab_size

  def info(self) -> dict:
    """What run.json records (``info["data"]``): the planted subspaces, for attributing learned directions."""
    return dict(teacher_rank=self.rank, teacher_scale=self.scale, teacher_u=self.u.tolist(),
                teacher_w=self.w.tolist(), teacher_singular_values=self.singular_values.tolist())


def make_teacher(vocab_size: int, rank: int, scale: float, seed: int) -> Teacher:
  """The teacher of ``(vocab_size, rank, scale)`` drawn from ``seed``: ``U``, ``W`` are the Q factors of column-centred
  Gaussian ``V x k`` matrices (Haar on the ``(V - 1)``-dimensional complement of the ones vector)."""
  if not 1 <= rank <= vocab_size - 1:
    raise ValueError(f"rank: expected an integer in [1, vocab_size - 1 = {vocab_size - 1}], got {rank}")
  rng = np.random.default_rng([seed, 20240611, 13])

  def frame():
    g = rng.normal(size=(vocab_size, rank))
    q, r = np.linalg.qr(g - g.mean(axis=0))
    return q * np.sign(np.diagonal(r))[None, :]

  u, w = frame(), frame()
  return Teacher(u, w, np.full(rank, vocab_size / math.sqrt(rank)), float(scale))


def teacher_of(cfg: DataConfig) -> Teacher:
  """The teacher a ``kind = "teacher"`` config plants (from ``task_seed``)."""
  return make_teacher(cfg.vocab_size, cfg.teacher_rank, cfg.teacher_scale, cfg.task_seed)


def stationary_distribution(transition: np.ndarray, *, tol: float = 1e-15, max_iter: int = 100_000) -> np.ndarray:
  """The stationary ``pi`` (``pi P = pi``, ``sum pi = 1``) of a row-stochastic matrix with positive entries, by power
  iteration in float64 (positive entries make the chain primitive, so the iteration converges geometrically)."""
  transition = np.asarray(transition, np.float64)
  pi = np.full(transition.shape[0], 1.0 / transition.shape[0])
  for _ in range(max_iter):
    nxt = pi @ transition
    nxt /= nxt.sum()
    if np.abs(nxt - pi).max() < tol:
      return nxt
    pi = nxt
  raise RuntimeError(f"stationary_distribution: power iteration did not converge to {tol} in {max_iter} steps")


def markov_entropy_rate(transition: np.ndarray) -> float:
  """Entropy rate in bits of the stationary chain: ``sum_x pi(x) H(P(. | x))`` (Cover & Thomas, Theorem 4.2.4)."""
  transition = np.asarray(transition, np.float64)
  logs = np.log2(np.where(transition > 0, transition, 1.0))
  return float(stationary_distribution(transition) @ -(transition * logs).sum(axis=1))


def _stationary_jax(transition):
  """``pi`` of a positive row-stochastic matrix in float32 on device: a row of ``P^(2^30)`` by repeated squaring."""
  def square(m, _):
    m = m @ m
    return m / m.sum(axis=1, keepdims=True), None

  power, _ = jax.lax.scan(square, transition, None, length=30)
  return power.mean(axis=0)


def teacher_sequences(teacher: Teacher, length: int, keys: jax.Array, p) -> jax.Array:
  """One stationary sequence of ``length`` tokens of the teacher chain at noise ``p`` (may be traced) per key:
  int32 ``(len(keys), length)``, sequence ``i`` a function of ``keys[i]`` and ``p`` only."""
  v = teacher.vocab_size
  logits = jnp.asarray(teacher.logit_map(), jnp.float32)
  log_pi = jnp.log(_stationary_jax((1.0 - p) * jax.nn.softmax(logits, axis=1) + p / v))

  def one(key):
    k0, kmask, knoise, knext = jax.random.split(key, 4)
    x0 = jax.random.categorical(k0, log_pi).astype(jnp.int32)
    replace = jax.random.uniform(kmask, (length - 1,)) < p
    noise = jax.random.randint(knoise, (length - 1,), 0, v, dtype=jnp.int32)

    def advance(x, inputs):
      rep, nz, k = inputs
      nxt = jnp.where(rep, nz, jax.random.categorical(k, logits[x]).astype(jnp.int32))
      return nxt, nxt

    _, rest = jax.lax.scan(advance, x0, (replace, noise, jax.random.split(knext, length - 1)))
    return jnp.concatenate([x0[None], rest])

  return jax.vmap(one)(keys)


@dataclasses.dataclass(frozen=True)
class PooledTask(Task):
  """A task trained on a fixed pool of ``pool_size`` sequences per member, drawn with replacement.

  Pool sequence ``i`` is ``sample_sequences(fold_in(k_pool, i)[None], p)`` with ``k_pool`` from the member's data
  key, so the pool is a function of (member key, p) only and never materialised: a step draws ``batch_size`` indices
  and generates just those sequences. Held-out batches (``eval_batch``) stay fresh draws from the process itself.
  """

  sample_sequences: Callable | None = None
  pool_size: int = 0

  def train_batch(self, key, step, p):
    kpool, korder = jax.random.split(key)
    idx = jax.random.randint(jax.random.fold_in(korder, step), (self.cfg.batch_size,), 0, self.pool_size)
    return self.sample_sequences(jax.vmap(lambda i: jax.random.fold_in(kpool, i))(idx), p), self.weights


def _teacher_task(cfg: DataConfig) -> Task:
  teacher = teacher_of(cfg)
  length = cfg.seq_len + 1
  sequences = lambda keys, p: teacher_sequences(teacher, length, keys, p)
  sample = lambda key, p, train: sequences(jax.random.split(key, cfg.batch_size), p)
  rate = lambda p: (markov_entropy_rate(teacher.transition_matrix(p)), True)
  info = teacher.info() | dict(train_transitions=cfg.teacher_train_sequences * cfg.seq_len)
  if cfg.teacher_train_sequences == 0:
    return Task(cfg, sample, rate, info=info)
  return PooledTask(cfg, sample, rate, info=info, sample_sequences=sequences, pool_size=cfg.teacher_train_sequences)


def load_corpus(cfg: DataConfig) -> tuple[np.ndarray, list[str] | None]:
  """The text corpus as int32 token ids and, for character level, the sorted alphabet (``None`` for bytes)."""
  src = cfg.text_source
  if src == "pydoc":
    from pydoc_data import topics
    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
  elif src == "stdlib":
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for f in sorted(root.glob("*.py")):  # top-level modules only, sorted: a fixed corpus per Python version
      t = f.read_text(encoding="utf-8", errors="replace")
      parts.append(t)
      size += len(t)
      if size > 2_000_000:
        break
    text = "\n".join(parts)
  else:
    path = pathlib.Path(src)
    if not path.is_file():
      raise ValueError(f"data.text_source: expected 'pydoc', 'stdlib' or a readable text file, got {src!r}")
    text = path.read_text(encoding="utf-8", errors="replace")
  if cfg.text_level == "byte":
    ids, alphabet, need = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32), None, 256
  else:
    alphabet = sorted(set(text))
    index = {ch: i for i, ch in enumerate(alphabet)}
    ids, need = np.fromiter((index[ch] for ch in text), np.int32, len(text)), len(alphabet)
  if cfg.vocab_size < need:
    raise ValueError(f"data.vocab_size: {cfg.text_level}-level text from {src!r} needs >= {need} tokens, "
                     f"got {cfg.vocab_size}")
  if len(ids) * min(cfg.heldout_fraction, 1 - cfg.heldout_fraction) < 4 * (cfg.seq_len + 1):
    raise ValueError(f"data.text_source: corpus {src!r} too short for data.seq_len = {cfg.seq_len}")
  return ids, alphabet


def _text_task(cfg: DataConfig) -> Task:
  ids, alphabet = load_corpus(cfg)
  cut = int(len(ids) * (1 - cfg.heldout_fraction))
  train_ids, test_ids = jnp.asarray(ids[:cut]), jnp.asarray(ids[cut:])
  length = cfg.seq_len + 1

  def sample(key, p, train):
    kidx, knoise = jax.random.split(key)
    src = train_ids if train else test_ids
    starts = jax.random.randint(kidx, (cfg.batch_size,), 0, src.shape[0] - length + 1)
    toks = jax.vmap(lambda s: jax.lax.dynamic_slice(src, (s,), (length,)))(starts)
    return replace_tokens(knoise, toks, p, cfg.vocab_size)

  train_np = ids[:cut]
  raw = train_np.astype(np.uint8).tobytes() if alphabet is None else "".join(alphabet[i] for i in train_np).encode()

  @functools.cache
  def lzma_bits() -> float:
    return 8.0 * len(lzma.compress(raw, preset=6)) / len(train_np)

  return Task(cfg, sample, lambda p: (noisy_bound(lzma_bits(), p, cfg.vocab_size), False),
              info=dict(corpus_tokens=int(len(ids)), train_tokens=int(cut), alphabet_size=len(alphabet or []) or 256))


def make_task(cfg: DataConfig) -> Task:
  """The ``Task`` of ``cfg.kind`` (shared random structure from ``cfg.task_seed``)."""
  v, length, batch = cfg.vocab_size, cfg.seq_len + 1, cfg.batch_size
  if cfg.kind == "affine_noise":
    return Task(cfg, lambda key, p, train: affine_noise_batch(cfg, key, p), lambda p: (symbol_entropy(p, v), True))
  if cfg.kind == "markov":
    perm = jnp.asarray(_task_rng(cfg).permutation(v).astype(np.int32))
    return Task(cfg, lambda key, p, train: _chain_batch(v, length, batch, key, p, lambda x: perm[x]),
                lambda p: (symbol_entropy(p, v), True))
  if cfg.kind == "noise":
    return Task(cfg, lambda key, p, train: jax.random.randint(key, (batch, length), 0, v, dtype=jnp.int32),
                lambda p: (math.log2(v), True))
  if cfg.kind in ("modular", "random_labels", "group"):
    return _modular_task(cfg)
  if cfg.kind in ("copy", "reverse"):
    return _copy_task(cfg)
  if cfg.kind == "dyck":
    return _dyck_task(cfg)
  if cfg.kind == "grammar":
    return _grammar_task(cfg)
  if cfg.kind == "teacher":
    return _teacher_task(cfg)
  return _text_task(cfg)
