"""The kopf settings of the operator's wiring (`guideline_operator.handlers`)."""

from __future__ import annotations

from guideline_core import resource as gj
from guideline_core.settings import OperatorSettings
from support.operator_objects import cr


def test_kopf_settings_write_no_diff_base() -> None:
    import kopf
    from guideline_operator.handlers import kopf_settings

    ks = kopf_settings(OperatorSettings())
    body = cr(status={"phase": "PENDING"})
    body["spec"]["guidelineText"] = "x" * gj.MAX_GUIDELINE_CHARS
    storage = ks.persistence.diffbase_storage
    # Every object reads as handled already (no create/update cause), and nothing is stored.
    assert storage.fetch(body=kopf.Body(body)) == storage.build(body=kopf.Body(body))
    patch = kopf.Patch()
    storage.store(body=kopf.Body(body), patch=patch, essence=storage.build(body=kopf.Body(body)))
    assert not patch
    assert ks.persistence.finalizer == "ingest.guidelines.dev/operator"
    # kopf's progress lives under status.kopf, apart from the operator's status fields.
    assert ks.persistence.progress_storage._field == ("status", "kopf", "progress")
    # No cluster-wide scanning of Namespaces/CRDs that its namespaced Role does not allow.
    assert ks.scanning.disabled
