"""Configs: round trip, unknown keys and impossible values rejected with the offending key named."""

import json

import pytest

from models.config import RunConfig, TrackingConfig, TrainConfig, config_from_dict, load_config, with_overrides


def test_round_trip_through_json(tmp_path):
  cfg = with_overrides(RunConfig(), {"train.steps": 50, "train.snapshot_steps": [0, 50]})
  path = tmp_path / "c.json"
  path.write_text(json.dumps(cfg.to_dict()))
  assert load_config(path) == cfg


def test_toml(tmp_path):
  path = tmp_path / "c.toml"
  path.write_text('name = "x"\n[train]\nsteps = 20\nsnapshot_steps = [0, 20]\n[data]\nnoise_p = [1, 0]\n'
                  'regime_names = ["noise", "structured"]\n')
  cfg = load_config(path)
  assert cfg.train.steps == 20 and cfg.data.noise_p == (1.0, 0.0) and cfg.num_members == 6


@pytest.mark.parametrize("raw, match", [
    ({"trian": {}}, r"unknown key\(s\) \['trian'\]"),
    ({"train": {"stepz": 3}}, r"train: unknown key\(s\) \['stepz'\]"),
    ({"data": {"noise_p": [1.5], "regime_names": ["x"]}}, "data.noise_p: expected probabilities in"),
    ({"model": {"d_model": 30, "num_heads": 4}}, "model.num_heads: 4 does not divide"),
    ({"train": {"steps": 10, "snapshot_steps": [0, 20]}}, r"train.snapshot_steps: \[20\] outside"),
    ({"train": {"ensemble_strategy": "pmap"}}, "train.ensemble_strategy"),
    ({"model": {"activation": "swish"}}, "model.activation"),
    # Checks across sections (RunConfig.__post_init__): both must run, not only the last one defined.
    ({"tracking": {"jacobian_position": 1000}}, r"tracking.jacobian_position: expected in \[-32, 32\)"),
    ({"data": {"seq_len": 8}, "tracking": {"jacobian_position": -9}}, "data.seq_len = 8"),
    ({"train": {"data_parallel": 5}}, "train.data_parallel: 5 does not divide data.batch_size = 32"),
])
def test_bad_configs_name_the_key(raw, match):
  with pytest.raises(ValueError, match=match):
    config_from_dict(raw)


def test_wrong_types_and_overrides():
  with pytest.raises(TypeError, match="train.steps: expected int"):
    config_from_dict({"train": {"steps": "many"}})
  with pytest.raises(ValueError, match="override 'train.lr': unknown config key 'lr'"):
    with_overrides(RunConfig(), {"train.lr": 0.1})


def test_run_config_cross_checks_accept_the_edges():
  assert RunConfig(tracking=TrackingConfig(jacobian_position=31)).tracking.jacobian_position == 31
  assert RunConfig(tracking=TrackingConfig(jacobian_position=-32)).tracking.jacobian_position == -32
  assert RunConfig(train=TrainConfig(data_parallel=4)).train.data_parallel == 4
