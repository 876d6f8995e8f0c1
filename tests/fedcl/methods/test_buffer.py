"""Reservoir buffer: capacity, uniform inclusion, determinism, state round trip."""

from __future__ import annotations

import pytest
import torch

from fedcl.methods._buffer import ReservoirBuffer, rows_in
from tests.fedcl.methods.test_ema import assert_state_equal


def _fill(buf: ReservoirBuffer, n: int, seed: int, batch: int = 7, logits: bool = False) -> None:
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        y = torch.arange(start, min(start + batch, n))
        x = y.float()[:, None].repeat(1, 3)
        z = y.float()[:, None].repeat(1, 4) if logits else None
        buf.add(x, y, torch.full_like(y, start // 50), logits=z, generator=g)


def test_keeps_capacity_and_counts_seen() -> None:
    buf = ReservoirBuffer(20)
    _fill(buf, 10, seed=0)
    assert len(buf) == 10 and buf.seen == 10  # below capacity everything is kept, in order
    assert buf.y is not None and buf.y.tolist() == list(range(10))
    _fill(buf, 200, seed=1)
    assert len(buf) == 20 and buf.seen == 210
    assert buf.x is not None and torch.equal(buf.x[:, 0].long(), buf.y)  # x, y stay aligned


def test_inclusion_is_roughly_uniform() -> None:
    counts = torch.zeros(100)
    for rep in range(1000):
        buf = ReservoirBuffer(10)
        _fill(buf, 100, seed=rep)
        assert buf.y is not None
        counts[buf.y] += 1
    rate = counts / 1000
    # every sample has probability 10/100; 1000 draws give a std of ~0.0095
    assert rate.min() > 0.06 and rate.max() < 0.14
    assert abs(rate[:50].mean().item() - rate[50:].mean().item()) < 0.02


def test_deterministic_by_generator() -> None:
    a, b, c = ReservoirBuffer(15), ReservoirBuffer(15), ReservoirBuffer(15)
    _fill(a, 120, seed=3)
    _fill(b, 120, seed=3)
    _fill(c, 120, seed=4)
    assert_state_equal(a.state_dict(), b.state_dict())
    assert not torch.equal(a.y, c.y)  # type: ignore[arg-type]
    s1 = a.sample(5, torch.Generator().manual_seed(9))
    s2 = b.sample(5, torch.Generator().manual_seed(9))
    assert torch.equal(s1["y"], s2["y"]) and len(set(s1["index"].tolist())) == 5


def test_sample_keys_logits_and_round_trip() -> None:
    buf = ReservoirBuffer(12)
    _fill(buf, 60, seed=0, logits=True)
    batch = buf.sample(50, torch.Generator().manual_seed(0))
    assert set(batch) == {"x", "y", "task_ids", "logits", "index"}
    assert batch["y"].shape[0] == 12  # at most the buffer's size, no repeats
    assert torch.equal(batch["logits"][:, 0].long(), batch["y"])
    restored = ReservoirBuffer(12)
    restored.load_state_dict(buf.state_dict())
    assert_state_equal(restored.state_dict(), buf.state_dict())


def test_empty_and_zero_capacity() -> None:
    buf = ReservoirBuffer(0)
    _fill(buf, 30, seed=0)
    assert buf.is_empty and len(buf) == 0 and buf.seen == 30  # offered samples are counted all the same
    with pytest.raises(ValueError, match="^cannot sample from an empty buffer$"):
        buf.sample(1)
    with pytest.raises(ValueError, match="^buffer capacity must be >= 0, got -1$"):
        ReservoirBuffer(-1)
    # a zero-capacity buffer draws nothing from the round's generator
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    buf.add(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long), torch.zeros(3), generator=g)
    assert torch.equal(g.get_state(), state)


def test_logits_all_or_none() -> None:
    buf = ReservoirBuffer(5)
    _fill(buf, 3, seed=0)
    with pytest.raises(ValueError, match="^a buffer stores logits for all samples or for none$"):
        buf.add(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long), torch.zeros(1), logits=torch.zeros(1, 4))


def test_drop_classes_removes_only_those_samples_and_refills() -> None:
    # Prepare: 10 samples with labels 0..4 twice, logits kept
    buf = ReservoirBuffer(12)
    y = torch.arange(10) % 5
    buf.add(y.float()[:, None], y, torch.zeros_like(y), logits=y.float()[:, None].repeat(1, 2))
    # Execute
    removed = buf.drop_classes([1, 3])
    # Assert: x, y, task ids and logits stay aligned; later samples fill the freed slots
    assert removed == 4 and len(buf) == 6
    assert buf.y is not None and buf.x is not None and buf.logits is not None
    assert set(buf.y.tolist()) == {0, 2, 4}
    assert torch.equal(buf.x[:, 0].long(), buf.y) and torch.equal(buf.logits[:, 0].long(), buf.y)
    buf.add(torch.ones(6, 1), torch.full((6,), 7), torch.ones(6, dtype=torch.long), logits=torch.ones(6, 2))
    assert len(buf) == 12 and buf.drop_classes([9]) == 0


def test_methods_purge_forgotten_classes_from_their_buffers_also_when_composed() -> None:
    # Prepare: ER and ER+EWC with labels 0..3 in their buffers
    from fedcl.methods import Composite
    from fedcl.methods.er import ER
    from fedcl.methods.ewc import EWC

    er, composed = ER(buffer_size=8), Composite({"er": ER(buffer_size=8), "ewc": EWC()})
    composed_er = composed.parts["er"]
    assert isinstance(composed_er, ER)
    y = torch.arange(8) % 4
    for buf in (er.buffer, composed_er.buffer):
        buf.add(torch.zeros(8, 2), y, torch.zeros_like(y))
    # Execute
    removed = (er.forget_classes([2]), composed.forget_classes([2]))
    # Assert
    assert removed == (2, 2)
    assert er.buffer.y is not None and 2 not in er.buffer.y.tolist()
    assert composed_er.buffer.y is not None and 2 not in composed_er.buffer.y.tolist()


def test_overflow_follows_algorithm_r_slot_by_slot() -> None:
    # Prepare: capacity 2, two samples appended in order, then three offered one batch at a time
    buf = ReservoirBuffer(2)
    buf.add(torch.zeros(2, 1), torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long))
    assert buf.y is not None and buf.y.tolist() == [0, 1] and buf.seen == 2
    g = torch.Generator().manual_seed(3)
    u = torch.rand(3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    # Execute
    buf.add(torch.ones(3, 1), torch.tensor([2, 3, 4]), torch.ones(3, dtype=torch.long), generator=g)
    # Assert: sample k (the (k+1)-th offered) goes to slot floor(u * (k+1)) if that slot exists
    want = [0, 1]
    for i, k in enumerate((2, 3, 4)):
        slot = int(u[i] * (k + 1))
        if slot < 2:
            want[slot] = k
    assert buf.y.tolist() == want and buf.seen == 5
    assert buf.task_ids is not None and buf.task_ids.tolist() == [0 if v < 2 else 1 for v in want]


def test_load_state_truncates_to_the_configured_capacity() -> None:
    big = ReservoirBuffer(6)
    _fill(big, 6, seed=0)
    small = ReservoirBuffer(4)
    small.load_state_dict(big.state_dict())
    assert len(small) == 4 and small.seen == 6 and small.y is not None and small.y.tolist() == [0, 1, 2, 3]
    empty = ReservoirBuffer(4)
    empty.load_state_dict({"seen": 3, "x": torch.zeros(0, 3), "y": torch.zeros(0, dtype=torch.long),
                           "task_ids": torch.zeros(0, dtype=torch.long)})
    assert empty.is_empty and empty.x is None and empty.seen == 3
    assert ReservoirBuffer(4).state_dict() == {"capacity": 4, "seen": 0}


def test_rows_in_matches_whole_rows_of_any_shape_by_value() -> None:
    # Prepare: 2x2 "images"; rows 0 and 2 of x are stored copies, row 1 differs from its copy in one pixel
    x = torch.arange(12.0).reshape(3, 2, 2)
    reference = torch.stack([x[2], x[1].clone(), x[0]])
    x[1, 1, 1] = 99.0
    # Execute / Assert
    assert rows_in(x, reference).tolist() == [True, False, True]
    assert rows_in(x, reference).dtype == torch.bool
    assert rows_in(x[:1], x[:1]).tolist() == [True]  # one row, one reference row
    assert rows_in(x[1:2], reference[:1]).tolist() == [False]


def test_rows_in_with_nothing_on_either_side_is_all_false() -> None:
    x = torch.ones(3, 4)
    for got, n in ((rows_in(x, torch.ones(0, 4)), 3), (rows_in(torch.ones(0, 4), x), 0)):
        assert got.dtype == torch.bool and got.tolist() == [False] * n


def test_sample_without_a_generator_draws_on_the_cpu() -> None:
    buf = ReservoirBuffer(10)
    _fill(buf, 10, seed=0)
    torch.manual_seed(0)
    first = buf.sample(4)["index"]
    torch.manual_seed(0)
    assert torch.equal(buf.sample(4)["index"], first) and first.device.type == "cpu"


def test_dropping_from_an_empty_buffer_removes_nothing() -> None:
    buf = ReservoirBuffer(5)
    assert buf.drop_classes([0]) == 0 and buf.drop_rows(torch.tensor([True])) == 0 and buf.is_empty


def test_dropping_rows_down_to_one_or_none() -> None:
    # Prepare
    buf = ReservoirBuffer(5)
    _fill(buf, 3, seed=0, logits=True)
    # Execute: one row left, then none
    left_one = buf.drop_rows(torch.tensor([True, False, True]))
    assert left_one == 2 and len(buf) == 1 and buf.y is not None and buf.y.tolist() == [1]
    assert buf.drop_rows(torch.tensor([True])) == 1
    # Assert: an emptied buffer is the fresh one (no zero-row tensors left behind)
    assert buf.is_empty and buf.x is None and buf.y is None and buf.task_ids is None and buf.logits is None


def test_a_state_without_a_seen_count_loads_as_nothing_seen() -> None:
    buf = ReservoirBuffer(5)
    _fill(buf, 3, seed=0)
    buf.load_state_dict({"x": buf.x, "y": buf.y, "task_ids": buf.task_ids})
    assert buf.seen == 0 and len(buf) == 3


def test_single_sample_offers_to_a_full_buffer_follow_algorithm_r() -> None:
    # Prepare: capacity 1, then 30 offers of one sample each; the same draws replayed by hand
    buf = ReservoirBuffer(1)
    g, mirror = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    kept = 0
    # Execute
    for i in range(30):
        buf.add(torch.full((1, 3), float(i)), torch.tensor([i]), torch.zeros(1), generator=g)
        if i > 0 and int(torch.rand(1, generator=mirror, dtype=torch.float64) * (i + 1)) < 1:
            kept = i
    # Assert: sample i replaced the held one with probability 1 / (i + 1), draw for draw
    assert buf.y is not None and buf.y.tolist() == [kept] and kept > 0


def test_overflow_without_a_generator_draws_from_the_global_rng_on_the_cpu() -> None:
    def run() -> list[int]:
        buf = ReservoirBuffer(4)
        torch.manual_seed(5)
        buf.add(torch.arange(20.0)[:, None], torch.arange(20), torch.zeros(20))
        assert buf.y is not None
        return buf.y.tolist()

    assert run() == run()
