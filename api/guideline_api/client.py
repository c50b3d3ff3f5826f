"""Console script `guideline-client`: submit guidelines to the REST API and read results.

It speaks only HTTP (httpx) and imports nothing from the server side, so it can be used
from any machine that reaches the API.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import json
import os
import signal
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import shtab
import yaml
from guideline_core import version

from guideline_api.follow import Follow, StreamRefusedError
from guideline_api.review_html import review_page

DEFAULT_URL = "http://127.0.0.1:8000"
LOCAL_KEY_FILE = Path(".local") / "api-key"
EXIT_OK, EXIT_JOB_FAILED, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
FORMATS = ("table", "json", "yaml")
EXPORT_FORMATS = ("fhir", "oscal", "csv", "xlsx", "md", "html")  # GET /v1/jobs/{id}/export
BINARY_EXPORTS = frozenset({"xlsx"})

EPILOG = """\
examples:
  guideline-client submit hand-hygiene.txt --wait
  guideline-client submit policy.md --title "Data retention" --provider extractive
  guideline-client submit guideline.pdf      # PDF, DOCX, HTML: uploaded as they are
  guideline-client status 0192f7a0-...        # the job, its summary and checklist
  guideline-client show 0192f7a0-... --html -o review.html   # sources highlighted
  guideline-client export 0192f7a0-... --format fhir -o bundle.json   # or oscal, csv,
                                              # xlsx, md, html (text formats: stdout)
  guideline-client list --needs-review        # results below a review threshold
  guideline-client wait 0192f7a0-... --timeout 300   # follows the job's event stream
  guideline-client -o yaml status 0192f7a0-...      # or -o json: the API's object
  guideline-client list --status FAILED       # the dead-letter queue
  guideline-client cancel 0192f7a0-...
  guideline-client retry 0192f7a0-...
  source <(guideline-client completion bash)   # or: completion zsh

connection:
  --url      default $GUIDELINE_API_URL, else http://127.0.0.1:8000
  --api-key  default $GUIDELINE_API_KEY, else the file .local/api-key (written by `make up`)

output:
  -o table (default; text for people), -o json or -o yaml (the API's objects, for
  scripts) on every command that prints a job or a list; --json is -o json

waiting (submit --wait, wait):
  prints the event_id, then follows GET /jobs/{id}/events with a progress line on stderr
  (state, attempt, queue position, elapsed); a dropped connection, a restarted API or a
  503 is survived by reconnecting with Last-Event-ID (backoff capped at 10 s); Ctrl-C
  stops waiting, not the job

exit status:
  0 success (for submit --wait / wait: the job COMPLETED)
  1 the job ended FAILED or CANCELLED
  2 the request failed (HTTP error, API unreachable, bad arguments)
  3 wait timed out (the job is still running; wait again later)
  130 interrupted (Ctrl-C); a job being waited for keeps running
"""


class ClientError(Exception):
    """A request failed; str() is what to print. `retry_after` is set when the failure is
    transient (429, 503, connection lost) and a retry with the same Idempotency-Key is safe."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _api_key(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    if os.environ.get("GUIDELINE_API_KEY"):
        return os.environ["GUIDELINE_API_KEY"]
    if LOCAL_KEY_FILE.is_file():
        return LOCAL_KEY_FILE.read_text().strip() or None
    return None


class Api:
    """A thin HTTP client of the guideline-ingest API."""

    def __init__(self, url: str, api_key: str | None, timeout: float = 30.0):
        headers = {"User-Agent": f"guideline-client/{version()}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; raise ClientError with the API's error message on failure."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.http.base_url}: {exc}", 1.0) from exc
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    def _post_safely(
        self, path: str, idempotency_key: str, **content: Callable[[], Any] | Any
    ) -> Any:
        """POST, retrying transient failures (429, 503, a lost connection) with the same
        Idempotency-Key, so a retry never makes a second job. A callable `content` value
        is called for each attempt (files to open again)."""
        for attempt in range(5):
            try:
                fresh = {k: v() if callable(v) else v for k, v in content.items()}
                return self.request(
                    "POST", path, headers={"Idempotency-Key": idempotency_key}, **fresh
                ).json()
            except ClientError as exc:
                if exc.retry_after is None or attempt == 4:
                    raise
                time.sleep(min(exc.retry_after, 30.0))
        raise AssertionError("unreachable")

    def submit(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """POST /jobs as JSON (safe to retry, see `_post_safely`)."""
        return self._post_safely("/v1/jobs", idempotency_key, json=body)

    def upload(self, doc: Document, fields: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """POST /jobs as multipart: the document (any type: the API tells it by its
        content) and the submission fields (safe to retry)."""
        form = {k: str(v) for k, v in fields.items()}
        return self._post_safely(
            "/v1/jobs", idempotency_key, files=lambda: {"file": doc.part()}, data=form
        )

    def submit_batch(self, items: list[dict[str, Any]], idempotency_key: str) -> dict[str, Any]:
        """POST /jobs/batch (item i's key is `<idempotency_key>:<i>`, so it is safe to retry)."""
        return self._post_safely("/v1/jobs/batch", idempotency_key, json={"items": items})

    def upload_batch(
        self, docs: list[Document], items: list[dict[str, Any]], idempotency_key: str
    ) -> dict[str, Any]:
        """POST /jobs/batch as multipart: one `file` part per document, their fields in
        `items` (safe to retry, as submit_batch)."""
        return self._post_safely(
            "/v1/jobs/batch",
            idempotency_key,
            files=lambda: [("file", doc.part()) for doc in docs],
            data={"items": json.dumps(items)},
        )

    def get(self, event_id: str, attempts: int = 1) -> dict[str, Any]:
        """GET /jobs/{event_id}; with `attempts` > 1 transient failures (503, a restarting
        API) are retried."""
        for attempt in range(attempts):
            try:
                return self.request("GET", f"/v1/jobs/{event_id}").json()
            except ClientError as exc:
                if exc.retry_after is None or attempt == attempts - 1:
                    raise
                time.sleep(min(exc.retry_after, 5.0))
        raise AssertionError("unreachable")

    def wait(self, event_id: str, timeout: float) -> dict[str, Any]:
        """Follow the job's event stream until it is terminal (progress on stderr), then
        read it; TimeoutError (with the Progress) after `timeout` seconds."""
        try:
            Follow(self.http, event_id).run(timeout)
        except StreamRefusedError as exc:
            raise _error_of(exc.response) from None
        return self.get(event_id, attempts=10)


def _error_of(response: httpx.Response) -> ClientError:
    try:  # an RFC 9457 problem: `reason` (our code) and `detail`
        error = response.json()
        text = f"HTTP {response.status_code} {error['reason']}: {error['detail']}"
    except (ValueError, KeyError, TypeError):
        text = f"HTTP {response.status_code}: {response.text[:500]}"
    retry_after = None
    if response.status_code in (429, 503):
        try:
            retry_after = float(response.headers.get("Retry-After", "2"))
        except ValueError:
            retry_after = 2.0
    return ClientError(text, retry_after)


# ------------------------------------------------------------------------- formatting


def _item_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in ("item", "text", "action", "title", "description", "task"):
            if isinstance(item.get(key), str):
                main = item[key]
                extras = [
                    f"{k}: {v}"
                    for k, v in item.items()
                    if k != key and isinstance(v, str | int | float) and v not in ("", None)
                ]
                return f"{main}" + (f"  ({'; '.join(extras)})" if extras else "")
    return json.dumps(item, ensure_ascii=False)


def format_job(job: dict[str, Any]) -> str:
    """A job as readable text: status line, then summary and checklist, or the error."""
    lines = [f"Job {job['event_id']}: {job['status']}"]
    if job.get("title"):
        lines.append(f"Title:     {job['title']}")
    lines.append(f"Attempts:  {job.get('attempts', 0)}")
    lines.append(f"Submitted: {job.get('created_at')}")
    if job.get("completed_at"):
        lines.append(f"Finished:  {job['completed_at']}")
    queue = job.get("queue")
    if queue:
        lines.append(f"Queue:     position {queue['position']} ({queue['message']})")
    error = job.get("error")
    if error:
        lines.append(f"Error:     {error.get('reason')}: {error.get('message') or ''}".rstrip())
    result = job.get("result")
    if result:
        meta = [f"{k} {result[k]}" for k in ("provider", "model") if result.get(k)]
        if result.get("degraded"):
            meta.append("DEGRADED (fallback provider)")
        if meta:
            lines.append(f"Produced:  {', '.join(meta)}")
        lines += ["", "Summary", "-------"]
        for para in str(result.get("summary", "")).split("\n"):
            lines.extend(textwrap.wrap(para, 88) or [""])
        lines += _format_checklist(result)
    return "\n".join(lines)


def _quoted(text: str, indent: str, first: str | None = None) -> list[str]:
    """A passage on indented lines (the first after `first`), in quotation marks, its line
    breaks folded."""
    wrapped = textwrap.wrap(f"“{' '.join(text.split())}”", 88 - len(indent)) or [""]
    return [
        (first if first is not None and n == 0 else indent) + line for n, line in enumerate(wrapped)
    ]


def _where(source: dict[str, Any]) -> str:
    """Where a source is: its characters in the text and, for a document, its page(s),
    printed page label and section."""
    parts = [f"characters {source['start']}-{source['end']}"]
    if source.get("page"):
        pages = (
            f"{source['page']}-{source['page_end']}" if source.get("page_end") else source["page"]
        )
        label = f" (printed {source['page_label']})" if source.get("page_label") else ""
        parts.insert(0, f"page {pages}{label}")
    if source.get("section"):
        parts.insert(0, " > ".join(str(s) for s in source["section"]))
    return ", ".join(parts)


def _format_checklist(result: dict[str, Any]) -> list[str]:
    """The checklist with each item's source, the quality line, the uncovered
    obligations, and the changes against a superseded job."""
    checklist = result.get("checklist") or []
    lines = ["", f"Checklist ({len(checklist)} items)", "---------"]
    for n, item in enumerate(checklist, 1):
        wrapped = textwrap.wrap(_item_text(_own_fields(item)), 84) or [""]
        lines.append(f"{n:>2}. [ ] {wrapped[0]}")
        lines.extend(f"        {rest}" for rest in wrapped[1:])
        source = item.get("source") if isinstance(item, dict) else None
        if source:
            lines.extend(_quoted(source["quote"], "        "))
            lines.append(f"        ({_where(source)})")
        elif isinstance(item, dict) and "grounded" in item:
            lines.append("        NOT GROUNDED: its quote is not in the guideline")
    quality = result.get("quality")
    if quality:
        lines += [
            "",
            f"Quality:   {quality['grounded_items']} of {quality['items']} items grounded, "
            f"{quality['covered_obligations']} of {quality['obligations']} obligations "
            f"covered ({quality['coverage']:.0%})"
            + (
                f", {len(quality['duplicates'])} duplicate group(s)"
                if quality["duplicates"]
                else ""
            ),
        ]
        if result.get("needs_review"):
            reasons = (result.get("review") or {}).get("reasons") or []
            lines.append(f"NEEDS REVIEW: {'; '.join(reasons)}")
        uncovered = quality.get("uncovered") or []
        if uncovered:
            lines += ["", f"Obligations no item covers ({len(uncovered)})", "-------------"]
            for passage in uncovered:
                lines.extend(_quoted(passage["text"], "    ", first="  - "))
                lines[-1] += f" ({passage['start']}-{passage['end']})"
    changes = result.get("changes")
    if changes:
        lines += ["", f"Changes against {changes['supersedes']}", "-------"]
        if not changes.get("available"):
            lines.append(f"  not available: {changes.get('reason')}")
        else:
            lines.append(
                f"  {len(changes['added'])} added, {len(changes['removed'])} removed, "
                f"{len(changes['changed'])} changed, {changes['unchanged']} unchanged"
            )
            lines += [f"  + {i.get('item')}" for i in changes["added"]]
            lines += [f"  - {i.get('item')}" for i in changes["removed"]]
            lines += [f"  ~ {c['after'].get('item')}" for c in changes["changed"]]
            lines += [f"  ! newly uncovered: {p['text']}" for p in changes["newly_uncovered"]]
    return lines


def _own_fields(item: Any) -> Any:
    """An item without its source fields (they get lines of their own)."""
    if isinstance(item, dict):
        return {k: v for k, v in item.items() if k not in ("source", "grounded")}
    return item


def format_list(page: dict[str, Any]) -> str:
    """A page of jobs as a table."""
    rows = [f"{'EVENT_ID':36}  {'STATUS':10}  {'ATTEMPTS':>8}  {'CREATED':25}  TITLE / ERROR"]
    for job in page["items"]:
        note = job.get("title") or ""
        if job.get("needs_review"):
            note = f"NEEDS REVIEW  {note}"
        if job.get("error"):
            note = f"{job['error'].get('reason')}: {job['error'].get('message') or ''}"
        rows.append(
            f"{job['event_id']:36}  {job['status']:10}  {job['attempts']:>8}  "
            f"{str(job['created_at'])[:25]:25}  {note[:60]}"
        )
    if page.get("next_cursor"):
        rows.append(f"(more: --cursor {page['next_cursor']})")
    return "\n".join(rows)


def render(data: Any, output: str) -> str:
    """`data` (an API object) as JSON or YAML."""
    if output == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
    return json.dumps(data, indent=2, ensure_ascii=False)


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(text if args.output == "table" else render(data, args.output))


def _exit_for(job: dict[str, Any]) -> int:
    return EXIT_OK if job["status"] == "COMPLETED" else EXIT_JOB_FAILED


# -------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Document:
    """A file to upload (or stdin's bytes, read once), opened afresh for each attempt."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def of(cls, file: str) -> Document:
        if file == "-":
            return cls("stdin", data=sys.stdin.buffer.read())
        path = Path(file)
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ClientError(f"cannot read {file}: {exc.strerror}") from exc
        return cls(path.name, path=path)

    def part(self) -> tuple[str, Any, str]:
        """The multipart `file` part (the API sniffs the type: sent as octet-stream)."""
        content = self.data if self.path is None else self.path.open("rb")
        return (self.name, content, "application/octet-stream")


def _fields(file: str, args: argparse.Namespace, title: str | None) -> dict[str, Any]:
    """The submission fields of one file: its title and the common options."""
    body: dict[str, Any] = {}
    for key, value in (
        ("title", title or (None if file == "-" else Path(file).stem)),
        ("model", args.model),
        ("provider", args.provider),
        ("max_retries", args.max_retries),
        ("callback_url", args.callback_url),
    ):
        if value is not None:
            body[key] = value
    return body


def cmd_submit(api: Api, args: argparse.Namespace) -> int:
    """Upload a file (or `-` for stdin) of any supported type: the API tells PDF, DOCX,
    HTML, Markdown and text apart by content."""
    doc = Document.of(args.file)
    fields = _fields(args.file, args, args.title)
    job = api.upload(doc, fields, args.idempotency_key or str(uuid.uuid4()))
    if not args.wait:
        _emit(args, job, f"{job['event_id']}  {job['status']}")
        return EXIT_OK
    print(
        f"submitted {job['event_id']}; waiting (Ctrl-C stops waiting, not the job)",
        file=sys.stderr,
        flush=True,
    )
    return _wait_and_print(api, args, job["event_id"])


def cmd_batch(api: Api, args: argparse.Namespace) -> int:
    """Submit many files in batches of `--batch-size` (one transaction each); one line
    per file: its event_id and status, or its error. Exit 2 if any file was refused."""
    key = args.idempotency_key or str(uuid.uuid4())
    refused = 0
    results: list[dict[str, Any]] = []
    for start in range(0, len(args.files), args.batch_size):
        files = args.files[start : start + args.batch_size]
        docs = [Document.of(f) for f in files]
        items = [_fields(f, args, None) for f in files]
        answer = api.upload_batch(docs, items, f"{key}:{start}")
        for file, item in zip(files, answer["items"], strict=True):
            results.append({"file": file, **item})
            table = args.output == "table"
            if "error" in item:
                refused += 1
                if table:
                    error = item["error"]
                    print(f"{file}: {error['reason']}: {error['message']}", file=sys.stderr)
            elif table:
                print(f"{item['event_id']}  {item['status']}  {file}")
    if args.output != "table":
        print(render({"items": results}, args.output))
    return EXIT_ERROR if refused else EXIT_OK


def _wait_and_print(api: Api, args: argparse.Namespace, event_id: str) -> int:
    again = f"guideline-client wait {event_id}"
    try:
        job = api.wait(event_id, args.timeout)
    except TimeoutError as exc:
        status = exc.args[0].status
        print(
            f"timed out after {args.timeout:g} s; job {event_id} is {status} and keeps "
            f"running; wait again with: {again}",
            file=sys.stderr,
        )
        try:
            job = api.get(event_id)
        except ClientError:
            return EXIT_TIMEOUT
        _emit(args, job, format_job(job))
        return EXIT_TIMEOUT
    except KeyboardInterrupt:
        print(
            f"interrupted: job {event_id} keeps running; follow it again with: {again} "
            f"(or stop it: guideline-client cancel {event_id})",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    _emit(args, job, format_job(job))
    return _exit_for(job)


def cmd_status(api: Api, args: argparse.Namespace) -> int:
    """Show one job."""
    job = api.get(args.event_id)
    _emit(args, job, format_job(job))
    return EXIT_OK


def cmd_show(api: Api, args: argparse.Namespace) -> int:
    """Show one job with its guideline: as text, or as an HTML review page."""
    if not args.html and args.output not in FORMATS:
        raise ClientError(f"-o {args.output}: choose table, json or yaml (a file only with --html)")
    job = api.request("GET", f"/v1/jobs/{args.event_id}", params={"include": "text"}).json()
    if not args.html:
        _emit(args, job, format_job(job))
        return EXIT_OK
    if job["status"] != "COMPLETED":
        raise ClientError(f"job {job['event_id']} is {job['status']}; nothing to review yet")
    page = review_page(job)
    if args.output in (None, "-", "table"):
        sys.stdout.write(page)
    else:
        Path(args.output).write_text(page, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_export(api: Api, args: argparse.Namespace) -> int:
    """Download a COMPLETED job's export: to a file with -o, else text to stdout."""
    target = None if args.output in (None, "table") else args.output
    if target is None and args.format in BINARY_EXPORTS:
        raise ClientError(f"--format {args.format} is binary: name a file with -o (or -o -)")
    response = api.request(
        "GET", f"/v1/jobs/{args.event_id}/export", params={"format": args.format}
    )
    if target is None or target == "-":
        if args.format in BINARY_EXPORTS:
            sys.stdout.buffer.write(response.content)
        else:
            sys.stdout.write(response.content.decode("utf-8"))
        sys.stdout.flush()
        return EXIT_OK
    Path(target).write_bytes(response.content)
    print(f"wrote {target} ({len(response.content)} bytes)", file=sys.stderr)
    return EXIT_OK


def cmd_wait(api: Api, args: argparse.Namespace) -> int:
    """Wait for a job to finish and show it."""
    print(
        f"waiting for {args.event_id} (Ctrl-C stops waiting, not the job)",
        file=sys.stderr,
        flush=True,
    )
    return _wait_and_print(api, args, args.event_id)


def cmd_list(api: Api, args: argparse.Namespace) -> int:
    """List jobs, newest first."""
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status.upper()
    if args.cursor:
        params["cursor"] = args.cursor
    if args.needs_review:
        params["needs_review"] = "true"
    page = api.request("GET", "/v1/jobs", params=params).json()
    _emit(args, page, format_list(page))
    return EXIT_OK


def cmd_cancel(api: Api, args: argparse.Namespace) -> int:
    """Ask for a job to be cancelled."""
    job = api.request("POST", f"/v1/jobs/{args.event_id}/cancel").json()
    _emit(args, job, f"cancel requested for {job['event_id']} (now {job['status']})")
    return EXIT_OK


def cmd_retry(api: Api, args: argparse.Namespace) -> int:
    """Ask for a new attempt of a FAILED or CANCELLED job."""
    job = api.request("POST", f"/v1/jobs/{args.event_id}/retry").json()
    _emit(args, job, f"retry requested for {job['event_id']} (now {job['status']})")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""

    def connection_options(defaults: bool, formats: bool = True) -> argparse.ArgumentParser:
        # Sub-commands repeat the options (so they go before or after the command) with
        # suppressed defaults, which would otherwise overwrite a value given before it.
        opts = argparse.ArgumentParser(add_help=False)

        def default(value: Any) -> Any:
            return value if defaults else argparse.SUPPRESS

        opts.add_argument(
            "--url",
            default=default(os.environ.get("GUIDELINE_API_URL", DEFAULT_URL)),
            help="API base URL (env GUIDELINE_API_URL; default http://127.0.0.1:8000)",
        )
        opts.add_argument(
            "--api-key",
            default=default(None),
            help="API key (env GUIDELINE_API_KEY, else the file .local/api-key)",
        )
        if formats:
            opts.add_argument(
                "-o",
                "--output",
                choices=FORMATS,
                default=default("table"),
                help="table (default: text), json or yaml (the API's objects)",
            )
        opts.add_argument(
            "--json",
            action="store_const",
            const="json",
            dest="output",
            default=default("table"),
            help="the same as -o json",
        )
        return opts

    common = connection_options(defaults=False)

    parser = argparse.ArgumentParser(
        prog="guideline-client",
        description="Submit guidelines to guideline-ingest and read their summary and checklist.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[connection_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common])

    def waiting(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--timeout", type=float, default=600, help="seconds to wait (default %(default)s)"
        )
        p.add_argument(
            "--interval",
            type=float,
            default=2.0,
            help="ignored: the wait follows the job's event stream (kept for scripts)",
        )

    p = add("submit", "submit a guideline file (PDF, DOCX, HTML, Markdown, text; `-`: stdin)")
    p.add_argument(
        "file", help="the guideline document (uploaded; its type told by content), or - for stdin"
    ).complete = shtab.FILE  # type: ignore[attr-defined]  # shtab reads it
    p.add_argument(
        "--wait",
        action="store_true",
        help="print the event_id, follow the job (progress on stderr), print the result",
    )
    p.add_argument("--title", help="title shown in listings (default: the file name)")
    p.add_argument("--model", help="LLM model, e.g. gpt-4o-mini (default: the server's)")
    p.add_argument(
        "--provider", choices=["openai", "extractive"], help="default: the server's setting"
    )
    p.add_argument("--max-retries", type=int, help="pod retries for this job (0-10)")
    p.add_argument(
        "--callback-url", help="webhook for the job's terminal states (default: the tenant's)"
    )
    p.add_argument(
        "--idempotency-key",
        help="makes re-running this command safe: one key, one job (default: a new UUID)",
    )
    waiting(p)
    p.set_defaults(func=cmd_submit)

    p = add("batch", "submit many guideline files at once (POST /jobs/batch)")
    p.add_argument(
        "files", nargs="+", help="documents (PDF, DOCX, HTML, Markdown, text); titled by name"
    ).complete = shtab.FILE  # type: ignore[attr-defined]  # shtab reads it
    p.add_argument("--model", help="LLM model for every file (default: the server's)")
    p.add_argument(
        "--provider", choices=["openai", "extractive"], help="default: the server's setting"
    )
    p.add_argument("--max-retries", type=int, help="pod retries for each job (0-10)")
    p.add_argument(
        "--callback-url", help="webhook for each job's terminal states (default: the tenant's)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=20,
        help="files per request (default %(default)s, the API's max_batch_files)",
    )
    p.add_argument(
        "--idempotency-key",
        help="makes re-running this command safe: each file gets one job (default: new)",
    )
    p.set_defaults(func=cmd_batch)

    p = add("status", "show a job: status, and its summary and checklist when done")
    p.add_argument("event_id")
    p.set_defaults(func=cmd_status)

    help_text = "show a job with its sources; --html writes a page to review them"
    p = sub.add_parser(
        "show",
        help=help_text,
        description=help_text,
        parents=[connection_options(defaults=False, formats=False)],
    )
    p.add_argument("event_id")
    p.add_argument(
        "--html", action="store_true", help="the guideline with each item's source highlighted"
    )
    p.add_argument(
        "-o",
        "--output",
        default=argparse.SUPPRESS,
        help="table, json or yaml; with --html: the file for the page (default: stdout)",
    ).complete = shtab.FILE  # type: ignore[attr-defined]  # shtab reads it
    p.set_defaults(func=cmd_show)

    help_text = "download a COMPLETED job's result as FHIR, OSCAL, CSV, XLSX, Markdown or HTML"
    p = sub.add_parser(
        "export",
        help=help_text,
        description=help_text,
        parents=[connection_options(defaults=False, formats=False)],
    )
    p.add_argument("event_id")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="the export format")
    p.add_argument(
        "-o",
        "--output",
        default=argparse.SUPPRESS,
        help="the file to write (default: stdout, text formats only; - for stdout)",
    ).complete = shtab.FILE  # type: ignore[attr-defined]  # shtab reads it
    p.set_defaults(func=cmd_export)

    p = add("wait", "wait until a job finishes, then show it")
    p.add_argument("event_id")
    waiting(p)
    p.set_defaults(func=cmd_wait)

    p = add("list", "list jobs, newest first")
    p.add_argument(
        "--status",
        type=str.upper,
        choices=["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"],
        help="only jobs in this status (FAILED = the dead-letter queue)",
    )
    p.add_argument("--limit", type=int, default=50, help="page size, 1-200 (default 50)")
    p.add_argument("--cursor", help="next_cursor of the previous page")
    p.add_argument(
        "--needs-review", action="store_true", help="only results below a review threshold"
    )
    p.set_defaults(func=cmd_list)

    p = add("cancel", "cancel a PENDING or PROCESSING job")
    p.add_argument("event_id")
    p.set_defaults(func=cmd_cancel)

    p = add("retry", "start a new attempt of a FAILED or CANCELLED job")
    p.add_argument("event_id")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser(
        "completion",
        help="print a shell completion script: source <(guideline-client completion bash)",
        description="Print the completion script of a shell (generated from this parser "
        "by shtab). bash: `source <(guideline-client completion bash)` or save it in "
        "~/.local/share/bash-completion/completions/guideline-client; zsh: save it as "
        "_guideline-client in a directory of $fpath.",
    )
    p.add_argument("shell", choices=["bash", "zsh"])
    p.set_defaults(func=lambda _api, args: cmd_completion(parser, args))
    return parser


def cmd_completion(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Print the completion script for `args.shell`."""
    print(shtab.complete(parser, shell=args.shell))
    return EXIT_OK


def _dump_stacks_on_usr1() -> None:
    """`kill -USR1 <pid>` prints every thread's stack on stderr (when stderr is a file:
    not when a caller has replaced it, as pytest's capture does)."""
    if not hasattr(signal, "SIGUSR1"):
        return
    with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError):
        faulthandler.register(signal.SIGUSR1, all_threads=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `guideline-client`."""
    _dump_stacks_on_usr1()
    args = build_parser().parse_args(argv)
    api = Api(args.url, _api_key(args.api_key))
    try:
        code = args.func(api, args)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_ERROR
    except KeyboardInterrupt:
        code = 130
    finally:
        api.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
