"""`python -m bench`: run the benchmarks and print the figures.

    .venv/bin/python -m bench                       # everything (hours: 2 bursts of 2,000)
    .venv/bin/python -m bench --quick               # every section, short (a few minutes)
    .venv/bin/python -m bench --only latency,e2e    # some sections

Sections: profile (pyinstrument of POST /jobs), latency (open-loop POST /jobs and its
floor), e2e (throughput and orchestration overhead), peer (Celery + Redis side by side),
reads (GET latency over 100,000 rows), scale (a burst of 2,000 submissions), burst (2,000
submissions from vegeta on the full stack, kube-apiserver writes per job, slot hand-over,
a steady 100/s, the Celery peer under the same loads), exports (each export format of a
500-item result, in process), uploads (the API's peak RSS with 20 concurrent 25 MiB
uploads, POST latency of one 25 MiB upload and of 1,000 small uploads at 50/s; its own
PostgreSQL and API process: bench/uploads.py), etcd (the GuidelineJob's size for 1 K, 100 K
and 2 M-character jobs and a PDF upload: bench.etcd_bytes). Then the benchmarks that start
their own servers, each run as `python -m bench.<name>` and its figures kept: extraction,
coverage, chain, streams, slowheaders, runner_memory.

Everything the run needs is started here and stopped at the end: by default a private
local control plane in .local/bench (purged afterwards; `--local-dir .local` uses the
development cluster of `make cluster`, left running if it was), a throw-away PostgreSQL,
the fake LLM, the operator and the API server. Results: a table on stdout,
bench-results/<timestamp>.json and bench-results/<timestamp>.png; the servers' logs stay in
the work directory printed at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import REPO_ROOT

# Benchmarks that start what they need themselves: run as `python -m bench.<module>`
# subprocesses (their own servers, clusters or none), their printed figures kept as they are.
STANDALONE = {
    "extraction": "bench.extraction",
    "coverage": "bench.coverage",
    "chain": "bench.chain",
    "streams": "bench.streams",
    "slowheaders": "bench.slowheaders",
    "runner_memory": "bench.runner_memory",
}
SECTIONS = (
    "profile",
    "latency",
    "e2e",
    "peer",
    "reads",
    "scale",
    "burst",
    "exports",
    "uploads",
    "etcd",
    *STANDALONE,
)


def standalone(module: str, log: Any) -> str:
    """Run `python -m <module>` (it starts what it needs) and keep what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", module], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    log(done.stdout)
    if done.returncode:
        raise RuntimeError(f"{module} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done.stdout


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (`--quick` changes the defaults of the unset options)."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short durations and small N")
    p.add_argument("--only", help=f"comma-separated sections ({','.join(SECTIONS)})")
    p.add_argument("--sizes", type=_ints, help="guideline sizes in bytes (1024,20480,97280)")
    p.add_argument("--rates", type=_floats, help="offered POST rates per s (25,50,100,200)")
    p.add_argument("--duration", type=float, help="seconds per rate step (10; quick 3)")
    p.add_argument("--concurrency", type=_ints, help="maxConcurrentJobs for e2e (1,4,16)")
    p.add_argument("--e2e-jobs", type=int, help="jobs per e2e run (16; quick 4)")
    p.add_argument("--llm-latency", type=float, default=2.0, help="fake LLM s per call (2)")
    p.add_argument("--read-rows", type=int, default=100_000, help="rows for `reads` (100000)")
    p.add_argument("--read-rates", type=_floats, help="GET rates per s (50,200)")
    p.add_argument("--scale-jobs", type=int, help="burst size (2000; quick 100)")
    p.add_argument("--scale-seconds", type=float, help="burst length in s (50; quick 10)")
    p.add_argument("--scale-concurrency", type=int, default=8, help="maxConcurrentJobs (8)")
    p.add_argument("--scale-timeout", type=float, default=7200, help="max drain wait in s")
    p.add_argument("--burst-jobs", type=int, help="burst submissions (2000; quick 100)")
    p.add_argument("--burst-seconds", type=float, help="burst length in s (50; quick 5)")
    p.add_argument("--burst-concurrency", type=int, default=8, help="maxConcurrentJobs (8)")
    p.add_argument("--burst-timeout", type=float, default=7200, help="max drain wait in s")
    p.add_argument("--burst-parts", default="burst,steady,peer", help="burst,steady,peer (all)")
    p.add_argument("--rate", type=float, help="steady POST/s of burst (100)")
    p.add_argument("--rate-seconds", type=float, help="steady duration in s (20; quick 5)")
    p.add_argument("--peer-rates", type=_floats, help="submit rates for peer (25,50,100)")
    p.add_argument("--peer-concurrency", type=int, default=4, help="worker processes (4)")
    p.add_argument("--profile-requests", type=int, help="POSTs profiled (200; quick 50)")
    p.add_argument("--export-items", type=int, default=500, help="items of `exports` (500)")
    p.add_argument(
        "--local-dir",
        default=str(REPO_ROOT / ".local" / "bench"),
        help="GUIDELINE_LOCAL_DIR of the control plane (default .local/bench, private)",
    )
    p.add_argument("--out", default=str(REPO_ROOT / "bench-results"), help="results directory")
    args = p.parse_args(argv)
    q = args.quick
    defaults: dict[str, Any] = {
        "sizes": [1024, 20480, 97280],
        "rates": [25.0, 50.0, 100.0, 200.0],
        "duration": 3.0 if q else 10.0,
        "concurrency": [1, 4, 16],
        "e2e_jobs": 4 if q else 16,
        "read_rates": [50.0, 200.0],
        "scale_jobs": 100 if q else 2000,
        "scale_seconds": 10.0 if q else 50.0,
        "burst_jobs": 100 if q else 2000,
        "burst_seconds": 5.0 if q else 50.0,
        "rate": 100.0,
        "rate_seconds": 5.0 if q else 20.0,
        "peer_rates": [25.0, 50.0, 100.0],
        "profile_requests": 50 if q else 200,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.sections = [s.strip() for s in (args.only or ",".join(SECTIONS)).split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    args.burst_parts = [s.strip() for s in args.burst_parts.split(",") if s.strip()]
    if set(args.burst_parts) - {"burst", "steady", "peer"}:
        p.error("--burst-parts: choose from burst, steady, peer")
    return args


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    except (OSError, ValueError, IndexError):
        mem = 0.0
    commit = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "commit": commit,
        "load_start": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the selected sections; returns the exit status."""
    args = parse_args(argv)
    local_dir = Path(args.local_dir).resolve()
    default_local = (REPO_ROOT / ".local").resolve()
    os.environ["GUIDELINE_LOCAL_DIR"] = str(local_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix=f"guideline-bench-{stamp}-"))

    def log(message: str) -> None:
        print(message, flush=True)

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    results: dict[str, Any] = {
        "meta": {
            "started": stamp,
            "command": " ".join(
                [Path(sys.executable).name, "-m", "bench", *(argv or sys.argv[1:])]
            ),
            "sections": args.sections,
            "local_dir": str(local_dir),
            **machine(),
        },
        "notes": [
            "All components share one 2-core machine with the load generator; every figure "
            "includes that contention (and whatever else ran on the machine at the time).",
            "The 97280-byte text is 95 KiB, the largest the API accepts (100,000 characters).",
        ],
    }
    json_path = out / f"{stamp}.json"
    log(f"work directory (server logs): {workdir}")
    status = 0
    from bench import burst, e2e, etcd_bytes, exports, latency, peer, profile, reads, scale, uploads
    from bench.env import Environment

    try:
        with Environment(workdir, private_cluster=local_dir != default_local, log=log) as env:
            for section in [s for s in SECTIONS if s in args.sections]:
                log(f"\n== {section}")
                started = time.monotonic()
                try:
                    if section == "profile":
                        results["profile"] = profile.run(
                            env, args.profile_requests, 20480, out, stamp, log
                        )
                    elif section == "latency":
                        results["latency"] = latency.run(
                            env, args.sizes, args.rates, args.duration, log
                        )
                    elif section == "e2e":
                        results["e2e"] = e2e.run(
                            env, args.concurrency, args.e2e_jobs, args.llm_latency, log
                        )
                    elif section == "peer":
                        mine = next(
                            (
                                r
                                for r in results.get("e2e", [])
                                if r["concurrency"] == args.peer_concurrency
                            ),
                            None,
                        )
                        results["peer"] = peer.run(
                            env,
                            [s for s in args.sizes if s <= 20480] or args.sizes[:1],
                            args.peer_rates,
                            args.duration,
                            args.e2e_jobs,
                            args.llm_latency,
                            args.peer_concurrency,
                            mine,
                            log,
                        )
                    elif section == "reads":
                        results["reads"] = reads.run(
                            env, args.read_rows, args.read_rates, args.duration, log
                        )
                    elif section == "scale":
                        results["scale"] = scale.run(
                            env,
                            args.scale_jobs,
                            args.scale_seconds,
                            args.scale_concurrency,
                            args.scale_timeout,
                            log,
                        )
                    elif section == "burst":
                        results["burst"] = burst.run(
                            env,
                            args.burst_jobs,
                            args.burst_seconds,
                            args.burst_concurrency,
                            args.burst_timeout,
                            args.rate,
                            args.rate_seconds,
                            args.burst_parts,
                            log,
                        )
                    elif section == "exports":
                        results["exports"] = exports.run(
                            args.export_items, 5 if args.quick else 30, log
                        )
                    elif section == "uploads":
                        quick = ["--single", "5", "--small", "200"] if args.quick else []
                        results["uploads"] = uploads.run(
                            uploads.parse(quick), workdir / "uploads", log
                        )
                    elif section == "etcd":
                        results["etcd"] = etcd_bytes.run(env, log)
                    elif section in STANDALONE:
                        results[section] = standalone(STANDALONE[section], log)
                except Exception as exc:  # keep the other sections' figures
                    status = 1
                    results.setdefault("errors", {})[section] = "".join(
                        traceback.format_exception(exc)
                    )
                    log(f"section {section} failed:\n{results['errors'][section]}")
                results["meta"].setdefault("section_seconds", {})[section] = round(
                    time.monotonic() - started, 1
                )
                json_path.write_text(json.dumps(results, indent=1, default=str))
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        status = 130
    finally:
        shutil.rmtree(workdir / "postgres", ignore_errors=True)
    results["meta"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    if "profile" in results:  # the profile tree is long: the JSON keeps it, stdout not
        (out / f"{stamp}-profile-post-jobs.txt").write_text(results["profile"]["text"])
    json_path.write_text(json.dumps(results, indent=1, default=str))
    from bench.report import plot, render

    print("\n" + render(results))
    png = plot(results, out / f"{stamp}.png")
    log(f"results: {json_path}" + (f", plot: {png}" if png else ""))
    return status


if __name__ == "__main__":
    sys.exit(main())
