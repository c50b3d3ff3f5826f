"""Console script `guideline-client`: submit guidelines to the REST API and read results.

It speaks only HTTP (httpx) and imports nothing from the server side, so it can be used
from any machine that reaches the API.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import shtab
from guideline_core import version

from guideline_client.http import DEFAULT_URL, Api, ClientError, Document, api_key
from guideline_client.output import FORMATS, format_job, format_list, render
from guideline_client.review import review_page

EXIT_OK, EXIT_JOB_FAILED, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
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


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(text if args.output == "table" else render(data, args.output))


def _exit_for(job: dict[str, Any]) -> int:
    return EXIT_OK if job["status"] == "COMPLETED" else EXIT_JOB_FAILED


# -------------------------------------------------------------------------- commands


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

    def add(name: str, help_text: str, *, formats: bool = True) -> argparse.ArgumentParser:
        """A verb; `formats=False`: its -o is its own (a file), not the output format."""
        options = common if formats else connection_options(defaults=False, formats=False)
        return sub.add_parser(name, help=help_text, description=help_text, parents=[options])

    def output_file(p: argparse.ArgumentParser, help_text: str) -> None:
        p.add_argument(
            "-o", "--output", default=argparse.SUPPRESS, help=help_text
        ).complete = shtab.FILE  # type: ignore[attr-defined]  # shtab reads it

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

    def job_options(p: argparse.ArgumentParser, *, model: str, retries: str, callback: str) -> None:
        """The options of the jobs a submission makes (`_fields` reads them)."""
        p.add_argument("--model", help=model)
        p.add_argument(
            "--provider", choices=["openai", "extractive"], help="default: the server's setting"
        )
        p.add_argument("--max-retries", type=int, help=retries)
        p.add_argument("--callback-url", help=callback)

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
    job_options(
        p,
        model="LLM model, e.g. gpt-4o-mini (default: the server's)",
        retries="pod retries for this job (0-10)",
        callback="webhook for the job's terminal states (default: the tenant's)",
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
    job_options(
        p,
        model="LLM model for every file (default: the server's)",
        retries="pod retries for each job (0-10)",
        callback="webhook for each job's terminal states (default: the tenant's)",
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

    p = add(
        "show", "show a job with its sources; --html writes a page to review them", formats=False
    )
    p.add_argument("event_id")
    p.add_argument(
        "--html", action="store_true", help="the guideline with each item's source highlighted"
    )
    output_file(p, "table, json or yaml; with --html: the file for the page (default: stdout)")
    p.set_defaults(func=cmd_show)

    p = add(
        "export",
        "download a COMPLETED job's result as FHIR, OSCAL, CSV, XLSX, Markdown or HTML",
        formats=False,
    )
    p.add_argument("event_id")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="the export format")
    output_file(p, "the file to write (default: stdout, text formats only; - for stdout)")
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
    api = Api(args.url, api_key(args.api_key))
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
