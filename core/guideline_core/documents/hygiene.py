"""Text hygiene instead of refusal: repair what can be repaired, count every repair.

Three repairs, in this order, each reported as a `TextWarning` (what, how many, first offset in
the input):

- `mojibake`: text decoded with the wrong codec (UTF-8 read as Latin-1 or Windows-1252, e.g.
  `â` U+0084 `¢` for `™`), repaired by ftfy, the maintained library that does exactly this
  with a low false-positive rate (Apache-2.0). Only its encoding fixes are enabled: curly quotes,
  full-width characters and line breaks stay as written;
- `control_characters`: C0/C1 controls other than tab, LF and CR (and lone surrogates), which no
  guideline means: a form feed or vertical tab becomes a line feed, anything else U+FFFD;
- `unicode_normalization`: the text is put in NFC, so that a quote typed by a user and the same
  quote in the document compare equal.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import ftfy

_FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    # It turns sequences next to U+FFFD into more U+FFFD: a loss, and not idempotent once the
    # controls have become U+FFFD.
    replace_lossy_sequences=False,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)
_STRAY_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_LINE_BREAK_CONTROLS = frozenset("\x0b\x0c")
_MAX_ROUNDS = 4
_DIFF_MAX_CHARACTERS = 2_000
_LINES = re.compile(r"[^\n]*\n|[^\n]+")

MOJIBAKE = "mojibake"
CONTROL_CHARACTERS = "control_characters"
UNICODE_NORMALIZATION = "unicode_normalization"


@dataclass(frozen=True)
class TextWarning:
    """One kind of repair: how many places were repaired and where the first one was."""

    kind: str
    count: int
    first_offset: int

    def shifted(self, offset: int) -> TextWarning:
        """The same warning for a text that starts `offset` characters into a larger input."""
        return TextWarning(self.kind, self.count, self.first_offset + offset)

    def as_dict(self) -> dict[str, str | int]:
        """The JSON form (`result.document.warnings[]`)."""
        return {"kind": self.kind, "count": self.count, "first_offset": self.first_offset}


@dataclass(frozen=True)
class CleanText:
    """The repaired text and what was repaired."""

    text: str
    warnings: list[TextWarning]


def merge_warnings(warnings: Iterable[TextWarning]) -> list[TextWarning]:
    """One warning per kind: counts added up, the earliest first offset kept."""
    merged: dict[str, TextWarning] = {}
    for warning in warnings:
        seen = merged.get(warning.kind)
        if seen is None:
            merged[warning.kind] = warning
        else:
            first = min(seen.first_offset, warning.first_offset)
            merged[warning.kind] = TextWarning(warning.kind, seen.count + warning.count, first)
    return list(merged.values())


def clean_text(text: str) -> CleanText:
    """`text` repaired (mojibake, stray controls, NFC), with a warning per kind of repair."""
    warnings: list[TextWarning] = []
    line_start = 0
    lines: list[str] = []
    # Lines end at LF only: str.splitlines also splits at controls this replaces (FS, GS, RS,
    # NEL), which would make a second cleaning see different lines from the first.
    for line in _LINES.findall(text):
        cleaned, line_warnings = _clean_line(line)
        lines.append(cleaned)
        warnings.extend(w.shifted(line_start) for w in line_warnings)
        line_start += len(line)
    return CleanText("".join(lines), merge_warnings(warnings))


def _clean_line(line: str) -> tuple[str, list[TextWarning]]:
    """One line's repairs, repeated until they change nothing (so that cleaning is idempotent:
    ftfy may read a replaced control's U+FFFD as part of a lossy sequence); offsets in the
    line as given (after a second round, in the line as the first left it)."""
    if line.isascii() and not _STRAY_CONTROL.search(line):
        return line, []  # the common case, and nothing any repair would touch
    cleaned, warnings = _repair(line)
    for _ in range(_MAX_ROUNDS):
        again, more = _repair(cleaned)
        if again == cleaned:
            break
        cleaned, warnings = again, merge_warnings([*warnings, *more])
    return cleaned, warnings


def _repair(line: str) -> tuple[str, list[TextWarning]]:
    """One round of the three repairs on a line."""
    warnings: list[TextWarning] = []
    repaired = ftfy.fix_text(line, _FTFY_CONFIG)
    to_input: Callable[[int], int] = _identity
    if repaired != line:
        count, first, to_input = _changes(line, repaired)
        warnings.append(TextWarning(MOJIBAKE, count, first))
    controls = list(_STRAY_CONTROL.finditer(repaired))
    if controls:
        warnings.append(
            TextWarning(CONTROL_CHARACTERS, len(controls), to_input(controls[0].start()))
        )
        repaired = _STRAY_CONTROL.sub(_replace_control, repaired)
    if not unicodedata.is_normalized("NFC", repaired):
        normalized = unicodedata.normalize("NFC", repaired)
        changed, first, _ = _changes(repaired, normalized)
        warnings.append(TextWarning(UNICODE_NORMALIZATION, changed, to_input(first)))
        repaired = normalized
    return repaired, warnings


def _replace_control(match: re.Match[str]) -> str:
    return "\n" if match.group() in _LINE_BREAK_CONTROLS else "\ufffd"


def _changes(before: str, after: str) -> tuple[int, int, Callable[[int], int]]:
    """How many runs changed, where the first starts in `before`, and a map of offsets in
    `after` back to `before`. Runs are counted with difflib on lines up to
    `_DIFF_MAX_CHARACTERS` (its cost grows faster than the line); a longer line counts once."""
    first = _common_prefix_length(before, after)
    if len(before) > _DIFF_MAX_CHARACTERS:
        return 1, first, lambda offset: min(offset, first)
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    changed = sum(1 for op in matcher.get_opcodes() if op[0] != "equal")
    return changed, first, _offset_mapper(matcher)


def _identity(offset: int) -> int:
    return offset


def _offset_mapper(matcher: difflib.SequenceMatcher[str]) -> Callable[[int], int]:
    """Map an offset in the repaired line back to the line as given (start of a changed run)."""
    opcodes = matcher.get_opcodes()

    def to_input(offset: int) -> int:
        for tag, i1, _i2, j1, j2 in opcodes:
            if j1 <= offset < j2 or (tag == "equal" and j1 <= offset <= j2):
                return i1 + (offset - j1 if tag == "equal" else 0)
        return opcodes[-1][2] if opcodes else offset

    return to_input


def _common_prefix_length(a: str, b: str) -> int:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))
