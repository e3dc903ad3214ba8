"""Read named tensors lazily from checkpoints as people have them, one tensor at a time.

``open_checkpoint(path)`` lists the tensors of

- a Hugging Face folder of sharded safetensors with its ``model.safetensors.index.json`` (``weight_map``: tensor name
  -> shard file), or the index file itself;
- a folder of ``*.safetensors`` files without an index (files in name order), or a single ``.safetensors`` file;
- an ``.npz`` file (``np.load`` reads one member at a time);
- an Orbax checkpoint folder (an item folder holding ``_METADATA`` or ``manifest.ocdbt``, or a step folder with one
  such item folder): restored whole by ``orbax.checkpoint`` (imported only then), names are
  the pytree paths joined by ``.``. This format is not streamed;
- any other path: ``spectral.weights_io.load_weights`` (its registered loaders and its errors), in memory.

and ``Checkpoint.read(entry)`` returns one tensor as a numpy array. Only headers are parsed up front, so a caller that
reads, analyses and drops one tensor at a time holds one tensor in memory (plus the pages of it that the
memory-mapped shard has touched, released when the shard handle is closed after each read).

Dtypes (exact conversions): ``BF16`` -> float32 by placing the 16 bits in the high half of a 32-bit word (bfloat16 is
the top half of an IEEE float32, so this is exact); ``F16`` and the 8-bit floats ``F8_E4M3``/``F8_E5M2`` -> float32 by
numpy/ml_dtypes casts (every such value is a float32); ``F32``/``F64`` are kept; integer and boolean tensors are
returned as stored (the analysis reports them as errors). An ``.npz`` member of raw 2-byte void dtype (how numpy
saves ``ml_dtypes.bfloat16`` without pickling) is read as bfloat16 bits.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import zipfile
from collections.abc import Callable

import numpy as np

from spectral import weights_io

INDEX_NAME = "model.safetensors.index.json"
_ORBAX_ITEM_MARKERS = ("_METADATA", "manifest.ocdbt")  # in an Orbax item folder (a step folder has one per item)


@dataclasses.dataclass(frozen=True)
class TensorEntry:
  """One tensor of a checkpoint: its name, shape, stored dtype (safetensors spelling, e.g. ``"BF16"``, or a numpy
  dtype name) and the file it lives in (the shard; the whole file for npz/Orbax)."""

  name: str
  shape: tuple[int, ...]
  dtype: str
  file: str

  @property
  def ndim(self) -> int:
    return len(self.shape)


@dataclasses.dataclass
class Checkpoint:
  """Tensors of a checkpoint, listed from headers; ``read(entry)`` loads one as a numpy array.

  Attributes:
    path: what was opened.
    kind: ``"safetensors-sharded"``, ``"safetensors"``, ``"npz"``, ``"orbax"`` or ``"in-memory"``.
    entries: tensors in storage order (shard order, then offset order inside a shard).
    config: the model's ``config.json`` beside the weights (Hugging Face folders), else ``{}``.
  """

  path: pathlib.Path
  kind: str
  entries: list[TensorEntry]
  config: dict
  _read: Callable[[TensorEntry], np.ndarray]

  def read(self, entry: TensorEntry) -> np.ndarray:
    """The tensor ``entry`` as a numpy array, bf16/fp16/fp8 converted exactly to float32."""
    return _exact_float32(self._read(entry), entry.dtype)


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
  """Exact bfloat16 -> float32: the 16 stored bits become the high half of a float32 word (low half zero)."""
  bits = np.ascontiguousarray(bits).view(np.uint16)
  return (bits.astype(np.uint32) << 16).view(np.float32)


def _exact_float32(arr: np.ndarray, stored: str) -> np.ndarray:
  name = str(arr.dtype)
  if name == "bfloat16" or stored == "BF16" or (arr.dtype.kind == "V" and arr.dtype.itemsize == 2):
    return bf16_bits_to_float32(arr)
  if arr.dtype == np.float16 or name.startswith("float8"):
    return arr.astype(np.float32)
  return arr


# ---------------------------------------------------------------------------------------------------- safetensors


def _safetensors_entries(path: pathlib.Path) -> list[TensorEntry]:
  """Entries of one safetensors file in data-offset order, from its JSON header (the file's first 8 + n bytes)."""
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) < 8:
      raise ValueError(f"WEIGHTS: {path} is not a safetensors file (shorter than its 8-byte header length)")
    n = int.from_bytes(head, "little")
    try:
      header = json.loads(f.read(n))
    except (ValueError, UnicodeDecodeError) as err:
      raise ValueError(f"WEIGHTS: {path} is not a safetensors file (unreadable JSON header: {err})") from err
  items = [(k, v) for k, v in header.items() if k != "__metadata__"]
  items.sort(key=lambda kv: kv[1]["data_offsets"][0])
  return [TensorEntry(k, tuple(int(s) for s in v["shape"]), str(v["dtype"]), str(path)) for k, v in items]


def _read_safetensors(entry: TensorEntry) -> np.ndarray:
  from safetensors import safe_open

  # A fresh handle per tensor: the shard's memory map (and the pages this read touched) is released on close.
  with safe_open(entry.file, framework="numpy") as f:
    if entry.dtype == "BF16":
      # Raw bits through a uint16 view, independent of how this safetensors version types bfloat16 in numpy.
      return np.asarray(f.get_tensor(entry.name)).view(np.uint16)
    return np.asarray(f.get_tensor(entry.name))


def _hf_config(folder: pathlib.Path) -> dict:
  cfg = folder / "config.json"
  if cfg.is_file():
    try:
      return json.loads(cfg.read_text())
    except ValueError:
      return {}
  return {}


def _open_sharded(index: pathlib.Path) -> Checkpoint:
  try:
    weight_map = json.loads(index.read_text())["weight_map"]
  except (ValueError, KeyError, TypeError) as err:
    raise ValueError(f"WEIGHTS: {index} is not a safetensors index (expected a JSON object with 'weight_map')") from err
  folder = index.parent
  shards = sorted(set(weight_map.values()))
  missing = [s for s in shards if not (folder / s).is_file()]
  if missing:
    raise FileNotFoundError(f"WEIGHTS: {index} names shard(s) missing from {folder}: {', '.join(missing)}")
  entries = []
  for shard in shards:
    for e in _safetensors_entries(folder / shard):
      if weight_map.get(e.name) == shard:
        entries.append(e)
  return Checkpoint(index, "safetensors-sharded", entries, _hf_config(folder), _read_safetensors)


def _open_safetensors_files(path: pathlib.Path, files: list[pathlib.Path]) -> Checkpoint:
  entries = [e for f in files for e in _safetensors_entries(f)]
  folder = path if path.is_dir() else path.parent
  kind = "safetensors" if len(files) == 1 else "safetensors-sharded"
  return Checkpoint(path, kind, entries, _hf_config(folder), _read_safetensors)


# ---------------------------------------------------------------------------------------------------- npz, Orbax


def _open_npz(path: pathlib.Path) -> Checkpoint:
  if not zipfile.is_zipfile(path):
    raise ValueError(f"WEIGHTS: {path} is not a .npz file (an .npz is a zip archive of .npy arrays)")
  try:
    with np.load(path, allow_pickle=False) as f:
      entries = []
      for k in f.files:
        with f.zip.open(f"{k}.npy") as member:
          major, _ = np.lib.format.read_magic(member)
          read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
          shape, _, dtype = read_header(member)  # the header only, not the data
        entries.append(TensorEntry(k, tuple(int(s) for s in shape), str(dtype), str(path)))
  except (zipfile.BadZipFile, ValueError, OSError) as err:
    raise ValueError(f"WEIGHTS: {path} is not a readable .npz file ({err})") from err

  def read(entry: TensorEntry) -> np.ndarray:
    with np.load(entry.file, allow_pickle=False) as f:
      return f[entry.name]

  return Checkpoint(path, "npz", entries, {}, read)


def _is_orbax_item(path: pathlib.Path) -> bool:
  return any((path / m).exists() for m in _ORBAX_ITEM_MARKERS)


def _orbax_item(path: pathlib.Path) -> pathlib.Path | None:
  """The Orbax item folder at ``path``: ``path`` itself, or the single item folder of a step folder."""
  if _is_orbax_item(path):
    return path
  subs = [p for p in path.iterdir() if p.is_dir() and _is_orbax_item(p)]
  return subs[0] if len(subs) == 1 else None


def _flatten(tree, prefix: str = "") -> dict:
  out = {}
  if isinstance(tree, dict):
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
  elif isinstance(tree, (list, tuple)):
    for i, v in enumerate(tree):
      out.update(_flatten(v, f"{prefix}.{i}" if prefix else str(i)))
  elif hasattr(tree, "shape"):
    out[prefix] = tree
  return out


def _open_orbax(path: pathlib.Path, item: pathlib.Path) -> Checkpoint:
  import orbax.checkpoint as ocp  # only for this format

  try:
    tree = ocp.PyTreeCheckpointer().restore(item.resolve())
  except Exception as err:  # Orbax raises many types; name the path and the cause.
    raise ValueError(f"WEIGHTS: {path} looks like an Orbax checkpoint but could not be restored: {err}") from err
  arrays = {k: np.asarray(v) for k, v in _flatten(tree).items()}
  return _in_memory(path, "orbax", arrays)


def _in_memory(path: pathlib.Path, kind: str, arrays: dict) -> Checkpoint:
  entries = [TensorEntry(k, tuple(int(s) for s in np.shape(v)), str(np.asarray(v).dtype), str(path))
             for k, v in arrays.items()]
  return Checkpoint(path, kind, entries, {}, lambda e: np.asarray(arrays[e.name]))


# ---------------------------------------------------------------------------------------------------- entry point


def open_checkpoint(path) -> Checkpoint:
  """List the tensors at ``path`` (see the module docstring for the formats); raises naming ``WEIGHTS`` and the path.

  Raises:
    FileNotFoundError: ``path`` does not exist, or an index names a missing shard.
    ValueError: the path is of no known format, or holds no tensors.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"WEIGHTS: no such file or folder: {path}")
  if path.is_dir():
    if (path / INDEX_NAME).is_file():
      ckpt = _open_sharded(path / INDEX_NAME)
    elif files := sorted(path.glob("*.safetensors")):
      ckpt = _open_safetensors_files(path, files)
    elif (item := _orbax_item(path)) is not None:
      ckpt = _open_orbax(path, item)
    else:
      raise ValueError(f"WEIGHTS: folder {path} holds no {INDEX_NAME}, no *.safetensors files and no Orbax "
                       f"checkpoint (an item folder with {' or '.join(_ORBAX_ITEM_MARKERS)})")
  elif path.name.endswith(".index.json"):
    ckpt = _open_sharded(path)
  elif path.suffix == ".safetensors":
    ckpt = _open_safetensors_files(path, [path])
  elif path.suffix == ".npz":
    ckpt = _open_npz(path)
  else:
    ckpt = _in_memory(path, "in-memory", weights_io.load_weights(path))
  if not any(e.ndim >= 2 for e in ckpt.entries):
    raise ValueError(f"WEIGHTS: {path} contains no matrices (found {len(ckpt.entries)} arrays, none with 2 or more "
                     f"axes)")
  return ckpt
