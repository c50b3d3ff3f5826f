#!/usr/bin/env bash
# Regenerate examples/uspstf-screening.pdf (the PDF `make demo` submits) from
# uspstf-screening.md: pandoc to standalone HTML, printed to PDF by headless Chromium (a real
# text layer, A4, 17 pages). uspstf-screening.md is the first recommendation of each of 22
# topics of tests/data/guidelines/uspstf-specific-recommendations.md (USPSTF, a US federal
# work in the public domain; provenance in tests/data/guidelines/PROVENANCE.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pandoc -f markdown -t html5 --standalone \
  --metadata pagetitle="USPSTF Recommendations (a selection)" \
  -o "$work/uspstf-screening.html" "$here/uspstf-screening.md"
"${CHROMIUM:-chromium}" --headless --no-sandbox --disable-gpu --no-pdf-header-footer \
  --user-data-dir="$work/profile" --print-to-pdf="$here/uspstf-screening.pdf" \
  "file://$work/uspstf-screening.html" 2>/dev/null
ls -l "$here/uspstf-screening.pdf"
