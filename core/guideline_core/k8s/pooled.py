"""The `kubernetes` package's transport for `guideline_core.k8s.client.Client`: its
authentication, TLS and thread-safe connection pool, without its typed models (the
components reason about objects as kube-apiserver serves them). The API and the operator
use it; the runner does not (see `stdlib`).
"""

from __future__ import annotations

from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from guideline_core.k8s.client import Answer, Client, HttpTransport, Query
from guideline_core.k8s.credentials import new_api_client
from guideline_core.k8s.errors import UnavailableError


class PooledTransport(HttpTransport):
    """Calls through `api_client`, each bounded by `timeout` (connect, read) seconds."""

    def __init__(
        self, api_client: client.ApiClient, timeout: float | tuple[float, float] = (5.0, 30.0)
    ) -> None:
        self.api_client = api_client
        self.timeout = timeout

    def _exchange(
        self, method: str, path: str, query: Query, body: Any, headers: dict[str, str]
    ) -> Answer:
        params = self.api_client.param_serialize(
            method,
            path,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api_client.call_api(*params, _request_timeout=self.timeout)
            response.read()
        except ApiException as exc:  # the package's own failures (a TLS error: status 0)
            return Answer(exc.status or 0, exc.reason or "", exc.body or "")
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None)
            raise UnavailableError(f"no answer: {str(reason or exc)[:300]}") from exc
        return Answer(response.status, response.reason or "", response.data or b"")

    def close(self) -> None:
        """Release the connection pool."""
        self.api_client.close()


def connect(
    kubeconfig: str | None = None,
    *,
    timeout: float | tuple[float, float] = (5.0, 30.0),
    pool_size: int | None = None,
    retries: urllib3.Retry | int | None = None,
) -> Client:
    """A client over this transport with `credentials.new_api_client`'s credentials;
    UnavailableError when there are none."""
    try:
        api_client = new_api_client(kubeconfig, pool_size=pool_size, retries=retries)
    except (ConfigException, OSError) as exc:
        raise UnavailableError(f"no Kubernetes configuration: {exc}") from exc
    return Client(PooledTransport(api_client, timeout))
