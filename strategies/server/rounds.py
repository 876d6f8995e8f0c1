"""One training round with retries: send, collect, and check that enough clients answered.

The round loop (:mod:`strategies.server.loop`) calls :func:`send_train_round`
instead of ``configure_train`` + ``send_and_receive``. A round whose sound replies
(see :mod:`strategies.validation`) are fewer than ``federation.min_replies`` is
sent again, up to ``federation.round_retries`` times, with ``attempt`` in each
client's config (so injected faults are drawn anew, as a real transient fault
would be); after that the run stops with a :class:`~fedcl.errors.RoundError`
before the round is aggregated or checkpointed, so the newest checkpoint is the
last sound state.
"""

from __future__ import annotations

import logging

from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

import fedcl.keys as keys
from fedcl.config.schema import Federation
from fedcl.errors import RoundError
from strategies.aggregation import in_canonical_order
from strategies.fedavg import FCLFedAvg

log = logging.getLogger("fedcl")


def stamp_attempt(messages: list[Message], attempt: int) -> None:
    """Write the try number into each message's config record (before it is pushed)."""
    for m in messages:
        rec = m.content.get(keys.CONFIG)
        if isinstance(rec, ConfigRecord):
            rec[keys.ATTEMPT] = attempt


def send_train_round(
    strategy: FCLFedAvg, grid: Grid, server_round: int, arrays: ArrayRecord, fed: Federation
) -> tuple[list[Message], list[Message], int]:
    """Send round ``server_round`` until enough sound replies come back.

    Parameters
    ----------
    strategy : FCLFedAvg
        The strategy (``configure_train``, ``validator``, ``sent_messages``, ``round_arrays``,
        ``reply_timeout_s``).
    grid : Grid
        Flower's grid.
    server_round : int
        The round.
    arrays : ArrayRecord
        The global model.
    fed : Federation
        ``federation`` (``min_replies``, ``round_retries``).

    Returns
    -------
    tuple[list[Message], list[Message], int]
        The last try's messages and replies, and the number of tries.

    Raises
    ------
    RoundError
        Fewer than ``min_replies`` sound replies after ``round_retries`` retries.
    """
    retries = fed.round_retries
    messages: list[Message] = []
    replies: list[Message] = []
    good, need, faults_text = 0, 1, ""
    for attempt in range(retries + 1):
        messages = list(strategy.configure_train(server_round, arrays, ConfigRecord(), grid))
        if not messages:
            return messages, [], attempt + 1
        stamp_attempt(messages, attempt)
        # canonical order (by logical client): everything computed from the replies is order-independent
        replies = in_canonical_order(messages, grid.send_and_receive(messages, timeout=strategy.reply_timeout_s))
        need = min(fed.min_replies, len(messages))
        _, faults = strategy.validator.split_train(strategy.sent_messages, replies, strategy.round_arrays,
                                                   log_faults=False)
        good = faults.num_valid
        faults_text = "; ".join(f"client {c}: {r}" for c, r in sorted({**faults.failed, **faults.rejected}.items()))
        if good >= need:
            return messages, replies, attempt + 1
        log.warning("round %d try %d: %d sound replies < federation.min_replies=%d (%s)",
                    server_round, attempt + 1, good, need, faults_text[:1000])
    raise RoundError(
        f"round {server_round}: only {good} of {len(messages)} clients gave a sound reply after "
        f"{retries + 1} tries (federation.min_replies={need}); {faults_text[:1500]}. The newest checkpoint "
        "in the run folder is intact: fix the clients (or lower federation.min_replies / raise "
        "federation.round_retries) and continue with resume=<run folder>"
    )
