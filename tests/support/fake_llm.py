"""A fake OpenAI-compatible chat-completions server for tests (the only thing the suite
fakes). It is a real HTTP server on 127.0.0.1 (or `host`: runner pods on the real node
reach it at `LocalCluster.pod_host`), run in a thread of the test process (`FakeLLM`) or as
a separate process (`python tests/support/fake_llm.py --host H --port N --script '<json>'`,
or `FakeLLMProcess`) so that runner pods started by the node can reach it. It answers
`POST /v1/chat/completions` as the openai SDK expects, following a script, and records
every request.

Which chain step a request belongs to: the `X-Guideline-Step` header the runner sends,
else `checklist` when the body has a `response_format`, else `summarize`.

The script (JSON; every key optional):

    {
      "summary": "text",            # answer to summarize calls ("{call}" -> call number)
      "combine": "text",            # answer to combine calls (default: "summary")
      "checklist": [{"item": ..., "priority": ..., "category": ...}] | "raw text"
                   | "obligations",  # a list is sent as {"items": [...]}; a string verbatim
                                    # (e.g. malformed JSON); "obligations": one item for
                                    # each sentence with "must" of the request's
                                    # <guideline> block, quoting it
      "latency": 0.0,               # seconds before every answer
      "rules": [                    # the first matching rule with times left applies
        {"step": "any" | "summarize" | "combine" | "checklist",
         "times": 2 | null,         # null: forever
         "status": 429 | 500 | 401 | ... | "hang" | 200,
         "retry_after": 0.1,        # Retry-After header (seconds), optional
         "message": "text",         # error message ("{auth}" -> the bearer token received)
         "seconds": 30,             # for "hang": how long to hold the request
         "content": "text"}         # for 200: answer with this content instead
      ]
    }

Control endpoints: `POST /_control/script` (body: a script; replaces it and clears the
recorded requests and rule counters), `GET /_control/requests` (`{"requests": [...]}`),
`POST /_control/reset` (clears the requests), `GET /_control/health`.

A recorded request: `{"seq", "step", "status", "time", "answered", "in_flight", "body",
"authorization"}` where `status` is the HTTP status answered (or "hang"), `time` when it
arrived, `answered` when its answer was sent (None before that), `content` the answer's
content (for a 200), and `in_flight` how many
chat requests the server held when it arrived, itself included (how concurrent the client
is).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_SUMMARY = "Fake summary: staff must wash hands and should report incidents."
DEFAULT_CHECKLIST: list[dict[str, str]] = [
    {"item": "Wash hands before every patient contact", "priority": "high", "category": "hygiene"},
    {"item": "Report incidents within 24 hours", "priority": "medium", "category": "reporting"},
]
STEP_HEADER = "X-Guideline-Step"
STEPS = ("summarize", "combine", "checklist")


def message_text(body: dict[str, Any]) -> str:
    """All message contents of a chat-completions request body, joined."""
    parts = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "\n".join(parts)


def user_text(body: dict[str, Any]) -> str:
    """The user messages of a request body, joined."""
    return "\n".join(
        str(m.get("content", "")) for m in body.get("messages") or [] if m.get("role") == "user"
    )


def obligation_items(user: str) -> list[dict[str, str]]:
    """Checklist items quoting each sentence with "must" of the <guideline> block."""
    block = user.split("<guideline>\n", 1)[-1].rsplit("\n</guideline>", 1)[0]
    sentences = re.findall(r"[^.\n]*\bmust\b[^.\n]*\.", block)
    return [
        {"item": s.strip(), "priority": "high", "category": "rules", "quote": s.strip()}
        for s in sentences
    ]


class _State:
    """The script, the rule counters and the recorded requests, behind one lock."""

    def __init__(self, script: dict[str, Any] | None) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.requests: list[dict[str, Any]] = []
        self.calls: dict[str, int] = {}
        self.in_flight = 0
        self.set_script(script or {})

    def set_script(self, script: dict[str, Any]) -> None:
        with self.lock:
            self.script = dict(script)
            self.remaining = [rule.get("times") for rule in self.script.get("rules") or []]
            self.requests = []
            self.calls = {}

    def decide(self, step: str) -> tuple[dict[str, Any] | None, int, float]:
        """The rule that applies to this request (consuming one of its times), the step's
        call number, and the latency."""
        with self.lock:
            self.calls[step] = self.calls.get(step, 0) + 1
            chosen = None
            for index, rule in enumerate(self.script.get("rules") or []):
                if rule.get("step", "any") not in ("any", step):
                    continue
                left = self.remaining[index]
                if left is None or left > 0:
                    if left is not None:
                        self.remaining[index] = left - 1
                    chosen = rule
                    break
            return chosen, self.calls[step], float(self.script.get("latency") or 0)

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.in_flight += 1
            entry.update(seq=len(self.requests) + 1, in_flight=self.in_flight, answered=None)
            self.requests.append(entry)

    def answered(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.in_flight -= 1
            entry["answered"] = time.time()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to answer

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/_control/requests":
            with state.lock:
                self._send_json(200, {"requests": list(state.requests)})
        elif self.path == "/_control/health":
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        state = self.server.state
        try:
            body = self._body()
        except ValueError:
            self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid"}})
            return
        if self.path == "/_control/script":
            state.set_script(body)
            self._send_json(200, {"ok": True})
        elif self.path == "/_control/reset":
            with state.lock:
                state.requests = []
            self._send_json(200, {"ok": True})
        elif self.path.split("?")[0] == "/v1/chat/completions":
            self._chat(body)
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def _step_of(self, body: dict[str, Any]) -> str:
        header = (self.headers.get(STEP_HEADER) or "").strip().lower()
        if header in STEPS:
            return header
        return "checklist" if body.get("response_format") else "summarize"

    def _chat(self, body: dict[str, Any]) -> None:
        state = self.server.state
        step = self._step_of(body)
        rule, call, latency = state.decide(step)
        authorization = self.headers.get("Authorization")
        status: int | str = 200 if rule is None else rule.get("status", 200)
        entry = {
            "step": step,
            "status": status,
            "time": time.time(),
            "body": body,
            "authorization": authorization,
        }
        state.record(entry)
        try:
            self._answer(entry, step, call, rule, status, latency)
        finally:
            state.answered(entry)

    def _answer(
        self,
        entry: dict[str, Any],
        step: str,
        call: int,
        rule: dict[str, Any] | None,
        status: int | str,
        latency: float,
    ) -> None:
        state = self.server.state
        body, authorization = entry["body"], entry["authorization"]
        if latency and state.stopping.wait(latency):
            return
        if status == "hang":
            if state.stopping.wait(float(rule.get("seconds", 3600))):  # type: ignore[union-attr]
                return
            status = 200
        if status != 200:
            assert rule is not None
            token = (authorization or "").removeprefix("Bearer ").strip()
            message = str(rule.get("message") or f"fake error {status}").replace("{auth}", token)
            headers = {}
            if rule.get("retry_after") is not None:
                headers["Retry-After"] = str(rule["retry_after"])
            error_type = {401: "invalid_request_error", 429: "rate_limit_error"}.get(
                int(status), "server_error" if int(status) >= 500 else "invalid_request_error"
            )
            self._send_json(
                int(status),
                {"error": {"message": message, "type": error_type, "param": None, "code": None}},
                headers,
            )
            return
        content = self._content(step, call, rule, body)
        entry["content"] = content
        prompt_tokens = max(1, len(message_text(body)) // 4)
        completion_tokens = max(1, len(content) // 4)
        self._send_json(
            200,
            {
                "id": f"chatcmpl-fake-{call}-{step}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake-model"),
                "system_fingerprint": "fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    def _content(
        self, step: str, call: int, rule: dict[str, Any] | None, body: dict[str, Any]
    ) -> str:
        script = self.server.state.script
        if rule is not None and "content" in rule:
            return str(rule["content"])
        if step == "checklist":
            checklist = script.get("checklist", DEFAULT_CHECKLIST)
            if checklist == "obligations":
                checklist = obligation_items(user_text(body))
            if isinstance(checklist, str):
                return checklist
            return json.dumps({"items": checklist})
        summary = str(script.get("summary", DEFAULT_SUMMARY))
        if step == "combine":
            summary = str(script.get("combine", summary))
        return summary.replace("{call}", str(call))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, script: dict[str, Any] | None) -> None:
        super().__init__((host, port), _Handler)
        self.state = _State(script)


class _Client:
    """What a test does with a fake, wherever it runs."""

    base_url: str

    def set_script(self, script: dict[str, Any]) -> None:
        """Replace the script; clears recorded requests and rule counters."""
        raise NotImplementedError

    def requests(self, step: str | None = None) -> list[dict[str, Any]]:
        """The chat-completions requests received so far (of one step if given)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the recorded requests."""
        raise NotImplementedError


class FakeLLM(_Client):
    """The fake server in a thread of this process. Use as a context manager, or call
    `start()` and `stop()`."""

    def __init__(
        self, script: dict[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._server = _Server(host, port, script)
        self.host, self.port = self._server.server_address[:2]
        self.base_url = f"http://{self.host}:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def start(self) -> FakeLLM:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; requests held by a hang end at once."""
        self._server.state.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_script(self, script: dict[str, Any]) -> None:
        """Replace the script; clears recorded requests and rule counters."""
        self._server.state.set_script(script)

    def requests(self, step: str | None = None) -> list[dict[str, Any]]:
        """The chat-completions requests received so far (of one step if given)."""
        with self._server.state.lock:
            found = list(self._server.state.requests)
        return [r for r in found if step is None or r["step"] == step]

    def reset(self) -> None:
        """Forget the recorded requests."""
        with self._server.state.lock:
            self._server.state.requests = []


class RemoteFakeLLM(_Client):
    """Control of a fake running in another process, through its control endpoints."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._root = self.base_url.removesuffix("/v1")

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self._root + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def set_script(self, script: dict[str, Any]) -> None:
        """Replace the script; clears recorded requests and rule counters."""
        self._call("POST", "/_control/script", script)

    def requests(self, step: str | None = None) -> list[dict[str, Any]]:
        """The chat-completions requests received so far (of one step if given)."""
        found = self._call("GET", "/_control/requests")["requests"]
        return [r for r in found if step is None or r["step"] == step]

    def reset(self) -> None:
        """Forget the recorded requests."""
        self._call("POST", "/_control/reset", {})


class FakeLLMProcess(RemoteFakeLLM):
    """The fake as a child process (`python tests/support/fake_llm.py`). `stop()` ends it."""

    def __init__(
        self, script: dict[str, Any] | None = None, port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self._process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--host",
                host,
                "--port",
                str(port),
                "--script",
                json.dumps(script or {}),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # "listening http://<host>:N/v1"
        if not line.startswith("listening "):
            self._process.kill()
            self._process.wait(timeout=10)
            raise RuntimeError(f"fake LLM did not start: {line!r}")
        super().__init__(line.split()[1])
        self.pid = self._process.pid

    def stop(self) -> None:
        """Terminate the process and wait for it."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> FakeLLMProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def fake_llm(script: dict[str, Any] | None = None) -> Iterator[FakeLLM]:
    """A started in-process fake, stopped on exit."""
    server = FakeLLM(script).start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the fake as a standalone process until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", default="{}", help="the script, as JSON")
    args = parser.parse_args(argv)
    server = FakeLLM(json.loads(args.script), host=args.host, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"listening {server.base_url}", flush=True)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
