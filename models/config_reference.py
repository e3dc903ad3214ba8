"""Every key of a run config with its type, value and meaning, read from the config dataclasses themselves.

A key's meaning is its attribute docstring: the string literal right after the field in ``models.config`` (the
convention of PEP 257 and Sphinx). A section's meaning is the first line of its class docstring. ``config_toml``
prints a whole ``RunConfig`` as a TOML file with one comment per key (``python -m lab config``), loadable back with
``--config``.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import typing
from typing import Any

from models.config import RunConfig


@functools.cache
def field_docs(cls) -> dict[str, str]:
  """Field name -> attribute docstring of dataclass ``cls`` (fields without one are absent)."""
  tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
  body = tree.body[0].body
  docs = {}
  for stmt, nxt in zip(body, body[1:]):
    if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
        and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
      docs[stmt.target.id] = " ".join(nxt.value.value.split())
  return docs


def type_name(tp) -> str:
  """A config type as a reader says it: ``tuple[float, ...]`` -> ``list of float``, ``float | None`` -> ``float or
  none``."""
  origin = typing.get_origin(tp)
  if origin is tuple:
    return f"list of {type_name(typing.get_args(tp)[0])}"
  if origin is not None and type(None) in typing.get_args(tp):
    return " or ".join("none" if a is type(None) else type_name(a) for a in typing.get_args(tp))
  if dataclasses.is_dataclass(tp):
    return "table"
  return getattr(tp, "__name__", str(tp))


@dataclasses.dataclass(frozen=True)
class KeyInfo:
  key: str
  type: str
  value: Any
  meaning: str


def config_keys(cfg: RunConfig | None = None) -> list[KeyInfo]:
  """Every leaf key of ``cfg`` (default: ``RunConfig()``) in dotted form, in declaration order."""
  cfg = RunConfig() if cfg is None else cfg
  out = []

  def walk(obj, prefix):
    hints = typing.get_type_hints(type(obj))
    docs = field_docs(type(obj))
    for f in dataclasses.fields(obj):
      value = getattr(obj, f.name)
      if dataclasses.is_dataclass(value):
        walk(value, f"{prefix}{f.name}.")
      else:
        out.append(KeyInfo(prefix + f.name, type_name(hints[f.name]), value, docs.get(f.name, "")))

  walk(cfg, "")
  return out


def toml_value(v: Any) -> str:
  """A config value in TOML syntax (``None`` members of inline tables are left out by the caller)."""
  if isinstance(v, bool):
    return "true" if v else "false"
  if isinstance(v, (int, float)):
    return repr(v)
  if isinstance(v, str):
    return json.dumps(v)
  if isinstance(v, (tuple, list)):
    return "[" + ", ".join(toml_value(x) for x in v) + "]"
  if dataclasses.is_dataclass(v):
    return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in dataclasses.asdict(v).items()
                            if x is not None) + " }"
  if isinstance(v, dict):
    return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items() if x is not None) + " }"
  raise TypeError(f"config value: expected a TOML-representable value, got {v!r}")


def config_toml(cfg: RunConfig | None = None, header: str = "") -> str:
  """``cfg`` as a TOML run config: per section a ``[section]`` header with the section's meaning, per key
  ``key = value  # type: meaning``. Loading it with ``models.config.load_config`` gives back ``cfg``."""
  cfg = RunConfig() if cfg is None else cfg
  lines = [f"# {line}" if line else "#" for line in header.splitlines()]
  section = None
  for info in config_keys(cfg):
    head, _, leaf = info.key.rpartition(".")
    if head and head != section:
      section = head
      cls = type(getattr(cfg, head))
      lines += ["", f"[{head}]  # {inspect.getdoc(cls).splitlines()[0]}"]
    lines.append(f"{leaf} = {toml_value(info.value)}  # {info.type}: {info.meaning}")
  return "\n".join(lines) + "\n"


def config_differences(old: RunConfig, new: RunConfig) -> list[str]:
  """``"key: old -> new"`` for every leaf key whose value differs between two configs (declaration order)."""
  before = {k.key: k.value for k in config_keys(old)}
  return [f"{k.key}: {toml_value(before[k.key])} -> {toml_value(k.value)}" for k in config_keys(new)
          if before[k.key] != k.value]
