"""Sweeps: packing plan, validation up front, lock, failure isolation, kill-and-resume, summary table."""

import csv
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from lab import sweep, sweep_spec

ROOT = pathlib.Path(__file__).resolve().parent.parent

TINY_BASE = {
    "model": {"d_model": 16, "num_heads": 2, "num_layers": 1},
    "data": {"seq_len": 8, "vocab_size": 16, "batch_size": 8, "noise_p": [0.0], "regime_names": ["structured"]},
    "train": {"steps": 12, "snapshot_steps": [0, 12], "eval_batches": 1, "members_per_regime": 1,
              "checkpoint_every": 4},
}


def _spec(axes, **head):
  return sweep_spec.sweep_from_dict({"sweep": {"name": "t", **head}, "base": TINY_BASE, "axes": axes})


def test_packing_plan_for_mixed_shapes():
  spec = _spec({"seed": [0, 1, 2], "learning_rate": [1e-3, 3e-3], "model.d_model": [16, 32]})
  packs = sweep_spec.plan_packs(spec)
  assert len(packs) == 2
  assert sorted(p.config.model.d_model for p in packs) == [16, 32]
  for p in packs:
    assert p.config.num_members == 6
    lrs = sorted({m.learning_rate for m in p.config.members()})
    assert lrs == [1e-3, 3e-3]
  # max_members splits a pack into programs of bounded size.
  assert len(sweep_spec.plan_packs(_spec({"seed": [0, 1, 2, 3, 4]}, max_members=2))) == 3


def test_random_mode_is_seeded():
  axes = {"learning_rate": {"log_uniform": [1e-4, 1e-2]}, "seed": [0, 1]}
  a = sweep_spec.expand_points(_spec(axes, mode="random", samples=5, seed=3))
  b = sweep_spec.expand_points(_spec(axes, mode="random", samples=5, seed=3))
  assert [p.values for p in a] == [p.values for p in b]
  assert all(1e-4 <= p.values["learning_rate"] <= 1e-2 for p in a)


@pytest.mark.parametrize("raw, match", [
    ({"sweep": {"nme": "x"}, "axes": {"seed": [0]}}, r"sweep: unknown key\(s\) \['nme'\]"),
    ({"axes": {"train.lr": [0.1]}}, r"axes.train.lr: expected a key of section train \(.*learning_rate.*\), got an "
     r"unknown key; did you mean 'train.learning_rate'"),
    ({"axes": {"trian.steps": [1]}}, r"axes.trian: expected a section .*did you mean 'train'"),
    # A typo in a member-level axis lists the valid axis names, not the config's sections.
    ({"axes": {"learning_rat": [0.1]}}, r"axes.learning_rat: expected a member-level axis \(seed, p, learning_rate, "
     r"weight_decay, init_scale\) or a dotted config key such as model.d_model, got 'learning_rat'; did you mean "
     r"'learning_rate'"),
    ({"axes": {"seed": []}}, "axes.seed: expected a non-empty list"),
    ({"axis": {}}, "unknown top-level key"),
    ({"axes": {"learning_rate": {"uniform": [0, 1]}}}, "only allowed in random mode"),
    ({"base": {"train": {"stepz": 1}}, "axes": {"seed": [0]}}, r"train.stepz: expected a key of section train"),
    ({"axes": {"learning_rate": {"log_uniform": [-1, 1]}}, "sweep": {"mode": "random", "samples": 2}},
     r"axes.learning_rate.log_uniform: expected \[lo, hi\] with lo < hi and lo > 0, got \[-1, 1\]"),
])
def test_bad_sweep_files_name_the_key(raw, match):
  with pytest.raises(ValueError, match=match):
    sweep_spec.sweep_from_dict(raw)


def test_impossible_combination_rejected_before_running():
  spec = _spec({"model.num_heads": [2, 3], "seed": [0]})
  with pytest.raises(ValueError, match=r"sweep point .*num_heads.*does not divide"):
    sweep_spec.plan_packs(spec)


def test_lock_refuses_a_second_sweep_and_takes_over_a_stale_one(tmp_path):
  with sweep.sweep_lock(tmp_path):
    with pytest.raises(sweep.SweepLockedError, match="another sweep"):
      with sweep.sweep_lock(tmp_path):
        pass
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  (tmp_path / ".lock").write_text(f"{dead.pid}\n")
  with sweep.sweep_lock(tmp_path):
    assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
  assert not (tmp_path / ".lock").exists()


def test_failure_isolation_and_summary(tmp_path):
  # init_scale 1e30 overflows float32 weights: that member's loss is NaN from step 0 and it must be frozen and
  # recorded as failed, while the other members finish.
  spec = _spec({"seed": [0, 1], "init_scale": [1.0, 1e30]})
  folder = sweep.run_sweep(spec, tmp_path, progress=False)
  manifest = sweep.read_manifest(folder)
  states = {tuple(sorted(p["values"].items())): p["state"] for p in manifest["points"].values()}
  assert states[(("init_scale", 1e30), ("seed", 0))] == "failed"
  assert states[(("init_scale", 1.0), ("seed", 1))] == "done"
  assert sweep.status(folder).counts == {"pending": 0, "running": 0, "done": 2, "failed": 2, "interrupted": 0}
  table = list(csv.DictReader(sweep.summarize(folder).open()))
  layers = {r["matrix"] for r in table}
  assert "blocks.0.mlp_in.kernel" in layers
  done = [r for r in table if r["state"] == "done" and r["step"] == "12"]
  assert len(done) == 2 * len(layers)
  assert all(float(r["test_loss"]) > 0 for r in done)


def _write_sweep_file(path):
  path.write_text("""
[sweep]
name = "kill"
[base]
model = { d_model = 16, num_heads = 2, num_layers = 1 }
data = { seq_len = 8, vocab_size = 16, batch_size = 8, noise_p = [0.5], regime_names = ["meso"] }
train = { steps = 30, snapshot_steps = [0, 15, 30], eval_batches = 1, members_per_regime = 1, checkpoint_every = 5 }
[axes]
seed = [0, 1]
"model.num_layers" = [1, 2]
""")


@pytest.mark.slow  # minutes on 2 cores (retrains twice); run with -m slow
def test_kill_and_resume_gives_the_uninterrupted_table(tmp_path):
  sweep_file = tmp_path / "s.toml"
  _write_sweep_file(sweep_file)
  cmd = [sys.executable, "-m", "lab", "sweep", "run", str(sweep_file), "--no-progress"]
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  clean = subprocess.run(cmd + ["--out", str(tmp_path / "clean")], env=env, cwd=ROOT, capture_output=True, text=True)
  assert clean.returncode == 0, clean.stderr
  proc = subprocess.Popen(cmd + ["--out", str(tmp_path / "killed")], env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  # Kill once the first pack has checkpointed at least once but before the sweep ends.
  runs = tmp_path / "killed" / "kill" / "runs"
  deadline = time.time() + 120
  while time.time() < deadline and proc.poll() is None:
    if any(runs.glob("*/checkpoints/*")) or any(runs.glob("*/DONE")):
      break
    time.sleep(0.05)
  time.sleep(0.5)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  # The killed worker is shown dead and its points interrupted, not running.
  st = sweep.status(tmp_path / "killed" / "kill")
  assert st.worker is None or not st.worker[1]
  assert st.counts["running"] == 0 and st.counts["interrupted"] + st.counts["done"] >= 1
  assert "run the sweep again to resume" in sweep.format_status(st) or st.worker is None
  resumed = subprocess.run(cmd + ["--out", str(tmp_path / "killed")], env=env, cwd=ROOT, capture_output=True,
                           text=True)
  assert resumed.returncode == 0, resumed.stderr
  # The resume says so (which pack resumes at which step depends on when the kill landed).
  assert re.search(r"sweep folder \S+ exists: \d point\(s\) done, 0 failed, \d unfinished; 0 new point",
                   resumed.stdout), resumed.stdout
  a = (tmp_path / "clean" / "kill" / "results.csv").read_text()
  b = (tmp_path / "killed" / "kill" / "results.csv").read_text()
  assert a == b


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys):
  from lab.__main__ import main

  path = tmp_path / "s.toml"
  path.write_text('[sweep]\nname = "dry"\n[base]\ntrain = { steps = 10, snapshot_steps = [0, 10] }\n'
                  '[axes]\nseed = [0, 1]\n"model.d_model" = [16, 32]\n')
  assert main(["sweep", "run", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
  printed = capsys.readouterr().out
  assert "4 points in 2 compiled program(s)" in printed and "MiB per device" in printed
  assert not (tmp_path / "out").exists()


def _tree_bytes(folder):
  return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
          if p.is_file() and "checkpoints" not in p.parts}


def test_growing_a_finished_sweep_runs_only_the_new_points(tmp_path, capsys):
  first = sweep.run_sweep(_spec({"seed": [0], "learning_rate": [1e-3, 3e-3]}), tmp_path, progress=False)
  table1 = sweep.summarize(first).read_text().splitlines()
  (old_pack,) = [p for p in (first / "runs").iterdir()]
  before = _tree_bytes(old_pack)
  ids1 = dict(sweep.read_manifest(first)["points"])
  capsys.readouterr()
  # One more seed: two new points, trained as one new pack; the old pack is not touched.
  grown = _spec({"seed": [0, 1], "learning_rate": [1e-3, 3e-3]})
  plan = sweep.plan_sweep(grown, first)
  assert len(plan.new) == 2 and plan.existing and [p.name for p in plan.packs][0] == old_pack.name
  assert "2 new" in sweep.plan_summary(grown, plan)
  folder = sweep.run_sweep(grown, tmp_path, progress=False)
  out = capsys.readouterr().out
  assert "2 new point(s)" in out and out.count("training") == 1
  assert _tree_bytes(old_pack) == before
  manifest = sweep.read_manifest(folder)["points"]
  assert {k: v for k, v in manifest.items() if k in ids1} == ids1  # same ids, packs, members and states
  assert sorted(p["state"] for p in manifest.values()) == ["done"] * 4
  assert len({p["pack"] for p in manifest.values()}) == 2
  table2 = sweep.summarize(folder).read_text().splitlines()
  assert table2[:len(table1)] == table1  # existing rows byte-identical, new rows after them
  assert len(table2) == 2 * len(table1) - 1
  # Running the grown file again trains nothing; a changed base config is refused, naming the key.
  capsys.readouterr()
  sweep.run_sweep(grown, tmp_path, progress=False)
  assert "training" not in capsys.readouterr().out
  changed = sweep_spec.sweep_from_dict({"sweep": {"name": "t"}, "axes": {"seed": [0]},
                                        "base": {**TINY_BASE, "train": {**TINY_BASE["train"], "steps": 8,
                                                                        "snapshot_steps": [0, 8]}}})
  with pytest.raises(ValueError, match=r"sweep.name: expected a new sweep name for a changed base config.*"
                                       r"train.steps: 12 -> 8"):
    sweep.run_sweep(changed, tmp_path, progress=False)


def test_status_table_and_columns_dictionary(tmp_path):
  folder = sweep.run_sweep(_spec({"seed": [0, 1]}), tmp_path, progress=False)
  text = sweep.format_status(sweep.status(folder))
  assert "2 points: 2 done; no worker holds the folder" in text
  assert "seed=0" in text and "seed=1" in text and "finished" in text
  header = sweep.summarize(folder).read_text().splitlines()[0].split(",")
  assert header[:6] == ["point", "pack", "member", "state", "step", "matrix"]
  doc = (folder / sweep.COLUMNS_FILE).read_text()
  for column in header:
    assert f"| `{column}` |" in doc
  assert "see spectral/metrics.py" not in doc  # every column has its own meaning
  # Points are labelled by their values in the pack's members (the progress bar's regimes).
  run = sweep.run_folder.load_run(folder / "runs" / sweep.read_manifest(folder)["points"].popitem()[1]["pack"])
  assert sorted(m["regime"] for m in run.members) == ["seed=0", "seed=1"]
