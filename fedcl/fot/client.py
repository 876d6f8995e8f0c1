"""The client side of FOT's Global Principal Subspace Extraction (GPSE).

Bakman et al., "Federated Orthogonal Training: Mitigating Global Catastrophic
Forgetting in Continual Federated Learning", ICLR 2024. For every projected
layer the client forms its input matrix ``A_i`` on local data (conv layers:
im2col patches), the residual ``R_i = (I - U U^T) A_i`` against the current
global basis, the ratio ``r_i = ||R_i||_F / ||A_i||_F`` and a random sketch
``Y_i = R_i Omega_i`` with a private Gaussian ``Omega_i``. The server needs only
``sum_i Y_i``, ``sum_i n_i r_i`` and ``sum_i n_i``: ``sum_i Y_i`` is a random
sketch of ``[R_1 ... R_K]`` (block-diagonal Omega), so its left singular vectors
span the clients' joint residual subspace, and the sums can be computed under
secure aggregation.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Context, Message
from torch import nn

import fedcl.keys as keys
from fedcl.client.instruction import Instruction, workspace
from fedcl.config.schema import FOTStrategy
from fedcl.fot import protocol
from fedcl.fot.protocol import RecordType
from fedcl.privacy import gpse as dp_gpse
from fedcl.seeding import torch_generator
from fedcl.subspace import empty_basis, layer_inputs, projectable_layers, residual, sketch
from fedcl.unlearning import protocol as unlearn


def gpse_statistics(
    model: nn.Module,
    x: torch.Tensor,
    bases: dict[str, np.ndarray],
    *,
    sketch_factor: int = 1,
    max_samples: int = 500,
    generator: torch.Generator,
    batch_size: int = 256,
    max_columns: int = 20_000,
    task_id: int | None = None,
    dropout: bool = False,
    private: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per-layer sketches ``Y_i`` (``d x sketch_factor*d``, float32) and summable statistics.

    Returns ``(sketches, stats)`` with ``stats["<layer>/ratio-weighted"] = n_i r_i``
    and ``stats["num-examples"] = n_i``. At most ``max_samples`` local samples
    are used (a seeded random subset); ``dropout`` collects the layer inputs with
    the dropout layers on (:func:`~fedcl.subspace.layer_inputs`). ``private``: DP-GPSE's per-client
    bounds (:mod:`fedcl.privacy.gpse`: inputs clipped, sketch clipped to ``sqrt(max_samples p)``).
    """
    n = min(int(max_samples), int(x.shape[0]))
    idx = torch.randperm(int(x.shape[0]), generator=generator)[:n].to(x.device)
    layers = projectable_layers(model)
    inputs = layer_inputs(model, layers, x[idx], batch_size=batch_size, max_columns=max_columns, generator=generator,
                          task_id=task_id, dropout=dropout)
    sketches: dict[str, np.ndarray] = {}
    stats: dict[str, float] = {keys.NUM_EXAMPLES: float(n)}
    for name in list(inputs):
        A = inputs.pop(name)  # freed layer by layer: only one A and one Y live at a time
        if private:
            A = dp_gpse.bound_inputs(A, n)
        d = A.shape[0]
        U = torch.from_numpy(np.asarray(bases[name], dtype=np.float32)) if name in bases else empty_basis(d)
        R = residual(A, U)
        norm_a = float(torch.linalg.norm(A))
        ratio = float(torch.linalg.norm(R)) / norm_a if norm_a > 0 else 0.0
        Y = sketch(R, int(sketch_factor) * d, generator)
        if private:
            Y = dp_gpse.clip_sketch(Y, dp_gpse.sketch_bound(max_samples, Y.shape[1]))
        sketches[name] = Y.numpy()
        stats[f"{name}{protocol.RATIO_SUFFIX}"] = n * ratio
        del A, R
    return sketches, stats


def _statistics(instr: Instruction, model: nn.Module, x: torch.Tensor,
                bases: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float], float]:
    """This client's sketches, ``n_i r_i`` per layer and ``n_i`` under ``strategy``'s GPSE options."""
    fot = instr.cfg.strategy
    assert isinstance(fot, FOTStrategy), "GPSE statistics under a strategy other than FOT"
    sketches, stats = gpse_statistics(
        model, x, bases, sketch_factor=fot.sketch_factor, max_samples=fot.gpse_max_samples,
        # Omega_i is private to the client: the server never learns it
        generator=torch_generator(instr.seed, "omega", instr.client_id, instr.task_id),
        batch_size=256, task_id=instr.task_id, dropout=fot.gpse_dropout, private=dp_gpse.private_gpse(instr.cfg),
    )
    n = stats.pop(keys.NUM_EXAMPLES)
    return sketches, {k[: -len(protocol.RATIO_SUFFIX)]: v for k, v in stats.items()}, n


def handle(msg: Message, context: Context, instr: Instruction) -> Message:
    """The ``query.gpse`` handler: this client's sketches and ratios under the final global model of a task.

    Samples of forgotten classes (served deletion requests) never enter the sketch. The
    server only ever needs the sums, so the reply can go through secure aggregation.
    """
    ws = workspace(instr, msg)
    # held-out non-members and forgotten classes / samples of an unlearning run never shape the bases either
    x, _, _ = unlearn.exclusions(instr).training_data(*ws.stream.client_data(instr.task_id, instr.client_id),
                                                        instr.task_id, instr.client_id)
    sketches, ratios, n = _statistics(instr, ws.model, x.to(ws.device), protocol.query_bases(msg))
    return protocol.gpse_reply(msg, sketches, ratios, n)


def train_records(msg: Message, instr: Instruction, model: nn.Module, x: torch.Tensor,
                  last_round_of_task: bool) -> dict[str, RecordType]:
    """FOT's official GPSE (``strategy.gpse_model=local``): the sketches of the locally trained model.

    In its last round of a task a client sketches its inputs right after local training, with
    the model it is about to send (the official ``FedAVGTrainer.train``: ``get_activations``
    after ``trainer.train`` when ``task_end``), on its training data ``x`` (forgotten classes
    already dropped); the records ride on the train reply. Empty in every other case.
    """
    fot = instr.cfg.strategy
    if not (isinstance(fot, FOTStrategy) and fot.gpse_model == "local" and last_round_of_task):
        return {}
    sketches, ratios, n = _statistics(instr, model, x, protocol.query_bases(msg))
    return protocol.gpse_records(sketches, ratios, n)
