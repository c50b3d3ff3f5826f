"""`make image` (hack/build-images.sh): the project's image built from the Dockerfile with no
registry, named as the chart's defaults resolve, and the in-chart PostgreSQL's image from
Debian's package; both run in real containers (runc) under the chart's restrictions: the
database accepts the chart's credentials, the API serves on it, and every component's
console script starts as UID 10001 on a read-only root filesystem."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from support.containers import build_images, container, image_names, inspect, run
from support.net import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART = yaml.safe_load((REPO_ROOT / "charts" / "guideline-ingest" / "Chart.yaml").read_text())
VALUES = yaml.safe_load((REPO_ROOT / "charts" / "guideline-ingest" / "values.yaml").read_text())


pytestmark = pytest.mark.image


@pytest.fixture(scope="module")
def images() -> tuple[str, str]:
    build_images()
    return image_names()


def test_app_image_has_the_name_the_chart_uses(images: tuple[str, str]) -> None:
    app, _ = images
    chart_ref = f"{VALUES['image']['repository']}:{VALUES['image']['tag'] or CHART['appVersion']}"
    # A short name means docker.io/library/<name> to containerd and the kubelet.
    assert app == f"docker.io/library/{chart_ref}"
    config = inspect(app)["OCIv1"]["config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["guideline-api"]
    assert config["Labels"]["org.opencontainers.image.version"] == CHART["appVersion"]


def test_components_start_under_the_chart_restrictions(images: tuple[str, str]) -> None:
    app, _ = images
    # Two runs, so that the uid line and the traceback never share one output stream.
    # guideline_runner.documents: its native wheels (pypdfium2, selectolax) load in the image.
    imports = (
        "import os, pathlib, guideline_api.main, guideline_operator.main, guideline_runner.main,"
        " guideline_runner.documents"
    )
    code, out = run(
        app,
        [
            "python",
            "-c",
            f"{imports}; pathlib.Path('/tmp/ok').write_text('x'); print(os.getuid(), os.getgid())",
        ],
    )
    assert code == 0, out
    assert "10001 10001" in out, out
    code, out = run(
        app, ["python", "-c", "import pathlib; pathlib.Path('/opt/venv/x').write_text('x')"]
    )
    assert code != 0, out
    assert "Read-only file system" in out, out
    for command in ("guideline-api", "guideline-operator"):
        code, out = run(app, [command, "--help"])
        assert code == 0, out
        assert "usage" in out.lower(), out


@pytest.fixture(scope="module")
def postgres(images: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The PostgreSQL image initializing an empty data directory, as the chart's
    StatefulSet does (UID 999, PGDATA a subdirectory of the volume)."""
    _, pg_image = images
    data, sockets = tmp_path_factory.mktemp("pgdata"), tmp_path_factory.mktemp("pgrun")
    for path in (data, sockets):  # as the chart's fsGroup makes its volumes
        os.chown(path, 999, 999)
    port = free_port()
    env = {
        "POSTGRES_USER": "guideline",
        "POSTGRES_DB": "guideline",
        "POSTGRES_PASSWORD": "s3cret-pw",
        "PGDATA": "/var/lib/postgresql/data/pgdata",
    }
    binds = {"/var/lib/postgresql/data": data, "/var/run/postgresql": sockets}
    with container(pg_image, ["postgres", "-p", str(port)], env=env, binds=binds) as ctr:
        url = f"postgresql://guideline:s3cret-pw@127.0.0.1:{port}/guideline"
        deadline = time.monotonic() + 120
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if ctr.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"PostgreSQL did not start:\n{ctr.output()}") from None
                time.sleep(0.5)
        yield url


def test_postgresql_image_takes_the_chart_credentials(postgres: str) -> None:
    with psycopg.connect(postgres) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "guideline",
            "guideline",
        )
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("15.")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres.replace("s3cret-pw", "wrong"), connect_timeout=5)


def test_api_container_serves_on_the_postgresql_container(
    images: tuple[str, str], postgres: str
) -> None:
    app, _ = images
    port = free_port()
    env = {
        "GUIDELINE_DATABASE_URL": postgres,
        "GUIDELINE_PORT": str(port),
        "GUIDELINE_HOST": "127.0.0.1",
        "GUIDELINE_AUTH_ENABLED": "false",
    }
    with container(app, env=env) as ctr:
        deadline = time.monotonic() + 90
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2)
                break
            except httpx.TransportError:
                if ctr.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the API did not start:\n{ctr.output()}") from None
                time.sleep(0.5)
        assert response.status_code == 200, response.text
    with psycopg.connect(postgres) as conn:  # the API migrated the database on start-up
        assert conn.execute("SELECT to_regclass('jobs') IS NOT NULL").fetchone() == (True,)
