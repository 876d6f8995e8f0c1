"""Subspace math shared by FOT (server projection, client GPSE) and GPM (local gradient projection).

Conventions: a layer's input matrix ``A`` is ``d x m`` with samples as columns;
conv layers are unfolded (im2col), so their weight is viewed as
``(out, in*kh*kw)`` and ``conv(x) == W_view @ patches``. A basis ``U`` is a
float32 ``d x k`` tensor with orthonormal columns (``k`` may be 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def projectable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Linear and conv layers whose weights are projected, keyed by module name.

    Task heads of a multi-head model (``model.head.heads`` with more than one
    head) are excluded: each task owns its head, so there is nothing to protect.
    A single shared head is projected, as FOT and GPM do for Permuted MNIST.
    """
    excluded: set[int] = set()
    head = getattr(model, "head", None)
    if head is not None and getattr(head, "num_heads", 1) > 1:
        excluded = {id(m) for m in head.modules()}
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d)) and id(m) not in excluded
    }


def weight_view(weight: torch.Tensor) -> torch.Tensor:
    """A layer weight as ``(out, d)``: conv kernels flattened to ``in*kh*kw``."""
    return weight.reshape(weight.shape[0], -1)


def unfold_input(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """im2col patches of a conv layer's input: ``(in*kh*kw, batch*L)``."""
    if isinstance(layer.padding, str):
        raise ValueError(f"string padding {layer.padding!r} is not supported for im2col; use integer padding")
    cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
    return cols.permute(1, 0, 2).reshape(cols.shape[1], -1)


@torch.no_grad()
def layer_inputs(
    model: nn.Module,
    layers: dict[str, nn.Module],
    x: torch.Tensor,
    *,
    batch_size: int = 256,
    max_columns: int = 20_000,
    generator: torch.Generator | None = None,
    task_id: int | None = None,
    dropout: bool = False,
) -> dict[str, torch.Tensor]:
    """Input matrices ``A_l`` (``d_l x m_l``, float32, CPU) of ``layers`` on ``x``.

    Conv layers contribute one column per patch; their columns are subsampled
    (seeded by ``generator``) to at most ``max_columns`` so memory stays bounded
    (``d * max_columns * 4`` bytes per layer). Multi-head models run the head of
    ``task_id`` (0 when not given). The model is put back in its previous mode.

    ``dropout=False`` runs the model in eval mode. ``dropout=True`` is FOT's official
    MNIST code (``trainer/mnist_trainer.py``, ``collect_activations`` after
    ``model.train()``): the dropout layers stay on, so every layer sees inputs thinned
    by the dropouts *before* it, but a layer fed by a dropout records that dropout's
    input (the official hooks sit on the ReLUs, before the dropout); batch norms stay
    in eval mode (their running statistics must not move). The dropout masks come
    from ``generator``.
    """
    multi_head = getattr(getattr(model, "head", None), "num_heads", 1) > 1
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    thinned: list[tuple[torch.Tensor, torch.Tensor]] = []  # (dropout output, its input) of the current batch
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)] if dropout else []
    handles = _input_hooks(layers, drops, chunks, thinned)
    was_training = model.training
    model.eval()
    for m in drops:
        m.train()
    try:
        with torch.random.fork_rng(devices=[]):
            if drops:  # the masks: seeded, and the caller's global RNG is left as it was
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)) if generator else 0)
            for start in range(0, x.shape[0], batch_size):
                thinned.clear()
                batch = x[start : start + batch_size]
                model(batch, task_id or 0) if multi_head else model(batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: _capped_columns(torch.cat(parts, dim=1), max_columns, generator) for name, parts in chunks.items()}


def _input_hooks(layers: dict[str, nn.Module], drops: Sequence[nn.Module], chunks: dict[str, list[torch.Tensor]],
                 thinned: list[tuple[torch.Tensor, torch.Tensor]]) -> list[Any]:
    """Forward hooks: each layer appends its input (as columns) to ``chunks``; each dropout notes its input."""

    def record(_m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        thinned.append((out, inputs[0]))

    def hook(name: str, layer: nn.Module):  # noqa: ANN202 - torch hook signature
        def fn(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            inp = inputs[0]
            # a layer fed by a dropout records the dropout's input (the official hooks sit before it)
            inp = next((src for out, src in thinned if out is inp), inp).detach()
            if isinstance(layer, nn.Conv2d):
                chunks[name].append(unfold_input(layer, inp).float().cpu())
            else:
                chunks[name].append(inp.reshape(-1, inp.shape[-1]).T.float().cpu())

        return fn

    handles = [layer.register_forward_hook(hook(name, layer)) for name, layer in layers.items()]
    return handles + [m.register_forward_hook(record) for m in drops]


def _capped_columns(A: torch.Tensor, max_columns: int, generator: torch.Generator | None) -> torch.Tensor:
    """``A`` with at most ``max_columns`` columns: a seeded random subset, kept in order."""
    if A.shape[1] > max_columns:
        idx = torch.randperm(A.shape[1], generator=generator)[:max_columns]
        A = A[:, idx.sort().values]
    return A.contiguous()


def empty_basis(d: int) -> torch.Tensor:
    """A ``d x 0`` basis."""
    return torch.zeros(d, 0, dtype=torch.float32)


def residual(A: torch.Tensor, U: torch.Tensor | None) -> torch.Tensor:
    """``(I - U U^T) A`` without forming the ``d x d`` projector."""
    if U is None or U.shape[1] == 0:
        return A
    return A - U @ (U.T @ A)


def sketch(R: torch.Tensor, p: int, generator: torch.Generator, block: int = 8192) -> torch.Tensor:
    """``Y = R Omega`` with a Gaussian ``Omega`` (``m x p``) drawn block by block from ``generator``.

    Only one ``block x p`` slice of Omega exists at a time, so the memory is
    ``d x p`` for Y plus ``block x p`` regardless of ``m``.
    """
    d, m = R.shape
    Y = torch.zeros(d, p, dtype=torch.float32)
    for start in range(0, m, block):
        cols = R[:, start : start + block]
        omega = torch.randn(cols.shape[1], p, generator=generator, dtype=torch.float32)
        Y += cols @ omega
    return Y


def threshold_rank(s: torch.Tensor, energy: float) -> int:
    """Smallest ``k >= 1`` with ``sum_{j<=k} s_j^2 / sum_j s_j^2 > energy`` (all columns if never)."""
    s2 = s.double() ** 2
    total = float(s2.sum())
    if total <= 0.0:
        return 0
    frac = torch.cumsum(s2, 0) / total
    above = torch.nonzero(frac > energy)
    return int(above[0]) + 1 if above.numel() else int(s.numel())


def orthonormal_extend(U: torch.Tensor, V: torch.Tensor, tol: float = 1e-5) -> torch.Tensor:
    """``[U, Q]`` with ``Q`` an orthonormal basis of ``V``'s part outside ``span(U)``; never more than ``d`` columns."""
    d = U.shape[0]
    if V.shape[1] == 0 or U.shape[1] >= d:
        return U
    for _ in range(2):  # twice is enough for orthogonality to float32 precision
        V = V - U @ (U.T @ V)
    Q, Rq = torch.linalg.qr(V.double())
    keep = torch.abs(torch.diagonal(Rq)) > tol * max(1.0, float(torch.abs(torch.diagonal(Rq)).max()))
    Q = Q[:, keep].float()
    return torch.cat([U, Q], dim=1)[:, :d].contiguous()


def energy_threshold(r_bar: float, eps: float) -> float:
    """FOT's ``eps' = (r_bar - (1 - eps)) / r_bar``: the share of the residual energy still to capture.

    ``r_bar`` is the (sample-weighted) residual ratio ``||R||/||A||`` against the current basis; the
    basis explains a fraction ``eps`` once the new directions take ``eps'`` of the residual's energy.
    ``eps' <= 0``: the basis already explains enough.
    """
    return (r_bar - (1.0 - eps)) / r_bar if r_bar > 0.0 else float("-inf")


def grow_basis(U: torch.Tensor, Y: torch.Tensor, r_bar: float, eps: float, min_new: int = 0) -> torch.Tensor:
    """FOT's basis growth from a sketch ``Y`` of the residual subspace (Bakman et al., ICLR 2024).

    The new directions are the first ``k`` left singular vectors of ``Y`` with
    ``k = min{k : sum_{j<=k} s_j^2 / sum s_j^2 > eps'}`` (:func:`energy_threshold`).
    When ``eps' <= 0`` the existing basis already explains enough: nothing is added,
    unless ``min_new > 0`` (the official code's loop always keeps at least one
    direction, ``FedAVGAggregator.expand_orth_set``). A zero residual adds nothing.
    """
    d = U.shape[0]
    if r_bar <= 0.0 or U.shape[1] >= d:
        return U
    eps_prime = energy_threshold(r_bar, eps)
    if eps_prime <= 0.0 and min_new <= 0:
        return U
    Uy, s, _ = torch.linalg.svd(Y.double(), full_matrices=False)
    k = threshold_rank(s, eps_prime) if eps_prime > 0.0 else 0
    return orthonormal_extend(U, Uy[:, : max(k, 1, min_new)].float())


def occupancy(dim: int, input_dim: int, eps_used: float | None = None) -> dict[str, float | int | None]:
    """One layer's subspace occupancy: basis columns, the layer's input dimension, their share, ``eps'``."""
    return {"dim": int(dim), "input_dim": int(input_dim), "share": dim / input_dim if input_dim else 0.0,
            "eps_used": None if eps_used is None or not math.isfinite(eps_used) else float(eps_used)}


def exhausted(layers: dict[str, dict[str, Any]], limit: float = 0.9) -> dict[str, str]:
    """A warning per layer whose basis holds more than ``limit`` of its input directions."""
    return {name: (f"plasticity nearly exhausted: layer {name} holds {int(o['dim'])} of {int(o['input_dim'])} "
                   f"directions ({100 * float(o['share']):.0f} %)")
            for name, o in layers.items() if float(o["share"]) > limit}


def principal_angles(U: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between ``span(U)`` and ``span(V)`` (orthonormal columns).

    ``min(k_U, k_V)`` angles; an empty basis gives none.
    """
    if U.shape[1] == 0 or V.shape[1] == 0:
        return torch.zeros(0, dtype=torch.float64)
    cos = torch.linalg.svdvals(U.double().T @ V.double()).clamp(-1.0, 1.0)
    return torch.arccos(cos).sort().values


def project_delta(delta: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """``Delta - (Delta U) U^T`` on the ``(out, d)`` view of a weight-shaped tensor."""
    if U.shape[1] == 0:
        return delta
    D = weight_view(delta)
    Ud = U.to(D.dtype).to(D.device)
    return (D - (D @ Ud) @ Ud.T).reshape(delta.shape)


def project_update(delta: dict[str, torch.Tensor], bases: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Project each ``<layer>.weight`` entry of a state-dict-shaped update away from its basis."""
    out = {}
    for key, value in delta.items():
        layer = key[: -len(".weight")] if key.endswith(".weight") else None
        U = bases.get(layer) if layer is not None else None
        out[key] = project_delta(value, U) if U is not None else value
    return out


@torch.no_grad()
def project_gradients(model: nn.Module, bases: dict[str, torch.Tensor]) -> None:
    """In place: each projected layer's weight gradient loses its component in ``span(U)`` (GPM)."""
    for name, layer in projectable_layers(model).items():
        U = bases.get(name)
        w = getattr(layer, "weight", None)
        if U is None or w is None or w.grad is None:
            continue
        w.grad.copy_(project_delta(w.grad, U))


def as_numpy_bases(bases: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Bases as float32 numpy arrays (for records and checkpoints)."""
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in bases.items()}


def largest_angles(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    """Per layer both runs have: the largest principal angle (radians) between the two bases, and their sizes.

    Of two bases of different sizes the angles of the smaller one's span are taken, so 0 means one span
    lies inside the other; ``None`` when either basis is empty.
    """
    out: dict[str, dict[str, Any]] = {}
    for layer in sorted(set(ours) & set(theirs)):
        U, V = torch.as_tensor(ours[layer]), torch.as_tensor(theirs[layer])
        angles = principal_angles(U, V)
        out[layer] = {"largest_angle_rad": float(angles.max()) if angles.numel() else None,
                      "dims": [int(U.shape[1]), int(V.shape[1])]}
    return out


# ---- occupancy reported by clients (local subspace methods such as GPM) -----------------------
# the client-metric keys "subspace-<field>/<layer>": every client reports its own bases' occupancy
OCCUPANCY_FIELDS = {"dim": "subspace-dim", "input_dim": "subspace-input-dim", "eps_used": "subspace-eps"}


def occupancy_metrics(layers: dict[str, dict[str, Any]]) -> dict[str, float]:
    """A client's occupancy (layer -> :func:`occupancy`) as flat metric entries ("subspace-dim/<layer>", ...)."""
    out: dict[str, float] = {}
    for layer, occ in layers.items():
        for field, prefix in OCCUPANCY_FIELDS.items():
            if occ.get(field) is not None:
                out[f"{prefix}/{layer}"] = float(occ[field])
    return out


def parse_occupancy_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The inverse of :func:`occupancy_metrics` (layers without a dimension are left out)."""
    fields = {prefix: field for field, prefix in OCCUPANCY_FIELDS.items()}
    raw: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        prefix, _, layer = str(key).partition("/")
        if prefix in fields and layer:
            raw.setdefault(layer, {})[fields[prefix]] = float(value)
    return {layer: occupancy(int(v["dim"]), int(v["input_dim"]), v.get("eps_used"))
            for layer, v in raw.items() if "dim" in v and "input_dim" in v}
