"""Stream a real checkpoint through ``spectral.analyze``: one stored tensor at a time, selected, split, de-duplicated.

For each selected tensor (``spectral.model_layout.select``, in storage order) ``analyze_checkpoint``

1. reads it (``spectral.checkpoint_io``: bf16/fp16 converted exactly to float32);
2. skips it when it is an embedding/lm-head identical, byte for byte, to one already analysed (tied weights are
   analysed once, under the first name; a note says so);
3. expands it into the matrices to analyse: fused q/k/v split into ``[q]``, ``[k]``, ``[v]`` (``qkv="split"``, the
   default), kept fused (``"fused"``) or both (``"both"``); with ``per_head`` the heads of 2-D attention projections
   (needs ``num_heads``) and of 3-D ``(d_model, heads, head_dim)`` kernels (rules: ``spectral.model_layout``);
4. analyses those matrices together with ``spectral.analyze.analyze`` and drops them, except that matrices of up to
   ``STRUCTURE_DEFER_ENTRIES`` entries are kept (at most ``STRUCTURE_BUFFER_BYTES``) for the structure columns,
   computed for many of them at once (``_StructureBuffer``).

Peak memory is therefore one stored tensor, its float32 copy and the pieces cut from it, plus the working set of
one analysis, plus at most 512 MiB of small matrices, whatever the checkpoint's size. Rows come back sorted by model
position: embeddings first, then by layer index, then the rest (lm-head, final projections), in storage order within
each (a stable sort).

Seeds: the ``k``-th selected tensor (storage order) is analysed with the seed ``SeedSequence([seed, k])`` draws, so
shuffled baselines of same-shaped matrices are independent, and a run is reproducible for a given selection. The
structure test uses ``seed`` itself for every matrix (its draws depend on a matrix's shape, not on its position).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sys

import numpy as np

from spectral import analyze as analyze_lib
from spectral import checkpoint_io
from spectral import model_layout

QKV_MODES = ("split", "fused", "both")
_EMBEDDING = re.compile(r"embed|wte|wpe|word_embeddings|tok_embeddings")


@dataclasses.dataclass(frozen=True)
class Selection:
  """Which stored tensors to analyse and how to cut them (defaults: every matrix, fused q/k/v split, no heads).

  Attributes:
    include, exclude: regular expressions on tensor names (``re.search``).
    layers: layer indices to keep (``model_layout.parse_layers``); tensors without a layer index are kept.
    qkv: ``"split"``, ``"fused"`` or ``"both"`` for fused q/k/v projections.
    per_head: also analyse every attention head (2-D projections need ``attention.num_heads``).
    attention: head counts and the q/k/v layout (``model_layout.AttentionShape``); unset fields come from the
      checkpoint's ``config.json`` when it has one.
    weight_layout: ``"auto"``, ``"out-in"`` or ``"in-out"`` (``model_layout.is_in_out``).
  """

  include: str | None = None
  exclude: str | None = None
  layers: frozenset[int] | None = None
  qkv: str = "split"
  per_head: bool = False
  attention: model_layout.AttentionShape = model_layout.AttentionShape()
  weight_layout: str = "auto"

  def __post_init__(self):
    if self.qkv not in QKV_MODES:
      raise ValueError(f"--qkv: expected one of {QKV_MODES}, got {self.qkv!r}")
    if self.weight_layout not in model_layout.WEIGHT_LAYOUTS:
      raise ValueError(f"--weight-layout: expected one of {model_layout.WEIGHT_LAYOUTS}, got {self.weight_layout!r}")
    model_layout.compile_regex(self.include, "--include")
    model_layout.compile_regex(self.exclude, "--exclude")


def expand(name: str, w: np.ndarray, sel: Selection, att: model_layout.AttentionShape,
           notes: list[str]) -> list[tuple[str, np.ndarray]]:
  """The (name, matrix) pairs to analyse for one stored tensor ``w`` (step 3 of the module docstring)."""
  pieces = [(name, w)]
  if model_layout.is_fused_qkv(name, w.shape) and sel.qkv != "fused":
    try:
      split = model_layout.split_qkv(name, w, att)
    except ValueError as err:
      notes.append(f"{err}; analysed fused")
    else:
      pieces = split if sel.qkv == "split" else [(name, w), *split]
  if not sel.per_head or w.ndim != 2:
    return pieces
  out = []
  for piece_name, piece in pieces:
    out.append((piece_name, piece))
    if model_layout.head_axis(piece_name, sel.weight_layout) is None:
      continue
    if not att.num_heads:
      note = "per-head analysis of 2-D attention projections needs --num-heads (or a config.json); heads skipped"
      if note not in notes:
        notes.append(note)
      continue
    try:
      out.extend(model_layout.split_heads(piece_name, piece, att.num_heads, att.head_dim, sel.weight_layout))
    except ValueError as err:
      notes.append(f"{err}; heads skipped")
  return out


def _position_key(name: str) -> tuple[int, int]:
  layer = model_layout.layer_index(name)
  group = 0 if layer is None and _EMBEDDING.search(name) else (1 if layer is not None else 2)
  return group, layer if layer is not None else -1


# Matrices up to this many entries have their structure rank computed in batches across tensors (their compilation,
# about 2.5 s per shape on a CPU, costs more than their computation, about 0.3 us per entry); larger ones at once.
STRUCTURE_DEFER_ENTRIES = 1 << 22
STRUCTURE_BUFFER_BYTES = 512 << 20


class _StructureBuffer:
  """The structure columns of ``analyze_checkpoint``: large matrices at once, small ones kept and done together."""

  def __init__(self, structure, seed: int):
    self.structure, self.seed = structure, seed
    self.matrices, self.rows, self.bytes = {}, [], 0

  def add(self, matrices: dict, rows: list[dict]) -> None:
    if self.structure is None:
      return
    analyze_lib.with_structure_columns(rows)  # every column present, empty until its matrix is done
    large = {k: m for k, m in matrices.items() if np.size(m) > STRUCTURE_DEFER_ENTRIES}
    if large:
      _fill(rows, self.structure(large, self.seed))
    small = {k: m for k, m in matrices.items() if k not in large}
    if small:
      self.matrices.update(small)
      self.rows.extend(rows)
      self.bytes += sum(4 * np.size(m) for m in small.values())
    if self.bytes >= STRUCTURE_BUFFER_BYTES:
      self.flush()

  def flush(self) -> None:
    if self.structure is not None and self.matrices:
      _fill(self.rows, self.structure(self.matrices, self.seed))
    self.matrices, self.rows, self.bytes = {}, [], 0


def _fill(rows: list[dict], structure_rows: list[dict]) -> None:
  """The structure columns of each row of ``rows`` named in ``structure_rows``."""
  by_name = {r["name"]: r for r in structure_rows}
  for row in rows:
    if row["name"] in by_name:
      row.update({k: by_name[row["name"]].get(k) for k in analyze_lib.STRUCTURE_COLUMNS})


def analyze_checkpoint(ckpt: checkpoint_io.Checkpoint, sel: Selection = Selection(), *, level: float = 0.01,
                       randomize: bool = False, seed: int = 0, backend: str = "auto", keep_spectra: bool = False,
                       progress: bool = True, structure=None, **analyze_kwargs) -> tuple[list[dict], list[str]]:
  """Rows of ``spectral.analyze.analyze`` for every selected matrix of ``ckpt``, and notes (ties, skipped splits).

  Args:
    ckpt: an opened checkpoint (``checkpoint_io.open_checkpoint``).
    sel: what to analyse (``Selection``).
    level, randomize, seed, backend, keep_spectra: as ``spectral.analyze.analyze`` (``backend="auto"``: host numpy
      on a CPU, nothing compiled).
    progress: a tqdm progress bar with an ETA on stderr, one step per stored tensor.
    structure: optional ``fn(matrices, seed) -> rows`` of extra columns per matrix name (the CLI passes
      ``spectral.analyze.structure_table`` with its options), called with ``seed``. A tensor's large matrices
      (over ``STRUCTURE_DEFER_ENTRIES`` entries) go to it while they are in memory; smaller ones are kept, up to
      ``STRUCTURE_BUFFER_BYTES`` of them, and passed together, so that their many shapes share a few compiled
      batches (``spectral.structure.structure_rank_many``) instead of compiling once per shape.
    **analyze_kwargs: passed on to ``spectral.analyze.analyze`` (``ks``, ``tail_k``, ``max_full_dim``).

  Returns:
    (rows, notes): rows sorted by model position (module docstring); notes as human-readable lines.
  """
  from tqdm import tqdm

  att = model_layout.AttentionShape.from_hf_config(ckpt.config, **dataclasses.asdict(sel.attention))
  by_name = {e.name: e for e in ckpt.entries}
  names = model_layout.select(((e.name, e.shape) for e in ckpt.entries), sel.include, sel.exclude, sel.layers)
  notes: list[str] = []
  seen: dict[bytes, str] = {}
  rows: list[dict] = []
  pending = _StructureBuffer(structure, seed)
  bar = tqdm(names, desc="analyse", unit="tensor", file=sys.stderr, disable=not progress, dynamic_ncols=True)
  for k, name in enumerate(bar):
    bar.set_postfix_str(name[-48:], refresh=False)
    w = ckpt.read(by_name[name])
    if model_layout.may_be_tied(name) and w.ndim == 2:
      h = hashlib.blake2b(str((w.shape, w.dtype.str)).encode(), digest_size=16)
      h.update(np.ascontiguousarray(w).view(np.uint8).data)
      digest = h.digest()
      if digest in seen:
        notes.append(f"{name}: identical to {seen[digest]} (tied weights); analysed once, as {seen[digest]}")
        continue
      seen[digest] = name
    matrices = dict(expand(name, w, sel, att, notes))
    del w
    sub_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
    new_rows = analyze_lib.analyze(matrices, level=level, randomize=randomize, seed=sub_seed, per_head=sel.per_head,
                                   backend=backend, keep_spectra=keep_spectra, **analyze_kwargs)
    pending.add(matrices, new_rows)
    rows.extend(new_rows)
    del matrices
  if pending.rows:
    bar.set_postfix_str(f"structure rank of {len(pending.matrices)} kept matrices", refresh=True)
  pending.flush()
  bar.close()
  if ckpt.config.get("tie_word_embeddings") and not any(re.search(r"lm_head|embed_out", n) for n in by_name):
    notes.append("config.json: tie_word_embeddings; the lm-head is the input embedding, analysed once under its name")
  rows.sort(key=lambda r: _position_key(r["name"]))
  return rows, notes
