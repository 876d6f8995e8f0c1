"""The grid every server part talks through: Flower's grid, polled at the run's pace, replies in canonical order."""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from strategies.aggregation import in_canonical_order


class GridWrapper(Grid):
    """A Flower ``Grid`` around another one: every call goes to the inner grid (subclasses change some).

    Parameters
    ----------
    grid : Grid
        Flower's grid (or another wrapper).
    """

    def __init__(self, grid: Grid) -> None:
        self.inner = grid

    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content=content, message_type=message_type, dst_node_id=dst_node_id, group_id=group_id,
                       ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.inner.send_and_receive(messages, timeout=timeout)


class RunGrid(GridWrapper):
    """A Flower ``Grid`` around another one: replies sorted by logical client, polled every ``pull_interval_s``.

    Flower's grids sleep 0.1 s (simulation) or 3 s (deployment) between two polls for
    replies, paid every round; this grid pushes the messages itself and polls at the
    run's ``backend.pull_interval_s``. Its replies come back in the order the messages
    were built (by logical client: :mod:`strategies.aggregation`), whatever order the
    clients finished in.

    Parameters
    ----------
    grid : Grid
        Flower's grid (or another wrapper).
    pull_interval_s : float
        Seconds between two polls for replies.
    """

    def __init__(self, grid: Grid, pull_interval_s: float) -> None:
        super().__init__(grid)
        self.pull_interval_s = pull_interval_s

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Push ``messages``, poll until every reply is in or ``timeout`` seconds passed; canonical order."""
        sent = list(messages)
        if not sent:
            return []
        pending = set(self.push_messages(sent))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            got = list(self.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(self.pull_interval_s)
        return in_canonical_order(sent, replies)
