"""A throw-away PostgreSQL cluster for the storage tests: Debian's binaries, run as the unprivileged ``postgres``
user (when the tests run as root) on a temp dir, listening on a free loopback port and a socket in that dir.

One cluster per test session (initdb and start take about a second); each test gets its own database, copied
from template0 (a few milliseconds). The cluster is stopped and its dir removed at the end, also on failure.
"""
import contextlib
import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, List

import pytest

from tests.conftest import free_port

SUPERUSER = "paradrop"  # the cluster's superuser: trust authentication on loopback and the socket
BACKENDS = ("sqlite", "postgresql")


def postgres_bin() -> Path:
    """The newest installed server's bin dir (tools/setup-system installs Debian's postgresql)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql: run tools/setup-system (make test)")
    return Path(found[-1]).parent


@dataclasses.dataclass
class Cluster:
    bin_dir: Path
    base: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "socket"

    def url(self, database: str, password: str = "") -> str:
        """The ``--db`` URL of ``database`` over TCP on loopback."""
        secret = f":{password}" if password else ""
        return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str) -> str:
        """The ``--db`` URL of ``database`` through the unix socket in the cluster's dir."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        subprocess.run([str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
                        "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", statement],
                       check=True, capture_output=True, timeout=60)

    def restart(self) -> None:
        """Stop the server (its connections dropped) and start it again on the same port."""
        subprocess.run(_as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-o", self.options,
                                     "-l", str(self.base / "server.log"), "-m", "fast", "-w", "-t", "60",
                                     "restart"]), check=True, capture_output=True, timeout=120)

    @property
    def options(self) -> str:
        return (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")

    def create_database(self) -> str:
        name = f"t_{secrets.token_hex(6)}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE template0")
        return name

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _as_postgres(argv: List[str]) -> List[str]:
    """The server refuses to run as root: as root, run it as the ``postgres`` user (Debian's package makes it)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    bin_dir = postgres_bin()
    base = Path(tempfile.mkdtemp(prefix="paradrop-pg-"))
    cluster = Cluster(bin_dir, base, free_port())
    cluster.socket_dir.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (base, cluster.socket_dir):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    started = False
    try:
        subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(cluster.data_dir), "-A", "trust", "-U",
                                     SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"]),
                       check=True, capture_output=True, timeout=120)
        started = True
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(cluster.data_dir), "-o", cluster.options, "-l",
                                     str(base / "server.log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, timeout=120)
        yield cluster
    finally:
        if started:
            subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(cluster.data_dir), "-m", "immediate",
                                         "-w", "stop"]), capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """The session's cluster, started on first use."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_database(postgres_cluster) -> Iterator[str]:
    """A new empty database's ``--db`` URL, dropped after the test."""
    name = postgres_cluster.create_database()
    try:
        yield postgres_cluster.url(name)
    finally:
        postgres_cluster.drop_database(name)


@pytest.fixture(params=BACKENDS)
def db_backend(request) -> str:
    """Run the test once on SQLite and once on PostgreSQL (test ids end in [sqlite] / [postgresql])."""
    return request.param
