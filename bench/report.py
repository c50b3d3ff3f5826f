"""The benchmark report: plain-text tables on stdout and a PNG plot of latency against the
offered rate (matplotlib, no display needed)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1e6 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A fixed-width table (numbers right-aligned)."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    numeric = [
        all(isinstance(r[i], int | float) or r[i] is None for r in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _kib(size: int) -> str:
    return f"{size / 1024:g} KiB"


def render(results: dict[str, Any]) -> str:
    """Every section that ran, as text."""
    parts: list[str] = []
    meta = results.get("meta", {})
    parts.append(
        f"guideline-ingest benchmarks  {meta.get('started')}  commit {meta.get('commit')}\n"
        f"machine: {meta.get('cpus')} CPUs ({meta.get('cpu_model')}), "
        f"{meta.get('memory_gib')} GiB; load average at start {meta.get('load_start')}, "
        f"at end {meta.get('load_end')}\ncommand: {meta.get('command')}"
    )
    if "profile" in results:
        p = results["profile"]
        parts.append(
            f"\n## Profile of POST /jobs ({_kib(p['size_bytes'])}, {p['requests']} requests "
            f"in-process, sequential): {p['mean_ms']} ms per request\n"
            + table(["share %", "where"], [[v, k] for k, v in p["categories"].items()])
            + "\n\ntop functions by self time:\n"
            + table(
                ["share %", "function"],
                [[f["share_pct"], f["function"]] for f in p["top_functions"][:10]],
            )
            + f"\n(full profile: {p['html']})"
        )
    if "latency" in results:
        rows = [
            [
                _kib(r["size_bytes"]),
                r["rate"],
                r["post"]["p50_ms"],
                r["post"]["p95_ms"],
                r["post"]["p99_ms"],
                r["post"]["max_ms"],
                r["post"]["errors"],
                r["post"]["achieved_rate"],
                r["post"].get("api_cpu_ms_per_request"),
                r["floor"]["p50_ms"],
                r["floor"]["p99_ms"],
                r["floor"]["errors"],
                r["ratio_p50"],
                r["ratio_p99"],
            ]
            for r in results["latency"]
        ]
        parts.append(
            "\n## Submission latency, open loop (ms from the scheduled send; POST = the API "
            "server, floor = one INSERT + one GuidelineJob create from this process; API cpu = "
            "ms of the API process's CPU per request)\n"
            + table(
                [
                    "text",
                    "rate/s",
                    "POST p50",
                    "p95",
                    "p99",
                    "max",
                    "errors",
                    "done/s",
                    "API cpu",
                    "floor p50",
                    "p99",
                    "errors",
                    "x p50",
                    "x p99",
                ],
                rows,
            )
        )
    if "e2e" in results:
        rows = [
            [
                r["concurrency"],
                f"{r['completed']}/{r['jobs']}",
                r["wall_s"],
                r["throughput_jobs_per_min"],
                r["ideal_jobs_per_min"],
                r["start_overhead"]["p50_ms"],
                r["start_overhead"]["max_ms"],
                r["slot_handoff"]["p50_ms"],
                r["slot_handoff"]["p95_ms"],
                r["completion_visibility"]["p50_ms"],
                r["completion_visibility"]["p95_ms"],
                r["runner_busy"]["p50_ms"],
                (r.get("runner_start_cpu_s") or {}).get("p50_ms"),
                r["extra_pods"],
            ]
            for r in results["e2e"]
        ]
        latency = results["e2e"][0]["llm_latency_s"] if results["e2e"] else None
        parts.append(
            f"\n## End to end (fake LLM {latency} s per call, 2 calls per job; times in ms)\n"
            + table(
                [
                    "maxConc",
                    "done",
                    "wall s",
                    "jobs/min",
                    "ideal",
                    "start p50",
                    "start max",
                    "handover p50",
                    "p95",
                    "visible p50",
                    "p95",
                    "runner p50",
                    "start CPU p50",
                    "extra pods",
                ],
                rows,
            )
            + "\nstart = accepted -> runner started (free slot); handover = a runner's exit "
            "-> the next queued runner started; visible = runner finished -> COMPLETED in "
            "GET /jobs (polled every 0.1 s); runner = runner started -> finished; start CPU = "
            "the runner process's CPU ms before its first LLM call (its own log)"
        )
    if "peer" in results:
        peer = results["peer"]
        rows = [
            [
                _kib(r["size_bytes"]),
                r["rate"],
                r["ours"]["p50_ms"],
                r["ours"]["p99_ms"],
                r["ours"]["errors"],
                r["peer"]["p50_ms"],
                r["peer"]["p99_ms"],
                r["peer"]["errors"],
            ]
            for r in peer["submit"]
        ]
        ours, theirs = peer["dispatch"]["ours"], peer["dispatch"]["peer"]
        dispatch = [
            ["jobs", ours["jobs"], theirs["jobs"]],
            [
                "concurrency (maxConcurrentJobs / worker processes)",
                ours["concurrency"],
                theirs["concurrency"],
            ],
            [
                "throughput, jobs/min",
                ours["throughput_jobs_per_min"],
                theirs["throughput_jobs_per_min"],
            ],
            [
                "accepted -> work starts, p50 ms",
                ours["start_overhead"]["p50_ms"],
                theirs["start_overhead"]["p50_ms"],
            ],
            [
                "accepted -> work starts, max ms",
                ours["start_overhead"]["max_ms"],
                theirs["start_overhead"]["max_ms"],
            ],
            [
                "slot hand-over, p50 ms",
                ours["slot_handoff"]["p50_ms"],
                theirs["slot_handoff"]["p50_ms"],
            ],
            [
                "work ends -> COMPLETED visible, p50 ms",
                ours["completion_visibility"]["p50_ms"],
                theirs["completion_visibility"]["p50_ms"],
            ],
        ]
        buys = "\n".join(
            f"- {b['aspect']}: ours: {b['ours']}.\n  celery: {b['peer']}."
            for b in peer["what_each_buys"]
        )
        parts.append(
            "\n## Peer baseline: FastAPI + Celery + Redis (same chain, same fake LLM)\n"
            "submit latency, open loop (ms):\n"
            + table(
                ["text", "rate/s", "ours p50", "p99", "errors", "celery p50", "p99", "errors"],
                rows,
            )
            + "\n\ndispatch:\n"
            + table(["", "ours", "celery"], dispatch)
            + "\n\nwhat each buys:\n"
            + buys
        )
    if "reads" in results:
        reads = results["reads"]
        rows = [
            [
                r["endpoint"],
                r["rate"],
                r["p50_ms"],
                r["p95_ms"],
                r["p99_ms"],
                r["max_ms"],
                r["errors"],
            ]
            for r in reads["steps"]
        ]
        parts.append(
            f"\n## Read path with {reads['rows']:,} rows (ms)\n"
            + table(["request", "rate/s", "p50", "p95", "p99", "max", "errors"], rows)
        )
    if "scale" in results:
        s = results["scale"]
        parts.append(
            f"\n## Scale: {s['jobs']:,} submissions over {s['submit_seconds']} s, "
            f"maxConcurrentJobs {s['max_concurrent_jobs']}, fake LLM answering at once\n"
            + table(
                ["", "value"],
                [
                    ["accepted (202)", s["accepted"]],
                    ["POST p50 / p99 ms", f"{s['post']['p50_ms']} / {s['post']['p99_ms']}"],
                    [
                        "COMPLETED / FAILED / lost",
                        f"{s['completed']} / {s['failed']} / {s['lost']}",
                    ],
                    ["rows / GuidelineJobs", f"{s['rows']} / {s['guidelinejobs']}"],
                    ["drained after (s, from the first POST)", s["drain_seconds"]],
                    ["throughput, jobs/min", s["throughput_jobs_per_min"]],
                    [
                        "API RSS start -> peak MiB",
                        f"{s['memory']['api']['start_mib']} -> {s['memory']['api']['peak_mib']}",
                    ],
                    [
                        "operator RSS start -> peak MiB",
                        f"{s['memory']['operator']['start_mib']} -> "
                        f"{s['memory']['operator']['peak_mib']}",
                    ],
                ],
            )
        )
    if "burst" in results:
        parts.append(render_burst(results["burst"]))
    if "uploads" in results:
        from bench.uploads import render as render_uploads

        parts.append(render_uploads(results["uploads"]))
    if "exports" in results:
        rows = [
            [r["format"], r["items"], r["median_ms"], r["max_ms"], r["cpu_median_ms"], r["bytes"]]
            for r in results["exports"]
        ]
        parts.append("\n== exports (in process; target 50 ms per format)")
        parts.append(
            table(["format", "items", "median ms", "max ms", "CPU median ms", "bytes"], rows)
        )
    for note in results.get("notes", []):
        parts.append(textwrap.fill(f"note: {note}", 100))
    return "\n".join(parts) + "\n"


def _percentiles(p: dict[str, Any]) -> list[Any]:
    return [p[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "errors", "max_send_lag_ms")]


def render_burst(b: dict[str, Any]) -> str:
    """Section burst: POST latency (ours, and the peer's under the same load), kube-apiserver
    writes, slot hand-over, drain, memory, nothing lost."""
    out = ["\n## Burst on the full stack (vegeta, open loop; ms from the scheduled send)"]
    peer = b.get("peer", {})
    ratios = b.get("p99_ratio_ours_over_peer", {})
    rows = []
    for name in ("burst", "steady"):
        if name in b:
            p = b[name]["post"]
            load = (
                f"{b[name]['jobs']:,} in {b[name]['submit_seconds']:g} s"
                if name == "burst"
                else f"{b[name]['rate']:g}/s for {b[name]['seconds']:g} s"
            )
            rows.append([f"ours {name}", load, *_percentiles(p), None])
        if name in peer:
            p = peer[name]
            rows.append([f"celery {name}", "same", *_percentiles(p), ratios.get(name)])
    out.append(
        table(
            [
                "POST /jobs",
                "load",
                "p50",
                "p95",
                "p99",
                "max",
                "errors",
                "send lag",
                "ours/peer p99",
            ],
            rows,
        )
    )
    if "burst" in b:
        s = b["burst"]
        w, h, m, lost = s["kube_writes"], s["handover"], s["memory"], s["lost"]
        pod, job = h["from_pod_finished"], h["from_job_completed"]
        out.append(
            f"\nmaxConcurrentJobs {s['max_concurrent_jobs']}, fake LLM answering at once\n"
            + table(
                ["", "value"],
                [
                    ["kube-apiserver writes per job (all but leases)", w["per_job"]],
                    [
                        "  to GuidelineJobs (+ status) per job",
                        f"{w['guidelinejob_per_job']} ({w['guidelinejob']:,} in all, "
                        f"status {w['guidelinejob_status']:,}, "
                        f"rejected {w['guidelinejob_rejected']:,})",
                    ],
                    [
                        "  GuidelineJob writes by HTTP code",
                        ", ".join(
                            f"{code}: {n:,}"
                            for code, n in w.get("guidelinejob_by_code", {}).items()
                        ),
                    ],
                    [
                        "slot freed (pod finished) -> next Job, p50 / p99 / mean ms",
                        f"{pod['p50_ms']} / {pod['p99_ms']} / {pod['mean_ms']} "
                        f"({pod['count']} gaps)",
                    ],
                    [
                        "slot freed (Job completed) -> next Job, p50 / p99 / mean ms",
                        f"{job['p50_ms']} / {job['p99_ms']} / {job['mean_ms']} "
                        f"({job['count']} gaps)",
                    ],
                    [
                        "drain s (first POST -> last COMPLETED) / pod-start bound s",
                        f"{s['drain_s']} / {s['pod_start_bound_s']} (x{s['drain_over_bound']}; "
                        f"a pod holds a slot {h['slot_held_mean_s']} s on average)",
                    ],
                    [
                        "API RSS start -> peak MiB",
                        f"{m['api']['start_mib']} -> {m['api']['peak_mib']}",
                    ],
                    [
                        "operator RSS start -> peak MiB",
                        f"{m['operator']['start_mib']} -> {m['operator']['peak_mib']}",
                    ],
                    [
                        "accepted / COMPLETED / rows / GuidelineJobs",
                        f"{lost['accepted']} / {lost['completed']} / {lost['rows']} / "
                        f"{lost['guidelinejobs']}: "
                        + ("nothing lost" if lost["nothing_lost"] else "SOMETHING LOST"),
                    ],
                ],
            )
            + "\nkube-apiserver writes by resource (create/update/patch/delete, from "
            "apiserver_request_total before and after):\n"
            + table(
                ["resource", "verb", "code", "count", "per job"],
                [
                    [
                        r["resource"],
                        r["verb"],
                        r["code"],
                        r["count"],
                        round(r["count"] / max(w["jobs"], 1), 2),
                    ]
                    for r in w["by_resource"][:15]
                ],
            )
            + "\nhand-over: creation of the k-th Job minus the (k-C)-th slot freeing, both "
            "sorted, for jobs already waiting; Kubernetes timestamps, 1 s resolution"
        )
    return "\n".join(out)


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Latency percentiles against the offered rate, one panel per text size (POST solid,
    floor dashed, Celery peer dotted)."""
    latency = results.get("latency") or []
    peer = (results.get("peer") or {}).get("submit") or []
    if not latency and not peer:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size_bytes"] for r in latency} | {r["size_bytes"] for r in peer})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.5), squeeze=False)
    colors = {"p50_ms": "tab:blue", "p95_ms": "tab:orange", "p99_ms": "tab:red"}
    for ax, size in zip(axes[0], sizes, strict=True):
        mine = [r for r in latency if r["size_bytes"] == size]
        theirs = [r for r in peer if r["size_bytes"] == size]
        for key, color in colors.items():
            label = key.removesuffix("_ms")
            if mine:
                rates = [r["rate"] for r in mine]
                ax.plot(
                    rates, [r["post"][key] for r in mine], "o-", color=color, label=f"POST {label}"
                )
                ax.plot(
                    rates,
                    [r["floor"][key] for r in mine],
                    "s--",
                    color=color,
                    alpha=0.6,
                    label=f"floor {label}",
                )
            if theirs and key != "p95_ms":
                ax.plot(
                    [r["rate"] for r in theirs],
                    [r["peer"][key] for r in theirs],
                    "^:",
                    color=color,
                    alpha=0.8,
                    label=f"celery {label}",
                )
        ax.set_title(f"POST /jobs, {size / 1024:g} KiB guideline")
        ax.set_xlabel("offered rate (requests/s, open loop)")
        ax.set_ylabel("latency from scheduled send (ms)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"guideline-ingest submission latency ({results.get('meta', {}).get('started')})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
