"""Text hygiene (core/guideline_core/documents/hygiene.py): the issue's real mojibake
repaired, stray controls replaced, NFC, each repair counted with its first offset in the
input; and, for any text, idempotent, never raising, no stray control left, NFC."""

from __future__ import annotations

import unicodedata

from guideline_core.documents.hygiene import (
    CONTROL_CHARACTERS,
    MOJIBAKE,
    UNICODE_NORMALIZATION,
    TextWarning,
    clean_text,
)
from hypothesis import given, settings
from hypothesis import strategies as st

# The disclaimer that got four real NGC summaries refused: UTF-8's ™ (E2 84 A2) read as Latin-1.
TM_MOJIBAKE = "\u00e2\u0084\u00a2"
DISCLAIMER = (
    "Guideline summaries are not a substitute for the guidelines. Brand" + TM_MOJIBAKE
    + " names are the property of their owners.\n"
)  # fmt: skip


def _by_kind(warnings: list[TextWarning]) -> dict[str, TextWarning]:
    return {w.kind: w for w in warnings}


def test_the_issues_trademark_mojibake_is_repaired_and_counted() -> None:
    cleaned = clean_text(DISCLAIMER * 3)
    assert cleaned.text == DISCLAIMER.replace(TM_MOJIBAKE, "\u2122") * 3
    warning = _by_kind(cleaned.warnings)[MOJIBAKE]
    assert warning.count == 3
    assert warning.first_offset == DISCLAIMER.index(TM_MOJIBAKE)
    assert set(_by_kind(cleaned.warnings)) == {MOJIBAKE}


def test_stray_controls_are_replaced_and_tab_lf_cr_kept() -> None:
    text = "Wash\thands.\r\nDry them.\x00 Then\x1b glove\x0cup\x7f."
    cleaned = clean_text(text)
    assert cleaned.text == "Wash\thands.\r\nDry them.\ufffd Then\ufffd glove\nup\ufffd."
    warning = _by_kind(cleaned.warnings)[CONTROL_CHARACTERS]
    assert (warning.count, warning.first_offset) == (4, text.index("\x00"))
    assert set(_by_kind(cleaned.warnings)) == {CONTROL_CHARACTERS}


def test_a_c1_control_is_windows_1252_mojibake() -> None:
    # U+0085 is what Windows-1252's ellipsis (0x85) becomes when read as Latin-1.
    text = "Wait\x85 then wash."
    cleaned = clean_text(text)
    assert cleaned.text == "Wait\u2026 then wash."
    assert _by_kind(cleaned.warnings)[MOJIBAKE].first_offset == 4


def test_decomposed_text_is_composed_with_its_offset() -> None:
    text = "Cafe\u0301 and re\u0301sume\u0301\nnai\u0308ve"
    cleaned = clean_text(text)
    assert cleaned.text == "Caf\u00e9 and r\u00e9sum\u00e9\nna\u00efve"
    warning = _by_kind(cleaned.warnings)[UNICODE_NORMALIZATION]
    assert warning.count == 4
    assert warning.first_offset == text.index("e\u0301")


def test_offsets_are_in_the_input_across_repairs_on_one_line() -> None:
    text = "ok\nBrand" + TM_MOJIBAKE + " x\x07y"
    warnings = _by_kind(clean_text(text).warnings)
    assert warnings[MOJIBAKE].first_offset == text.index(TM_MOJIBAKE)
    assert warnings[CONTROL_CHARACTERS].first_offset == text.index("\x07")


def test_correct_text_is_left_alone() -> None:
    text = (
        "“Quotes”, naïve café, 東京, emoji 👍, ﬁ ligature, "
        "\uff46\uff55\uff4c\uff4c width, tab\tand CR\r\n"
    )
    assert clean_text(text).text == text
    assert clean_text(text).warnings == []


# Any code point (surrogates too), and runs of the pieces mojibake and decomposed text are made of.
_PIECES = ["\u00e2", "\u0084", "\u00a2", "\u00c3", "\u00a9", "e", "\u0301", "\r", "\n", "\x0c", " "]
_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=300) | st.lists(
    st.sampled_from(_PIECES), max_size=60
).map("".join)


@settings(max_examples=1000, deadline=None)
@given(_TEXT)
def test_any_text_is_cleaned_once_and_for_all(text: str) -> None:
    cleaned = clean_text(text)
    out = cleaned.text
    assert clean_text(out).text == out  # idempotent
    assert unicodedata.is_normalized("NFC", out)
    stray = [c for c in out if unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n\r"]
    assert stray == []
    out.encode("utf-8")  # no lone surrogate left
    for warning in cleaned.warnings:
        assert warning.count >= 1
        assert 0 <= warning.first_offset < max(len(text), 1)


def test_a_long_line_is_repaired_whole_and_counted_once() -> None:
    # Runs are counted with difflib on lines up to 2,000 characters; beyond, once per line.
    line = "word " * 1_000 + "Brand" + TM_MOJIBAKE + " " + "word " * 1_000 + TM_MOJIBAKE
    cleaned = clean_text(line)
    assert cleaned.text == line.replace(TM_MOJIBAKE, "\u2122")
    assert cleaned.warnings == [TextWarning(MOJIBAKE, 1, line.index(TM_MOJIBAKE))]
