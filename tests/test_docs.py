"""The lab's documentation is self-contained.

- No tracked file points outside the repository (the ``shared`` folder beside it) or at a theory document that is not
  in it; every link into a Markdown file names an anchor that file has.
- Every registered check's verdict ``source`` cites an existing ``docs/THEORY.md`` section or a paper, and the theory
  document has a section for every registered check.
- The scanner itself catches planted bad references (so the first test cannot pass by scanning nothing).
"""

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

from theory_checks.registry import CHECKS

REPO = pathlib.Path(__file__).resolve().parent.parent
THEORY_NAME = "THEORY" + ".md"  # spelled in two parts so this file holds no bare reference to the name
THEORY = REPO / "docs" / THEORY_NAME

# A path through a folder named ``shared`` (``../shared`` + ``/README.md``), not ``unshared`` or ``_shared``. The
# pattern is written so that this file does not match it.
OUTSIDE = re.compile(r"(?<![\w-])shared[/]")
# A path whose last component is the theory document's name, with an optional ``#anchor``.
THEORY_REF = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*" + re.escape(THEORY_NAME) + r")(#[\w-]+)?")
# A paper: an arXiv id, a DOI, or "Author[ & Author | et al.] ... year".
PAPER = re.compile(r"arXiv:\s?(\d{4}\.\d{4,5}|[a-z-]+/\d{7})|doi:10\.\d{4,}/|"
                   r"\b[A-Z][A-Za-z'-]+(?: et al\.| & [A-Z][A-Za-z'-]+|, [A-Z][A-Za-z'-]+)*[ ,(]+(19|20)\d{2}\b")


def tracked_files(repo: pathlib.Path = REPO) -> list[str]:
  """Repository-relative paths of the tracked files (``git ls-files``), or of every file outside hidden folders, build
  outputs and run folders when git is unavailable (an unpacked source archive)."""
  try:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    files = [f for f in out.decode().split("\0") if f]
    if files:
      return files
  except (OSError, subprocess.CalledProcessError):
    pass
  skip = {"runs", "__pycache__", "build", "dist"}
  found = []
  for root, dirs, names in os.walk(repo):
    dirs[:] = [d for d in dirs if not d.startswith(".") and d not in skip and not d.endswith(".egg-info")]
    found += [str((pathlib.Path(root) / n).relative_to(repo)) for n in names]
  return found


def read_text(path: pathlib.Path) -> str | None:
  """The file's text, or None for binary files (NUL bytes or not UTF-8)."""
  data = path.read_bytes()
  if b"\0" in data:
    return None
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError:
    return None


def heading_anchor(title: str) -> str:
  """GitHub's anchor for a Markdown heading: lower case, punctuation other than ``-`` and ``_`` dropped, spaces to
  hyphens."""
  return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def markdown_anchors(text: str) -> set[str]:
  anchors = {heading_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)}
  return anchors | set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))


def bad_references(rel_path: str, text: str, repo: pathlib.Path = REPO) -> list[str]:
  """Problems with the references in one file's ``text``: paths through a ``shared`` folder, theory-document paths
  that do not resolve to a file inside ``repo`` (from the repository root or from the file's folder), and anchors
  that file lacks."""
  problems = []
  line_of = lambda pos: text.count("\n", 0, pos) + 1
  for m in OUTSIDE.finditer(text):
    problems.append(f"{rel_path}:{line_of(m.start())}: reference outside the repository: {m.group(0)!r}")
  root = repo.resolve()
  for m in THEORY_REF.finditer(text):
    target, anchor = m.group(1), m.group(2)
    candidates = [(root / target).resolve(), ((root / rel_path).parent / target).resolve()]
    found = next((c for c in candidates if c.is_relative_to(root) and c.is_file()), None)
    if found is None:
      problems.append(f"{rel_path}:{line_of(m.start())}: {target!r} is not a file in the repository")
    elif anchor and anchor[1:] not in markdown_anchors(found.read_text()):
      problems.append(f"{rel_path}:{line_of(m.start())}: {target}{anchor} names no section of {target}")
  return problems


def verdict_sources(module_path: pathlib.Path) -> list[str]:
  """The ``source=`` strings of every ``Verdict(...)`` call in a module, read from its syntax tree (the constant parts
  of an f-string), so the checks need not run."""
  sources = []
  for node in ast.walk(ast.parse(module_path.read_text())):
    if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Verdict":
      for kw in node.keywords:
        if kw.arg == "source":
          value = kw.value
          if isinstance(value, ast.Constant):
            sources.append(str(value.value))
          elif isinstance(value, ast.JoinedStr):
            sources.append("".join(str(v.value) for v in value.values if isinstance(v, ast.Constant)))
          else:
            sources.append("")  # a computed source cannot be verified statically: reported as empty
  return sources


def source_problems(source: str, anchors: set[str]) -> list[str]:
  """Why a verdict's ``source`` fails the rule: it must cite a paper or a ``docs/THEORY.md`` section, and every
  section it names must exist."""
  problems = []
  named = re.findall(r"docs/" + re.escape(THEORY_NAME) + r"#([\w-]+)", source)
  problems += [f"names the missing section #{a}" for a in named if a not in anchors]
  if not named and not PAPER.search(source):
    problems.append("cites neither a docs/THEORY.md section nor a paper")
  return problems


def test_theory_document_exists_with_a_section_per_check():
  anchors = markdown_anchors(THEORY.read_text())
  missing = [name for name in CHECKS if name not in anchors]
  assert not missing, f"docs/THEORY.md has no section for {missing}"
  assert {"conventions", "tolerances", "lab-observations"} <= anchors


def test_no_tracked_file_references_outside_the_repository():
  files = tracked_files()
  assert "README.md" in files and "theory_checks/registry.py" in files  # the scan sees the project
  problems = []
  for rel in files:
    path = REPO / rel
    text = read_text(path) if path.is_file() else None
    if text is not None:
      problems += bad_references(rel, text)
  assert not problems, "\n".join(problems)


def test_every_check_source_cites_its_section_or_a_paper():
  anchors = markdown_anchors(THEORY.read_text())
  for name, check in CHECKS.items():
    sources = verdict_sources(pathlib.Path(sys.modules[check.run.__module__].__file__))
    assert sources, f"{name}: no Verdict(source=...) found in {check.run.__module__}"
    for source in sources:
      assert source, f"{name}: empty or computed source"
      assert not source_problems(source, anchors), (name, source, source_problems(source, anchors))


def test_scanner_catches_planted_bad_references():
  outside = "../" + "shared" + "/README.md"
  good = f"see docs/{THEORY_NAME}#mp_at_init and [x](docs/{THEORY_NAME}#conventions)"
  assert bad_references("spectral/x.py", good) == []
  cases = {
      f"Convention ({outside}).": "outside the repository",
      f"Convention (see {THEORY_NAME} section 1).": "not a file in the repository",
      f"Sources: ../{'shared'}/{THEORY_NAME}": "outside the repository",
      f"docs/{THEORY_NAME}#no_such_section": "names no section",
      f"docs/theory/{THEORY_NAME}": "not a file in the repository",
  }
  for text, expected in cases.items():
    found = bad_references("theory_checks/x.py", "line one\n" + text)
    assert any(expected in p for p in found), (text, found)
    assert all(p.startswith("theory_checks/x.py:2:") for p in found), found
  # A README next to the theory document resolves the bare name from its own folder.
  assert bad_references("docs/README.md", f"[theory]({THEORY_NAME}#bbp)") == []


@pytest.mark.parametrize("source, ok", [
    (f"Marchenko & Pastur 1967; docs/{'THEORY'}.md#mp_at_init", True),
    ("Dong, Cordonnier & Loukas 2021 (arXiv:2103.03404) Thm 2.2", True),
    (f"docs/{'THEORY'}.md#wigner_goe", True),
    (f"docs/{'THEORY'}.md#section_3", False),
    (f"{'THEORY'}.md section 3", False),
    ("the lab's notes", False),
])
def test_source_rule_accepts_sections_and_papers_only(source, ok):
  assert (not source_problems(source, markdown_anchors(THEORY.read_text()))) is ok


def test_anchor_rule_matches_github_headings():
  assert heading_anchor("mp_at_init") == "mp_at_init"
  assert heading_anchor("Lab observations") == "lab-observations"
  assert heading_anchor("Power laws (used by analyze)") == "power-laws-used-by-analyze"
