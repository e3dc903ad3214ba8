"""Ensemble training: every member of a run in one compiled step, spectra snapshotted into the run folder.

Members (``RunConfig.members()``): by default ``R = len(data.noise_p)`` regimes times ``m = train.members_per_regime``
seeds, member ``i = r * m + j``; the ``ensemble`` config section adds per-member learning rate, weight decay, init
scale and data knob ``p`` (axes or an explicit list). Member ``i`` with seed index ``j`` uses the key
``k_j = fold_in(PRNGKey(train.seed), j)``, which fixes its initial weights (``fold_in(k_j, 0)``), its training data
(``fold_in(k_j, 1)``, then ``fold_in(., step)``) and its held-out data (``fold_in(k_j, 2)``). So members sharing a seed
start from the same weights (a paired comparison; a different init scale multiplies the same draw), and adding
members never changes existing ones: member ``i`` equals a solo run with the same key and hyper-parameters.

Hyper-parameters are per-member arrays fed to one compiled step: the optax transformation is rebuilt inside the
traced step from the member's learning rate and weight decay (its state's structure does not depend on their
values), so K members with K learning rates share one program.

Strategies (``train.ensemble_strategy``): ``vmap`` batches members into one program; ``map`` runs them one after the
other inside one compiled step (``jax.lax.map``), at least as fast on CPU where batched matmuls buy nothing;
``chunked`` maps over chunks of ``train.chunk_size`` vmapped members.

Fault tolerance: Orbax checkpoints (``models.checkpoint``) of (params, optimiser state, frozen flags) at step ``s``
are written after every output of steps ``< s`` is on disk; a resumed run restores the latest one, drops metric rows
and spectra of steps ``>= s`` and recomputes them, bit-identically on the same machine. Snapshots and metric rows are
fetched from the device and written by a writer thread, so the host never waits for them between steps.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import pathlib
import queue
import shutil
import threading
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from models import run_folder, sharding, tracking
from models.checkpoint import Checkpointer
from models.config import Member, RunConfig, TrainConfig, config_from_dict
from models.data import Task, make_task
from models.transformer import Transformer, init_variance
from models.weight_matrices import path_name, weight_matrices
from spectral.esd import esd

__all__ = ["Member", "members_of", "member_key", "train_run", "make_ensemble_step", "make_member_step",
           "make_optimizer", "init_params", "graphdef_of", "member_hparams", "init_state", "make_tracking"]


def members_of(cfg: RunConfig) -> list[Member]:
  return cfg.members()


def member_key(cfg: RunConfig, seed_index: int) -> jax.Array:
  return jax.random.fold_in(jax.random.PRNGKey(cfg.train.seed), seed_index)


def member_hparams(members: list[Member]) -> dict[str, jax.Array]:
  """Per-member hyper-parameters as float32 arrays of shape (members,)."""
  return {k: jnp.asarray([getattr(m, k) for m in members], jnp.float32)
          for k in ("learning_rate", "weight_decay", "noise_p", "init_scale")}


def resolve_strategy(strategy: str) -> str:
  if strategy != "auto":
    return strategy
  return "map" if jax.default_backend() == "cpu" else "vmap"


def build_model(cfg: RunConfig, key: jax.Array) -> Transformer:
  return Transformer(cfg.model, cfg.data.vocab_size, cfg.data.seq_len, rngs=nnx.Rngs(params=key))


def init_params(cfg: RunConfig, key: jax.Array, init_scale=None) -> nnx.State:
  """Initial parameters of the member with key ``key`` (pure in ``key``, so it can be vmapped).

  ``init_scale`` (may be traced) multiplies every matrix-shaped parameter by ``init_scale / model.init_scale``, so
  the stated variances become ``init_variance * (init_scale / model.init_scale)^2``; vectors (biases, LayerNorm) are
  untouched.
  """
  params = nnx.state(build_model(cfg, jax.random.fold_in(key, 0)), nnx.Param)
  if init_scale is None:
    return params
  ratio = jnp.asarray(init_scale, jnp.float32) / cfg.model.init_scale
  return jax.tree_util.tree_map(lambda x: x * ratio if x.ndim >= 2 else x, params)


def graphdef_of(cfg: RunConfig):
  model = nnx.eval_shape(lambda: build_model(cfg, jax.random.PRNGKey(0)))
  return nnx.split(model, nnx.Param)[0]


def learning_rate_schedule(tc: TrainConfig, learning_rate):
  """The learning rate at optimiser count ``c``: ``lr * warmup(c) * cosine(c)``, or the constant ``lr`` itself.

  Warm-up is linear, ``min(1, (c + 1) / warmup_steps)``; cosine decays to 0 at ``steps``, starting after the warm-up
  for ``warmup_cosine`` and at 0 for ``cosine``.
  """
  if tc.schedule == "constant" and tc.warmup_steps == 0:
    return learning_rate

  def schedule(count):
    c = jnp.asarray(count, jnp.float32)
    factor = jnp.minimum(1.0, (c + 1.0) / tc.warmup_steps) if tc.warmup_steps else jnp.float32(1.0)
    if tc.schedule != "constant":
      start = tc.warmup_steps if tc.schedule == "warmup_cosine" else 0
      frac = jnp.clip((c - start) / max(tc.steps - start, 1), 0.0, 1.0)
      factor = factor * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    return learning_rate * factor

  return schedule


def make_optimizer(cfg: RunConfig, learning_rate=None, weight_decay=None) -> optax.GradientTransformation:
  """AdamW, or SGD with momentum and decoupled weight decay, after optional global-norm clipping.

  ``learning_rate`` and ``weight_decay`` default to the run-wide values and may be traced per-member scalars.
  """
  tc = cfg.train
  lr = tc.learning_rate if learning_rate is None else learning_rate
  wd = tc.weight_decay if weight_decay is None else weight_decay
  schedule = learning_rate_schedule(tc, lr)
  parts = [optax.clip_by_global_norm(tc.grad_clip)] if tc.grad_clip > 0 else []
  if tc.optimizer == "adamw":
    parts.append(optax.adamw(schedule, weight_decay=wd))
  else:
    parts += [optax.trace(decay=tc.momentum), optax.add_decayed_weights(wd), optax.scale_by_learning_rate(schedule)]
  return parts[0] if len(parts) == 1 else optax.chain(*parts)


def loss_and_accuracy(graphdef, params, tokens_BxL1, weights_L=None):
  """Next-token cross-entropy (nats) and accuracy of ``merge(graphdef, params)`` on (B, L+1) tokens, averaged over
  the scored targets (``weights_L``; ``None`` scores every target)."""
  model = nnx.merge(graphdef, params)
  logits = model(tokens_BxL1[:, :-1])
  targets = tokens_BxL1[:, 1:]
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  hit = (logits.argmax(-1) == targets).astype(jnp.float32)
  if weights_L is None:
    return ce.mean(), hit.mean()
  w = jnp.asarray(weights_L, jnp.float32)[None, :]
  total = w.sum() * tokens_BxL1.shape[0]
  return (ce * w).sum() / total, (hit * w).sum() / total


def matrix_norms(tree) -> dict[str, jax.Array]:
  """Frobenius norm of every matrix-shaped leaf of an ``nnx.State`` (weights or gradients), by dotted name."""
  return {path_name(p): jnp.sqrt(jnp.sum(jnp.square(v[...] if isinstance(v, nnx.Variable) else v)))
          for p, v in nnx.to_flat_state(tree)
          if jnp.ndim(v) >= 2 and path_name(p).rsplit(".", 1)[-1] not in ("bias", "scale")}


def init_state(cfg: RunConfig, keys: jax.Array, hparams: dict) -> dict:
  """The stacked training state: params, optimiser state, frozen flags and the step each member froze (-1)."""
  params = jax.jit(jax.vmap(lambda k, s: init_params(cfg, k, s)))(keys, hparams["init_scale"])
  n = keys.shape[0]
  return dict(params=params, opt=jax.jit(jax.vmap(make_optimizer(cfg).init))(params),
              frozen=jnp.zeros(n, bool), frozen_at=jnp.full(n, -1, jnp.int32))


def make_member_step(cfg: RunConfig, graphdef, task: Task | None = None, data_axis: str | None = None) -> Callable:
  """Pure one-member step: (state, hparams, key, step) -> (state, outputs).

  ``state`` holds this member's ``params``, ``opt``, ``frozen`` and ``frozen_at``; ``hparams`` its scalar
  ``learning_rate``, ``weight_decay`` and ``noise_p``. A member whose loss or gradients are not finite is frozen for
  good: it keeps its parameters and optimiser state, and ``frozen_at`` records the step, so one diverging member never
  contaminates the others. Outputs: ``loss``, ``accuracy``, ``finite`` and per-matrix ``grad_norm``/``weight_norm``.

  ``data_axis`` (inside ``shard_map`` only): the member's batch is split over that mesh axis, each device scores its
  equal slice, and loss, accuracy and gradients are averaged with ``lax.pmean`` (the full-batch means).
  """
  task = make_task(cfg.data) if task is None else task

  def member_step(state, hp, key, step):
    tokens, weights = task.train_batch(jax.random.fold_in(key, 1), step, hp["noise_p"])
    if data_axis is not None:
      local = tokens.shape[0] // jax.lax.axis_size(data_axis)
      tokens = jax.lax.dynamic_slice_in_dim(tokens, jax.lax.axis_index(data_axis) * local, local, axis=0)
    params = state["params"]
    (loss, acc), grads = jax.value_and_grad(
        lambda prm: loss_and_accuracy(graphdef, prm, tokens, weights), has_aux=True)(params)
    if data_axis is not None:
      loss, acc, grads = jax.lax.pmean((loss, acc, grads), data_axis)
    tx = make_optimizer(cfg, hp["learning_rate"], hp["weight_decay"])
    updates, new_opt = tx.update(grads, state["opt"], params)
    new_params = optax.apply_updates(params, updates)
    finite = jnp.isfinite(loss) & jnp.all(jnp.asarray(
        [jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
    frozen = state["frozen"] | ~finite
    keep = lambda new, old: jnp.where(frozen, old, new)
    new_state = dict(params=jax.tree_util.tree_map(keep, new_params, params),
                     opt=jax.tree_util.tree_map(keep, new_opt, state["opt"]), frozen=frozen,
                     frozen_at=jnp.where(state["frozen"] | finite, state["frozen_at"], step))
    out = dict(loss=loss, accuracy=acc, finite=finite, frozen_at=new_state["frozen_at"], grad_norm=matrix_norms(grads),
               weight_norm=matrix_norms(new_state["params"]))
    return new_state, out

  return member_step


def over_members(fn: Callable, strategy: str, in_axes, chunk_size: int = 4) -> Callable:
  """Apply a per-member function to stacked members with ``vmap``, ``lax.map`` or ``lax.map`` over vmapped chunks
  (``in_axes`` 0 or None each)."""
  if strategy == "vmap":
    return jax.vmap(fn, in_axes=in_axes)

  def mapped(*args):
    stacked = tuple(a for a, ax in zip(args, in_axes) if ax == 0)
    shared = [a for a, ax in zip(args, in_axes) if ax is None]

    def one(xs):
      it_x, it_s = iter(xs), iter(shared)
      return fn(*[next(it_x) if ax == 0 else next(it_s) for ax in in_axes])

    return jax.lax.map(one, stacked, batch_size=chunk_size if strategy == "chunked" else None)

  return mapped


def make_ensemble_step(cfg: RunConfig, graphdef, strategy: str, task: Task | None = None, mesh=None) -> Callable:
  """Jitted (state, hparams, keys, step) -> (state, outputs) over stacked members; ``state`` is donated.

  With a ``mesh`` (``models.sharding``) every device steps its own slice of members (and of each member's batch).
  """
  member_step = make_member_step(cfg, graphdef, task, sharding.data_axis_of(mesh))
  in_axes = (0, 0, 0, None)
  per_device = over_members(member_step, strategy, in_axes, cfg.train.chunk_size)
  return jax.jit(sharding.shard_over_members(per_device, mesh, in_axes), donate_argnums=(0,))


def make_evaluate(cfg: RunConfig, graphdef, strategy: str, task: Task | None = None, mesh=None) -> Callable:
  """Held-out loss and accuracy per member over ``train.eval_batches`` batches of the task's held-out data."""
  task = make_task(cfg.data) if task is None else task

  def member_eval(params, key, p):
    def one(i):
      tokens, weights = task.eval_batch(jax.random.fold_in(key, 2), i, p)
      return loss_and_accuracy(graphdef, params, tokens, weights)

    losses, accs = jax.lax.map(one, jnp.arange(cfg.train.eval_batches))
    return losses.mean(), accs.mean()

  in_axes = (0, 0, 0)
  per_device = over_members(member_eval, strategy, in_axes, cfg.train.chunk_size)
  return jax.jit(sharding.shard_over_members(per_device, mesh, in_axes))


def make_tracking(cfg: RunConfig, graphdef, strategy: str, task: Task | None = None, mesh=None) -> Callable | None:
  """Jitted (params, keys, noise_p) -> Jacobian/Hessian spectra of every member (``models.tracking``), or ``None``
  when the ``tracking`` section switches everything off."""
  task = make_task(cfg.data) if task is None else task
  loss_fn = lambda params, tokens, weights: loss_and_accuracy(graphdef, params, tokens, weights)[0]
  member = tracking.member_tracking(cfg, graphdef, task, loss_fn)
  if member is None:
    return None
  in_axes = (0, 0, 0)
  per_device = over_members(member, strategy, in_axes, cfg.train.chunk_size)
  return jax.jit(sharding.shard_over_members(per_device, mesh, in_axes))


@jax.jit
def _spectra_of(matrices):
  return {k: esd(v) for k, v in matrices.items()}


def snapshot_rows(step: int, spectra: dict[str, np.ndarray], test_loss, test_acc) -> list[tuple]:
  """Held-out metrics and per-matrix ``||W||_F^2 / N`` (the sum of the ESD) of every member at a snapshot."""
  rows = []
  for i in range(len(test_loss)):
    rows.append((step, i, "", "test_loss", test_loss[i]))
    rows.append((step, i, "", "test_accuracy", test_acc[i]))
    for name, ev in spectra.items():
      rows.append((step, i, name, "frobenius_norm_sq_over_n", ev[i].sum()))
  return rows


def log_rows(step: int, out: dict, reported: set[int], frozen_at: np.ndarray) -> list[tuple]:
  """Training metrics of one logged step (host arrays), and a ``diverged`` row for each newly frozen member."""
  rows = []
  n = len(out["loss"])
  for i in range(n):
    rows.append((step, i, "", "train_loss", out["loss"][i]))
    rows.append((step, i, "", "train_accuracy", out["accuracy"][i]))
    for name in out["grad_norm"]:
      rows.append((step, i, name, "grad_norm", out["grad_norm"][name][i]))
      rows.append((step, i, name, "weight_norm", out["weight_norm"][name][i]))
  for i in np.flatnonzero(frozen_at >= 0):
    if int(i) not in reported:
      reported.add(int(i))
      rows.append((step, int(i), "", "diverged", 1.0))
      rows.append((step, int(i), "", "diverged_at_step", float(frozen_at[i])))
  return rows


class Writer:
  """A worker thread that fetches device results and writes them to the run folder, in submission order.

  ``put(fn, *device_values)`` queues ``fn(*host_values)``; ``flush()`` waits until everything queued is on disk and
  re-raises a worker error. The training loop only blocks on ``flush`` (before a checkpoint and at the end).
  """

  def __init__(self):
    self._queue: queue.Queue = queue.Queue()
    self._error: BaseException | None = None
    self._thread = threading.Thread(target=self._work, daemon=True, name="run-folder-writer")
    self._thread.start()

  def _work(self):
    while True:
      item = self._queue.get()
      try:
        if item is None:
          return
        fn, values = item
        if self._error is None:
          host = sharding.fetch(values)
          if sharding.is_writer():
            fn(*host)
      except BaseException as e:  # noqa: BLE001 - re-raised on the training thread by flush()
        self._error = e
      finally:
        self._queue.task_done()

  def put(self, fn: Callable, *values) -> None:
    self._queue.put((fn, values))

  def flush(self) -> None:
    self._queue.join()
    if self._error is not None:
      raise RuntimeError("run folder writer failed") from self._error

  def close(self) -> None:
    self._queue.put(None)
    self._thread.join()


def environment_info(cfg: RunConfig, strategy: str) -> dict:
  try:
    version = importlib.metadata.version("spectral-lab")
  except importlib.metadata.PackageNotFoundError:
    version = "0+unknown"
  return dict(format_version=run_folder.FORMAT_VERSION, package_version=version, jax_version=jax.__version__,
              flax_version=importlib.metadata.version("flax"), backend=jax.default_backend(),
              device_kind=jax.devices()[0].device_kind, device_count=jax.device_count(),
              ensemble_strategy=strategy)


class TrainingInterrupted(RuntimeError):
  """Raised by ``train_run(..., stop_after=n)``: the run stopped as if killed (tests of resumption)."""


def _prepare_folder(cfg: RunConfig, run_dir: pathlib.Path) -> int | None:
  """Make ``run_dir`` ready; return the checkpoint step to resume from (``None``: start afresh)."""
  ckpt_dir = run_dir / "checkpoints"
  if run_dir.exists() and (run_dir / "config.json").exists() and ckpt_dir.exists():
    stored = config_from_dict(run_folder.read_json(run_dir / "config.json"))
    steps = sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
    if stored != cfg and steps:
      raise ValueError(f"{run_dir}: an unfinished run with a different config has checkpoints; resume it with its "
                       "own config (config.json) or choose another name")
    if steps:
      return steps[-1]
  if run_dir.exists():
    shutil.rmtree(run_dir)  # nothing to resume from
  run_dir.mkdir(parents=True)
  return None


def train_run(cfg: RunConfig, runs_dir: str | pathlib.Path = "runs", *, progress: bool = True,
              log_every: int | None = None, stop_after: int | None = None) -> pathlib.Path:
  """Train every member of ``cfg`` into ``runs_dir/cfg.name``, resuming an interrupted run from its last checkpoint.

  A finished run (DONE present) is not recomputed. ``stop_after`` (tests only) raises ``TrainingInterrupted`` after
  that many steps of this call, leaving the folder as a kill would (rows after the last checkpoint included).
  Returns the run folder's path.
  """
  run_dir = pathlib.Path(runs_dir) / cfg.name
  if (run_dir / "DONE").exists():
    stored = config_from_dict(run_folder.load_run(run_dir).config)
    if stored != cfg:
      raise ValueError(f"{run_dir}: a finished run with a different config already exists; choose another name")
    return run_dir
  resume_step = _prepare_folder(cfg, run_dir)
  log_every = cfg.train.log_every if log_every is None else log_every

  strategy = resolve_strategy(cfg.train.ensemble_strategy)
  members = members_of(cfg)
  task = make_task(cfg.data)
  keys = jnp.stack([member_key(cfg, m.seed_index) for m in members])
  hparams = member_hparams(members)
  graphdef = graphdef_of(cfg)
  state = init_state(cfg, keys, hparams)
  checkpointer = Checkpointer(run_dir, keep=cfg.train.checkpoint_keep)
  start = 0
  if resume_step is not None:
    state = checkpointer.restore(resume_step, state)
    run_folder.truncate_after(run_dir, resume_step)
    start = resume_step
  mesh = sharding.make_ensemble_mesh(len(members), cfg.train.data_parallel)
  state, keys, hparams = sharding.place_members((state, keys, hparams), mesh)
  step_fn = make_ensemble_step(cfg, graphdef, strategy, task, mesh)
  evaluate = make_evaluate(cfg, graphdef, strategy, task, mesh)
  track = make_tracking(cfg, graphdef, strategy, task, mesh)

  matrices = weight_matrices(state["params"], ensemble_dims=1)
  info = environment_info(cfg, strategy)
  info["members"] = []
  for m in members:
    bits, exact = task.entropy_rate(m.noise_p)
    info["members"].append(dataclasses.asdict(m) | {"entropy_rate_bits": bits, "entropy_rate_exact": exact})
  info["matrices"] = {k: {"shape": list(v.shape[1:]), "init_variance": init_variance(k, cfg.model)}
                      for k, v in matrices.items()}
  info["init_scheme"] = cfg.model.init
  info["mesh"] = {} if mesh is None else {k: int(v) for k, v in mesh.shape.items()}
  info["data"] = task.info
  if resume_step is not None:
    info["resumed_from_step"] = resume_step
  run_folder.atomic_write_json(run_dir / "config.json", cfg.to_dict())
  run_folder.atomic_write_json(run_dir / "run.json", info)

  snapshots = set(cfg.train.snapshot_steps)
  every = cfg.train.checkpoint_every
  reported = {r["member"] for r in run_folder.read_metrics_if_any(run_dir) if r["metric"] == "diverged"}
  regimes: dict[str, list[int]] = {}
  for m in members:
    regimes.setdefault(m.regime, []).append(m.index)
  tokens_per_step = cfg.data.batch_size * cfg.data.seq_len * len(members)
  bar = tqdm(total=cfg.train.steps, initial=start, desc=cfg.name, disable=not progress, unit="step")
  writer = Writer()
  t0 = time.perf_counter()

  def write_snapshot(step, spectra, evaluation):
    run_folder.write_spectra(run_dir, step, spectra)
    run_folder.append_metrics(run_dir, snapshot_rows(step, spectra, *evaluation))

  def write_log(step, out):
    run_folder.append_metrics(run_dir, log_rows(step, out, reported, out["frozen_at"]))
    rate = (step + 1 - start) * tokens_per_step / max(time.perf_counter() - t0, 1e-9)
    bar.set_postfix({r: f"{np.mean(out['loss'][idx]):.3f}" for r, idx in regimes.items()} | {"tok/s": f"{rate:.0f}"},
                    refresh=False)

  try:
    for step in range(start, cfg.train.steps + 1):
      if step > start and (step in snapshots or (every and step % every == 0) or step == cfg.train.steps):
        writer.flush()  # every output of steps < step is on disk before the checkpoint that says so
        checkpointer.save(step, state)
      if step in snapshots:
        params = state["params"]
        snapshot = (_spectra_of(weight_matrices(params, ensemble_dims=1)), evaluate(params, keys, hparams["noise_p"]))
        writer.put(lambda s, sp, ev: write_snapshot(s, sp, ev), step, *snapshot)
        if track is not None:
          tracked = track(params, keys, hparams["noise_p"])
          writer.put(lambda s, out: tracking.write_tracking(run_dir, s, out), step, tracked)
          snapshot += (tracked,)
        # Snapshots run host callbacks (LAPACK eigh), which need the GIL. Dispatching further steps while they are
        # pending can block this thread inside XLA's in-flight-execution limit *holding* the GIL: a deadlock seen
        # under CPU contention. Waiting here releases the GIL until the callbacks have run.
        jax.block_until_ready(snapshot)
      if step == cfg.train.steps:
        break
      if stop_after is not None and step - start >= stop_after:
        writer.flush()
        raise TrainingInterrupted(f"stopped after {stop_after} steps at step {step}")
      state, out = step_fn(state, hparams, keys, step)
      if step % log_every == 0 or step == cfg.train.steps - 1:
        writer.put(write_log, step, out)  # never a piece of ``state``: the next step donates it
      bar.update(1)
    writer.flush()
  finally:
    writer.close()
    checkpointer.close()
    bar.close()
  info["train_seconds"] = time.perf_counter() - t0
  info["tokens_per_second"] = (cfg.train.steps - start) * tokens_per_step / max(info["train_seconds"], 1e-9)
  run_folder.atomic_write_json(run_dir / "run.json", info)
  (run_dir / "DONE").write_text("done\n")
  return run_dir


def load_trained_params(run_dir: str | pathlib.Path, step: int | None = None) -> tuple[int, RunConfig, nnx.State]:
  """(step, config, stacked params) from a run folder's checkpoint (the latest, or ``step``); ``nnx.merge`` them
  with ``graphdef_of(config)`` one member at a time (``jax.tree_util.tree_map(lambda x: x[i], params)``)."""
  run_dir = pathlib.Path(run_dir)
  cfg = config_from_dict(run_folder.read_json(run_dir / "config.json"))
  ckpt = Checkpointer(run_dir, keep=cfg.train.checkpoint_keep)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{run_dir}: no checkpoint")
    members = members_of(cfg)
    keys = jnp.stack([member_key(cfg, m.seed_index) for m in members])
    template = jax.eval_shape(lambda: init_state(cfg, keys, member_hparams(members)))
    template = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), template)
    return step, cfg, ckpt.restore(step, template)["params"]
  finally:
    ckpt.close()

