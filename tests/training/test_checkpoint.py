import json
import random

import numpy as np
import pytest
import torch

from picard_ad.errors import CorruptFileError, InputError
from picard_ad.training.checkpoint import (
    Networks,
    build_networks,
    checkpoint_dir,
    checkpoint_info,
    load_generator,
    load_local_critic,
    load_networks,
    load_training_state,
    read_checkpoint_info,
    rng_states,
    set_rng_states,
    write_checkpoint,
)
from picard_ad.training.config import TrainConfig

CONFIG = TrainConfig(cnum=4, patch_size=32, hole_size=16, hole_max_shrink=2)


def _trained_networks() -> tuple[Networks, dict[str, torch.optim.Optimizer]]:
    torch.manual_seed(0)
    networks = build_networks(CONFIG)
    optimizers = {
        "generator": torch.optim.Adam(networks.generator.parameters(), lr=1e-3, betas=(0.5, 0.9)),
        "critics": torch.optim.Adam(
            list(networks.local_critic.parameters()) + list(networks.global_critic.parameters()), lr=1e-3
        ),
    }
    image, mask = torch.rand(2, 1, 32, 32) * 2 - 1, torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1
    for _ in range(2):
        stage1, stage2 = networks.generator(image, mask)
        score = networks.local_critic(stage2[:, :, 8:24, 8:24]).mean() + networks.global_critic(stage1).mean()
        for optimizer in optimizers.values():
            optimizer.zero_grad()
        score.backward()
        for optimizer in optimizers.values():
            optimizer.step()
    return networks, optimizers


def _assert_same_state(left: torch.nn.Module, right: torch.nn.Module) -> None:
    a, b = left.state_dict(), right.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_round_trip_restores_weights_optimizers_and_describes_the_network(tmp_path):
    networks, optimizers = _trained_networks()
    info = checkpoint_info(CONFIG, step=12, data_fingerprint="abc")
    write_checkpoint(tmp_path / "last", networks, info, optimizers, {"step": 12, "note": [1, 2]})
    written = json.loads((tmp_path / "last" / "config.json").read_text())
    assert (written["cnum"], written["in_channels"], written["patch_size"], written["hole_size"]) == (4, 1, 32, 16)
    assert written["step"] == 12 and written["data_fingerprint"] == "abc" and "package_version" in written
    assert {p.name for p in (tmp_path / "last").iterdir()} == {
        "config.json", "generator.safetensors", "local_critic.safetensors", "global_critic.safetensors",
        "optimizers.safetensors", "trainer_state.json",
    }  # fmt: skip

    torch.manual_seed(1)
    fresh = build_networks(CONFIG)
    fresh_optimizers = {
        "generator": torch.optim.Adam(fresh.generator.parameters(), lr=5.0),
        "critics": torch.optim.Adam(
            list(fresh.local_critic.parameters()) + list(fresh.global_critic.parameters()), lr=5.0
        ),
    }
    state = load_training_state(tmp_path / "last", fresh, fresh_optimizers)
    assert state["step"] == 12 and state["note"] == [1, 2]
    for (_, module), (_, restored) in zip(networks.items(), fresh.items()):
        _assert_same_state(module, restored)
    for name in optimizers:
        original, restored = optimizers[name].state_dict(), fresh_optimizers[name].state_dict()
        assert restored["param_groups"][0]["lr"] == 1e-3
        assert restored["param_groups"][0]["betas"] == original["param_groups"][0]["betas"]
        for index, values in original["state"].items():
            for key, value in values.items():
                assert torch.equal(restored["state"][index][key], value)

    generator, config = load_generator(tmp_path)
    assert config == CONFIG and not generator.training
    _assert_same_state(generator, networks.generator)
    critic, _ = load_local_critic(tmp_path / "last")
    _assert_same_state(critic, networks.local_critic)
    loaded, _ = load_networks(tmp_path)
    _assert_same_state(loaded.global_critic, networks.global_critic)


def test_rewriting_replaces_the_checkpoint_and_an_interrupted_swap_is_recovered(tmp_path):
    networks, _ = _trained_networks()
    write_checkpoint(tmp_path / "best", networks, checkpoint_info(CONFIG, 1, "x"))
    write_checkpoint(tmp_path / "best", networks, checkpoint_info(CONFIG, 2, "x"))
    assert read_checkpoint_info(tmp_path, "best")["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no temporaries left behind
    (tmp_path / "best").rename(tmp_path / ".best.previous")  # killed between the two renames
    assert checkpoint_dir(tmp_path, "best") == tmp_path / ".best.previous"
    assert load_generator(tmp_path, "best")[1] == CONFIG


def test_missing_and_corrupt_checkpoints_give_errors_naming_the_file(tmp_path):
    with pytest.raises(InputError, match="no 'last' checkpoint"):
        load_generator(tmp_path)
    with pytest.raises(InputError, match="no such run folder"):
        load_generator(tmp_path / "nowhere")
    networks, _ = _trained_networks()
    write_checkpoint(tmp_path / "last", networks, checkpoint_info(CONFIG, 1, "x"))
    weights = tmp_path / "last" / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(CorruptFileError, match="safetensors") as info:
        load_generator(tmp_path)
    assert "generator.safetensors" in str(info.value)
    weights.unlink()
    with pytest.raises(InputError, match="generator.safetensors"):
        load_generator(tmp_path / "last")

    write_checkpoint(tmp_path / "last", networks, checkpoint_info(CONFIG, 1, "x"))
    info_path = tmp_path / "last" / "config.json"
    info_path.write_text("{not json")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        load_generator(tmp_path)

    bigger = dict(checkpoint_info(CONFIG, 1, "x"))
    bigger["train_config"] = {**bigger["train_config"], "cnum": 8}  # weights no longer fit the network
    info_path.write_text(json.dumps(bigger))
    with pytest.raises(CorruptFileError, match="do not fit"):
        load_generator(tmp_path)


def test_rng_states_round_trip_through_json():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    states = json.loads(json.dumps(rng_states()))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_states(states)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
