"""The client side of ``strategy=analytic``: the ``query.analytic`` handler.

The server sends the frozen backbone (``body.*`` arrays) and names the tasks (and, for a
class-level deletion request, the classes) whose statistics it wants. The client maps that
data through the backbone and the seeded random expansion (identical on every client and
the server, never sent), clips each sample's features to ``strategy.feature_bound`` when set,
and answers with ``X^T X`` (upper triangle), ``X^T Y`` and the class counts
(:mod:`fedcl.analytic.messages`). No CL-method state is touched and nothing trains.

Which samples: each task's data minus the classes of served deletion requests
(``forget-classes``); with ``strategy.max_samples`` a seeded subset of at most that many
samples per task, drawn before any class is dropped, so that a later deletion request
selects exactly the samples that were added.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message

import fedcl.keys as keys
from fedcl.analytic.features import RandomExpansion, backbone_dim, backbone_of, client_statistics
from fedcl.analytic.messages import Query, parse_query, stats_reply
from fedcl.client.instruction import Instruction
from fedcl.config.schema import AnalyticStrategy
from fedcl.data import Stream, build_stream
from fedcl.models import build_model
from fedcl.seeding import numpy_rng, seed_globals
from fedcl.threads import match_torch_threads
from fedcl.trainer import pick_device
from fedcl.unlearning.data import Exclusions

CAP_TAG = 7  # numpy_rng tag of the per-(client, task) subset under strategy.max_samples


def task_samples(stream: Stream, task: int, client: int, max_samples: int | None, seed: int,
                 excl: Exclusions | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A client's data of one task, capped at ``max_samples`` by a subset seeded by (seed, client, task).

    ``excl``: the run's exclusions; its held-out part (the membership-inference non-members of a run
    with deletion requests, ``unlearning.holdout``) never enters the statistics, as it never trains.
    """
    x, y = stream.client_data(task, client)
    if excl is not None:
        x, y, _ = excl.training_data(x, y, task, client)
    if max_samples is None or x.shape[0] <= max_samples:
        return x, y
    idx = np.sort(numpy_rng(seed, CAP_TAG, client, task).permutation(x.shape[0])[:max_samples])
    sel = torch.from_numpy(idx).to(x.device)
    return x[sel], y[sel]


def query_data(stream: Stream, query: Query, client: int, dropped: list[int], max_samples: int | None,
               seed: int, excl: Exclusions | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples a query covers: its tasks, minus ``dropped`` classes, only ``query.only_classes`` if any."""
    xs, ys = [], []
    for t in query.tasks:
        x, y = task_samples(stream, t, client, max_samples, seed, excl)
        keep = torch.ones_like(y, dtype=torch.bool)
        if dropped:
            keep &= ~torch.isin(y, torch.as_tensor(dropped, dtype=y.dtype, device=y.device))
        if query.only_classes:
            keep &= torch.isin(y, torch.as_tensor(query.only_classes, dtype=y.dtype, device=y.device))
        xs.append(x[keep])
        ys.append(y[keep])
    if not xs:
        shape = stream.in_shape
        return torch.zeros(0, *shape), torch.zeros(0, dtype=torch.long)
    return torch.cat(xs), torch.cat(ys)


def handle(msg: Message, context: Context, instr: Instruction) -> Message:
    """The ``query.analytic`` handler: the statistics of the named tasks through the frozen backbone."""
    cfg = instr.cfg
    st = cfg.strategy
    assert isinstance(st, AnalyticStrategy), "an analytic query under a strategy other than analytic"
    query = parse_query(instr.record)
    device = pick_device(cfg.device)
    stream = build_stream(cfg.stream, cfg.federation.num_clients, cfg.seed)
    stream.cache.set_budget(cfg.backend.data_cache_mb)
    match_torch_threads()
    seed_globals(cfg.seed, "client", instr.client_id, instr.server_round, msg.metadata.message_type)
    model = build_model(cfg.model, stream.in_shape, stream.num_classes, stream.num_heads)
    body = msg.content[keys.ARRAYS]
    assert isinstance(body, ArrayRecord)
    backbone_of(model).load_state_dict({k[len("body."):]: v for k, v in body.to_torch_state_dict().items()})
    model = model.to(device)
    expansion = RandomExpansion(backbone_dim(model), st.expansion_dim, st.activation, cfg.seed)
    x, y = query_data(stream, query, instr.client_id, instr.forget_classes, st.max_samples, cfg.seed,
                      Exclusions.of_run(cfg))
    stats = client_statistics(model, expansion, x, y, stream.num_classes, batch_size=cfg.eval.batch_size,
                              clip_bound=st.feature_bound)
    if not query.release_counts:
        stats.class_counts.zero_()
    return stats_reply(msg, stats, query.scale)
