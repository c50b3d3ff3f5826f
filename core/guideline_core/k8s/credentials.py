"""Kubernetes credentials, for both transports of `guideline_core.k8s`: the pod's
ServiceAccount in a pod, else a kubeconfig. `new_api_client` loads them into the
`kubernetes` package's ApiClient (the pooled transport); `load_credentials` into a plain
`Credentials` (the standard library's transport, the runner's)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # the kubernetes package is imported only by those who make a client
    import urllib3
    from kubernetes import client

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def uses_service_account(kubeconfig: str | None = None) -> bool:
    """Whether a client takes the pod's ServiceAccount (in a pod, KUBERNETES_SERVICE_HOST
    set, and no explicit `kubeconfig`) rather than a kubeconfig."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not kubeconfig


def new_api_client(
    kubeconfig: str | None = None,
    *,
    pool_size: int | None = None,
    retries: urllib3.Retry | int | None = None,
) -> client.ApiClient:
    """An ApiClient with its own configuration (the global one is left alone): the
    in-cluster ServiceAccount when running in a pod (KUBERNETES_SERVICE_HOST set) and no
    `kubeconfig` is given, else that kubeconfig (default: `KUBECONFIG` or ~/.kube/config).

    `pool_size` sets the HTTP connection pool's size and `retries` urllib3's retries
    (both: the client's defaults when None). Raises kubernetes' ConfigException (or
    OSError) when there are no usable credentials."""
    from kubernetes import client, config

    cfg = client.Configuration()
    if uses_service_account(kubeconfig):
        config.load_incluster_config(client_configuration=cfg)
    else:
        config.load_kube_config(
            config_file=kubeconfig or os.environ.get("KUBECONFIG"),
            client_configuration=cfg,
            persist_config=False,
        )
    if retries is not None:
        cfg.retries = retries
    if pool_size is not None:
        cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration=cfg)


@dataclass(frozen=True)
class Credentials:
    """Where kube-apiserver is and how to prove who we are to it."""

    server: str
    ca_file: str | None = None
    verify: bool = True
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    token_file: str | None = None

    def authorization(self) -> str | None:
        """The Authorization header's value, if a token authenticates us."""
        token = self.token
        if self.token_file:
            token = Path(self.token_file).read_text().strip()
        return f"Bearer {token}" if token else None


def in_cluster_credentials() -> Credentials:
    """The pod's ServiceAccount. Raises OSError when not in a pod (no service env, no
    token file)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise OSError("KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set")
    token_file = SERVICE_ACCOUNT_DIR / "token"
    if not token_file.is_file():
        raise OSError(f"{token_file} is missing")
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    ca = SERVICE_ACCOUNT_DIR / "ca.crt"
    return Credentials(
        server=f"https://{host}:{port}",
        ca_file=str(ca) if ca.is_file() else None,
        token_file=str(token_file),
    )


def kubeconfig_credentials(kubeconfig: str | None = None) -> Credentials:
    """A kubeconfig's current context (default: `KUBECONFIG` or ~/.kube/config), as the
    kubernetes package reads it (inline certificates become files). Raises kubernetes'
    ConfigException (or OSError) when there are none."""
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(
        config_file=kubeconfig or os.environ.get("KUBECONFIG"),
        client_configuration=cfg,
        persist_config=False,
    )
    auth = cfg.get_api_key_with_prefix("BearerToken", alias="authorization")  # "Bearer <t>"
    return Credentials(
        server=cfg.host,
        ca_file=cfg.ssl_ca_cert,
        verify=bool(cfg.verify_ssl),
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        token=auth.removeprefix("Bearer ").strip() if auth else None,
    )


def load_credentials(kubeconfig: str | None = None) -> Credentials:
    """As `new_api_client` chooses: the pod's ServiceAccount when in a pod and no
    `kubeconfig` is given, else that kubeconfig."""
    if uses_service_account(kubeconfig):
        return in_cluster_credentials()
    return kubeconfig_credentials(kubeconfig)
