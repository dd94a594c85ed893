"""A private RabbitMQ node for tests that stop, restart or kill the broker on purpose.

The shared broker on 127.0.0.1:5672 is never touched: :class:`RabbitNode` boots
its own node, in a temporary directory, on free ports (AMQP in 5700-5999, Erlang
distribution at AMQP + 20000), with its own Erlang cookie, and removes it all
afterwards. The node's environment is set only in the child processes
(``rabbitmq-server``, ``rabbitmqctl``), never in the test process, so nothing
else on the machine is redirected to it.

Typical use (the ``rabbit_node`` fixture of ``tests/faults/conftest.py`` does this
once per session)::

    with RabbitNode() as node:            # boots and waits for AMQP (~6.5 s)
        url = node.url                    # amqp://guest:guest@127.0.0.1:<port>/
        node.stop_app(); node.start_app() # app restart, ~2-3 s
        node.kill(); node.start()         # kill -9 of this node's pid only, then boot

Every control method is blocking (it runs ``rabbitmqctl``); from async code use
the ``a``-prefixed twins (``await node.arestart()``), which run it in a worker
thread so the event loop, and the consumers under test, keep running.

Readiness is an AMQP handshake (protocol header in, ``Connection.Start`` out),
polled, because ``rabbitmqctl await_startup`` fails right after ``-detached``.

TLS: :func:`make_certificates` makes a CA and a server certificate for
127.0.0.1 with the ``openssl`` command; ``RabbitNode(tls=files)`` adds a TLS
listener on ``node.tls_port`` using them (``node.tls_url``). Users:
:meth:`RabbitNode.add_user` with permissions, :meth:`RabbitNode.delete_user`,
and :meth:`RabbitNode.import_definitions` for definitions JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread

__all__ = [
    "RabbitNode",
    "RabbitNodeError",
    "TlsFiles",
    "amqp_ready",
    "find_rabbitmq",
    "make_certificates",
    "pick_ports",
    "rabbitmq_installed",
    "running_node",
]

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
"""What an AMQP 0-9-1 client sends first; a ready broker answers with Connection.Start."""

PORT_RANGE = (5700, 5999)
"""Where private AMQP ports are picked; the distribution port is AMQP + 20000."""

DIST_PORT_OFFSET = 20000

_BIN_DIRS = ("/usr/lib/rabbitmq/bin", "/usr/local/lib/rabbitmq/bin")
"""Where the Debian package keeps the real scripts. ``/usr/sbin/rabbitmq-server`` is a
wrapper that, run as root, switches to the ``rabbitmq`` user and resets ``HOME``, which
would hand the private node the shared node's cookie; the scripts here do not."""


class RabbitNodeError(RuntimeError):
    """Raised when the private node cannot be started, controlled or stopped."""


def find_rabbitmq(tool: str = "rabbitmq-server") -> str | None:
    """Path of a RabbitMQ script (``rabbitmq-server``, ``rabbitmqctl``), or ``None``."""
    for directory in _BIN_DIRS:
        candidate = Path(directory) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(tool)


def rabbitmq_installed() -> bool:
    """Tell whether a private node can be started here (server and ctl both found)."""
    return find_rabbitmq("rabbitmq-server") is not None and find_rabbitmq("rabbitmqctl") is not None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the broker binds: connections it closed may linger in TIME_WAIT on the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(attempts: int = 200) -> tuple[int, int]:
    """Return a free (AMQP, distribution) port pair, distribution = AMQP + 20000."""
    low, high = PORT_RANGE
    for _ in range(attempts):
        port = random.randint(low, high)
        if _port_free(port) and _port_free(port + DIST_PORT_OFFSET):
            return port, port + DIST_PORT_OFFSET
    raise RabbitNodeError(f"no free port pair in {low}-{high} after {attempts} tries")


def amqp_ready(host: str, port: int, timeout: float = 1.0) -> bool:
    """Tell whether an AMQP broker answers on ``host:port`` (one handshake attempt)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(AMQP_HEADER)
            frame = sock.recv(11)
    except OSError:
        return False
    # Frame type 1 (method) and Connection.Start (class 10, method 10) at bytes 7-10.
    return len(frame) >= 11 and frame[0] == 1 and frame[7:11] == b"\x00\x0a\x00\x0a"


class TlsFiles:
    """A CA certificate, and a server certificate and key it signed."""

    def __init__(self, cacert: Path, cert: Path, key: Path) -> None:
        self.cacert = cacert
        """The CA's certificate (what a client verifies the server against)."""
        self.cert = cert
        """The server's certificate."""
        self.key = key
        """The server's private key."""


def _openssl(*args: str) -> None:
    result = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RabbitNodeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_certificates(directory: Path, name: str = "test", *, host: str = "127.0.0.1") -> TlsFiles:
    """Make a CA and a server certificate for ``host`` (an IP address) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / f"{name}-ca.key", directory / f"{name}-ca.pem"
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    extensions = directory / f"{name}.ext"
    extensions.write_text(f"subjectAltName = IP:{host}\nextendedKeyUsage = serverAuth\n")
    new_key = ["-newkey", "rsa:2048", "-nodes"]
    _openssl("req", "-x509", *new_key, "-days", "2", "-subj", f"/CN={name} test CA",
             "-keyout", str(ca_key), "-out", str(ca_cert))  # fmt: skip
    _openssl("req", *new_key, "-subj", f"/CN={host}", "-keyout", str(key), "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(extensions),
             "-out", str(cert))  # fmt: skip
    for path in (ca_key, key):
        path.chmod(0o644)  # the node may run as another user
    return TlsFiles(ca_cert, cert, key)


class RabbitNode:
    """One private RabbitMQ node: boot, break, inspect and remove it; see the module docs."""

    def __init__(
        self,
        *,
        amqp_port: int | None = None,
        dist_port: int | None = None,
        name: str | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        tls: TlsFiles | None = None,
    ) -> None:
        if amqp_port is None:
            amqp_port, picked_dist = pick_ports()
            dist_port = dist_port or picked_dist
        self.host = host
        """Address the node listens on (always loopback)."""
        self.amqp_port = amqp_port
        """The AMQP port."""
        self.dist_port = dist_port or amqp_port + DIST_PORT_OFFSET
        """The Erlang distribution port (used by ``rabbitmqctl``)."""
        short_host = socket.gethostname().split(".")[0]
        self.node_name = f"{name or 'faults-' + uuid.uuid4().hex[:8]}@{short_host}"
        """Erlang node name, ``faults-<hex>@<short hostname>``."""
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="actorbus-rabbit-"))
        """Directory holding config, cookie (``HOME``), data, logs and the pid file."""
        self._server = find_rabbitmq("rabbitmq-server")
        self._ctl = find_rabbitmq("rabbitmqctl")
        self._pid: int | None = None
        self.tls = tls
        """Certificates of the TLS listener, if the node has one."""
        self.tls_port = pick_ports()[0] if tls is not None else None
        """Port of the TLS listener (``None`` without TLS)."""
        self._write_config()

    # -- facts -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """AMQP URL of the default vhost as guest."""
        return f"amqp://guest:guest@{self.host}:{self.amqp_port}/"

    @property
    def tls_url(self) -> str:
        """``amqps://`` URL of the TLS listener as guest (the node needs ``tls=``)."""
        if self.tls_port is None:
            raise RabbitNodeError("this node has no TLS listener")
        return f"amqps://guest:guest@{self.host}:{self.tls_port}/"

    def url_for(self, *, user: str = "guest", password: str = "guest", vhost: str = "") -> str:
        """AMQP URL with other credentials or vhost (for bad-input tests)."""
        return f"amqp://{user}:{password}@{self.host}:{self.amqp_port}/{vhost}"

    @property
    def pid_file(self) -> Path:
        """Where the node writes its OS pid."""
        return self.base_dir / "node.pid"

    @property
    def log_dir(self) -> Path:
        """The node's log directory."""
        return self.base_dir / "log"

    @property
    def pid(self) -> int | None:
        """OS pid of this node's Erlang VM if it is alive, else ``None``."""
        candidates = [self._pid]
        with contextlib.suppress(OSError, ValueError):
            candidates.insert(0, int(self.pid_file.read_text().strip()))
        for pid in candidates:
            if pid is not None and self._is_ours(pid):
                self._pid = pid
                return pid
        return None

    def is_running(self) -> bool:
        """Whether this node's VM is alive (the app may still be stopped)."""
        return self.pid is not None

    def is_ready(self) -> bool:
        """Whether the node accepts AMQP connections right now."""
        return amqp_ready(self.host, self.amqp_port)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> float:
        """Boot the node (if not running) and wait for AMQP; return seconds until ready."""
        self._require_installed()
        began = time.monotonic()
        if not self.is_running():
            assert self._server is not None
            result = subprocess.run(
                [self._server, "-detached"],
                env=self._server_env(),
                cwd=self.base_dir,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if result.returncode != 0:
                raise RabbitNodeError(
                    f"rabbitmq-server -detached failed ({result.returncode}): "
                    f"{result.stderr.strip() or result.stdout.strip()}"
                )
        self.wait_ready(timeout - (time.monotonic() - began))
        if self.tls_port is not None:
            self._wait_tcp(self.tls_port, timeout - (time.monotonic() - began))
        return time.monotonic() - began

    def _wait_tcp(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 1.0)
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.host, port), 1.0):
                return
            time.sleep(0.05)
        raise RabbitNodeError(f"{self.node_name}: nothing listens on {port}\n" + self.log_tail())

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Poll the AMQP handshake until it succeeds; return seconds waited."""
        began = time.monotonic()
        deadline = began + max(timeout, 1.0)
        while time.monotonic() < deadline:
            if self.is_ready():
                return time.monotonic() - began
            time.sleep(0.05)
        raise RabbitNodeError(
            f"{self.node_name} not accepting AMQP on {self.amqp_port} after {timeout:.0f}s\n"
            + self.log_tail()
        )

    def wait_not_ready(self, timeout: float = 30.0) -> None:
        """Wait until AMQP connections are refused (after a stop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_ready():
                return
            time.sleep(0.05)
        raise RabbitNodeError(f"{self.node_name} still accepting AMQP after {timeout:.0f}s")

    def stop_app(self) -> None:
        """Stop the RabbitMQ application (the VM stays up); connections are closed."""
        self.ctl("stop_app")
        self.wait_not_ready()

    def start_app(self, timeout: float = 60.0) -> float:
        """Start the application again; return seconds until AMQP is ready."""
        began = time.monotonic()
        self.ctl("start_app", timeout=timeout)
        self.wait_ready(timeout - (time.monotonic() - began))
        return time.monotonic() - began

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the whole node gracefully and wait for its VM to exit."""
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(RabbitNodeError, subprocess.TimeoutExpired):
            self.ctl("stop", timeout=timeout)
        if not self._wait_exit(pid, timeout):
            self.kill()

    def kill(self) -> None:
        """``kill -9`` this node's VM (its own pid only) and wait until it is gone."""
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not self._wait_exit(pid, 10.0):
            raise RabbitNodeError(f"{self.node_name} (pid {pid}) survived SIGKILL")
        self._wait_port_closed(10.0)

    def restart(self, *, kill: bool = False, timeout: float = 60.0) -> float:
        """Stop (or ``kill`` -9) then boot again; return seconds from boot to ready."""
        if kill:
            self.kill()
        else:
            self.stop(timeout)
        self._wait_port_closed(10.0)
        return self.start(timeout)

    def ensure_ready(self, timeout: float = 60.0) -> None:
        """Bring the node back to a running, ready state whatever a test left it in."""
        if not self.is_running():
            self.start(timeout)
            return
        if self.is_ready():
            return
        with contextlib.suppress(RabbitNodeError, subprocess.TimeoutExpired):
            self.ctl("start_app", timeout=timeout)
        try:
            self.wait_ready(15.0)
        except RabbitNodeError:
            self.restart(kill=True, timeout=timeout)

    def cleanup(self) -> None:
        """Stop the node (killing it if it will not stop) and remove its directory."""
        try:
            self.stop(timeout=20.0)
        except Exception:
            with contextlib.suppress(Exception):
                self.kill()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> RabbitNode:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    # -- control and inspection --------------------------------------------------------------

    def ctl(self, *args: str, timeout: float = 30.0) -> str:
        """Run ``rabbitmqctl -n <node> <args>`` with this node's HOME; return its stdout."""
        self._require_installed()
        assert self._ctl is not None
        return self._run_cli(self._ctl, args, timeout)

    def await_quorum_plus_one(self, timeout: float = 120.0) -> None:
        """Wait until stopping this node leaves every quorum queue a working majority.

        ``rabbitmq-upgrade await_online_quorum_plus_one``: the check an operator runs
        before taking the next node of a rolling restart down. Until the members on
        a node that just came back have caught up, stopping another one leaves a
        quorum queue without a leader, and it refuses publishes until one is elected.
        """
        self._require_installed()
        upgrade = find_rabbitmq("rabbitmq-upgrade")
        if upgrade is None:
            raise RabbitNodeError("rabbitmq-upgrade is not installed")
        self._run_cli(
            upgrade, ("await_online_quorum_plus_one", "-t", str(int(timeout))), timeout + 10
        )

    def _run_cli(self, script: str, args: tuple[str, ...], timeout: float) -> str:
        result = subprocess.run(
            [script, "-n", self.node_name, *args],
            env=self._ctl_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RabbitNodeError(
                f"{Path(script).name} {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def _list(self, command: str, *fields: str) -> list[dict[str, Any]]:
        output = self.ctl(command, *fields, "--quiet", "--formatter", "json")
        rows = json.loads(output or "[]")
        return [dict(row) for row in rows]

    def list_queues(self, *fields: str) -> list[dict[str, Any]]:
        """``list_queues`` as dicts; default fields: name, type, messages, consumers, durable."""
        return self._list(
            "list_queues", *(fields or ("name", "type", "messages", "consumers", "durable"))
        )

    def queue_info(self, name: str) -> dict[str, Any] | None:
        """The ``list_queues`` row of one queue, or ``None`` when it does not exist."""
        return next((row for row in self.list_queues() if row.get("name") == name), None)

    def list_bindings(self) -> list[dict[str, Any]]:
        """Every binding: source, destination, routing key, arguments (sortable, comparable)."""
        return self._list(
            "list_bindings",
            "source_name",
            "source_kind",
            "destination_name",
            "destination_kind",
            "routing_key",
            "arguments",
        )

    def list_exchanges(self) -> list[dict[str, Any]]:
        """Every exchange: name, type, durable."""
        return self._list("list_exchanges", "name", "type", "durable")

    def list_consumers(self) -> list[dict[str, Any]]:
        """Every consumer: queue name, channel pid, consumer tag, prefetch."""
        return self._list(
            "list_consumers", "queue_name", "channel_pid", "consumer_tag", "prefetch_count"
        )

    def list_connections(self, *fields: str) -> list[dict[str, Any]]:
        """Client connections; default fields: pid, name, peer_port, state."""
        return self._list("list_connections", *(fields or ("pid", "name", "peer_port", "state")))

    def close_all_connections(self, reason: str = "fault injection") -> None:
        """Close every client connection (``rabbitmqctl close_all_connections``)."""
        self.ctl("close_all_connections", reason)

    def close_connection(self, connection_pid: str, reason: str = "fault injection") -> None:
        """Close one client connection by a pid from :meth:`connection_pids`."""
        self.ctl("close_connection", connection_pid, reason)

    def connection_pids(self) -> list[str]:
        """Pids of the client connections, in the form ``close_connection`` takes.

        (The JSON listing writes pids relative to the CLI's own node, which the
        command does not accept, so they are read from the plain listing.)
        """
        output = self.ctl("list_connections", "pid", "--quiet", "--no-table-headers")
        return [line.strip() for line in output.splitlines() if line.strip()]

    def delete_queue(self, name: str) -> None:
        """Delete a queue through the CLI (cleanup that needs no client)."""
        self.ctl("delete_queue", name)

    def add_vhost(self, vhost: str) -> None:
        """Create a vhost (guest gets no permissions on it unless granted)."""
        self.ctl("add_vhost", vhost)

    def add_user(
        self,
        user: str,
        password: str,
        *,
        configure: str = ".*",
        write: str = ".*",
        read: str = ".*",
        vhost: str = "/",
    ) -> None:
        """Create a user with these permission patterns (``""`` grants nothing) on ``vhost``."""
        self.ctl("add_user", user, password)
        self.ctl("set_permissions", "-p", vhost, user, configure, write, read)

    def delete_user(self, user: str) -> None:
        """Delete a user (harmless if it does not exist)."""
        with contextlib.suppress(RabbitNodeError):
            self.ctl("delete_user", user)

    def import_definitions(self, path: str | os.PathLike[str]) -> None:
        """Import RabbitMQ definitions JSON (``rabbitmqctl import_definitions``)."""
        self.ctl("import_definitions", str(path))

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the node's logs, for error messages."""
        chunks: list[str] = []
        for path in sorted(self.log_dir.glob("*.log")):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(chunks)

    # -- async twins (run the blocking call in a worker thread) ------------------------------

    async def astart(self, timeout: float = 60.0) -> float:
        """Async :meth:`start`."""
        return await anyio.to_thread.run_sync(lambda: self.start(timeout))

    async def await_ready(self, timeout: float = 60.0) -> float:
        """Async :meth:`wait_ready`."""
        return await anyio.to_thread.run_sync(lambda: self.wait_ready(timeout))

    async def astop_app(self) -> None:
        """Async :meth:`stop_app`."""
        await anyio.to_thread.run_sync(self.stop_app)

    async def astart_app(self, timeout: float = 60.0) -> float:
        """Async :meth:`start_app`."""
        return await anyio.to_thread.run_sync(lambda: self.start_app(timeout))

    async def astop(self, timeout: float = 60.0) -> None:
        """Async :meth:`stop`."""
        await anyio.to_thread.run_sync(lambda: self.stop(timeout))

    async def akill(self) -> None:
        """Async :meth:`kill`."""
        await anyio.to_thread.run_sync(self.kill)

    async def arestart(self, *, kill: bool = False, timeout: float = 60.0) -> float:
        """Async :meth:`restart`."""
        return await anyio.to_thread.run_sync(lambda: self.restart(kill=kill, timeout=timeout))

    async def aclose_all_connections(self, reason: str = "fault injection") -> None:
        """Async :meth:`close_all_connections`."""
        await anyio.to_thread.run_sync(lambda: self.close_all_connections(reason))

    async def alist_queues(self, *fields: str) -> list[dict[str, Any]]:
        """Async :meth:`list_queues`."""
        return await anyio.to_thread.run_sync(lambda: self.list_queues(*fields))

    async def alist_bindings(self) -> list[dict[str, Any]]:
        """Async :meth:`list_bindings`."""
        return await anyio.to_thread.run_sync(self.list_bindings)

    async def alist_consumers(self) -> list[dict[str, Any]]:
        """Async :meth:`list_consumers`."""
        return await anyio.to_thread.run_sync(self.list_consumers)

    async def alist_connections(self, *fields: str) -> list[dict[str, Any]]:
        """Async :meth:`list_connections`."""
        return await anyio.to_thread.run_sync(lambda: self.list_connections(*fields))

    # -- internals ---------------------------------------------------------------------------

    def _require_installed(self) -> None:
        if self._server is None or self._ctl is None:
            raise RabbitNodeError("rabbitmq-server is not installed")

    def _write_config(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "enabled_plugins").write_text("[].\n")
        (self.base_dir / "rabbitmq-env.conf").write_text("")
        (self.base_dir / "rabbitmq.conf").write_text(
            "loopback_users = none\n"
            # A test machine's disk may be fuller than the 50 MB default alarm allows.
            "disk_free_limit.absolute = 1MB\n"
            "log.console = false\n"
            "log.file.level = warning\n"
            + (
                f"listeners.ssl.1 = {self.host}:{self.tls_port}\n"
                f"ssl_options.cacertfile = {self.tls.cacert}\n"
                f"ssl_options.certfile = {self.tls.cert}\n"
                f"ssl_options.keyfile = {self.tls.key}\n"
                "ssl_options.verify = verify_none\n"
                "ssl_options.fail_if_no_peer_cert = false\n"
                if self.tls is not None
                else ""
            )
        )

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env["HOME"] = str(self.base_dir)
        return env

    def _server_env(self) -> dict[str, str]:
        d = self.base_dir
        env = self._base_env()
        env.update(
            RABBITMQ_NODENAME=self.node_name,
            RABBITMQ_NODE_IP_ADDRESS=self.host,
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.log_dir),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(d / "rabbitmq"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(d / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(d / "rabbitmq-env.conf"),
            RABBITMQ_PID_FILE=str(self.pid_file),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def _ctl_env(self) -> dict[str, str]:
        env = self._base_env()
        env["RABBITMQ_CONF_ENV_FILE"] = str(self.base_dir / "rabbitmq-env.conf")
        return env

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` is alive and is the Erlang VM of this node (never another one)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        if "\nState:\tZ" in status:
            return False
        # The node name is not on the VM's command line, but its private HOME is.
        home = b"\x00-home\x00" + str(self.base_dir).encode() + b"\x00"
        return b"beam" in cmdline and home in cmdline

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._is_ours(pid):
                self._pid = None
                return True
            time.sleep(0.05)
        return False

    def _wait_port_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (
            _port_free(self.amqp_port) and _port_free(self.dist_port)
        ):
            time.sleep(0.05)


@contextlib.contextmanager
def running_node(**kwargs: Any) -> Iterator[RabbitNode]:
    """Context manager: a started private node, always stopped and removed afterwards."""
    node = RabbitNode(**kwargs)
    with node:
        yield node
