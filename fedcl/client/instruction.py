"""What the server asks of one logical client: the message contract of a round and the client's workspace.

The server writes, and the client reads, one config record per message. Its keys
(:mod:`fedcl.keys`) are written by :func:`train_config` / :func:`query_config` (used by
the strategies) and read by :func:`parse` (used by every client handler), so the
contract lives here once. A handler then asks for a :class:`Workspace`: the run's
stream, the device, and the model holding the global weights the message carries.
Every client derives its own data from (seed, client id, number of clients): no
data travels in messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType

import fedcl.keys as keys
from fedcl.config import Config, from_json
from fedcl.data import Stream, build_stream
from fedcl.models import build_model
from fedcl.nodes import apply_node_config
from fedcl.seeding import seed_globals
from fedcl.threads import match_torch_threads
from fedcl.trainer import pick_device

TRAIN = MessageType.TRAIN


def action_of(msg: Message) -> str:
    """The message's action (``train``, ``query.gpse``, ...): its type, or the one SecAgg+ carried for it."""
    rec = msg.content.config_records.get(keys.CONFIG) if msg.has_content() else None
    if isinstance(rec, ConfigRecord) and keys.ACTION in rec:
        return str(rec[keys.ACTION])
    return str(msg.metadata.message_type)


def query_config(cfg_json: str, server_round: int, client_id: int, task_id: int, **extra: Any) -> ConfigRecord:
    """The config record of a query message (GPSE, unlearning): who, which round and task, the run config."""
    return ConfigRecord({keys.SERVER_ROUND: server_round, keys.CLIENT_ID: client_id, keys.TASK_ID: task_id,
                         keys.RUN_CONFIG_JSON: cfg_json, **extra})


def train_config(
    cfg_json: str, server_round: int, client_id: int, task_id: int, *, task_round: int, last_round_of_task: bool,
    lr: float, local_epochs: int, proximal_mu: float, state_dir: str | None, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config keys of a ``train`` message (a strategy adds its own with ``super()``)."""
    out: dict[str, Any] = {
        keys.SERVER_ROUND: server_round, keys.CLIENT_ID: client_id, keys.TASK_ID: task_id,
        keys.TASK_ROUND: task_round, keys.LAST_ROUND_OF_TASK: last_round_of_task, keys.LR: lr,
        keys.LOCAL_EPOCHS: local_epochs, keys.RUN_CONFIG_JSON: cfg_json,
    }
    if proximal_mu > 0:
        out[keys.PROXIMAL_MU] = proximal_mu
    if state_dir:
        out[keys.STATE_DIR] = state_dir
    out.update(extra or {})
    return out


@dataclass(frozen=True)
class Instruction:
    """The parsed config record of one message.

    Parameters
    ----------
    action : str
        ``train``, ``query.gpse``, ``query.unlearn`` or ``query.node_info``.
    cfg : Config
        The run config (with the SuperNode's ``data-dir`` in a deployment).
    client_id, task_id, server_round : int
        The logical client, its task and the 1-based server round.
    record : ConfigRecord
        The whole record, for the keys of one action (:meth:`get`).
    """

    action: str
    cfg: Config
    client_id: int
    task_id: int
    server_round: int
    record: ConfigRecord

    @property
    def seed(self) -> int:
        return self.cfg.seed

    def get(self, key: str, default: Any = None) -> Any:
        """An action-specific key of the record (absent keys are optional by the contract, e.g. ``attempt``)."""
        return self.record.get(key, default)

    @property
    def forget_classes(self) -> list[int]:
        """Classes of served deletion requests: they never train the model again."""
        return [int(c) for c in self.get(keys.FORGET_CLASSES) or []]


def parse(msg: Message, context: Context) -> Instruction:
    """The instruction a message carries (the run config is parsed once per process)."""
    rec = msg.content[keys.CONFIG]
    assert isinstance(rec, ConfigRecord)
    client_id = int(rec[keys.CLIENT_ID])  # type: ignore[arg-type]
    cfg = apply_node_config(from_json(str(rec[keys.RUN_CONFIG_JSON])), context, client_id)
    return Instruction(action=action_of(msg), cfg=cfg, client_id=client_id, task_id=int(rec[keys.TASK_ID]),  # type: ignore[arg-type]
                       server_round=int(rec[keys.SERVER_ROUND]), record=rec)  # type: ignore[arg-type]


@dataclass
class Workspace:
    """What a handler computes with: the device, the stream and the model with the message's weights."""

    device: torch.device
    stream: Stream
    model: torch.nn.Module


def workspace(instr: Instruction, msg: Message) -> Workspace:
    """Build the stream (cached per process) and the model, load the global weights, seed the draws."""
    cfg = instr.cfg
    device = pick_device(cfg.device)
    stream = build_stream(cfg.stream, cfg.federation.num_clients, cfg.seed)
    # performance (simulations/benchmarks/results/profile.md): materialised slices stay in this process up
    # to backend.data_cache_mb, and a Ray actor runs as many torch threads as the CPUs Ray gave it
    stream.cache.set_budget(cfg.backend.data_cache_mb)
    match_torch_threads()
    # dropout masks, and the global draws of Flower's client mods (LocalDpMod's noise, SecAgg+'s rounding)
    seed_globals(cfg.seed, "client", instr.client_id, instr.server_round, msg.metadata.message_type)
    model = build_model(cfg.model, stream.in_shape, stream.num_classes, stream.num_heads).to(device)
    arrays = msg.content[keys.ARRAYS]
    assert isinstance(arrays, ArrayRecord)
    model.load_state_dict(arrays.to_torch_state_dict())
    return Workspace(device, stream, model)


def arrays_of(tensors: dict[str, torch.Tensor]) -> ArrayRecord:
    """An ArrayRecord of tensors (moved to the CPU), the way every reply carries weights and statistics."""
    return ArrayRecord({k: Array(v.detach().cpu().numpy()) for k, v in tensors.items()})


__all__ = ["TRAIN", "Instruction", "Workspace", "action_of", "arrays_of", "parse", "query_config", "train_config",
           "workspace"]
