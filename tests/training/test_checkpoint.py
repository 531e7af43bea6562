import json
import random

import numpy as np
import pytest
import torch

from picard_ad.errors import CorruptFileError, InputError
from picard_ad.methods import load_method
from picard_ad.methods.picard import PicardTrainConfig, build_networks
from picard_ad.training.checkpoint import (
    checkpoint_dir,
    config_from_info,
    load_network_weights,
    load_training_state,
    read_checkpoint_info,
    rng_states,
    set_rng_states,
    write_checkpoint,
)
from picard_ad.training.loop import checkpoint_info

CONFIG = PicardTrainConfig(cnum=4, patch_size=32, hole_size=16, hole_max_shrink=2)


def _info(step: int) -> dict:
    return checkpoint_info("picard", CONFIG, step, "abc", {"cnum": CONFIG.cnum}, {"val_l1": 0.5})


def _trained_networks() -> tuple[dict[str, torch.nn.Module], dict[str, torch.optim.Optimizer]]:
    torch.manual_seed(0)
    networks = build_networks(CONFIG)
    generator, local_critic, global_critic = networks.values()
    optimizers = {
        "generator": torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.9)),
        "critics": torch.optim.Adam(list(local_critic.parameters()) + list(global_critic.parameters()), lr=1e-3),
    }
    image, mask = torch.rand(2, 1, 32, 32) * 2 - 1, torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1
    for _ in range(2):
        stage1, stage2 = generator(image, mask)
        score = local_critic(stage2[:, :, 8:24, 8:24]).mean() + global_critic(stage1).mean()
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
    write_checkpoint(tmp_path / "last", networks, _info(12), optimizers, {"step": 12, "note": [1, 2]})
    written = json.loads((tmp_path / "last" / "config.json").read_text())
    assert (written["format"], written["method"], written["cnum"], written["val_l1"]) == (
        "picard-ad/checkpoint", "picard", 4, 0.5,
    )  # fmt: skip
    assert written["step"] == 12 and written["data_fingerprint"] == "abc" and "package_version" in written
    assert config_from_info(written, PicardTrainConfig, tmp_path) == CONFIG
    assert {p.name for p in (tmp_path / "last").iterdir()} == {
        "config.json", "generator.safetensors", "local_critic.safetensors", "global_critic.safetensors",
        "optimizers.safetensors", "trainer_state.json",
    }  # fmt: skip

    torch.manual_seed(1)
    fresh = build_networks(CONFIG)
    fresh_optimizers = {
        "generator": torch.optim.Adam(fresh["generator"].parameters(), lr=5.0),
        "critics": torch.optim.Adam(
            list(fresh["local_critic"].parameters()) + list(fresh["global_critic"].parameters()), lr=5.0
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

    picard = load_method(tmp_path, device="cpu")  # the method loads the networks it scores with
    assert picard.train_config == CONFIG
    _assert_same_state(picard.networks["generator"], networks["generator"])
    _assert_same_state(picard.networks["local_critic"], networks["local_critic"])


def test_rewriting_replaces_the_checkpoint_and_an_interrupted_swap_is_recovered(tmp_path):
    networks, _ = _trained_networks()
    write_checkpoint(tmp_path / "best", networks, _info(1))
    write_checkpoint(tmp_path / "best", networks, _info(2))
    assert read_checkpoint_info(tmp_path, "best")["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no temporaries left behind
    (tmp_path / "best").rename(tmp_path / ".best.previous")  # killed between the two renames
    assert checkpoint_dir(tmp_path, "best") == tmp_path / ".best.previous"
    assert read_checkpoint_info(tmp_path, "best")["step"] == 2


def test_missing_and_corrupt_checkpoints_give_errors_naming_the_file(tmp_path):
    with pytest.raises(InputError, match="holds no fitted method"):
        load_method(tmp_path)
    with pytest.raises(InputError, match="no such run folder"):
        load_method(tmp_path / "nowhere")
    networks, _ = _trained_networks()
    write_checkpoint(tmp_path / "last", networks, _info(1))
    weights = tmp_path / "last" / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(CorruptFileError, match="safetensors") as info:
        load_method(tmp_path)
    assert "generator.safetensors" in str(info.value)
    weights.unlink()
    with pytest.raises(InputError, match="generator.safetensors"):
        load_method(tmp_path / "last")

    write_checkpoint(tmp_path / "last", networks, _info(1))
    info_path = tmp_path / "last" / "config.json"
    info_path.write_text("{not json")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        load_method(tmp_path)

    bigger = dict(_info(1))
    bigger["train_config"] = {**bigger["train_config"], "cnum": 8}  # weights no longer fit the network
    info_path.write_text(json.dumps(bigger))
    with pytest.raises(CorruptFileError, match="do not fit"):
        load_method(tmp_path)
    info_path.write_text(json.dumps({**bigger, "format_version": 9}))
    with pytest.raises(CorruptFileError, match="version 9 is not supported"):
        read_checkpoint_info(tmp_path)


def test_a_checkpoint_of_an_earlier_picard_ad_still_loads(tmp_path):
    networks, _ = _trained_networks()
    legacy = {k: v for k, v in _info(3).items() if k != "method"}
    write_checkpoint(tmp_path / "last", networks, {**legacy, "format": "picard-ad/inpainter"})
    assert read_checkpoint_info(tmp_path)["method"] == "picard"
    picard = load_method(tmp_path, device="cpu")
    _assert_same_state(picard.networks["generator"], networks["generator"])
    with pytest.raises(CorruptFileError, match="not a picard-ad checkpoint"):
        write_checkpoint(tmp_path / "last", networks, {**legacy, "format": "somebody-else"})
        read_checkpoint_info(tmp_path)


def test_network_weights_that_do_not_fit_are_refused(tmp_path):
    networks, _ = _trained_networks()
    write_checkpoint(tmp_path / "last", networks, _info(1))
    with pytest.raises(CorruptFileError, match="do not fit"):
        load_network_weights(torch.nn.Linear(2, 2), tmp_path / "last" / "generator.safetensors")


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
