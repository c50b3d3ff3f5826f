"""What `guideline-client` prints: a job and a page of jobs as readable text, or JSON / YAML."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import yaml

FORMATS = ("table", "json", "yaml")


def _item_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in ("item", "text", "action", "title", "description", "task"):
            if isinstance(item.get(key), str):
                main = item[key]
                extras = [
                    f"{k}: {v}"
                    for k, v in item.items()
                    if k != key and isinstance(v, str | int | float) and v not in ("", None)
                ]
                return f"{main}" + (f"  ({'; '.join(extras)})" if extras else "")
    return json.dumps(item, ensure_ascii=False)


def format_job(job: dict[str, Any]) -> str:
    """A job as readable text: status line, then summary and checklist, or the error."""
    lines = [f"Job {job['event_id']}: {job['status']}"]
    if job.get("title"):
        lines.append(f"Title:     {job['title']}")
    lines.append(f"Attempts:  {job.get('attempts', 0)}")
    lines.append(f"Submitted: {job.get('created_at')}")
    if job.get("completed_at"):
        lines.append(f"Finished:  {job['completed_at']}")
    queue = job.get("queue")
    if queue:
        lines.append(f"Queue:     position {queue['position']} ({queue['message']})")
    error = job.get("error")
    if error:
        lines.append(f"Error:     {error.get('reason')}: {error.get('message') or ''}".rstrip())
    result = job.get("result")
    if result:
        meta = [f"{k} {result[k]}" for k in ("provider", "model") if result.get(k)]
        if result.get("degraded"):
            meta.append("DEGRADED (fallback provider)")
        if meta:
            lines.append(f"Produced:  {', '.join(meta)}")
        lines += ["", "Summary", "-------"]
        for para in str(result.get("summary", "")).split("\n"):
            lines.extend(textwrap.wrap(para, 88) or [""])
        lines += _format_checklist(result)
    return "\n".join(lines)


def _quoted(text: str, indent: str, first: str | None = None) -> list[str]:
    """A passage on indented lines (the first after `first`), in quotation marks, its line
    breaks folded."""
    wrapped = textwrap.wrap(f"“{' '.join(text.split())}”", 88 - len(indent)) or [""]
    return [
        (first if first is not None and n == 0 else indent) + line for n, line in enumerate(wrapped)
    ]


def _where(source: dict[str, Any]) -> str:
    """Where a source is: its characters in the text and, for a document, its page(s),
    printed page label and section."""
    parts = [f"characters {source['start']}-{source['end']}"]
    if source.get("page"):
        pages = (
            f"{source['page']}-{source['page_end']}" if source.get("page_end") else source["page"]
        )
        label = f" (printed {source['page_label']})" if source.get("page_label") else ""
        parts.insert(0, f"page {pages}{label}")
    if source.get("section"):
        parts.insert(0, " > ".join(str(s) for s in source["section"]))
    return ", ".join(parts)


def _format_checklist(result: dict[str, Any]) -> list[str]:
    """The checklist with each item's source, the quality line, the uncovered
    obligations, and the changes against a superseded job."""
    checklist = result.get("checklist") or []
    lines = ["", f"Checklist ({len(checklist)} items)", "---------"]
    for n, item in enumerate(checklist, 1):
        wrapped = textwrap.wrap(_item_text(_own_fields(item)), 84) or [""]
        lines.append(f"{n:>2}. [ ] {wrapped[0]}")
        lines.extend(f"        {rest}" for rest in wrapped[1:])
        source = item.get("source") if isinstance(item, dict) else None
        if source:
            lines.extend(_quoted(source["quote"], "        "))
            lines.append(f"        ({_where(source)})")
        elif isinstance(item, dict) and "grounded" in item:
            lines.append("        NOT GROUNDED: its quote is not in the guideline")
    quality = result.get("quality")
    if quality:
        lines += [
            "",
            f"Quality:   {quality['grounded_items']} of {quality['items']} items grounded, "
            f"{quality['covered_obligations']} of {quality['obligations']} obligations "
            f"covered ({quality['coverage']:.0%})"
            + (
                f", {len(quality['duplicates'])} duplicate group(s)"
                if quality["duplicates"]
                else ""
            ),
        ]
        if result.get("needs_review"):
            reasons = (result.get("review") or {}).get("reasons") or []
            lines.append(f"NEEDS REVIEW: {'; '.join(reasons)}")
        uncovered = quality.get("uncovered") or []
        if uncovered:
            lines += ["", f"Obligations no item covers ({len(uncovered)})", "-------------"]
            for passage in uncovered:
                lines.extend(_quoted(passage["text"], "    ", first="  - "))
                lines[-1] += f" ({passage['start']}-{passage['end']})"
    changes = result.get("changes")
    if changes:
        lines += ["", f"Changes against {changes['supersedes']}", "-------"]
        if not changes.get("available"):
            lines.append(f"  not available: {changes.get('reason')}")
        else:
            lines.append(
                f"  {len(changes['added'])} added, {len(changes['removed'])} removed, "
                f"{len(changes['changed'])} changed, {changes['unchanged']} unchanged"
            )
            lines += [f"  + {i.get('item')}" for i in changes["added"]]
            lines += [f"  - {i.get('item')}" for i in changes["removed"]]
            lines += [f"  ~ {c['after'].get('item')}" for c in changes["changed"]]
            lines += [f"  ! newly uncovered: {p['text']}" for p in changes["newly_uncovered"]]
    return lines


def _own_fields(item: Any) -> Any:
    """An item without its source fields (they get lines of their own)."""
    if isinstance(item, dict):
        return {k: v for k, v in item.items() if k not in ("source", "grounded")}
    return item


def format_list(page: dict[str, Any]) -> str:
    """A page of jobs as a table."""
    rows = [f"{'EVENT_ID':36}  {'STATUS':10}  {'ATTEMPTS':>8}  {'CREATED':25}  TITLE / ERROR"]
    for job in page["items"]:
        note = job.get("title") or ""
        if job.get("needs_review"):
            note = f"NEEDS REVIEW  {note}"
        if job.get("error"):
            note = f"{job['error'].get('reason')}: {job['error'].get('message') or ''}"
        rows.append(
            f"{job['event_id']:36}  {job['status']:10}  {job['attempts']:>8}  "
            f"{str(job['created_at'])[:25]:25}  {note[:60]}"
        )
    if page.get("next_cursor"):
        rows.append(f"(more: --cursor {page['next_cursor']})")
    return "\n".join(rows)


def render(data: Any, output: str) -> str:
    """`data` (an API object) as JSON or YAML."""
    if output == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
    return json.dumps(data, indent=2, ensure_ascii=False)
