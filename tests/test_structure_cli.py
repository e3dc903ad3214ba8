"""``python -m spectral analyze`` structure columns: --init, --subspaces, --fourier (spectral/__main__.py)."""

import json

import numpy as np

from spectral import __main__ as cli
from spectral import analyze, attribution, bbp


def _files(tmp_path):
  rng = np.random.default_rng(0)
  n_tokens, d = 48, 96
  w0 = {"embed": rng.standard_t(3.0, (n_tokens, d)).astype(np.float32) / np.sqrt(d),
        "noise": rng.standard_normal((40, 120)).astype(np.float32), "lonely": np.eye(8, dtype=np.float32)}
  theta = 6.0 * bbp.bbp_threshold(n_tokens / d) / np.sqrt(d)
  teacher = np.linalg.qr(rng.standard_normal((d, 1)))[0]
  update = theta * np.outer(attribution.fourier_basis(n_tokens, 3)[:, 1], teacher[:, 0])
  update += 0.8 * theta * np.outer(attribution.fourier_basis(n_tokens, 0)[:, 0], rng.standard_normal(d) / np.sqrt(d))
  w = {"embed": (w0["embed"] + update).astype(np.float32), "noise": w0["noise"] + 0.1, "lonely": w0["lonely"]}
  np.savez(tmp_path / "w.npz", **w)
  np.savez(tmp_path / "w0.npz", **{k: v for k, v in w0.items() if k != "lonely"})
  np.savez(tmp_path / "s.npz", teacher=teacher[:, 0], dc=np.ones(d))
  return tmp_path / "w.npz", tmp_path / "w0.npz", tmp_path / "s.npz"


def test_structure_columns_with_init_and_named_subspaces(tmp_path, capsys):
  weights, init, spaces = _files(tmp_path)
  out = tmp_path / "t.json"
  assert cli.main(["analyze", str(weights), "--init", str(init), "--subspaces", str(spaces), "--fourier",
                   "--json", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "structure_rank" in printed.splitlines()[0]
  rows = {r["name"]: r for r in json.loads(out.read_text())}
  assert set(analyze.STRUCTURE_COLUMNS) <= set(rows["embed"])
  embed = rows["embed"]
  assert embed["structure_rank"] == 2 and embed["structure_status"].startswith("ok")  # dW is exactly rank 2
  assert embed["top_component"] in ("fourier:3", "teacher") and embed["top_overlap"] >= 0.9
  assert f"{embed['top_component']} ({embed['top_overlap']:.2f})" in printed
  # dW of "noise" is the constant 0.1: one rank-one (dc) direction, what sign flips count as structure.
  assert rows["noise"]["structure_rank"] == 1 and rows["noise"]["top_component"] == "fourier:0"
  assert rows["lonely"]["structure_rank"] is None and rows["lonely"]["structure_status"] == "error: no init for lonely"


def test_structure_of_w_itself_and_skipping_it(tmp_path, capsys):
  weights, _, _ = _files(tmp_path)
  out = tmp_path / "t.json"
  assert cli.main(["analyze", str(weights), "--json", str(out)]) == 0
  rows = {r["name"]: r for r in json.loads(out.read_text())}
  assert rows["embed"]["structure_rank"] == 0  # the update is far below the init's noise: only dW shows it
  assert rows["lonely"]["structure_rank"] == 0  # every sign flip of a diagonal matrix has its singular values
  assert cli.main(["analyze", str(weights), "--no-structure", "--json", str(out)]) == 0
  assert all(r["structure_rank"] is None for r in json.loads(out.read_text()))
  bad = tmp_path / "bad.npz"
  np.savez(bad, x=np.ones((3, 3, 3)))
  assert cli.main(["analyze", str(weights), "--subspaces", str(bad)]) == 2
  assert "--subspaces" in capsys.readouterr().err
