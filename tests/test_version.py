"""One version, defined once in pyproject.toml, and every place that shows it reads it: the
installed package, the API's OpenAPI document, `guideline-client --version`, the Makefile
(which passes it to the image build as the Dockerfile's VERSION), and the chart's
appVersion (a literal helm needs; this test keeps it equal)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from guideline_api.app import create_app
from guideline_core import version
from support.api import make_settings
from support.cluster import REPO_ROOT

PYPROJECT_VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_package_reports_pyprojects_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", PYPROJECT_VERSION)
    assert version() == PYPROJECT_VERSION


def test_the_api_reports_it(tmp_path: Path) -> None:
    settings = make_settings("postgresql://unused@127.0.0.1:1/x", tmp_path / "kubeconfig")
    assert create_app(settings).version == PYPROJECT_VERSION


def test_the_cli_reports_it() -> None:
    client = Path(sys.executable).parent / "guideline-client"
    done = subprocess.run([str(client), "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"guideline-client {PYPROJECT_VERSION}"


def test_the_image_label_gets_it_from_the_makefile() -> None:
    made = subprocess.run(
        ["make", "-s", "version"], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert made.stdout.strip() == PYPROJECT_VERSION
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG VERSION$", dockerfile, re.M), "no default: the Makefile passes it"
    assert 'org.opencontainers.image.version="${VERSION}"' in dockerfile
    assert PYPROJECT_VERSION not in dockerfile


def test_make_image_tags_and_labels_it() -> None:
    """hack/build-images.sh (make image) tags the image and passes VERSION from hack/lib.sh."""
    done = subprocess.run(
        ["bash", "-c", 'source hack/lib.sh && echo "$APP_VERSION $APP_IMAGE"'],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT,
    )  # fmt: skip
    assert done.stdout.split() == [
        PYPROJECT_VERSION,
        f"docker.io/library/guideline-ingest:{PYPROJECT_VERSION}",
    ]
    assert (
        '--build-arg "VERSION=$APP_VERSION"' in (REPO_ROOT / "hack" / "build-images.sh").read_text()
    )


def test_the_charts_app_version_is_it() -> None:
    chart = yaml.safe_load((REPO_ROOT / "charts" / "guideline-ingest" / "Chart.yaml").read_text())
    assert chart["appVersion"] == PYPROJECT_VERSION
