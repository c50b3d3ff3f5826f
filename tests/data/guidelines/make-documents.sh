#!/usr/bin/env bash
# Regenerate the binary test documents from the committed Markdown guidelines (see PROVENANCE.md):
#   <name>.html  pandoc, standalone
#   <name>.docx  pandoc
#   <name>.pdf   pandoc HTML printed by headless Chromium (a real text layer, A4)
#   nist-sp800-63a-identity-proofing-page-labels.pdf  the same PDF with /PageLabels set by pypdf
#                (front matter i, ii; then 1, 2, ...)
#   nist-sp800-63b-authentication-scanned.pdf  its first 3 pages rasterized (pdftoppm) and
#                wrapped back as an image-only PDF (img2pdf): no text layer
# Needs pandoc, chromium, poppler-utils, img2pdf and a Python with pypdf (PYTHON, default the
# repository's .venv). Output is deterministic enough to review, not byte-for-byte reproducible.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
chromium="${CHROMIUM:-chromium}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$here"

for md in federal-plain-language-guidelines.md nist-sp800-63a-identity-proofing.md \
          nist-sp800-63b-authentication.md; do
  name="${md%.md}"
  title="$(head -1 "$md" | sed 's/^# //')"
  pandoc -f markdown -t html5 --standalone --metadata pagetitle="$title" -o "$name.html" "$md"
  pandoc -f markdown -t docx -o "$name.docx" "$md"
  "$chromium" --headless --no-sandbox --disable-gpu --no-pdf-header-footer \
    --user-data-dir="$work/profile" --print-to-pdf="$name.pdf" "file://$here/$name.html" \
    2>/dev/null
done

"$python" - <<'PY'
from pypdf import PdfReader, PdfWriter

writer = PdfWriter(clone_from="nist-sp800-63a-identity-proofing.pdf")
last = len(writer.pages) - 1
writer.set_page_label(0, 1, style="/r")  # i, ii
writer.set_page_label(2, last, style="/D", start=1)  # 1, 2, ...
with open("nist-sp800-63a-identity-proofing-page-labels.pdf", "wb") as out:
    writer.write(out)
PY

pdftoppm -r 60 -gray -png -f 1 -l 3 nist-sp800-63b-authentication.pdf "$work/page"
img2pdf "$work"/page-*.png -o nist-sp800-63b-authentication-scanned.pdf
ls -l "$here"/*.pdf "$here"/*.docx "$here"/*.html
