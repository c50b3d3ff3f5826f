"""A fuzzer for the cost of text processing: every function that reads user text (the
runner's splitting, the extractive provider, the prompts, the API's validators, core's
redaction) on pumped inputs, each within a time budget.

Super-linear regular expressions and loops show only on long inputs with a repeated part,
so an input is `prefix + motif * k + suffix` (the shape of every catastrophic input found
here), pumped to `size` characters, from an alphabet of the characters the patterns care
about. Runs in a child process, because a catastrophic regular expression cannot be
interrupted from inside (the `re` engine holds the GIL): the parent kills it after a
deadline, and the input being worked on is always in the report file.

    python -m support.textfuzz worst --budget 1 --report r.json     # the regression inputs
    python -m support.textfuzz fuzz --examples 300 --size 20000 --budget 2 --report r.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

Target = Callable[[str], object]


def targets() -> dict[str, Target]:
    """Every text function under test, by name (imported here: the child pays for it)."""
    from guideline_api.schemas import SubmitJob
    from guideline_api.submission import parse_submission
    from guideline_core import dsn, logs
    from guideline_runner import errors, obligations, text
    from guideline_runner.providers import extractive, prompts

    def submit(s: str) -> object:
        try:
            return SubmitJob.model_validate({"guideline_text": s, "title": s[:200]})
        except ValueError:
            return None

    def parse(s: str) -> object:
        try:
            return parse_submission(json.dumps({"guideline_text": s}).encode(), None)
        except Exception:  # an ApiError (422) is a fine answer; only the cost matters
            return None

    return {
        "chunk_text": lambda s: text.chunk_text(s, 24_000),
        "chunk_text_small": lambda s: text.chunk_text(s, 1_000),
        "split_units": text.split_units,
        "obligations_of": obligations.obligations_of,
        "heading_of": text.heading_of,
        "extractive_summary": extractive.extractive_summary,
        "extractive_checklist": lambda s: extractive.extractive_checklist(s, 30),
        "priority_of": extractive.priority_of,
        "prompts": lambda s: prompts.summarize_user(s, 1, 2) + prompts.combine_user([s, s]),
        "submit_schema": submit,
        "parse_submission": parse,
        "runner_redact": errors.redact,
        "dsn_redact": dsn.redact,
        "logs_scrub": logs.scrub,
    }


def _pump(motif: str, size: int, prefix: str = "", suffix: str = "") -> str:
    repeats = max(1, (size - len(prefix) - len(suffix)) // len(motif))
    return prefix + motif * repeats + suffix


def worst_inputs() -> list[tuple[str, str]]:
    """The regression inputs, (target, input): each was super-linear in its target before
    the fix (figures in the README's "Security model")."""
    cases = [
        # `_HEADING_MD`'s `(.*?)\s*#*\s*$`: cubic in a run of blanks (2,000: 30-40 s).
        ("heading_of", _pump(" ", 4_000, "# a", "b")),
        ("split_units", _pump(" ", 4_000, "# a", "b")),
        ("extractive_checklist", _pump(" ", 4_000, "# a", "b")),
        ("extractive_summary", _pump(" ", 4_000, "## x", ".")),
        ("split_units", _pump(" \t", 4_000, "### Title", "z")),
        # `_SENTENCE_BREAK`'s `[ \t]*\n`: quadratic in a run of blanks without a newline.
        ("chunk_text", _pump(" ", 100_000, "", "x")),
        ("chunk_text", _pump("\t ", 100_000, "a", "x")),
        ("chunk_text_small", _pump(" ", 100_000, "", "x")),
        # pysbd's rules on a punctuation run: cubic in one sentence's length (9,000
        # characters: 3.6 s, 30,000: 38 s); the splitter now sees short pieces only.
        ("obligations_of", _pump("?*]", 15_000, "(#a", "- ")),
        ("split_units", _pump("?*]", 15_000, "(#a", "- ")),
    ]
    return cases


ALPHABET = " \t\n\r.!?…\"')]([#*-:,;aA1é\u2022\u00a0"
# Starts and ends that steer into the patterns' branches (headings, bullets, sentence ends,
# connection strings).
INTERESTING = [
    "",
    "a",
    "#",
    "# a",
    "## a",
    "- ",
    "1. ",
    "(a) ",
    "a.",
    ". ",
    "A",
    ":",
    "\n",
    "\n\n",
    "password=",
    "password='",
    "://u:",
    "x" * 30,
]
BLANKS = " \t\n\r\u00a0"


def _run(name: str, func: Target, value: str, report: Path) -> float:
    report.write_text(json.dumps({"running": name, "input": value}))
    start = time.perf_counter()
    func(value)
    return time.perf_counter() - start


def run_worst(budget: float, report: Path) -> int:
    """Run every worst input; 1 if any took longer than `budget` seconds."""
    funcs = targets()
    results = []
    for name, value in worst_inputs():
        elapsed = _run(name, funcs[name], value, report)
        results.append({"target": name, "chars": len(value), "seconds": round(elapsed, 4)})
    over = [r for r in results if r["seconds"] > budget]
    report.write_text(json.dumps({"results": results, "over_budget": over}))
    return 1 if over else 0


def run_fuzz(examples: int, size: int, budget: float, seed: int, report: Path) -> int:
    """Hypothesis over pumped inputs for every target; 1 at the first one over budget."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    funcs = targets()
    slowest: dict[str, float] = {}
    part = st.one_of(st.sampled_from(INTERESTING), st.text(ALPHABET, max_size=4))

    @hseed(seed)
    @settings(
        max_examples=examples,
        deadline=None,  # the budget below is ours, per target
        database=None,
        phases=[Phase.generate],  # no shrinking: a slow input is reported as found
        suppress_health_check=list(HealthCheck),
    )
    @given(
        prefix=part,
        # Runs of blanks are where backtracking hides: half the motifs are blanks only.
        motif=st.one_of(
            st.text(BLANKS, min_size=1, max_size=3), st.text(ALPHABET, min_size=1, max_size=6)
        ),
        suffix=part,
    )
    def check(prefix: str, motif: str, suffix: str) -> None:
        value = _pump(motif, size, prefix, suffix)
        for name, func in funcs.items():
            elapsed = _run(name, func, value, report)
            slowest[name] = max(slowest.get(name, 0.0), elapsed)
            if elapsed > budget:
                raise AssertionError(f"{name} took {elapsed:.2f} s on {value[:60]!r}...")

    try:
        check()
    except AssertionError as exc:
        last = json.loads(report.read_text())
        report.write_text(json.dumps({"failure": str(exc), **last, "slowest": slowest}))
        return 1
    report.write_text(json.dumps({"slowest": {k: round(v, 4) for k, v in slowest.items()}}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line of the child process (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m support.textfuzz")
    parser.add_argument("mode", choices=["worst", "fuzz"])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per input")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--size", type=int, default=20_000, help="characters per input")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.mode == "worst":
        return run_worst(args.budget, args.report)
    return run_fuzz(args.examples, args.size, args.budget, args.seed, args.report)


if __name__ == "__main__":
    sys.exit(main())
