"""FedCurv: penalise drift along the other clients' Fisher information, with server-side sums only."""

from __future__ import annotations

from typing import Any

import torch

from fedcl.methods._utils import empirical_fisher, trainable
from fedcl.methods.base import CLMethod, TaskContext
from fedcl.sums import received

RECORD = "fedcurv"  # reply record "sum-fedcurv": arrays "u/<param>" = F_i and "v/<param>" = F_i * theta_i


class FedCurv(CLMethod):
    """Federated Curvature.

    Shoham et al., "Overcoming Forgetting in Federated Learning on Non-IID Data",
    NeurIPS 2019 Workshop on Federated Learning. After local training every round,
    client ``i`` estimates the diagonal empirical Fisher ``F_i`` of its model
    ``theta_i`` and sends ``u_i = F_i`` and ``v_i = F_i * theta_i`` (``ctx.outbox``).
    The server only sums them over the round's clients (``FCLFedAvg``'s ``sum-*``
    records, compatible with secure aggregation) and sends ``U = sum u_j`` and
    ``V = sum v_j`` back next round. The client subtracts its own ``u_i, v_i`` when it
    was in that sum (same round) and trains with

        loss + lam * sum_j!=i F_j (theta - theta_j)^2
             = loss + lam * sum (U' theta^2 - 2 V' theta) + const,

    written as ``lam * sum U' (theta - V'/U')^2`` so the logged loss stays
    non-negative (the constant needs no extra communication; the gradient is the
    paper's). Before any sums arrive (round 1), or with no other client in them,
    the method is plain local SGD.

    Parameters
    ----------
    lam : float, default 1.0
        Penalty strength ``lambda``.
    fisher_samples : int, default 256
        Samples of the round's data used to estimate ``F_i``.
    min_fisher : float, default 1e-12
        Entries of ``U'`` at or below this are treated as zero (no information).
    """

    name = "fedcurv"
    scenarios = frozenset({"class_incremental", "task_incremental", "domain_permuted"})
    blurry = True

    def __init__(self, lam: float = 1.0, fisher_samples: int = 256, min_fisher: float = 1e-12) -> None:
        self.lam = float(lam)
        self.fisher_samples = int(fisher_samples)
        self.min_fisher = float(min_fisher)
        self.own_u: dict[str, torch.Tensor] = {}
        self.own_v: dict[str, torch.Tensor] = {}
        self.own_round = -1
        self._terms: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    # ---- the others' curvature ------------------------------------------------
    def others(self, ctx: TaskContext) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{param: (U', V')}``: the server's sums minus this client's part of them (empty if none)."""
        got = received(ctx.payload, RECORD)
        if got is None:
            return {}
        arrays, sums_round = got
        # our own u_i, v_i are in the sum only if we sent them in the round it was made in
        own = sums_round == self.own_round
        out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, _ in trainable(ctx.model):
            u, v = arrays.get("u/" + name), arrays.get("v/" + name)
            if u is None or v is None:
                continue
            if own and name in self.own_u:
                u, v = u - self.own_u[name], v - self.own_v[name]
            out[name] = (u, v)
        return out

    def _penalty_terms(self, ctx: TaskContext) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{param: (U', theta*)}`` on the device, with ``theta* = V'/U'`` where ``U'`` carries information."""
        if self._terms is None:
            terms = {}
            for name, (u, v) in self.others(ctx).items():
                # (sum - own) can go slightly negative in float32: no information there
                informative = u > self.min_fisher
                u = torch.where(informative, u, torch.zeros_like(u))
                target = torch.where(informative, v / u.clamp_min(self.min_fisher), torch.zeros_like(v))
                if informative.any():
                    terms[name] = (u.to(ctx.device), target.to(ctx.device))
            self._terms = terms
        return self._terms

    def penalty(self, ctx: TaskContext) -> torch.Tensor:
        """``sum_params U' (theta - V'/U')^2`` (without ``lam``)."""
        terms = self._penalty_terms(ctx)
        params = dict(trainable(ctx.model))
        total = torch.zeros((), device=ctx.device)
        for name, (u, target) in terms.items():
            total = total + (u * (params[name] - target) ** 2).sum()
        return total

    # ---- hooks ------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, y: torch.Tensor, base_loss: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        if self.lam == 0.0 or not self._penalty_terms(ctx):
            return base_loss
        return base_loss + self.lam * self.penalty(ctx)

    def after_round(self, ctx: TaskContext) -> None:
        """Estimate ``F_i`` at the trained ``theta_i``; send ``u_i, v_i`` and keep them to subtract next round."""
        fisher = empirical_fisher(ctx, self.fisher_samples)
        theta = {n: p.detach().cpu() for n, p in trainable(ctx.model)}
        self.own_u = fisher
        self.own_v = {n: f * theta[n] for n, f in fisher.items()}
        self.own_round = ctx.server_round
        ctx.outbox[RECORD] = {**{"u/" + n: f for n, f in self.own_u.items()},
                              **{"v/" + n: v for n, v in self.own_v.items()}}
        self._terms = None

    # ---- state ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "own_u": {k: v.clone() for k, v in self.own_u.items()},
            "own_v": {k: v.clone() for k, v in self.own_v.items()},
            "own_round": self.own_round,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.own_u = {k: v.detach().cpu().clone() for k, v in state.get("own_u", {}).items()}
        self.own_v = {k: v.detach().cpu().clone() for k, v in state.get("own_v", {}).items()}
        self.own_round = int(state.get("own_round", -1))
        self._terms = None
