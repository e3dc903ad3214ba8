"""Load named weight arrays from files for the CLI: ``.npz`` and ``.safetensors`` (the only file-aware module).

``load_weights(path)`` returns ``{name: numpy array}`` in file order. Other formats (the lab's run folders and Orbax
checkpoints) plug in through ``register_loader(predicate, loader)``: the first registered loader whose predicate
accepts the path wins, before the built-in suffix rules.
"""

from __future__ import annotations

import pathlib
import zipfile
from collections.abc import Callable

import numpy as np

_LOADERS: list[tuple[Callable[[pathlib.Path], bool], Callable[[pathlib.Path], dict]]] = []


def register_loader(predicate: Callable[[pathlib.Path], bool], loader: Callable[[pathlib.Path], dict]) -> None:
  """Hook for other formats (e.g. the lab's run folders / Orbax checkpoints): ``loader(path) -> {name: array}``."""
  _LOADERS.append((predicate, loader))


def _load_npz(path: pathlib.Path) -> dict:
  if not zipfile.is_zipfile(path):
    raise ValueError(f"WEIGHTS: {path} is not a .npz file (an .npz is a zip archive of .npy arrays)")
  with np.load(path, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


def _load_safetensors(path: pathlib.Path) -> dict:
  try:
    from safetensors.numpy import load_file
  except ImportError as err:  # pragma: no cover
    raise ImportError("reading .safetensors needs the 'safetensors' package") from err
  try:
    return dict(load_file(str(path)))
  except TypeError:
    # bf16 tensors have no numpy dtype in safetensors.numpy: go through the flax/jax loader.
    from safetensors.flax import load_file as load_jax
    return {k: np.asarray(v.astype("float32")) for k, v in load_jax(str(path)).items()}


def load_weights(path) -> dict:
  """Named arrays in ``path``; raises ``ValueError`` naming the path if none is a matrix-like (>= 2-D) array."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"WEIGHTS: no such file or folder: {path}")
  for predicate, loader in _LOADERS:
    if predicate(path):
      arrays = loader(path)
      break
  else:
    if path.suffix == ".npz":
      arrays = _load_npz(path)
    elif path.suffix == ".safetensors":
      arrays = _load_safetensors(path)
    else:
      raise ValueError(f"WEIGHTS: unsupported file type {path.suffix!r} for {path} (expected .npz or .safetensors)")
  if not any(np.ndim(a) >= 2 for a in arrays.values()):
    raise ValueError(f"WEIGHTS: {path} contains no matrices (found {len(arrays)} arrays, none with 2 or more axes)")
  return arrays
