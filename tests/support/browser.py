"""Screenshots of a page in real headless Chromium (Debian's `chromium`, installed by
hack/install-system-deps.sh), read back as pixels with Pillow."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from PIL import Image

FLAGS = (
    "--headless",
    "--no-sandbox",  # tests may run as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    """The chromium binary; fails the test (no skip) if it is missing."""
    found = shutil.which("chromium")
    assert found, "chromium is missing: run hack/install-system-deps.sh"
    return found


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1400) -> Image.Image:
    """A `width` x `height` screenshot of the HTML file `page`, with a fresh profile."""
    profile = png.parent / f"{png.stem}-profile"
    command = [
        chromium(),
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        f"--screenshot={png}",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
    return Image.open(png).convert("RGB")


def pixels_of(image: Image.Image, colour: tuple[int, int, int]) -> list[tuple[int, int]]:
    """The (x, y) of every pixel of exactly `colour`."""
    data, width, wanted = image.tobytes(), image.width, bytes(colour)
    found = []
    at = data.find(wanted)
    while at >= 0:
        if at % 3 == 0:  # a whole pixel, not the tail of one and the head of the next
            found.append(((at // 3) % width, (at // 3) // width))
        at = data.find(wanted, at + 1)
    return found
