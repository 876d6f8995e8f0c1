"""Influence-approximation unlearning (IAU), federated: one step from gradient sums over clients."""

from __future__ import annotations

import torch

from fedcl.errors import ConfigError
from fedcl.unlearning import protocol
from fedcl.unlearning.base import Federation, State, Unlearner, UnlearnJob

STEPS = ("adam", "sgd")


def iau_step(state: State, grad_retain: State, grad_forget: State, lr: float, step: str) -> State:
    """``theta - lr * u(g)`` with ``g = mean retain gradient - mean forget gradient``.

    ``u`` is Adam's first step (``g / (|g| + 1e-8)``: zero-initialised moments after bias
    correction, as the authors' single ``optimizer.step()`` of ``torch.optim.Adam``) or
    the identity (plain SGD).
    """
    out = dict(state)
    for name, gr in grad_retain.items():
        g = (gr - grad_forget[name]).to(state[name].dtype)
        u = g / (g.abs() + 1e-8) if step == "adam" else g
        out[name] = state[name] - lr * u
    return out


class IAU(Unlearner):
    """Influence Approximation Unlearning with sums over clients.

    Liu, Wu, Lian and Chen, "Efficient Machine Unlearning via Influence Approximation"
    (2025; code: github.com/Lolo1222/IAU, ``IAU_unlearn.py``). Influence-based unlearning
    moves the model by ``H^-1 grad l(z)`` of the removed samples; the paper derives that
    forgetting ``z`` is, to first order, the incremental learning ("memorising") step of
    the remaining data taken *against* ``z``, which needs gradients only, no Hessian. The
    authors' step: accumulate the gradient of the mean loss on the remaining data and of
    minus the mean loss on the forget data, then take one optimiser step (Adam, lr 1e-3).

    Federated: every client returns the sums over its samples of the loss gradient on its
    forget and on its retain data, and the counts (the ``gradient`` query); the server
    needs only the sums over clients (secure-aggregation compatible), forms
    ``g = G_retain / n_retain - G_forget / n_forget`` and takes the step. One
    communication round. The authors' training-time gradient-restriction loss
    (``l + alpha ||grad l||``, which makes the one-step approximation tighter) is a change
    to local training and is not part of this method.

    Data access: both gradient sums over the data each client may use under
    ``unlearning.data_access`` (``history``: every seen task; ``buffer``: the current task
    and the replay buffer).

    Parameters
    ----------
    lr : float, default 0.001
        Step size (the authors' Adam learning rate).
    step : str, default "adam"
        ``adam`` (Adam's first step, the authors' optimiser) or ``sgd`` (``theta - lr g``).
    max_samples : int | None, default None
        Per client and task, samples of each part used (None: all).
    """

    name = "iau"

    def __init__(self, lr: float = 0.001, step: str = "adam", max_samples: int | None = None) -> None:
        if not lr > 0:
            raise ConfigError("unlearning.lr", lr, "a number > 0 (the IAU step size)")
        if step not in STEPS:
            raise ConfigError("unlearning.step", step, f"one of {list(STEPS)}")
        self.lr, self.step, self.max_samples = float(lr), step, max_samples

    def unlearn(self, state: State, job: UnlearnJob, fed: Federation) -> tuple[State, int]:
        clients = sorted(set(job.retain_clients) | set(job.forget_clients))
        opts = job.forget_options("gradient", max_samples=self.max_samples)
        sums, metrics = fed.sums("gradient", clients, state, opts)
        nf, nr = float(metrics.get(protocol.NUM_FORGET, 0.0)), float(metrics.get(protocol.NUM_RETAIN, 0.0))
        if nf == 0:
            return state, 1  # no client holds the forget data: nothing to step against
        gf = {k: v / nf for k, v in sums[protocol.GRAD_FORGET].items()}
        gr = {k: v / nr if nr > 0 else torch.zeros_like(v) for k, v in sums[protocol.GRAD_RETAIN].items()}
        return iau_step(state, gr, gf, self.lr, self.step), 1
