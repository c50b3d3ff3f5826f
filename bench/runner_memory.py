"""`python -m bench.runner_memory`: the runner pod's peak RSS on the largest document it
accepts, so the chart's runner memory request and limit can be set to fit it.

Each case runs in a fresh process the way a runner pod does, minus its Kubernetes I/O: the
document read from a file (as `spec.guidelineTextFrom` mounts it), extracted under the
default limits (1,000 pages, 2,000,000 characters), the extractive chain run on the text
(the whole checklist, grounded, judged), every source cited, and `status.result` serialized.
The peak is the process's VmHWM (high-water mark of its resident set).

Cases, made at bench time in a temporary directory from the real test guidelines:
- a 1,000-page PDF (the pages of tests/data/guidelines/nist-sp800-63b-authentication.pdf
  over and over, with pypdf, as bench.extraction makes it): the page limit;
- a 2,000,000-character Markdown text (the test guidelines' Markdown concatenated until the
  character limit): the character limit;
- the 1,000-page PDF grown to 25 MiB (the API's max_document_bytes) by an attached file of
  random bytes: the byte limit (the runner holds the document's bytes while it extracts).
The child imports the openai SDK too (the default provider's), though it runs the extractive
chain: the LLM's answers are small next to the document. Figures only, nothing asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import REPO_ROOT
from bench.extraction import make_pdf

GUIDELINES = REPO_ROOT / "tests" / "data" / "guidelines"
MAX_CHARS = 2_000_000

_CHILD = """
import json, sys, time
started = time.monotonic()
from guideline_core.settings import RunnerSettings
from guideline_runner.chain import run_chain
from guideline_runner.citations import with_citations
from guideline_runner.input import read_input
from guideline_runner.providers import make_provider
import openai  # the default provider's SDK: its imports are part of a pod's memory

settings = RunnerSettings(provider="extractive", input_file=sys.argv[1],
                          soft_timeout_seconds=3600)
spec = {"guidelineTextFrom": {"configMapKeyRef": {"name": "bench", "key": "doc"}}}
found = read_input(spec, settings, None)
extracted = time.monotonic()
provider = make_provider(settings)
result = with_citations(run_chain(found.text, settings, provider), found.document, found.info)
status = json.dumps(result.to_status(), ensure_ascii=False).encode()
done = time.monotonic()
hwm = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({
    "pages": found.info.pages, "characters": found.info.characters,
    "bytes": found.info.bytes, "items": len(result.checklist),
    "status_result_bytes": len(status), "extract_s": round(extracted - started, 2),
    "total_s": round(done - started, 2), "peak_rss_mib": round(int(hwm) / 1024, 1),
}))
"""


def make_markdown(directory: Path, characters: int = MAX_CHARS) -> Path:
    """The test guidelines' Markdown, repeated up to exactly `characters` characters."""
    sources = [p.read_text() for p in sorted(GUIDELINES.glob("*.md"))]
    parts: list[str] = []
    total = 0
    while total < characters:
        for text in sources:
            parts.append(text)
            total += len(text)
    path = directory / "guideline-2m.md"
    path.write_text("".join(parts)[:characters])
    return path


def make_large_pdf(directory: Path, size: int = 25 * 1024 * 1024) -> Path:
    """The 1,000-page PDF with an attachment of random bytes, `size` bytes in all."""
    import os

    from pypdf import PdfReader, PdfWriter

    source = make_pdf(1_000, directory)
    writer = PdfWriter(clone_from=PdfReader(source))
    padding = size - source.stat().st_size - 4096
    writer.add_attachment("padding.bin", os.urandom(padding))
    path = directory / "guideline-25mib.pdf"
    with path.open("wb") as out:
        writer.write(out)
    return path


def measure(path: Path) -> dict[str, object]:
    """One case in a fresh process."""
    output = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def imports_only() -> float:
    """Peak RSS of a process that imports the runner and nothing more."""
    code = (
        "import guideline_runner.main\n"
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return round(int(output.stdout.strip()) / 1024, 1)


def main() -> int:
    """Measure and print a table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        rows = {
            "pdf-1000-pages": measure(make_pdf(1_000, directory)),
            "markdown-2m-chars": measure(make_markdown(directory)),
            "pdf-25-mib": measure(make_large_pdf(directory)),
        }
    baseline = imports_only()
    if args.json:
        print(json.dumps({"cases": rows, "imports_only_rss_mib": baseline}, indent=2))
        return 0
    print(
        "case               pages  chars      MB     items  result KB  extract s  total s  "
        "peak RSS MiB"
    )
    for case, r in rows.items():
        print(
            f"{case:<18} {r['pages'] or '-':<6} {r['characters']:<10} "
            f"{int(r['bytes']) / 1e6:<6.2f} {r['items']:<6} "  # type: ignore[call-overload]
            f"{int(r['status_result_bytes']) / 1024:<10.0f} {r['extract_s']:<10} "  # type: ignore[call-overload]
            f"{r['total_s']:<8} {r['peak_rss_mib']}"
        )
    print(f"peak RSS of a process importing the runner only: {baseline} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
