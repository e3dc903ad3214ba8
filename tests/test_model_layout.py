"""Naming rules of real checkpoints: layer indices, selection, fused q/k/v splits and attention heads."""

import numpy as np
import pytest

from spectral import model_layout as ml


@pytest.mark.parametrize("name, index", [
    ("model.layers.3.self_attn.q_proj.weight", 3), ("transformer.h.11.attn.c_attn.weight", 11),
    ("params/layers_2/attn/query/kernel", 2), ("blocks.0.mlp_in", 0), ("model.embed_tokens.weight", None),
    ("lm_head.weight", None), ("fc1.weight", None), ("encoder.layer.7.output.dense.weight", 7)])
def test_layer_index(name, index):
  assert ml.layer_index(name) == index


def test_parse_layers_and_errors():
  assert ml.parse_layers("0-3,10") == {0, 1, 2, 3, 10}
  assert ml.parse_layers(" 5 ") == {5}
  for bad in ("3-1", "a", "1,,2", "-1"):
    with pytest.raises(ValueError, match="--layers"):
      ml.parse_layers(bad)


def test_select_include_exclude_layers():
  shapes = [("wte.weight", (10, 4)), ("h.0.attn.c_attn.weight", (4, 12)), ("h.0.ln_1.weight", (4,)),
            ("h.1.mlp.c_fc.weight", (4, 16)), ("h.2.mlp.c_fc.weight", (4, 16)), ("lm_head.weight", (10, 4))]
  # Vectors are selected too (spectral.analyze gives them a "skipped: ..." row).
  assert ml.select(shapes) == ["wte.weight", "h.0.attn.c_attn.weight", "h.0.ln_1.weight", "h.1.mlp.c_fc.weight",
                               "h.2.mlp.c_fc.weight", "lm_head.weight"]
  assert ml.select(shapes, layers=frozenset({1})) == ["wte.weight", "h.1.mlp.c_fc.weight", "lm_head.weight"]
  assert ml.select(shapes, include="mlp", exclude=r"h\.2") == ["h.1.mlp.c_fc.weight"]
  with pytest.raises(ValueError, match="--include"):
    ml.select(shapes, include="(")


def test_split_qkv_contiguous_equal_thirds_gpt2_conv1d():
  w = np.arange(4 * 12, dtype=np.float32).reshape(4, 12)  # (in, out) = (d, 3d)
  pieces = dict(ml.split_qkv("h.0.attn.c_attn.weight", w, ml.AttentionShape()))
  np.testing.assert_array_equal(pieces["h.0.attn.c_attn.weight[q]"], w[:, 0:4])
  np.testing.assert_array_equal(pieces["h.0.attn.c_attn.weight[k]"], w[:, 4:8])
  np.testing.assert_array_equal(pieces["h.0.attn.c_attn.weight[v]"], w[:, 8:12])
  np.testing.assert_array_equal(dict(ml.split_qkv("x.c_attn.weight", w.T, ml.AttentionShape()))["x.c_attn.weight[k]"],
                                w[:, 4:8].T)


def test_split_qkv_grouped_query_contiguous_and_interleaved():
  h, kv, hd, d = 4, 2, 3, 12
  w = np.random.default_rng(0).normal(size=((h + 2 * kv) * hd, d))  # torch (out, in)
  att = ml.AttentionShape(num_heads=h, num_kv_heads=kv)
  q, k, v = (p for _, p in ml.split_qkv("l.0.qkv_proj.weight", w, att))
  np.testing.assert_array_equal(q, w[:12]), np.testing.assert_array_equal(k, w[12:18])
  np.testing.assert_array_equal(v, w[18:])
  # Interleaved (Falcon-40B): per kv group, h/kv query heads then one key head then one value head.
  att_i = ml.AttentionShape(num_heads=h, num_kv_heads=kv, qkv_layout="interleaved")
  q, k, v = (p for _, p in ml.split_qkv("l.0.query_key_value.weight", w, att_i))
  blocks = w.reshape(kv, h // kv + 2, hd, d)
  np.testing.assert_array_equal(q, np.concatenate([blocks[0, 0], blocks[0, 1], blocks[1, 0], blocks[1, 1]]))
  np.testing.assert_array_equal(k, np.concatenate([blocks[0, 2], blocks[1, 2]]))
  np.testing.assert_array_equal(v, np.concatenate([blocks[0, 3], blocks[1, 3]]))
  # GPT-NeoX (kv = h): the (H, 3, hd) layout.
  w3 = np.arange(3 * h * hd * d, dtype=np.float64).reshape(3 * h * hd, d)
  q, _, v = (p for _, p in ml.split_qkv("gpt_neox.layers.0.attention.query_key_value.weight", w3,
                                        ml.AttentionShape(num_heads=h, qkv_layout="interleaved")))
  np.testing.assert_array_equal(v[hd:2 * hd], w3.reshape(h, 3, hd, d)[1, 2])
  with pytest.raises(ValueError, match="cannot split"):
    ml.split_qkv("a.c_attn.weight", np.zeros((5, 7)), ml.AttentionShape())


def test_split_heads_axes():
  rng = np.random.default_rng(1)
  q = rng.normal(size=(8, 8))  # torch (out, in): heads on rows
  heads = dict(ml.split_heads("m.layers.0.self_attn.q_proj.weight", q, num_heads=2))
  np.testing.assert_array_equal(heads["m.layers.0.self_attn.q_proj.weight[head=1]"], q[4:8, :])
  o = dict(ml.split_heads("m.layers.0.self_attn.o_proj.weight", q, num_heads=2))
  np.testing.assert_array_equal(o["m.layers.0.self_attn.o_proj.weight[head=0]"], q[:, 0:4])
  # GPT-2 Conv1D is (in, out): a q piece has heads on columns, attn.c_proj on rows.
  piece = dict(ml.split_heads("h.0.attn.c_attn.weight[q]", q, num_heads=4))
  np.testing.assert_array_equal(piece["h.0.attn.c_attn.weight[q][head=3]"], q[:, 6:8])
  proj = dict(ml.split_heads("h.0.attn.c_proj.weight", q, num_heads=4))
  np.testing.assert_array_equal(proj["h.0.attn.c_proj.weight[head=2]"], q[4:6, :])
  assert ml.split_heads("h.0.mlp.c_proj.weight", q, num_heads=4) == []
  k = rng.normal(size=(4, 8))  # grouped-query key: 2 kv heads of size 8 / 4 = 2
  assert len(ml.split_heads("m.layers.0.self_attn.k_proj.weight", k, num_heads=4)) == 2
  with pytest.raises(ValueError, match="whole number of heads"):
    ml.split_heads("m.layers.0.self_attn.k_proj.weight", k, num_heads=4, head_dim=3)


def test_attention_shape_from_hf_config_and_overrides():
  llama = {"model_type": "llama", "num_attention_heads": 32, "num_key_value_heads": 8}
  assert ml.AttentionShape.from_hf_config(llama) == ml.AttentionShape(32, 8, None, None)
  neox = {"model_type": "gpt_neox", "num_attention_heads": 8}
  assert ml.AttentionShape.from_hf_config(neox, num_heads=4).qkv_layout == "interleaved"
  assert ml.AttentionShape.from_hf_config(neox, num_heads=4).num_heads == 4
  assert ml.AttentionShape.from_hf_config({"model_type": "falcon", "multi_query": True, "n_head": 71}).num_kv_heads == 1
  with pytest.raises(ValueError, match="--num-kv-heads"):
    ml.AttentionShape(num_heads=6, num_kv_heads=4)
