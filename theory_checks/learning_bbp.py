"""Check 11: a network learns a planted rank-k teacher only above a BBP threshold in the effective signal-to-noise.

Data (``data.kind = "teacher"``, ``models.data.Teacher``): the Markov chain ``P(y | x) = (1 - p) softmax(beta A[x])_y
+ p / V`` with ``A = U diag(s) W^T`` of rank ``k``, ``U, W`` orthonormal and orthogonal to the ones vector, ``s_i = V /
sqrt(k)``. Every member trains on its own fixed pool of ``n = teacher_train_sequences * seq_len`` transitions.

Prediction. A network trained to convergence on ``n`` transitions learns the maximum-likelihood next-token map, the
empirical conditional log-probability ``log C[x, y] / C[x, .]``. Centred on both sides (logits are defined up to a
per-row constant), it is, to first order in ``(1 - p) beta A`` and in the counts' relative fluctuations,

    M_hat = (1 - p) beta A + E,    E[x, y] ~ (0, sigma^2),  sigma^2 = 1 / (n pi(x) P(y | x)) ~ V^2 / n,

a rank-k signal in approximately iid noise on the ``(V - 1)``-dimensional complement of the ones vector (a network that
fits each of the ``L`` positions separately averages ``L`` such estimates of ``n / L`` transitions each: the same
``sigma^2``). In the form ``theta u w^T + G / sqrt(N)`` of Benaych-Georges & Nadakuditi 2012 (J. Multivar. Anal.
111:120, arXiv:1103.2221, section 3.1) with ``N = M = V - 1`` (``q = 1``) each planted direction has strength

    theta = (1 - p) beta s / (sigma sqrt(V - 1)) = (1 - p) beta sqrt(n / ((V - 1) k)).

(a) Above threshold each direction is an outlier of the learned map, so its structure rank (the directions the
    matrix's own null cannot produce; DC and positional directions counted separately by attribution) is exactly k.
(b) The squared overlap of the learned top-k subspace with the teacher's switches on at ``theta_c = q^(1/4) = 1``
    and follows ``1 - 1 / theta^2`` above it, on both sides (q = 1); it reaches half its plateau (1) at
    ``theta_1/2 = sqrt(2) theta_c``. Below ``theta_c`` no estimator does better than chance in the large-V limit for
    this (Haar) prior: the spectral threshold is also the information-theoretic one for the spiked model with
    Gaussian / spherical priors (Miolane 2017, arXiv:1702.00473; Perry, Wein, Bandeira & Moitra 2018), so the network
    cannot learn the teacher's directions below it, whatever its optimiser. A single large gradient step shows the same
    kind of transition in the weights (Ba et al. 2022, arXiv:2205.01445); here the network is trained to convergence.

Measurement. One ensemble (one compiled program) sweeps ``theta`` through the per-member noise ``p`` at fixed
``beta`` (``p = 1 - theta / theta_max``), ``seeds`` members per point; an MLP-only one-layer network (its logits at
position t depend only on token t: the end-to-end map is exactly embedding -> MLP -> unembedding), AdamW with a
cosine schedule to 0 so the last iterate is converged rather than SGD-noisy. Per member, from the run folder's last
checkpoint and the initial weights regenerated from the member's key: the token-to-logit map ``M`` on the batch of
every token at every position (``models.token_map``), centred: ``dM = centre(M)`` (the trained map itself, not its
change from initialisation: fitting the data means undoing the random initial map ``M_0``, whose entries are O(1),
so ``M - M_0`` would carry ``-M_0`` as extra noise); the mean of the two squared overlaps
``||U^T U_hat||_F^2 / k`` and ``||W^T W_hat||_F^2 / k`` of its top-k singular subspaces with the teacher's (read
from run.json); the structure rank of ``dM``, of ``dW`` of the embedding and of the unembedding, each structured
direction attributed to DC (the ones vector over tokens; on the model side the mean LayerNorm inputs and the mean
MLP activation of ``models.subspaces``), ``positions`` (the span of the positional embeddings) or the teacher
(``U`` on the input-token side, ``W`` on the output side) when at least half its squared norm lies there.
Rank-vs-k: one small run per ``k`` at ``theta = theta_rank``, p = 0.

The measured transition ``theta_hat_1/2``: where the mean overlap over seeds first crosses 1/2 (linear interpolation
on the grid); error bar: bootstrap over seeds within each point (``BOOTSTRAP`` resamples), its standard deviation.
A numpy simulation of the plug-in estimator (empirical log-conditionals per position, averaged) at the same ``V, k, n,
L`` is reported alongside as the finite-size reference the network should match.

Tolerance (fixed here, before any run):
- (b) PASS when ``|theta_hat_1/2 - sqrt(2) theta_c| <= 3 SE + FINITE_SIZE * sqrt(2) theta_c`` with ``FINITE_SIZE =
  0.10``: the plug-in estimator itself crosses 1/2 at 1.45-1.50 (+3% to +6%) at V = 16 and 32 (numpy simulation with
  20 seeds when this check was designed; the critical window is ``O(V^(-1/3))`` and the overlap bias ``O(1/V)``), so
  10% bounds the finite-size shift; the same rule with the threshold of a wrong theory FAILs (tests).
  INCONCLUSIVE when the mean overlap does not cross 1/2 inside the grid (nothing learned, or the grid misses the
  transition) or a member diverged.
- (a) per run of rank k at ``theta = theta_rank``: the number of structured non-DC, non-positional directions of
  ``dM`` equals k in every seed but at most ``Binomial(seeds, LEVEL)``'s 99% quantile (false alarms of the null at its
  level), judged only where the test has power by construction. In noise units the outliers sit at ``theta +
  1/theta``; the sign-flip null of the first round spreads the energy of all k planted directions into its draws, so
  its bulk edge moves from 2 to ``2 sqrt(1 + k theta^2 / (V - 1))`` (and later rounds, with fewer directions left,
  are easier). ``rank_test_power = (theta + 1/theta) / (2 sqrt(1 + k theta^2 / (V - 1)))`` must be at least
  ``POWER_MARGIN = 1.25``, which covers the 99% Tracy-Widom quantile of the null's top singular value at ``V - 1 =
  15`` (about +17% above the edge: ``2^(4/3) N^(-2/3) (2.02 + 1.21) / 8``) and the spread of the tail fit on 24
  draws. Below it the count is reported as underpowered, not judged: at V = 16 and theta = 6 that is k >= 3 (power
  1.08; the first sign-flip round then accepts all three directions or none: 3 or 0 per seed were measured, while the
top-3 subspace overlapped the teacher at 0.97 in every seed: the measurement's limit, not the network's). The largest
  judgeable k is about ``(V - 1) / 4 / 1.25^2`` (theta -> infinity). ``dW`` of the embedding, unembedding and MLP
  matrices: reported with the same rule, not part of the verdict (the network can spread the map over its factors
  in any proportion; with ``d_model > V`` the random initial embedding is already injective, so it need not move).

The structure rank is ``spectral.structure.structure_rank`` (the matrix's own deflated sign-flip null, Hong, Sheng &
Dobriban 2020, exact for independent entries with any variance profile: the sampling noise of ``M_hat`` has
variance ``1 / (n pi(x) P(y | x))``, a profile, not a constant) at level ``LEVEL``; attribution by
``spectral.attribution.subspace_overlaps``.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy as np

from spectral.attribution import subspace_overlaps
from spectral.structure import StructureOptions, structure_rank_batch
from theory_checks import common
from theory_checks.verdict import FAIL, INCONCLUSIVE, PASS, Verdict

NAME = "learning_bbp"
LEVEL = 0.01
THETA_C = 1.0  # Benaych-Georges & Nadakuditi 2012: q^(1/4) with q = 1
FINITE_SIZE = 0.10
BOOTSTRAP = 2000
POWER_MARGIN = 1.25
MATRIX_NAMES = {"embed.embedding": "embed", "unembed.kernel": "unembed", "blocks.0.mlp_in.kernel": "mlp_in",
                "blocks.0.mlp_out.kernel": "mlp_out"}
MATRICES = ("map", *MATRIX_NAMES.values())  # the token-to-logit map, then dW of each weight matrix
ATTRIBUTION = 0.5  # a direction belongs to a named subspace when at least half its squared norm lies there


@dataclasses.dataclass(frozen=True)
class Design:
  """Sizes of one version of the check (``QUICK`` or ``FULL``)."""

  vocab_size: int
  rank: int
  seq_len: int
  train_sequences: int
  batch_size: int
  d_model: int
  steps: int
  learning_rate: float
  thetas: tuple[float, ...]
  seeds: int
  ranks: tuple[int, ...]
  theta_rank: float

  @property
  def transitions(self) -> int:
    return self.train_sequences * self.seq_len

  @property
  def theta_max(self) -> float:
    return max(self.thetas)


QUICK = Design(vocab_size=16, rank=2, seq_len=2, train_sequences=2560, batch_size=64, d_model=32, steps=1000,
               learning_rate=1e-2, thetas=(0.5, 1.0, 1.25, 1.5, 1.75, 2.0, 3.0), seeds=5, ranks=(1, 2, 3),
               theta_rank=6.0)
FULL = Design(vocab_size=32, rank=2, seq_len=2, train_sequences=10240, batch_size=128, d_model=32, steps=2000,
              learning_rate=1e-2, thetas=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0), seeds=10,
              ranks=(1, 2, 3, 4), theta_rank=6.0)


def effective_snr(p, beta: float, transitions: int, vocab_size: int, rank: int):
  """``theta = (1 - p) beta sqrt(n / ((V - 1) k))``: the BBP strength of each planted direction in the empirical
  conditional log-probability map from ``n`` transitions (module docstring)."""
  return (1.0 - np.asarray(p, np.float64)) * beta * math.sqrt(transitions / ((vocab_size - 1) * rank))


def beta_for(theta: float, transitions: int, vocab_size: int, rank: int) -> float:
  """The teacher scale ``beta`` whose directions have strength ``theta`` at ``p = 0``."""
  return theta * math.sqrt((vocab_size - 1) * rank / transitions)


def predicted_overlap(theta, theta_c: float = THETA_C):
  """``1 - (theta_c / theta)^2`` above ``theta_c``, 0 below (BGN 2012 with q = 1, in units of the threshold)."""
  theta = np.asarray(theta, np.float64)
  return np.where(theta > theta_c, 1.0 - (theta_c / np.maximum(theta, 1e-300)) ** 2, 0.0)


def _base_overrides(design: Design, rank: int, beta: float) -> dict:
  return {"data.kind": "teacher", "data.vocab_size": design.vocab_size, "data.seq_len": design.seq_len,
          "data.batch_size": design.batch_size, "data.teacher_rank": rank, "data.teacher_scale": beta,
          "data.teacher_train_sequences": design.train_sequences, "model.d_model": design.d_model,
          "model.num_heads": 2, "model.num_layers": 1, "model.block": "mlp_only", "train.steps": design.steps,
          "train.learning_rate": design.learning_rate, "train.schedule": "cosine",
          "train.snapshot_steps": [0, design.steps], "train.eval_batches": 2, "train.log_every": 100,
          "train.checkpoint_every": 0, "train.ensemble_strategy": "vmap"}


def sweep_config(design: Design, tag: str):
  """The signal-strength sweep: one member per (theta, seed), ``p = 1 - theta / theta_max``."""
  from models.config import MemberSpec, RunConfig, with_overrides
  beta = beta_for(design.theta_max, design.transitions, design.vocab_size, design.rank)
  cfg = with_overrides(RunConfig(name=f"checks_learning_bbp_sweep_{tag}"), _base_overrides(design, design.rank, beta))
  members = tuple(MemberSpec(seed_index=j, noise_p=float(1.0 - t / design.theta_max), regime=f"theta={t:g}")
                  for t in design.thetas for j in range(design.seeds))
  return dataclasses.replace(cfg, ensemble=dataclasses.replace(cfg.ensemble, members=members))


def rank_config(design: Design, rank: int, tag: str):
  """``seeds`` members at ``theta = theta_rank``, ``p = 0``, teacher of rank ``rank``."""
  from models.config import RunConfig, with_overrides
  beta = beta_for(design.theta_rank, design.transitions, design.vocab_size, rank)
  over = _base_overrides(design, rank, beta) | {"data.noise_p": [0.0], "data.regime_names": [f"k={rank}"],
                                                "train.members_per_regime": design.seeds}
  return with_overrides(RunConfig(name=f"checks_learning_bbp_rank{rank}_theta{design.theta_rank:g}_{tag}"), over)


# --- structure rank and attribution ----------------------------------------------------------------------------------


def subspace_overlap(a, b) -> float:
  """``||Q_a^T Q_b||_F^2 / k``: mean squared overlap of two k-dimensional subspaces (1 equal, ~k/n random)."""
  qa, _ = np.linalg.qr(np.asarray(a, np.float64))
  qb, _ = np.linalg.qr(np.asarray(b, np.float64))
  return float(np.sum((qa.T @ qb) ** 2) / qa.shape[1])


DC_NAMES = ("dc", "fourier:0")  # the mean-activation span (model side) and the constant mode over tokens
TEACHER_NAMES = ("teacher_in", "teacher_out")


def attribute(result, left: dict, right: dict) -> dict:
  """Counts of a structure result's directions attributed to DC (``DC_NAMES``), ``positions``, the teacher
  (``TEACHER_NAMES``), on either side, and the learned ones (neither DC nor positional)."""
  counts = dict(rank=int(result.rank), dc=0, positions=0, teacher=0, learned=0)
  if result.rank <= 0:
    return counts
  ol, orr = subspace_overlaps(result.u, left), subspace_overlaps(result.v, right)
  side = lambda names, i: max([float(o[n][i]) for o in (ol, orr) for n in names if n in o], default=0.0)
  for i in range(result.rank):
    if side(DC_NAMES, i) >= ATTRIBUTION:
      counts["dc"] += 1
    elif side(("positions",), i) >= ATTRIBUTION:
      counts["positions"] += 1
    else:
      counts["learned"] += 1
      counts["teacher"] += int(side(TEACHER_NAMES, i) >= ATTRIBUTION)
  return counts


# --- measurement -----------------------------------------------------------------------------------------------------


def measure_run(run, seed: int = 0) -> list[dict]:
  """Per member of a finished teacher run: overlaps of ``dM``'s top-k subspaces with the teacher, and the structure
  rank (with attributions) of ``dM`` and of ``dW`` of the embedding, unembedding and MLP matrices."""
  import jax
  import jax.numpy as jnp

  from flax import nnx

  from models.subspaces import matrix_subspaces
  from models.token_map import centre_rows_and_columns, token_to_logit_map
  from models.train import graphdef_of, init_members, load_trained_params, member_hparams, member_key, members_of
  from models.weight_matrices import weight_matrices

  _, cfg, params = load_trained_params(run.path)
  members = members_of(cfg)
  keys = jnp.stack([member_key(cfg, m.seed_index) for m in members])
  init = init_members(cfg, keys, member_hparams(members)["init_scale"])
  graphdef = graphdef_of(cfg)
  v, length = cfg.data.vocab_size, cfg.data.seq_len
  every_token = jnp.tile(jnp.arange(v, dtype=jnp.int32)[:, None], (1, length))
  token_map = jax.jit(jax.vmap(lambda prm: token_to_logit_map(graphdef, prm, every_token, v)[0]))
  d_map = centre_rows_and_columns(np.asarray(token_map(params), np.float64))
  mats, mats0 = weight_matrices(params, 1), weight_matrices(init, 1)
  data = run.info["data"]
  u_t, w_t = np.asarray(data["teacher_u"]), np.asarray(data["teacher_w"])
  k = u_t.shape[1]
  ones = np.ones((v, 1))
  complement = np.linalg.svd(np.eye(v) - 1.0 / v)[0][:, : v - 1]  # orthonormal basis of the ones vector's complement
  # The centred map lives on the (V-1)-dimensional complement of the ones vector: analysed in a basis of it (in the
  # V x V coordinates centring makes the entries dependent), its directions mapped back to tokens.
  inner = structure_rank_batch(np.einsum("ta,mtu,ub->mab", complement, d_map, complement), level=LEVEL, seed=seed)
  results = dict(map=[dataclasses.replace(r, u=complement @ r.u, v=complement @ r.v) for r in inner])
  for j, name in enumerate(MATRIX_NAMES):
    results[MATRIX_NAMES[name]] = structure_rank_batch(np.asarray(mats[name]), inits=np.asarray(mats0[name]),
                                                       level=LEVEL, seed=seed + 1 + j)
  tokens_in, tokens_out = dict(teacher_in=u_t, dc=ones), dict(teacher_out=w_t, dc=ones)
  rows = []
  for i, m in enumerate(members):
    uu, _, vvt = np.linalg.svd(d_map[i])
    overlap_u, overlap_w = subspace_overlap(u_t, uu[:, :k]), subspace_overlap(w_t, vvt[:k].T)
    # Weight matrices: models.subspaces (dc = mean LayerNorm inputs / mean MLP activation, positions, Fourier modes
    # over tokens, and the teacher on the vocabulary sides), measured on the trained member.
    model = nnx.merge(graphdef, jax.tree_util.tree_map(lambda a: a[i], params))
    subs = matrix_subspaces(model, every_token, teacher=dict(teacher_in=u_t, teacher_out=w_t), include_circuits=False)
    sides = dict(map=(tokens_in, tokens_out), **{short: subs[name] for name, short in MATRIX_NAMES.items()})
    counts = {mat: attribute(results[mat][i], *sides[mat]) for mat in MATRICES}
    steps, test_loss = run.metric("test_loss", m.index)
    rows.append(dict(member=m.index, seed_index=m.seed_index, noise_p=m.noise_p,
                     overlap_u=overlap_u, overlap_w=overlap_w, overlap=0.5 * (overlap_u + overlap_w),
                     counts=counts, test_loss_minus_rate_nats=float(test_loss[-1]) - math.log(2) *
                     run.members[m.index]["entropy_rate_bits"],
                     diverged=bool(any(r["metric"] == "diverged" and r["member"] == m.index for r in run.metrics))))
  return rows


def crossing(thetas, curve, level: float = 0.5) -> float:
  """The ``theta`` at which ``curve`` first reaches ``level`` (linear interpolation); NaN when it starts above it or
  never reaches it inside the grid."""
  thetas, curve = np.asarray(thetas, np.float64), np.asarray(curve, np.float64)
  hit = np.flatnonzero(curve >= level)
  if hit.size == 0 or hit[0] == 0:
    return float("nan")
  j = hit[0]
  return float(thetas[j - 1] + (level - curve[j - 1]) * (thetas[j] - thetas[j - 1]) / (curve[j] - curve[j - 1]))


def bootstrap_crossing(thetas, overlaps, *, boots: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float, float]:
  """``(theta_hat, SE, fraction of resamples with a crossing)`` for ``overlaps`` of shape (thetas, seeds):
  ``theta_hat`` from the mean over seeds, SE the standard deviation over bootstrap resamples of the seeds (each
  point resampled on its own)."""
  overlaps = np.asarray(overlaps, np.float64)
  est = crossing(thetas, overlaps.mean(axis=1))
  rng = np.random.default_rng(seed)
  n_t, n_s = overlaps.shape
  idx = rng.integers(0, n_s, size=(boots, n_t, n_s))
  means = np.take_along_axis(np.broadcast_to(overlaps, (boots, n_t, n_s)), idx, axis=2).mean(axis=2)
  reps = np.asarray([crossing(thetas, m) for m in means])
  ok = np.isfinite(reps)
  se = float(reps[ok].std(ddof=1)) if ok.sum() > 1 else float("nan")
  return est, se, float(ok.mean())


def judge_transition(thetas, overlaps, *, theta_c_pred: float = THETA_C, seed: int = 0) -> tuple[str, dict]:
  """Verdict on (b) from overlaps (thetas, seeds) against the half-plateau point ``sqrt(2) theta_c_pred``."""
  pred = math.sqrt(2.0) * theta_c_pred
  est, se, frac = bootstrap_crossing(thetas, overlaps, seed=seed)
  allowed = 3.0 * se + FINITE_SIZE * pred if np.isfinite(se) else float("nan")
  facts = dict(theta_half_measured=est, theta_half_se=se, theta_half_predicted=pred, theta_c_predicted=theta_c_pred,
               allowed_deviation=allowed, bootstrap_fraction_with_crossing=frac)
  if not np.isfinite(est) or not np.isfinite(se):
    curve = np.asarray(overlaps).mean(axis=1)
    return INCONCLUSIVE, facts | dict(reason=f"mean overlap {np.round(curve, 3).tolist()} does not cross 1/2 inside "
                                      f"the grid {list(thetas)}")
  return (PASS if abs(est - pred) <= allowed else FAIL), facts


def simulate_plugin(design: Design, thetas, seeds: int, seed: int = 0) -> np.ndarray:
  """Overlaps (thetas, seeds) of the plug-in estimator: per position, ``log((C + 1/2) / (C[x, .] + V/2))`` of the
  empirical counts of ``n / L`` stationary transitions, averaged over positions and centred; mean of the two sides.
  Numpy, seconds: the finite-size reference for the network and a fast input for testing the judge."""
  from models.data import make_teacher, stationary_distribution
  from models.token_map import centre_rows_and_columns
  v, k, length = design.vocab_size, design.rank, design.seq_len
  per_position = design.transitions // length
  beta = beta_for(design.theta_max, design.transitions, v, k)
  teacher = make_teacher(v, k, beta, seed)
  rng = np.random.default_rng([seed, 7])
  out = np.zeros((len(thetas), seeds))
  for a, theta in enumerate(thetas):
    trans = teacher.transition_matrix(1.0 - theta / design.theta_max)
    pi, cum = stationary_distribution(trans), np.cumsum(trans, axis=1)
    for j in range(seeds):
      logs = []
      for _ in range(length):
        x = rng.choice(v, size=per_position, p=pi)
        y = np.minimum((rng.random(per_position)[:, None] > cum[x]).sum(axis=1), v - 1)
        c = np.zeros((v, v))
        np.add.at(c, (x, y), 1.0)
        logs.append(np.log((c + 0.5) / (c.sum(axis=1, keepdims=True) + 0.5 * v)))
      uu, _, vvt = np.linalg.svd(centre_rows_and_columns(np.mean(logs, axis=0)))
      out[a, j] = 0.5 * (subspace_overlap(teacher.u, uu[:, :k]) + subspace_overlap(teacher.w, vvt[:k].T))
  return out


def rank_test_power(theta: float, rank: int, vocab_size: int) -> float:
  """Outlier ``theta + 1/theta`` over the first-round sign-flip null edge ``2 sqrt(1 + k theta^2 / (V - 1))``."""
  return (theta + 1.0 / theta) / (2.0 * math.sqrt(1.0 + rank * theta**2 / (vocab_size - 1)))


def judge_ranks(rank_rows: dict[int, list[dict]], seeds: int, theta: float, vocab_size: int) -> tuple[str, dict]:
  """(a): per k, the seeds whose map has exactly k learned structured directions; allowed misses: the Binomial
  (seeds, LEVEL) 99% quantile; judged where ``rank_test_power >= POWER_MARGIN``."""
  allowed = common.binomial_upper_quantile(seeds, LEVEL, 0.99)
  table, ok, judged = {}, True, 0
  for k, rows in sorted(rank_rows.items()):
    power = rank_test_power(theta, k, vocab_size)
    entry = dict(power=power, judged=bool(power >= POWER_MARGIN))
    for mat in MATRICES:
      learned = [r["counts"][mat]["learned"] for r in rows]
      entry[mat] = dict(learned=learned, rank=[r["counts"][mat]["rank"] for r in rows],
                        dc=[r["counts"][mat]["dc"] for r in rows], positions=[r["counts"][mat]["positions"] for r in rows],
                        teacher=[r["counts"][mat]["teacher"] for r in rows],
                        misses=int(sum(x != k for x in learned)))
      entry[mat]["pass"] = entry[mat]["misses"] <= allowed
    entry["seeds"] = [r["seed_index"] for r in rows]
    entry["overlap_mean"] = float(np.mean([r["overlap"] for r in rows]))
    if entry["judged"]:
      ok &= entry["map"]["pass"]
      judged += 1
    table[k] = entry
  status = INCONCLUSIVE if judged == 0 else (PASS if ok else FAIL)
  return status, dict(allowed_misses=allowed, theta=theta, power_margin=POWER_MARGIN, table=table)


def check_runs(sweep, rank_runs: dict, design: Design, *, theta_c_pred: float = THETA_C, seed: int = 0,
               plugin_seeds: int = 20) -> Verdict:
  """The verdict from a finished sweep run and rank runs (``{k: run}``; the sweep's top point serves ``design.rank``)."""
  beta = float(sweep.config["data"]["teacher_scale"])
  n = int(sweep.info["data"]["train_transitions"])
  v, k = design.vocab_size, design.rank
  rows = measure_run(sweep, seed)
  thetas = np.asarray(design.thetas)
  theta_of = lambda p: float(effective_snr(p, beta, n, v, k))
  by_theta = {t: [r for r in rows if abs(theta_of(r["noise_p"]) - t) < 1e-6] for t in design.thetas}
  overlaps = np.asarray([[r["overlap"] for r in by_theta[t]] for t in design.thetas])
  status_b, facts_b = judge_transition(thetas, overlaps, theta_c_pred=theta_c_pred, seed=seed)
  rank_rows = {k: by_theta[design.theta_max]} if design.theta_max >= design.theta_rank else {}
  for kk, run in rank_runs.items():
    rank_rows[kk] = measure_run(run, seed)
  status_a, facts_a = judge_ranks(rank_rows, design.seeds, design.theta_rank, v)
  diverged = [r["member"] for rr in [rows, *rank_rows.values()] for r in rr if r["diverged"]]
  if diverged:
    status = INCONCLUSIVE
  elif FAIL in (status_a, status_b):
    status = FAIL
  elif INCONCLUSIVE in (status_a, status_b):
    status = INCONCLUSIVE
  else:
    status = PASS
  plugin = simulate_plugin(design, thetas, plugin_seeds, seed)
  plugin_half = crossing(thetas, plugin.mean(axis=1))
  grid = np.linspace(0.05, float(thetas.max()) * 1.05, 120)
  series = dict(theta=thetas, overlap_mean=overlaps.mean(axis=1), overlap_sd=overlaps.std(axis=1, ddof=1),
                overlap_min=overlaps.min(axis=1), overlap_max=overlaps.max(axis=1), overlap_by_seed=overlaps,
                overlap_u_mean=[np.mean([r["overlap_u"] for r in by_theta[t]]) for t in design.thetas],
                overlap_w_mean=[np.mean([r["overlap_w"] for r in by_theta[t]]) for t in design.thetas],
                map_learned_mean=[np.mean([r["counts"]["map"]["learned"] for r in by_theta[t]]) for t in design.thetas],
                plugin_overlap_mean=plugin.mean(axis=1), theory_theta=grid,
                theory_overlap=predicted_overlap(grid, theta_c_pred), theta_c=theta_c_pred,
                theta_half_predicted=facts_b["theta_half_predicted"], theta_half_measured=facts_b["theta_half_measured"],
                theta_half_se=facts_b["theta_half_se"], chance_overlap=k / (v - 1),
                ranks=sorted(facts_a["table"]), theta_rank=design.theta_rank,
                rank_judged=[facts_a["table"][kk]["judged"] for kk in sorted(facts_a["table"])],
                **{f"rank_{mat}_learned_by_seed": [facts_a["table"][kk][mat]["learned"] for kk in sorted(facts_a["table"])]
                   for mat in MATRICES})
  measured = dict(theta_half=facts_b["theta_half_measured"], theta_half_se=facts_b["theta_half_se"],
                  plugin_theta_half=plugin_half, transition_status=status_b, rank_status=status_a,
                  structure_rank_method=StructureOptions().method() + f", level {LEVEL}",
                  **{f"{mat}_learned_rank_k{kk}": facts_a["table"][kk][mat]["learned"]
                     for kk in facts_a["table"] for mat in MATRICES})
  if diverged:
    measured["reason"] = f"members {diverged} diverged"
  elif "reason" in facts_b:
    measured["reason"] = facts_b["reason"]
  predicted = dict(theta_half=f"sqrt(2) theta_c = {facts_b['theta_half_predicted']:.4f} +- "
                   f"{facts_b['allowed_deviation']:.4f}",
                   **{f"map_learned_rank_k{kk}": kk if facts_a["table"][kk]["judged"] else f"{kk} (underpowered: not "
                      f"judged, power {facts_a['table'][kk]['power']:.2f} < {POWER_MARGIN})" for kk in facts_a["table"]})
  details = [dict(part="design", **dataclasses.asdict(design), beta=beta, transitions=n, level=LEVEL,
                  finite_size=FINITE_SIZE),
             dict(part="transition", **facts_b), dict(part="ranks", **facts_a),
             *[dict(part="member", theta=theta_of(r["noise_p"]), **r) for r in rows]]
  return Verdict(
      check=NAME,
      prediction=f"(b) the learned map's top-{k} subspace overlap with the planted teacher is 1 - (theta_c/theta)^2 "
      f"above theta_c = {theta_c_pred:g} (0 below), half its plateau at sqrt(2) theta_c, with theta = (1-p) beta "
      "sqrt(n / ((V-1) k)); (a) well above threshold the structure rank of the learned map (DC and positional "
      "directions counted separately) equals the planted rank k",
      source="Benaych-Georges & Nadakuditi 2012 (arXiv:1103.2221) section 3.1, q = 1, applied to the empirical "
      "conditional log-probability map of n transitions; spectral = information-theoretic threshold for spherical "
      "priors (Miolane 2017, arXiv:1702.00473); cf. Ba et al. 2022 (arXiv:2205.01445); docs/THEORY.md#learning_bbp",
      tolerance=f"(b) |theta_hat_1/2 - sqrt(2) theta_c| <= 3 SE (bootstrap over {design.seeds} seeds per point) + "
      f"{FINITE_SIZE:.0%} of sqrt(2) theta_c (finite-V shift of the plug-in estimator, +3..6% at V = 16, 32); "
      f"INCONCLUSIVE without a crossing in the grid; (a) at theta = {design.theta_rank:g}, learned structured "
      f"directions of dM == k in all seeds but Binomial({design.seeds}, {LEVEL}) 99% quantile = "
      f"{facts_a['allowed_misses']}, judged where (theta + 1/theta) / (2 sqrt(1 + k theta^2/(V-1))) >= "
      f"{POWER_MARGIN} (k = {[kk for kk in facts_a['table'] if facts_a['table'][kk]['judged']]})",
      status=status, measured=measured, predicted=predicted, details=details, run=str(sweep.path), series=series)


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0) -> Verdict:
  from models.run_folder import load_run
  from models.train import train_run
  design, tag = (QUICK, "quick") if quick else (FULL, "full")
  sweep = load_run(train_run(sweep_config(design, tag), runs_dir, progress=False))
  ranks = {k: load_run(train_run(rank_config(design, k, tag), runs_dir, progress=False))
           for k in design.ranks if not (k == design.rank and design.theta_max >= design.theta_rank)}
  return check_runs(sweep, ranks, design, seed=seed)
