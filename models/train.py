"""Ensemble training: every member of a run in one compiled step, spectra snapshotted into the run folder.

Members: a run has ``R = len(data.noise_p)`` regimes times ``m = train.members_per_regime`` seeds; member
``i = r * m + j`` trains on regime ``r`` with the key ``k_j = fold_in(PRNGKey(train.seed), j)``. The key fixes the
initial weights (``fold_in(k_j, 0)``), the training data (``fold_in(k_j, 1)``, then ``fold_in(., step)``) and the
held-out data (``fold_in(k_j, 2)``). So the regimes of one seed start from the same weights (a paired comparison),
and adding seeds or regimes never changes existing members: member ``i`` equals a solo run with the same key.

Strategies (``train.ensemble_strategy``): ``vmap`` batches members into one program; ``map`` runs them one after the
other inside one compiled step (``jax.lax.map``), which is at least as fast on CPU where batched matmuls buy nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import pathlib
import shutil
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from models import run_folder
from models.config import RunConfig, config_from_dict
from models.data import affine_noise_entropy_rate, batch_for_step
from models.transformer import Transformer, init_variance
from models.weight_matrices import weight_matrices
from spectral.esd import esd


@dataclasses.dataclass(frozen=True)
class Member:
  index: int
  regime: str
  noise_p: float
  seed_index: int


def members_of(cfg: RunConfig) -> list[Member]:
  m = cfg.train.members_per_regime
  return [Member(r * m + j, name, float(p), j)
          for r, (name, p) in enumerate(zip(cfg.data.regime_names, cfg.data.noise_p)) for j in range(m)]


def member_key(cfg: RunConfig, seed_index: int) -> jax.Array:
  return jax.random.fold_in(jax.random.PRNGKey(cfg.train.seed), seed_index)


def resolve_strategy(strategy: str) -> str:
  if strategy != "auto":
    return strategy
  return "map" if jax.default_backend() == "cpu" else "vmap"


def build_model(cfg: RunConfig, key: jax.Array) -> Transformer:
  return Transformer(cfg.model, cfg.data.vocab_size, cfg.data.seq_len, rngs=nnx.Rngs(params=key))


def init_params(cfg: RunConfig, key: jax.Array) -> nnx.State:
  """Initial parameters of the member with key ``key`` (pure in ``key``, so it can be vmapped)."""
  return nnx.state(build_model(cfg, jax.random.fold_in(key, 0)), nnx.Param)


def graphdef_of(cfg: RunConfig):
  model = nnx.eval_shape(lambda: build_model(cfg, jax.random.PRNGKey(0)))
  return nnx.split(model, nnx.Param)[0]


def make_optimizer(cfg: RunConfig) -> optax.GradientTransformation:
  return optax.adamw(cfg.train.learning_rate, weight_decay=cfg.train.weight_decay)


def loss_and_accuracy(graphdef, params, tokens_BxL1):
  """Next-token cross-entropy (nats) and accuracy of the model ``merge(graphdef, params)`` on (B, L+1) tokens."""
  model = nnx.merge(graphdef, params)
  logits = model(tokens_BxL1[:, :-1])
  targets = tokens_BxL1[:, 1:]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
  accuracy = (logits.argmax(-1) == targets).mean()
  return loss, accuracy


def make_member_step(cfg: RunConfig, graphdef, tx) -> Callable:
  """Pure one-member step: (params, opt_state, key, p, step) -> (params, opt_state, loss, finite).

  A member whose loss or gradients are not finite keeps its previous parameters (it is frozen, and flagged by the
  caller), so one diverging member never contaminates the others.
  """

  def member_step(params, opt_state, key, p, step):
    tokens = batch_for_step(cfg.data, jax.random.fold_in(key, 1), step, p)
    (loss, _), grads = jax.value_and_grad(
        lambda prm: loss_and_accuracy(graphdef, prm, tokens), has_aux=True)(params)
    updates, new_opt = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    finite = jnp.isfinite(loss) & jnp.all(jnp.asarray(
        [jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
    keep = lambda new, old: jnp.where(finite, new, old)
    return (jax.tree_util.tree_map(keep, new_params, params), jax.tree_util.tree_map(keep, new_opt, opt_state),
            loss, finite)

  return member_step


def over_members(fn: Callable, strategy: str, in_axes) -> Callable:
  """Apply a per-member function to stacked members with ``vmap`` or ``lax.map`` (``in_axes`` 0 or None each)."""
  if strategy == "vmap":
    return jax.vmap(fn, in_axes=in_axes)

  def mapped(*args):
    stacked = tuple(a for a, ax in zip(args, in_axes) if ax == 0)
    shared = [a for a, ax in zip(args, in_axes) if ax is None]

    def one(xs):
      it_x, it_s = iter(xs), iter(shared)
      return fn(*[next(it_x) if ax == 0 else next(it_s) for ax in in_axes])

    return jax.lax.map(one, stacked)

  return mapped


def make_ensemble_step(cfg: RunConfig, graphdef, tx, strategy: str) -> Callable:
  member_step = make_member_step(cfg, graphdef, tx)
  return jax.jit(over_members(member_step, strategy, (0, 0, 0, 0, None)), donate_argnums=(0, 1))


def make_evaluate(cfg: RunConfig, graphdef, strategy: str) -> Callable:
  """Held-out loss and accuracy per member over ``train.eval_batches`` fresh batches."""

  def member_eval(params, key, p):
    def one(i):
      tokens = batch_for_step(cfg.data, jax.random.fold_in(key, 2), i, p)
      return loss_and_accuracy(graphdef, params, tokens)

    losses, accs = jax.lax.map(one, jnp.arange(cfg.train.eval_batches))
    return losses.mean(), accs.mean()

  return jax.jit(over_members(member_eval, strategy, (0, 0, 0)))


@jax.jit
def _spectra_of(matrices):
  return {k: esd(v) for k, v in matrices.items()}


def snapshot_rows(step: int, params, evaluate, keys, ps) -> tuple[dict[str, np.ndarray], list[tuple]]:
  """ESDs of every weight matrix of every member, plus held-out metrics and per-layer Frobenius norms."""
  matrices = weight_matrices(params, ensemble_dims=1)
  spectra = jax.device_get(_spectra_of(matrices))
  test_loss, test_acc = jax.device_get(evaluate(params, keys, ps))
  rows = []
  for i in range(len(ps)):
    rows.append((step, i, "", "test_loss", test_loss[i]))
    rows.append((step, i, "", "test_accuracy", test_acc[i]))
    for name, ev in spectra.items():
      rows.append((step, i, name, "frobenius_norm_sq_over_n", ev[i].sum()))  # = ||W||_F^2 / N
  return spectra, rows


def environment_info(cfg: RunConfig, strategy: str) -> dict:
  try:
    version = importlib.metadata.version("spectral-lab")
  except importlib.metadata.PackageNotFoundError:
    version = "0+unknown"
  return dict(format_version=run_folder.FORMAT_VERSION, package_version=version, jax_version=jax.__version__,
              flax_version=importlib.metadata.version("flax"), backend=jax.default_backend(),
              device_kind=jax.devices()[0].device_kind, device_count=jax.device_count(),
              ensemble_strategy=strategy)


def train_run(cfg: RunConfig, runs_dir: str | pathlib.Path = "runs", *, progress: bool = True,
              log_every: int = 10) -> pathlib.Path:
  """Train every member of ``cfg`` and write ``runs_dir/cfg.name``. A finished run (DONE present) is not recomputed.

  Returns the run folder's path.
  """
  run_dir = pathlib.Path(runs_dir) / cfg.name
  if (run_dir / "DONE").exists():
    stored = config_from_dict(run_folder.load_run(run_dir).config)
    if stored != cfg:
      raise ValueError(f"{run_dir}: a finished run with a different config already exists; choose another name")
    return run_dir
  if run_dir.exists():
    shutil.rmtree(run_dir)  # an unfinished skeleton run restarts from scratch
  run_dir.mkdir(parents=True)

  strategy = resolve_strategy(cfg.train.ensemble_strategy)
  members = members_of(cfg)
  keys = jnp.stack([member_key(cfg, m.seed_index) for m in members])
  ps = jnp.asarray([m.noise_p for m in members], dtype=jnp.float32)
  graphdef = graphdef_of(cfg)
  tx = make_optimizer(cfg)
  params = jax.jit(jax.vmap(lambda k: init_params(cfg, k)))(keys)
  opt_state = jax.jit(jax.vmap(tx.init))(params)
  step_fn = make_ensemble_step(cfg, graphdef, tx, strategy)
  evaluate = make_evaluate(cfg, graphdef, strategy)

  matrices = weight_matrices(params, ensemble_dims=1)
  info = environment_info(cfg, strategy)
  info["members"] = [dataclasses.asdict(m) | {"entropy_rate_bits": affine_noise_entropy_rate(
      m.noise_p, cfg.data.vocab_size)} for m in members]
  info["matrices"] = {k: {"shape": list(v.shape[1:]), "init_variance": init_variance(k, cfg.model)}
                      for k, v in matrices.items()}
  run_folder.atomic_write_json(run_dir / "config.json", cfg.to_dict())
  run_folder.atomic_write_json(run_dir / "run.json", info)

  snapshots = set(cfg.train.snapshot_steps)
  frozen = np.zeros(len(members), dtype=bool)
  bar = tqdm(total=cfg.train.steps, desc=cfg.name, disable=not progress, unit="step")
  t0 = time.perf_counter()
  for step in range(cfg.train.steps + 1):
    if step in snapshots:
      spectra, rows = snapshot_rows(step, params, evaluate, keys, ps)
      run_folder.write_spectra(run_dir, step, spectra)
      run_folder.append_metrics(run_dir, rows)
    if step == cfg.train.steps:
      break
    params, opt_state, loss, finite = step_fn(params, opt_state, keys, ps, step)
    if step % log_every == 0 or step == cfg.train.steps - 1:
      loss, finite = jax.device_get((loss, finite))
      newly = ~finite & ~frozen
      frozen |= ~finite
      rows = [(step, i, "", "train_loss", loss[i]) for i in range(len(members))]
      rows += [(step, i, "", "diverged", 1.0) for i in np.flatnonzero(newly)]
      run_folder.append_metrics(run_dir, rows)
      by_regime = {}
      for m in members:
        by_regime.setdefault(m.regime, []).append(loss[m.index])
      bar.set_postfix({k: f"{np.mean(v):.3f}" for k, v in by_regime.items()})
    bar.update(1)
  bar.close()
  tokens = cfg.train.steps * cfg.data.batch_size * cfg.data.seq_len * len(members)
  info["train_seconds"] = time.perf_counter() - t0
  info["tokens_per_second"] = tokens / info["train_seconds"]
  run_folder.atomic_write_json(run_dir / "run.json", info)
  (run_dir / "DONE").write_text("done\n")
  return run_dir
