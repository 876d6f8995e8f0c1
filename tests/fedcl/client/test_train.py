"""The train handler's task context: clients train on augmented data, every other reader sees the plain data."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ConfigRecord, Message, RecordDict

import fedcl.keys as keys
from fedcl.client.instruction import Instruction, Workspace
from fedcl.client.train import task_context
from fedcl.config import compose
from fedcl.data import build_stream
from fedcl.models import build_model
from fedcl.unlearning.data import Exclusions


def _context(augment: str, server_round: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg = compose(["stream=synthetic", f"stream.augment={augment}", "federation.num_clients=2"])
    stream = build_stream(cfg.stream, 2, cfg.seed)
    model = build_model(cfg.model, stream.in_shape, stream.num_classes, stream.num_heads)
    record = ConfigRecord({keys.TASK_ROUND: 0, keys.LAST_ROUND_OF_TASK: False})
    instr = Instruction(action="train", cfg=cfg, client_id=1, task_id=0, server_round=server_round, record=record)
    msg = Message(content=RecordDict({keys.CONFIG: record}), dst_node_id=0, message_type="train")
    ctx = task_context(msg, instr, Workspace(torch.device("cpu"), stream, model), [0], Exclusions.of_run(cfg))
    return ctx.x, ctx.task_data(0)[0], stream.client_data(0, 1)[0]


pytestmark = pytest.mark.usefixtures("message_identity")


def test_training_reads_the_rounds_augmented_data() -> None:
    # Prepare / Execute: crop + flip on; the same client and task in rounds 3 and 4
    x3, task3, plain = _context("{crop_padding: 2, hflip: true}", 3)
    x4, _, _ = _context("{crop_padding: 2, hflip: true}", 4)
    # Assert: the train data (and the replayed task data) are this round's draw, not the plain images
    assert x3.shape == plain.shape and not torch.equal(x3, plain)
    assert torch.equal(x3, task3) and not torch.equal(x3, x4)


def test_without_augmentation_training_reads_the_plain_data() -> None:
    x, task, plain = _context("null", 3)
    assert torch.equal(x, plain) and torch.equal(task, plain)
