"""`guideline_core.kube.new_api_client`: where each component's Kubernetes credentials
come from (a kubeconfig, else the in-cluster ServiceAccount in a pod)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from guideline_core import kube
from kubernetes import client
from kubernetes.config.config_exception import ConfigException


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
    api = kube.new_api_client(str(path), pool_size=7, retries=2)
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
    api = kube.new_api_client()
    try:
        assert api.configuration.host == "https://two.example:6443"
    finally:
        api.close()


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
        kube.new_api_client()
