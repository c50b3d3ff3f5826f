"""A throw-away PostgreSQL server that the caller may stop and start again (fault tests,
benchmarks), run with hack/pg_ctl.sh (which handles running as root).

    with PgServer(tmp_path / "pg") as pg:
        url = pg.create_database("faults")       # migrated
        pg.stop(); ...; pg.start()               # same port and data: a restart
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import psycopg2
from guideline_core import db, summary_cache
from support.cluster import REPO_ROOT
from support.net import free_port

PG_CTL = str(REPO_ROOT / "hack" / "pg_ctl.sh")
USER = "guideline"


class PgServer:
    """One PostgreSQL cluster in `directory` on a loopback port (kept across restarts);
    given `pod_host` (LocalCluster.pod_host), also on that address, trusting the host's own
    subnets, which hold the real node's pods."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        options: str = "",
        pod_host: str | None = None,
    ):
        self.directory = Path(directory)
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.port = port or free_port()
        self.options = options
        self.addresses = ["127.0.0.1"]
        if pod_host and pod_host != "127.0.0.1":
            self.addresses.append(pod_host)

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _pg_ctl(self, *args: str, timeout: float = 120) -> None:
        subprocess.run([PG_CTL, *args], check=True, capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        """initdb on first use, then start and wait until it accepts connections."""
        if not (self.data / "PG_VERSION").exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            self._pg_ctl(
                "initdb", "-D", str(self.data), "-o", f"--username={USER} --auth=trust -E UTF8"
            )
            if len(self.addresses) > 1:
                with (self.data / "pg_hba.conf").open("a") as hba:
                    hba.write("host all all samenet trust\n")
        socket_dir = self.directory / "sock"
        socket_dir.mkdir(exist_ok=True)
        socket_dir.chmod(0o777)
        self._pg_ctl(
            "start",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -k {socket_dir} -c listen_addresses={','.join(self.addresses)}"
            f" {self.options}",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: roll back and disconnect every session; `immediate`:
        a crash, recovery at the next start). Does nothing if it is not running."""
        if self.running():
            self._pg_ctl("stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def running(self) -> bool:
        """True while the server runs."""
        if not (self.data / "PG_VERSION").exists():
            return False
        result = subprocess.run(
            [PG_CTL, "status", "-D", str(self.data)], capture_output=True, text=True
        )
        return result.returncode == 0

    def url(self, dbname: str, host: str = "127.0.0.1") -> str:
        """The libpq URL of a database on this server (at `host`, one it listens on)."""
        return f"postgresql://{USER}@{host}:{self.port}/{dbname}"

    def create_database(self, name: str | None = None, migrate: bool = True) -> str:
        """A new (migrated) database; returns its URL."""
        name = name or f"db_{secrets.token_hex(4)}"
        conn = psycopg2.connect(self.url("postgres"), connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        url = self.url(name)
        if migrate:
            db.migrate(url)
        return url

    def fresh_database(self, migrate: bool = True) -> str:
        """`create_database`, after starting the server again if it is down (a failed
        restart test must not take the next ones down)."""
        if not self.running():
            self.start()
        return self.create_database(migrate=migrate)

    def cache_role_url(self, dbname: str, host: str = "127.0.0.1") -> str:
        """The URL of database `dbname` as the runner's chunk-cache role (made as
        `guideline-migrate --cache-role` makes it: SELECT and INSERT on chunk_summaries)."""
        role = "guideline_runner_cache"
        conn = psycopg2.connect(self.url(dbname), connect_timeout=5)
        try:
            with conn:
                summary_cache.grant_cache_role(conn, role)
        finally:
            conn.close()
        return f"postgresql://{role}@{host}:{self.port}/{dbname}"

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until a connection succeeds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
