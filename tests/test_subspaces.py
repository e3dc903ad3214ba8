"""A transformer's named subspaces and gauge-invariant head circuits (models/subspaces.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models import subspaces as sub
from models import train
from models.config import RunConfig, with_overrides
from models.weight_matrices import weight_matrices
from spectral import attribution, structure

SMALL = {"model.d_model": 32, "model.num_heads": 2, "model.num_layers": 2, "data.seq_len": 16,
         "data.vocab_size": 24}


def small_model(**overrides):
  cfg = with_overrides(RunConfig(), {**SMALL, **overrides})
  return cfg, nnx.merge(train.graphdef_of(cfg), train.init_params(cfg, train.member_key(cfg, 0)))


def tokens(cfg, batch=8):
  return jax.random.randint(jax.random.key(0), (batch, cfg.data.seq_len), 0, cfg.data.vocab_size)


@pytest.mark.parametrize("norm,rows", [("pre", 5), ("post", 4), ("none", 3)])
def test_activation_means_follow_the_layernorm_inputs(norm, rows):
  cfg, model = small_model(**{"model.norm": norm})
  toks = tokens(cfg)
  means = sub.activation_means(model, toks)
  assert means["ln_inputs"].shape == (rows, 32)
  assert set(means) == {"ln_inputs", "mlp_activation.0", "mlp_activation.1"}
  assert means["mlp_activation.0"].shape == (128,)
  stream = np.asarray(model.embed_tokens(toks), np.float64).reshape(-1, 32).mean(axis=0)
  if norm == "pre":
    np.testing.assert_allclose(means["ln_inputs"][0], stream, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="tokens_BxL"):
    sub.activation_means(model, jnp.zeros((4,), jnp.int32))


def test_head_circuits_are_gauge_invariant():
  cfg, model = small_model()
  circuits = sub.head_circuits(model)
  assert len(circuits) == 2 * 2 * 2 and all(c.shape == (32, 32) for c in circuits.values())
  params = nnx.state(model, nnx.Param)
  blk = params["blocks"][0]["attn"]
  heads, k = blk["query"]["kernel"][...].shape[1:]
  a = jax.random.normal(jax.random.key(1), (heads, k, k)) + 3.0 * jnp.eye(k)[None]
  b = jax.random.normal(jax.random.key(2), (heads, k, k)) + 3.0 * jnp.eye(k)[None]
  blk["query"]["kernel"][...] = jnp.einsum("dhk,hkl->dhl", blk["query"]["kernel"][...], a)
  blk["key"]["kernel"][...] = jnp.einsum("dhk,hlk->dhl", blk["key"]["kernel"][...], jnp.linalg.inv(a))
  blk["value"]["kernel"][...] = jnp.einsum("dhk,hkl->dhl", blk["value"]["kernel"][...], b)
  blk["out"]["kernel"][...] = jnp.einsum("hkl,hld->hkd", jnp.linalg.inv(b), blk["out"]["kernel"][...])
  moved = sub.head_circuits(params)
  for name in circuits:
    scale = float(jnp.max(jnp.abs(circuits[name])))  # float32 round-off of the products and of inv(a), inv(b)
    np.testing.assert_allclose(moved[name], circuits[name], atol=1e-3 * scale)
  assert not np.allclose(weight_matrices(params)["blocks.0.attn.query.kernel"],
                         weight_matrices(nnx.state(small_model()[1], nnx.Param))["blocks.0.attn.query.kernel"])


def test_matrix_subspaces_fit_each_side_and_planted_directions_are_attributed():
  cfg, model = small_model()
  toks = tokens(cfg)
  params = nnx.state(model, nnx.Param)
  mats = weight_matrices(params)
  # Plant a Fourier mode over token ids in the embedding and the mean MLP activation in mlp_out's read side, strong
  # enough (theta = 6 in BBP units) that the top singular vectors overlap them by >= 0.97 (spectral.bbp).
  four = attribution.fourier_basis(24, 3)[:, 0]
  dirs = np.linalg.qr(np.random.default_rng(0).standard_normal((32, 2)))[0]
  emb = params["embed"]["embedding"]
  emb[...] = emb[...] + 6.0 * jnp.asarray(np.outer(four, dirs[:, 0]), jnp.float32)
  act = sub.activation_means(model, toks)["mlp_activation.1"]
  out = params["blocks"][1]["mlp_out"]["kernel"]
  out[...] = out[...] + 6.0 * jnp.asarray(np.outer(act / np.linalg.norm(act), dirs[:, 1]), jnp.float32)
  model = nnx.merge(train.graphdef_of(cfg), params)
  spaces = sub.matrix_subspaces(model, toks, teacher={"teacher": dirs})
  assert set(spaces) == set(weight_matrices(params)) | set(sub.head_circuits(model))
  for name, (left, right) in spaces.items():
    shape = mats[name].shape if name in mats else (32, 32)
    assert all(np.shape(b)[0] == shape[0] for b in left.values()), name
    assert all(np.shape(b)[0] == shape[1] for b in right.values()), name
  assert {"dc", "positions", "tokens", "teacher"} <= set(spaces["blocks.0.mlp_in.kernel"][0])
  assert set(spaces["blocks.0.mlp_in.kernel"][1]) == {"dc"}
  assert "fourier:3" in spaces["embed.embedding"][0]

  for name, side, expected in (("embed.embedding", "left", "fourier:3"), ("blocks.1.mlp_out.kernel", "left", "dc")):
    w = np.asarray(weight_matrices(nnx.state(model, nnx.Param))[name])
    res = structure.structure_rank(w, seed=0)
    assert res.rank >= 1, name
    left, right = spaces[name]
    found = attribution.attribute_components(res.u[:, :1], res.v[:, :1], left, right, threshold=0.9)[0]
    assert found[side][0] == expected and found[side][1] >= 0.9, (name, found)
    assert attribution.subspace_overlaps(res.v[:, :1], {"teacher": dirs})["teacher"][0] >= 0.9
