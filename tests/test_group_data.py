"""The ``group`` data kind: its table is the group law of a non-abelian group, its split is fixed by the task seed and
its held-out pairs are disjoint from training and answered cleanly."""

import itertools
import math

import jax
import numpy as np
import pytest

from models.config import DataConfig, group_order
from models.data import group_elements, group_split, group_table, make_task, modular_split, symbol_entropy


@pytest.mark.parametrize("name", ["S3", "S4", "D5", "D12"])
def test_table_is_a_group_law(name):
  t = group_table(name)
  n = group_order(name)
  assert t.shape == (n, n) and t.min() == 0 and t.max() == n - 1
  # Latin square: every row and column a permutation of the elements (cancellation)
  assert all(sorted(row) == list(range(n)) for row in t) and all(sorted(col) == list(range(n)) for col in t.T)
  # associativity (a b) c = a (b c) on all |G|^3 triples
  left = t[t[:, :, None], np.arange(n)[None, None, :]]  # [a, b, c] -> (a b) c
  right = t[np.arange(n)[:, None, None], t[None, :, :]]  # [a, b, c] -> a (b c)
  assert np.array_equal(left, right)
  # identity 0, two-sided inverses
  assert np.array_equal(t[0], np.arange(n)) and np.array_equal(t[:, 0], np.arange(n))
  inv = np.argmax(t == 0, axis=1)
  assert np.all(t[np.arange(n), inv] == 0) and np.all(t[inv, np.arange(n)] == 0)
  # not commutative
  assert np.any(t != t.T)
  # the table is the composition of the maps, b acting first
  perms = group_elements(name)
  for a, b in itertools.product(range(n), repeat=2):
    assert np.array_equal(perms[t[a, b]], perms[a][perms[b]])


def test_orders_and_dihedral_relations():
  assert [group_order(g) for g in ("S3", "S4", "S5", "D3", "D12", "D13")] == [6, 24, 120, 6, 24, 26]
  t, n = group_table("D7"), 7
  r, s = 1, n  # rotation by one vertex, the reflection x -> -x
  power = 0
  for _ in range(n):
    power = t[power, r]
  assert power == 0 and t[r, r] != 0 and t[s, s] == 0
  r_inv = np.argmax(t[r] == 0)
  assert t[t[s, r], s] == r_inv  # s r s = r^-1
  # an abelian table fails the commutativity check: S3 is the smallest non-abelian group, D3 is isomorphic to it
  assert np.sum(group_table("S3") != group_table("S3").T) == np.sum(group_table("D3") != group_table("D3").T) > 0


def _cfg(**kw):
  base = dict(kind="group", group="S4", vocab_size=26, seq_len=4, batch_size=512, train_fraction=0.4)
  return DataConfig(**(base | kw))


def test_split_fixed_by_seed_disjoint_and_complete():
  cfg = _cfg()
  tr, te = group_split(cfg)
  tr2, te2 = group_split(_cfg())
  assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
  assert tr.shape == (round(0.4 * 576), 5) and te.shape == (576 - round(0.4 * 576), 5)
  pairs = lambda x: {(a, b) for a, b in x[:, [0, 2]].tolist()}
  assert not pairs(tr) & pairs(te) and len(pairs(tr) | pairs(te)) == 576
  other, _ = group_split(_cfg(task_seed=1))
  assert pairs(other) != pairs(tr)  # another task seed, another split
  t = group_table("S4")
  for x in (tr, te):
    assert np.all(x[:, 1] == 24) and np.all(x[:, 3] == 25) and np.array_equal(x[:, 4], t[x[:, 0], x[:, 2]])
  with pytest.raises(ValueError, match="cfg.kind"):
    group_split(DataConfig(kind="modular", modulus=7, vocab_size=9, seq_len=4))
  with pytest.raises(ValueError, match="cfg.kind"):
    modular_split(cfg)


def test_task_batches_score_the_product_and_keep_held_out_clean():
  cfg = _cfg()
  task = make_task(cfg)
  t = group_table("S4")
  tok, w = task.train_batch(jax.random.PRNGKey(0), 0, 0.0)
  tok = np.asarray(tok)
  assert list(w) == [0, 0, 0, 1] and tok.shape == (512, 5)
  assert np.array_equal(tok[:, 4], t[tok[:, 0], tok[:, 2]])
  train_pairs = set(map(tuple, group_split(cfg)[0][:, [0, 2]].tolist()))
  assert set(map(tuple, tok[:, [0, 2]].tolist())) <= train_pairs
  held, _ = task.eval_batch(jax.random.PRNGKey(0), 0, 1.0)  # p = 1 on the training answers only
  held = np.asarray(held)
  assert not set(map(tuple, held[:, [0, 2]].tolist())) & train_pairs
  assert np.array_equal(held[:, 4], t[held[:, 0], held[:, 2]])
  noisy = np.asarray(task.train_batch(jax.random.PRNGKey(0), 0, 1.0)[0])
  assert np.mean(noisy[:, 4] == t[noisy[:, 0], noisy[:, 2]]) < 0.2 and noisy[:, 4].max() < 24
  assert task.entropy_rate(0.3) == (pytest.approx(symbol_entropy(0.3, 24)), True)
  assert task.entropy_rate(1.0)[0] == pytest.approx(math.log2(24))
  assert task.info == dict(train_pairs=230, test_pairs=346)


@pytest.mark.parametrize("kw, key", [(dict(group="A5"), "data.group"), (dict(group="S6"), "data.group"),
                                     (dict(group="D2"), "data.group"), (dict(group="S"), "data.group"),
                                     (dict(group=4), "data.group"), (dict(vocab_size=25), "data.vocab_size"),
                                     (dict(seq_len=5), "data.seq_len"), (dict(train_fraction=1.0),
                                                                         "data.train_fraction")])
def test_bad_config_names_the_key(kw, key):
  with pytest.raises(ValueError, match=key.replace(".", r"\.")):
    _cfg(**kw)
