"""`python -m bench.extraction`: PDF extraction throughput (pages/s, MB/s) of the runner's
extractor (runner/guideline_runner/documents) against pypdfium2 called directly, page text
and nothing else (the ceiling): the overhead ratio is what hygiene, page spans and limits
cost. And the peak RSS of extracting the largest document, in a fresh process.

The PDFs are made at bench time in a temporary directory by repeating the pages of a real
guideline (tests/data/guidelines/nist-sp800-63b-authentication.pdf, 53 pages) with pypdf: 100
and 1,000 pages. Nothing is written to the repository; figures only, nothing asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import REPO_ROOT

SOURCE = REPO_ROOT / "tests" / "data" / "guidelines" / "nist-sp800-63b-authentication.pdf"
PAGE_COUNTS = (100, 1_000)


def make_pdf(pages: int, directory: Path) -> Path:
    """A PDF of `pages` pages: the real guideline's pages over and over."""
    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(SOURCE)
    writer = PdfWriter()
    for index in range(pages):
        writer.add_page(reader.pages[index % len(reader.pages)])
    path = directory / f"guideline-{pages}.pdf"
    with path.open("wb") as out:
        writer.write(out)
    return path


def ceiling(data: bytes) -> int:
    """pypdfium2 alone: every page's text; the characters extracted."""
    import pypdfium2

    document = pypdfium2.PdfDocument(data)
    characters = 0
    for index in range(len(document)):
        page = document[index]
        text_page = page.get_textpage()
        characters += len(text_page.get_text_bounded())
        text_page.close()
        page.close()
    document.close()
    return characters


def ours(data: bytes) -> int:
    """The runner's extractor; the characters of its text."""
    from guideline_runner.documents import extract

    return len(extract(data).text)


def best_of(function: Callable[[bytes], int], data: bytes, repeats: int) -> float:
    """The shortest of `repeats` runs, in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(data)
        times.append(time.perf_counter() - start)
    return min(times)


def peak_rss_mib(path: Path | None) -> float:
    """Peak RSS of a fresh process that imports the extractor and (with a path) extracts."""
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child forked from this (large)
    # process would report the parent's size.
    code = (
        "import sys\n"
        "from guideline_runner.documents import extract\n"
        "if len(sys.argv) > 1:\n"
        "    extract(open(sys.argv[1], 'rb').read())\n"
        "status = open('/proc/self/status').read()\n"
        "print(next(l.split()[1] for l in status.splitlines() if l.startswith('VmHWM:')))\n"
    )
    argv = [sys.executable, "-c", code] + ([str(path)] if path else [])
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return int(output.strip()) / 1024


def main() -> int:
    """Measure and print a table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for pages in PAGE_COUNTS:
            path = make_pdf(pages, Path(directory))
            data = path.read_bytes()
            ours(data)  # imports and first-touch costs out of the measurement
            base = best_of(ceiling, data, args.repeats)
            full = best_of(ours, data, args.repeats)
            mb = len(data) / 1e6
            rows.append(
                {
                    "pages": pages,
                    "mb": round(mb, 2),
                    "characters": ours(data),
                    "ceiling_s": round(base, 3),
                    "ours_s": round(full, 3),
                    "ceiling_pages_per_s": round(pages / base),
                    "ours_pages_per_s": round(pages / full),
                    "ceiling_mb_per_s": round(mb / base, 1),
                    "ours_mb_per_s": round(mb / full, 1),
                    "overhead_ratio": round(full / base, 2),
                    "peak_rss_mib": round(peak_rss_mib(path), 1),
                }
            )
        imports_only = round(peak_rss_mib(None), 1)
    if args.json:
        print(json.dumps({"rows": rows, "imports_only_rss_mib": imports_only}, indent=2))
        return 0
    print("pages  MB    chars      pdfium s     pages/s  MB/s   ours s  pages/s  MB/s   ratio  RSS")
    for r in rows:
        print(
            f"{r['pages']:>5}  {r['mb']:<5} {r['characters']:<10} {r['ceiling_s']:<12} "
            f"{r['ceiling_pages_per_s']:<8} {r['ceiling_mb_per_s']:<6} {r['ours_s']:<7} "
            f"{r['ours_pages_per_s']:<8} {r['ours_mb_per_s']:<6} {r['overhead_ratio']:<6} "
            f"{r['peak_rss_mib']}"
        )
    print(f"peak RSS of the same process importing the extractor only: {imports_only} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
