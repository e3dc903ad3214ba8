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
