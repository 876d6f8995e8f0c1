"""Deployment Engine: helpers (fast) and a real TLS + node-auth federation on loopback (e2e)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

from fedcl.config import compose
from fedcl.errors import DataError
from fedcl.nodes import apply_node_config
from simulations.deploy.cli import remote_commands, start_local
from simulations.deploy.deployment import (
    DEFAULT_CONNECTION,
    Layout,
    family,
    make_key,
    online_nodes,
    recorded,
    spawn,
    stop,
    supernode_command,
    write_connection,
)
from simulations.launch import PROJECT_ROOT, flower_env
from tests.conftest import synthetic_overrides

FLOWER_PROGRAMS = ("flower-superlink", "flower-supernode", "flower-superexec", "flwr-clientapp", "flwr-serverapp")


# ---- helpers (no processes) --------------------------------------------------------------------


def test_write_connection_replaces_entry_and_keeps_others(tmp_path: Path) -> None:
    # Prepare: an entry written twice, the second time secure
    write_connection(tmp_path, "dep", "127.0.0.1:1", None)
    # Execute
    cfg = write_connection(tmp_path, "dep", "127.0.0.1:2", tmp_path / "ca.crt")
    # Assert: one entry, the latest one, and the default `local` connection untouched
    text = cfg.read_text()
    assert text.count("[superlink.dep]") == 1 and "127.0.0.1:2" in text and "insecure" not in text
    assert f'root-certificates = "{(tmp_path / "ca.crt").resolve()}"' in text
    assert '[superlink.local]\naddress = ":local:"' in text


def test_supernode_command_is_secure_unless_insecure(tmp_path: Path) -> None:
    secure = supernode_command("h:1", 3, 4, 9000, root_certificates=tmp_path / "ca.crt", key=tmp_path / "k",
                               state_dir="/s", data_dir="/d", max_retries=2)
    insecure = supernode_command("h:1", 0, 4, 9000, root_certificates=None, key=None)
    assert "--insecure" not in secure and "--insecure" in insecure
    assert "bind-partition" not in secure[secure.index("--node-config") + 1]
    bound = supernode_command("h:1", 3, 4, 9000, root_certificates=None, key=None, bind_partition=True)
    assert bound[bound.index("--node-config") + 1] == "partition-id=3 num-partitions=4 bind-partition=true"
    assert secure[secure.index("--node-config") + 1] == 'partition-id=3 num-partitions=4 state-dir="/s" data-dir="/d"'
    assert secure[secure.index("--auth-supernode-private-key") + 1] == str(tmp_path / "k")
    assert secure[secure.index("--max-retries") + 1] == "2"


def test_remote_commands_cover_every_host() -> None:
    text = remote_commands("superlink.example.org:9092", 3, "prod")
    assert "--san superlink.example.org" in text
    assert all(f"--partition-id {i} --num-partitions 3" in text for i in range(3))
    assert text.count("flwr supernode register") == 3 and "flwr run . prod" in text
    assert text.count("--bind-partition") == 3 and "federation.node_mapping=partition" in text


def _context(node_config: dict[str, str | int]) -> Context:
    return Context(run_id=1, node_id=1, node_config=dict(node_config), state=RecordDict(), run_config={})


def test_apply_node_config_overrides_data_dir_without_touching_the_shared_config() -> None:
    cfg = compose(["stream.data_dir=/server", "federation.num_clients=2"])
    out = apply_node_config(cfg, _context({"partition-id": 1, "data-dir": "/node"}), client_id=0)
    assert out.stream.data_dir == "/node" and cfg.stream.data_dir == "/server"


def test_bind_partition_node_refuses_other_clients() -> None:
    cfg = compose(synthetic_overrides("federation.num_clients=2"))
    ctx = _context({"partition-id": 1, "num-partitions": 2, "bind-partition": "true"})
    assert apply_node_config(cfg, ctx, client_id=1) is cfg
    with pytest.raises(DataError, match="partition 1"):
        apply_node_config(cfg, ctx, client_id=0)
    with pytest.raises(DataError, match="num-partitions"):
        apply_node_config(compose(synthetic_overrides("federation.num_clients=3")), ctx, client_id=1)


# ---- a real deployment on loopback ---------------------------------------------------------------


def _free_block(n: int) -> int:
    """First port of ``n`` consecutive free loopback ports."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + n > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


def _leftovers(markers: list[str], pids: set[int]) -> list[str]:
    """Live Flower processes of this test: in ``pids`` or naming one of ``markers`` (dir, ports)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(p in argv for p in FLOWER_PROGRAMS):
            if int(entry.name) in pids or any(m in argv for m in markers):
                found.append(f"{entry.name}: {argv[:200]}")
    return found


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[Layout, dict[str, str], list[int]]]:
    """TLS + SuperNode-auth SuperLink and two partition-bound SuperNodes on loopback; all stopped afterwards."""
    layout = Layout(tmp_path / "deploy")
    env = flower_env()
    env["FLWR_HOME"] = str(tmp_path / "flwr_home")  # private: the connection entry goes here only
    sl_port, node_port = _free_block(1), _free_block(3)
    ports = [sl_port, node_port, node_port + 1, node_port + 2]
    markers = [str(layout.root), *(f"127.0.0.1:{p}" for p in ports)]
    try:
        start_local(layout, nodes=2, port=sl_port, node_port=node_port, env=env, bind_partition=True)
        yield layout, env, ports
    finally:
        started = family(pid for _, pid, _ in recorded(layout))
        stop(layout)
        time.sleep(0.5)
        left = _leftovers(markers, started)
        assert not left, f"processes left running: {left}"


@pytest.mark.e2e
@pytest.mark.slow  # ~2 min: 2 deployment rounds + GPSE queries, a process per message
@pytest.mark.timeout(600)
def test_tls_deployment_runs_two_rounds_and_refuses_unregistered_node(
    deployment: tuple[Layout, dict[str, str], list[int]], tmp_path: Path
) -> None:
    # Prepare: a third SuperNode whose key was never registered (gives up after one retry)
    layout, env, ports = deployment
    rogue = make_key(layout, "rogue")
    rogue_cmd = supernode_command(f"127.0.0.1:{ports[0]}", 2, 3, ports[3], root_certificates=layout.ca_cert,
                                  key=rogue, max_retries=1)
    rogue_pid = spawn(layout, "supernode-rogue", rogue_cmd, env)
    run_dir = tmp_path / "run"
    strategy = "fot"
    overrides = " ".join(synthetic_overrides(
        f"strategy={strategy}", "federation.num_clients=2", "federation.rounds_per_task=1", "stream.num_tasks=2",
        "quiet=true", "federation.state_store=context", "federation.node_mapping=partition",
    ))
    # Execute: 2 tasks x 1 round through the SuperLink, TLS-verified against our CA
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["flwr", "run", ".", DEFAULT_CONNECTION, "--stream", "-c", f"overrides='{overrides}' run-dir='{run_dir}'"],
        env=env, cwd=PROJECT_ROOT, timeout=480, capture_output=True, text=True,
    )
    wall = time.perf_counter() - t0
    # Assert: the run finished with both rounds, from both SuperNodes
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["config"]["strategy"]["name"] == strategy
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["num_clients"] for r in rows] == [2, 2] and all(r["failures"] == 0 for r in rows)
    print(f"deployment run ({strategy}): {wall:.1f} s for 2 rounds")
    # Assert: the unregistered node was refused and never came online
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and Path(f"/proc/{rogue_pid}").exists() and not _reaped(rogue_pid):
        time.sleep(0.5)
    log = (layout.logs / "superlink.log").read_text()
    assert "No SuperNode found with the given public key" in log
    assert len(online_nodes(DEFAULT_CONNECTION, env)) == 2


def _reaped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_cli_usage_lists_commands() -> None:
    proc = subprocess.run([sys.executable, "-m", "simulations.deploy", "--help"], cwd=PROJECT_ROOT, env=flower_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert all(c in proc.stdout for c in ("start", "superlink", "supernode", "register", "status", "stop"))
