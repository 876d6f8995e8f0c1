"""A Flower deployment (one SuperLink + SuperNodes) managed from a folder.

The deployment folder holds everything one deployment needs and nothing else::

    <dir>/certs/      ca.crt, ca.key, server.pem, server.key   (certs.sh)
    <dir>/keys/       node<i>, node<i>.pub                      (ssh-keygen -t ecdsa -b 384)
    <dir>/logs/       superlink.log, supernode-<i>.log
    <dir>/state.db    the SuperLink's database (runs, registered SuperNode keys)
    <dir>/pids        one line per process started here: "<role> <pid> <start-time>"
    <dir>/deploy.json how the SuperLink was started (address, connection, secure or not)

Processes are started in their own session and stopped by the pids recorded here
(SuperNodes first, then the SuperLink), never by name, so several deployments,
test runs and simulations on one machine never touch each other's processes.
Secure by default: TLS with a private CA and SuperNode authentication with
registered public keys; ``insecure=True`` is for local trials only.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedcl.errors import FedCLError

CERTS_SCRIPT = Path(__file__).with_name("certs.sh")
DEFAULT_CONNECTION = "fedcl-deploy"
DEFAULT_SUPERLINK_PORT = 9092
DEFAULT_SUPERNODE_PORT = 9094  # SuperNode i on one host uses 9094 + i for its local Runtime API


class DeployError(FedCLError, RuntimeError):
    """A deployment step failed (message names the step and where its log is)."""


@dataclass(frozen=True)
class Layout:
    """Paths inside one deployment folder."""

    root: Path

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def ca_cert(self) -> Path:
        return self.certs / "ca.crt"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def meta(self) -> Path:
        return self.root / "deploy.json"

    @property
    def database(self) -> Path:
        return self.root / "state.db"

    def node_key(self, name: str) -> Path:
        return self.keys / name


# ---- certificates, keys, connection -----------------------------------------------------------


def make_certs(layout: Layout, sans: Iterable[str]) -> None:
    """CA + server certificate for the addresses in ``sans`` (``certs.sh``)."""
    names = list(sans)
    if not names:
        raise DeployError("certificates need at least one address (SAN), e.g. 127.0.0.1")
    _check(["bash", str(CERTS_SCRIPT), str(layout.certs), *names], "making certificates")


def make_key(layout: Layout, name: str) -> Path:
    """An OpenSSH ECDSA P-384 key pair ``keys/<name>`` (the only kind the SuperNode accepts); kept if present."""
    key = layout.node_key(name)
    if not key.exists():
        layout.keys.mkdir(parents=True, exist_ok=True)
        _check(["ssh-keygen", "-t", "ecdsa", "-b", "384", "-N", "", "-q", "-C", f"fedcl-{name}", "-f", str(key)],
               f"making key {name}")
    return key


def write_connection(flwr_home: Path, name: str, address: str, root_certificates: Path | None) -> Path:
    """Add or replace ``[superlink.<name>]`` in ``$FLWR_HOME/config.toml``; ``None`` = insecure."""
    cfg = flwr_home / "config.toml"
    flwr_home.mkdir(parents=True, exist_ok=True)
    fresh = '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n'
    text = cfg.read_text() if cfg.exists() else fresh
    # drop an older entry of the same name (up to the next table header)
    text = re.sub(rf"\n*\[superlink\.{re.escape(name)}\]\n(?:(?!\[)[^\n]*\n?)*", "\n", text).rstrip("\n")
    entry = f'\n\n[superlink.{name}]\naddress = "{address}"\n'
    if root_certificates is None:
        entry += "insecure = true\n"
    else:
        entry += f'root-certificates = "{root_certificates.resolve()}"\n'
    cfg.write_text(text + entry)
    return cfg


def register_key(public_key: Path, connection: str, env: dict[str, str]) -> str:
    """``flwr supernode register <pub> <connection>``; returns the CLI's answer."""
    out = _check(["flwr", "supernode", "register", str(public_key), connection], f"registering {public_key}", env)
    return out.strip()


def list_nodes(connection: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """The SuperNodes the SuperLink knows (``flwr supernode ls --format json``)."""
    out = _check(["flwr", "supernode", "ls", connection, "--format", "json"], "listing SuperNodes", env)
    data = json.loads(out[out.index("{"):])
    nodes: list[dict[str, Any]] = data.get("nodes", [])
    return nodes


def online_nodes(connection: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """The SuperNodes currently online."""
    return [n for n in list_nodes(connection, env) if str(n.get("status", "")).lower() == "online"]


def wait_online(connection: str, env: dict[str, str], count: int, timeout: float = 90.0) -> list[dict[str, Any]]:
    """Wait until ``count`` SuperNodes are online (a run started earlier maps clients onto fewer nodes)."""
    deadline = time.monotonic() + timeout
    nodes: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        nodes = online_nodes(connection, env)
        if len(nodes) >= count:
            return nodes
        time.sleep(1.0)
    raise DeployError(f"only {len(nodes)} of {count} SuperNodes online after {timeout:.0f} s; see the logs")


# ---- processes -------------------------------------------------------------------------------


def superlink_command(layout: Layout, host: str, port: int, insecure: bool) -> list[str]:
    """The ``flower-superlink`` command line of this deployment."""
    cmd = ["flower-superlink", "--host", host, "--port", str(port), "--database", str(layout.database),
           # the app's dependencies are installed already; never `uv sync` torch per run
           "--disable-runtime-dependency-installation"]
    if insecure:
        return [*cmd, "--insecure"]
    c = layout.certs
    return [*cmd, "--ssl-ca-certfile", str(c / "ca.crt"), "--ssl-certfile", str(c / "server.pem"),
            "--ssl-keyfile", str(c / "server.key"), "--enable-supernode-auth"]


def supernode_command(
    superlink: str,
    partition_id: int,
    num_partitions: int,
    port: int,
    *,
    root_certificates: Path | None,
    key: Path | None,
    state_dir: str | None = None,
    data_dir: str | None = None,
    max_retries: int | None = None,
    bind_partition: bool = False,
) -> list[str]:
    """The ``flower-supernode`` command line of one SuperNode (``root_certificates=None`` = insecure).

    ``bind_partition`` adds ``bind-partition=true``: the node plays only logical client
    ``partition_id`` (run with ``federation.node_mapping=partition``).
    """
    node_config = f"partition-id={partition_id} num-partitions={num_partitions}"
    if bind_partition:
        node_config += " bind-partition=true"
    if state_dir:
        node_config += f' state-dir="{state_dir}"'
    if data_dir:
        node_config += f' data-dir="{data_dir}"'
    cmd = ["flower-supernode", "--superlink", superlink, "--port", str(port), "--node-config", node_config]
    if root_certificates is None:
        cmd.append("--insecure")
    else:
        cmd += ["--root-certificates", str(root_certificates)]
    if key is not None:
        cmd += ["--auth-supernode-private-key", str(key)]
    if max_retries is not None:
        cmd += ["--max-retries", str(max_retries)]
    return cmd


def spawn(layout: Layout, role: str, cmd: list[str], env: dict[str, str]) -> int:
    """Start ``cmd`` in its own session, log to ``logs/<role>.log``, record its pid."""
    layout.logs.mkdir(parents=True, exist_ok=True)
    with open(layout.logs / f"{role}.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    with open(layout.pids, "a") as fh:
        fh.write(f"{role} {proc.pid} {_start_time(proc.pid)}\n")
    return proc.pid


def wait_port(host: str, port: int, pid: int, timeout: float = 60.0) -> None:
    """Wait until ``host:port`` accepts connections (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, None):
            raise DeployError(f"process {pid} exited before opening {host}:{port}; see its log")
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.3)
    raise DeployError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def recorded(layout: Layout) -> list[tuple[str, int, str]]:
    """``(role, pid, start time)`` for every process recorded in the pids file."""
    if not layout.pids.exists():
        return []
    rows = []
    for line in layout.pids.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            rows.append((parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""))
    return rows


def status(layout: Layout) -> list[dict[str, Any]]:
    """Each recorded process with whether it is still running (same pid and start time)."""
    return [{"role": role, "pid": pid, "running": _alive(pid, start)} for role, pid, start in recorded(layout)]


def family(pids: Iterable[int]) -> set[int]:
    """Live processes belonging to the recorded ``pids``: themselves and their descendants.

    Descent counts the parent link, the session (a SuperNode's SuperExec stays in
    its session and can outlive it), and Flower's ``--parent-pid`` argument (the
    SuperLink detaches its SuperExec into a new session and ties it back that way).
    """
    roots = set(pids)
    procs: dict[int, tuple[int, int, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except (OSError, IndexError):
                continue
            if fields[0] != "Z":
                procs[int(entry.name)] = (int(fields[1]), int(fields[3]), argv)
    # the session test is limited to Flower programs: a dead root's pid may be reused by an unrelated session
    found = {p for p, (_, sid, argv) in procs.items() if p in roots or (sid in roots and _is_flower(argv))}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, argv) in procs.items():
            parent = _parent_pid_arg(argv)
            if pid not in found and (ppid in found or (parent is not None and (parent in found or parent in roots))):
                found.add(pid)
                changed = True
    return found


def stop(layout: Layout, timeout: float = 20.0) -> list[int]:
    """Stop every recorded process: SuperNodes first, then the SuperLink; SIGKILL what ignores SIGTERM.

    Returns the pids that had to be killed. The pids file is removed at the end.
    """
    rows = recorded(layout)
    killed: list[int] = []
    # SuperNodes first: a SuperNode whose SuperLink vanished keeps retrying the connection
    for group in ([r for r in rows if r[0] != "superlink"], [r for r in rows if r[0] == "superlink"]):
        # a recorded process that is gone may have left children (e.g. a refused SuperNode's SuperExec)
        members = family(pid for _, pid, _ in group)
        for _, pid, start in group:
            if _alive(pid, start):
                _signal_group(pid, signal.SIGTERM)
        for pid in members:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p, None) for p in members):
            time.sleep(0.2)
        for pid in members:
            if _alive(pid, None):  # e.g. a child that ignored SIGTERM, or a detached SuperExec
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.append(pid)
    for _, pid, _ in rows:
        try:  # reap our own children so they do not linger as zombies
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    layout.pids.unlink(missing_ok=True)
    return killed


# ---- helpers ---------------------------------------------------------------------------------


def _check(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise DeployError(f"{what} failed (exit {proc.returncode}): {shlex.join(cmd)}\n"
                          f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (guards against a recycled pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, start: str | None) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    if fields[0] == "Z":  # a zombie is gone, only not reaped yet
        return False
    return not start or fields[19] == start


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # processes were started as session (and group) leaders
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _is_flower(argv: list[str]) -> bool:
    return any("flower-" in a or "flwr-" in a for a in argv[:2])


def _parent_pid_arg(argv: list[str]) -> int | None:
    if "--parent-pid" in argv:
        i = argv.index("--parent-pid")
        if i + 1 < len(argv) and argv[i + 1].isdigit():
            return int(argv[i + 1])
    return None
