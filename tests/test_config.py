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
    # A misspelt section is named itself (never an empty location), with the valid sections and the closest one.
    ({"trian": {}}, r"^trian: expected a section or key of a run config \(data, ensemble, .*did you mean 'train'"),
    ({"train": {"stepz": 3}}, r"^train.stepz: expected a key of section train \(.*did you mean 'train.steps'"),
    ({"data": {"noise_p": [1.5], "regime_names": ["x"]}}, "data.noise_p: expected probabilities in"),
    ({"model": {"d_model": 30, "num_heads": 4}}, "model.num_heads: 4 does not divide"),
    ({"train": {"steps": 10, "snapshot_steps": [0, 20]}}, r"train.snapshot_steps: expected steps in \[0, "
     r"train.steps = 10\], got \[20\]; drop them or raise train.steps"),
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
  with pytest.raises(ValueError, match=r"^train.lr: expected a key of section train .*got an unknown key"):
    with_overrides(RunConfig(), {"train.lr": 0.1})
  with pytest.raises(ValueError, match=r"^trian: expected a section .*did you mean 'train'"):
    with_overrides(RunConfig(), {"trian.steps": 1})
  with pytest.raises(TypeError, match=r"data.noise_p: expected a list, got '0,5,20'; .*--set data.noise_p=\[0,5,20\]"):
    with_overrides(RunConfig(), {"data.noise_p": "0,5,20"})


def test_steps_alone_cuts_the_default_snapshot_schedule_and_keeps_the_last_step():
  assert with_overrides(RunConfig(), {"train.steps": 100}).train.snapshot_steps == (0, 10, 30, 100)
  assert with_overrides(RunConfig(), {"train.steps": 50}).train.snapshot_steps == (0, 10, 30, 50)
  assert with_overrides(RunConfig(), {"train.steps": 1000}).train.snapshot_steps == (0, 10, 30, 100, 300, 600, 1000)
  assert RunConfig().train.snapshot_steps == (0, 10, 30, 100, 300, 600)
  # An explicit schedule is the user's: kept as given, and one beyond train.steps is still an error.
  assert with_overrides(RunConfig(), {"train.steps": 100, "train.snapshot_steps": [0, 7]}).train.snapshot_steps == (0, 7)
  # The resolved schedule round-trips through config.json.
  cfg = with_overrides(RunConfig(), {"train.steps": 100})
  assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_overriding_steps_keeps_the_last_step_snapshotted():
  tiny = with_overrides(RunConfig(), {"train.steps": 20, "train.snapshot_steps": [0, 5, 20]})
  assert with_overrides(tiny, {"train.steps": 100}).train.snapshot_steps == (0, 5, 20, 100)
  assert with_overrides(tiny, {"train.steps": 10}).train.snapshot_steps == (0, 5, 10)
  odd = with_overrides(RunConfig(), {"train.steps": 20, "train.snapshot_steps": [0, 7]})
  assert with_overrides(odd, {"train.steps": 30}).train.snapshot_steps == (0, 7)  # not ending at the last step


def test_toml_with_steps_only(tmp_path):
  path = tmp_path / "c.toml"
  path.write_text("[train]\nsteps = 100\n")
  assert load_config(path).train.snapshot_steps == (0, 10, 30, 100)


def test_every_config_key_has_a_meaning_and_the_listing_loads_back(tmp_path):
  from models.config_reference import config_keys, config_toml

  keys = config_keys()
  assert len(keys) > 50 and all(k.meaning for k in keys), [k.key for k in keys if not k.meaning]
  path = tmp_path / "default.toml"
  path.write_text(config_toml(header="x"))
  assert load_config(path) == RunConfig()


def test_run_config_cross_checks_accept_the_edges():
  assert RunConfig(tracking=TrackingConfig(jacobian_position=31)).tracking.jacobian_position == 31
  assert RunConfig(tracking=TrackingConfig(jacobian_position=-32)).tracking.jacobian_position == -32
  assert RunConfig(train=TrainConfig(data_parallel=4)).train.data_parallel == 4
