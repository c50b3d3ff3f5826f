"""Which row a GuidelineJob may affect (the trust rule) and the row of a kubectl one
(`guideline_operator.rows`): pure; their database side is in test_operator_store.py."""

from __future__ import annotations

from typing import Any

import pytest
from guideline_core import resource as gj
from support.operator_objects import EVENT_ID, cr


def test_the_row_of_a_kubectl_job_without_inline_text_has_no_text_yet() -> None:
    from guideline_operator import rows

    body = cr()
    body["spec"] = {"guidelineTextFrom": {"configMapKeyRef": {"name": "g", "key": "k"}}}
    body["metadata"]["annotations"] = {}
    row = rows.new_row(body, EVENT_ID, "default")
    assert row.guideline_text == ""  # the runner puts the extracted text through the API


def test_the_event_id_label_is_believed_only_for_the_cr_its_row_records() -> None:
    from guideline_operator import rows

    claimed = cr()  # labelled EVENT_ID, uid cr-uid-1, name gj-abcde in ns1
    row = {"cr_uid": "cr-uid-1", "cr_name": "gj-abcde", "namespace": "ns1"}

    def row_of(found: dict[str, Any] | None) -> Any:
        return lambda event_id: found if str(event_id) == EVENT_ID else None

    assert rows.identify(claimed, row_of(row)) == (EVENT_ID, True)
    # Someone else's CR claiming the job (another uid, another name): a job of its own.
    assert rows.identify(claimed, row_of({**row, "cr_uid": "victims-uid"})) == ("cr-uid-1", False)
    squat = {**row, "cr_uid": None, "cr_name": "gj-other"}
    assert rows.identify(claimed, row_of(squat)) == ("cr-uid-1", False)
    assert rows.identify(claimed, row_of(None)) == ("cr-uid-1", False)
    # The dispatcher's CR, not recorded yet (first create, or a re-create in the outbox).
    for pending in ({**row, "cr_uid": None}, {**row, "cr_uid": "old", "dispatch_pending": True}):
        with pytest.raises(rows.NotRecordedYetError):
            rows.identify(claimed, row_of(pending))
    # An API row before the dispatcher recorded anything has no name yet either: the CR
    # named as the dispatcher names it is its own, not recorded yet; another name is not.
    unrecorded = {"cr_uid": None, "cr_name": None, "namespace": "ns1", "dispatch_pending": True}
    dispatched = cr()
    dispatched["metadata"]["name"] = gj.cr_name_for(EVENT_ID)
    with pytest.raises(rows.NotRecordedYetError):
        rows.identify(dispatched, row_of(unrecorded))
    assert rows.identify(claimed, row_of(unrecorded)) == ("cr-uid-1", False)
    # In another namespace the same name is another object.
    other_ns = {**row, "cr_uid": None, "namespace": "ns2"}
    assert rows.identify(claimed, row_of(other_ns)) == ("cr-uid-1", False)
    bad = cr()
    bad["metadata"]["labels"] = {gj.LABEL_EVENT_ID: "not-a-uuid"}
    assert rows.identify(bad, row_of(row)) == ("cr-uid-1", False)
