"""One trace per job: the W3C carriers (validated wherever they come from), tracing off
without an OTLP endpoint (nothing of OpenTelemetry imported by the runner), spans reaching
a local OTLP/HTTP receiver (tests/support/otlp.py), and, on the real control plane, one job
submitted through the API whose trace holds spans of the API, the operator and the runner
with the LLM calls inside the runner's steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from guideline_api import tracing as api_tracing
from guideline_core import resource as gj
from guideline_core import tracing
from guideline_core.settings import OperatorSettings
from guideline_operator import manifests
from guideline_operator import tracing as op_tracing
from support.api import api_client, auth, dead_kubeconfig, make_settings, post_job, submit
from support.cluster import LocalCluster, wait_for
from support.helm import CHART, Helm, component, env_of, of_kind, runner_pod_file
from support.otlp import STATUS_ERROR, OtlpReceiver, ReceivedSpan
from support.stack import Stack

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STATE = "vendor1=opaque,rojo=00f067aa0ba902b7"
OTEL_VARIABLES = [k for k in os.environ if k.startswith("OTEL_") or k in ("TRACEPARENT",)]


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process without any OTEL_* variable."""
    for key in OTEL_VARIABLES:
        monkeypatch.delenv(key, raising=False)


# --- carriers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "traceparent",
    [
        None,
        "",
        "junk",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero parent id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # upper case
        PARENT + "\nX-Injected: yes",
        PARENT + "-extra",
        123,
    ],
)
def test_an_invalid_traceparent_is_no_context(traceparent: Any) -> None:
    carrier = {"traceparent": traceparent, "tracestate": STATE}
    assert tracing.clean(carrier) == {}
    annotations = {tracing.ANNOTATION_TRACEPARENT: traceparent}
    assert tracing.from_annotations(annotations) == {}
    assert tracing.to_env(carrier) == {} and tracing.to_annotations(carrier) == {}


@pytest.mark.parametrize(
    "tracestate", ["", "no-equals", "a=b,\nc=d", "k=" + "v" * 600, ",".join(["a=b"] * 33), 7]
)
def test_an_invalid_tracestate_is_dropped_and_the_traceparent_kept(tracestate: Any) -> None:
    assert tracing.clean({"traceparent": PARENT, "tracestate": tracestate}) == {
        "traceparent": PARENT
    }


def test_a_carrier_travels_through_annotations_and_env() -> None:
    carrier = {"traceparent": PARENT, "tracestate": STATE}
    annotations = tracing.to_annotations(carrier)
    assert annotations == {
        "ingest.guidelines.dev/traceparent": PARENT,
        "ingest.guidelines.dev/tracestate": STATE,
    }
    assert tracing.from_annotations({**annotations, "other": "x"}) == carrier
    env = tracing.to_env(tracing.from_annotations(annotations))
    assert env == {"TRACEPARENT": PARENT, "TRACESTATE": STATE}
    assert tracing.from_env(env) == carrier
    assert tracing.from_env({}) == {} and tracing.from_annotations(None) == {}


def test_tracing_is_on_only_with_an_endpoint() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert not tracing.enabled({})
    assert tracing.enabled(endpoint)
    assert tracing.enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing.enabled({**endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not tracing.enabled({**endpoint, "OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "})
    assert tracing.setup("x", {}) is tracing.NOOP


def test_the_runner_imports_no_opentelemetry_with_tracing_off() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = (
        "import sys, guideline_runner.main, guideline_runner.providers.openai_llm as o\n"
        "from guideline_runner import tracing\n"
        "t = tracing.setup(); tracing.instrument_openai()\n"
        "with tracing.run('e', 'j', 'n') as s, tracing.step('summarize', {}) as st:\n"
        "    s.set('a', 1); st.fail('x')\n"
        "tracing.shutdown()\n"
        "print(t.enabled, sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "[]"], out.stderr


# --- spans at a receiver --------------------------------------------------------------------


def _exporting_to(receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> OtlpReceiver:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    return receiver


@pytest.fixture
def otlp(no_otel_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield _exporting_to(receiver, monkeypatch)


@pytest.fixture
def pod_otlp(
    no_otel_env: None, monkeypatch: pytest.MonkeyPatch, cluster: LocalCluster
) -> Iterator[OtlpReceiver]:
    """A receiver the runner pods reach too (on the node's address)."""
    with OtlpReceiver(host=cluster.pod_host) as receiver:
        yield _exporting_to(receiver, monkeypatch)


def test_spans_reach_the_receiver_with_their_parents(
    otlp: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracer = tracing.setup("guideline-test")
    assert tracer.enabled
    with tracer.span("outer", attributes={"k": "v", "none": None}) as outer:
        assert tracer.active()
        carrier = outer.carrier()
        assert tracer.current_carrier() == carrier
        with tracer.span("inner") as inner:
            inner.fail("it failed")
    with tracer.span("continued", parent=carrier):
        pass
    with tracer.span("forged", parent={"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"}):
        pass
    with pytest.raises(RuntimeError), tracer.span("raising"):
        raise RuntimeError("boom")
    started = tracer.start("manual", parent={})
    started.end()
    tracer.shutdown()
    assert not tracer.active()

    spans = {s.name: s for s in otlp.wait_for(lambda spans: len(spans) == 6)}
    trace_id = carrier["traceparent"].split("-")[1]
    assert spans["outer"].trace_id == trace_id and spans["outer"].parent_span_id == ""
    assert spans["outer"].attributes == {"k": "v"}
    assert spans["inner"].parent_span_id == spans["outer"].span_id
    assert spans["inner"].status_code == STATUS_ERROR
    assert spans["continued"].trace_id == trace_id
    assert spans["continued"].parent_span_id == spans["outer"].span_id
    assert spans["forged"].trace_id != trace_id and spans["forged"].parent_span_id == ""
    assert spans["raising"].status_code == STATUS_ERROR
    assert {s.service for s in spans.values()} == {"guideline-test"}
    assert spans["outer"].resource["service.version"]

    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")
    renamed = tracing.setup("guideline-test")
    with renamed.span("named"):
        pass
    renamed.shutdown()
    assert [s.service for s in otlp.wait_for(lambda s: len(s) == 7) if s.name == "named"] == [
        "renamed"
    ]


def test_the_runner_pod_continues_the_job_creation_span(otlp: OtlpReceiver) -> None:
    settings = OperatorSettings(_env_file=None)
    request = manifests.JobRequest(cr_name="gj-x", cr_uid="uid-1", namespace="ns", event_id="e")
    assert not {e["name"] for e in manifests._env(request, settings)} & {
        "TRACEPARENT",
        "TRACESTATE",
    }
    cr = {
        "metadata": {
            "name": "gj-x",
            "namespace": "ns",
            "uid": "uid-1",
            "annotations": tracing.to_annotations({"traceparent": PARENT}),
        }
    }
    # Tracing off: the GuidelineJob's own context, as it is.
    assert op_tracing.runner_context(tracing.NOOP, cr) == {"traceparent": PARENT}
    tracer = op_tracing.setup()
    with op_tracing.job_span(tracer, op_tracing.JOB_CREATE_SPAN, cr) as span:
        context = op_tracing.runner_context(tracer, cr)
        assert context == span.carrier() and context["traceparent"].split("-")[1] == PARENT[3:35]
    traced = manifests.JobRequest(
        cr_name="gj-x",
        cr_uid="uid-1",
        namespace="ns",
        event_id="e",
        trace_context=tuple(context.items()),
    )
    env = manifests.build_job(traced, settings)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "TRACEPARENT", "value": context["traceparent"]} in env
    tracer.shutdown()
    [received] = otlp.wait_for(lambda spans: len(spans) == 1)
    assert received.service == "guideline-operator" and received.parent_span_id == PARENT[36:52]


def test_each_submission_starts_a_trace_linked_to_the_callers(
    otlp: OtlpReceiver, database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    settings = make_settings(database.url, dead_kubeconfig(tmp_path), dispatcher_enabled=False)
    caller = {"traceparent": PARENT, "tracestate": STATE}
    with api_client(settings) as api:
        one = post_job(api, "Wash hands.", headers=caller)
        batch = api.post(
            "/jobs/batch",
            json={"items": [{"guideline_text": "Wear gloves."}, {"guideline_text": "x" * 10}]},
            headers={**auth(), "traceparent": "00-forged"},
        )
    assert one.status_code == batch.status_code == 202, (one.text, batch.text)
    spans = otlp.wait_for(lambda spans: len(spans) == 3)
    assert {s.name for s in spans} == {"guideline.submit"}
    by_job = {s.attributes["guideline.event_id"]: s for s in spans}
    first = by_job[one.json()["event_id"]]
    # Its own trace, linked to the caller's span.
    assert first.trace_id != PARENT[3:35] and first.parent_span_id == ""
    assert first.links == ((PARENT[3:35], PARENT[36:52]),)
    items = [by_job[i["event_id"]] for i in batch.json()["items"]]
    assert len({s.trace_id for s in items}) == 2 and all(s.links == () for s in items)
    assert [s.attributes["guideline.submission.index"] for s in items] == [0, 1]
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT event_id::text, trace_context FROM jobs")
        stored = dict(cur.fetchall())
    for event_id, span in by_job.items():
        assert stored[event_id]["traceparent"].split("-")[1:3] == [span.trace_id, span.span_id]


def test_the_dispatcher_passes_the_rows_context_on_with_tracing_off() -> None:
    row = {"event_id": uuid.uuid4(), "trace_context": {"traceparent": PARENT, "x": "y"}}
    with api_tracing.dispatch(tracing.NOOP, row) as annotations:
        assert annotations == {tracing.ANNOTATION_TRACEPARENT: PARENT}
    for stored in (None, {}, {"traceparent": "forged"}):
        with api_tracing.dispatch(tracing.NOOP, {**row, "trace_context": stored}) as annotations:
            assert annotations == {}


# --- the chart ----------------------------------------------------------------------------


@pytest.mark.cluster
def test_the_chart_passes_the_endpoint_to_the_api_the_operator_and_the_runner_pods(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    helm = Helm(cluster, tmp_path / "helm-home")

    def runner_env(objects: list[dict[str, Any]]) -> dict[str, str]:
        path = runner_pod_file(objects, tmp_path)
        settings = OperatorSettings(_env_file=None, runner_pod_template_file=str(path))
        request = manifests.JobRequest(cr_name="gj-x", cr_uid="u", namespace="ns", event_id="e")
        job = manifests.build_job(request, settings)
        return env_of({"spec": job["spec"]})

    def workloads(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
        return [
            env_of(component(objects, "Deployment", "api")),
            env_of(component(objects, "StatefulSet", "operator")),
            runner_env(objects),
        ]

    off = helm.template("--set=networkPolicy.enabled=true")
    for env in workloads(off):
        assert not [k for k in env if k.startswith("OTEL_")], env
    on = helm.template(
        "--set=networkPolicy.enabled=true",
        "--set=tracing.otlpEndpoint=http://otel-collector.observability:4318",
        "--set=tracing.env.OTEL_TRACES_SAMPLER=parentbased_traceidratio",
        "--set-string=tracing.env.OTEL_TRACES_SAMPLER_ARG=0.1",
        "--set=tracing.collector.cidrs={10.20.0.0/16}",
    )
    for env in workloads(on):
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.1"
        assert tracing.enabled(env)
    [runner_policy] = [
        p for p in of_kind(on, "NetworkPolicy") if p["metadata"]["name"].endswith("-runner")
    ]
    assert {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        "ports": [{"protocol": "TCP", "port": 4318}],
    } in runner_policy["spec"]["egress"]
    [closed] = [
        p for p in of_kind(off, "NetworkPolicy") if p["metadata"]["name"].endswith("-runner")
    ]
    assert len(closed["spec"]["egress"]) == len(runner_policy["spec"]["egress"]) - 1
    refused = helm.run(
        "template", "t", str(CHART), f"--kube-version={cluster.version.lstrip('v')}",
        "--set=tracing.env.GUIDELINE_DATABASE_URL=x", check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "OTEL_" in refused.stderr


# --- the whole path on the control plane -------------------------------------------------


def _completed(api: Any, event_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = api.get(f"/jobs/{event_id}", headers=auth()).json()
        assert job["status"] in ("PENDING", "PROCESSING", "COMPLETED"), job
        return job if job["status"] == "COMPLETED" else None

    return wait_for(done, timeout=180, interval=0.3, message=f"{event_id} COMPLETED")


def _pod_env(stack: Stack, cr_name: str) -> dict[str, str]:
    [pod] = stack.pods_of(cr_name)
    container = pod["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


def _stored_context(stack: Stack, event_id: str) -> Any:
    """The row's `trace_context` column."""
    assert stack.database is not None
    with stack.database.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT trace_context FROM jobs WHERE event_id = %s", (uuid.UUID(event_id),))
        return cur.fetchone()[0]


def _runner_pod_template(tmp_path: Path, env: dict[str, str]) -> str:
    """The file the chart's ConfigMap `<release>-runner-pod` mounts into the operator."""
    path = tmp_path / "runner-pod.json"
    path.write_text(json.dumps({"env": [{"name": k, "value": v} for k, v in env.items()]}))
    return str(path)


@pytest.mark.cluster
@pytest.mark.node
def test_one_trace_holds_the_api_operator_and_runner_spans_of_a_job(
    pod_otlp: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
    cluster: LocalCluster,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    fast = {"OTEL_BSP_SCHEDULE_DELAY": "100"}  # export every 0.1 s instead of 5 s
    for key, value in fast.items():
        monkeypatch.setenv(key, value)
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": pod_otlp.endpoint, **fast}
    with Stack(
        cluster,
        postgres_url,
        tmp_path / "stack",
        env=otel,
        # The runner pods get it as the chart gives it: in the pod template the operator reads.
        operator={"runner_pod_template_file": _runner_pod_template(tmp_path, otel)},
    ) as stack:
        with stack.api_server() as url, httpx.Client(base_url=url, timeout=30) as api:
            event_id = submit(api)
            job = _completed(api, event_id)
        cr = stack.get(gj.cr_name_for(event_id))
        carrier = tracing.from_annotations(cr["metadata"]["annotations"])
        trace_id = carrier["traceparent"].split("-")[1]
        assert _pod_env(stack, cr["metadata"]["name"])["TRACEPARENT"].split("-")[1] == trace_id
        stored = _stored_context(stack, event_id)

        expected = {
            ("guideline-api", "guideline.submit"),
            ("guideline-api", "guideline.dispatch"),
            ("guideline-operator", "guideline.accept"),
            ("guideline-operator", "guideline.admit"),
            ("guideline-operator", "guideline.job.create"),
            ("guideline-operator", "guideline.outcome"),
            ("guideline-runner", "guideline.run"),
            ("guideline-runner", "guideline.summarize"),
            ("guideline-runner", "guideline.checklist"),
        }
        spans = pod_otlp.wait_for(
            lambda spans: expected <= {(s.service, s.name) for s in spans if s.trace_id == trace_id}
        )
    trace = [s for s in spans if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in trace}
    by_name = {s.name: s for s in trace}

    def parent(span: ReceivedSpan) -> ReceivedSpan:
        return by_id[span.parent_span_id]

    # One tree: the submission is the root, every other span's parent is in the trace.
    assert [s.name for s in trace if not s.parent_span_id] == ["guideline.submit"]
    assert all(s.parent_span_id in by_id for s in trace if s.parent_span_id)
    assert by_name["guideline.submit"].attributes["guideline.event_id"] == event_id
    assert parent(by_name["guideline.dispatch"]).name == "guideline.submit"
    assert parent(by_name["guideline.accept"]).name == "guideline.dispatch"
    assert parent(by_name["guideline.job.create"]).name == "guideline.admit"
    assert parent(by_name["guideline.run"]).name == "guideline.job.create"
    assert by_name["guideline.outcome"].attributes["guideline.phase"] == "COMPLETED"
    assert stored["traceparent"].split("-")[1] == trace_id
    # The LLM calls: the OpenAI instrumentation's client spans, inside the runner's steps.
    llm = [s for s in trace if s.service == "guideline-runner" and s.kind == "client"]
    assert len(llm) == job["result"]["usage"]["summarize"]["calls"] + 1
    assert {parent(s).name for s in llm} == {"guideline.summarize", "guideline.checklist"}
    assert all(s.attributes.get("gen_ai.request.model") == "fake-model" for s in llm)
    assert {s.service for s in trace} == {
        "guideline-api",
        "guideline-operator",
        "guideline-runner",
    }


@pytest.mark.cluster
@pytest.mark.node
def test_without_an_endpoint_nothing_is_exported_and_no_annotation_breaks_a_job(
    no_otel_env: None, cluster: LocalCluster, postgres_url: str, tmp_path: Path
) -> None:
    # Listening where an exporter sends by default: tracing on by mistake in the API or the
    # operator would show here (a runner pod's default is its own loopback: its env is
    # checked below instead).
    with OtlpReceiver(port=4318) as otlp, Stack(cluster, postgres_url, tmp_path / "stack") as stack:
        with stack.api_server() as url, httpx.Client(base_url=url, timeout=30) as api:
            event_id = submit(api)
            _completed(api, event_id)
        cr = stack.get(gj.cr_name_for(event_id))
        assert not set(cr["metadata"].get("annotations") or {}) & {
            tracing.ANNOTATION_TRACEPARENT,
            tracing.ANNOTATION_TRACESTATE,
        }
        assert "TRACEPARENT" not in _pod_env(stack, cr["metadata"]["name"])
        assert _stored_context(stack, event_id) is None

        # GuidelineJobs whose annotations carry a forged context, or a valid one (anyone who
        # may create a GuidelineJob writes them): both run; only the valid one reaches the pod.
        forged = stack.submit(
            annotations={
                tracing.ANNOTATION_TRACEPARENT: "00-zz\nX: y",
                tracing.ANNOTATION_TRACESTATE: "=",
            }
        )
        valid = stack.submit(annotations=tracing.to_annotations({"traceparent": PARENT}))
        for body in (forged, valid):
            stack.wait_for_phase(body["metadata"]["name"], "COMPLETED")
        assert not {"TRACEPARENT", "TRACESTATE"} & set(_pod_env(stack, forged["metadata"]["name"]))
        assert _pod_env(stack, valid["metadata"]["name"])["TRACEPARENT"] == PARENT
    assert otlp.requests == 0 and otlp.spans() == []
