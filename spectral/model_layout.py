"""How real checkpoints name and pack their matrices: layer indices, selection, fused q/k/v, attention heads.

Pure functions over names, shapes and numpy arrays; the rules, stated once:

**Layer index** of a tensor name: the first path component (separated by ``.`` or ``/``) that is an integer, or a
word followed by ``_`` and an integer (``model.layers.3.mlp`` -> 3, ``h.11.attn`` -> 11, ``layers_2/attn`` -> 2);
``None`` for names without one (embeddings, lm-head, final norms).

**Selection** (``select``): tensors whose name matches ``include`` (``re.search``, all when
``None``), does not match ``exclude``, and, when ``layers`` is given, whose layer index is in it. Tensors without a
layer index are kept by ``layers`` (drop them with ``exclude``). Tensors of fewer than 2 axes (biases, norm scales)
are selected too: ``spectral.analyze`` gives each a ``"skipped: ..."`` row, so every selected tensor is accounted
for. Layer specs: ``"0-3,10"`` (inclusive ranges).

**Weight layout.** A 2-D projection is stored either ``(out, in)`` (PyTorch ``Linear``: Hugging Face Llama, Mistral,
Falcon, GPT-NeoX, ...) or ``(in, out)`` (GPT-2's ``Conv1D`` modules ``c_attn``/``c_proj``/``c_fc``, Flax/Keras
``kernel``). ``weight_layout="auto"`` takes ``(in, out)`` for names ending in ``kernel`` or whose module is a
GPT-2 Conv1D, and ``(out, in)`` otherwise.

**Fused q/k/v** (``is_fused_qkv``): a 2-D tensor whose module name is ``c_attn`` (GPT-2), ``query_key_value``
(Falcon, GPT-NeoX, Bloom), ``qkv_proj`` (Phi-3), ``Wqkv`` (Phi-1/1.5, MPT), ``qkv``, or ``in_proj_weight``
(``torch.nn.MultiheadAttention``). Its fused axis holds ``(H + 2 KV) head_dim`` outputs, ``H`` query heads and ``KV``
key/value heads (``KV = H`` without grouped-query attention; equal thirds when the head counts are unknown), in one
of two layouts:

- ``contiguous`` (GPT-2, Phi, MPT, Falcon-7B, torch MHA): ``[q (H hd) | k (KV hd) | v (KV hd)]``;
- ``interleaved`` (GPT-NeoX, Bloom, Falcon-40B): groups ``(KV, H / KV + 2, hd)`` -- per key/value head its
  ``H / KV`` query heads, then its key head, then its value head (``KV = H`` gives the ``(H, 3, hd)`` layout).

The fused axis is the one whose size is ``(H + 2 KV) hd`` (``3 x`` the other axis when head counts are unknown);
the pieces are named ``<name>[q]``, ``<name>[k]``, ``<name>[v]``.

**Heads of 2-D projections** (``split_heads``): query/key/value projections (``q_proj``, ``k_proj``, ``v_proj``,
``query``, ``key``, ``value``, ``wq``/``wk``/``wv``, ``to_q``/``to_k``/``to_v`` and the ``[q]/[k]/[v]`` pieces) carry
heads on their output axis; output projections (``o_proj``, ``out_proj``, ``wo``, GPT-2's ``attn.c_proj``,
``attention.dense``, ``self_attention.dense``) on their input axis. Head ``h`` is the slice ``[h hd, (h + 1) hd)``
of that axis, ``hd = head_dim`` or, when not given, (the other axis) / ``num_heads`` (the model width over the
number of query heads). Heads are named ``<name>[head=h]``, like the 3-D kernels of ``spectral.analyze``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

import numpy as np

_LAYER = re.compile(r"(?:^|[./])(?:[A-Za-z]\w*_)?(\d+)(?=[./]|$)")
_FUSED_QKV = re.compile(r"(?:^|[./])(c_attn|query_key_value|qkv_proj|Wqkv|qkv)[./]weight$|(?:^|[./])in_proj_weight$")
_CONV1D = re.compile(r"(?:^|[./])(c_attn|c_proj|c_fc)[./]weight$")
_QKV_PROJ = re.compile(r"(?:^|[./])(q_proj|k_proj|v_proj|query|key|value|wq|wk|wv|to_q|to_k|to_v)(?:[./]|$)|\[[qkv]\]$")
_OUT_PROJ = re.compile(r"(?:^|[./])(o_proj|out_proj|wo)(?:[./]|$)|attn[./]c_proj[./]|(?:^|[./])(self_)?attention[./]dense[./]")

QKV_LAYOUTS = ("contiguous", "interleaved")
WEIGHT_LAYOUTS = ("auto", "out-in", "in-out")


def layer_index(name: str) -> int | None:
  """The layer index of a tensor name (first integer path component, see the module docstring), or ``None``."""
  m = _LAYER.search(name)
  return int(m.group(1)) if m else None


def parse_layers(spec: str) -> frozenset[int]:
  """``"0-3,10"`` -> {0, 1, 2, 3, 10}; raises ``ValueError`` naming ``--layers`` on a malformed spec."""
  out: set[int] = set()
  for part in str(spec).split(","):
    part = part.strip()
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
    if not m:
      raise ValueError(f"--layers: expected comma-separated indices or inclusive ranges like '0-3,10', got {spec!r}")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if hi < lo:
      raise ValueError(f"--layers: range {part!r} runs backwards (expected low-high)")
    out.update(range(lo, hi + 1))
  return frozenset(out)


def compile_regex(pattern: str | None, option: str) -> re.Pattern | None:
  """``re.compile(pattern)``, or ``ValueError`` naming ``option`` when it is not a valid regular expression."""
  if pattern is None:
    return None
  try:
    return re.compile(pattern)
  except re.error as err:
    raise ValueError(f"{option}: not a valid regular expression {pattern!r} ({err})") from err


def select(names_shapes: Iterable[tuple[str, Sequence[int]]], include: str | None = None, exclude: str | None = None,
           layers: frozenset[int] | None = None) -> list[str]:
  """Names of the tensors to analyse, in input order (see "Selection" in the module docstring)."""
  inc, exc = compile_regex(include, "--include"), compile_regex(exclude, "--exclude")
  out = []
  for name, shape in names_shapes:
    if inc is not None and not inc.search(name):
      continue
    if exc is not None and exc.search(name):
      continue
    if layers is not None and (idx := layer_index(name)) is not None and idx not in layers:
      continue
    out.append(name)
  return out


def is_in_out(name: str, weight_layout: str = "auto") -> bool:
  """Whether a 2-D weight is stored ``(in, out)`` (see "Weight layout" in the module docstring)."""
  if weight_layout not in WEIGHT_LAYOUTS:
    raise ValueError(f"weight_layout: expected one of {WEIGHT_LAYOUTS}, got {weight_layout!r}")
  if weight_layout != "auto":
    return weight_layout == "in-out"
  return name.endswith("kernel") or bool(_CONV1D.search(name))


@dataclasses.dataclass(frozen=True)
class AttentionShape:
  """Head counts and fused q/k/v layout of a model; ``None`` where unknown. ``num_kv_heads`` defaults to
  ``num_heads`` when used, ``qkv_layout`` to ``"contiguous"``."""

  num_heads: int | None = None
  num_kv_heads: int | None = None
  head_dim: int | None = None
  qkv_layout: str | None = None

  def __post_init__(self):
    for field in ("num_heads", "num_kv_heads", "head_dim"):
      v = getattr(self, field)
      if v is not None and (int(v) != v or v < 1):
        raise ValueError(f"--{field.replace('_', '-')}: expected a positive integer, got {v!r}")
    if self.qkv_layout is not None and self.qkv_layout not in QKV_LAYOUTS:
      raise ValueError(f"--qkv-layout: expected one of {QKV_LAYOUTS}, got {self.qkv_layout!r}")
    if self.num_heads and self.num_kv_heads and self.num_heads % self.num_kv_heads:
      raise ValueError(f"--num-kv-heads: {self.num_kv_heads} does not divide --num-heads {self.num_heads}")

  @classmethod
  def from_hf_config(cls, config: dict, **overrides) -> "AttentionShape":
    """Head counts and q/k/v layout from a Hugging Face ``config.json`` (``{}`` gives all unknown); explicit
    ``overrides`` that are not None win."""
    cfg = config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config
    heads = cfg.get("num_attention_heads", cfg.get("n_head", cfg.get("num_heads")))
    kv = cfg.get("num_key_value_heads", cfg.get("num_kv_heads", cfg.get("n_head_kv")))
    if kv is None and cfg.get("multi_query"):
      kv = 1
    model_type = str(cfg.get("model_type", ""))
    interleaved = model_type in ("gpt_neox", "bloom") or (model_type == "falcon" and cfg.get("new_decoder_architecture"))
    values = dict(num_heads=heads, num_kv_heads=kv, head_dim=cfg.get("head_dim"),
                  qkv_layout="interleaved" if interleaved else None)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


def is_fused_qkv(name: str, shape: Sequence[int]) -> bool:
  """Whether ``name`` is a fused q/k/v projection (2-D) by the module names of the module docstring."""
  return len(shape) == 2 and bool(_FUSED_QKV.search(name))


def _qkv_sizes(shape: Sequence[int], att: AttentionShape) -> tuple[int, tuple[int, int, int]] | None:
  """(fused axis, (q, k, v) sizes along it), or None when the shape fits no rule."""
  if att.num_heads:
    h = att.num_heads
    kv = att.num_kv_heads or h
    for axis in (0, 1):
      other = shape[1 - axis]
      hd = att.head_dim or (other // h if other % h == 0 else None)
      if hd and shape[axis] == (h + 2 * kv) * hd:
        return axis, (h * hd, kv * hd, kv * hd)
    return None
  for axis in (0, 1):
    if shape[axis] == 3 * shape[1 - axis]:
      third = shape[1 - axis]
      return axis, (third, third, third)
  return None


def split_qkv(name: str, w: np.ndarray, att: AttentionShape) -> list[tuple[str, np.ndarray]]:
  """``[(name[q], Wq), (name[k], Wk), (name[v], Wv)]`` by the rule of the module docstring.

  Raises:
    ValueError: the shape fits no rule (naming the matrix, its shape and the head counts that would be needed).
  """
  found = _qkv_sizes(w.shape, att)
  if found is None:
    raise ValueError(f"{name}: cannot split fused q/k/v of shape {tuple(w.shape)} (expected one axis 3x the other, "
                     f"or (H + 2 KV) head_dim with --num-heads/--num-kv-heads/--head-dim; got {att})")
  axis, (sq, sk, sv) = found
  moved = np.moveaxis(w, axis, 0)
  if att.qkv_layout in (None, "contiguous"):
    q, k, v = moved[:sq], moved[sq:sq + sk], moved[sq + sk:]
  else:
    if not att.num_heads:
      raise ValueError(f"{name}: the interleaved q/k/v layout needs --num-heads")
    h = att.num_heads
    kv = att.num_kv_heads or h
    hd = sq // h
    groups = moved.reshape((kv, h // kv + 2, hd) + moved.shape[1:])
    q = groups[:, : h // kv].reshape((sq,) + moved.shape[1:])
    k = groups[:, h // kv].reshape((sk,) + moved.shape[1:])
    v = groups[:, h // kv + 1].reshape((sv,) + moved.shape[1:])
  return [(f"{name}[{p}]", np.ascontiguousarray(np.moveaxis(x, 0, axis))) for p, x in zip("qkv", (q, k, v))]


def head_axis(name: str, weight_layout: str = "auto") -> int | None:
  """The axis of a 2-D attention projection that holds its heads, or ``None`` for other matrices.

  q/k/v projections: the output axis; output projections: the input axis (module docstring, "Heads").
  ``[q]/[k]/[v]`` pieces of a fused matrix take the layout of the fused matrix they came from.
  """
  base = re.sub(r"(\[[^\]]*\])+$", "", name)
  in_out = is_in_out(base, weight_layout)
  out_axis, in_axis = (1, 0) if in_out else (0, 1)
  if _QKV_PROJ.search(name):
    return out_axis
  if _OUT_PROJ.search(name):
    return in_axis
  return None


def split_heads(name: str, w: np.ndarray, num_heads: int, head_dim: int | None = None,
                weight_layout: str = "auto") -> list[tuple[str, np.ndarray]]:
  """Per-head slices ``[(name[head=h], W_h)]`` of a 2-D attention projection; ``[]`` for other matrices.

  Raises:
    ValueError: the head axis is not a whole number of heads of size ``head_dim`` (naming the matrix).
  """
  axis = head_axis(name, weight_layout)
  if axis is None or w.ndim != 2:
    return []
  hd = head_dim or (w.shape[1 - axis] // num_heads)
  if hd < 1 or w.shape[axis] % hd or (head_dim is None and w.shape[1 - axis] % num_heads):
    raise ValueError(f"{name}: axis {axis} of shape {tuple(w.shape)} is not a whole number of heads of size "
                     f"{hd} (num_heads = {num_heads}; give --head-dim when head_dim x heads != model width)")
  return [(f"{name}[head={h}]", np.take(w, np.arange(h * hd, (h + 1) * hd), axis=axis))
          for h in range(w.shape[axis] // hd)]


_TIE_CANDIDATE = re.compile(r"embed|wte|word_embeddings|tok_embeddings|lm_head|embed_out|(?:^|[./])output[./]weight$")


def may_be_tied(name: str) -> bool:
  """Whether ``name`` is an embedding or lm-head, whose weights are often tied (shared) in real models."""
  return bool(_TIE_CANDIDATE.search(name))
