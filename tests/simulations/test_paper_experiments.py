"""The FOT paper experiment files: their protocol values, and the CUDA path with fractional GPUs per client."""

from __future__ import annotations

import pytest

from fedcl.config import compose
from simulations.launch import federation_config

# experiment -> (model, clients, per round, rounds per task, eps, tasks, scenario), from FOT's run scripts
PROTOCOLS = {
    "fot_cifar100_paper": ("alexnet", 50, 25, 1000, 0.87, 10, "task_incremental"),
    "fot_5datasets_paper": ("resnet18_reduced", 150, 64, 300, 0.95, 5, "task_incremental"),
    "fot_miniimagenet_paper": ("resnet18_reduced", 50, 25, 250, 0.90, 20, "task_incremental"),
}


@pytest.mark.parametrize("experiment", sorted(PROTOCOLS))
def test_protocol_and_cuda_with_fractional_gpus(experiment: str) -> None:
    # Prepare / Execute: the README's command line, on a GPU with four clients sharing it
    cfg = compose(["stream.data_dir=/data/x", "device=cuda", "backend.client_num_gpus=0.25"], experiment)
    # Assert
    model, clients, per_round, rounds, eps, tasks, scenario = PROTOCOLS[experiment]
    assert (cfg.model.name, cfg.federation.num_clients, cfg.federation.clients_per_round) == (model, clients, per_round)
    assert (cfg.federation.rounds_per_task, cfg.strategy.eps, cfg.stream.num_tasks) == (rounds, eps, tasks)
    assert cfg.stream.scenario == scenario and cfg.strategy.name == "fot" and cfg.device == "cuda"
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.momentum, cfg.train.weight_decay) == (0.01, 16, 0.0, 1e-5)
    assert "client-resources-num-gpus=0.25" in federation_config(cfg).split()
