"""The server side of FOT: FedProject and the basis growth from summed GPSE sketches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedcl.subspace import empty_basis, energy_threshold, grow_basis, occupancy, project_update


@dataclass
class FOTState:
    """Global bases and threshold of Federated Orthogonal Training.

    Bakman et al., "Federated Orthogonal Training: Mitigating Global Catastrophic
    Forgetting in Continual Federated Learning", ICLR 2024.

    Parameters
    ----------
    bases : dict[str, torch.Tensor]
        Orthonormal ``d x k`` basis per projected layer (module name); empty at first.
    eps : float, default 0.96
        Energy threshold of the basis growth.
    d_eps : float, default 0.0
        Increment of ``eps`` after each task.
    min_new : int, default 0
        Directions added per layer and task even when the basis already explains ``eps``
        (the official code adds one).
    growth : list[dict]
        Per basis update: the layers' occupancy (:func:`~fedcl.subspace.occupancy`, with the
        ``eps'`` used and ``r_bar``).
    """

    bases: dict[str, torch.Tensor] = field(default_factory=dict)
    eps: float = 0.96
    d_eps: float = 0.0
    min_new: int = 0
    growth: list[dict[str, Any]] = field(default_factory=list)

    def project(
        self, global_old: dict[str, torch.Tensor], aggregated: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """FedProject: ``Delta = W - W_bar``, projected per layer; return ``W - Delta_proj``."""
        out = dict(aggregated)  # unprojected entries (biases, heads, new layers) take the plain average
        for key, value in aggregated.items():
            layer = key[: -len(".weight")] if key.endswith(".weight") else ""
            if layer in self.bases and self.bases[layer].shape[1] > 0:
                delta = project_update({key: global_old[key] - value}, self.bases)[key]
                out[key] = global_old[key] - delta
        return out

    def update_bases(
        self, sum_sketches: dict[str, np.ndarray], sum_ratio_weighted: dict[str, float], total_examples: float
    ) -> None:
        """Grow every layer's basis from ``sum_i Y_i`` and ``r_bar = sum n_i r_i / sum n_i``; then ``eps += d_eps``."""
        if total_examples <= 0:
            raise ValueError("FOT: GPSE statistics with no examples")
        layers: dict[str, Any] = {}
        for name, Y in sum_sketches.items():
            Yt = torch.as_tensor(np.asarray(Y), dtype=torch.float32)
            U = self.bases.get(name, empty_basis(Yt.shape[0]))
            r_bar = float(sum_ratio_weighted.get(name, 0.0)) / float(total_examples)
            self.bases[name] = grow_basis(U, Yt, r_bar, self.eps, self.min_new)
            layers[name] = {**occupancy(self.bases[name].shape[1], Yt.shape[0], energy_threshold(r_bar, self.eps)),
                            "r_bar": r_bar, "added": int(self.bases[name].shape[1] - U.shape[1])}
        self.growth.append({"eps": self.eps, "layers": layers})
        self.eps = min(self.eps + self.d_eps, 1.0)

    def basis_dims(self) -> dict[str, int]:
        """Columns of each layer's basis."""
        return {k: int(v.shape[1]) for k, v in self.bases.items()}

    def state_dict(self) -> dict[str, Any]:
        """Bases (float32 numpy) and thresholds, for checkpoints."""
        return {
            "bases": {k: v.detach().cpu().numpy().astype(np.float32) for k, v in self.bases.items()},
            "eps": self.eps,
            "d_eps": self.d_eps,
            "growth": self.growth,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.bases = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in state["bases"].items()}
        self.eps = float(state["eps"])
        self.d_eps = float(state["d_eps"])
        self.growth = list(state["growth"])
