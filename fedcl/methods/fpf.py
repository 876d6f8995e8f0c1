"""FPF / k-FPF / k-FPF-KD: fine-tune only the forgetting-prone modules on a small buffer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from fedcl.methods._buffer import ReservoirBuffer
from fedcl.methods._utils import logits_by_task
from fedcl.methods.base import CLMethod, TaskContext


def default_modules(model: nn.Module) -> list[str]:
    """The head and the last parametrised layer of ``model.body``."""
    body = [name for name, p in model.named_parameters() if name.startswith("body.")]
    return ["head"] + ([body[-1].rpartition(".")[0]] if body else [])


def select_parameters(model: nn.Module, prefixes: list[str]) -> list[nn.Parameter]:
    """Parameters inside any module named by ``prefixes`` (``body.3`` matches ``body.3.*``
    but not ``body.31``)."""
    return [
        p for name, p in model.named_parameters() if any(name == pre or name.startswith(pre + ".") for pre in prefixes)
    ]


class FPF(CLMethod):
    """Forgetting Prioritized Finetuning: a plugin that runs on top of any method (``method=[derpp,fpf]``).

    Reference: Zhao, Zhou, Long, Jiang & Zhang, "Does Continual Learning Equally Forget
    All Parameters?", ICML 2023 (arXiv:2304.04158).

    The paper finds that forgetting concentrates in a few task-specific modules (the
    classifier and the last layers) and that fine-tuning only those on a small buffer
    "at the end of any CL method" recovers much of it at a small cost. Here:

    - the plugin keeps its own reservoir buffer of the samples the client trains on
      (only the round's own rows of each mini-batch: rows another method appended, ER's
      replay for instance, are not stored twice), with their logits when ``kd_weight > 0``;
    - ``at_task_end``: after the client's last round of each task (every point where
      the accuracy matrix is read is an "end of training"), ``steps`` SGD iterations
      with ``lr`` on buffer batches of ``batch_size``, updating only ``modules``;
    - ``every``: the same fine-tuning every ``every`` local SGD steps, counted over the
      client's whole stream (across rounds and task boundaries, kept in the state):
      that is k-FPF, with ``k`` = the client's local steps over the stream / ``every``
      (``method=kfpf``, which turns ``at_task_end`` off and needs no every-step replay);
    - ``kd_weight``: the fine-tuning loss is ``CE(f(x), y) + kd_weight * MSE(f(x), z)``
      with ``z`` the logits stored when the sample entered the buffer (k-FPF-KD,
      ``method=kfpf_kd``); ``0`` is the cross-entropy-only k-FPF(-CE).

    The fine-tuning steps change only the selected weights (``.grad`` and the
    optimiser's state are left alone), so the method it is composed with trains as
    without it. Multi-head models fine-tune each buffered sample through its own
    task's head (unmasked, as DER++ replays).

    Parameters
    ----------
    buffer_size : int, default 200
        Buffer samples kept per client (reservoir sampling).
    steps : int, default 20
        SGD iterations per fine-tuning.
    lr : float, default 0.05
        Learning rate of the fine-tuning iterations.
    batch_size : int, default 32
        Buffer samples per fine-tuning iteration.
    modules : list[str] | None, default None
        Module name prefixes to fine-tune (e.g. ``["head", "body.3"]``); ``None`` is the
        head plus the last parametrised layer of ``model.body``.
    at_task_end : bool, default True
        Fine-tune after the client's last round of each task (FPF).
    every : int | None, default None
        Also fine-tune every ``every`` local SGD steps over the whole stream (k-FPF); ``None``: never.
    kd_weight : float, default 0.0
        Weight of the logit-matching term in the fine-tuning loss (k-FPF-KD).
    """

    name = "fpf"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(
        self,
        buffer_size: int = 200,
        steps: int = 20,
        lr: float = 0.05,
        batch_size: int = 32,
        modules: list[str] | None = None,
        at_task_end: bool = True,
        every: int | None = None,
        kd_weight: float = 0.0,
    ) -> None:
        if steps < 1 or batch_size < 1:
            raise ValueError(f"{self.name}: steps and batch_size must be >= 1, got {steps} and {batch_size}")
        if every is not None and every < 1:
            raise ValueError(f"{self.name}: every must be null or >= 1, got {every}")
        if kd_weight < 0:
            raise ValueError(f"{self.name}: kd_weight must be >= 0, got {kd_weight}")
        self.buffer_size = int(buffer_size)
        self.steps = int(steps)
        self.lr = float(lr)
        self.batch_size = int(batch_size)
        self.modules = list(modules) if modules is not None else None
        self.at_task_end = bool(at_task_end)
        self.every = None if every is None else int(every)
        self.kd_weight = float(kd_weight)
        self.buffer = ReservoirBuffer(self.buffer_size)
        self.step_count = 0  # local SGD steps over the client's whole stream
        self.finetunes = 0  # fine-tunings applied so far

    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        if self.buffer_size > 0:
            assert ctx.batch_x is not None
            n = ctx.fresh_rows if ctx.fresh_rows is not None else int(y.shape[0])
            x, yy = ctx.batch_x[:n], y[:n]
            z = None
            if self.kd_weight > 0:
                # multi-head logits are masked with -inf by the trainer: store the raw head output (as DER++)
                with torch.no_grad():
                    z = (ctx.model(x, ctx.task_id) if ctx.multi_head else logits[:n]).detach()
            self.buffer.add(x, yy, torch.full_like(yy, ctx.task_id), logits=z, generator=ctx.generator)
        return base_loss

    def after_step(self, ctx: TaskContext) -> None:
        self.step_count += 1
        if self.every is not None and self.step_count % self.every == 0:
            self.finetune(ctx)

    def after_task(self, ctx: TaskContext) -> None:
        if self.at_task_end:
            self.finetune(ctx)

    def buffer_loss(self, ctx: TaskContext) -> torch.Tensor:
        """CE on a buffer batch, plus ``kd_weight`` times the MSE to the stored logits."""
        batch = self.buffer.sample(self.batch_size, generator=ctx.generator)
        x, y = batch["x"].to(ctx.device), batch["y"].to(ctx.device)
        out = logits_by_task(ctx.model, x, batch["task_ids"], ctx.multi_head)
        loss = F.cross_entropy(out, y)
        if self.kd_weight > 0 and "logits" in batch:
            loss = loss + self.kd_weight * F.mse_loss(out, batch["logits"].to(ctx.device))
        return loss

    def finetune(self, ctx: TaskContext) -> None:
        """``steps`` SGD iterations on buffer batches for the selected modules only (no-op on an empty buffer)."""
        if self.buffer.is_empty:
            return
        params = select_parameters(ctx.model, self.modules if self.modules is not None else default_modules(ctx.model))
        was_training = ctx.model.training
        ctx.model.train()
        for _ in range(self.steps):
            with torch.enable_grad():
                grads = torch.autograd.grad(self.buffer_loss(ctx), params, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    if g is not None:
                        p.add_(g, alpha=-self.lr)
        ctx.model.train(was_training)
        self.finetunes += 1
        ctx.metrics["fpf-finetunes"] = float(self.finetunes)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "step_count": self.step_count, "finetunes": self.finetunes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
        self.step_count = int(state.get("step_count", 0))
        self.finetunes = int(state.get("finetunes", 0))


class KFPF(FPF):
    """k-FPF: plain SGD without every-step replay, FPF applied every ``every`` local steps over the whole stream.

    Reference: Zhao et al., ICML 2023 ("k-FPF periodically (regardless of task
    boundaries) applies FPF for k times during training"). The same plugin as
    :class:`FPF` with the periodic trigger on and the task-end one off; compose it with
    another method (``method=[er,kfpf]``) or run it alone (SGD + k-FPF, the paper's
    replay-free method). ``k`` = the client's local SGD steps over the stream / ``every``.

    Parameters
    ----------
    buffer_size, steps, lr, batch_size, modules, at_task_end, kd_weight
        As :class:`FPF`.
    every : int | None, default 20
        Local SGD steps between two fine-tunings.
    """

    name = "kfpf"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(
        self,
        buffer_size: int = 200,
        steps: int = 20,
        lr: float = 0.05,
        batch_size: int = 32,
        modules: list[str] | None = None,
        at_task_end: bool = False,
        every: int | None = 20,
        kd_weight: float = 0.0,
    ) -> None:
        super().__init__(buffer_size, steps, lr, batch_size, modules, at_task_end, every, kd_weight)


class KFPFKD(KFPF):
    """k-FPF-KD: k-FPF whose fine-tuning also matches the logits stored with each buffered sample.

    Reference: Zhao et al., ICML 2023 (k-FPF-KD: knowledge distillation on the
    buffered data during the periodic fine-tuning). The fine-tuning loss is
    ``CE + kd_weight * MSE(f(x), z)``, ``z`` the logits when the sample was stored.

    Parameters
    ----------
    buffer_size, steps, lr, batch_size, modules, at_task_end, every
        As :class:`KFPF`.
    kd_weight : float, default 0.3
        Weight of the logit-matching term (DER++'s ``alpha`` default here).
    """

    name = "kfpf_kd"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(
        self,
        buffer_size: int = 200,
        steps: int = 20,
        lr: float = 0.05,
        batch_size: int = 32,
        modules: list[str] | None = None,
        at_task_end: bool = False,
        every: int | None = 20,
        kd_weight: float = 0.3,
    ) -> None:
        super().__init__(buffer_size, steps, lr, batch_size, modules, at_task_end, every, kd_weight)
