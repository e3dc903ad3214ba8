"""The pure steps of ensemble training: loss, one member's step, the ensemble step, evaluation and tracking.

Every function here is pure in arrays and builds a jitted program; nothing touches files. A member's training state
is ``dict(params, opt, frozen, frozen_at)`` (``init_state``); the ensemble stacks it along a leading member axis.

Strategies (``train.ensemble_strategy``): ``vmap`` batches members into one program; ``map`` runs them one after the
other inside one compiled step (``jax.lax.map``), at least as fast on CPU where batched matmuls buy nothing;
``chunked`` maps over chunks of ``train.chunk_size`` vmapped members. With a mesh (``models.sharding``) every device
steps its own slice of members.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from models import sharding, tracking
from models.config import RunConfig
from models.data import Task, make_task
from models.members import init_members
from models.optimizer import make_optimizer
from models.weight_matrices import path_name
from spectral.esd import esd

__all__ = ["resolve_strategy", "loss_and_accuracy", "matrix_norms", "init_state", "make_member_step", "over_members",
           "make_ensemble_step", "make_evaluate", "make_tracking", "spectra_of"]


def resolve_strategy(strategy: str) -> str:
  if strategy != "auto":
    return strategy
  return "map" if jax.default_backend() == "cpu" else "vmap"


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
  params = init_members(cfg, keys, hparams["init_scale"])
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


def spectra_of(matrices):
  """ESD eigenvalues (``spectral.esd``) of every stacked weight matrix: name -> (members, M). Not for use under jit.

  One program per matrix, each waited for before the next is dispatched, so that no two batched LAPACK eigh kernels
  are ever in flight at once. jaxlib's CPU eigh splits its batch over the intra-op pool and blocks until the pieces
  are done; two of them in flight at once held both threads of a 2-core machine's pool while their pieces waited
  for a free thread: a deadlock (gdb: both ``tf_XLAEigen`` threads in ``lapack_ssyevd_ffi -> ParallelBatchMap ->
  BlockingCounter::Wait``; seen at widths 128 and 256). The earlier version, one jitted program whose kernels were
  chained by optimization barriers, hung that way: XLA's CPU compiler removes the barriers and leaves the eigh calls
  independent (jax 0.10.2: no barrier and no control dependency in the compiled HLO). ``spectral.esd.after`` now
  orders kernels inside a program by a data dependency; here the host loop is simpler and no compiler can undo it.
  """
  return {name: jax.block_until_ready(esd(w)) for name, w in matrices.items()}
