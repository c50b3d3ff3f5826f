"""`guideline-client` run as its console script (a child process), in the foreground or
in the background with its stderr read line by line as it comes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from support.api import ALICE_KEY

CLIENT = Path(sys.executable).parent / "guideline-client"
# A test run started in the background (`nohup make test &`, a CI runner) inherits SIGINT
# ignored, and a Python started with SIGINT ignored never raises KeyboardInterrupt: a
# Ctrl-C test would wait forever. This launcher sets SIGINT back to its default and execs
# the command (a default disposition survives exec; Python then installs its handler).
WITH_DEFAULT_SIGINT = (
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
)


def cli_env(url: str, key: str = ALICE_KEY) -> dict[str, str]:
    """The environment of a client of `url` with `key` (no GUIDELINE_* of the test's own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUIDELINE_")}
    env.update(GUIDELINE_API_URL=url, GUIDELINE_API_KEY=key)
    return env


def run_cli(
    url: str, *args: str, key: str = ALICE_KEY, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`guideline-client ARGS`, to its end."""
    return subprocess.run(
        [str(CLIENT), *args],
        env=cli_env(url, key),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


class CliProcess:
    """`guideline-client ARGS` in the background; `expect()` waits for a line on stderr."""

    def __init__(self, url: str, *args: str, key: str = ALICE_KEY) -> None:
        self.proc = subprocess.Popen(
            [*WITH_DEFAULT_SIGINT, str(CLIENT), *args],
            env=cli_env(url, key),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr_lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, text: str, timeout: float = 30) -> str:
        """The next stderr line containing `text` (lines before it are skipped)."""
        while True:
            line = self._lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"stderr ended before {text!r}: {self.stderr_lines}")
            if text in line:
                return line

    def interrupt(self) -> None:
        """Ctrl-C."""
        self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for the exit; (exit status, stdout)."""
        assert self.proc.stdout is not None
        try:
            code = self.proc.wait(timeout=timeout)  # its output is small: the pipe never fills
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)  # the client dumps its threads' stacks
            time.sleep(1)
            self.kill()
            said = "\n".join(self.stderr_lines)
            raise AssertionError(f"no exit within {timeout} s; its stderr:\n{said}") from None
        return code, self.proc.stdout.read()

    def kill(self) -> None:
        """Make sure it is gone."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
