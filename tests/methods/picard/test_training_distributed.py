import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from picard_ad.config import to_dict
from picard_ad.errors import ConfigError
from picard_ad.methods.picard import build_networks
from picard_ad.training.distributed import (
    DistributedContext,
    average_gradients,
    gather_json,
    init_from_torchrun,
)

# Each rank trains the tiny network for a few steps and dumps its weights and its first batch's hash.
WORKER = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import torch
    from safetensors.torch import save_file
    from picard_ad.config import from_dict
    from picard_ad.methods.picard import PicardTraining, PicardTrainConfig
    from picard_ad.training import Trainer, distributed

    torch.set_num_threads(1)
    data, run_dir, out = sys.argv[1:4]
    config = from_dict(PicardTrainConfig, json.loads(sys.argv[4]))
    context = distributed.init_from_torchrun(torch.device("cpu"))
    trainer = Trainer("picard", config, PicardTraining, data, run_dir, context=context, progress=False)
    first_batch = trainer.task.batch()[0]
    trainer.train()
    weights = {f"{name}.{key}": value.contiguous() for name, module in trainer.task.networks.items()
               for key, value in module.state_dict().items()}
    save_file(weights, os.path.join(out, f"rank{context.rank}.safetensors"))
    with open(os.path.join(out, f"rank{context.rank}.json"), "w") as handle:
        json.dump({"batch": hashlib.sha256(first_batch.numpy().tobytes()).hexdigest()}, handle)
    distributed.shutdown(context)
    """
)


@pytest.mark.slow
def test_two_gloo_processes_end_with_identical_weights(tiny_config, phantom_folder, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    settings = to_dict(tiny_config)
    settings.update(steps=4, checkpoint_every=2, validate_every=2, sample_every=4)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
        str(phantom_folder), str(tmp_path / "run"), str(tmp_path), json.dumps(settings),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[key], rank1[key]) for key in rank0)
    batches = [json.loads((tmp_path / f"rank{r}.json").read_text())["batch"] for r in (0, 1)]
    assert batches[0] != batches[1]  # each rank draws its own patches
    checkpoint = load_file(tmp_path / "run" / "last" / "generator.safetensors")
    assert all(torch.equal(checkpoint[key], rank0[f"generator.{key}"]) for key in checkpoint)
    state = json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())
    ranks = state["ranks"]
    assert len(ranks) == 2 and ranks[0]["task"]["sampler"] != ranks[1]["task"]["sampler"]
    torch.manual_seed(tiny_config.seed)  # the trainer's initial weights: training must have moved them
    initial = build_networks(tiny_config)["generator"].state_dict()
    assert any(not torch.equal(initial[key], rank0[f"generator.{key}"]) for key in initial)


def test_single_process_helpers_are_no_ops():
    context = DistributedContext()
    assert not context.enabled and context.is_main
    module = torch.nn.Linear(2, 1)
    module(torch.ones(1, 2)).sum().backward()
    before = module.weight.grad.clone()
    average_gradients(module, context)
    assert torch.equal(module.weight.grad, before)
    assert gather_json({"a": 1}, context, torch.device("cpu")) == [{"a": 1}]


def test_distributed_without_torchrun_explains_how_to_launch(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        init_from_torchrun(torch.device("cpu"))
