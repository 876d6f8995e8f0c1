"""Composed methods (``method=[er,ewc]``): hooks chained in list order, states side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import fedcl
from fedcl.config import compose
from fedcl.methods import Composite, build_method
from fedcl.methods.base import CLMethod, TaskContext
from fedcl.methods.er import ER
from fedcl.methods.ewc import EWC
from fedcl.methods.naive import Naive
from tests.conftest import synthetic_overrides
from tests.fedcl.methods.toy import run_two_tasks


class Tag(CLMethod):
    """Records its hook calls into a shared log and adds its mark to the loss."""

    def __init__(self, tag: str, log: list[str]) -> None:
        self.tag, self.log = tag, log

    def adapt_batch(self, x: torch.Tensor, y: torch.Tensor, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        self.log.append(f"{self.tag}.adapt")
        return x, y

    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        self.log.append(f"{self.tag}.loss")
        return base_loss * 2.0 if self.tag == "a" else base_loss + 1.0

    def after_task(self, ctx: TaskContext) -> None:
        self.log.append(f"{self.tag}.after_task")

    def state_dict(self) -> dict[str, Any]:
        return {"tag": self.tag}


def test_hooks_run_in_list_order_and_losses_chain() -> None:
    # Prepare
    log: list[str] = []
    both = Composite({"a": Tag("a", log), "b": Tag("b", log)})
    base = torch.tensor(3.0)
    # Execute
    both.adapt_batch(torch.zeros(1), torch.zeros(1), None)  # type: ignore[arg-type]
    loss = both.loss(torch.zeros(1), torch.zeros(1), base, None)  # type: ignore[arg-type]
    both.after_task(None)  # type: ignore[arg-type]
    # Assert: a before b everywhere; b sees a's loss: (3 * 2) + 1
    assert log == ["a.adapt", "b.adapt", "a.loss", "b.loss", "a.after_task", "b.after_task"]
    assert float(loss) == 7.0
    assert both.state_dict() == {"a": {"tag": "a"}, "b": {"tag": "b"}}


def test_er_ewc_composition_keeps_both_states_and_forgets_less_than_naive() -> None:
    # Prepare / Execute
    naive = run_two_tasks(Naive)
    both = run_two_tasks(lambda: Composite({"er": ER(buffer_size=50, replay_batch_size=16),
                                           "ewc": EWC(ewc_lambda=10.0, fisher_samples=32)}))
    # Assert
    assert both.forgetting < naive.forgetting


def test_method_list_and_er_ewc_option_compose_from_the_config() -> None:
    # Prepare / Execute
    listed = compose(synthetic_overrides("method=[er,ewc]", "method.er.buffer_size=20", "method.ewc.fisher_samples=8"))
    named = compose(synthetic_overrides("method=er_ewc"))
    method = build_method(listed.method)
    # Assert: both spell the same composition; options reach each part
    assert listed.method_names == named.method_names == ["er", "ewc"]
    assert isinstance(method, Composite) and list(method.parts) == ["er", "ewc"]
    assert method.parts["er"].buffer_size == 20 and method.parts["ewc"].fisher_samples == 8  # type: ignore[attr-defined]
    method.load_state_dict(method.state_dict())
    assert set(method.state_dict()) == {"er", "ewc"}


def test_er_ewc_loss_is_ers_batch_plus_ewcs_penalty_and_task_end_estimates_the_fisher() -> None:
    # Prepare
    from torch.nn import functional as F

    from tests.fedcl.methods.toy import make_ctx, make_model, toy_task

    model = make_model(0)
    er, ewc = ER(buffer_size=8, replay_batch_size=4), EWC(ewc_lambda=2.0, fisher_samples=8)
    method = Composite({"er": er, "ewc": ewc})
    x0, y0 = toy_task(0, 8, seed=0)
    c0 = make_ctx(model, 0, x0, y0)
    # Execute: task 0 fills ER's buffer; its end estimates EWC's Fisher and anchor
    bx, _ = method.adapt_batch(x0, y0, c0)
    method.after_task(c0)
    # Assert
    assert bx is x0 and len(er.buffer) == 8
    assert ewc.fisher and ewc.anchor
    # Execute: task 1's batch is mixed with replay, then EWC's penalty is added to its loss
    x1, y1 = toy_task(1, 4, seed=0)
    c1 = make_ctx(model, 1, x1, y1)
    bx, by = method.adapt_batch(x1, y1, c1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    logits = model(bx)
    base = F.cross_entropy(logits, by)
    penalty = sum(float((ewc.fisher[n] * (p.detach() - ewc.anchor[n]) ** 2).sum()) for n, p in model.named_parameters())
    # Assert
    assert bx.shape[0] == 8
    torch.testing.assert_close(method.loss(logits, by, base, c1).detach(), base.detach() + 1.0 * penalty)
    restored = Composite({"er": ER(buffer_size=8), "ewc": EWC(ewc_lambda=2.0)})
    restored.load_state_dict(method.state_dict())
    assert len(restored.parts["er"].buffer) == 8  # type: ignore[attr-defined]
    assert restored.parts["ewc"].fisher.keys() == ewc.fisher.keys()  # type: ignore[attr-defined]


def test_derpp_with_the_fpf_plugin_runs_end_to_end(tmp_path: Path) -> None:
    # Prepare: method=[derpp,fpf] through the config, the round loop and the ClientApp (in-process engine)
    cfg = compose(synthetic_overrides("method=[derpp,fpf]", "backend=inprocess", "quiet=true", "output.plots=false"))
    # Execute
    summary = fedcl.run(cfg, tmp_path / "run")
    # Assert: 2 tasks x 2 rounds; the plugin fine-tuned at each task's end (1, then 2 per client); every
    # client's saved state holds both methods' states side by side, each with its own buffer
    assert summary["rounds"] == 4 and len(summary["accuracy_matrix"]) == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["client_metrics"].get("fpf-finetunes") for r in rows] == [None, 1.0, None, 2.0]
    for path in sorted((tmp_path / "run" / "client_state").glob("client-*.pt")):
        state = torch.load(path, weights_only=False)["method"]
        assert set(state) == {"derpp", "fpf"}
        assert len(state["derpp"]["buffer"]["y"]) == len(state["fpf"]["buffer"]["y"]) > 0
        assert state["fpf"]["finetunes"] == 2


class Recorder(CLMethod):
    """Records the context each hook receives; supplies round data and forgets a fixed count when told to."""

    def __init__(self, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None, forgets: int) -> None:
        self.seen: list[tuple[str, object]] = []
        self.data, self.forgets = data, forgets

    def before_task(self, ctx: TaskContext) -> None:
        self.seen.append(("before_task", ctx))

    def after_backward(self, ctx: TaskContext) -> None:
        self.seen.append(("after_backward", ctx))

    def after_step(self, ctx: TaskContext) -> None:
        self.seen.append(("after_step", ctx))

    def train_data(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        self.seen.append(("train_data", ctx))
        return self.data

    def after_round(self, ctx: TaskContext) -> None:
        self.seen.append(("after_round", ctx))

    def forget_samples(self, x: torch.Tensor) -> int:
        self.seen.append(("forget_samples", x))
        return self.forgets


def test_every_hook_reaches_every_part_with_the_context() -> None:
    # Prepare: the first part supplies no round data, the second does
    data = (torch.ones(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    a, b = Recorder(None, forgets=2), Recorder(data, forgets=3)
    both = Composite({"a": a, "b": b})
    ctx, x = object(), torch.zeros(1, 3)
    # Execute
    for hook in (both.before_task, both.after_backward, both.after_step, both.after_round):
        hook(ctx)  # type: ignore[arg-type]
    got = both.train_data(ctx)  # type: ignore[arg-type]
    removed = both.forget_samples(x)
    # Assert
    hooks = ["before_task", "after_backward", "after_step", "after_round", "train_data"]
    assert a.seen[:5] == b.seen[:5] == [(h, ctx) for h in hooks]
    assert got is data and removed == 5
    assert a.seen[5][1] is x and b.seen[5][1] is x


def test_a_composite_of_one_method_is_refused() -> None:
    with pytest.raises(ValueError, match="^a composite method needs at least two methods$"):
        Composite({"er": ER()})
