"""Spreading an ensemble over devices: members over the ``ens`` mesh axis, each member's batch over ``data``.

The mesh is ``jax.make_mesh((ens, data), ("ens", "data"), axis_types=(Auto, Auto))`` with ``ens`` the largest divisor
of the member count that fits the devices left after ``data`` (``train.data_parallel``). The ensemble step runs under
``jax.shard_map``: every device steps its own slice of members with the chosen strategy (vmap / lax.map / chunked), so
members never communicate; with ``data > 1`` each device of a member's ``data`` group scores its slice of the batch and
the gradients are averaged with ``lax.pmean`` over ``data`` (equal slices, so this is the full-batch mean gradient up to
float32 summation order). On one device no mesh is built and the step is the plain single-device program.

Multi-host runs (TPU pods, Slurm) call ``jax.distributed.initialize()`` before anything else (``initialize_distributed``);
results are gathered to every host with ``process_allgather`` and only process 0 writes files.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

ENS, DATA = "ens", "data"


def make_ensemble_mesh(num_members: int, data_parallel: int = 1, devices=None) -> jax.sharding.Mesh | None:
  """The (ens, data) mesh for ``num_members`` members, or ``None`` when everything fits one device."""
  devices = list(jax.devices() if devices is None else devices)
  if data_parallel < 1 or len(devices) % data_parallel:
    raise ValueError(f"train.data_parallel: expected a divisor of the device count {len(devices)}, got {data_parallel}")
  ens = math.gcd(num_members, len(devices) // data_parallel)
  if ens * data_parallel == 1:
    return None
  return jax.make_mesh((ens, data_parallel), (ENS, DATA), axis_types=(AxisType.Auto, AxisType.Auto),
                       devices=devices[:ens * data_parallel])


def place_members(tree, mesh):
  """Put every leaf's leading (member) axis on the ``ens`` mesh axis; replicated over ``data``."""
  if mesh is None:
    return tree
  sharding = NamedSharding(mesh, P(ENS))
  return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), tree)


def shard_over_members(fn, mesh, in_axes):
  """Run ``fn`` (stacked members in, stacked members out) per device on its slice of members.

  ``in_axes``: 0 for member-stacked arguments, ``None`` for replicated ones (e.g. the step number).
  """
  if mesh is None:
    return fn
  in_specs = tuple(P(ENS) if ax == 0 else P() for ax in in_axes)
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=P(ENS), check_vma=False)


def data_axis_of(mesh) -> str | None:
  return DATA if mesh is not None and mesh.shape[DATA] > 1 else None


def fetch(tree):
  """Device values to host numpy, gathering member shards from every host in a multi-host run."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils

  return jax.tree_util.tree_map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)


def is_writer() -> bool:
  """Only process 0 writes shared files."""
  return jax.process_index() == 0


def initialize_distributed() -> None:
  """``jax.distributed.initialize()`` with the cluster's auto-detected settings (TPU pods, Slurm, ...)."""
  jax.distributed.initialize()
