"""The solved ridge classifier as a model head, so the existing evaluator scores it unchanged."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedcl.analytic.features import ACTIVATIONS, RandomExpansion, backbone_dim

# Logit of a class with no training data (never seen, or forgotten). Finite on purpose: -inf
# would turn a cross-entropy on that class, or p log p in a membership-inference feature, into
# inf/NaN; a softmax still gives it probability 0 and argmax never picks it.
MASKED_LOGIT = -1e9


class AnalyticHead(nn.Module):
    """Drop-in replacement of ``model.head``: ``logits = act(h @ W_e) @ W`` in float64.

    ACIL grows its output layer as classes arrive; with the stream's global labels the same
    effect is a mask: classes outside ``active_classes`` get :data:`MASKED_LOGIT`. The logits
    are float64 so that two heads whose weights agree to float64 rounding also agree on
    every argmax. Not trainable: the backbone is frozen and ``W`` is a closed-form solution.

    Parameters
    ----------
    expansion : RandomExpansion
        The run's expansion layer (same seed as the clients').
    weight : torch.Tensor
        ``[d_e, C]`` (one head) or ``[H, d_e, C]`` (one solution per task id of a
        task-incremental model).
    active_classes : Sequence[int] | None, default None
        Classes with training data in the sums; ``None`` = all.
    """

    def __init__(
        self, expansion: RandomExpansion, weight: torch.Tensor, active_classes: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        w = weight.detach().to(torch.float64)
        if w.ndim == 2:
            w = w.unsqueeze(0)
        if w.ndim != 3 or w.shape[1] != expansion.expansion_dim:
            raise ValueError(f"weight must be [d_e, C] or [H, d_e, C] with d_e={expansion.expansion_dim}, "
                             f"got {tuple(weight.shape)}")
        self.expansion = expansion
        self.num_heads = int(w.shape[0])
        self.weight: torch.Tensor
        self.mask: torch.Tensor
        self.register_buffer("weight", w.clone())
        mask = torch.zeros(w.shape[2], dtype=torch.float64)
        if active_classes is not None:
            mask.fill_(MASKED_LOGIT)
            mask[torch.as_tensor(list(active_classes), dtype=torch.long)] = 0.0
        self.register_buffer("mask", mask)
        # the activation travels with the head's state, so a state dict alone rebuilds it (load_analytic_state)
        self.activation: torch.Tensor
        self.register_buffer("activation", torch.tensor(ACTIVATIONS.index(expansion.activation), dtype=torch.int64))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, h: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        if self.num_heads == 1:
            w = self.weight[0]
        elif task_id is None:
            raise ValueError("a multi-head analytic classifier needs the task id at forward time")
        else:
            w = self.weight[task_id]
        return self.expansion(h) @ w + self.mask


def install_head(
    model: nn.Module, expansion: RandomExpansion, weight: torch.Tensor,
    active_classes: Sequence[int] | None = None,
) -> AnalyticHead:
    """Replace ``model.head`` by the :class:`AnalyticHead` of ``weight``; return it.

    ``model(x, task_id)`` then gives the analytic logits, so ``fedcl.trainer.evaluate`` (and
    its task-incremental masking) evaluates the solved classifier as it evaluates any model.
    The backbone is left untouched. The head sits on the device of the model's parameters.
    """
    if expansion.in_features != backbone_dim(model):
        raise ValueError(f"expansion expects backbone width {expansion.in_features}, the model's is "
                         f"{backbone_dim(model)}")
    device = next(model.parameters()).device
    head = AnalyticHead(expansion, weight, active_classes).to(device)
    model.head = head
    return head


def active_classes(class_counts: torch.Tensor) -> list[int]:
    """Classes with at least one sample in the sums (what ACIL's growing head would hold)."""
    return [int(c) for c in torch.nonzero(class_counts > 0.5).flatten().tolist()]


HEAD_WEIGHT = "head.weight"  # the state-dict key that marks a model state holding an analytic head
HEAD_EXPANSION = "head.expansion.weight"
HEAD_ACTIVATION = "head.activation"


def head_state(expansion: RandomExpansion, weight: torch.Tensor,
               active_classes: Sequence[int] | None) -> dict[str, torch.Tensor]:
    """The ``head.*`` entries of a model state whose head is the :class:`AnalyticHead` of ``weight`` (CPU)."""
    head = AnalyticHead(expansion.to("cpu"), weight.detach().cpu(), active_classes)
    return {f"head.{k}": v for k, v in head.state_dict().items()}


def _switch_head(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *_: object) -> None:
    """``load_state_dict`` pre-hook: give ``module`` the analytic head the incoming state holds.

    A state with ``head.weight`` (an analytic head: expansion, solution, mask, activation)
    replaces a model's :class:`~fedcl.models.Heads` (or an analytic head of other
    shapes) before the tensors are copied, so the server's evaluator and unlearning
    evaluation load the global model of ``strategy=analytic`` like any other. A state with
    an ordinary head loads into a model that still has one; going back is refused.
    """
    key = prefix + HEAD_WEIGHT
    if key not in state_dict:
        if isinstance(getattr(module, "head", None), AnalyticHead):
            raise ValueError("this model holds an analytic head; a state with an ordinary head cannot be loaded "
                             "into it (strategy=analytic freezes its backbone and never goes back)")
        return
    weight = state_dict[key]
    expansion_weight = state_dict[prefix + HEAD_EXPANSION]
    current = getattr(module, "head", None)
    if isinstance(current, AnalyticHead) and current.weight.shape == weight.shape \
            and current.expansion.weight.shape == expansion_weight.shape:
        return
    activation = ACTIVATIONS[int(state_dict[prefix + HEAD_ACTIVATION])]
    d_b, d_e = expansion_weight.shape
    expansion = RandomExpansion(int(d_b), int(d_e), activation, seed=0)  # the weight comes from the state
    install_head(module, expansion, weight)


def accept_analytic_states(model: nn.Module) -> nn.Module:
    """Let ``model`` load states that hold an analytic head (see :func:`_switch_head`); returns ``model``.

    The hook is registered with the module itself as argument, so a ``copy.deepcopy`` of
    the model (the unlearning evaluation's copy) keeps it.
    """
    model.register_load_state_dict_pre_hook(_switch_head)
    return model
