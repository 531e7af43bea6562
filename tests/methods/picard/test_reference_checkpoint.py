"""Converting the reference implementation's checkpoints: round trips, mismatches and unsafe files."""

from __future__ import annotations

import pytest
import torch

from picard_ad.errors import CorruptFileError, InputError
from picard_ad.methods.picard import GlobalCritic, InpaintingGenerator, LocalCritic
from picard_ad.methods.picard.reference_checkpoint import convert_reference_checkpoint, model_kwargs


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return InpaintingGenerator(in_channels=1, cnum=8), LocalCritic(cnum=8), GlobalCritic(cnum=8)


def _assert_same(state, module):
    reference = module.state_dict()
    assert list(state) == list(reference)
    assert all(torch.equal(state[key], reference[key]) for key in reference)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_round_trip_in_the_reference_layout(tmp_path, models, prefix):
    generator, local, global_ = models
    gen_path, dis_path = tmp_path / "gen_00130000.pt", tmp_path / "dis_00130000.pt"
    torch.save({prefix + key: value for key, value in generator.state_dict().items()}, gen_path)
    critics = {"localD": local.state_dict(), "globalD": global_.state_dict()}
    torch.save({name: {prefix + k: v for k, v in state.items()} for name, state in critics.items()}, dis_path)

    converted = convert_reference_checkpoint(gen_path, dis_path)

    assert set(converted) == {"generator", "local_critic", "global_critic"}
    for (name, state), module in zip(converted.items(), models):
        _assert_same(state, module)
        rebuilt = type(module)(**model_kwargs(name, state))
        rebuilt.load_state_dict(state)
    assert model_kwargs("generator", converted["generator"]) == {"in_channels": 1, "cnum": 8}
    assert model_kwargs("local_critic", converted["local_critic"]) == {"in_channels": 1, "cnum": 8, "input_size": 128}
    assert convert_reference_checkpoint(gen_path).keys() == {"generator"}


def test_colour_generator_is_recognised(tmp_path):
    path = tmp_path / "gen.pt"
    torch.save(InpaintingGenerator(in_channels=3, cnum=4).state_dict(), path)
    state = convert_reference_checkpoint(path)["generator"]
    assert model_kwargs("generator", state) == {"in_channels": 3, "cnum": 4}


def test_names_the_first_mismatching_key(tmp_path, models):
    generator = models[0]
    state = generator.state_dict()
    path = tmp_path / "gen_bad_shape.pt"
    wrong = dict(state)
    wrong["fine_generator.allconv11.conv.weight"] = torch.zeros(32, 16, 3, 3)
    torch.save(wrong, path)
    with pytest.raises(InputError, match=r"gen_bad_shape\.pt: generator: key 'fine_generator\.allconv11\.conv\.weight' "
                                         r"has shape \(32, 16, 3, 3\), expected \(32, 64, 3, 3\)"):
        convert_reference_checkpoint(path)

    missing = {k: v for k, v in state.items() if k != "fine_generator.pmconv9.conv.bias"}
    torch.save(missing, path)
    with pytest.raises(InputError, match="missing key 'fine_generator.pmconv9.conv.bias'"):
        convert_reference_checkpoint(path)

    torch.save({**state, "fine_generator.conv3.dropout.p": torch.tensor(0.5)}, path)
    with pytest.raises(InputError, match="unexpected key 'fine_generator.conv3.dropout.p'"):
        convert_reference_checkpoint(path)

    torch.save(models[1].state_dict(), path)
    with pytest.raises(InputError, match="missing key 'coarse_generator.conv1.conv.weight'"):
        convert_reference_checkpoint(path)


def test_critic_file_layout_is_checked(tmp_path, models):
    gen_path, dis_path = tmp_path / "gen.pt", tmp_path / "dis.pt"
    torch.save(models[0].state_dict(), gen_path)
    torch.save({"localD": models[1].state_dict()}, dis_path)
    with pytest.raises(InputError, match=r"dis\.pt: expected a mapping with keys 'localD' and 'globalD'"):
        convert_reference_checkpoint(gen_path, dis_path)
    torch.save({"localD": models[1].state_dict(), "globalD": models[0].state_dict()}, dis_path)
    with pytest.raises(InputError, match=r"dis\.pt: globalD: missing key 'dis_conv_module\.conv1\.conv\.weight'"):
        convert_reference_checkpoint(gen_path, dis_path)


class _SideEffect:
    """Unpickling this would create a file: proof that the loader executes nothing."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_refuses_pickled_objects_without_running_them(tmp_path):
    path = tmp_path / "gen_evil.pt"
    marker = tmp_path / "executed"
    torch.save({"coarse_generator.conv1.conv.weight": _SideEffect(marker)}, path)
    with pytest.raises(InputError, match=r"gen_evil\.pt: refused"):
        convert_reference_checkpoint(path)
    assert not marker.exists()


def test_damaged_and_missing_files(tmp_path):
    garbage = tmp_path / "gen_garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CorruptFileError, match="gen_garbage.pt"):
        convert_reference_checkpoint(garbage)
    with pytest.raises(InputError, match="no such checkpoint file"):
        convert_reference_checkpoint(tmp_path / "absent.pt")
    not_a_dict = tmp_path / "gen_list.pt"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(InputError, match="expected a state_dict"):
        convert_reference_checkpoint(not_a_dict)
