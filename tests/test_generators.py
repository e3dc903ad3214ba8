"""Every data kind: shapes, scored positions, the rule it states, and its entropy rate against the analytic value."""

import math

import jax
import numpy as np
import pytest

from models.config import DataConfig
from models.data import dyck_entropy_rate, make_task, symbol_entropy

KEY = jax.random.PRNGKey(0)


def _batch(cfg, p=0.0, train=True):
  task = make_task(cfg)
  tok, w = (task.train_batch if train else task.eval_batch)(KEY, 3, p)
  tok = np.asarray(tok)
  assert tok.shape == (cfg.batch_size, cfg.seq_len + 1) and tok.dtype == np.int32
  assert tok.min() >= 0 and tok.max() < cfg.vocab_size
  return task, tok, w


def _empirical_conditional_entropy(prev, nxt):
  """Plug-in H(next | prev) in bits from paired samples."""
  joint = {}
  for a, b in zip(prev.ravel(), nxt.ravel()):
    joint.setdefault(a, []).append(b)
  n = prev.size
  h = 0.0
  for bs in joint.values():
    _, counts = np.unique(bs, return_counts=True)
    pr = counts / counts.sum()
    h -= len(bs) / n * np.sum(pr * np.log2(pr))
  return h


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_markov_chain_entropy_rate_is_exact(p):
  cfg = DataConfig(kind="markov", vocab_size=8, seq_len=64, batch_size=256)
  task, tok, w = _batch(cfg, p)
  bits, exact = task.entropy_rate(p)
  assert exact and bits == pytest.approx(symbol_entropy(p, 8))
  assert _empirical_conditional_entropy(tok[:, :-1], tok[:, 1:]) == pytest.approx(bits, abs=0.03)


def test_noise_entropy_and_uniformity():
  cfg = DataConfig(kind="noise", vocab_size=8, seq_len=64, batch_size=256)
  task, tok, _ = _batch(cfg)
  assert task.entropy_rate(0.7) == (3.0, True)
  assert _empirical_conditional_entropy(tok[:, :-1], tok[:, 1:]) == pytest.approx(3.0, abs=0.03)


@pytest.mark.parametrize("kind", ["modular", "random_labels"])
def test_modular_arithmetic_split_and_answers(kind):
  cfg = DataConfig(kind=kind, modulus=7, vocab_size=9, seq_len=4, batch_size=512, modular_op="add")
  task, tok, w = _batch(cfg)
  assert list(w) == [0, 0, 0, 1] and np.all(tok[:, 1] == 7) and np.all(tok[:, 3] == 8)
  _, test_tok, _ = _batch(cfg, train=False)
  train_pairs = {(a, b) for a, b in tok[:, [0, 2]]}
  test_pairs = {(a, b) for a, b in test_tok[:, [0, 2]]}
  assert not train_pairs & test_pairs and task.info["train_pairs"] == round(0.3 * 49)
  correct = np.mean(tok[:, 4] == (tok[:, 0] + tok[:, 2]) % 7)
  if kind == "modular":
    assert correct == 1.0 and np.all(test_tok[:, 4] == (test_tok[:, 0] + test_tok[:, 2]) % 7)
  else:
    assert correct < 0.6  # shuffled answers, a fixed function of the pair
    table = {}
    for a, b, c in tok[:, [0, 2, 4]]:
      assert table.setdefault((a, b), c) == c
  noisy = _batch(cfg, p=1.0)[1]
  assert task.entropy_rate(1.0) == (pytest.approx(math.log2(7)), True) and noisy[:, 4].max() < 7


@pytest.mark.parametrize("kind", ["copy", "reverse"])
def test_copy_and_reverse(kind):
  cfg = DataConfig(kind=kind, vocab_size=10, seq_len=8, batch_size=16)
  task, tok, w = _batch(cfg)
  x, y = tok[:, :4], tok[:, 5:]
  np.testing.assert_array_equal(y, x if kind == "copy" else x[:, ::-1])
  assert np.all(tok[:, 4] == 9) and list(w) == [0, 0, 0, 0, 1, 1, 1, 1]
  assert task.entropy_rate(0.0) == (0.0, True)


def test_dyck_is_balanced_and_its_entropy_matches_the_generator():
  cfg = DataConfig(kind="dyck", vocab_size=4, seq_len=63, batch_size=512, dyck_types=2, dyck_max_depth=4)
  task, tok, _ = _batch(cfg)
  for row in tok[:20]:
    stack = []
    for t in row:
      if t % 2 == 0:
        stack.append(t // 2)
      else:
        assert stack and stack.pop() == t // 2
      assert len(stack) <= 4
  # Monte Carlo of the conditional entropy: depth is a function of the prefix, so H(x_t | prefix) = E h(depth).
  depth = np.cumsum(np.where(tok % 2 == 0, 1, -1), axis=1)[:, :-1]
  h = np.where(depth == 0, 1.0, np.where(depth == 4, 0.0, 1.5))
  bits, exact = task.entropy_rate(0.0)
  assert exact and bits == pytest.approx(dyck_entropy_rate(2, 4, 63))
  assert h.mean() == pytest.approx(bits, abs=0.02)


def test_grammar_temperature_orders_entropy():
  rates = [make_task(DataConfig(kind="grammar", vocab_size=16, seq_len=16, batch_size=8, grammar_temperature=t))
           .entropy_rate(0.0)[0] for t in (0.2, 5.0)]
  assert rates[0] < rates[1]
  _batch(DataConfig(kind="grammar", vocab_size=16, seq_len=16, batch_size=8))


@pytest.mark.parametrize("source, level", [("pydoc", "byte"), ("stdlib", "char")])
def test_text_sources_and_heldout_split(source, level):
  cfg = DataConfig(kind="text", text_source=source, text_level=level, vocab_size=256 if level == "byte" else 1024,
                   seq_len=32, batch_size=4)
  task, tok, _ = _batch(cfg)
  _, held, _ = _batch(cfg, train=False)
  assert not np.array_equal(tok, held)
  bits, exact = task.entropy_rate(0.0)
  assert not exact and 1.0 < bits < 4.0  # LZMA on English/Python: about 2-3 bits per byte


def test_user_text_file_and_bad_data_configs(tmp_path):
  f = tmp_path / "t.txt"
  f.write_text("abc" * 200)
  task, tok, _ = _batch(DataConfig(kind="text", text_source=str(f), text_level="char", vocab_size=3, seq_len=8,
                                   batch_size=2))
  assert set(np.unique(tok)) <= {0, 1, 2}
  with pytest.raises(ValueError, match="data.vocab_size"):
    make_task(DataConfig(kind="text", text_source="pydoc", vocab_size=64))
  with pytest.raises(ValueError, match="data.text_source"):
    make_task(DataConfig(kind="text", text_source=str(tmp_path / "missing.txt"), vocab_size=256))
  with pytest.raises(ValueError, match="data.seq_len"):
    DataConfig(kind="modular", vocab_size=115)
  with pytest.raises(ValueError, match="data.vocab_size"):
    DataConfig(kind="modular", modulus=113, seq_len=4, vocab_size=100)
  with pytest.raises(ValueError, match="data.kind"):
    DataConfig(kind="wikipedia")
  with pytest.raises(ValueError, match=r"ensemble.members\[0\].noise_p: expected a probability"):
    from models.config import config_from_dict
    config_from_dict({"ensemble": {"members": [{"noise_p": 1.5}]}})
