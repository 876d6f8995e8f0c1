"""FPF / k-FPF: fine-tune only the forgetting-prone modules on a small buffer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from fedcl.methods._buffer import ReservoirBuffer
from fedcl.methods._utils import logits_by_task
from fedcl.methods.base import CLMethod, TaskContext

MODES = ("fpf", "kfpf")


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
    """Forgetting Prioritized Finetuning (FPF) and its replay-free variant k-FPF.

    Reference: Zhao et al., "Does Continual Learning Equally Forget All Parameters?",
    ICML 2023.

    The paper finds that forgetting concentrates in a few task-specific modules (the
    classifier and the last layers) and that fine-tuning only those on a small buffer
    recovers most of it, at a fraction of the cost of replaying through the whole
    network. A reservoir buffer collects samples of every batch; then

    - ``mode: fpf`` (every step): after each backward pass, one SGD step with ``lr``
      on a buffer batch, for the selected modules only, next to the plain SGD step of
      the current task. (The paper applies FPF at the end of training on top of any CL
      method; with plain SGD as the base method, that is ``kfpf`` below, so ``fpf``
      here is the every-step selective replay.)
    - ``mode: kfpf``: plain SGD without replay during the task; at the end of each
      task, ``k`` SGD steps with ``lr`` on buffer batches for the selected modules.

    Parameters
    ----------
    buffer_size : int, default 200
        Buffer samples kept per client (reservoir sampling).
    mode : str, default "kfpf"
        ``"fpf"`` or ``"kfpf"``.
    k : int, default 100
        Fine-tuning steps at the end of each task (``kfpf``).
    lr : float, default 0.05
        Learning rate of the fine-tuning steps.
    modules : list[str] | None, default None
        Module name prefixes to fine-tune (e.g. ``["head", "body.5"]``); ``None`` is
        the head plus the last parametrised layer of ``model.body``.
    batch_size : int, default 32
        Buffer samples per fine-tuning step.
    """

    name = "fpf"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(
        self,
        buffer_size: int = 200,
        mode: str = "kfpf",
        k: int = 100,
        lr: float = 0.05,
        modules: list[str] | None = None,
        batch_size: int = 32,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"fpf: mode must be one of {MODES}, got {mode!r}")
        self.buffer_size = int(buffer_size)
        self.mode = mode
        self.k = int(k)
        self.lr = float(lr)
        self.modules = list(modules) if modules is not None else None
        self.batch_size = int(batch_size)
        self.buffer = ReservoirBuffer(self.buffer_size)

    def adapt_batch(self, x: torch.Tensor, y: torch.Tensor, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        if self.buffer_size > 0:
            tids = torch.full_like(y, ctx.task_id)
            self.buffer.add(x.detach().cpu(), y.detach().cpu(), tids.cpu(), generator=ctx.generator)
        return x, y  # no replay through the whole network, in either mode

    def _buffer_loss(self, ctx: TaskContext) -> torch.Tensor:
        batch = self.buffer.sample(self.batch_size, generator=ctx.generator)
        x, y = batch["x"].to(ctx.device), batch["y"].to(ctx.device)
        return F.cross_entropy(logits_by_task(ctx.model, x, batch["task_ids"], ctx.multi_head), y)

    def finetune_step(self, ctx: TaskContext, params: list[nn.Parameter]) -> None:
        """One SGD step on a buffer batch for ``params`` only (other ``.grad`` untouched)."""
        with torch.enable_grad():
            grads = torch.autograd.grad(self._buffer_loss(ctx), params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                if g is not None:
                    p.add_(g, alpha=-self.lr)

    def _params(self, model: nn.Module) -> list[nn.Parameter]:
        return select_parameters(model, self.modules if self.modules is not None else default_modules(model))

    def after_backward(self, ctx: TaskContext) -> None:
        if self.mode == "fpf" and not self.buffer.is_empty:
            self.finetune_step(ctx, self._params(ctx.model))

    def after_task(self, ctx: TaskContext) -> None:
        if self.mode != "kfpf" or self.buffer.is_empty:
            return
        params = self._params(ctx.model)
        ctx.model.train()
        for _ in range(self.k):
            self.finetune_step(ctx, params)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
