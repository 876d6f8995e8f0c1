"""Random and worst-case forget sets: reproducible draws, the lowest-loss rule, the hand-over file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedcl.config import compose
from fedcl.data import build_stream
from fedcl.errors import ConfigError
from fedcl.models import build_model
from fedcl.unlearning.data import Exclusions, count_samples
from fedcl.unlearning.forget_sets import ForgetSets, candidates, lowest_loss, random_set
from fedcl.unlearning.requests import Request
from tests.conftest import synthetic_overrides

CFG = compose(synthetic_overrides("unlearning=ga", "unlearning.requests=[{round:3,kind:random,target:20}]"))
STREAM = build_stream(CFG.stream, CFG.federation.num_clients, CFG.seed)
EXCL = Exclusions.of_run(CFG)


def test_a_random_set_is_drawn_from_the_training_data_left_and_is_reproducible() -> None:
    # Prepare
    pool = candidates(STREAM, EXCL, [0, 2], [0, 1])
    # Execute
    a = random_set(pool, 20, seed=0, request=Request(3, "random", 20))
    # Assert: 20 samples of clients 0 and 2, never held out, the same draw again, another for another seed
    assert count_samples(a) == 20 and set(a) <= {0, 2}
    for c, tasks in a.items():
        for t, idx in tasks.items():
            _, _, allowed = EXCL.training_data(*STREAM.client_data(t, c), t, c)
            assert set(idx) <= set(allowed.tolist())
    assert a == random_set(pool, 20, 0, Request(3, "random", 20))
    assert a != random_set(pool, 20, 1, Request(3, "random", 20))
    with pytest.raises(ConfigError, match="at most"):
        random_set(pool, 10**6, 0, Request(3, "random", 10**6))


def test_the_worst_case_set_is_the_lowest_loss_part_of_the_pool() -> None:
    # Prepare: a model trained a few steps on client 0's task-0 data
    torch.manual_seed(0)
    model = build_model(CFG.model, STREAM.in_shape, STREAM.num_classes, STREAM.num_heads)
    x, y = STREAM.client_data(0, 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    pool = candidates(STREAM, EXCL, [0, 1], [0])
    # Execute
    chosen = lowest_loss(model, STREAM, pool, 15, torch.device("cpu"))
    # Assert: no unchosen candidate has a lower loss than the highest chosen one
    def losses(c: int, idx: list[int]) -> torch.Tensor:
        xx, yy = STREAM.client_data(0, c)
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(model(xx[idx]), yy[idx], reduction="none")
    worst_in = max(float(losses(c, t[0]).max()) for c, t in chosen.items())
    for c, _, idx in pool:
        rest = sorted(set(idx.tolist()) - set(chosen.get(c, {}).get(0, [])))
        assert float(losses(c, rest).min()) >= worst_in - 1e-6
    assert count_samples(chosen) == 15


def test_forget_sets_hand_over_through_their_file(tmp_path: Path) -> None:
    sets = ForgetSets(None)
    r = Request(3, "worst", 2)
    sets.put(r, {1: {0: [4, 2]}}, {1: {0: [9]}})
    path = sets.write(tmp_path, "fp")
    again = ForgetSets(path)
    assert again.get(r) == ({1: {0: [2, 4]}}, {1: {0: [9]}}) and again.get(Request(3, "worst", 3)) is None
    with pytest.raises(ConfigError, match="forget-sets.json") as err:
        ForgetSets(tmp_path / "missing.json")
    assert err.value.key == "unlearning.forget_sets"
