"""Orbax checkpoints of an ensemble's training state, inside its run folder (``checkpoints/<step>/``).

The state is any pytree of arrays (``params``, optimiser state, frozen flags, ...). It is saved as a flat mapping
``{"leaf_00000": array, ...}`` in ``jax.tree_util`` leaf order and restored into the structure of a template state,
so the on-disk format does not depend on how Flax or optax register their pytree nodes. A checkpoint at step ``s``
holds the state after ``s`` updates; Orbax writes it to a temporary folder and renames it when complete, so a killed
save is invisible and resuming falls back to the previous one.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp


def _flat(state) -> dict[str, jax.Array]:
  return {f"leaf_{i:05d}": x for i, x in enumerate(jax.tree_util.tree_leaves(state))}


class Checkpointer:
  """Save and restore the training state of one run (synchronous saves: a returned ``save`` is on disk)."""

  def __init__(self, run_dir: str | pathlib.Path, keep: int = 2):
    self.directory = pathlib.Path(run_dir).resolve() / "checkpoints"
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                             enable_async_checkpointing=False))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state) -> None:
    self.manager.save(step, args=ocp.args.StandardSave(_flat(state)), force=True)
    self.manager.wait_until_finished()

  def restore(self, step: int, template):
    """The state saved at ``step``, in the structure (and dtypes/shapes) of ``template``."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    abstract = {k: jax.ShapeDtypeStruct(np.shape(x), x.dtype) for k, x in _flat(template).items()}
    flat = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return jax.tree_util.tree_unflatten(treedef, [flat[f"leaf_{i:05d}"] for i in range(len(leaves))])

  def close(self) -> None:
    self.manager.close()
