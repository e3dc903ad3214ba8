"""Several theory checks at once (theory_checks.runner): the same numbers as one after another, errors surface."""

import json

import pytest

from theory_checks import runner
from theory_checks.registry import CHECKS

FAST = ["tw_fluctuations", "bbp"]  # seconds each at the quick size


def _results(runs_dir):
  return {p.name: json.loads(p.read_text()) for p in sorted((runs_dir / "checks").glob("*.json"))}


def test_checks_in_worker_processes_give_the_serial_numbers(tmp_path):
  printed = []
  serial = runner.run_checks(FAST, quick=True, runs_dir=tmp_path / "serial", jobs=1, emit=printed.append)
  parallel = runner.run_checks(FAST, quick=True, runs_dir=tmp_path / "parallel", jobs=2, emit=printed.append)
  assert list(serial) == list(parallel) == FAST  # the caller's order, whatever order they finished in
  assert serial == parallel
  a, b = _results(tmp_path / "serial"), _results(tmp_path / "parallel")
  assert sorted(a) == sorted(f"{n}.json" for n in FAST)
  for name in a:
    for key in ("status", "measured", "predicted", "details"):
      assert a[name][key] == b[name][key], (name, key)
  assert len(printed) == 4 and all("result:" in t for t in printed)
  for name in FAST:  # what a worker's check printed while it ran went to its log, named in its summary
    assert runner.log_path(tmp_path / "parallel", name).exists()
    assert any(str(runner.log_path(tmp_path / "parallel", name)) in t for t in printed)


def test_a_check_that_raises_in_a_worker_raises_here(tmp_path):
  runs = tmp_path / "runs"
  runs.write_text("a file where the runs folder should be")
  with pytest.raises(Exception):
    runner.run_checks(FAST, quick=True, runs_dir=runs, jobs=2, emit=lambda t: None)


def test_queue_is_longest_first_and_jobs_are_checked():
  assert all(c.quick_seconds > 0 for c in CHECKS.values())
  with pytest.raises(ValueError, match="jobs"):
    runner.run_checks(FAST, quick=True, runs_dir="unused", jobs=0)
  with pytest.raises(ValueError, match="json_path"):
    runner.run_checks(FAST, quick=True, runs_dir="unused", json_path="x.json", jobs=2)
  assert runner.default_jobs(1) == 1 and 1 <= runner.default_jobs(14) <= 2
