"""The round-callback protocol: the parts of a run the server's round loop calls by name.

Privacy accounting, SecAgg+ statistics, local forgetting, unlearning, experiment
trackers, console progress and checkpoints each implement the hooks they need; the
loop (``strategies/server/loop.py``) calls every hook of every part, in the order the
parts were registered, and knows nothing else about them. Every hook is a no-op here.

Per round, in order::

    on_round_start(rnd)
    on_replies(rnd, arrays, replies)        the round's sound replies, before aggregation
    after_aggregate(rnd, arrays, grid)      may change the global model (unlearning)
    round_metrics(rnd, arrays)              columns of this round's metrics.jsonl row
    on_row(rnd, row, ended)                 the logged row (trackers, console, checkpoints)

and once: ``on_run_start`` (fresh or resumed), ``summary`` (sections of summary.json),
``on_run_end`` (files in the run folder), ``close`` (also after an error). ``state_dict`` / ``load_state_dict`` make a
part's state survive a checkpoint and a resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, Message
from flwr.serverapp import Grid


class RoundHook:
    """Base class of everything the round loop calls; override the hooks you need.

    Attributes
    ----------
    name : str
        Key of this part's state in a checkpoint and of its section in ``summary.json``.
    """

    name = "hook"

    def on_run_start(self, first_round: int) -> None:
        """Before the first round (``first_round`` > 1 after a resume)."""

    def on_round_start(self, server_round: int) -> None:
        """Before the round's messages are sent."""

    def on_replies(self, server_round: int, arrays: ArrayRecord, replies: list[Message]) -> None:
        """The round's replies (canonical order), before aggregation; ``arrays`` is the model they trained."""

    def after_aggregate(self, server_round: int, arrays: ArrayRecord, grid: Grid) -> ArrayRecord:
        """The global model after aggregation (and task-end steps); return it, changed or not."""
        return arrays

    def round_metrics(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any]:
        """Columns this part adds to the round's ``metrics.jsonl`` row."""
        return {}

    def on_row(self, server_round: int, row: dict[str, Any], ended: list[int]) -> None:
        """The round's logged row; ``ended`` lists the tasks whose last round this was."""

    def summary(self) -> dict[str, Any]:
        """Keys this part adds to ``summary.json``."""
        return {}

    def on_run_end(self, run_dir: Path, plots: bool) -> None:
        """Write this part's files into the run folder (after the summary)."""

    def close(self) -> None:
        """Release what this part holds (open trackers); called after the last round, also on an error."""

    def state_dict(self) -> dict[str, Any]:
        """Everything that must survive a checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (resume)."""
