"""The plain PyTorch loop of ``plain_loop.py`` with each round's clients trained in N worker processes.

The machine's limit for a federated run (issue 23, the yardstick): what a hand-written
FedAvg loop gets from ``N`` single-threaded worker processes, ``N`` being as many clients
as the Flower simulation trains at once (its Ray actors: CPUs / ``backend.client_num_cpus``).
Client ``c`` always trains in worker ``c % N``, which keeps its method state in a dict
(no disk, no messages beyond the weights through a pipe); the server process samples,
averages in client order in float64 and evaluates, as :func:`plain_federation` does, so the
numbers equal the single-process loop's when the workers use the same thread count.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from fedcl.config import Config, validate
from simulations.benchmarks.plain_loop import plain_federation

Weighted = list[tuple[dict[str, np.ndarray], int]]


def _worker(conn: Connection, cfg_dump: dict[str, Any], threads: int) -> None:
    """One worker: load the stream once, then train the clients it is sent, round after round."""
    import torch

    from fedcl.data import build_stream, make_schedule
    from fedcl.trainer import TrainConfig, pick_device
    from simulations.benchmarks.plain_loop import _client_round

    torch.set_num_threads(threads)
    cfg = validate(cfg_dump)
    fed, tr = cfg.federation, cfg.train
    stream = build_stream(cfg.stream, fed.num_clients, cfg.seed)
    schedule = make_schedule(cfg.schedule, len(stream.tasks), fed.rounds_per_task, fed.num_clients, cfg.seed)
    device = pick_device(cfg.device)
    train_cfg = TrainConfig(lr=tr.lr, local_epochs=tr.local_epochs, batch_size=tr.batch_size, momentum=tr.momentum,
                            weight_decay=tr.weight_decay, proximal_mu=0.0)
    states: dict[int, dict[str, Any]] = {}
    conn.send("ready")
    while (job := conn.recv()) is not None:
        rnd, clients, global_np = job
        conn.send([_client_round(cfg, stream, schedule, device, global_np, states, c, rnd, train_cfg)
                   for c in clients])


class WorkerPool:
    """``workers`` processes (spawned: each imports torch and loads the data, as a Ray actor does).

    Parameters
    ----------
    cfg : Config
        The run's config (sent to every worker).
    workers : int
        Worker processes.
    threads : int, default 1
        Torch threads per worker.
    """

    def __init__(self, cfg: Config, workers: int, threads: int = 1) -> None:
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs = []
        for _ in range(workers):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(there, cfg.dump(), threads), daemon=True)
            proc.start()
            self.conns.append(here)
            self.procs.append(proc)
        for conn in self.conns:  # all started and loaded before round 1, as the actors are
            assert conn.recv() == "ready"

    def train_round(self, rnd: int, clients: list[int], global_np: dict[str, np.ndarray]) -> Weighted:
        """Each worker trains its clients (``c % workers``); the results in the order of ``clients``."""
        n = len(self.conns)
        mine = [[c for c in clients if c % n == w] for w in range(n)]
        for w, conn in enumerate(self.conns):
            conn.send((rnd, mine[w], global_np))
        got = {w: self.conns[w].recv() for w in range(n)}
        by_client = {c: r for w in range(n) for c, r in zip(mine[w], got[w], strict=True)}
        return [by_client[c] for c in clients]

    def close(self) -> None:
        """Stop every worker (by its process handle; killed if it does not end)."""
        for conn in self.conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def parallel_federation(cfg: Config, workers: int, on_round: Any = None, threads: int = 1) -> dict[str, Any]:
    """:func:`plain_federation` with the clients trained in ``workers`` processes; the summary."""
    pool = WorkerPool(cfg, workers, threads)
    try:
        return plain_federation(cfg, on_round, pool.train_round)
    finally:
        pool.close()
