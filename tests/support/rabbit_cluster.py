"""A private three-node RabbitMQ cluster for the cluster scenarios.

Three :class:`~support.rabbit_node.RabbitNode` nodes, each on free ports of
its own, in temporary directories that share one Erlang cookie; nodes 2 and 3
join node 1. The shared broker on 127.0.0.1:5672 is never touched, and only
the cluster's own pids are ever killed.

Typical use (the ``cluster`` fixture of ``tests/cluster/conftest.py`` does this
once per run)::

    with RabbitCluster() as cluster:      # boots and joins the nodes (~12-20 s)
        url = cluster.url                 # the three AMQP URLs, comma-separated
        cluster.nodes[1].kill()           # kill -9 of node 2 only
        cluster.nodes[1].start()          # it rejoins by itself
        cluster.connected_node()          # index of the node a client is connected to

While iterating on the cluster tests, boot the cluster once by hand and let
each run attach to it instead of booting its own::

    .venv/bin/python tests/support/rabbit_cluster.py up /tmp/actorbus-cluster.json
    ACTORBUS_TEST_CLUSTER=/tmp/actorbus-cluster.json .venv/bin/python -m pytest tests/cluster
    .venv/bin/python tests/support/rabbit_cluster.py down /tmp/actorbus-cluster.json
"""

from __future__ import annotations

import concurrent.futures
import json
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``support`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support.rabbit_node import RabbitNode, RabbitNodeError, pick_ports

__all__ = ["CLUSTER_VARIABLE", "RabbitCluster"]

CLUSTER_VARIABLE = "ACTORBUS_TEST_CLUSTER"
"""A state file written by ``rabbit_cluster.py up``: the fixture attaches to that cluster."""

SIZE = 3


class RabbitCluster:
    """Three private nodes joined in one cluster; see the module docs."""

    def __init__(self, *, base_dir: str | Path | None = None, size: int = SIZE) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="actorbus-cluster-"))
        """Directory holding one sub-directory per node."""
        tag = uuid.uuid4().hex[:6]
        self.cookie = secrets.token_hex(16)
        """The Erlang cookie every node (and its ``rabbitmqctl``) shares."""
        self.nodes: list[RabbitNode] = []
        """The nodes, node 1 first (the one the others joined)."""
        taken: set[int] = set()
        for index in range(size):
            while True:
                amqp, dist = pick_ports()
                if amqp not in taken and dist not in taken:
                    taken.update((amqp, dist))
                    break
            node = RabbitNode(
                amqp_port=amqp,
                dist_port=dist,
                name=f"cluster{index + 1}-{tag}",
                base_dir=self.base_dir / f"n{index + 1}",
            )
            self._write_cookie(node)
            self.nodes.append(node)

    @property
    def urls(self) -> list[str]:
        """The AMQP URL of each node, node 1 first."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (what ``url=`` takes)."""
        return ",".join(self.urls)

    def _write_cookie(self, node: RabbitNode) -> None:
        cookie = node.base_dir / ".erlang.cookie"
        if cookie.exists():
            cookie.chmod(0o600)
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> float:
        """Boot every node at once, then join nodes 2.. to node 1; return seconds taken."""
        began = time.monotonic()
        self.start_nodes(range(len(self.nodes)), timeout)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            if first.node_name in self.running_members(node):
                continue
            node.stop_app()
            node.ctl("join_cluster", first.node_name, timeout=60)
            node.start_app(timeout)
        return time.monotonic() - began

    def start_nodes(self, indexes: Any, timeout: float = 120.0) -> None:
        """Boot the given nodes in parallel (a node of a cluster waits for its peers)."""
        chosen = [self.nodes[i] for i in indexes]
        with concurrent.futures.ThreadPoolExecutor(len(chosen) or 1) as pool:
            for future in [pool.submit(node.start, timeout) for node in chosen]:
                future.result()

    def running_members(self, node: RabbitNode | None = None) -> list[str]:
        """The cluster's running nodes as ``node`` (default node 1) sees them."""
        status = json.loads((node or self.nodes[0]).ctl("cluster_status", "--formatter", "json"))
        return list(status.get("running_nodes", []))

    def wait_members(self, count: int | None = None, timeout: float = 60.0) -> None:
        """Wait until every node (or ``count``) runs and sees the others."""
        wanted = len(self.nodes) if count is None else count
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                alive = [n for n in self.nodes if n.is_ready()]
                if len(alive) >= wanted and all(
                    len(self.running_members(n)) >= wanted for n in alive
                ):
                    return
            except RabbitNodeError as exc:
                last = exc
            time.sleep(0.3)
        raise RabbitNodeError(f"cluster not whole after {timeout:.0f}s: {last}")

    def ensure_ready(self, timeout: float = 120.0) -> None:
        """Bring every node back to running and joined, whatever the last test did."""
        down = [i for i, node in enumerate(self.nodes) if not node.is_running()]
        if down:
            self.start_nodes(down, timeout)
        for node in self.nodes:
            node.ensure_ready(timeout)
        self.wait_members(timeout=timeout)

    def cleanup(self) -> None:
        """Stop every node (killing what will not stop) and remove the directories."""
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.cleanup(), self.nodes))
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> RabbitCluster:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    # -- inspection --------------------------------------------------------------------------

    def connected_node(self, *, timeout: float = 10.0) -> int | None:
        """Index of the one node holding the client connections (polled), or ``None``.

        ``list_connections`` is cluster-wide; a connection's name ends with the
        node's own address (``client -> 127.0.0.1:<port>``), which tells the node.
        """
        by_port = {node.amqp_port: index for index, node in enumerate(self.nodes)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                rows = self.any_ready().list_connections("name")
            except RabbitNodeError:
                rows = []
            ports = {
                int(str(row["name"]).rsplit(":", 1)[-1]) for row in rows if "->" in str(row["name"])
            }
            holding = {by_port[p] for p in ports if p in by_port}
            if len(holding) == 1:
                return holding.pop()
            time.sleep(0.2)
        return None

    def any_ready(self) -> RabbitNode:
        """A node that accepts AMQP now (for ``rabbitmqctl`` listings)."""
        for node in self.nodes:
            if node.is_ready():
                return node
        raise RabbitNodeError("no node of the cluster is ready")

    def leader_of(self, queue: str) -> int | None:
        """Index of the node holding a quorum queue's leader, or ``None``."""
        rows = self.any_ready().list_queues("name", "leader")
        leader = next((row.get("leader") for row in rows if row.get("name") == queue), None)
        for index, node in enumerate(self.nodes):
            if leader == node.node_name:
                return index
        return None

    def home_of(self, queue: str) -> int | None:
        """Index of the node a queue's process lives on (a classic queue's home), or ``None``.

        Read from the plain listing: the JSON one writes pids without their node.
        """
        output = self.any_ready().ctl("list_queues", "name", "pid", "--quiet", "--no-table-headers")
        for line in output.splitlines():
            name, _, pid = line.partition("\t")
            if name == queue:
                for index, node in enumerate(self.nodes):
                    if f"<{node.node_name}." in pid:
                        return index
        return None

    # -- a cluster booted by hand (see the module docs) --------------------------------------

    def save(self, path: str | Path) -> None:
        """Write what :meth:`attach` needs to find this cluster again."""
        state = {
            "base_dir": str(self.base_dir),
            "cookie": self.cookie,
            "nodes": [
                {"amqp": n.amqp_port, "dist": n.dist_port, "name": n.node_name.split("@")[0]}
                for n in self.nodes
            ],
        }
        Path(path).write_text(json.dumps(state))

    @classmethod
    def attach(cls, path: str | Path) -> RabbitCluster:
        """The cluster described by a state file that :meth:`save` wrote."""
        state = json.loads(Path(path).read_text())
        cluster = cls.__new__(cls)
        cluster._own_dir = False
        cluster.base_dir = Path(state["base_dir"])
        cluster.cookie = state["cookie"]
        cluster.nodes = [
            RabbitNode(
                amqp_port=n["amqp"],
                dist_port=n["dist"],
                name=n["name"],
                base_dir=cluster.base_dir / f"n{i + 1}",
            )
            for i, n in enumerate(state["nodes"])
        ]
        return cluster


def main(argv: list[str]) -> int:
    """``up STATE`` boots a cluster and saves its state; ``down STATE`` removes it."""
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print("usage: rabbit_cluster.py up|down STATE_FILE", file=sys.stderr)
        return 2
    command, path = argv
    if command == "up":
        cluster = RabbitCluster()
        took = cluster.start()
        cluster.save(path)
        print(f"cluster up in {took:.1f}s: {cluster.url}")
        return 0
    cluster = RabbitCluster.attach(path)
    cluster._own_dir = True
    cluster.cleanup()
    Path(path).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
