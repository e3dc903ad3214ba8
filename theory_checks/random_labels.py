"""Check 8: real against random labels on modular arithmetic, read through the structure decomposition.

Prediction and sources, one per part (each part's source is what it rests on):

(a) Fourier embedding, judged. A network that generalises on modular addition ``c = a + b mod p`` (it "groks")
    implements the rule with a few key frequencies ``w_k = 2 pi k / p``: its token embedding ``W_E`` (residue rows,
    ``p x d``) is concentrated on the Fourier modes ``cos(w_k a), sin(w_k a)`` of ``K`` key frequencies and is
    approximately of rank ``2K`` (Nanda, Chan, Lieberum, Smith & Steinhardt 2023, "Progress measures for grokking via
    mechanistic interpretability", arXiv:2301.05217, sections 4-5: 5 key frequencies at p = 113; Zhong et al. 2023,
    arXiv:2306.17844, for other circuits with the same Fourier embedding). Prediction: in every generalising member
    the structured non-constant directions of ``W_E`` number ``2K``, with ``K`` the key frequencies counted by a DFT
    over tokens, and they lie in the span of those modes.
(b) Real against random, judged. A net that memorises random labels of the same pairs (Zhang, Bengio, Hardt, Recht &
    Vinyals 2017, arXiv:1611.03530) has no arithmetic to implement, so nothing makes its embedding directions single
    Fourier modes: a larger fraction of the real-label embedding's structured directions lies in Fourier modes
    (mode-level attribution) than of the random-label one trained from the same initial weights (paired by seed).
    This is a consequence of (a), not a separate theory. It is NOT predicted that a memoriser's update
    ``dW = W - W0`` is null: under AdamW the sign-flip null counts every correlated direction, and the update is far
    from iid even for pure-noise labels (4-21 directions per matrix measured in this lab,
    docs/THEORY.md#lab-observations), so real and random are compared with each other, not with the null.
(c) Reported, not judged (no theory here gives a number): the stable rank ``||X||_F^2 / ||X||_2^2`` and the entropy
    (effective) rank ``exp(H(s / sum s))`` of the singular values (Roy & Vetterli 2007) of ``W`` and ``dW``, averaged
    over matrices; for memorisers, the structure rank of every matrix against the number of training pairs (runs at
    several training fractions), with the heuristic expectation that storing more arbitrary pairs needs more
    directions (capacity of associative memories, e.g. Cabannes, Dohmatob & Bietti 2024, arXiv:2310.02984).

Measurement. One run of real labels (``data.kind = "modular"``) whose members cross ``seeds`` seeds with the weight
decays ``weight_decays`` (ensemble members of one compiled program: ``ensemble.weight_decay``), and one run of random
labels (``random_labels``: the same split of pairs, answers shuffled) per training fraction in ``fractions``, the
first equal to the real run's, so member ``(wd, seed)`` of both starts from the same weights. AdamW. Per member, at
the final iterate (its checkpoint), with the initial weights regenerated from its key (``dW`` exact):
- the loss and accuracy on the whole training set and on all held-out pairs (not a batch estimate). "Matched
  training loss" is taken as: both networks have fitted their training pairs (full training accuracy >=
  ``FITTED``); their final training losses are reported beside it, since weight decay holds them at different
  values;
- ``K``: the key frequencies of the residue rows of ``W_E`` by ``spectral.attribution.key_frequencies`` (each
  Fourier mode's DFT power against a deflated sign-flip noise floor at ``LEVEL``), and for comparison the smallest set
  of modes holding 90% of the non-constant power (``key_frequencies_by_mass``);
- the structure rank (``spectral.structure``, the matrix's own deflated sign-flip null at ``LEVEL``) of the residue
  rows of ``W_E`` and of their update, each structured direction's token-side vector attributed: ``dc`` (at least half
  its squared norm on the constant mode), ``key`` (at least half in the span of the key modes), ``fourier`` (one
  Fourier mode ``k >= 1`` by ``spectral.attribution.attribute``, excess over chance >= 1/2);
- the structure rank of ``W`` and ``dW`` of the unembedding (``STRUCTURE_MATRICES``: every matrix is too slow);
- the stable and entropy ranks of ``W`` and ``dW`` of every weight matrix.

Tolerance (fixed here, before any run). Intervals are two-sided 95% Student-t over seeds. Per weight decay:
- premise: at least ``MIN_SEEDS`` real-label members generalised (held-out accuracy >= ``GENERALISED`` and training
  accuracy >= ``FITTED``); otherwise that condition is INCONCLUSIVE (not the regime (a) speaks about). (a) uses those
  members, (b) the seeds where also the random-label member fitted (at least ``MIN_SEEDS``, else (b) INCONCLUSIVE);
- (a) per generalising seed ``d = (structured non-dc directions of W_E) - 2K``; PASS when ``|d| <= RANK_BAND`` (one
  direction of slack: a frequency with one of its two directions under the null's threshold) in every seed but at most
  the Binomial(seeds, LEVEL) 99% quantile (false alarms of the tests at their level), FAIL otherwise. The t-interval
  of the mean ``d`` is reported; it is not the rule, because "the interval meets the band" has no power with 3-5
  seeds (a planted embedding with three extra non-Fourier directions passed it; tests/test_random_labels.py);
- (b) PASS when the lower end of the t-interval of the paired difference (real - random) in the Fourier fraction of
  ``W_E`` (Fourier directions over structured non-dc directions; 0 without any) is above 0, FAIL otherwise (a
  fraction, not a count: the count follows K, which differs between seeds).
A condition PASSes when (a) and (b) pass, FAILs when either fails. The check FAILs when any condition fails, PASSes
when at least one passes and none fails, and is INCONCLUSIVE otherwise (the conditions' own verdicts are reported).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
from scipy import stats

from spectral.attribution import fourier_basis, key_frequencies, key_frequencies_by_mass, orthonormal_basis
from spectral.metrics import effective_ranks
from spectral.structure import StructureOptions, structure_rank_batch
from theory_checks import common
from theory_checks.verdict import FAIL, INCONCLUSIVE, PASS, Verdict

NAME = "random_labels"
LEVEL = 0.01
GENERALISED = 0.9  # held-out accuracy of a generalising member
FITTED = 0.99  # training accuracy (whole training set) of a member that fitted its labels
MIN_SEEDS = 3  # fewest members per condition for a t-interval
RANK_BAND = 1.0
CONFIDENCE = 0.95
ATTRIBUTION = 0.5
EMBED = "embed.embedding"
# Structure ranks beyond the embedding: the unembedding only. Every matrix was tried when this check was built; the
# sequential test of 2 x 15 matrices of 64 x 64 whose updates hold up to 17 directions took 196 s on the shared 2-core
# machine (a compilation per deflation width), too slow for --quick.
STRUCTURE_MATRICES = ("unembed.kernel",)


@dataclasses.dataclass(frozen=True)
class Design:
  """Sizes of one version of the check (``QUICK`` or ``FULL``)."""

  modulus: int
  train_fraction: float
  fractions: tuple[float, ...]  # random-label runs (memorisers); the first must equal train_fraction
  weight_decays: tuple[float, ...]
  fraction_weight_decays: tuple[float, ...]  # weight decays of the extra-fraction memoriser runs
  seeds: int
  fraction_seeds: int  # seeds of the extra-fraction memoriser runs
  d_model: int
  num_heads: int
  steps: int
  learning_rate: float
  batch_size: int = 128

  def __post_init__(self):
    if not self.fractions or self.fractions[0] != self.train_fraction:
      raise ValueError(f"fractions: expected the real run's train_fraction {self.train_fraction} first, got "
                       f"{self.fractions}")


QUICK = Design(modulus=23, train_fraction=0.5, fractions=(0.5, 0.3), weight_decays=(1.0,),
               fraction_weight_decays=(1.0,), seeds=5, fraction_seeds=3, d_model=64, num_heads=2, steps=1800,
               learning_rate=3e-3)
FULL = Design(modulus=23, train_fraction=0.5, fractions=(0.5, 0.3, 0.7), weight_decays=(0.1, 0.3, 1.0),
              fraction_weight_decays=(1.0,), seeds=5, fraction_seeds=5, d_model=64, num_heads=2, steps=6000,
              learning_rate=3e-3)


def _config(design: Design, kind: str, fraction: float, weight_decays, tag: str, seeds: int):
  from models.config import RunConfig, with_overrides
  label = "real" if kind == "modular" else "random"
  name = f"checks_random_labels_{label}_f{fraction:g}_{tag}"
  over = {"data.kind": kind, "data.regime_names": [label], "data.modulus": design.modulus,
          "data.vocab_size": design.modulus + 2, "data.seq_len": 4, "data.batch_size": design.batch_size,
          "data.noise_p": [0.0], "data.train_fraction": fraction, "model.d_model": design.d_model,
          "model.num_heads": design.num_heads, "model.num_layers": 1, "train.steps": design.steps,
          "train.members_per_regime": seeds, "train.snapshot_steps": [0, design.steps],
          "train.checkpoint_every": 0, "train.learning_rate": design.learning_rate, "train.eval_batches": 2,
          "train.log_every": 100, "ensemble.weight_decay": list(weight_decays)}
  return with_overrides(RunConfig(name=name), over)


def configs(design: Design, tag: str) -> tuple[object, list]:
  """The real-label run and the random-label runs (first: same split and weight decays as the real run)."""
  real = _config(design, "modular", design.train_fraction, design.weight_decays, tag, design.seeds)
  rand = [_config(design, "random_labels", design.fractions[0], design.weight_decays, tag, design.seeds)]
  rand += [_config(design, "random_labels", f, design.fraction_weight_decays, tag, design.fraction_seeds)
           for f in design.fractions[1:]]
  return real, rand


# --- the embedding's Fourier structure -------------------------------------------------------------------------------


def embedding_counts(result, n: int, key: list[int]) -> dict:
  """Mode-level attribution of the span ``U`` of a structure result's token-side directions (``result.u``, (n, rank))
  over ``n`` residues.

  A Fourier mode ``k`` (``spectral.attribution.fourier_basis``, ``Q_k`` of ``dim_k`` columns; ``k = 0`` the constant)
  is captured when its mean squared overlap ``o_k = ||U^T Q_k||_F^2 / dim_k`` exceeds chance ``c = rank / n`` by at
  least ATTRIBUTION of the way to 1, ``(o_k - c) / (1 - c) >= ATTRIBUTION`` (the rule of
  ``spectral.attribution.attribute``). Mode-level on the span, so invariant to rotations inside it: singular vectors
  of modes with close singular values mix them, a per-vector attribution would not name either.

  Returns ``rank``; ``dc``: 1 if the constant mode is captured; ``nondc = rank - dc``; ``fourier_modes``: the captured
  modes ``k >= 1``; ``fourier``: their dimensions summed (structured directions explained by Fourier modes);
  ``key``: the same over the captured modes that are in ``key``."""
  counts = dict(rank=int(result.rank), dc=0, nondc=int(max(result.rank, 0)), key=0, fourier=0, fourier_modes=[])
  if result.rank <= 0:
    return counts
  span = orthonormal_basis(np.asarray(result.u, np.float64))
  chance = span.shape[1] / n
  if chance >= 1.0:
    return counts
  for k in range(n // 2 + 1):
    q = fourier_basis(n, k)
    o = float(np.sum((span.T @ q) ** 2) / q.shape[1])
    if (o - chance) / (1.0 - chance) < ATTRIBUTION:
      continue
    if k == 0:
      counts["dc"] = 1
      counts["nondc"] -= 1
    else:
      counts["fourier_modes"].append(k)
      counts["fourier"] += q.shape[1]
      counts["key"] += q.shape[1] * int(k in key)
  return counts


def _structure_w_and_dw(w: np.ndarray, w0: np.ndarray, seed: int) -> tuple[list, list]:
  """Structure results of ``W`` and of ``dW = W - W0`` for a batch (B, a, b): one batched test of 2B matrices (one
  compilation); each matrix's result does not depend on the others of its batch (``spectral.structure``)."""
  res = structure_rank_batch(np.concatenate([w, w - w0]), level=LEVEL, seed=seed)
  return res[: w.shape[0]], res[w.shape[0]:]


def embedding_structure(e, e0, n: int, seed: int = 0) -> list[dict]:
  """Per member of the residue rows ``e`` (B, n, d) of ``W_E`` (initial values ``e0``): key frequencies, structure
  rank of ``W_E`` and of its update, with their attributions (``embedding_counts``)."""
  e, e0 = np.asarray(e, np.float64), np.asarray(e0, np.float64)
  res_w, res_d = _structure_w_and_dw(e, e0, seed)
  rows = []
  for i in range(e.shape[0]):
    key = key_frequencies(e[i], level=LEVEL, seed=seed + i)
    key_d = key_frequencies(e[i] - e0[i], level=LEVEL, seed=seed + i)
    rows.append(dict(key=key, K=len(key), key_mass90=key_frequencies_by_mass(e[i]), key_dW=key_d, K_dW=len(key_d),
                     W=embedding_counts(res_w[i], n, key), dW=embedding_counts(res_d[i], n, key_d)))
  return rows


# --- measurement -----------------------------------------------------------------------------------------------------


def _ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Stable rank and entropy rank of each matrix of ``x`` (B, a, b) (``spectral.metrics.effective_ranks``)."""
  return effective_ranks(np.linalg.svd(x, compute_uv=False))


def measure_run(run, seed: int = 0) -> list[dict]:
  """Per member of a finished modular / random-labels run: whole-split loss and accuracy, the embedding's key
  frequencies and attributed structure, stable / entropy ranks of ``W`` and ``dW`` of every matrix and structure
  ranks of those in ``STRUCTURE_MATRICES``."""
  import jax
  import jax.numpy as jnp

  from models.data import modular_split
  from models.steps import loss_and_accuracy
  from models.train import graphdef_of, init_members, load_trained_params, member_hparams, member_key, members_of
  from models.weight_matrices import weight_matrices

  _, cfg, params = load_trained_params(run.path)
  members = members_of(cfg)
  keys = jnp.stack([member_key(cfg, m.seed_index) for m in members])
  init = init_members(cfg, keys, member_hparams(members)["init_scale"])
  graphdef = graphdef_of(cfg)
  scored = np.asarray([0.0, 0.0, 0.0, 1.0], np.float32)  # only the answer c is scored
  evaluate = jax.jit(jax.vmap(lambda prm, tok: loss_and_accuracy(graphdef, prm, tok, scored), in_axes=(0, None)))
  train, test = modular_split(cfg.data)
  train_loss, train_acc = (np.asarray(a, np.float64) for a in evaluate(params, jnp.asarray(train)))
  test_loss, test_acc = (np.asarray(a, np.float64) for a in evaluate(params, jnp.asarray(test)))
  mats = {k: np.asarray(v, np.float64) for k, v in weight_matrices(params, 1).items()}
  mats0 = {k: np.asarray(v, np.float64) for k, v in weight_matrices(init, 1).items()}
  p = cfg.data.modulus
  emb = embedding_structure(mats[EMBED][:, :p], mats0[EMBED][:, :p], p, seed)
  per_matrix = {}
  for j, name in enumerate(sorted(mats)):
    w, dw = mats[name], mats[name] - mats0[name]
    entry = dict(zip(("stable_W", "entropy_W"), _ranks(w))) | dict(zip(("stable_dW", "entropy_dW"), _ranks(dw)))
    if name in STRUCTURE_MATRICES:
      res_w, res_d = _structure_w_and_dw(w, mats0[name], seed + 1 + j)
      entry["structure_W"], entry["structure_dW"] = [r.rank for r in res_w], [r.rank for r in res_d]
    per_matrix[name] = entry
  rows = []
  for i, m in enumerate(members):
    mat = {name: {k: float(v[i]) for k, v in entry.items()} for name, entry in per_matrix.items()}
    mat[EMBED].update(structure_W=emb[i]["W"]["rank"], structure_dW=emb[i]["dW"]["rank"])  # residue rows
    mean = lambda key: float(np.mean([mat[n][key] for n in mat]))
    total = lambda key: int(sum(mat[n][key] for n in mat if key in mat[n]))
    rows.append(dict(member=m.index, seed_index=m.seed_index, weight_decay=float(m.weight_decay),
                     train_fraction=float(cfg.data.train_fraction), train_pairs=int(train.shape[0]),
                     train_loss=float(train_loss[i]), train_accuracy=float(train_acc[i]),
                     test_loss=float(test_loss[i]), test_accuracy=float(test_acc[i]),
                     embedding=emb[i], matrices=mat,
                     stable_rank_W=mean("stable_W"), entropy_rank_W=mean("entropy_W"),
                     stable_rank_dW=mean("stable_dW"), entropy_rank_dW=mean("entropy_dW"),
                     structure_rank_W=total("structure_W"), structure_rank_dW=total("structure_dW")))
  return rows


# --- judging ---------------------------------------------------------------------------------------------------------


def t_interval(x, confidence: float = CONFIDENCE) -> dict:
  """Mean and two-sided Student-t interval over seeds: ``mean -+ t_{(1+c)/2, n-1} s / sqrt(n)`` (zero width when the
  values are equal; NaN ends for fewer than 2 values)."""
  x = np.asarray(x, np.float64)
  if x.size == 0:
    return dict(mean=float("nan"), lo=float("nan"), hi=float("nan"), n=0)
  mean, se = common.mean_se(x)
  half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * se) if x.size > 1 else float("nan")
  return dict(mean=mean, lo=mean - half, hi=mean + half, n=int(x.size))


def _generalised(r: dict) -> bool:
  return r["test_accuracy"] >= GENERALISED and r["train_accuracy"] >= FITTED


def fourier_fraction(row: dict) -> float:
  """Fourier directions of a member's ``W_E`` over its structured non-dc directions (0 when it has none)."""
  w = row["embedding"]["W"]
  return float(w["fourier"] / w["nondc"]) if w["nondc"] > 0 else 0.0


def judge_condition(real: list[dict], rand: list[dict]) -> tuple[str, dict]:
  """Verdict of one weight decay from per-member rows (``measure_run``'s keys ``seed_index``, ``train_accuracy``,
  ``test_accuracy``, ``embedding``) of the real- and random-label runs (module docstring's tolerance)."""
  good = [r for r in real if _generalised(r)]
  fitted = {r["seed_index"]: r for r in rand if r["train_accuracy"] >= FITTED}
  pairs = [(r, fitted[r["seed_index"]]) for r in good if r["seed_index"] in fitted]
  facts = dict(generalised_seeds=[r["seed_index"] for r in good], memorised_seeds=sorted(fitted),
               real_test_accuracy=[r["test_accuracy"] for r in real],
               real_train_accuracy=[r["train_accuracy"] for r in real],
               random_train_accuracy=[r["train_accuracy"] for r in rand],
               random_test_accuracy=[r["test_accuracy"] for r in rand],
               real_train_loss=[r["train_loss"] for r in real], random_train_loss=[r["train_loss"] for r in rand])
  if len(good) < MIN_SEEDS:
    return INCONCLUSIVE, facts | dict(reason=f"{len(good)} of {len(real)} real-label members generalised "
                                      f"(held-out accuracy >= {GENERALISED}, training accuracy >= {FITTED}); "
                                      f"at least {MIN_SEEDS} needed")
  d = [r["embedding"]["W"]["nondc"] - 2 * r["embedding"]["K"] for r in good]
  misses = int(sum(abs(x) > RANK_BAND for x in d))
  allowed = common.binomial_upper_quantile(len(d), LEVEL, 0.99)
  a_pass = misses <= allowed
  facts.update(K=[r["embedding"]["K"] for r in good], key=[r["embedding"]["key"] for r in good],
               key_mass90=[r["embedding"]["key_mass90"] for r in good],
               nondc_rank=[r["embedding"]["W"]["nondc"] for r in good],
               key_directions=[r["embedding"]["W"]["key"] for r in good], rank_minus_2K=d,
               rank_minus_2K_interval=t_interval(d), rank_misses=misses, rank_allowed_misses=allowed,
               fourier_status=PASS if a_pass else FAIL)
  if len(pairs) < MIN_SEEDS:
    facts.update(contrast_status=INCONCLUSIVE, contrast_reason=f"{len(pairs)} seeds with a generalising real and a "
                 f"memorising random member (training accuracy >= {FITTED}); at least {MIN_SEEDS} needed")
    if not a_pass:
      return FAIL, facts
    return INCONCLUSIVE, facts | dict(reason=facts["contrast_reason"])
  diff = [fourier_fraction(x) - fourier_fraction(y) for x, y in pairs]
  b = t_interval(diff)
  b_pass = bool(b["lo"] > 0) if b["n"] > 1 else bool(b["mean"] > 0)
  facts.update(paired_seeds=[x["seed_index"] for x, _ in pairs],
               fourier_real=[x["embedding"]["W"]["fourier"] for x, _ in pairs],
               fourier_random=[y["embedding"]["W"]["fourier"] for _, y in pairs],
               nondc_random=[y["embedding"]["W"]["nondc"] for _, y in pairs],
               fourier_fraction_real=[fourier_fraction(x) for x, _ in pairs],
               fourier_fraction_random=[fourier_fraction(y) for _, y in pairs],
               fourier_fraction_real_minus_random=diff, fourier_fraction_real_minus_random_interval=b,
               contrast_status=PASS if b_pass else FAIL)
  return (PASS if a_pass and b_pass else FAIL), facts


def combine(statuses: list[str]) -> str:
  """FAIL if any condition fails; PASS if at least one passes and none fails; INCONCLUSIVE otherwise."""
  if FAIL in statuses:
    return FAIL
  return PASS if PASS in statuses else INCONCLUSIVE


REPORTED = ("stable_rank_W", "entropy_rank_W", "stable_rank_dW", "entropy_rank_dW", "structure_rank_W",
            "structure_rank_dW")


def contrast_table(real: list[dict], rand: list[dict]) -> dict:
  """Per reported statistic: real and random means with t-intervals, and the paired difference (real - random)."""
  by_seed = {r["seed_index"]: r for r in rand}
  pairs = [(r, by_seed[r["seed_index"]]) for r in real if r["seed_index"] in by_seed]
  get = {"embedding_nondc_W": lambda r: r["embedding"]["W"]["nondc"],
         "embedding_nondc_dW": lambda r: r["embedding"]["dW"]["nondc"],
         "embedding_fourier_W": lambda r: r["embedding"]["W"]["fourier"],
         "embedding_fourier_fraction": fourier_fraction,
         "embedding_K": lambda r: r["embedding"]["K"],
         **{k: (lambda key: lambda r: r[key])(k) for k in REPORTED}}
  return {k: dict(real=t_interval([f(r) for r in real]), random=t_interval([f(r) for r in rand]),
                  real_minus_random=t_interval([f(a) - f(b) for a, b in pairs])) for k, f in get.items()}


def memoriser_table(rand_rows: list[dict], weight_decay: float) -> dict:
  """Structure rank of each matrix (and in total) of the memorisers at ``weight_decay`` against the number of
  training pairs: per pair count a t-interval over the members that fitted, and the least-squares slope per 100
  pairs of the per-count means (reported, not judged)."""
  rows = [r for r in rand_rows if r["weight_decay"] == weight_decay and r["train_accuracy"] >= FITTED]
  counts = sorted({r["train_pairs"] for r in rows})
  names = sorted({n for r in rows for n in r["matrices"] if "structure_W" in r["matrices"][n]})
  out = dict(train_pairs=counts, members=[sum(r["train_pairs"] == c for r in rows) for c in counts])
  for key in ("structure_rank_W", "structure_rank_dW", *[f"{n}:{s}" for n in names for s in ("W", "dW")]):
    val = (lambda r, key=key: r[key]) if ":" not in key else \
        (lambda r, key=key: r["matrices"][key.split(":")[0]][f"structure_{key.split(':')[1]}"])
    per = [t_interval([val(r) for r in rows if r["train_pairs"] == c]) for c in counts]
    slope = float(np.polyfit(counts, [p["mean"] for p in per], 1)[0] * 100) if len(counts) > 1 else float("nan")
    out[key] = dict(by_pairs=per, slope_per_100_pairs=slope)
  return out


def check_runs(real_run, rand_runs: list, design: Design, seed: int = 0) -> Verdict:
  """The verdict from the finished real-label run and random-label runs (the first with the real run's split)."""
  real = measure_run(real_run, seed)
  rand_all = [measure_run(r, seed) for r in rand_runs]
  rand = rand_all[0]
  conditions, statuses = {}, []
  for wd in design.weight_decays:
    re_wd = [r for r in real if r["weight_decay"] == wd]
    ra_wd = [r for r in rand if r["weight_decay"] == wd]
    status, facts = judge_condition(re_wd, ra_wd)
    facts["contrast"] = contrast_table(re_wd, ra_wd)
    conditions[f"wd={wd:g}"] = dict(status=status, **facts)
    statuses.append(status)
  status = combine(statuses)
  memorisers = {f"wd={wd:g}": memoriser_table([r for rr in rand_all for r in rr], wd)
                for wd in design.fraction_weight_decays}
  measured = dict(structure_rank_method=StructureOptions().method() + f", level {LEVEL}",
                  matched_loss="final iterate; both fitted (training accuracy on all training pairs >= "
                  f"{FITTED}); final training losses reported", conditions=conditions, memorisers=memorisers)
  if status == INCONCLUSIVE:
    measured["reason"] = "; ".join(f"{k}: {c.get('reason', c['status'])}" for k, c in conditions.items())
  series = {}
  for key, c in conditions.items():
    series[f"{key}:K"] = c.get("K", [])
    series[f"{key}:nondc_rank"] = c.get("nondc_rank", [])
    series[f"{key}:fourier_real"] = c.get("fourier_real", [])
    series[f"{key}:fourier_random"] = c.get("fourier_random", [])
  return Verdict(
      check=NAME,
      prediction="(a) a generalising net's token embedding (residue rows) has 2K structured non-constant directions, "
      "K the key Fourier frequencies of a DFT over tokens, lying in their span; (b) a larger fraction of the "
      "real-label embedding's structured directions lies in Fourier modes than of the random-label memoriser's "
      "(same initial weights); (c) reported: stable / entropy ranks of W and dW, memorisers' structure rank against "
      "training pairs",
      source="Nanda et al. 2023 (arXiv:2301.05217) sections 4-5 for (a); Zhang et al. 2017 (arXiv:1611.03530) for the "
      "memorising control; Roy & Vetterli 2007 (entropy rank); structure rank: Hong, Sheng & Dobriban 2020 "
      "(arXiv:2012.02985); docs/THEORY.md#random_labels",
      tolerance=f"per weight decay: (a) |non-dc rank - 2K| <= {RANK_BAND:g} in every generalising seed but the "
      f"Binomial(seeds, {LEVEL}) 99% quantile; (b) the 95% Student-t interval over seeds of the paired difference "
      f"(real - random) in the Fourier fraction of the embedding's structured directions is above 0; INCONCLUSIVE "
      f"for a weight decay with fewer than {MIN_SEEDS} generalising real members (held-out acc >= {GENERALISED}, "
      f"train acc >= {FITTED}) or memorising random members (train acc >= {FITTED})",
      status=status, measured=measured,
      predicted=dict(rank_minus_2K=f"0 +- {RANK_BAND:g}", fourier_fraction_real_minus_random="> 0"),
      details=[dict(part="design", **dataclasses.asdict(design), level=LEVEL),
               *[dict(part="member", run=str(real_run.path), **r) for r in real],
               *[dict(part="member", run=str(run.path), **r) for run, rr in zip(rand_runs, rand_all) for r in rr]],
      run=",".join(str(r.path) for r in [real_run, *rand_runs]), series=series)


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0) -> Verdict:
  from models.run_folder import load_run
  from models.train import train_run
  design, tag = (QUICK, "quick") if quick else (FULL, "full")
  real_cfg, rand_cfgs = configs(design, tag)
  real = load_run(train_run(real_cfg, runs_dir, progress=False))
  rand = [load_run(train_run(c, runs_dir, progress=False)) for c in rand_cfgs]
  return check_runs(real, rand, design, seed=seed)
