"""The standard library's transport for `guideline_core.k8s.client.Client`: HTTP over
`http.client`, one kept-alive connection.

It is the runner pod's. Importing the `kubernetes` package costs a pod about 0.16 s of CPU
before its first LLM call, a third of its budget (docs/benchmarks.md, "Runner start-up"),
for the two calls a runner makes. In a pod it authenticates as the pod's ServiceAccount
(the token file is re-read before each call, as the kubelet rotates it); outside a pod it
takes a kubeconfig's credentials (`credentials.load_credentials`), read by the
`kubernetes` package, which is imported only then.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

from guideline_core.k8s.client import Answer, Client, HttpTransport, Query
from guideline_core.k8s.credentials import Credentials, load_credentials
from guideline_core.k8s.errors import UnavailableError


class StdlibTransport(HttpTransport):
    """Calls over one kept-alive connection, each bounded by `timeout_seconds`. Not
    thread-safe (the runner calls from one thread at a time)."""

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

    def _exchange(
        self, method: str, path: str, query: Query, body: Any, headers: dict[str, str]
    ) -> Answer:
        try:
            authorization = self.credentials.authorization()
        except OSError as exc:  # the token file is gone
            raise UnavailableError(f"no credentials: {exc}") from exc
        if authorization:
            headers["Authorization"] = authorization
        payload = json.dumps(body).encode() if body is not None else None
        url = self._prefix + path + (f"?{urlencode(query)}" if query else "")
        try:
            connection = self._connect()
            connection.request(method, url, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError) as exc:
            self.close()  # the next call starts on a new connection
            raise UnavailableError(f"no answer: {type(exc).__name__}: {exc}") from exc
        return Answer(response.status, response.reason or "", data)


def connect(kubeconfig: str | None = None, timeout_seconds: float = 10.0) -> Client:
    """A client over this transport with `load_credentials(kubeconfig)` (which raises
    kubernetes' ConfigException or OSError when there are none)."""
    return Client(StdlibTransport(load_credentials(kubeconfig), timeout_seconds))
