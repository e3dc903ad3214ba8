"""Imports between the lab's packages go one way: spectral <- models <- figures <- theory_checks <- lab.

Every module of every package is parsed (not imported), so an import hidden inside a function counts as much as one
at the top. ``importlib.import_module("pkg...")`` with a literal name counts too.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("spectral", "models", "theory_checks", "figures", "lab")
FORBIDDEN = {
    "spectral": {"models", "theory_checks", "figures", "lab"},
    "models": {"theory_checks", "figures", "lab"},
    "figures": {"theory_checks", "lab"},
    "theory_checks": {"lab"},
    "lab": set(),
}


def imported_packages(tree: ast.AST, package: str) -> list[tuple[int, str]]:
  """(line, top-level package) of every import in a module of ``package`` (relative imports resolve to it)."""
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      out.append((node.lineno, package if node.level else (node.module or "").split(".")[0]))
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
          and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
      out.append((node.lineno, node.args[0].value.split(".")[0]))
  return out


def forbidden_imports(root: pathlib.Path) -> list[str]:
  """``path:line: a -> b`` for every import under ``root`` that breaks ``FORBIDDEN``."""
  bad = []
  for package in PACKAGES:
    for path in sorted((root / package).rglob("*.py")):
      tree = ast.parse(path.read_text(), filename=str(path))
      for line, target in imported_packages(tree, package):
        if target in FORBIDDEN[package]:
          bad.append(f"{path.relative_to(root)}:{line}: {package} -> {target}")
  return bad


def test_every_package_exists_and_is_scanned():
  for package in PACKAGES:
    assert list((ROOT / package).glob("*.py")), package


def test_no_forbidden_import():
  assert forbidden_imports(ROOT) == []


@pytest.mark.parametrize("package,source,target", [
    ("spectral", "from models.config import RunConfig\n", "models"),
    ("models", "def f():\n  import figures.style\n", "figures"),
    ("figures", "import theory_checks.verdict as v\n", "theory_checks"),
    ("theory_checks", "import importlib\nmain = importlib.import_module('lab.main_job')\n", "lab"),
])
def test_checker_catches_a_planted_forbidden_import(tmp_path, package, source, target):
  for p in PACKAGES:
    (tmp_path / p).mkdir()
    (tmp_path / p / "__init__.py").write_text("from . import sibling\nimport numpy\n")  # allowed
  (tmp_path / package / "planted.py").write_text(source)
  (bad,) = forbidden_imports(tmp_path)  # exactly one: the allowed imports pass
  assert bad.startswith(f"{package}/planted.py:") and bad.endswith(f"{package} -> {target}")
