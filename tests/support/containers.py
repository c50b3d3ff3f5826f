"""Containers of the images `make image` builds (hack/build-images.sh), run with runc from
buildah's storage under the restrictions the chart gives its pods: a read-only root
filesystem, a numeric non-root user, no capabilities, no-new-privileges, a tmpfs on /tmp,
resource limits within the current hard limits. The host's network is shared (no bridge
is made), so a test reaches a container's server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_IMAGES = REPO_ROOT / "hack" / "build-images.sh"
# A cold build (debootstrap, apt, pip) takes minutes.
BUILD_TIMEOUT_SECONDS = 1800


@cache
def image_names() -> tuple[str, str]:
    """(the project's image, the PostgreSQL image) as hack/build-images.sh names them."""
    out = subprocess.run(
        ["bash", str(BUILD_IMAGES), "names"], check=True, capture_output=True, text=True
    ).stdout.split()
    return out[0], out[1]


def build_images() -> None:
    """`make image` (idempotent; seconds when nothing changed)."""
    result = subprocess.run(
        ["bash", str(BUILD_IMAGES)], capture_output=True, text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]


@cache
def built_images() -> tuple[str, str]:
    """`build_images()` once per test session (the real node's tests share it), then
    `image_names()`."""
    build_images()
    return image_names()


def inspect(image: str) -> dict[str, Any]:
    """The image's OCI configuration (buildah inspect)."""
    out = subprocess.run(
        ["buildah", "inspect", "--type", "image", image], check=True, capture_output=True,
        text=True,
    ).stdout  # fmt: skip
    return json.loads(out)


@dataclass
class Container:
    """A container running in the background; `stop()` kills and removes it."""

    name: str
    state_dir: Path
    process: subprocess.Popen[str]

    def runc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runc", "--root", str(self.state_dir), *args], capture_output=True, text=True
        )

    def output(self) -> str:
        if self.process.poll() is None:
            return ""
        return self.process.stdout.read() if self.process.stdout else ""

    def stop(self) -> None:
        self.runc("kill", self.name, "KILL")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.runc("delete", "--force", self.name)


def _spec(
    rootfs: Path,
    config: dict[str, Any],
    args: list[str] | None,
    env: dict[str, str],
    binds: dict[str, Path],
    tmpfs: list[str],
) -> dict[str, Any]:
    image = config.get("config") or {}
    user = image.get("User") or "0:0"
    uid, _, gid = user.partition(":")
    image_env = dict(item.split("=", 1) for item in image.get("Env") or [])
    command = args or [*(image.get("Entrypoint") or []), *(image.get("Cmd") or [])]
    if args and image.get("Entrypoint"):
        command = [*image["Entrypoint"], *args]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        *(
            {"destination": path, "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]}
            for path in tmpfs
        ),
        *(
            {"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "rw"]}
            for dest, src in binds.items()
        ),
    ]  # fmt: skip
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": int(uid), "gid": int(gid or uid)},
            "args": command,
            "env": [f"{k}={v}" for k, v in {**image_env, **env}.items()],
            "cwd": image.get("WorkingDir") or "/",
            "capabilities": {"bounding": [], "effective": [], "permitted": [], "ambient": []},
            "noNewPrivileges": True,
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": min(soft, 1024), "hard": hard}],
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "container",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"],
        },
    }


@contextlib.contextmanager
def container(
    image: str,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    binds: dict[str, Path] | None = None,
    tmpfs: tuple[str, ...] = ("/tmp",),
) -> Iterator[Container]:
    """A runc container of `image` (from buildah's storage) running `args` (default: the
    image's entrypoint and command) in the background, as the image's user."""
    work = Path(tempfile.mkdtemp(prefix="gi-container-"))
    name = f"gi-test-{uuid.uuid4().hex[:8]}"
    ctr = subprocess.run(
        ["buildah", "from", "--pull-never", "--name", name, image], check=True,
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    process = None
    try:
        rootfs = Path(
            subprocess.run(
                ["buildah", "mount", ctr], check=True, capture_output=True, text=True
            ).stdout.strip()
        )
        spec = _spec(rootfs, inspect(image)["OCIv1"], args, env or {}, binds or {}, list(tmpfs))
        bundle = work / "bundle"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(spec))
        state = work / "state"
        process = subprocess.Popen(
            ["runc", "--root", str(state), "run", "--bundle", str(bundle), name],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        handle = Container(name, state, process)
        try:
            yield handle
        finally:
            handle.stop()
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def run(image: str, args: list[str], timeout: float = 60, **kwargs: Any) -> tuple[int, str]:
    """Run `args` in a container of `image` to completion: (exit code, output)."""
    with container(image, args, **kwargs) as ctr:
        try:
            code = ctr.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return -1, "timed out"
        return code, ctr.output()
