"""Launch one run as a real Flower simulation: own SuperLink, ``flwr run``, clean stop.

``flwr run .`` with the ``local`` connection starts a detached SuperLink that
outlives the run. This launcher starts its own SuperLink in simulation mode on a
free loopback port (under the project's ``FLWR_HOME``), submits the run with
``flwr run . <connection> --stream``, and stops the SuperLink by pid when done,
so nothing is left running. One SuperLink serves every run of a grid, and inside
:func:`simulations.pool.warm` one simulation (Ray, client actors) serves them too. Each
launcher process uses its own Flower home (``.flwr_home/sim/<pid>``), so
several launchers (parallel grids, tests) never share a connection entry.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from fedcl.config import Config
from simulations import pool
from simulations.pool import LaunchError, SimulationPool

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONNECTION = "fedcl-sim"

__all__ = ["CONNECTION", "PROJECT_ROOT", "LaunchError", "SimulationSuperLink", "flower_env", "run_flower",
           "superlink"]


def flower_env(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Environment for Flower and Ray: project-local homes, no telemetry, no runtime installs."""
    env = dict(os.environ)
    env.setdefault("FLWR_HOME", str(root / ".flwr_home"))
    env.setdefault("RAY_TMPDIR", str(root / ".raytmp"))
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
    env.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    env.setdefault("RAY_DEDUP_LOGS", "1")
    env.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    for key in ("FLWR_HOME", "RAY_TMPDIR"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LaunchError(f"the SuperLink exited with code {proc.returncode}; see its log")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise LaunchError(f"the SuperLink did not open port {port} within {timeout:.0f} s")


class SimulationSuperLink:
    """A SuperLink in simulation mode owned by this process (stopped by pid on exit).

    Parameters
    ----------
    env : dict[str, str]
        Environment from :func:`flower_env`; ``FLWR_HOME`` is replaced by a
        folder private to this process.
    """

    def __init__(self, env: dict[str, str]) -> None:
        env = dict(env)
        env["FLWR_HOME"] = str(Path(env["FLWR_HOME"]) / "sim" / str(os.getpid()))
        Path(env["FLWR_HOME"]).mkdir(parents=True, exist_ok=True)
        log_dir = Path(env["FLWR_HOME"])
        self.env = env
        self.port = _free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "superlink.log"
        cmd = [
            "flower-superlink", "--insecure", "--simulation", "--host", "127.0.0.1", "--port", str(self.port),
            "--disable-runtime-dependency-installation",
        ]
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)
        _wait_port(self.port, self.proc)
        self._write_connection()

    def _write_connection(self) -> None:
        cfg = Path(self.env["FLWR_HOME"]) / "config.toml"
        default = '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n'
        text = cfg.read_text() if cfg.exists() else default
        head, sep, _ = text.partition(f"\n[superlink.{CONNECTION}]")
        cfg.write_text(
            head.rstrip("\n") + f'\n\n[superlink.{CONNECTION}]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )

    def stop(self) -> None:
        """Terminate the SuperLink's process group (its SuperExec and simulation processes)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not self.log.closed:
            self.log.close()
        # the unpacked app copies are the bulk of the private home; logs stay for inspection
        shutil.rmtree(Path(self.env["FLWR_HOME"]) / "apps", ignore_errors=True)


_SUPERLINK: SimulationSuperLink | None = None


def superlink(env: dict[str, str]) -> SimulationSuperLink:
    """The process-wide simulation SuperLink (started on first use).

    The SuperLink's environment reaches every simulation it runs, so a run that
    asks for another Ray cluster (``RAY_ADDRESS``) gets a fresh SuperLink.
    """
    global _SUPERLINK
    if _SUPERLINK is not None and _SUPERLINK.env.get("RAY_ADDRESS") != env.get("RAY_ADDRESS"):
        _SUPERLINK.stop()
        _SUPERLINK = None
    if _SUPERLINK is None or _SUPERLINK.proc.poll() is not None:
        _SUPERLINK = SimulationSuperLink(env)
    return _SUPERLINK


def federation_config(cfg: Config) -> str:
    """``--federation-config`` for the run: SuperNodes and per-client Ray resources."""
    be = cfg.backend
    nodes = cfg.supernodes
    parts = [
        f"num-supernodes={int(nodes)}",
        f"client-resources-num-cpus={be.client_num_cpus:g}",
        f"client-resources-num-gpus={be.client_num_gpus:g}",
    ]
    return " ".join(parts)


def run_flower(cfg: Config, run_dir: Path, timeout: float | None = None) -> None:
    """Write the resolved config into ``run_dir`` and run it on a Flower simulation (a warm one when it may)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "config.yaml"
    config_file.write_text(yaml.safe_dump(cfg.dump(), sort_keys=False))
    base_env = flower_env()
    if cfg.backend.ray_address:
        base_env["RAY_ADDRESS"] = cfg.backend.ray_address
    link = superlink(base_env)
    federation = federation_config(cfg)
    shared = pool.shareable(cfg)
    cmd = ["flwr", "run", str(PROJECT_ROOT), CONNECTION, "--stream", "--federation-config", federation]

    def start() -> SimulationPool:
        return SimulationPool(cmd, link.env, f"{link.port} {federation}", Path(link.env["FLWR_HOME"]) / "queues",
                              _is_noise, PROJECT_ROOT)

    sim = pool.pool_for(f"{link.port} {federation}", shared, start)
    limit = timeout or cfg.backend.timeout_s + 120
    try:
        status = sim.submit(config_file, run_dir, limit)
    except TimeoutError as exc:
        link.stop()  # the run goes on inside the SuperLink otherwise
        pool.close()
        raise LaunchError(f"{exc}; SuperLink stopped") from exc
    except LaunchError as exc:
        pool.close()
        raise LaunchError(f"{exc}. SuperLink log: {link.log_path}") from exc
    finally:
        if not pool.keep_warm(shared):
            pool.close()
    if status["status"] != "ok" or not (run_dir / "summary.json").exists():
        raise LaunchError(f"the run failed: {status.get('error')}; no summary.json in {run_dir}. "
                          f"Command: {shlex.join(cmd)}; SuperLink log: {link.log_path}")


# Flower's start-up chatter that says nothing about the experiment (each line once is too many)
_NOISE = (
    "Using SuperLink:",
    "Successfully started run",
    "Starting logstream",
    "Starting Flower Simulation",
    "Since flwr 1.32",
    "Federation `@none/default`",
    "To change federation size",
    "flwr federation simulation-config",
    "Successfully installed fedcl",
    "Manually terminating ClientAppActor",
)


def _is_noise(line: str) -> bool:
    text = line.strip()
    if not text or text.endswith("INFO :") or text.endswith("INFO \x1b[0m:"):
        return True
    return any(marker in text for marker in _NOISE)
