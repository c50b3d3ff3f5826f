"""The operator's command line and log records (`guideline_operator.main`)."""

from __future__ import annotations

import pytest
from support.operator_objects import EVENT_ID


def test_command_line_overrides_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from guideline_operator.main import build_settings, parse_args

    monkeypatch.setenv("GUIDELINE_NAMESPACE", "from-env")
    monkeypatch.setenv("GUIDELINE_MAX_CONCURRENT_JOBS", "7")
    settings = build_settings(parse_args([]))
    assert (settings.namespace, settings.max_concurrent_jobs) == ("from-env", 7)
    assert not settings.standalone and settings.peering_name is None
    settings = build_settings(
        parse_args(["--peering", "gl", "--priority", "20", "-n", "wards", "--metrics-port", "0"])
    )
    assert (settings.peering_name, settings.peering_priority) == ("gl", 20)
    assert (settings.namespace, settings.metrics_port, settings.all_namespaces) == (
        "wards",
        0,
        False,
    )
    assert build_settings(parse_args(["--standalone", "-A"])).all_namespaces
    with pytest.raises(SystemExit):
        parse_args(["--standalone", "--peering", "gl"])


def test_kopf_log_records_get_the_event_id() -> None:
    import logging

    from guideline_operator.main import KopfRecordFilter

    record = logging.makeLogRecord(
        {
            "msg": "Handler failed",
            "k8s_ref": {"kind": "GuidelineJob", "namespace": "ns1", "name": "gj-abcde"},
            "k8s_skip": False,
            "settings": object(),
        }
    )
    assert KopfRecordFilter({("ns1", "gj-abcde"): EVENT_ID}).filter(record)
    assert record.event_id == EVENT_ID and record.object == "GuidelineJob/ns1/gj-abcde"
    assert not hasattr(record, "settings") and not hasattr(record, "k8s_ref")
