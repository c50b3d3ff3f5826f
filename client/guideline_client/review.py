"""The review page of a job: the guideline with each checklist item's source highlighted
and the obligations no item covers marked, the checklist beside it (click an item to jump
to its passage). One self-contained HTML file (no script, no network), written by
`guideline-client show ID --html`. Pure functions of the job as the API returns it."""

from __future__ import annotations

import heapq
import html
from collections import defaultdict
from itertools import pairwise
from typing import Any, Final

SOURCE_COLOUR: Final = (255, 214, 0)  # a passage an item cites
UNCOVERED_COLOUR: Final = (255, 138, 128)  # an obligation no item covers
_CSS: Final = """
body { font: 15px/1.5 sans-serif; margin: 0; color: #1b1b1b; background: #fff; }
header { padding: 12px 20px; border-bottom: 1px solid #ccc; }
header h1 { font-size: 20px; margin: 0 0 4px; }
.review { color: #a00; font-weight: bold; }
main { display: flex; gap: 24px; padding: 16px 20px; }
#guideline { flex: 3; white-space: pre-wrap; font-family: serif; }
#checklist { flex: 2; }
#checklist ol { padding-left: 22px; }
#checklist li { margin-bottom: 10px; }
#checklist .quote { color: #555; font-style: italic; display: block; }
#checklist .ungrounded { color: #a00; }
mark.source { background: rgb(SOURCE_RGB); color: inherit; }
mark.uncovered { background: rgb(UNCOVERED_RGB); color: inherit; }
mark:target { outline: 3px solid #1565c0; }
.bidi { color: #a00; font: 11px monospace; border: 1px solid #a00; }
""".replace("SOURCE_RGB", ", ".join(map(str, SOURCE_COLOUR))).replace(
    "UNCOVERED_RGB", ", ".join(map(str, UNCOVERED_COLOUR))
)


# Bidirectional controls reorder what a reader sees (U+202E shows "gol" for "log"): the
# page shows each as a visible marker instead.
BIDI_CONTROLS: Final = frozenset(
    [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)
_BIDI_MARKERS: Final = {c: f'<span class="bidi">⟨U+{c:04X}⟩</span>' for c in BIDI_CONTROLS}


def visible(text: str) -> str:
    """`text` as HTML: escaped, each bidirectional control shown as a `⟨U+XXXX⟩` marker."""
    return html.escape(text).translate(_BIDI_MARKERS)


def _offsets(span: Any, length: int) -> tuple[int, int] | None:
    """(start, end) of a span that fits a text of `length`; None for anything else."""
    if not isinstance(span, dict):
        return None
    start, end = span.get("start"), span.get("end")
    if type(start) is not int or type(end) is not int:  # bool is an int: not an offset
        return None
    return (start, end) if 0 <= start < end <= length else None


def _items(result: dict[str, Any]) -> list[Any]:
    checklist = result.get("checklist")
    return checklist if isinstance(checklist, list) else []


def _uncovered(result: dict[str, Any]) -> list[Any]:
    quality = result.get("quality")
    passages = quality.get("uncovered") if isinstance(quality, dict) else None
    return passages if isinstance(passages, list) else []


def _source(item: Any) -> Any:
    return item.get("source") if isinstance(item, dict) else None


def _places(item: Any) -> list[Any]:
    """Every place a grounded item quotes: its `source`, then the rest of its `sources`
    (whose first is `source`); none when it has no `source`."""
    source = _source(item)
    if not source:
        return []
    listed = item.get("sources")
    return [source, *(listed[1:] if isinstance(listed, list) else [])]


def highlighted(text: str, result: dict[str, Any]) -> str:
    """`text` as HTML with sources (every place an item quotes) in `<mark class="source">`
    and uncovered obligations in `<mark class="uncovered">`; item N's first source starts
    at the element with id `src-N`. A mark's `data-items` names the lowest-numbered item it
    belongs to and how many more spans cover it. Spans whose offsets do not fit the text
    are left out. The cuts are sorted once, then one pass with two heaps: O(n log n) in the
    spans, however they overlap."""
    spans: list[tuple[int, int, int]] = []  # (start, end, item number)
    first: set[int] = set()  # indices in `spans` of each item's first source
    for number, item in enumerate(_items(result), start=1):
        for place, source in enumerate(_places(item)):
            offsets = _offsets(source, len(text))
            if offsets is not None:
                if place == 0:
                    first.add(len(spans))
                spans.append((*offsets, number))
    starting: dict[int, list[int]] = defaultdict(list)  # start -> indices in `spans`
    for index, (start, _, _) in enumerate(spans):
        starting[start].append(index)
    uncovered_delta: dict[int, int] = defaultdict(int)
    for passage in _uncovered(result):
        offsets = _offsets(passage, len(text))
        if offsets is not None:
            uncovered_delta[offsets[0]] += 1
            uncovered_delta[offsets[1]] -= 1
    bounds = {b for span in spans for b in span[:2]}
    cuts = sorted({0, len(text), *bounds, *uncovered_delta})
    # The spans covering the piece: a heap by end drops the ended ones; a heap of item
    # numbers (those with no span left removed when they come to the top) gives the
    # lowest of them.
    covering: list[tuple[int, int]] = []  # (end, item number)
    lowest: list[int] = []
    active: dict[int, int] = defaultdict(int)  # item number -> its spans covering the piece
    uncovered = 0
    out: list[str] = []
    for start, end in pairwise(cuts):
        while covering and covering[0][0] <= start:
            active[heapq.heappop(covering)[1]] -= 1
        starts = starting.get(start, [])
        for index in starts:
            _, span_end, number = spans[index]
            heapq.heappush(covering, (span_end, number))
            heapq.heappush(lowest, number)
            active[number] += 1
        while lowest and active[lowest[0]] <= 0:
            heapq.heappop(lowest)
        uncovered += uncovered_delta.get(start, 0)
        piece = visible(text[start:end])
        if covering:
            # The first starting item's id on the mark, the others' on empty spans before it.
            anchors = [spans[i][2] for i in starts if i in first]
            out.extend(f'<span id="src-{n}"></span>' for n in anchors[1:])
            mark_id = f' id="src-{anchors[0]}"' if anchors else ""
            more = len(covering) - 1
            items = str(lowest[0]) + (f" +{more}" if more else "")
            out.append(f'<mark class="source"{mark_id} data-items="{items}">{piece}</mark>')
        elif uncovered:
            out.append(f'<mark class="uncovered">{piece}</mark>')
        else:
            out.append(piece)
    return "".join(out)


def _checklist(result: dict[str, Any], length: int) -> str:
    rows = []
    for number, item in enumerate(_items(result), start=1):
        fields = item if isinstance(item, dict) else {}
        text = visible(str(fields.get("item", "")))
        meta = visible(f"{fields.get('priority', '')} · {fields.get('category', '')}")
        source = _source(item)
        if not source:
            rows.append(
                f'<li>{text} <small>({meta})</small><span class="quote ungrounded">'
                "not grounded: its quote is not in the guideline</span></li>"
            )
            continue
        quote = source.get("quote", "") if isinstance(source, dict) else ""
        quoted = f'<span class="quote">“{visible(str(quote))}”</span>'
        if _offsets(source, length) is None:
            rows.append(
                f"<li>{text} <small>({meta})</small>{quoted}"
                '<span class="quote ungrounded">not highlighted: the offsets of its source '
                "do not fit the guideline</span></li>"
            )
        else:
            rows.append(
                f'<li><a href="#src-{number}">{text}</a> <small>({meta})</small>{quoted}</li>'
            )
    return "<ol>" + "".join(rows) + "</ol>"


def _figure(quality: dict[str, Any], name: str) -> float:
    value = quality.get(name, 0)
    return value if type(value) in (int, float) else 0


def review_page(job: dict[str, Any]) -> str:
    """The whole page of a COMPLETED job read with `?include=text`."""
    result = job["result"] if isinstance(job.get("result"), dict) else {}
    text = job.get("guideline_text")
    text = text if isinstance(text, str) else ""
    quality = result["quality"] if isinstance(result.get("quality"), dict) else {}
    title = visible(str(job.get("title") or f"Job {job.get('event_id')}"))
    facts = (
        f"{_figure(quality, 'grounded_items'):g} of {_figure(quality, 'items'):g} items "
        f"grounded · {_figure(quality, 'covered_obligations'):g} of "
        f"{_figure(quality, 'obligations'):g} obligations covered "
        f"({_figure(quality, 'coverage'):.0%})"
    )
    hidden = sum(_offsets(p, len(text)) is None for p in _uncovered(result))
    if hidden:
        facts += f" · {hidden} uncovered passage(s) not shown: offsets outside the text"
    review = result["review"] if isinstance(result.get("review"), dict) else {}
    reasons = review["reasons"] if isinstance(review.get("reasons"), list) else []
    needs_review = (
        f'<p class="review">Needs review: {visible("; ".join(map(str, reasons)))}</p>'
        if result.get("needs_review")
        else ""
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{title}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{title}</h1><p>{visible(facts)}</p>{needs_review}</header>"
        f'<main><section id="guideline">{highlighted(text, result)}</section>'
        f'<section id="checklist"><h2>Checklist</h2>{_checklist(result, len(text))}</section>'
        "</main></body></html>"
    )
