"""`guideline_core.k8s.credentials` (`new_api_client`, `load_credentials`): where each component's
Kubernetes credentials come from (a kubeconfig, else the in-cluster ServiceAccount in a
pod). The calls of `guideline_core.k8s` against kube-apiserver, and its errors, are in
tests/test_kube_errors.py; the runner's also in tests/test_runner_cluster.py (a kubeconfig's
client certificate) and in every runner pod (the ServiceAccount)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from guideline_core.k8s import UnavailableError, credentials, paths
from guideline_core.k8s import stdlib as k8s_stdlib
from kubernetes import client
from kubernetes.config.config_exception import ConfigException
from support.imports import imported_by


def write_kubeconfig(path: Path, server: str, token: str) -> Path:
    """A minimal kubeconfig with one cluster, one token user and one context."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_an_explicit_kubeconfig_wins_even_in_a_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    path = write_kubeconfig(tmp_path / "kubeconfig", "https://one.example:6443", "t0ken-one")
    api = credentials.new_api_client(str(path), pool_size=7, retries=2)
    try:
        cfg = api.configuration
        assert cfg.host == "https://one.example:6443"
        assert "t0ken-one" in cfg.api_key["BearerToken"]
        assert cfg.connection_pool_maxsize == 7 and cfg.retries == 2
    finally:
        api.close()
    # The process-wide default configuration is left alone.
    assert client.Configuration.get_default_copy().host != "https://one.example:6443"


def test_outside_a_pod_the_kubeconfig_variable_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = write_kubeconfig(tmp_path / "kubeconfig", "https://two.example:6443", "t0ken-two")
    monkeypatch.setenv("KUBECONFIG", str(path))
    api = credentials.new_api_client()
    try:
        assert api.configuration.host == "https://two.example:6443"
    finally:
        api.close()
    # The runner's small client reads the same kubeconfig the same way.
    creds = credentials.load_credentials()
    assert creds.server == "https://two.example:6443"
    assert creds.authorization() == "Bearer t0ken-two"


def test_in_a_pod_without_a_kubeconfig_the_service_account_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_kubeconfig(tmp_path / "kubeconfig", "https://three.example:6443", "t0ken")
    monkeypatch.setenv("KUBECONFIG", str(path))  # ignored in a pod unless passed explicitly
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    # This machine is not a pod: the ServiceAccount token the in-cluster loader reads is absent.
    assert not Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists()
    with pytest.raises(ConfigException, match="token file"):
        credentials.new_api_client()


def test_the_runners_client_in_a_pod_rereads_the_service_account_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("first\n")
    monkeypatch.setattr(credentials, "SERVICE_ACCOUNT_DIR", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    creds = credentials.load_credentials()
    assert creds.server == "https://[fd00::1]:6443"
    assert creds.ca_file is None  # no ca.crt in this one: the system's trust store
    assert creds.authorization() == "Bearer first"
    (account / "token").write_text("rotated")  # the kubelet rotates it in place
    assert creds.authorization() == "Bearer rotated"


def test_the_runners_client_outside_a_pod_without_a_token_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(OSError, match="token is missing"):
        credentials.load_credentials()
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "")
    with pytest.raises(OSError, match="KUBERNETES_SERVICE_PORT"):
        credentials.in_cluster_credentials()


def test_object_paths_quote_their_parts() -> None:
    path = paths.path("g.io/v1", "things", "ns", "a b", "status")
    assert path == "/apis/g.io/v1/namespaces/ns/things/a%20b/status"
    assert paths.pods() == "/api/v1/pods"
    assert paths.jobs("ns", "j") == "/apis/batch/v1/namespaces/ns/jobs/j"
    assert paths.guidelinejobs() == "/apis/ingest.guidelines.dev/v1alpha1/guidelinejobs"


def test_the_runner_imports_neither_the_kubernetes_package_nor_psycopg2() -> None:
    # Start-up CPU of every runner pod (docs/benchmarks.md, "Runner start-up").
    runner = "import guideline_runner.main, guideline_runner.providers.openai_llm"
    assert imported_by(runner, {"kubernetes", "psycopg2"}) == []


def test_the_runners_client_reports_no_answer_as_a_transport_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = k8s_stdlib.StdlibTransport(
        credentials.Credentials(server=f"https://127.0.0.1:{port}"), 2.0
    )
    client = k8s_stdlib.Client(transport)
    with pytest.raises(UnavailableError) as caught:
        client.get("/api/v1/namespaces/default")
    assert caught.value.status is None
    client.close()
