"""A private PostgreSQL cluster on a free loopback port, started from the installed server
binaries, for the desk benchmarks and the tests that need a real database.

``initdb`` and the server refuse to run as root, and continuous integration runs as root: then
the cluster belongs to the ``postgres`` system user and its commands run through ``runuser``.
The cluster lives in its own temporary folder (owned by whoever runs the server), trusts
connections from 127.0.0.1 only, and is stopped and removed when the test session ends.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL server's bin folder, or None."""
    found = sorted(glob.glob(_BIN_GLOB), key=lambda path: int(Path(path).parent.name))
    for folder in reversed(found):
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    bin_dir: Path
    data_dir: Path
    port: int
    owner: str | None  # the system user the server runs as, when it is not us

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=60)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "--no-sync")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.data_dir}'\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def reset(self) -> None:
        """Drop everything the desk created, so each test starts from an empty database."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS desk CASCADE")


class ClusterError(Exception):
    """No cluster can be started here; the message says what is missing."""


def server_owner() -> str | None:
    """Who must run the server: None for us, else the ``postgres`` system user (as root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError(
            "running as root needs the 'postgres' system user to own a PostgreSQL cluster"
        ) from None
    return "postgres"


@contextlib.contextmanager
def private_cluster(prefix: str = "desk-pg-") -> Iterator[Cluster]:
    """A new cluster, started; stopped and removed on leaving."""
    bin_dir = server_binaries()
    if bin_dir is None:
        raise ClusterError("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    owner = server_owner()
    base = Path(tempfile.mkdtemp(prefix=prefix))
    if owner is not None:
        record = pwd.getpwnam(owner)
        os.chown(base, record.pw_uid, record.pw_gid)
    cluster = Cluster(bin_dir, base / "data", free_port(), owner)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
