"""Client side of federated unlearning: the ``query.unlearn`` handler and the data it may use.

A query names an ``action``, the seen tasks and a data-access rule; the client splits
the data it may use into a *forget* part (the whole client for a client request, the
forgotten class for a class request, the named samples for a sample request) and a
*retain* part. What it may use (``access``, the config's ``unlearning.data_access``):

* ``history``: its training data of every seen task (a client that kept everything);
* ``buffer``: what a continual client still holds: the data of its current task and
  the samples in its method's replay buffer (none for a method without one).

Held-out non-members and everything forgotten earlier are never used
(:class:`fedcl.unlearning.data.Exclusions`). Actions:

* ``fisher``: sums over its samples of the squared per-sample gradients (the empirical
  diagonal Fisher) on forget and on retain data, plus the counts (SSD);
* ``gradient``: sums over its samples of the loss gradient on forget and on retain data,
  plus the counts (IAU);
* ``ascent``: gradient ascent on its forget data (returns the weights and the count);
* ``train``: plain SGD on its retain data (repair rounds, FedEraser calibration).

Sums are all the server needs for ``fisher`` and ``gradient``: the replies can be
securely aggregated. No query changes the client's continual-learning method state
(``buffer`` reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Context, Message, MetricRecord, RecordDict

import fedcl.keys as keys
from fedcl.client.instruction import Instruction, workspace
from fedcl.data import Stream
from fedcl.errors import ConfigError
from fedcl.methods import CLMethod, build_method
from fedcl.methods._buffer import ReservoirBuffer, rows_in
from fedcl.records import array_record, model_record
from fedcl.seeding import torch_generator
from fedcl.state import open_store
from fedcl.unlearning import protocol
from fedcl.unlearning.data import Exclusions, Samples, decode_samples, sample_rows
from fedcl.unlearning.local import cap, fisher_sum, gradient_sum, sgd_steps


@dataclass
class TaskSplit:
    """A client's usable data of one task split into forget and retain parts."""

    task_id: int
    x_forget: torch.Tensor
    y_forget: torch.Tensor
    x_retain: torch.Tensor
    y_retain: torch.Tensor


@dataclass(frozen=True)
class Query:
    """The data side of a query's options: what is forgotten now, what was before, what the client may use."""

    tasks: list[int]
    access: str
    forget_all: bool
    forget_classes: list[int]
    forget_samples: Samples
    drop: Exclusions

    @classmethod
    def parse(cls, opts: dict[str, Any], client_id: int, instr: Instruction) -> Query:
        access = opts.get("access")
        if access not in protocol.ACCESS:
            raise ConfigError("unlearning.data_access", access, f"one of {list(protocol.ACCESS)}")
        drop = Exclusions.of_run(instr.cfg, list(opts["drop_classes"]), decode_samples(opts.get("drop_samples")))
        return cls([int(t) for t in opts["tasks"]], str(access), client_id in opts["forget_clients"],
                   [int(c) for c in opts["forget_classes"]], decode_samples(opts.get("forget_samples")), drop)


def drop_classes(x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` without the rows whose label is in ``classes`` (a served class request)."""
    if not classes:
        return x, y
    keep = ~torch.isin(y, torch.as_tensor(classes, dtype=y.dtype, device=y.device))
    return x[keep], y[keep]


def split_task(
    x: torch.Tensor, y: torch.Tensor, task_id: int, forget_all: bool, forget_classes: list[int],
    drop: list[int], forget_rows: torch.Tensor | None = None,
) -> TaskSplit:
    """Split one task's data: all of it for a leaving client, else the forgotten classes and rows.

    ``forget_rows`` (boolean, one per row of ``x`` before ``drop``) marks forgotten samples.
    """
    keep = ~torch.isin(y, torch.as_tensor(drop or [-1], dtype=y.dtype, device=y.device))
    if forget_all:
        return TaskSplit(task_id, x[keep], y[keep], x[:0], y[:0])
    is_f = torch.isin(y, torch.as_tensor(forget_classes or [-1], dtype=y.dtype, device=y.device))
    if forget_rows is not None:
        is_f |= forget_rows.to(is_f.device)
    return TaskSplit(task_id, x[keep & is_f], y[keep & is_f], x[keep & ~is_f], y[keep & ~is_f])


def _buffers(obj: object) -> list[ReservoirBuffer]:
    out: list[ReservoirBuffer] = []
    for value in vars(obj).values():
        children = value.values() if isinstance(value, dict) else [value]
        for v in children:
            if isinstance(v, ReservoirBuffer):
                out.append(v)
            elif isinstance(v, CLMethod):
                out += _buffers(v)
    return out


def held_samples(method: CLMethod) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(x, y, task_ids)`` of every sample the method's replay buffers hold (None: no buffer or empty)."""
    bufs = [b for b in _buffers(method) if b.x is not None and b.y is not None and b.task_ids is not None]
    if not bufs:
        return None
    return (torch.cat([b.x for b in bufs]), torch.cat([b.y for b in bufs]),  # type: ignore[misc]
            torch.cat([b.task_ids for b in bufs]))  # type: ignore[misc]


def history_splits(stream: Stream, client: int, q: Query, tasks: list[int], device: torch.device) -> list[TaskSplit]:
    """The forget / retain split of the client's usable training data of ``tasks``."""
    out = []
    for t in tasks:
        x, y, idx = q.drop.training_data(*stream.client_data(t, client), t, client)
        gone = q.forget_samples.get(client, {}).get(t, [])
        rows = torch.isin(idx, torch.as_tensor(gone or [-1], dtype=idx.dtype))
        out.append(split_task(x.to(device), y.to(device), t, q.forget_all, q.forget_classes, [], rows))
    return out


def buffer_splits(stream: Stream, client: int, q: Query, held: tuple[torch.Tensor, ...] | None,
                  current: int, device: torch.device) -> list[TaskSplit]:
    """The forget / retain split of the replay buffer's samples of tasks other than ``current``."""
    if held is None:
        return []
    x, y, tids = held
    named = torch.isin(tids, torch.as_tensor(q.tasks or [-1], dtype=tids.dtype))
    old = named & (tids != current) & ~rows_in(x, sample_rows(stream, q.drop.samples, client))
    x, y, tids = x[old], y[old], tids[old]
    forget_rows = rows_in(x, sample_rows(stream, q.forget_samples, client))
    out = []
    for t in sorted(torch.unique(tids).tolist()):
        m = tids == t
        out.append(split_task(x[m].to(device), y[m].to(device), int(t), q.forget_all, q.forget_classes,
                              list(q.drop.classes), forget_rows[m]))
    return out


def local_splits(stream: Stream, client: int, q: Query, current: int, device: torch.device,
                 load_held: Any) -> list[TaskSplit]:
    """Every forget / retain split the client may use under the query's access rule."""
    if q.access == "history":
        return history_splits(stream, client, q, q.tasks, device)
    now = history_splits(stream, client, q, [current] if current in q.tasks else [], device)
    return now + buffer_splits(stream, client, q, load_held(), current, device)


def _held_loader(instr: Instruction, context: Context) -> Any:
    def load() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        cfg = instr.cfg
        store = open_store(cfg.federation.state_store, context, instr.get(keys.STATE_DIR),
                           cfg.federation.state_memory_mb)
        method = build_method(cfg.method)
        method.load_state_dict(store.load(instr.client_id).get("method", {}))
        return held_samples(method)
    return load


def _pooled(splits: list[TaskSplit], forget: bool, max_samples: int | None,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, ts = [], [], []
    for s in splits:
        x, y = cap(*((s.x_forget, s.y_forget) if forget else (s.x_retain, s.y_retain)), max_samples, gen)
        xs.append(x)
        ys.append(y)
        ts.append(torch.full_like(y, s.task_id))
    return torch.cat(xs), torch.cat(ys), torch.cat(ts)


def _sums(action: str, splits: list[TaskSplit], model: torch.nn.Module, stream: Stream, opts: dict[str, Any],
          gen: torch.Generator) -> tuple[RecordDict, dict[str, Any]]:
    """``fisher`` / ``gradient``: per-part sums over the forget and the retain data, and the counts."""
    stat = fisher_sum if action == "fisher" else gradient_sum
    f_sum = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    r_sum = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    nf = nr = 0
    for s in splits:
        xf, yf = cap(s.x_forget, s.y_forget, opts.get("max_samples"), gen)
        xr, yr = cap(s.x_retain, s.y_retain, opts.get("max_samples"), gen)
        classes = list(stream.tasks[s.task_id].classes) if stream.multi_head else None
        for acc, xx, yy in ((f_sum, xf, yf), (r_sum, xr, yr)):
            for k, v in stat(model, xx, yy, s.task_id, stream.multi_head, classes).items():
                acc[k] += v
        nf, nr = nf + int(xf.shape[0]), nr + int(xr.shape[0])
    content = RecordDict()
    keys_ = protocol.FISHER_KEYS if action == "fisher" else protocol.GRAD_KEYS
    content[keys_[0]] = array_record(f_sum, np.float32)
    content[keys_[1]] = array_record(r_sum, np.float32)
    return content, {protocol.NUM_FORGET: nf, protocol.NUM_RETAIN: nr, keys.NUM_EXAMPLES: nf + nr}


def handle(msg: Message, context: Context, instr: Instruction) -> Message:
    """The ``query.unlearn`` handler (see the module docstring for the actions)."""
    ws = workspace(instr, msg)
    stream, model, client_id = ws.stream, ws.model, instr.client_id
    opts = protocol.options(instr.record)
    action = opts.get("action")
    if action not in protocol.ACTIONS:
        raise ConfigError("unlearn-action", action, f"one of {list(protocol.ACTIONS)}")
    q = Query.parse(opts, client_id, instr)
    splits = local_splits(stream, client_id, q, instr.task_id, ws.device, _held_loader(instr, context))
    gen = torch_generator(instr.seed, "unlearn", action, client_id, instr.server_round, int(opts.get("salt", 0)))
    if action in ("fisher", "gradient"):
        content, metrics = _sums(action, splits, model, stream, opts, gen)
    else:
        ascent = action == "ascent"
        x, y, t = _pooled(splits, ascent, opts.get("max_samples"), gen) if splits else (
            torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        sgd_steps(model, x, y, t, stream.multi_head, lambda k: list(stream.tasks[k].classes),
                  epochs=float(opts["epochs"]), lr=float(opts["lr"]), batch_size=instr.cfg.train.batch_size,
                  gen=gen, ascent=ascent, max_loss=opts.get("max_loss"))
        content = RecordDict({keys.ARRAYS: model_record(model)})
        metrics = {keys.NUM_EXAMPLES: int(x.shape[0])}
    content[keys.METRICS] = MetricRecord(metrics)
    if opts.get("report_client"):
        content[protocol.INFO] = protocol.client_info(client_id)
    return Message(content=content, reply_to=msg)
