"""Check 13: the input-output Jacobian across the regimes of the data knob, held against free probability.

Prediction (docs/THEORY.md#trained_jacobians). Let ``J_l`` be the per-token Jacobian of transformer block ``l``
(``models.tracking``: ``D x D``, the residual stream at the probe's last position) and ``J = J_{n-1} ... J_0`` the
network's. At initialisation the blocks' weights are independent and rotation-invariant in law, so the blocks'
Jacobians are asymptotically free (Voiculescu 1991; Pennington, Schoenholz & Ganguli 2018, arXiv:1802.09979) and the
squared singular values of ``J`` follow the free multiplicative convolution of the blocks' laws. At finite ``D`` the
prediction is sampled exactly as the singular values of ``S_{n-1} O_{n-1} ... O_1 S_0`` with the MEASURED block
singular values ``S_l`` of the same probe and Haar rotations ``O_l`` (``spectral.free_probability.
free_product_singular_values``), so the test is of freeness alone, not of any block's law.

After training nothing predicts freeness: learned blocks share directions (a circuit reads in block 1 what block 0
wrote). What the check reports per regime (noise ``p = 1``, meso ``p = 0.5``, the exact rule ``p = 0``, natural
text) is where the trained spectrum departs from the free prediction built from its own trained blocks:
- ``ks``: the Kolmogorov distance between the measured squared singular values (pooled over probes) and the
  prediction's pool, with a Monte Carlo p-value (extra prediction draws as pseudo-measurements: exact under the null);
- ``edge_ratio``: the measured top singular value over the prediction's median top singular value;
- ``outliers``: per probe, measured squared singular values above the prediction's 99% quantile of its largest one
  (mean over probes): directions the blocks amplify together;
- ``spike_overlap``: the top outlier directions of ``J`` (left and right singular vectors; at least one) against the
  span of the weight spikes' residual-stream directions: the leading structured direction of ``dW = W - W_0``
  (``spectral.structure.structure_rank_batch`` at ``max_rank = MAX_SPIKES = 1``; none when ``dW`` is at its null) of
  every matrix with a residual side: mean squared projection, with its chance level ``dim(span) / D`` beside it.
  One direction per matrix: with all of them the union spans the whole residual stream (measured: chance 1.0 at
  ``D = 64``, since the sign-flip null counts every correlated direction of an AdamW update), and the overlap says
  nothing.

Measurement: two runs trained with ``tracking.track_jacobian`` (the main job's regimes p = 1, 0.5, 0 on the affine
chain; byte-level ``pydoc`` text), the Jacobian singular values stored at every snapshot; the overlaps from the last
checkpoint and the initial weights regenerated from each member's key. ``PROBES`` probes per member.

Tolerance (the verdict is on the initialisation prediction, the only one theory makes): at step 0 each member's
freeness test has false-alarm probability ``LEVEL`` (Monte Carlo p-value with ``NULL_DRAWS`` pseudo-measurements);
PASS when the number of members rejected, over all runs, is within ``Binomial(members, LEVEL)``'s 99% quantile;
FAIL otherwise. The trained departures are reported, not judged.
"""

from __future__ import annotations

import pathlib

import numpy as np

from spectral import free_probability as fp
from spectral.remainder import two_sample_ks
from theory_checks import common
from theory_checks.verdict import FAIL, INCONCLUSIVE, PASS, Verdict

NAME = "trained_jacobians"
LEVEL = 0.01
PREDICTION_DRAWS = 40
NULL_DRAWS = 99
OUTLIER_QUANTILE = 0.99
MAX_SPIKES = 1
REGIMES = ("noise", "meso", "structured", "text")
SIZES = {
    True: {"model.d_model": 64, "model.num_heads": 2, "model.num_layers": 2, "data.seq_len": 16,
           "data.batch_size": 16, "train.steps": 300, "train.members_per_regime": 2,
           "train.snapshot_steps": [0, 30, 100, 300], "train.eval_batches": 2, "tracking.track_jacobian": True,
           "tracking.jacobian_probe_batch": 4},
    False: {"train.members_per_regime": 4, "tracking.track_jacobian": True, "tracking.jacobian_probe_batch": 8},
}
"""quick -> overrides of the main job's config (full size: the main job's model, 600 steps, 4 seeds per regime)."""


def configs(quick: bool):
  """(affine-chain run over p = 1, 0.5, 0; byte-level pydoc text run) configs."""
  from models.config import RunConfig, with_overrides
  tag = "quick" if quick else "full"
  chain = with_overrides(RunConfig(name=f"checks_trained_jacobians_{tag}"),
                         {**SIZES[quick], "data.vocab_size": 32 if quick else 64})
  text = with_overrides(RunConfig(name=f"checks_trained_jacobians_text_{tag}"),
                        {**SIZES[quick], "data.kind": "text", "data.text_source": "pydoc", "data.text_level": "byte",
                         "data.vocab_size": 256, "data.noise_p": [0.0], "data.regime_names": ["text"]})
  return chain, text


# --- the free prediction ---------------------------------------------------------------------------------------------


def compare_to_free_product(block_sv, net_sv, *, seed: int = 0, prediction_draws: int = PREDICTION_DRAWS,
                            null_draws: int = NULL_DRAWS) -> dict:
  """The measured network Jacobian against the free product of its own blocks (module docstring).

  Args:
    block_sv: ``(P, n_blocks, D)`` singular values of each probe's block Jacobians.
    net_sv: ``(P, D)`` singular values of each probe's network Jacobian.

  Returns:
    ``ks``, ``p_value`` (Monte Carlo, ``null_draws`` pseudo-measurements), ``edge_ratio``, ``outliers`` (mean over
    probes), ``outlier_counts`` (per probe) and ``thresholds`` (per probe, squared singular value).
  """
  block_sv, net_sv = np.asarray(block_sv, np.float64), np.asarray(net_sv, np.float64)
  if block_sv.ndim != 3 or net_sv.ndim != 2 or block_sv.shape[0] != net_sv.shape[0] or \
     block_sv.shape[2] != net_sv.shape[1]:
    raise ValueError(f"block_sv, net_sv: expected (P, n_blocks, D) and (P, D), got {block_sv.shape} and "
                     f"{net_sv.shape}")
  if not (np.all(np.isfinite(block_sv)) and np.all(np.isfinite(net_sv))):
    raise ValueError("block_sv, net_sv: expected finite singular values (a diverged member?)")
  probes = net_sv.shape[0]
  draws = [fp.free_product_singular_values(block_sv[p], draws=prediction_draws + null_draws, seed=seed * 1009 + p)
           for p in range(probes)]
  pool = np.concatenate([d[:prediction_draws].ravel() ** 2 for d in draws])
  ks = two_sample_ks(net_sv.ravel() ** 2, pool)
  null = np.asarray([two_sample_ks(np.concatenate([d[prediction_draws + b] ** 2 for d in draws]), pool)
                     for b in range(null_draws)])
  thresholds = np.asarray([np.quantile(d[:prediction_draws, 0] ** 2, OUTLIER_QUANTILE) for d in draws])
  counts = np.sum(net_sv ** 2 > thresholds[:, None], axis=1)
  edge = float(np.mean(net_sv[:, 0] / np.asarray([np.median(d[:prediction_draws, 0]) for d in draws])))
  return dict(ks=ks, p_value=float((1 + np.sum(null >= ks)) / (null_draws + 1)), edge_ratio=edge,
              outliers=float(counts.mean()), outlier_counts=counts.tolist(), thresholds=thresholds.tolist())


def spike_overlap(jacobian, spikes, k: int) -> tuple[float, float]:
  """Mean squared projection of the top-``k`` left and right singular vectors of ``jacobian`` (D, D) onto the span
  of ``spikes`` (D, r), and its chance level ``rank(spikes) / D`` for random directions."""
  jacobian = np.asarray(jacobian, np.float64)
  d = jacobian.shape[0]
  spikes = np.asarray(spikes, np.float64).reshape(d, -1)
  if spikes.shape[1] == 0:
    return 0.0, 0.0
  u, s, _ = np.linalg.svd(spikes, full_matrices=False)
  basis = u[:, s > 1e-8 * max(s.max(), 1e-300)]
  lu, _, rvt = np.linalg.svd(jacobian)
  vecs = np.concatenate([lu[:, :k], rvt[:k].T], axis=1)
  return float(np.mean(np.sum((basis.T @ vecs) ** 2, axis=0))), basis.shape[1] / d


# --- measurement ------------------------------------------------------------------------------------------------------


def residual_side(name: str) -> int | None:
  """Which axis of weight matrix ``name`` (``models.weight_matrices`` orientation) is the residual stream
  (``models.subspaces.matrix_sides``); ``None`` when neither is."""
  from models.subspaces import matrix_sides
  sides = matrix_sides(name)
  return sides.index("residual") if "residual" in sides else None


def spike_directions(run_dir, seed: int = 0) -> dict:
  """Per member: the residual-stream directions of the structured directions of ``dW`` (D, r) and the network
  Jacobian matrices at the last checkpoint ``(P, D, D)``."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from models import tracking
  from models.data import make_task
  from models.train import graphdef_of, init_members, load_trained_params, member_hparams, member_key, members_of
  from models.weight_matrices import weight_matrices
  from spectral.structure import structure_rank_batch

  _, cfg, params = load_trained_params(run_dir)
  members = members_of(cfg)
  keys = jnp.stack([member_key(cfg, m.seed_index) for m in members])
  hp = member_hparams(members)
  init = init_members(cfg, keys, hp["init_scale"])
  mats, mats0 = weight_matrices(params, 1), weight_matrices(init, 1)
  per_member = [[] for _ in members]
  for j, name in enumerate(sorted(mats)):
    side = residual_side(name)
    if side is None:
      continue
    results = structure_rank_batch(np.asarray(mats[name]), inits=np.asarray(mats0[name]), level=LEVEL,
                                   seed=seed + j, max_rank=min(MAX_SPIKES, min(mats[name].shape[1:]) - 1))
    for i, res in enumerate(results):
      if res.rank > 0:
        per_member[i].append((res.u if side == 0 else res.v)[:, : res.rank])
  graphdef, task = graphdef_of(cfg), make_task(cfg.data)
  position = tracking.resolved_position(cfg)
  probes = cfg.tracking.jacobian_probe_batch

  @jax.jit
  def network_jacobians(prm, key, p):
    tokens = tracking.probe_batch(cfg, task, key, p, probes)[:, :-1]
    model = nnx.merge(graphdef, prm)
    return jax.vmap(lambda t: tracking.chain(tracking.jacobian_matrices(model, t, position)))(tokens)

  jac = jax.vmap(network_jacobians)(params, keys, hp["noise_p"])
  d = int(jac.shape[-1])
  return dict(spikes=[np.concatenate(s, axis=1) if s else np.zeros((d, 0)) for s in per_member],
              jacobians=np.asarray(jac, np.float64))


def measure_run(run, seed: int = 0) -> list[dict]:
  """Per member: the free-product comparison at every snapshot step, and the spike overlap at the last."""
  steps = sorted(run.jacobians)
  if not steps:
    raise ValueError(f"run {run.name}: no Jacobian spectra stored (train with tracking.track_jacobian = true)")
  last = steps[-1]
  blocks = sorted((n for n in run.jacobians[last] if n.startswith("blocks.")), key=lambda n: int(n.split(".")[1]))
  directions = spike_directions(run.path, seed=seed)
  rows = []
  for mem in run.members:
    i = mem["index"]
    per_step = {}
    for step in steps:
      block_sv = np.stack([run.jacobians[step][b][i] for b in blocks], axis=1)  # (P, n, D)
      per_step[step] = compare_to_free_product(block_sv, run.jacobians[step]["network"][i], seed=seed + i)
    k = max(1, int(round(per_step[last]["outliers"])))
    overlaps = [spike_overlap(jm, directions["spikes"][i], k) for jm in directions["jacobians"][i]]
    rows.append(dict(member=i, regime=mem["regime"], noise_p=mem["noise_p"], steps=steps,
                     per_step={str(s): v for s, v in per_step.items()},
                     spike_dims=int(round(overlaps[0][1] * directions["jacobians"].shape[-1])),  # chance = dims / D
                     spike_overlap=float(np.mean([o for o, _ in overlaps])),
                     spike_overlap_chance=float(np.mean([c for _, c in overlaps])), top_k=k))
  return rows


def regime_summary(rows: list[dict]) -> dict:
  """Per regime and snapshot step: means and standard errors over members of each departure statistic."""
  out = {}
  for regime in dict.fromkeys(r["regime"] for r in rows):
    mine = [r for r in rows if r["regime"] == regime]
    steps = mine[0]["steps"]
    s = dict(members=len(mine), steps=steps)
    for key in ("ks", "p_value", "edge_ratio", "outliers"):
      s[key] = [common.mean_se([r["per_step"][str(t)][key] for r in mine]) for t in steps]
    s["rejected_at_level"] = [int(sum(r["per_step"][str(t)]["p_value"] <= LEVEL for r in mine)) for t in steps]
    for key in ("spike_overlap", "spike_overlap_chance", "spike_dims"):
      s[key] = common.mean_se([r[key] for r in mine])
    out[regime] = s
  return out


def judge(rows: list[dict]) -> tuple[str, dict]:
  """PASS when the members rejected at step 0 are within the binomial allowance of ``LEVEL`` false alarms."""
  at_init = [r for r in rows if 0 in r["steps"]]
  if not at_init:
    return INCONCLUSIVE, dict(reason="no Jacobian spectra stored at step 0")
  rejected = sum(r["per_step"]["0"]["p_value"] <= LEVEL for r in at_init)
  allowed = common.rate_bound(len(at_init), LEVEL)
  facts = dict(members_tested_at_init=len(at_init), rejected_at_init=int(rejected), allowed_at_init=int(allowed))
  return (PASS if rejected <= allowed else FAIL), facts


def check_runs(*runs, seed: int = 0) -> Verdict:
  rows = [r | dict(run=run.name) for run in runs for r in measure_run(run, seed=seed)]
  status, facts = judge(rows)
  summary = regime_summary(rows)
  measured = dict(facts)
  for regime, s in summary.items():
    measured[f"{regime}_init_ks"] = s["ks"][0][0]
    measured[f"{regime}_trained_ks"] = s["ks"][-1][0]
    measured[f"{regime}_trained_rejected"] = f"{s['rejected_at_level'][-1]}/{s['members']}"
    measured[f"{regime}_trained_edge_ratio"] = s["edge_ratio"][-1][0]
    measured[f"{regime}_trained_outliers"] = s["outliers"][-1][0]
    measured[f"{regime}_spike_overlap"] = s["spike_overlap"][0]
    measured[f"{regime}_spike_overlap_chance"] = s["spike_overlap_chance"][0]
  regimes = list(summary)
  series = dict(regime=regimes, steps=summary[regimes[0]]["steps"])
  for key in ("ks", "edge_ratio", "outliers"):
    series[f"{key}_mean"] = [[m for m, _ in summary[g][key]] for g in regimes]
    series[f"{key}_se"] = [[e for _, e in summary[g][key]] for g in regimes]
  series["spike_overlap"] = [summary[g]["spike_overlap"][0] for g in regimes]
  series["spike_overlap_chance"] = [summary[g]["spike_overlap_chance"][0] for g in regimes]
  return Verdict(
      check=NAME,
      prediction="at initialisation the network Jacobian's squared singular values follow the free multiplicative "
      "convolution of its blocks' (asymptotic freeness); after training, per regime, where and how much they depart",
      source="Voiculescu 1991 (Invent. Math. 104:201); Pennington, Schoenholz & Ganguli 2018 (arXiv:1802.09979); "
      "docs/THEORY.md#trained_jacobians",
      tolerance=f"per member Monte Carlo KS test against the sampled free product ({NULL_DRAWS} pseudo-measurements) "
      f"at level {LEVEL}; PASS when the members rejected at step 0 are <= the Binomial(members, {LEVEL}) 99% "
      "quantile; trained departures reported, not judged",
      status=status, measured=measured, predicted=dict(rejected_at_init=f"<= {facts.get('allowed_at_init')}"),
      details=[dict(summary=summary), *rows], run=",".join(str(r.path) for r in runs), series=series)


def run(quick: bool = False, runs_dir: str | pathlib.Path = common.DEFAULT_RUNS, seed: int = 0) -> Verdict:
  from models.run_folder import load_run
  from models.train import train_run
  return check_runs(*(load_run(train_run(c, runs_dir, progress=False)) for c in configs(quick)), seed=seed)
