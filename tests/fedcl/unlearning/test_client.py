"""What a client may use to unlearn (``unlearning.data_access``), and the sums it returns."""

from __future__ import annotations

import torch

from fedcl.config import compose
from fedcl.data import build_stream
from fedcl.methods import build_method
from fedcl.methods._buffer import ReservoirBuffer
from fedcl.unlearning.client import Query, held_samples, local_splits
from fedcl.unlearning.data import Exclusions
from tests.conftest import synthetic_overrides

CFG = compose(synthetic_overrides("stream.num_tasks=2", "unlearning=ssd",
                                  "unlearning.requests=[{round:3,kind:client,target:1}]"))
STREAM = build_stream(CFG.stream, CFG.federation.num_clients, CFG.seed)


def _query(access: str, **kw: object) -> Query:
    args: dict = {"tasks": [0, 1], "access": access, "forget_all": False, "forget_classes": [],
                  "forget_samples": {}, "drop": Exclusions.of_run(CFG)}
    args.update(kw)
    return Query(**args)


def _buffer_of(task: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = STREAM.client_data(task, 1)
    return x[:n], y[:n], torch.full((n,), task)


def _counts(splits: list) -> tuple[dict[int, int], dict[int, int]]:
    f = {s.task_id: int(s.y_forget.numel()) for s in splits}
    r = {s.task_id: int(s.y_retain.numel()) for s in splits}
    return f, r


def test_history_access_uses_every_seen_task_for_forget_and_retain_alike() -> None:
    # Prepare: client 1 leaves (everything it used is forget data)
    q = _query("history", forget_all=True)
    # Execute
    f, _ = _counts(local_splits(STREAM, 1, q, 1, torch.device("cpu"), lambda: None))
    # Assert: both tasks' training data, without the held-out tenth
    for t in (0, 1):
        n = STREAM.client_data(t, 1)[1].numel()
        assert f[t] == n - round(0.1 * n)


def test_buffer_access_uses_the_current_task_and_the_buffer_for_both_parts() -> None:
    # Prepare: a class request (class 0 of the old task 0); the client holds task 1 and 6 buffered task-0 samples
    q = _query("buffer", forget_classes=[0])
    held = _buffer_of(0, 6)
    # Execute
    splits = local_splits(STREAM, 1, q, 1, torch.device("cpu"), lambda: held)
    f, r = _counts(splits)
    # Assert: task 0 appears only through the buffer, in the forget part AND the retain part (SSD's two
    # Fishers come from the same data; the old code took forget data from every seen task, retain from one)
    assert f[0] + r[0] == 6
    assert f[0] == int((held[1] == 0).sum()) and r[0] == int((held[1] != 0).sum())
    n1 = STREAM.client_data(1, 1)[1].numel()
    assert f[1] + r[1] == n1 - round(0.1 * n1)
    # without a buffer the old task is out of reach
    f, r = _counts(local_splits(STREAM, 1, q, 1, torch.device("cpu"), lambda: None))
    assert 0 not in f and 0 not in r


def test_buffer_access_finds_forgotten_samples_among_buffered_copies() -> None:
    # Prepare: samples 2 and 4 of client 1's task 0 are forgotten; the buffer holds task-0 samples 0..5
    _, _, idx = Exclusions.of_run(CFG).training_data(*STREAM.client_data(0, 1), 0, 1)
    held_idx = idx[:6]
    x, y = STREAM.client_data(0, 1)
    held = (x[held_idx], y[held_idx], torch.zeros(6, dtype=torch.long))
    q = _query("buffer", forget_samples={1: {0: [int(held_idx[2]), int(held_idx[4])]}})
    # Execute
    splits = [s for s in local_splits(STREAM, 1, q, 1, torch.device("cpu"), lambda: held) if s.task_id == 0]
    # Assert: exactly the two buffered copies are forget data
    assert splits[0].y_forget.numel() == 2 and splits[0].y_retain.numel() == 4
    assert torch.equal(splits[0].x_forget, x[held_idx[[2, 4]]])


def test_held_samples_reads_every_reservoir_buffer_of_a_composed_method() -> None:
    # Prepare: ER + A-GEM each keep a buffer
    method = build_method({"er": {"buffer_size": 4, "replay_batch_size": 2},
                           "agem": {"buffer_size": 3, "ref_batch_size": 2}})
    bufs = [b for m in method.parts.values() for b in vars(m).values() if isinstance(b, ReservoirBuffer)]  # type: ignore[attr-defined]
    for i, b in enumerate(bufs):
        b.add(torch.full((2, 1), float(i)), torch.tensor([i, i]), torch.tensor([0, 0]))
    # Execute
    held = held_samples(method)
    # Assert
    assert held is not None and held[1].tolist() == [0, 0, 1, 1]
    assert held_samples(build_method({"naive": {}})) is None
