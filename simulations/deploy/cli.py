"""``python -m simulations.deploy``: start, inspect and stop a Flower deployment.

One machine (a trial, CI)::

    python -m simulations.deploy start --nodes 2            # TLS + SuperNode auth, all on 127.0.0.1
    flwr run . fedcl-deploy --stream -c "overrides='...'"
    python -m simulations.deploy status
    python -m simulations.deploy stop

Several machines: ``superlink`` on the SuperLink host, ``keys`` + ``supernode``
on each SuperNode host, ``register`` wherever ``flwr`` talks to the SuperLink;
``commands`` prints all of them for a given public address. See the README,
"Run on several machines".
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from simulations.deploy.deployment import (
    DEFAULT_CONNECTION,
    DEFAULT_SUPERLINK_PORT,
    DEFAULT_SUPERNODE_PORT,
    DeployError,
    Layout,
    make_certs,
    make_key,
    online_nodes,
    register_key,
    spawn,
    status,
    stop,
    superlink_command,
    supernode_command,
    wait_online,
    wait_port,
    write_connection,
)
from simulations.launch import flower_env


def default_dir() -> Path:
    """``$FLWR_HOME/deploy``: inside the (git-ignored) Flower home, never inside the app's FAB."""
    return Path(flower_env()["FLWR_HOME"]) / "deploy"


def start_superlink(
    layout: Layout,
    *,
    host: str,
    port: int,
    insecure: bool,
    connection: str,
    sans: list[str],
    env: dict[str, str],
) -> int:
    """Start the SuperLink (making certificates if needed) and write the connection entry."""
    if any(role == "superlink" for role, *_ in _running(layout)):
        raise DeployError(f"a SuperLink of {layout.root} is running already; `stop` it first")
    if not insecure and not (layout.certs / "server.pem").exists():
        make_certs(layout, sans)
    pid = spawn(layout, "superlink", superlink_command(layout, host, port, insecure), env)
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    wait_port(local, port, pid)
    write_connection(Path(env["FLWR_HOME"]), connection, f"{local}:{port}", None if insecure else layout.ca_cert)
    meta = {"connection": connection, "address": f"{local}:{port}", "insecure": insecure, "host": host}
    layout.meta.write_text(json.dumps(meta, indent=2))
    return pid


def start_local(
    layout: Layout,
    *,
    nodes: int,
    host: str = "127.0.0.1",
    port: int = DEFAULT_SUPERLINK_PORT,
    node_port: int = DEFAULT_SUPERNODE_PORT,
    insecure: bool = False,
    connection: str = DEFAULT_CONNECTION,
    state_dir: str | None = None,
    data_dir: str | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
    bind_partition: bool = False,
) -> dict[str, Any]:
    """SuperLink + ``nodes`` SuperNodes on this machine; SuperNode ``i`` has ``partition-id=i``.

    ``state_dir`` / ``data_dir`` become each node's ``state-dir`` / ``data-dir``
    node config (``{i}`` in them is replaced by the partition id).
    """
    env = env or flower_env()
    layout.root.mkdir(parents=True, exist_ok=True)
    sl_pid = start_superlink(layout, host=host, port=port, insecure=insecure, connection=connection,
                             sans=["127.0.0.1", "localhost"], env=env)
    pids = {"superlink": sl_pid}
    for i in range(nodes):
        key = None
        if not insecure:
            key = make_key(layout, f"node{i}")
            register_key(key.with_suffix(".pub"), connection, env)
        cmd = supernode_command(
            f"127.0.0.1:{port}", i, nodes, node_port + i,
            root_certificates=None if insecure else layout.ca_cert, key=key,
            state_dir=state_dir.replace("{i}", str(i)) if state_dir else None,
            data_dir=data_dir.replace("{i}", str(i)) if data_dir else None, bind_partition=bind_partition,
        )
        pids[f"supernode-{i}"] = spawn(layout, f"supernode-{i}", cmd, env)
    if wait:
        wait_online(connection, env, nodes)
    return pids


def remote_commands(address: str, nodes: int, connection: str, dir_: str = "~/fedcl-deploy") -> str:
    """The commands for a SuperLink host reachable at ``address`` (host:port) and ``nodes`` SuperNode hosts."""
    host, port = address.rsplit(":", 1)
    m = "python -m simulations.deploy"
    lines = [
        "# --- SuperLink host ---",
        f"{m} superlink --dir {dir_} --host 0.0.0.0 --port {port} --san {host} --connection {connection}",
        f"#   then copy {dir_}/certs/ca.crt (only the CA certificate) to every SuperNode host",
    ]
    for i in range(nodes):
        lines += [
            f"# --- SuperNode host {i} ---",
            f"{m} keys --dir {dir_} node{i}          # send {dir_}/keys/node{i}.pub to the SuperLink operator",
            f"{m} supernode --dir {dir_} --superlink {address} --partition-id {i} --num-partitions {nodes} "
            f"--root-certificates {dir_}/certs/ca.crt --key {dir_}/keys/node{i} --bind-partition",
        ]
    lines += [
        "# --- SuperLink operator (after receiving node<i>.pub) ---",
        *[f"flwr supernode register node{i}.pub {connection}" for i in range(nodes)],
        f"flwr supernode ls {connection}",
        f"flwr run . {connection} --stream -c \"overrides='federation.num_clients={nodes} "
        f"federation.state_store=context federation.node_mapping=partition'\"",
        "# --- stop (on each host) ---",
        f"{m} stop --dir {dir_}",
    ]
    return "\n".join(lines)


def _running(layout: Layout) -> list[tuple[str, int]]:
    return [(s["role"], s["pid"]) for s in status(layout) if s["running"]]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulations.deploy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--dir", type=Path, default=None, help="deployment folder (default: $FLWR_HOME/deploy)")
        return sp

    def secure_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--insecure", action="store_true",
                        help="LOCAL TRIALS ONLY: plain HTTP, no SuperNode authentication")
        sp.add_argument("--connection", default=DEFAULT_CONNECTION, help="name in $FLWR_HOME/config.toml")

    sp = add("start", "SuperLink + N SuperNodes on this machine (loopback)")
    sp.add_argument("--nodes", type=int, default=2)
    sp.add_argument("--port", type=int, default=DEFAULT_SUPERLINK_PORT)
    sp.add_argument("--node-port", type=int, default=DEFAULT_SUPERNODE_PORT, help="first SuperNode's local port")
    sp.add_argument("--state-dir", help="node-config state-dir ({i} = partition id)")
    sp.add_argument("--data-dir", help="node-config data-dir ({i} = partition id)")
    sp.add_argument("--bind-partition", action="store_true",
                    help="node i plays only logical client i (run with federation.node_mapping=partition)")
    secure_flags(sp)

    sp = add("superlink", "start only the SuperLink (the SuperLink host of a multi-machine deployment)")
    sp.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for other machines)")
    sp.add_argument("--port", type=int, default=DEFAULT_SUPERLINK_PORT)
    sp.add_argument("--san", action="append", default=[],
                    help="address SuperNodes use to reach this host (repeatable; 127.0.0.1 + localhost added)")
    secure_flags(sp)

    sp = add("keys", "make SuperNode key pairs keys/<name>, keys/<name>.pub (ECDSA P-384, OpenSSH format)")
    sp.add_argument("names", nargs="+")

    sp = add("register", "register SuperNode public keys with the SuperLink")
    sp.add_argument("public_keys", nargs="+", type=Path)
    sp.add_argument("--connection", default=DEFAULT_CONNECTION)

    sp = add("supernode", "start one SuperNode on this machine")
    sp.add_argument("--superlink", required=True, help="the SuperLink's host:port")
    sp.add_argument("--partition-id", type=int, required=True)
    sp.add_argument("--num-partitions", type=int, required=True)
    sp.add_argument("--port", type=int, default=None, help="local Runtime API port (default 9094 + partition id)")
    sp.add_argument("--root-certificates", type=Path, help="the CA certificate (ca.crt)")
    sp.add_argument("--key", type=Path, help="this node's private key (keys/<name>)")
    sp.add_argument("--insecure", action="store_true", help="LOCAL TRIALS ONLY: plain HTTP, no authentication")
    sp.add_argument("--state-dir")
    sp.add_argument("--data-dir")
    sp.add_argument("--max-retries", type=int, default=None, help="give up after N failed connection attempts")
    sp.add_argument("--bind-partition", action="store_true",
                    help="play only logical client <partition-id> (run with federation.node_mapping=partition)")

    add("status", "recorded processes and the SuperNodes the SuperLink sees online")
    add("stop", "stop every process recorded in the deployment folder (SuperNodes first)")

    sp = add("commands", "print the commands for a SuperLink host and N SuperNode hosts")
    sp.add_argument("--address", required=True, help="public host:port of the SuperLink")
    sp.add_argument("--nodes", type=int, default=2)
    sp.add_argument("--connection", default=DEFAULT_CONNECTION)
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    layout = Layout((args.dir or default_dir()).resolve())
    env = flower_env()
    try:
        return _dispatch(args, layout, env)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, layout: Layout, env: dict[str, str]) -> int:
    if args.cmd == "start":
        pids = start_local(layout, nodes=args.nodes, port=args.port, node_port=args.node_port,
                           insecure=args.insecure, connection=args.connection, state_dir=args.state_dir,
                           data_dir=args.data_dir, env=env, bind_partition=args.bind_partition)
        print(f"started {pids}; connection '{args.connection}' in {env['FLWR_HOME']}/config.toml; "
              f"logs in {layout.logs}")
    elif args.cmd == "superlink":
        layout.root.mkdir(parents=True, exist_ok=True)
        sans = list(dict.fromkeys([*args.san, "127.0.0.1", "localhost"]))
        pid = start_superlink(layout, host=args.host, port=args.port, insecure=args.insecure,
                              connection=args.connection, sans=sans, env=env)
        print(f"SuperLink pid {pid}; connection '{args.connection}'; log {layout.logs / 'superlink.log'}")
    elif args.cmd == "keys":
        for name in args.names:
            print(f"{make_key(layout, name)}.pub")
    elif args.cmd == "register":
        for pub in args.public_keys:
            print(register_key(pub, args.connection, env))
    elif args.cmd == "supernode":
        if not args.insecure and args.root_certificates is None:
            raise DeployError("--root-certificates (the CA certificate) is required unless --insecure")
        port = args.port if args.port is not None else DEFAULT_SUPERNODE_PORT + args.partition_id
        cmd = supernode_command(args.superlink, args.partition_id, args.num_partitions, port,
                                root_certificates=None if args.insecure else args.root_certificates.resolve(),
                                key=args.key.resolve() if args.key else None, state_dir=args.state_dir,
                                data_dir=args.data_dir, max_retries=args.max_retries,
                                bind_partition=args.bind_partition)
        layout.root.mkdir(parents=True, exist_ok=True)
        pid = spawn(layout, f"supernode-{args.partition_id}", cmd, env)
        print(f"SuperNode pid {pid}: {shlex.join(cmd)}")
    elif args.cmd == "status":
        for row in status(layout):
            print(f"{row['role']:<14} pid {row['pid']:<8} {'running' if row['running'] else 'stopped'}")
        if layout.meta.exists() and any(r == "superlink" for r, _ in _running(layout)):
            conn = json.loads(layout.meta.read_text())["connection"]
            nodes = online_nodes(conn, env)
            print(f"{len(nodes)} SuperNode(s) online: {[n.get('node-id') for n in nodes]}")
    elif args.cmd == "stop":
        killed = stop(layout)
        print("stopped" + (f" (SIGKILL needed for {killed})" if killed else ""))
    elif args.cmd == "commands":
        print(remote_commands(args.address, args.nodes, args.connection))
    return 0
