"""Real checkpoints through ``python -m spectral analyze``: sharded safetensors with an index, bf16/fp16, fused q/k/v,
tied embeddings, selection, npz and Orbax folders; the table held against numpy."""

import json

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from spectral import __main__ as cli
from spectral import checkpoint_io
from spectral import marchenko_pastur as mp
from spectral import power_law


def _bf16_bits(x: np.ndarray) -> np.ndarray:
  """Round-toward-zero float32 -> bfloat16 bits (the high 16 bits), done by hand."""
  return (np.ascontiguousarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _bits_to_f32(bits: np.ndarray) -> np.ndarray:
  return (bits.astype(np.uint32) << 16).view(np.float32)


def _as_bf16(bits: np.ndarray) -> np.ndarray:
  return bits.view(ml_dtypes.bfloat16)


def test_bf16_and_fp16_are_converted_exactly(tmp_path):
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.standard_t(3, size=200).astype(np.float32),
                      np.array([0.0, -0.0, np.inf, -np.inf, 1e-40, -3e38, 65504.0], np.float32)]).reshape(9, 23)
  bits = _bf16_bits(x)
  h = rng.normal(size=(5, 7)).astype(np.float16)
  save_file({"b": _as_bf16(bits), "h": h}, str(tmp_path / "w.safetensors"))
  ckpt = checkpoint_io.open_checkpoint(tmp_path / "w.safetensors")
  got = {e.name: ckpt.read(e) for e in ckpt.entries}
  assert got["b"].dtype == np.float32 and got["h"].dtype == np.float32
  # Exactly the float32 whose high half is the stored bits: x with its low 16 bits cleared.
  np.testing.assert_array_equal(got["b"].view(np.uint32), x.view(np.uint32) & np.uint32(0xFFFF0000))
  np.testing.assert_array_equal(got["b"], _bits_to_f32(bits))
  np.testing.assert_array_equal(got["h"], h.astype(np.float64).astype(np.float32))
  # numpy's own bfloat16 (raw 2-byte void in an npz) is read as bf16 bits too.
  np.savez(tmp_path / "w.npz", b=bits.view("V2"))
  npz = checkpoint_io.open_checkpoint(tmp_path / "w.npz")
  np.testing.assert_array_equal(npz.read(npz.entries[0]), got["b"])


def _esd64(w: np.ndarray) -> np.ndarray:
  w = w.astype(np.float64)
  ws = w if w.shape[0] <= w.shape[1] else w.T
  return np.sort(np.linalg.eigvalsh(ws @ ws.T / max(w.shape)))


def _check_row_against_numpy(row: dict, w: np.ndarray) -> None:
  ev = _esd64(w)
  m, n = min(w.shape), max(w.shape)
  assert tuple(row["shape"]) == w.shape
  if m < power_law.DEFAULT_MIN_TAIL:  # too few eigenvalues for a power-law tail: the fit fails, the rest stands
    assert row["status"].startswith(f"fit failed: power law failed: {m} valid values") and row["alpha"] is None
  else:
    assert row["status"] == "ok"
  assert row["lambda_max"] == pytest.approx(ev[-1], rel=1e-5)
  assert row["log10_frobenius_norm"] == pytest.approx(np.log10(ev.sum()), abs=1e-6)
  assert row["stable_rank"] == pytest.approx(ev.sum() / ev[-1], rel=1e-5)
  s = np.sqrt(np.clip(ev, 0, None))
  p = s / s.sum()
  assert row["entropy_rank"] == pytest.approx(np.exp(-np.sum(p[p > 0] * np.log(p[p > 0]))), rel=1e-5)
  assert row["mp_sigma2"] == pytest.approx(np.median(ev) / mp.mp_quantile(0.5, m / n), rel=1e-5)
  assert row["n_outliers"] == int(np.sum(ev > row["tw_threshold"]))
  if m >= power_law.DEFAULT_MIN_TAIL:
    alpha, _, n_tail = power_law.power_law_mle(ev, row["xmin"] * (1 - 1e-6))
    assert row["n_tail"] == n_tail and row["alpha"] == pytest.approx(alpha, rel=1e-4)
  centre = ev[m // 4: m - m // 4]
  sp = np.diff(centre)
  r = np.minimum(sp[1:], sp[:-1]) / np.maximum(sp[1:], sp[:-1])
  assert row["spacing_ratio"] == pytest.approx(r.mean(), rel=1e-4)


D = 32


def _gpt2_like_folder(tmp_path, rng):
  """Two shards with an index: GPT-2 names, bf16 weights, fused c_attn (d, 3d), a tied lm_head, biases, fp16 mlp."""
  bits = {}
  shard1, shard2 = {}, {}
  wte = _bf16_bits(rng.normal(size=(120, D)).astype(np.float32) * 0.02)
  shard1["transformer.wte.weight"] = _as_bf16(wte)
  bits["transformer.wte.weight"] = wte
  for layer, shard in ((0, shard1), (1, shard2)):
    for name, shape in ((f"transformer.h.{layer}.attn.c_attn.weight", (D, 3 * D)),
                        (f"transformer.h.{layer}.attn.c_proj.weight", (D, D))):
      b = _bf16_bits(rng.standard_t(4, size=shape).astype(np.float32))
      shard[name] = _as_bf16(b)
      bits[name] = b
    shard[f"transformer.h.{layer}.attn.c_attn.bias"] = _as_bf16(np.zeros(3 * D, np.uint16))
    shard[f"transformer.h.{layer}.mlp.c_fc.weight"] = rng.normal(size=(D, 4 * D)).astype(np.float16)
  shard2["lm_head.weight"] = _as_bf16(wte.copy())  # tied: identical bytes
  folder = tmp_path / "gpt2"
  folder.mkdir()
  save_file(shard1, str(folder / "model-00001-of-00002.safetensors"))
  save_file(shard2, str(folder / "model-00002-of-00002.safetensors"))
  weight_map = {k: "model-00001-of-00002.safetensors" for k in shard1}
  weight_map.update({k: "model-00002-of-00002.safetensors" for k in shard2})
  (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
  (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_head": 4}))
  return folder, bits, shard1, shard2


def test_sharded_bf16_folder_with_fused_qkv_against_numpy(tmp_path, capsys):
  folder, bits, shard1, shard2 = _gpt2_like_folder(tmp_path, np.random.default_rng(0))
  out = tmp_path / "t.json"
  assert cli.main(["analyze", str(folder), "--json", str(out), "--no-progress", "--no-compile-cache"]) == 0
  err = capsys.readouterr().err
  assert "lm_head.weight: identical to transformer.wte.weight (tied weights)" in err
  rows = {r["name"]: r for r in json.loads(out.read_text())}
  names = list(rows)
  assert names[0] == "transformer.wte.weight" and "lm_head.weight" not in rows
  biases = [n for n in names if "bias" in n]  # every tensor gets a row: vectors are skipped, with the reason
  assert len(biases) == 2 and all(rows[n]["status"].startswith("skipped: 1-D array") for n in biases)
  for layer in (0, 1):
    fused = bits[f"transformer.h.{layer}.attn.c_attn.weight"]
    w = _bits_to_f32(fused)  # GPT-2 Conv1D (in, out): q, k, v are column thirds
    for i, piece in enumerate("qkv"):
      _check_row_against_numpy(rows[f"transformer.h.{layer}.attn.c_attn.weight[{piece}]"], w[:, i * D:(i + 1) * D])
    assert f"transformer.h.{layer}.attn.c_attn.weight" not in rows
    _check_row_against_numpy(rows[f"transformer.h.{layer}.attn.c_proj.weight"],
                             _bits_to_f32(bits[f"transformer.h.{layer}.attn.c_proj.weight"]))
  fc = (shard1 | shard2)["transformer.h.1.mlp.c_fc.weight"].astype(np.float32)
  _check_row_against_numpy(rows["transformer.h.1.mlp.c_fc.weight"], fc)
  _check_row_against_numpy(rows["transformer.wte.weight"], _bits_to_f32(bits["transformer.wte.weight"]))
  # Layer order: embeddings, layer 0 (shard 1), layer 1 (shard 2).
  assert [n.split(".")[2] for n in names[1:]] == ["0"] * 6 + ["1"] * 6


def test_selection_heads_and_fused_options(tmp_path, capsys):
  folder, bits, _, _ = _gpt2_like_folder(tmp_path, np.random.default_rng(1))
  out = tmp_path / "t.json"
  args = ["analyze", str(folder / "model.safetensors.index.json"), "--json", str(out), "--no-progress",
          "--no-compile-cache", "--layers", "1", "--exclude", "wte|lm_head|c_fc", "--qkv", "both", "--per-head"]
  assert cli.main(args) == 0
  names = [r["name"] for r in json.loads(out.read_text())]
  base = "transformer.h.1.attn.c_attn.weight"
  assert base in names and f"{base}[q]" in names
  assert f"{base}[q][head=3]" in names and f"transformer.h.1.attn.c_proj.weight[head=0]" in names
  assert not any(".h.0." in n for n in names)
  # n_head = 4 from config.json: 4 heads of size 8 per q/k/v piece and per c_proj; the fused matrix has no heads.
  assert sum("[head=" in n for n in names) == 4 * 4 and f"{base}[head=0]" not in names
  rows = {r["name"]: r for r in json.loads(out.read_text())}
  w = _bits_to_f32(bits[base])
  _check_row_against_numpy(rows[f"{base}[k][head=2]"], w[:, D + 16:D + 24])


@pytest.mark.parametrize("argv, message", [
    (["--layers", "3-1"], "--layers"), (["--include", "("], "--include"), (["--num-heads", "0"], "--num-heads"),
    (["--include", "nothing-matches"], "no matrix"), (["--tail-k", "1"], "--tail-k")])
def test_bad_options_give_one_error_line(tmp_path, capsys, argv, message):
  np.savez(tmp_path / "w.npz", a=np.random.default_rng(0).normal(size=(8, 12)))
  assert cli.main(["analyze", str(tmp_path / "w.npz"), "--no-progress", "--no-compile-cache", *argv]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_missing_shard_and_not_a_checkpoint(tmp_path):
  folder = tmp_path / "f"
  folder.mkdir()
  (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "missing.safetensors"}}))
  with pytest.raises(FileNotFoundError, match="missing.safetensors"):
    checkpoint_io.open_checkpoint(folder)
  (tmp_path / "g").mkdir()
  with pytest.raises(ValueError, match="holds no model.safetensors.index.json"):
    checkpoint_io.open_checkpoint(tmp_path / "g")
  (tmp_path / "x.safetensors").write_bytes(b"\x05")
  with pytest.raises(ValueError, match="not a safetensors file"):
    checkpoint_io.open_checkpoint(tmp_path / "x.safetensors")


def test_orbax_checkpoint_folder(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  rng = np.random.default_rng(2)
  tree = {"params": {"blocks_0": {"attn": {"query": {"kernel": rng.normal(size=(16, 2, 8)).astype(np.float32)}}},
                     "embed": rng.normal(size=(40, 16)).astype(np.float32)}}
  ckptr = ocp.PyTreeCheckpointer()
  ckptr.save((tmp_path / "step" / "default").resolve(), tree)
  ckpt = checkpoint_io.open_checkpoint(tmp_path / "step")
  assert ckpt.kind == "orbax"
  got = {e.name: ckpt.read(e) for e in ckpt.entries}
  np.testing.assert_array_equal(got["params.blocks_0.attn.query.kernel"],
                                tree["params"]["blocks_0"]["attn"]["query"]["kernel"])
  np.testing.assert_array_equal(got["params.embed"], tree["params"]["embed"])


def test_per_head_without_head_counts_is_one_note(tmp_path, capsys):
  rng = np.random.default_rng(3)
  np.savez(tmp_path / "w.npz", **{f"model.layers.{i}.self_attn.{p}.weight": rng.normal(size=(16, 16))
                                  for i in range(2) for p in ("q_proj", "o_proj")})
  assert cli.main(["analyze", str(tmp_path / "w.npz"), "--per-head", "--no-progress", "--no-compile-cache"]) == 0
  err = capsys.readouterr().err
  assert err.count("needs --num-heads") == 1
  assert cli.main(["analyze", str(tmp_path / "w.npz"), "--per-head", "--num-heads", "4", "--no-progress",
                   "--no-compile-cache"]) == 0
  assert capsys.readouterr().out.count("[head=") == 16


def test_randomized_baseline_is_reproducible_and_independent_across_matrices(tmp_path):
  rng = np.random.default_rng(4)
  w = rng.standard_t(3, size=(24, 60)).astype(np.float32)
  np.savez(tmp_path / "w.npz", **{"layers.0.a": w, "layers.1.a": w.copy()})  # same matrix twice (not tied names)
  runs = []
  for i in range(2):
    out = tmp_path / f"t{i}.json"
    assert cli.main(["analyze", str(tmp_path / "w.npz"), "--randomize", "--json", str(out), "--no-progress",
                     "--no-compile-cache"]) == 0
    runs.append(json.loads(out.read_text()))
  assert runs[0] == runs[1]
  a, b = runs[0]
  assert a["alpha"] == b["alpha"] and a["rand_lambda_max"] != b["rand_lambda_max"]  # two different shuffles
