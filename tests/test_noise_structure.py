"""Check 7 (noise_structure): the measurement path on planted updates with a known answer, and the verdict rule."""

import numpy as np
import pytest

from spectral.attribution import fourier_subspaces
from spectral.remainder import remainder_statistics
from spectral.structure import structure_rank_batch
from theory_checks import noise_structure as ns

D, HEADS, V, L = 48, 32, 16, 8


def _orthonormal(rng, n, k):
  return np.linalg.qr(rng.normal(size=(n, k)))[0]


@pytest.fixture(scope="module")
def residual():
  """A residual stream with disjoint named subspaces: dc (1), positions (L), tokens (V), and the rest (other)."""
  q = _orthonormal(np.random.default_rng(0), D, D)
  return dict(dc=q[:, :1], positions=q[:, 1:1 + L], tokens=q[:, 1 + L:1 + L + V]), q[:, 1 + L + V:]


def _planted(rng, left_dirs, right_dirs, strengths, shape, members=3):
  """``members`` updates ``dW = sqrt(N) sum_i s_i x_i y_i^T + G`` (G iid N(0, 1)) and their random inits."""
  n = max(shape)
  low = sum(s * np.outer(x, y) for s, x, y in zip(strengths, left_dirs.T, right_dirs.T))
  dw = np.stack([np.sqrt(n) * low + rng.normal(size=shape) for _ in range(members)])
  w0 = rng.normal(size=(members, *shape))
  return w0 + dw, w0


def test_kinds_group_the_ov_circuit_and_reject_unknown_names():
  assert ns.kind_of("blocks.1.attn.value.kernel") == ns.kind_of("blocks.0.attn.out.kernel") == "attn_ov"
  assert ns.kind_of("blocks.0.attn.query.kernel") == ns.kind_of("blocks.0.attn.key.kernel") == "attn_qk"
  assert [ns.kind_of(n) for n in ("embed.embedding", "pos_embed", "unembed.kernel")] == ["embed", "pos_embed",
                                                                                        "unembed"]
  with pytest.raises(ValueError, match="name"):
    ns.kind_of("blocks.0.ln_mlp.scale")


def test_planted_value_update_is_counted_by_attribution(residual):
  """dW of an attention value matrix (residual x heads) with one direction planted in each named subspace and one
  outside them all: the sign-flip rank finds four, attribution names dc, positional, token and other once each."""
  subs, rest = residual
  rng = np.random.default_rng(1)
  left = np.stack([subs["dc"][:, 0], subs["positions"][:, 2], subs["tokens"][:, 5], rest[:, 3]], axis=1)
  right = _orthonormal(rng, HEADS, 4)
  w, w0 = _planted(rng, left, right, [6.0, 5.0, 4.5, 4.0], (D, HEADS))
  results = structure_rank_batch(w, inits=w0, level=ns.LEVEL, seed=0)
  for i, res in enumerate(results):
    rem = remainder_statistics(w[i], res, init=w0[i], draws=ns.REMAINDER_DRAWS, seed=i)
    row = ns.matrix_row("attn_ov", res, subs, {}, rem)
    assert (row["rank"], row["dc"], row["positional"], row["token"], row["other"]) == (4, 1, 1, 1, 1), row
    assert row["learned"] == 2
    assert row["has_gap"]  # four planted spikes well above an iid bulk: a gap beyond every flip's


def test_planted_embedding_update_splits_dc_and_token_directions(residual):
  """An embedding update (vocab x residual): a shift common to every token (constant over the vocabulary) is DC,
  a token-dependent one is a token direction, whatever its residual side."""
  subs, rest = residual
  rng = np.random.default_rng(2)
  vocab = fourier_subspaces(V)
  token_dir = vocab["fourier:3"][:, :1] + 0.3 * vocab["fourier:5"][:, :1]
  left = np.concatenate([vocab["fourier:0"], token_dir / np.linalg.norm(token_dir)], axis=1)
  right = np.stack([rest[:, 0], rest[:, 1]], axis=1)
  w, w0 = _planted(rng, left, right, [5.0, 4.0], (V, D))
  for res in structure_rank_batch(w, inits=w0, level=ns.LEVEL, seed=0):
    row = ns.matrix_row("embed", res, vocab, subs)
    assert (row["rank"], row["dc"], row["token"], row["other"]) == (2, 1, 1, 0), row


def test_pure_noise_update_has_no_structure(residual):
  subs, _ = residual
  rng = np.random.default_rng(3)
  w0 = rng.normal(size=(3, D, HEADS))  # the planted tests' batch shape: one compiled structure test for all
  w = w0 + rng.normal(size=w0.shape)
  rows = [ns.matrix_row("attn_ov", r, subs, {}) for r in structure_rank_batch(w, inits=w0, level=ns.LEVEL, seed=0)]
  assert sum(r["rank"] for r in rows) <= 1  # family-wise level 1% per matrix


def test_categorise_validates_its_input():
  with pytest.raises(ValueError, match="kind"):
    ns.categorise("mlp", np.zeros((3, 1)), np.zeros((3, 1)), {}, {})
  with pytest.raises(ValueError, match="u, v"):
    ns.categorise("embed", np.ones((3, 2)), np.ones((4, 1)), {}, {})
  assert ns.categorise("pos_embed", np.zeros((3, 0)), np.zeros((4, 0)), {}, {}) == []


def test_flat_rank_limit():
  # 128 x 64 (the main job's unembedding): 8192 / (sqrt(128) + 8)^2 = 21.97
  assert ns.flat_rank_limit((128, 64)) == pytest.approx(21.97, abs=0.01)
  # a flat rank-r block below r* is seen, above it not: the power caveat of prediction (B), on planted matrices
  rng = np.random.default_rng(4)
  a, b = D, HEADS
  limit = ns.flat_rank_limit((a, b))  # 9.8
  ranks = (4, 20, 3)
  w = np.stack([np.sqrt(a) * 3.0 * _orthonormal(rng, a, r) @ _orthonormal(rng, b, r).T + 0.05 * rng.normal(size=(a, b))
                for r in ranks])
  seen = [res.rank for res in structure_rank_batch(w, level=ns.LEVEL, seed=0)]
  assert seen == [4, 0, 3] and 4 < limit < 20, (seen, limit)


# --- the verdict rule on member rows -------------------------------------------------------------------------------


def _row(member, seed, p, counts):
  """A member row with one matrix per kind; ``counts`` kind -> (dc, positional, token, other, has_gap)."""
  mats = {}
  for kind in ns.KINDS:
    dc, pos, tok, oth, gap = counts.get(kind, (0, 0, 0, 0, False))
    mats[f"m.{kind}"] = dict(kind=kind, rank=dc + pos + tok + oth, dc=dc, positional=pos, token=tok, other=oth,
                             learned=tok + oth, has_gap=gap, decay_exponent=None)
  return dict(member=member, seed_index=seed, noise_p=p, regime=f"p={p:g}", step=100, matrices=mats)


class _Run:
  """The few run-folder fields ``summarise`` reads."""

  def __init__(self, rows, accuracy):
    self.members = [dict(index=r["member"], entropy_rate_bits=4.0 * ns.math.log2(V) / 4) for r in rows]
    self.config = dict(data=dict(vocab_size=V))
    self.acc = accuracy

  def metric(self, name, member):
    return np.array([0, 100]), np.array([0.0, self.acc[member]])


def _rows(noise_learned=0, rule_unembed=V - 1, meso_gap=False, seeds=3):
  rows, acc, i = [], {}, 0
  for p in (1.0, 0.5, 0.0):
    for s in range(seeds):
      counts = {"mlp_out": (1, 0, 0, 0, False), "pos_embed": (0, 1, 0, 0, False)}
      if p == 1.0:
        counts["mlp_in"] = (0, 0, 0, noise_learned, False)
      if p == 0.0:
        counts["unembed"] = (0, 0, rule_unembed, 0, False)
      if p == 0.5:
        counts["attn_ov"] = (0, 0, 2, 3, meso_gap)
      rows.append(_row(i, s, p, counts))
      acc[i] = 1.0 if p == 0.0 else 0.5
      i += 1
  return rows, acc


def _judge(**kw):
  rows, acc = _rows(**kw)
  run = _Run(rows, acc)
  return ns.judge(ns.summarise(rows, run), rows, vocab_size=V)


def test_judge_passes_the_predicted_pattern_and_fails_each_violation():
  status, facts = _judge()
  assert status == "PASS", facts
  assert facts["b_unembed_excess_mean"] == V - 1 and facts["a_noise_learned_count"] == 0
  assert _judge(noise_learned=2)[0] == "FAIL"  # 6 learned directions at p = 1 > allowance 1 (21 tests at 1%)
  status, facts = _judge(rule_unembed=5)
  assert status == "FAIL" and not facts["b_pass"]
  status, facts = _judge(meso_gap=True)
  assert status == "FAIL" and facts["c_meso_gaps"] == 3 and not facts["c_pass"]


def test_judge_is_inconclusive_when_the_rule_was_not_learned():
  rows, acc = _rows()
  acc = {k: 0.3 for k in acc}
  assert ns.judge(ns.summarise(rows, _Run(rows, acc)), rows, vocab_size=V)[0] == "INCONCLUSIVE"


def test_excess_is_over_the_matched_seed():
  rows, acc = _rows(noise_learned=4)
  s = ns.summarise(rows, _Run(rows, acc))
  assert s["p=1"]["total_excess_mean"] == 0.0
  assert s["p=0"]["total_excess_mean"] == V - 1 - 4
  assert s["p=0.5"]["attn_ov_excess_mean"] == 5


def test_ranks_at_the_cap_are_counted():
  rows, acc = _rows()
  for r in rows:
    for m in r["matrices"].values():
      m["rank_cap"] = 1  # every matrix with a structured direction is at a cap of 1
  s = ns.summarise(rows, _Run(rows, acc))
  assert s["p=1"]["rank_capped"] == 3 * 2  # mlp_out and pos_embed carry one direction in each of 3 seeds
  assert s["p=0"]["rank_capped"] == 3 * 3  # and the unembedding at p = 0
  rows, acc = _rows()
  assert ns.summarise(rows, _Run(rows, acc))["p=1"]["rank_capped"] == 0  # rows without a cap: nothing counted


def test_spike_dynamics_detects_a_transient():
  def at(step, meso):
    return [_row(0, 0, 1.0, {}), _row(1, 1, 1.0, {}), _row(2, 0, 0.5, {"mlp_in": (0, 0, 0, meso[0], False)}),
            _row(3, 1, 0.5, {"mlp_in": (0, 0, 0, meso[1], False)})]
  rising_falling = {30: at(30, (2, 3)), 100: at(100, (9, 10)), 300: at(300, (4, 4))}
  d = ns.spike_dynamics(rising_falling, "p=0.5")
  assert d["rises_then_falls"] and d["peak_step"] == 100 and d["learned_mean"] == [2.5, 9.5, 4.0]
  monotone = {30: at(30, (2, 3)), 100: at(100, (5, 6)), 300: at(300, (9, 9))}
  assert not ns.spike_dynamics(monotone, "p=0.5")["rises_then_falls"]
