"""Progress lines and log-noise filters: ETA arithmetic, what is dropped and what never is."""

from __future__ import annotations

import logging

import pytest

from simulations.launch import _is_noise
from strategies.server.progress import FlowerNoiseFilter, RoundClock, format_duration, quiet_flower_logs


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 42.4, 65, 3600 + 7 * 60 + 2)] == ["0 s", "42 s", "1m05s", "1h07m"]


def test_eta_leaves_out_the_first_round_once_later_rounds_exist() -> None:
    # Prepare: round 1 pays Ray's start-up (30 s), the others 2 s and 4 s
    clock = RoundClock(total_rounds=10)
    clock.tick(30.0)
    # Execute / Assert: with one round only, it is all there is
    assert clock.eta(1) == pytest.approx(9 * 30.0)
    clock.tick(2.0)
    clock.tick(4.0)
    assert clock.eta(3) == pytest.approx(7 * 3.0)  # mean of rounds 2-3, 7 rounds left
    assert clock.suffix(3) == " | ETA 21 s" and clock.suffix(10) == ""


def _record(msg: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("flwr", level, __file__, 1, msg, None, None)


def test_noise_filter_drops_known_chatter_but_never_errors_or_failures() -> None:
    f = FlowerNoiseFilter()
    assert not f.filter(_record("fraction_evaluate is set to 0.0, federated evaluation will be skipped"))
    assert not f.filter(_record("aggregate_train: Received 3 results and 0 failures"))
    assert f.filter(_record("aggregate_train: Received 2 results and 1 failures"))  # a failure is news
    assert f.filter(_record("aggregate_train: Received 3 results and 0 failures", logging.ERROR))
    assert f.filter(_record("[ROUND 3]"))


def test_quiet_flower_logs_installs_the_filter_once() -> None:
    logger = logging.getLogger("flwr")
    before = list(logger.filters)
    try:
        quiet_flower_logs()
        quiet_flower_logs()
        assert sum(isinstance(f, FlowerNoiseFilter) for f in logger.filters) == 1
    finally:
        logger.filters[:] = before


def test_launcher_drops_flower_start_up_lines_only() -> None:
    assert _is_noise("INFO :      Starting Flower Simulation")
    assert _is_noise("   ")
    assert _is_noise("INFO :")
    assert not _is_noise("round 3 | task 1 | acc(current) 0.812 | acc(seen) 0.640 | ETA 12 s")
    assert not _is_noise("ERROR :     ClientApp raised an exception")
