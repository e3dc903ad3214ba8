"""The ``python -m spectral analyze`` command line on .npz and .safetensors files."""

import csv
import json

import numpy as np
import pytest

from spectral import __main__ as cli
from spectral import metrics


def _weights(rng):
  return {"blocks.0.mlp.kernel": rng.normal(size=(32, 64)).astype(np.float32),
          "blocks.0.bias": np.zeros(64, np.float32), "blocks.0.bad": np.full((8, 8), np.inf, np.float32)}


def test_npz_table_json_csv(tmp_path, capsys):
  path = tmp_path / "w.npz"
  np.savez(path, **_weights(np.random.default_rng(0)))
  rc = cli.main(["analyze", str(path), "--json", str(tmp_path / "o.json"), "--csv", str(tmp_path / "o.csv")])
  assert rc == 0
  out = capsys.readouterr().out
  assert "blocks.0.mlp.kernel" in out and "NaN or Inf" in out and "skipped: 1-D array" in out
  rows = json.loads((tmp_path / "o.json").read_text())
  assert [r["name"] for r in rows] == ["blocks.0.mlp.kernel", "blocks.0.bias", "blocks.0.bad"]
  assert set(metrics.METRIC_NAMES) <= set(rows[0]) and rows[0]["status"] == "ok"
  assert rows[1]["status"].startswith("skipped: 1-D array of shape (64,)") and rows[1]["alpha"] is None
  with open(tmp_path / "o.csv") as f:
    assert len(list(csv.DictReader(f))) == 3


def test_small_and_rank_deficient_matrices_get_rows(tmp_path, capsys):
  path = tmp_path / "w.npz"
  np.savez(path, small=np.random.default_rng(2).normal(size=(2, 3)), ones=np.ones((30, 60)))
  assert cli.main(["analyze", str(path), "--json", str(tmp_path / "o.json")]) == 0
  rows = json.loads((tmp_path / "o.json").read_text())
  assert [r["status"][:10] for r in rows] == ["fit failed", "fit failed"]
  assert rows[1]["alpha"] is None and rows[1]["numerical_rank"] == 1  # NaN is written as null, never a number


def test_not_an_npz_file(tmp_path, capsys):
  for name, content in [("w.npz", b"not a zip archive"), ("a.npz", None)]:
    path = tmp_path / name
    if content is None:
      np.save(tmp_path / "a.npy", np.ones((3, 3)))
      (tmp_path / "a.npy").rename(path)  # a .npy file under a .npz name
    else:
      path.write_bytes(content)
    assert cli.main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a .npz file" in err and "pickle" not in err


def test_safetensors(tmp_path, capsys):
  safetensors_numpy = pytest.importorskip("safetensors.numpy")
  path = tmp_path / "w.safetensors"
  safetensors_numpy.save_file({"m": np.random.default_rng(1).normal(size=(20, 30)).astype(np.float32)}, str(path))
  assert cli.main(["analyze", str(path), "--randomize"]) == 0
  assert "ok" in capsys.readouterr().out


def test_file_without_matrices_and_bad_type(tmp_path, capsys):
  path = tmp_path / "v.npz"
  np.savez(path, b=np.zeros(3))
  assert cli.main(["analyze", str(path)]) == 2
  assert "contains no matrices" in capsys.readouterr().err
  other = tmp_path / "w.txt"
  other.write_text("x")
  assert cli.main(["analyze", str(other)]) == 2
  assert "unsupported file type" in capsys.readouterr().err
