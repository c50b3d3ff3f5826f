"""A small Kubernetes REST client for one object: GET and JSON merge patch over the
standard library's HTTP client.

It is the runner pod's client. Importing the `kubernetes` package costs a pod about 0.16 s
of CPU before its first LLM call, a third of its budget (docs/benchmarks.md, "Runner
start-up"), for the two calls a runner makes. In a pod it authenticates as the pod's
ServiceAccount (the token file is re-read before each call, as the kubelet rotates it);
outside a pod it takes a kubeconfig's credentials, read by the `kubernetes` package, which
is imported only then. Errors: `KubeStatusError` for an answer that is not a success (its
`status` as in kubernetes' ApiException), `http.client.HTTPException` or `OSError` when
there was no answer (`TRANSPORT_ERRORS`).
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

from guideline_core.kube import MERGE_PATCH, uses_service_account

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# What a call raises when kube-apiserver gave no answer (refused, reset, timed out, garbled).
TRANSPORT_ERRORS: Final = (http.client.HTTPException, OSError)


class KubeStatusError(Exception):
    """kube-apiserver answered, but not with a success: `status` is the HTTP status,
    `reason` its phrase and `message` the Status object's message when there is one."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message


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
    """As `kube.new_api_client` chooses: the pod's ServiceAccount when in a pod and no
    `kubeconfig` is given, else that kubeconfig."""
    if uses_service_account(kubeconfig):
        return in_cluster_credentials()
    return kubeconfig_credentials(kubeconfig)


def object_path(
    group: str,
    version: str,
    namespace: str,
    plural: str,
    name: str,
    subresource: str | None = None,
) -> str:
    """The URL path of a namespaced custom object (or of its subresource)."""
    parts = ["apis", group, version, "namespaces", namespace, plural, name]
    if subresource:
        parts.append(subresource)
    return "/" + "/".join(quote(p, safe="") for p in parts)


class RestClient:
    """GET and merge-patch of objects over one kept-alive connection; each call bounded by
    `timeout_seconds`. Not thread-safe (the runner calls from one thread at a time)."""

    def __init__(self, credentials: Credentials, timeout_seconds: float = 10.0) -> None:
        self.credentials = credentials
        self._timeout = timeout_seconds
        server = urlsplit(credentials.server)
        self._https = server.scheme == "https"
        self._host, self._port = server.hostname or "", server.port
        self._prefix = server.path.rstrip("/")
        self._context: ssl.SSLContext | None = None
        if self._https:
            self._context = ssl.create_default_context(cafile=credentials.ca_file)
            if not credentials.verify:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
            if credentials.cert_file:
                self._context.load_cert_chain(credentials.cert_file, credentials.key_file)
        self._connection: http.client.HTTPConnection | None = None

    def get(self, path: str) -> dict[str, Any]:
        """The object at `path`."""
        return self._call("GET", path)

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch `patch` into the object at `path`; the object as it is now."""
        return self._call("PATCH", path, patch, MERGE_PATCH)

    def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self._https:
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            else:
                self._connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
        return self._connection

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        authorization = self.credentials.authorization()
        if authorization:
            headers["Authorization"] = authorization
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = content_type or "application/json"
        connection = self._connect()
        try:
            connection.request(method, self._prefix + path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except TRANSPORT_ERRORS:
            self.close()  # the next call starts on a new connection
            raise
        if response.status >= 300:
            raise KubeStatusError(response.status, response.reason or "", _message_of(data))
        return json.loads(data) if data else {}


def _message_of(data: bytes) -> str:
    """The message of a Kubernetes Status object, else the body's start."""
    try:
        status = json.loads(data)
    except ValueError:
        return data[:200].decode(errors="replace")
    return str(status.get("message", "")) if isinstance(status, dict) else ""
