"""A fuzzer for the cost of text processing: every function that reads user text (the
runner's splitting, the extractive provider, the prompts, the API's validators, core's
redaction) on pumped inputs, checked for how their cost grows: an input pumped to a
quarter of its length must cost at least a quarter as much (within a factor), which a
linear pass always meets and a quadratic or cubic one never does. A growth ratio measured
in one process holds on a loaded machine, where a budget in seconds does not.

Super-linear regular expressions and loops show only on long inputs with a repeated part,
so an input is `prefix + motif * k + suffix` (the shape of every catastrophic input found
here), pumped to `size` characters, from an alphabet of the characters the patterns care
about. Runs in a child process, because a catastrophic regular expression cannot be
interrupted from inside (the `re` engine holds the GIL): the parent kills it after a
deadline, and the input being worked on is always in the report file.

    python -m support.textfuzz worst --report r.json     # the regression inputs
    python -m support.textfuzz fuzz --examples 300 --size 20000 --report r.json
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
    from guideline_api.service.submission import parse_submission
    from guideline_core import dsn, logs
    from guideline_core.documents import hygiene, sniff
    from guideline_runner import documents, errors, obligations, text
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
        "clean_text": hygiene.clean_text,
        "sniff": lambda s: _or_none(sniff.sniff, s.encode("utf-8", "surrogatepass")),
        "extract_document": lambda s: _or_none(documents.extract, s.encode("utf-8", "replace")),
    }


def _or_none(function: Callable[[bytes], object], data: bytes) -> object:
    """The answer, or None for a refusal (a typed error is a fine answer; only cost counts)."""
    try:
        return function(data)
    except ValueError:
        return None
    except Exception as error:
        if type(error).__module__.startswith("guideline_runner.documents"):
            return None
        raise


def _pump(motif: str, size: int, prefix: str = "", suffix: str = "") -> str:
    repeats = max(1, (size - len(prefix) - len(suffix)) // len(motif))
    return prefix + motif * repeats + suffix


def worst_inputs() -> list[tuple[str, tuple[str, str, str], int]]:
    """The regression inputs, (target, (prefix, motif, suffix), size): each was
    super-linear in its target before the fix (figures in docs/security.md)."""
    cases = [
        # `_HEADING_MD`'s `(.*?)\s*#*\s*$`: cubic in a run of blanks (2,000: 30-40 s).
        ("heading_of", ("# a", " ", "b"), 4_000),
        ("split_units", ("# a", " ", "b"), 4_000),
        ("extractive_checklist", ("# a", " ", "b"), 4_000),
        ("extractive_summary", ("## x", " ", "."), 4_000),
        ("split_units", ("### Title", " \t", "z"), 4_000),
        # `_SENTENCE_BREAK`'s `[ \t]*\n`: quadratic in a run of blanks without a newline.
        ("chunk_text", ("", " ", "x"), 100_000),
        ("chunk_text", ("a", "\t ", "x"), 100_000),
        ("chunk_text_small", ("", " ", "x"), 100_000),
        # pysbd's rules on a punctuation run: cubic in one sentence's length (9,000
        # characters: 3.6 s, 30,000: 38 s); the splitter now sees short pieces only.
        ("obligations_of", ("(#a", "?*]", "- "), 15_000),
        ("split_units", ("(#a", "?*]", "- "), 15_000),
        # Hygiene's difflib count of repaired runs: quadratic in a long line of mojibake
        # before lines over 2,000 characters were counted once.
        ("clean_text", ("", "\u00e2\u0084\u00a2 x", ""), 100_000),
        ("extract_document", ("# T\n", "\u00e2\u0084\u00a2 x", ""), 100_000),
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


# Linear work grows 4x from a quarter of the input to all of it; quadratic 16x, cubic 64x.
MAX_GROWTH = 10.0
# A quarter input cheaper than this is too cheap for a ratio to be told from timer noise
# and from which branch the pumped shape happens to take; every input found catastrophic
# here cost seconds at a quarter of its size.
NOISE_FLOOR_SECONDS = 0.02


def _timed(func: Target, value: str, repeats: int) -> float:
    """The fastest of `repeats` runs (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        func(value)
        best = min(best, time.perf_counter() - start)
    return best


def growth(name: str, func: Target, shape: tuple[str, str, str], size: int, report: Path) -> dict:
    """Cost of the input pumped to `size // 4` and, when that is above the noise floor,
    to `size`, and their ratio (None below the floor)."""
    prefix, motif, suffix = shape
    full, quarter = _pump(motif, size, prefix, suffix), _pump(motif, size // 4, prefix, suffix)
    report.write_text(json.dumps({"running": name, "input": quarter}))
    small = _timed(func, quarter, 3)
    result = {
        "target": name,
        "chars": len(full),
        "quarter_seconds": round(small, 4),
        "growth": None,
    }
    if small >= NOISE_FLOOR_SECONDS:
        report.write_text(json.dumps({"running": name, "input": full}))
        result["growth"] = round(_timed(func, full, 2) / small, 2)
    return result


def _warm(funcs: dict[str, Target]) -> None:
    """One call each on a small input: lazy imports and compiled patterns are not timed."""
    for func in funcs.values():
        func("# Warm-up\n\nStaff must wash their hands. Gloves are worn.\n- one\n")


def run_worst(report: Path) -> int:
    """Run every worst input; 1 if any grows faster than linearly."""
    funcs = targets()
    _warm(funcs)
    results = [
        growth(name, funcs[name], shape, size, report) for name, shape, size in worst_inputs()
    ]
    over = [r for r in results if r["growth"] is not None and r["growth"] > MAX_GROWTH]
    report.write_text(json.dumps({"results": results, "super_linear": over}))
    return 1 if over else 0


def run_fuzz(examples: int, size: int, seed: int, report: Path) -> int:
    """Hypothesis over pumped inputs for every target; 1 at the first that grows faster
    than linearly."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    funcs = targets()
    _warm(funcs)
    slowest: dict[str, float] = {}
    part = st.one_of(st.sampled_from(INTERESTING), st.text(ALPHABET, max_size=4))

    @hseed(seed)
    @settings(
        max_examples=examples,
        deadline=None,  # the growth check below is ours, per target
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
        for name, func in funcs.items():
            result = growth(name, func, (prefix, motif, suffix), size, report)
            slowest[name] = max(slowest.get(name, 0.0), result["quarter_seconds"])
            if result["growth"] is not None and result["growth"] > MAX_GROWTH:
                raise AssertionError(
                    f"{name} grew {result['growth']}x from {size // 4} to {size} characters "
                    f"on {_pump(motif, 60, prefix, suffix)!r}..."
                )

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
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--size", type=int, default=20_000, help="characters per input")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.mode == "worst":
        return run_worst(args.report)
    return run_fuzz(args.examples, args.size, args.seed, args.report)


if __name__ == "__main__":
    sys.exit(main())
