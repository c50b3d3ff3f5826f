"""A request's line and headers are bounded as `guideline-api` serves them (the console
script, as the image runs it: uvicorn with uvloop and httptools): by bytes and by header
fields (431), and by time (408: slow-headers clients), each tried over a raw socket as an
attacker would, with /health/live answering meanwhile."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.api import ALICE_KEY, ApiProcess

HEADER_TIMEOUT_SECONDS = 2.0


@pytest.fixture(scope="module")
def api(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    """One `guideline-api` process with the default head bounds, but a short head deadline."""
    process = ApiProcess(
        postgres_url,
        tmp_path_factory.mktemp("heads"),
        GUIDELINE_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT_SECONDS),
    ).start()
    yield process
    process.stop()


class Answer:
    """What the server wrote back on a raw connection before closing it."""

    def __init__(self, raw: bytes, sender_finished: bool) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1]) if lines[0] else 0
        self.headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
        self.sender_finished = sender_finished

    def problem(self) -> dict[str, Any]:
        assert self.headers["content-type"] == "application/problem+json", self.headers
        body = json.loads(self.body)
        assert body["status"] == self.status, body
        assert body["type"].endswith("/" + body["reason"]), body
        return body


def exchange(api: ApiProcess, pieces: Iterator[bytes], timeout: float = 60) -> Answer:
    """Send `pieces` from a thread while reading, as a client that keeps sending would;
    return what was answered by the time the server closed the connection."""
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=timeout)
    finished = threading.Event()

    def send() -> None:
        try:
            for piece in pieces:
                sock.sendall(piece)
            finished.set()
        except OSError:  # the server closed the connection: the point of most tests
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
            if finished.is_set() and b"\r\n\r\n" in received:
                break  # a complete request was answered (the connection stays open)
    except ConnectionResetError:  # the server's close found unread bytes: the answer is in
        pass
    finally:
        sock.close()
        sender.join(timeout=timeout)
    return Answer(received, finished.is_set())


def head(*fields: bytes, path: bytes = b"/health/live") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: api\r\n" + b"".join(f + b"\r\n" for f in fields)


def test_a_4_mib_header_is_refused_before_it_is_buffered(api: ApiProcess) -> None:
    def pieces() -> Iterator[bytes]:
        yield head() + b"X-Big: "
        for _ in range(64):
            yield b"a" * 65536
        yield b"\r\n\r\n"

    answer = exchange(api, pieces())
    assert answer.status == 431, answer.body
    assert answer.problem()["reason"] == "headers_too_large"
    assert not answer.sender_finished  # closed before the 4 MiB were taken in
    # A head just under the bound (16 KiB by default) is served.
    answer = exchange(api, iter([head(b"X-Big: " + b"a" * 15000) + b"\r\n"]))
    assert answer.status == 200, answer.body


def test_a_large_request_line_is_refused_too(api: ApiProcess) -> None:
    answer = exchange(api, iter([head(path=b"/health/live?" + b"q" * 1_000_000) + b"\r\n"]))
    assert answer.status == 431
    assert answer.problem()["reason"] == "headers_too_large"


def test_too_many_header_fields_are_refused(api: ApiProcess) -> None:
    many = [b"X-F%d: 1" % i for i in range(101)]
    answer = exchange(api, iter([head(*many) + b"\r\n"]))
    assert answer.status == 431, answer.body
    problem = answer.problem()
    assert problem["reason"] == "too_many_headers"
    assert problem["instance"] == "/health/live"
    answer = exchange(api, iter([head(*many[:90]) + b"\r\n"]))
    assert answer.status == 200, answer.body


def test_a_body_sent_with_its_head_is_not_counted_as_head(api: ApiProcess) -> None:
    """The head bound stops where the head ends, also within one read: a 70 KB body in the
    same packet as its head is a body (here, a submission accepted)."""
    text = "Wash hands before and after patient contact. " * 1600
    body = json.dumps({"guideline_text": text}).encode()
    request = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + ALICE_KEY.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    assert len(body) > 4 * 16384
    answer = exchange(api, iter([request]))
    assert answer.status == 202, answer.body


def test_pipelined_requests_are_each_bounded_and_served(api: ApiProcess) -> None:
    requests = head() + b"\r\n" + head(b"Connection: close") + b"\r\n"
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as sock:
        sock.sendall(requests)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == 2, received


def test_a_pipelined_head_begun_with_the_request_before_it_has_a_deadline(
    api: ApiProcess,
) -> None:
    """The next head starts in the read that ends a request, then nothing more comes: it is
    answered 408 at its deadline (before keep-alive's 5 s would close it unanswered)."""
    requests = head() + b"\r\n" + b"GET /health/live HTTP/1.1\r\nX-Slow: a"
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as sock:
        sock.sendall(requests)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    first, _, second = received.partition(b"HTTP/1.1 408")
    assert b"HTTP/1.1 200 OK" in first and b'"reason": "headers_timeout"' in second, received


def test_a_trickling_head_is_closed_at_its_deadline_while_live_answers(
    api: ApiProcess,
) -> None:
    stop = threading.Event()
    trickled: list[int] = []

    def trickle() -> Iterator[bytes]:
        yield b"GET /health/live HTTP/1.1\r\n"
        for i in range(600):  # a minute at this pace, 30 times the deadline
            if stop.wait(0.1):
                return
            trickled.append(i)
            yield b"X"

    lives: list[int] = []

    def probe() -> None:
        while not trickled:  # the slow head is under way
            stop.wait(0.05)
        lives.append(httpx.get(f"{api.url}/health/live", timeout=30).status_code)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        answer = exchange(api, trickle())
    finally:
        stop.set()
        prober.join(timeout=30)
    assert answer.status == 408, answer.body
    assert answer.problem()["reason"] == "headers_timeout"
    assert not answer.sender_finished and len(trickled) < 600
    assert lives == [200]


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(api: ApiProcess) -> None:
    with socket.create_connection(("127.0.0.1", api.port), timeout=60) as sock:
        assert sock.recv(1024) == b""  # closed by the server, with nothing to answer
    assert httpx.get(f"{api.url}/health/live", timeout=30).status_code == 200


def test_keep_alive_requests_each_get_their_own_deadline(api: ApiProcess) -> None:
    """The deadline of a head starts at its first byte: a connection reused after an
    answer is not cut by the first request's deadline."""
    with httpx.Client(base_url=api.url, timeout=30) as client:
        for _ in range(3):
            assert client.get("/health/live").status_code == 200
            threading.Event().wait(HEADER_TIMEOUT_SECONDS / 2)  # within keep-alive (5 s)
        assert client.get("/health/live").status_code == 200


def test_settings_reach_the_server(tmp_path: Path, postgres_url: str) -> None:
    """GUIDELINE_MAX_HEADER_BYTES and GUIDELINE_MAX_HEADER_FIELDS bound the served heads."""
    process = ApiProcess(
        postgres_url,
        tmp_path,
        GUIDELINE_MAX_HEADER_BYTES="2048",
        GUIDELINE_MAX_HEADER_FIELDS="10",
    ).start()
    try:
        answer = exchange(process, iter([head(b"X-Big: " + b"a" * 3000) + b"\r\n"]))
        assert answer.status == 431 and answer.problem()["reason"] == "headers_too_large"
        fields = [b"X-F%d: 1" % i for i in range(10)]
        answer = exchange(process, iter([head(*fields) + b"\r\n"]))
        assert answer.status == 431 and answer.problem()["reason"] == "too_many_headers"
    finally:
        process.stop()
