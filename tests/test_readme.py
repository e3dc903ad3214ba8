"""The README's two commands stay true: CI runs the second one verbatim."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _commands():
  return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_first_screen_has_the_two_commands():
  main_cmd, test_cmd = _commands()[:2]
  assert main_cmd.endswith("python -m lab main") and main_cmd.startswith("python3 -m venv .venv")
  assert test_cmd.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim():
  test_cmd = _commands()[1]
  assert test_cmd in (ROOT / ".ci" / "run").read_text().splitlines()


def test_gallery_images_exist():
  text = (ROOT / "README.md").read_text()
  images = re.findall(r"\]\((docs/gallery/[^)]+\.png)\)", text)
  assert images
  for image in images:
    assert (ROOT / image).stat().st_size > 10_000, image


# --- Every README and --help example works as written (issue 17) ---------------------------------------------------

import importlib
import shlex
import shutil
import sys

import pytest

PACKAGES = ("lab", "theory_checks", "figures", "spectral")
PLACEHOLDER = re.compile(r"<|\[|\\\||\.\.\.|KEY=|=K|"
                         r"\b(NAME|DIR|FILE|SWEEP|CHECK|M|I|S|P|L)\b")


def readme_examples() -> list[str]:
  """Every runnable ``python -m`` command of the README: the lines of its bash blocks and its inline code spans that
  hold no placeholder (``NAME``, ``[--opt]``, ``a | b``...); commands chained with ``&&`` or ``;`` are split."""
  text = (ROOT / "README.md").read_text()
  found = []
  for block in re.findall(r"```bash\n(.+?)\n```", text, flags=re.S):
    found += [line for line in block.splitlines()]
  found += re.findall(r"`(python -m [^`]+)`", text)
  out = []
  for line in found:
    for part in re.split(r"&&|;", line):
      part = part.strip().removeprefix(".venv/bin/")
      words = part.split()
      if words[:2] == ["python", "-m"] and len(words) > 3 and words[2] in PACKAGES and not PLACEHOLDER.search(part):
        out.append(part)
  return list(dict.fromkeys(out))


def help_examples() -> list[str]:
  """The example lines of each command line's ``--help`` (module docstrings), placeholders left out."""
  out = []
  for pkg in PACKAGES:
    doc = importlib.import_module(f"{pkg}.__main__").__doc__
    out += [m.strip("`") for m in re.findall(r"`{0,2}(python -m [^`\n]+)`{0,2}", doc) if not PLACEHOLDER.search(m)]
  return list(dict.fromkeys(out))


def _parse(command: str):
  """Parse ``python -m PKG ARGS`` with PKG's own parser (nothing runs)."""
  _, _, pkg, *args = shlex.split(command.split(" > ")[0])
  module = importlib.import_module(f"{pkg}.__main__")
  if pkg == "theory_checks" and args and args[0] not in module.SUBCOMMANDS:
    args = ["run", *args]
  return module.build_parser().parse_args(args)


def test_readme_has_examples_for_every_command_line():
  commands = readme_examples()
  for pkg in PACKAGES:
    assert any(c.startswith(f"python -m {pkg} ") for c in commands), pkg
  assert "python -m lab main --quick" in commands


@pytest.mark.parametrize("command", readme_examples() + help_examples())
def test_example_parses(command):
  """Every example's subcommand and options exist (the run itself: test_readme_session_replays below)."""
  _parse(command)


def test_readme_documents_the_conventions_and_results_columns():
  from lab import results_columns

  text = (ROOT / "README.md").read_text()
  assert "## Command-line conventions" in text
  for flag in ("`--quick`", "`--runs DIR`", "`--run NAME_OR_PATH`", "`--debug`", "`--set KEY=VALUE`"):
    assert flag in text, flag
  for column, meaning in {**results_columns.FIXED, **results_columns.SCALARS, **results_columns.METRICS}.items():
    assert f"| `{column}` | {meaning} |" in text, column


def run_line(line: str, cwd: pathlib.Path, capsys) -> str:
  """Run one README line as a user would, in-process: ``python -m PKG ARGS [> FILE]`` or ``python -c CODE``.
  Returns stdout; fails on a non-zero exit status or a traceback."""
  command, _, redirect = line.partition(" > ")
  argv = shlex.split(command)
  if argv[:2] == ["python", "-c"]:
    exec(argv[2], {})
    return ""
  module = importlib.import_module(f"{argv[2]}.__main__")
  code = module.main(argv[3:])
  out, err = capsys.readouterr()
  assert code == 0 and "Traceback" not in err, f"{line}\n{err}"
  if redirect:
    (cwd / redirect.strip()).write_text(out)
  return out


def test_cheap_readme_lines_run(tmp_path, monkeypatch, capsys):
  """The README lines that take a second or two, run for real."""
  from models.config import RunConfig, load_config

  monkeypatch.chdir(tmp_path)
  shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
  session = [c for c in readme_examples() if c.startswith(("python -m lab config", "python -m theory_checks list",
                                                          "python -m lab sweep run docs/examples/sweep.toml --dry"))]
  assert len(session) >= 3
  for line in session:
    run_line(line, tmp_path, capsys)
  assert load_config(tmp_path / "my_config.toml") == RunConfig()


@pytest.mark.slow
def test_readme_session_replays(tmp_path, monkeypatch, capsys):
  """The README's first session, line by line, in a fresh folder; then the README's other examples in their quick
  form (the full-size main job and gallery are the same commands without --quick)."""
  monkeypatch.chdir(tmp_path)
  shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
  block = re.findall(r"## A first session.*?```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)[0]
  for line in block.splitlines():
    run_line(line, tmp_path, capsys)
  assert (tmp_path / "runs" / "sweeps" / "example" / "results_columns.md").exists()
  quick = {"python -m lab main": "python -m lab main --quick",
           "python -m theory_checks all --quick": "python -m theory_checks run tw_fluctuations bbp --quick",
           "python -m figures all --out docs/gallery": "python -m figures all --run tiny --out gallery --make-missing"}
  for command in quick:  # in the README's order: checks before the figures that read them
    assert command in readme_examples(), command
    run_line(quick[command], tmp_path, capsys)
  # The --help examples, in their quick form, on the runs made above.
  for command in help_examples():
    if command.startswith("python -m lab main") and "--quick" not in command:
      command += " --quick"
    command = command.replace("noise_vs_structure", "tiny").replace("weights.npz", "w.npz")
    if command.startswith("python -m figures esd_by_regime"):
      command += " --run tiny"
    run_line(command, tmp_path, capsys)
