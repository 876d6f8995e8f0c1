"""Strategies built as the ServerApp builds them, for tests with constructed replies (no Ray)."""

from __future__ import annotations

from typing import Any

from flwr.app import Message

from fedcl.config import Config, compose
from fedcl.data import Schedule, make_schedule
from strategies.fedavg import FCLFedAvg
from strategies.server.build import build_strategy
from tests.conftest import synthetic_overrides


class FakeGrid:
    """Node ids only (``configure_train`` asks for them)."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)


def schedule_of(cfg: Config) -> Schedule:
    """The run's schedule, as the server builds it."""
    fed = cfg.federation
    return make_schedule(cfg.schedule, cfg.stream.num_tasks, fed.rounds_per_task, fed.num_clients, cfg.seed)


def make_strategy(*overrides: str, state_dir: str | None = None) -> Any:
    """The strategy (FedAvg, FOT, with DP's averaging step...) of a synthetic config with ``overrides``."""
    cfg = compose(synthetic_overrides(*overrides))
    strategy: FCLFedAvg = build_strategy(cfg, schedule_of(cfg), state_dir)
    return strategy


def pushed(messages: list[Message]) -> list[Message]:
    """Give hand-built messages the ids the SuperLink would, so replies are matched to them by id."""
    for i, m in enumerate(messages):
        m.metadata.__dict__["_message_id"] = f"id{i}"
    return messages
