"""Console progress of a run (one line per round with an ETA) and Flower's log-noise filter."""

from __future__ import annotations

import logging
from typing import Any

from fedcl.hooks import RoundHook
from fedcl.metrics import Tracker

# Flower lines that repeat what the round line already says; errors and failures still pass.
_NOISE = (
    "fraction_evaluate is set to 0.0",  # FedAvg's init warning: fedcl evaluates centrally on purpose
)


class FlowerNoiseFilter(logging.Filter):
    """Drops Flower's known-harmless repeated lines, never a record at ERROR or above."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        msg = record.getMessage()
        if any(n in msg for n in _NOISE):
            return False
        # "aggregate_train: Received 3 results and 0 failures": the round line has both numbers
        return not ("Received" in msg and msg.rstrip().endswith(" 0 failures"))


def quiet_flower_logs() -> None:
    """Install :class:`FlowerNoiseFilter` on Flower's logger and its handlers (idempotent)."""
    logger = logging.getLogger("flwr")
    targets: list[logging.Filterer] = [logger, *logger.handlers]
    for target in targets:
        if not any(isinstance(f, FlowerNoiseFilter) for f in target.filters):
            target.addFilter(FlowerNoiseFilter())


def format_duration(seconds: float) -> str:
    """``42 s``, ``3m05s`` or ``2h07m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class RoundClock:
    """ETA of a run from the mean duration of the rounds this process has run.

    Round 1 includes Ray's start and the actors' spin-up (tens of seconds on a
    small machine), so once later rounds exist it is left out of the mean.

    Parameters
    ----------
    total_rounds : int
        Rounds of the whole run.
    """

    def __init__(self, total_rounds: int) -> None:
        self.total_rounds = total_rounds
        self.durations: list[float] = []

    def tick(self, seconds: float) -> None:
        """Record one finished round."""
        self.durations.append(float(seconds))

    def eta(self, server_round: int) -> float:
        """Seconds left after ``server_round``."""
        d = self.durations[1:] if len(self.durations) > 1 else self.durations
        mean = sum(d) / len(d) if d else 0.0
        return mean * max(self.total_rounds - server_round, 0)

    def suffix(self, server_round: int) -> str:
        """`` | ETA 1m05s`` (empty after the last round)."""
        if server_round >= self.total_rounds:
            return ""
        return f" | ETA {format_duration(self.eta(server_round))}"




class ConsoleProgress(RoundHook):
    """Prints one line per round (task, accuracies, bytes, seconds, ETA) unless ``quiet`` (a round hook).

    Parameters
    ----------
    tracker : Tracker
        The run's tracker (formats the line).
    total_rounds : int
        Rounds of the whole run (the ETA).
    quiet : bool
        Print nothing per round.
    """

    name = "progress"

    def __init__(self, tracker: Tracker, total_rounds: int, quiet: bool) -> None:
        self.tracker, self.quiet = tracker, quiet
        self.clock = RoundClock(total_rounds)

    def on_row(self, server_round: int, row: dict[str, Any], ended: list[int]) -> None:
        self.clock.tick(float(row["seconds"]))
        if not self.quiet:
            print(self.tracker.format_round(row) + self.clock.suffix(server_round), flush=True)
