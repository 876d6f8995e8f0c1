"""The Flower ClientApp: one local continual-learning round per ``train`` message.

Every client derives its own data from (seed, client id, number of clients): no
data travels in messages. The server names the logical client, its task and the
round; the client restores its method state, trains, and returns its weights,
``num-examples``, metrics and any strategy payload as separate records.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedcl import keys
from fedcl.data import Stream, build_stream
from fedcl.data.slice_cache import DEFAULT_BUDGET_MB
from fedcl.errors import DataError
from fedcl.faults import FaultPlan
from fedcl.methods import build_method
from fedcl.methods.base import TaskContext, state_nbytes
from fedcl.models import build_model
from fedcl.privacy.client_mod import privacy_mod
from fedcl.seeding import seed_globals
from fedcl.state import open_store
from fedcl.threads import match_torch_threads
from fedcl.trainer import TrainConfig, derive_seed, pick_device, train_local
from fedcl.unlearning.client import drop_classes

# privacy_mod: SecAgg+ stages and Flower's DP client mods, as the run's privacy config asks
app = ClientApp(mods=[privacy_mod])


@lru_cache(maxsize=8)
def _parse_config(blob: str) -> dict[str, Any]:
    cfg: dict[str, Any] = json.loads(blob)
    return cfg


def _on_device(data: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return data[0].to(device), data[1].to(device)


def _train_config(cfg: dict[str, Any], rec: ConfigRecord) -> TrainConfig:
    tr = cfg["train"]
    return TrainConfig(
        lr=float(rec.get(keys.LR, tr["lr"])),  # type: ignore[arg-type]
        local_epochs=int(rec.get(keys.LOCAL_EPOCHS, tr["local_epochs"])),  # type: ignore[arg-type]
        batch_size=int(tr["batch_size"]),
        momentum=float(tr["momentum"]),
        weight_decay=float(tr["weight_decay"]),
        proximal_mu=float(rec.get(keys.PROXIMAL_MU, 0.0)),  # type: ignore[arg-type]
    )


def _prepare(
    msg: Message, context: Context
) -> tuple[ConfigRecord, dict[str, Any], int, int, int, int, torch.device, Stream, torch.nn.Module]:
    """What every handler needs: config, ids, the stream and the model holding the global weights."""
    rec = msg.content[keys.CONFIG]
    assert isinstance(rec, ConfigRecord)
    cfg = _parse_config(str(rec[keys.RUN_CONFIG_JSON]))
    client_id = int(rec[keys.CLIENT_ID])  # type: ignore[arg-type]
    cfg = apply_node_config(cfg, context, client_id)  # deployment: SuperNode's data-dir / partition
    task_id = int(rec[keys.TASK_ID])  # type: ignore[arg-type]
    server_round = int(rec[keys.SERVER_ROUND])  # type: ignore[arg-type]
    seed = int(cfg["seed"])
    device = pick_device(str(cfg["device"]))
    stream = build_stream(cfg["stream"], cfg["federation"]["num_clients"], seed)
    # performance (simulations/benchmarks/results/profile.md): materialised slices stay in this process up
    # to backend.data_cache_mb, and a Ray actor runs as many torch threads as the CPUs Ray gave it
    stream.cache.set_budget(cfg.get("backend", {}).get("data_cache_mb", DEFAULT_BUDGET_MB))
    match_torch_threads()
    # dropout masks, and the global draws of Flower's client mods (LocalDpMod's noise, SecAgg+'s rounding)
    seed_globals(seed, "client", client_id, server_round, msg.metadata.message_type)
    model = build_model(cfg["model"], stream.in_shape, stream.num_classes, stream.num_heads).to(device)
    arrays = msg.content[keys.ARRAYS]
    assert isinstance(arrays, ArrayRecord)
    model.load_state_dict(arrays.to_torch_state_dict())
    return rec, cfg, client_id, task_id, server_round, seed, device, stream, model


def run_train(msg: Message, context: Context) -> Message:
    """Train one logical client for one round; the body of the ``train`` handler."""
    t0 = time.perf_counter()
    rec, cfg, client_id, task_id, server_round, seed, device, stream, model = _prepare(msg, context)
    # faults= config group: a deterministic crash / delay / NaN reply for tests and drills (fedcl/faults.py)
    faults = FaultPlan.draw(cfg.get("faults"), seed, server_round, client_id, int(rec.get(keys.ATTEMPT, 0)))  # type: ignore[arg-type]
    faults.before_train(client_id, server_round)
    x, y = _on_device(stream.client_data(task_id, client_id), device)
    # unlearning: classes of served deletion requests never train the model again
    forget = [int(c) for c in rec.get(keys.FORGET_CLASSES, []) or []]  # type: ignore[union-attr]
    x, y = drop_classes(x, y, forget)

    store = open_store(cfg["federation"]["state_store"], context, rec.get(keys.STATE_DIR),  # type: ignore[arg-type]
                       cfg["federation"].get("state_memory_mb", 256))
    saved = store.load(client_id)
    method = build_method(cfg["method"]["name"], cfg["method"].get("params"))
    method.load_state_dict(saved.get("method", {}))
    if forget:
        # samples of a forgotten class stored before the request must not be replayed either
        method.forget_classes(forget)
    seen: list[int] = list(saved.get("seen_tasks", []))
    new_task = task_id not in seen
    if new_task:
        seen.append(task_id)

    ctx = TaskContext(
        model=model,
        task_id=task_id,
        client_id=client_id,
        server_round=server_round,
        task_round=int(rec[keys.TASK_ROUND]),  # type: ignore[arg-type]
        last_round_of_task=bool(rec[keys.LAST_ROUND_OF_TASK]),
        x=x,
        y=y,
        device=device,
        num_classes=stream.num_classes,
        task_classes=list(stream.tasks[task_id].classes),
        seen_tasks=seen,
        global_params={k: v.detach().clone() for k, v in model.named_parameters()},
        generator=torch.Generator().manual_seed(derive_seed(seed, "batches", client_id, server_round)),
        multi_head=stream.multi_head,
        payload={k: v for k, v in msg.content.items() if k not in (keys.ARRAYS, keys.CONFIG)},
        task_data=lambda t: drop_classes(*_on_device(stream.client_data(t, client_id), device), forget),
    )
    if new_task:
        method.before_task(ctx)
    result = train_local(method, ctx, _train_config(cfg, rec))
    if ctx.last_round_of_task:
        method.after_task(ctx)

    method_state = method.state_dict()
    store.save(client_id, {"method": method_state, "seen_tasks": seen, "last_round": server_round})

    content = RecordDict(
        {
            keys.ARRAYS: ArrayRecord(
                {k: Array(v.detach().cpu().numpy()) for k, v in model.state_dict().items()}
            ),
            keys.METRICS: MetricRecord(
                {
                    keys.NUM_EXAMPLES: int(result.num_examples),
                    keys.TRAIN_LOSS: float(result.loss),
                    keys.TRAIN_ACC: float(result.acc),
                    keys.STATE_BYTES: int(state_nbytes(method_state)),
                    keys.TRAIN_SECONDS: float(time.perf_counter() - t0),
                    **{k: float(v) for k, v in ctx.metrics.items()},
                }
            ),
        }
    )
    if cfg["eval"].get("local_forgetting", False):  # own model on own tasks, before averaging
        from fedcl.local_eval import local_eval_record

        content[keys.LOCAL_EVAL] = local_eval_record(model, stream, seen, client_id, cfg["eval"], device)
    if rec.get(keys.REPORT_CLIENT_ID):  # FedEraser keeps individual updates: it must know whose they are
        content[keys.UNLEARN_INFO] = ConfigRecord({keys.CLIENT_ID: client_id})
    for name, arrays in ctx.outbox.items():  # summed over clients by the server (FCLFedAvg)
        content[keys.SUM_PREFIX + name] = ArrayRecord(
            {k: Array(np.ascontiguousarray(v.detach().cpu().numpy())) for k, v in arrays.items()}
        )
    return Message(content=faults.after_train(content), reply_to=msg)


def run_gpse(msg: Message, context: Context) -> Message:
    """FOT's Global Principal Subspace Extraction on one client: the ``query.gpse`` handler.

    The server sends the global weights at the end of a task and the current
    bases; the client returns its sketch of the residual layer inputs and its
    residual ratio (weighted by its sample count). The server only ever needs
    their sums, so the reply can go through secure aggregation.
    """
    from fedcl.fot_client import gpse_statistics

    _rec, cfg, client_id, task_id, _round, seed, device, stream, model = _prepare(msg, context)
    x, _ = stream.client_data(task_id, client_id)
    bases_rec = msg.content.get(keys.FOT_BASES)
    bases = {k: v.numpy() for k, v in bases_rec.items()} if isinstance(bases_rec, ArrayRecord) else {}
    fot = cfg["strategy"]
    sketches, stats = gpse_statistics(
        model,
        x.to(device),
        bases,
        sketch_factor=int(fot.get("sketch_factor", 1)),
        max_samples=int(fot.get("gpse_max_samples", 1000)),
        # Omega_i is private to the client: the server never learns it
        generator=torch.Generator().manual_seed(derive_seed(seed, "omega", client_id, task_id)),
        batch_size=256,
        task_id=task_id,
    )
    content = RecordDict(
        {
            keys.FOT_SKETCH: ArrayRecord(
                {k: Array(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sketches.items()}
            ),
            keys.FOT_STATS: MetricRecord({k: float(v) for k, v in stats.items()}),
        }
    )
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Flower ``train`` handler."""
    return run_train(msg, context)


@app.query("gpse")
def gpse(msg: Message, context: Context) -> Message:
    """Flower ``query.gpse`` handler (FOT)."""
    return run_gpse(msg, context)


@app.query(keys.UNLEARN)
def unlearn(msg: Message, context: Context) -> Message:
    """Flower ``query.unlearn`` handler (federated unlearning, :mod:`fedcl.unlearning.client`)."""
    from fedcl.unlearning.client import run_unlearn

    return run_unlearn(msg, context)


# ---- deployment: node config of the SuperNode (simulations/deploy) -------------------------
# A SuperNode started with `--node-config "partition-id=<i> num-partitions=<n> [data-dir=...]
# [bind-partition=true]"` can (a) keep its data files at its own path, (b) refuse to play any
# logical client but its own partition, so a real deployment never trains on data that is not
# the node's, and (c) tell the server its partition (query "node_info"), so that with
# federation.node_mapping=partition the server sends client c to the node holding partition c
# (strategies/node_map.py). Flower's simulation sets partition-id / num-partitions, not the others.
# The keys are defined once in fedcl/keys.py.


def apply_node_config(cfg: dict[str, Any], context: Context, client_id: int) -> dict[str, Any]:
    """``cfg`` with the SuperNode's ``data-dir``; refuses foreign clients on a ``bind-partition`` node."""
    nc = context.node_config
    if str(nc.get(keys.BIND_PARTITION, "")).lower() in ("true", "1"):
        if keys.PARTITION_ID not in nc:
            raise DataError("node config 'bind-partition' needs 'partition-id'")
        if int(nc[keys.PARTITION_ID]) != client_id:  # type: ignore[arg-type]
            raise DataError(
                f"this SuperNode holds partition {nc[keys.PARTITION_ID]} (bind-partition=true) but was asked to play "
                f"logical client {client_id}: map clients to nodes by partition id (federation.node_mapping=partition)"
            )
        if keys.NUM_PARTITIONS in nc and int(nc[keys.NUM_PARTITIONS]) != int(cfg["federation"]["num_clients"]):  # type: ignore[arg-type]
            raise DataError(
                f"node config num-partitions={nc[keys.NUM_PARTITIONS]} but federation.num_clients="
                f"{cfg['federation']['num_clients']}"
            )
    data_dir = nc.get(keys.DATA_DIR)
    if data_dir:
        # the parsed config is cached and shared: copy before changing it
        cfg = {**cfg, "stream": {**cfg["stream"], "data_dir": str(data_dir)}}
    return cfg


@app.query(keys.NODE_INFO)
def node_info(msg: Message, context: Context) -> Message:
    """Flower ``query.node_info`` handler: the node's partition (-1 when it has none)."""
    nc = context.node_config
    info = ConfigRecord(
        {
            keys.PARTITION_ID: int(nc.get(keys.PARTITION_ID, -1)),  # type: ignore[arg-type]
            keys.NUM_PARTITIONS: int(nc.get(keys.NUM_PARTITIONS, -1)),  # type: ignore[arg-type]
        }
    )
    return Message(content=RecordDict({keys.CONFIG: info}), reply_to=msg)
