"""A stand-in for the kubelet, for development and tests only. It is NOT a kubelet.

There is no container runtime on this machine, so this agent runs the pods bound to its
Node as plain local processes of this project's virtualenv, and does the kubelet's side of
the API contract faithfully enough for the real controllers (Job, garbage collector,
node lifecycle, TTL) to work against it:

- registers a Node (capacity, allocatable, Ready condition, addresses), posts Ready
  heartbeats and renews its Lease in ``kube-node-lease``; authenticates as
  ``system:node:<name>`` so the real Node authorizer and NodeRestriction judge it;
- watches the pods with ``spec.nodeName=<node>`` and, for each, starts the *first*
  container's ``command`` + ``args`` (the image is recorded, never pulled) in its own
  session, with the declared env (``value``, ``valueFrom`` secretKeyRef / configMapKeyRef
  / fieldRef / resourceFieldRef, ``envFrom``, ``$(VAR)`` expansion) plus
  ``KUBERNETES_SERVICE_HOST=127.0.0.1`` and ``KUBERNETES_SERVICE_PORT=<apiserver port>``
  (there is no kube-proxy, so the ``kubernetes`` Service's ClusterIP is not routable);
- materializes volumes (projected ServiceAccount tokens from the TokenRequest API bound to
  the pod, configMap, secret, downwardAPI, emptyDir, hostPath) into a per-pod directory and
  bind-mounts them at their ``mountPath`` inside a private mount namespace (``unshare``), so
  an in-cluster client authenticates as the pod's ServiceAccount; a per-pod file is mounted
  at ``terminationMessagePath`` and read back into ``state.terminated.message``;
- writes pod status like a kubelet (Running with ``state.running`` and Ready conditions,
  then Succeeded/Failed with ``state.terminated``), honours ``deletionTimestamp`` (SIGTERM
  to the process group, SIGKILL after the grace period, phase Failed, then delete with grace
  0 and a UID precondition; finalizers are never touched) and ``activeDeadlineSeconds``;
- keeps each pod's output in ``<log-dir>/<namespace>_<pod>.log`` and serves it on the
  kubelet's ``/containerLogs`` endpoint, so ``kubectl logs`` works.

Not supported (on purpose): init and sidecar containers, every container but the first,
container restarts (every pod runs as ``restartPolicy: Never``), probes (a running container
is Ready), securityContext (processes run as the agent's user, root), resource limits,
images, exec/attach/port-forward, volume types other than the above. Mount points missing
on the host (e.g. /var/run/secrets/kubernetes.io/serviceaccount, /dev/termination-log) are
created there, empty, once.

Usage:
    node_agent.py run --kubeconfig FILE --node-name NAME --api-port PORT [...]
    node_agent.py logs NAMESPACE/POD [--follow] [--log-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import http.server
import json
import logging
import math
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

JSON = dict[str, Any]
T = TypeVar("T")

AGENT_VERSION = "0.1.0"
REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_DIR = Path(os.environ.get("GUIDELINE_LOCAL_DIR") or REPO_ROOT / ".local")
DEFAULT_LOG_DIR = LOCAL_DIR / "log" / "pods"
DEFAULT_STATE_DIR = LOCAL_DIR / "run" / "pods"
LEASE_DURATION_SECONDS = 40
LEASE_RENEW_SECONDS = 10.0
NODE_STATUS_SECONDS = 60.0
WATCH_TIMEOUT_SECONDS = 300
MAX_TERMINATION_MESSAGE_BYTES = 4096
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TOKEN_EXPIRATION_SECONDS = 3607
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

log = logging.getLogger("node-agent")


# --- API access --------------------------------------------------------------------------


class ApiError(Exception):
    """An HTTP error answer of the API server, with its Status reason and message."""

    def __init__(self, status: int, text: str) -> None:
        self.status = status
        self.reason = ""
        self.message = text[:500]
        with contextlib.suppress(ValueError, AttributeError):
            body = json.loads(text)
            self.reason = body.get("reason", "")
            self.message = body.get("message", self.message)
        super().__init__(f"{status} {self.reason}: {self.message}")


# Errors after which a request is worth retrying: the API server is restarting or busy.
TRANSIENT = (httpx.TransportError, ssl.SSLError, ConnectionError)


def retryable(exc: BaseException) -> bool:
    """True for errors that say "try again later" rather than "this is wrong"."""
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, ApiError) and (exc.status == 429 or exc.status >= 500)


class Kube:
    """A minimal, thread-safe client of the API server on raw JSON, authenticated by the
    client certificate of a kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        context_name = config.get("current-context") or config["contexts"][0]["name"]
        context = _named(config["contexts"], context_name)["context"]
        cluster = _named(config["clusters"], context["cluster"])["cluster"]
        user = _named(config["users"], context["user"])["user"]
        self.server: str = cluster["server"]
        ssl_context = ssl.create_default_context(cadata=_pem(cluster, "certificate-authority"))
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert.write_text(_pem(user, "client-certificate"))
            key.write_text(_pem(user, "client-key"))
            ssl_context.load_cert_chain(cert, key)
        self.http = httpx.Client(
            base_url=self.server,
            verify=ssl_context,
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            headers={"User-Agent": f"guideline-node-agent/{AGENT_VERSION}"},
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        """One request; the decoded JSON answer, or ApiError."""
        headers = {"Content-Type": content_type} if body is not None else None
        content = json.dumps(body) if body is not None else None
        resp = self.http.request(method, path, params=params, content=content, headers=headers)
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def get(self, path: str, **params: Any) -> JSON:
        """GET an object or a list."""
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: JSON) -> JSON:
        """Create an object."""
        return self.request("POST", path, body=body)

    def put(self, path: str, body: JSON) -> JSON:
        """Replace an object (optimistic concurrency by its resourceVersion)."""
        return self.request("PUT", path, body=body)

    def patch(self, path: str, body: JSON) -> JSON:
        """Strategic-merge-patch an object (lists merge by their keys, as the kubelet's)."""
        return self.request(
            "PATCH", path, body=body, content_type="application/strategic-merge-patch+json"
        )

    def delete(self, path: str, body: JSON | None = None) -> JSON:
        """Delete an object with DeleteOptions."""
        return self.request("DELETE", path, body=body)

    def watch(self, path: str, params: dict[str, Any]) -> Iterator[JSON]:
        """Stream the events of a watch until the server ends it."""
        params = {**params, "watch": "true"}
        read_timeout = float(params.get("timeoutSeconds", WATCH_TIMEOUT_SECONDS)) + 30
        timeout = httpx.Timeout(10.0, read=read_timeout)
        with self.http.stream("GET", path, params=params, timeout=timeout) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise ApiError(resp.status_code, resp.text)
            for line in resp.iter_lines():
                if line.strip():
                    yield json.loads(line)


def _named(items: list[JSON], name: str) -> JSON:
    return next(item for item in items if item["name"] == name)


def _pem(section: JSON, key: str) -> str:
    if section.get(f"{key}-data"):
        return base64.b64decode(section[f"{key}-data"]).decode()
    return Path(section[key]).read_text()


def with_retries(
    what: str, call: Callable[[], T], stop: threading.Event, max_seconds: float = 300.0
) -> T:
    """Run an API call until it succeeds, retrying transient errors with backoff."""
    delay, deadline = 0.2, time.monotonic() + max_seconds
    while True:
        try:
            return call()
        except Exception as exc:
            if not retryable(exc) or time.monotonic() > deadline or stop.is_set():
                raise
            log.warning("%s: %s; retrying in %.1fs", what, exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, 5.0)


# --- time --------------------------------------------------------------------------------


def now_rfc3339() -> str:
    """The current time as the API's metav1.Time (seconds precision)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """The current time as the API's metav1.MicroTime."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> float:
    """An API timestamp as a Unix time."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- quantities (resourceFieldRef) -------------------------------------------------------

_SUFFIXES = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def parse_quantity(value: str | int | float) -> float:
    """A resource.Quantity string ("500m", "1Gi", "1e3") as a number."""
    text = str(value).strip()
    match = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)", text)
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"invalid quantity {value!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


# --- pod spec resolution -----------------------------------------------------------------


class ConfigError(Exception):
    """A pod's env or volumes cannot be resolved (yet): the kubelet's
    CreateContainerConfigError / ContainerCreating, retried until they can."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


_ENV_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, undefined ones kept, and
    `$$` escapes a `$`."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _ENV_REF.sub(substitute, value)


@dataclass
class Mount:
    """A bind mount into the pod's mount namespace."""

    source: Path
    target: str
    read_only: bool


@dataclass
class TokenFile:
    """A projected ServiceAccount token the agent keeps fresh (at 80% of its lifetime)."""

    directory: Path
    path: str
    audience: str | None
    expiration_seconds: int
    mode: int
    refresh_at: float = 0.0


@dataclass
class Prepared:
    """Everything a container needs to start."""

    argv: list[str]
    env: dict[str, str]
    workdir: str
    mounts: list[Mount]
    tokens: list[TokenFile] = field(default_factory=list)


class PodResolver:
    """Resolves one pod's env and volumes against the API, as the kubelet does (it may only
    read the Secrets, ConfigMaps and ServiceAccount tokens its pods reference)."""

    def __init__(self, agent: Agent, pod: JSON) -> None:
        self.agent = agent
        self.kube = agent.kube
        self.pod = pod
        self.namespace: str = pod["metadata"]["namespace"]
        self._cache: dict[tuple[str, str], JSON | None] = {}

    # objects
    def _object(self, kind: str, name: str, optional: bool) -> JSON | None:
        key = (kind, name)
        if key not in self._cache:
            try:
                self._cache[key] = self.kube.get(
                    f"/api/v1/namespaces/{self.namespace}/{kind}/{name}"
                )
            except ApiError as exc:
                if exc.status == 404:
                    self._cache[key] = None
                else:  # 403 right after binding: the Node authorizer's graph is catching up
                    raise ConfigError(
                        "CreateContainerConfigError", f"{kind} {name!r}: {exc}"
                    ) from exc
        found = self._cache[key]
        if found is None and not optional:
            singular = {"secrets": "secret", "configmaps": "configmap"}[kind]
            raise ConfigError("CreateContainerConfigError", f'{singular} "{name}" not found')
        return found

    def _data(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        obj = self._object(kind, name, optional)
        if obj is None:
            return None
        if kind == "secrets":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def _key(self, kind: str, ref: JSON) -> str | None:
        optional = bool(ref.get("optional", False))
        data = self._data(kind, ref["name"], optional)
        if data is None:
            return None
        if ref["key"] not in data:
            if optional:
                return None
            raise ConfigError(
                "CreateContainerConfigError",
                f"couldn't find key {ref['key']} in {kind.removesuffix('s')} "
                f"{self.namespace}/{ref['name']}",
            )
        return data[ref["key"]].decode("utf-8", "surrogateescape")

    # fields
    def field_value(self, path: str) -> str:
        """A fieldRef's value (metadata.*, spec.nodeName/serviceAccountName, status IPs)."""
        meta, spec = self.pod["metadata"], self.pod["spec"]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return (meta.get(match.group(1)) or {}).get(match.group(2), "")
        if path in ("metadata.labels", "metadata.annotations"):
            items = sorted((meta.get(path.split(".")[1]) or {}).items())
            return "\n".join(f"{k}={json.dumps(v)}" for k, v in items)
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.hostIP": "127.0.0.1",
            "status.hostIPs": "127.0.0.1",
            "status.podIP": "127.0.0.1",
            "status.podIPs": "127.0.0.1",
        }
        if path not in simple:
            raise ConfigError("CreateContainerConfigError", f"unsupported fieldPath {path}")
        return str(simple[path])

    def resource_value(self, ref: JSON, default_container: JSON) -> str:
        """A resourceFieldRef's value: the container's limit or request (the node's
        allocatable when no limit is set), divided by the divisor and rounded up."""
        container = default_container
        if ref.get("containerName"):
            container = next(
                (c for c in self.pod["spec"]["containers"] if c["name"] == ref["containerName"]),
                default_container,
            )
        kind, _, resource = ref["resource"].partition(".")
        resources = container.get("resources") or {}
        value = (resources.get(kind) or {}).get(resource)
        if value is None and kind == "requests":
            value = (resources.get("limits") or {}).get(resource)
        if value is None:
            value = self.agent.allocatable.get(resource, "0")
        divisor = parse_quantity(ref.get("divisor") or "1")
        return str(math.ceil(parse_quantity(value) / divisor))

    # env
    def env(self, container: JSON) -> dict[str, str]:
        """The container's environment: a minimal base, the kubernetes Service's variables,
        then envFrom, then env (later entries win, $(VAR) expanded)."""
        agent = self.agent
        env = {
            "PATH": f"{agent.venv}/bin:{SYSTEM_PATH}",
            "VIRTUAL_ENV": str(agent.venv),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "HOSTNAME": self.pod["metadata"]["name"],
            # No kube-proxy: the kubernetes Service's ClusterIP is not routable, so pods
            # reach the API server at its loopback address instead.
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(agent.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(agent.api_port),
            "KUBERNETES_PORT": f"tcp://127.0.0.1:{agent.api_port}",
        }
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
                if key not in source:
                    continue
                ref = source[key]
                data = self._data(kind, ref["name"], bool(ref.get("optional", False))) or {}
                for name, value in data.items():
                    if _ENV_NAME.match(prefix + name):
                        env[prefix + name] = value.decode("utf-8", "surrogateescape")
        for var in container.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand(var.get("value", ""), env)
                continue
            source = var["valueFrom"]
            value: str | None
            if "secretKeyRef" in source:
                value = self._key("secrets", source["secretKeyRef"])
            elif "configMapKeyRef" in source:
                value = self._key("configmaps", source["configMapKeyRef"])
            elif "fieldRef" in source:
                value = self.field_value(source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                value = self.resource_value(source["resourceFieldRef"], container)
            else:
                raise ConfigError("CreateContainerConfigError", f"unsupported valueFrom in {name}")
            if value is not None:
                env[name] = value
        return env

    # volumes
    def volumes(self, root: Path, container: JSON) -> tuple[dict[str, Path], list[TokenFile]]:
        """Materializes the pod's volumes under root; their host paths by name."""
        paths: dict[str, Path] = {}
        tokens: list[TokenFile] = []
        for volume in self.pod["spec"].get("volumes") or []:
            name = volume["name"]
            directory = root / name
            if "hostPath" in volume:
                host = volume["hostPath"]
                path = Path(host["path"])
                if host.get("type") == "DirectoryOrCreate":
                    path.mkdir(parents=True, exist_ok=True)
                elif host.get("type") == "FileOrCreate" and not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                paths[name] = path
                continue
            directory.mkdir(parents=True, exist_ok=True)
            paths[name] = directory
            if "emptyDir" in volume:
                continue
            if "configMap" in volume or "secret" in volume:
                kind = "configmaps" if "configMap" in volume else "secrets"
                source = volume.get("configMap") or volume["secret"]
                ref = {**source, "name": source.get("name") or source.get("secretName")}
                self._project(directory, kind, ref, source.get("defaultMode", 0o644))
            elif "downwardAPI" in volume:
                source = volume["downwardAPI"]
                self._downward(directory, source, source.get("defaultMode", 0o644), container)
            elif "projected" in volume:
                mode = volume["projected"].get("defaultMode", 0o644)
                for src in volume["projected"].get("sources") or []:
                    if "serviceAccountToken" in src:
                        tok = src["serviceAccountToken"]
                        token = TokenFile(
                            directory,
                            tok["path"],
                            tok.get("audience") or None,
                            int(tok.get("expirationSeconds", DEFAULT_TOKEN_EXPIRATION_SECONDS)),
                            mode,
                        )
                        self.refresh_token(token)
                        tokens.append(token)
                    elif "configMap" in src:
                        self._project(directory, "configmaps", src["configMap"], mode)
                    elif "secret" in src:
                        self._project(directory, "secrets", src["secret"], mode)
                    elif "downwardAPI" in src:
                        self._downward(directory, src["downwardAPI"], mode, container)
                    else:
                        raise ConfigError(
                            "ContainerCreating", f"volume {name}: unsupported projection {src}"
                        )
            else:
                raise ConfigError(
                    "ContainerCreating", f"volume {name}: type not supported by the node agent"
                )
        return paths, tokens

    def _project(self, directory: Path, kind: str, ref: JSON, default_mode: int) -> None:
        data = self._data(kind, ref["name"], bool(ref.get("optional", False)))
        if data is None:
            return
        items = ref.get("items")
        if not items:
            items = [{"key": key, "path": key} for key in data]
        for item in items:
            if item["key"] not in data:
                if ref.get("optional"):
                    continue
                raise ConfigError(
                    "ContainerCreating",
                    f"configmap/secret {ref['name']}: key {item['key']} not found",
                )
            write_file(directory, item["path"], data[item["key"]], item.get("mode", default_mode))

    def _downward(self, directory: Path, source: JSON, default_mode: int, container: JSON) -> None:
        for item in source.get("items") or []:
            if "fieldRef" in item:
                value = self.field_value(item["fieldRef"]["fieldPath"])
            else:
                value = self.resource_value(item["resourceFieldRef"], container)
            write_file(directory, item["path"], value.encode(), item.get("mode", default_mode))

    def refresh_token(self, token: TokenFile) -> None:
        """Asks the TokenRequest API for a token bound to this pod and writes it."""
        meta = self.pod["metadata"]
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        spec: JSON = {
            "expirationSeconds": token.expiration_seconds,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        }
        if token.audience:
            spec["audiences"] = [token.audience]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            answer = self.kube.post(
                f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token", body
            )
        except ApiError as exc:
            raise ConfigError("ContainerCreating", f"token for serviceaccount {sa}: {exc}") from exc
        write_file(token.directory, token.path, answer["status"]["token"].encode(), token.mode)
        lifetime = parse_time(answer["status"]["expirationTimestamp"]) - time.time()
        token.refresh_at = time.time() + 0.8 * min(lifetime, 86_400)


def write_file(directory: Path, relative: str, data: bytes, mode: int) -> None:
    """Writes a volume file atomically (readers never see half a token)."""
    if relative.startswith("/") or ".." in Path(relative).parts:
        raise ConfigError("ContainerCreating", f"invalid volume path {relative!r}")
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# --- processes ---------------------------------------------------------------------------

# Runs (bash) inside the pod's private mount namespace: bind-mounts each volume at its
# mountPath (creating the mount point on the host if missing), enters workingDir, execs
# the command. Every source is first bind-mounted into a private staging tmpfs, because a
# volume mounted over a parent directory (an emptyDir at /tmp, say) would otherwise hide the
# sources of the mounts after it; and the host paths the process needs (the checkout and its
# virtualenv: a container would have them in its image) are mounted back if a volume hid them.
MOUNT_SCRIPT = r"""
fail() { echo "node-agent: $*" >&2; exit 126; }
workdir=$1; shift
keep=(); while [ "$1" != "--" ]; do keep+=("$1"); shift; done; shift
srcs=(); dsts=(); ros=()
while [ "$1" != "--" ]; do srcs+=("$1"); dsts+=("$2"); ros+=("$3"); shift 3; done; shift
stage=/run/guideline-node-agent-stage
mkdir -p "$stage" && mount -t tmpfs -o mode=700 node-agent-stage "$stage" || fail "no staging tmpfs"
for i in "${!srcs[@]}"; do
  if [ -d "${srcs[i]}" ]; then mkdir "$stage/$i"; else : > "$stage/$i"; fi
  mount --bind "${srcs[i]}" "$stage/$i" || fail "cannot stage ${srcs[i]}"
done
for i in "${!keep[@]}"; do
  mkdir "$stage/keep$i" && mount --bind "${keep[i]}" "$stage/keep$i" ||
    fail "cannot stage ${keep[i]}"
done
for i in "${!srcs[@]}"; do
  dst=${dsts[i]}
  if [ -d "$stage/$i" ]; then
    mkdir -p "$dst"
  elif [ ! -e "$dst" ]; then
    mkdir -p "$(dirname "$dst")" && : > "$dst"
  fi
  mount --bind "$stage/$i" "$dst" || fail "cannot mount ${srcs[i]} at $dst"
  if [ "${ros[i]}" = ro ]; then mount -o remount,bind,ro "$dst" || exit 126; fi
done
for i in "${!keep[@]}"; do
  if [ ! -d "${keep[i]}" ]; then
    mkdir -p "${keep[i]}" && mount --bind "$stage/keep$i" "${keep[i]}" ||
      fail "cannot keep ${keep[i]}"
  fi
done
mkdir -p "$workdir" && cd "$workdir" || exit 126
exec "$@"
"""


def process_start_time(pid: int) -> str | None:
    """The start time of a process (field 22 of /proc/PID/stat), to tell a recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def kill_group(pgid: int, sig: signal.Signals) -> None:
    """Signals a whole process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# --- the pods ----------------------------------------------------------------------------


def pod_key(pod: JSON) -> str:
    """namespace/name of a pod."""
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


class PodWorker:
    """Runs one pod from bind to a terminal phase, on its own thread."""

    def __init__(self, agent: Agent, pod: JSON) -> None:
        meta = pod["metadata"]
        self.agent = agent
        self.kube = agent.kube
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.pod = pod
        self.gone = False  # the object no longer exists in the API
        self.finished = threading.Event()  # the process has ended (or never will run)
        self._wake = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = agent.state_dir / self.uid
        self.pid_file = agent.state_dir / f"{self.uid}.pid"
        self.log_path = agent.log_path(self.namespace, self.name)
        self.container: JSON = pod["spec"]["containers"][0]
        self.start_time: str = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        self.started_at = ""
        self.restart_count = 0  # containers are never restarted (restartPolicy Never)
        self._last_waiting = ""
        self.thread = threading.Thread(target=self._run, name=f"pod {self.key}", daemon=True)

    @property
    def key(self) -> str:
        """namespace/name."""
        return f"{self.namespace}/{self.name}"

    def update(self, pod: JSON) -> None:
        """A newer version of the pod arrived from the watch."""
        self.pod = pod
        self._wake.set()

    def vanished(self) -> None:
        """The pod was removed from the API (force deletion or after finalizers)."""
        self.gone = True
        self._wake.set()

    # lifecycle
    def _run(self) -> None:
        try:
            self._lifecycle()
        except Exception as exc:
            log.exception("pod %s: worker failed", self.key)
            if self.proc and self.proc.poll() is None:
                kill_group(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):  # a pod is never left Running by a bug here
                waiting = ("NodeAgentError", f"the node agent failed: {exc}")
                self._write_status(self._status("Failed", waiting=waiting))
        finally:
            self.finished.set()
            self._cleanup()
            self.agent.worker_done(self)

    def _deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    def _deadline(self) -> float | None:
        seconds = self.pod["spec"].get("activeDeadlineSeconds")
        return parse_time(self.start_time) + seconds if seconds else None

    def _lifecycle(self) -> None:
        spec = self.pod["spec"]
        statuses = (self.pod.get("status") or {}).get("containerStatuses") or []
        if statuses and ("running" in statuses[0].get("state", {}) or statuses[0].get("started")):
            # Started by an earlier agent (which was stopped with its processes): the
            # kubelet's answer after losing a container.
            self._terminate_unknown()
            return
        if spec.get("initContainers"):
            self._fail_unstarted("Unsupported", "the node agent does not run init containers")
            return
        if not self.container.get("command"):
            self._fail_unstarted(
                "Unsupported", "the node agent runs only containers with an explicit command"
            )
            return
        prepared = self._prepare()
        if prepared is None:
            return
        self._start(prepared)
        self._supervise(prepared)

    def _prepare(self) -> Prepared | None:
        """Resolves env and volumes, retrying (as the kubelet does) while a referenced object
        is missing; None when the pod ended before it could start."""
        delay = 0.1
        attempts = 0
        while True:
            if self.gone or self.agent.stopping.is_set():
                return None
            if self._deleting():
                self._fail_unstarted("Deleted", "the pod was deleted before it started")
                return None
            deadline = self._deadline()
            if deadline is not None and time.time() >= deadline:
                self._fail_unstarted(
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline",
                )
                return None
            try:
                return self._resolve()
            except ConfigError as exc:
                attempts += 1
                if attempts >= 3 and exc.message != self._last_waiting:
                    self._last_waiting = exc.message
                    log.info("pod %s: waiting: %s", self.key, exc.message)
                    self._write_status(self._status("Pending", waiting=(exc.reason, exc.message)))
                    self.agent.event(self.pod, "Warning", "Failed", exc.message)
            except Exception as exc:
                if not retryable(exc):
                    raise
                log.warning("pod %s: %s", self.key, exc)
            self._wake.wait(delay)
            self._wake.clear()
            delay = min(delay * 2, 2.0)

    def _resolve(self) -> Prepared:
        container = self.container
        resolver = PodResolver(self.agent, self.pod)
        env = resolver.env(container)
        volume_dir = self.dir / "volumes"
        volumes, tokens = resolver.volumes(volume_dir, container)
        mounts = []
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in volumes:
                raise ConfigError("ContainerCreating", f"volume {mount['name']} not found")
            source = volumes[mount["name"]]
            if mount.get("subPath"):
                source = source / expand(mount["subPath"], env)
                if not source.exists():
                    source.mkdir(parents=True)
            mounts.append(Mount(source, mount["mountPath"], bool(mount.get("readOnly"))))
        message_file = self.dir / "termination-log"
        message_file.write_bytes(b"")
        target = container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
        mounts.append(Mount(message_file, target, False))
        mounts.sort(key=lambda m: len(Path(m.target).parts))  # parents before children
        argv = [expand(a, env) for a in container["command"] + (container.get("args") or [])]
        workdir = container.get("workingDir") or str(self.dir / "workdir")
        return Prepared(argv, env, workdir, mounts, tokens)

    def _start(self, prepared: Prepared) -> None:
        mount_args: list[str] = []
        for mount in prepared.mounts:
            mount_args += [str(mount.source), mount.target, "ro" if mount.read_only else "rw"]
        argv = [
            *("unshare", "--mount", "--propagation", "private", "--"),
            *("/bin/bash", "-c", MOUNT_SCRIPT, "node-agent", prepared.workdir),
            *self.agent.host_paths,
            "--",
            *mount_args,
            "--",
            *prepared.argv,
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as output:
            self.proc = subprocess.Popen(
                argv,
                env=prepared.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, signalled as a whole
                close_fds=True,
            )
        self.started_at = now_rfc3339()
        pid = self.proc.pid
        self.pid_file.write_text(f"{pid} {process_start_time(pid) or ''} {self.key}\n")
        threading.Thread(
            target=self._reap, args=(self.proc,), name=f"wait {self.key}", daemon=True
        ).start()
        log.info("pod %s: started pid %d: %s", self.key, pid, " ".join(prepared.argv)[:200])
        running = {"running": {"startedAt": self.started_at}}
        self._write_status(self._status("Running", state=running, ready=True))
        self.agent.event(
            self.pod, "Normal", "Started", f"Started container {self.container['name']}"
        )

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._wake.set()

    def _supervise(self, prepared: Prepared) -> None:
        kill_at: float | None = None
        kill_reason = ""
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                break
            now = time.time()
            if self.gone or self.agent.stopping.is_set():
                # Force-deleted (or the agent is stopping): no grace left.
                kill_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                return
            deadline = self._deadline()
            if self._deleting() and kill_reason != "Deleted":
                grace = self.pod["metadata"].get("deletionGracePeriodSeconds", 30)
                if kill_at is None:
                    self._signal_stop(grace)
                kill_at = min(kill_at or math.inf, now + max(grace, 1))
                kill_reason = kill_reason or "Deleted"
            elif kill_at is None and deadline is not None and now >= deadline:
                grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
                kill_at, kill_reason = now + max(grace, 1), "DeadlineExceeded"
                self._signal_stop(grace)
                self.agent.event(
                    self.pod,
                    "Normal",
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline",
                )
            if kill_at is not None and now >= kill_at:
                log.info("pod %s: grace period over, SIGKILL", self.key)
                kill_group(self.proc.pid, signal.SIGKILL)
            for token in prepared.tokens:
                if now >= token.refresh_at:
                    with contextlib.suppress(ConfigError, *TRANSIENT):
                        PodResolver(self.agent, self.pod).refresh_token(token)
            wakeups = [t.refresh_at for t in prepared.tokens]
            wakeups += [x for x in (kill_at, deadline if kill_at is None else None) if x]
            timeout = max(0.05, min(wakeups) - time.time()) if wakeups else None
            self._wake.wait(timeout)
            self._wake.clear()
        # The main process ended; the rest of its group goes with it, as in a container.
        kill_group(self.proc.pid, signal.SIGKILL)
        self._finish(self.proc.returncode, kill_reason)

    def _signal_stop(self, grace: int) -> None:
        assert self.proc is not None
        log.info("pod %s: SIGTERM (grace %ss)", self.key, grace)
        self.agent.event(
            self.pod, "Normal", "Killing", f"Stopping container {self.container['name']}"
        )
        kill_group(self.proc.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)

    def _finish(self, returncode: int, kill_reason: str) -> None:
        exit_code = returncode if returncode >= 0 else 128 - returncode
        message = self._termination_message(exit_code)
        terminated: JSON = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": self.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": self._container_id(),
        }
        if exit_code >= 128:
            terminated["signal"] = exit_code - 128
        if message:
            terminated["message"] = message
        log.info(
            "pod %s: exited %d%s", self.key, exit_code, f" ({kill_reason})" if kill_reason else ""
        )
        if kill_reason == "DeadlineExceeded":
            status = self._status(
                "Failed",
                state={"terminated": terminated},
                reason="DeadlineExceeded",
                message="Pod was active on the node longer than the specified deadline",
            )
        elif kill_reason == "Deleted":
            status = self._status("Failed", state={"terminated": terminated})
        else:
            status = self._status(
                "Succeeded" if exit_code == 0 else "Failed", state={"terminated": terminated}
            )
        self._write_status(status)

    def _termination_message(self, exit_code: int) -> str:
        with contextlib.suppress(OSError):
            data = (self.dir / "termination-log").read_bytes()[:MAX_TERMINATION_MESSAGE_BYTES]
            if data.strip():
                return data.decode("utf-8", "replace")
        policy = self.container.get("terminationMessagePolicy", "File")
        if policy == "FallbackToLogsOnError" and exit_code != 0:
            with contextlib.suppress(OSError):
                lines = self.log_path.read_bytes()[-2048:].splitlines()[-80:]
                return b"\n".join(lines).decode("utf-8", "replace")
        return ""

    def _terminate_unknown(self) -> None:
        terminated = {
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
            "finishedAt": now_rfc3339(),
        }
        self._write_status(self._status("Failed", state={"terminated": terminated}))

    def _fail_unstarted(self, reason: str, message: str) -> None:
        log.info("pod %s: failed before start: %s", self.key, message)
        waiting = {"waiting": {"reason": reason, "message": message}}
        if reason == "Deleted":
            status = self._status("Failed", state=waiting)
        else:
            status = self._status("Failed", state=waiting, reason=reason, message=message)
            self.agent.event(self.pod, "Warning", reason, message)
        self._write_status(status)

    # status
    def _container_id(self) -> str:
        return f"node-agent://{self.uid}-{self.restart_count}"

    def _status(
        self,
        phase: str,
        *,
        state: JSON | None = None,
        waiting: tuple[str, str] | None = None,
        ready: bool = False,
        reason: str | None = None,
        message: str | None = None,
    ) -> JSON:
        if waiting:
            state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
        now = now_rfc3339()
        terminal = phase in TERMINAL_PHASES
        not_ready = "PodCompleted" if terminal else "ContainersNotReady"

        current = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions") or []}

        def condition(kind: str, ok: bool, why: str = "") -> JSON:
            cond: JSON = {"type": kind, "status": "True" if ok else "False"}
            same = current.get(kind, {}).get("status") == cond["status"]
            cond["lastTransitionTime"] = current[kind].get("lastTransitionTime") if same else now
            if not ok and why:
                cond["reason"] = why
            return cond

        main: JSON = {
            "name": self.container["name"],
            "image": self.container.get("image", ""),
            "imageID": "",
            "ready": ready,
            "started": "running" in (state or {}),
            "restartCount": self.restart_count,
            "state": state or {"waiting": {"reason": "ContainerCreating"}},
            "lastState": {},
        }
        if state and ("running" in state or "terminated" in state):
            main["containerID"] = self._container_id()
        others = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {
                    "waiting": {
                        "reason": "NotSupported",
                        "message": "the node agent runs only the first container",
                    }
                },
            }
            for c in self.pod["spec"]["containers"][1:]
        ]
        status: JSON = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "conditions": [
                condition("PodReadyToStartContainers", True),
                condition("Initialized", True),
                condition("ContainersReady", ready, not_ready),
                condition("Ready", ready, not_ready),
            ],
            "containerStatuses": [main, *others],
        }
        if reason:
            status["reason"] = reason
        if message:
            status["message"] = message
        return status

    def _write_status(self, status: JSON) -> None:
        """Patches pods/status (strategic merge; the UID guards against a same-named new
        pod), retrying while the API server is unavailable."""
        if self.agent.stopping.is_set():
            return
        body = {"metadata": {"uid": self.uid}, "status": status}
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
        try:
            # The answer is not kept: only watch events (in order) update self.pod, so a
            # deletion seen meanwhile is never overwritten by an older copy.
            with_retries(
                f"pod {self.key} status", lambda: self.kube.patch(path, body), self.agent.stopping
            )
        except ApiError as exc:
            if exc.status in (404, 409):
                self.gone = True
            else:
                log.error("pod %s: status rejected: %s", self.key, exc)
        except Exception as exc:
            log.error("pod %s: status not written: %s", self.key, exc)

    def _cleanup(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the node ----------------------------------------------------------------------------


class NodeHeartbeat:
    """Registers the Node, renews its Lease every 10 s and posts Ready status every 60 s."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.kube = agent.kube
        self.name = agent.node_name
        self.uid = ""
        self.lease: JSON | None = None

    def node_status(self) -> JSON:
        """Capacity, conditions, addresses and info, as a kubelet posts them."""
        now = now_rfc3339()
        uname = os.uname()

        def condition(kind: str, status: str, reason: str, message: str) -> JSON:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
            }

        return {
            "capacity": self.agent.allocatable,
            "allocatable": self.agent.allocatable,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
                condition(
                    "Ready",
                    "True",
                    "KubeletReady",
                    "node agent (kubelet stand-in) is posting ready status",
                ),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.agent.serving_port}},
            "nodeInfo": {
                "machineID": _read_first("/etc/machine-id"),
                "systemUUID": _read_first("/etc/machine-id"),
                "bootID": _read_first("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": uname.release,
                "osImage": _os_image(),
                "containerRuntimeVersion": f"guideline-node-agent://{AGENT_VERSION}",
                "kubeletVersion": self.agent.kubelet_version,
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                    uname.machine, uname.machine
                ),
            },
        }

    def register(self) -> None:
        """Creates the Node if missing, then posts its status."""
        path = f"/api/v1/nodes/{self.name}"
        try:
            node = self.kube.get(path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            labels = {
                "kubernetes.io/hostname": self.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": self.node_status()["nodeInfo"]["architecture"],
                "guideline-ingest.dev/node-agent": "true",
            }
            node = self.kube.post(
                "/api/v1/nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": self.name, "labels": labels},
                },
            )
            log.info("registered node %s", self.name)
        self.uid = node["metadata"]["uid"]
        self.kube.patch(f"{path}/status", {"status": self.node_status()})

    def renew_lease(self) -> None:
        """Renews (or creates) the node's Lease, the heartbeat the node-lifecycle controller
        watches."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        if self.lease is None:
            try:
                self.lease = self.kube.get(path)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                self.lease = self.kube.post(
                    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {
                            "name": self.name,
                            "namespace": "kube-node-lease",
                            "ownerReferences": [
                                {
                                    "apiVersion": "v1",
                                    "kind": "Node",
                                    "name": self.name,
                                    "uid": self.uid,
                                }
                            ],
                        },
                        "spec": {
                            "holderIdentity": self.name,
                            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                            "renewTime": now_micro(),
                        },
                    },
                )
                return
        lease = self.lease
        lease["spec"]["renewTime"] = now_micro()
        lease["spec"]["holderIdentity"] = self.name
        lease["spec"]["leaseDurationSeconds"] = LEASE_DURATION_SECONDS
        try:
            self.lease = self.kube.put(path, lease)
        except ApiError:
            self.lease = None  # conflict or gone: read it again next time
            raise

    def run(self) -> None:
        """The heartbeat loop; survives API server restarts and a deleted Node."""
        next_status = time.monotonic() + NODE_STATUS_SECONDS
        stop = self.agent.stopping
        while not stop.wait(LEASE_RENEW_SECONDS):
            try:
                self.renew_lease()
                if time.monotonic() >= next_status:
                    self.kube.patch(
                        f"/api/v1/nodes/{self.name}/status", {"status": self.node_status()}
                    )
                    next_status = time.monotonic() + NODE_STATUS_SECONDS
            except ApiError as exc:
                log.warning("heartbeat: %s", exc)
                if exc.status == 404:
                    with contextlib.suppress(Exception):
                        self.register()
            except Exception as exc:
                log.warning("heartbeat: %s", exc)


def _read_first(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _os_image() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return "Linux"


# --- the kubelet API subset: container logs ----------------------------------------------


class LogServer(http.server.ThreadingHTTPServer):
    """Serves the kubelet's /containerLogs endpoint (what `kubectl logs` reaches through
    the API server), over TLS, to clients holding a certificate of the cluster CA."""

    daemon_threads = True

    def __init__(self, agent: Agent, port: int, cert: Path, key: Path, client_ca: Path) -> None:
        super().__init__(("127.0.0.1", port), LogHandler)
        self.agent = agent
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
        context.load_cert_chain(cert, key)
        context.verify_mode = ssl.CERT_REQUIRED
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )


class LogHandler(http.server.BaseHTTPRequestHandler):
    """GET /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&limitBytes="""

    server: LogServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kubelet api: " + format, *args)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        if parts == ["healthz"]:
            self._reply(200, b"ok")
            return
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._reply(404, b"not supported by the node agent (a kubelet stand-in)\n")
            return
        agent = self.server.agent
        namespace, pod = parts[1], parts[2]
        path = agent.log_path(namespace, pod)
        if not path.exists():
            self._reply(404, f"no logs for pod {namespace}/{pod}\n".encode())
            return
        query = urllib.parse.parse_qs(url.query)
        follow = query.get("follow", ["false"])[0] == "true"
        tail = int(query.get("tailLines", ["-1"])[0])
        limit = int(query.get("limitBytes", ["0"])[0])
        data = path.read_bytes()
        if tail >= 0:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail else b""
        if limit > 0:
            data = data[:limit]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        try:
            self.wfile.write(data)
            if follow:
                self._follow(path, path.stat().st_size, agent.worker_by_name(namespace, pod))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    def _follow(self, path: Path, offset: int, worker: PodWorker | None) -> None:
        with open(path, "rb") as f:
            f.seek(offset)
            while True:
                chunk = f.read(65536)
                if chunk:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    continue
                if worker is None or worker.finished.is_set():
                    return
                time.sleep(0.2)

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# --- the agent ---------------------------------------------------------------------------


class Agent:
    """Watches the pods bound to this node and runs each with a PodWorker."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.kube = Kube(Path(args.kubeconfig))
        self.node_name: str = args.node_name
        self.api_port: int = args.api_port
        self.serving_port: int = args.serving_port
        self.kubelet_version: str = args.kubelet_version
        self.state_dir = Path(args.state_dir).resolve()
        self.log_dir = Path(args.log_dir).resolve()
        self.venv = Path(args.venv).resolve()
        # Host paths a pod's process needs whatever volumes cover (see MOUNT_SCRIPT).
        self.host_paths = list(dict.fromkeys(str(p) for p in (REPO_ROOT, self.venv, LOCAL_DIR)))
        self.args = args
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.workers: dict[str, PodWorker] = {}
        self.finished: dict[str, float] = {}  # uids of pods whose worker has ended
        self.background = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bg")
        memory_kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
        disk = shutil.disk_usage(self.state_dir.parent if self.state_dir.parent.exists() else "/")
        self.allocatable = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{memory_kib}Ki",
            "pods": str(args.max_pods),
            "ephemeral-storage": str(disk.total),
        }

    def log_path(self, namespace: str, pod: str) -> Path:
        """Where a pod's output goes."""
        return self.log_dir / f"{namespace}_{pod}.log"

    def worker_by_name(self, namespace: str, name: str) -> PodWorker | None:
        """The live worker of a pod, if any."""
        with self.lock:
            for worker in self.workers.values():
                if worker.namespace == namespace and worker.name == name:
                    return worker
        return None

    # main
    def run(self) -> None:
        """Registers the node and runs pods until SIGTERM/SIGINT."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._kill_leftovers()
        heartbeat = NodeHeartbeat(self)
        with_retries("register node", heartbeat.register, self.stopping, 120)
        with contextlib.suppress(Exception):
            heartbeat.renew_lease()
        threading.Thread(target=heartbeat.run, name="heartbeat", daemon=True).start()
        if self.serving_port:
            server = LogServer(
                self,
                self.serving_port,
                Path(self.args.serving_cert),
                Path(self.args.serving_key),
                Path(self.args.client_ca),
            )
            threading.Thread(target=server.serve_forever, name="kubelet-api", daemon=True).start()
        log.info("node %s ready; running pods", self.node_name)
        self._watch_pods()

    def _watch_pods(self) -> None:
        path = "/api/v1/pods"
        selector = {"fieldSelector": f"spec.nodeName={self.node_name}"}
        delay = 0.2
        resource_version = ""
        while not self.stopping.is_set():
            try:
                if not resource_version:
                    listed = self.kube.get(path, **selector)
                    resource_version = listed["metadata"]["resourceVersion"]
                    self._relisted(listed["items"])
                for event in self.kube.watch(
                    path,
                    {
                        **selector,
                        "resourceVersion": resource_version,
                        "allowWatchBookmarks": "true",
                        "timeoutSeconds": WATCH_TIMEOUT_SECONDS,
                    },
                ):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        log.info("watch error %s: relisting", obj.get("message"))
                        resource_version = ""
                        break
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.handle(event["type"], obj)
                delay = 0.2
            except Exception as exc:
                if self.stopping.is_set():
                    break
                if isinstance(exc, ApiError) and exc.status == 410:
                    resource_version = ""
                    continue
                log.warning("pod watch: %s; relisting in %.1fs", exc, delay)
                resource_version = ""
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)

    def _relisted(self, pods: list[JSON]) -> None:
        present = {pod["metadata"]["uid"] for pod in pods}
        with self.lock:
            missed = [w for uid, w in self.workers.items() if uid not in present]
            for uid in [uid for uid in self.finished if uid not in present]:
                del self.finished[uid]
        for worker in missed:  # deleted while we were not watching
            worker.vanished()
        for pod in pods:
            self.handle("ADDED", pod)

    def handle(self, kind: str, pod: JSON) -> None:
        """One watch event for a pod bound to this node."""
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                self.finished.pop(uid, None)
                if worker:
                    worker.vanished()
                return
            if worker:
                worker.update(pod)
                return
            phase = (pod.get("status") or {}).get("phase")
            if uid in self.finished or phase in TERMINAL_PHASES:
                # Nothing runs any more; only a deletion is left to complete.
                self.finished.setdefault(uid, time.time())
                if pod["metadata"].get("deletionTimestamp"):
                    self.delete_pod(pod)
                return
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
        worker.thread.start()

    def worker_done(self, worker: PodWorker) -> None:
        """A worker ended: later events of its pod only need deletion handled."""
        with self.lock:
            self.workers.pop(worker.uid, None)
            if not worker.gone:
                self.finished[worker.uid] = time.time()
        if not worker.gone and worker.pod["metadata"].get("deletionTimestamp"):
            self.delete_pod(worker.pod)

    def delete_pod(self, pod: JSON) -> None:
        """Completes a deletion: grace 0 with a UID precondition, as the kubelet does once
        the containers are gone (finalizers stay for their owners to remove)."""
        meta = pod["metadata"]
        if meta.get("deletionGracePeriodSeconds") == 0:
            return  # already done; finalizers hold the object
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }

        def call() -> None:
            try:
                with_retries(
                    f"delete pod {pod_key(pod)}",
                    lambda: self.kube.delete(path, body),
                    self.stopping,
                )
            except ApiError as exc:
                if exc.status not in (404, 409):
                    log.warning("delete pod %s: %s", pod_key(pod), exc)
            except Exception as exc:
                log.warning("delete pod %s: %s", pod_key(pod), exc)

        self.background.submit(call)

    def event(self, pod: JSON, kind: str, reason: str, message: str) -> None:
        """Records a core/v1 Event on the pod (best effort, in the background)."""
        meta = pod["metadata"]
        now = now_rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "fieldPath": f"spec.containers{{{pod['spec']['containers'][0]['name']}}}",
            },
            "type": kind,
            "reason": reason,
            "message": message,
            "source": {"component": "node-agent", "host": self.node_name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "node-agent",
            "reportingInstance": self.node_name,
        }

        def call() -> None:
            with contextlib.suppress(Exception):
                self.kube.post(f"/api/v1/namespaces/{meta['namespace']}/events", body)

        if not self.stopping.is_set():
            self.background.submit(call)

    def _kill_leftovers(self) -> None:
        """Processes of pods started by an earlier run of the agent are stopped: their pods
        are reported lost (ContainerStatusUnknown), as a kubelet does after a restart."""
        for pid_file in self.state_dir.glob("*.pid"):
            fields = pid_file.read_text().split()
            if len(fields) >= 2 and process_start_time(int(fields[0])) == fields[1]:
                log.info("stopping leftover process group %s (%s)", fields[0], pid_file.stem)
                kill_group(int(fields[0]), signal.SIGKILL)
            pid_file.unlink(missing_ok=True)
        for directory in self.state_dir.iterdir():
            if directory.is_dir():
                shutil.rmtree(directory, ignore_errors=True)

    def shutdown(self) -> None:
        """Stops every pod process (SIGTERM, then SIGKILL), leaving pod objects as they are,
        like a node going away."""
        self.stopping.set()
        with self.lock:
            procs = [w.proc for w in self.workers.values() if w.proc and w.proc.poll() is None]
        for proc in procs:
            kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            kill_group(proc.pid, signal.SIGKILL)
        for pid_file in self.state_dir.glob("*.pid"):
            pid_file.unlink(missing_ok=True)
        log.info("stopped %d pod process(es); bye", len(procs))


class StopRequestedError(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT (a BaseException, like
    KeyboardInterrupt, so that no retry loop swallows it)."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise StopRequestedError(signal.Signals(signum).name)


def cmd_run(args: argparse.Namespace) -> int:
    """The `run` subcommand."""
    if os.geteuid() != 0:
        print(
            "node_agent.py run needs root (it mounts volumes in mount namespaces)", file=sys.stderr
        )
        return 1
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    agent = Agent(args)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        agent.run()
    except StopRequestedError as stop:
        log.info("%s: stopping", stop)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        agent.shutdown()
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """The `logs` subcommand: prints a pod's output (and follows it with --follow)."""
    namespace, _, name = args.pod.rpartition("/")
    path = Path(args.log_dir) / f"{namespace or 'default'}_{name}.log"
    if not path.exists():
        print(f"no log for pod {namespace or 'default'}/{name} in {args.log_dir}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    with open(path, "rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                out.write(chunk)
                out.flush()
            elif args.follow:
                time.sleep(0.3)
            else:
                return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="register the node and run its pods")
    run.add_argument("--kubeconfig", required=True, help="credentials of system:node:<name>")
    run.add_argument("--node-name", required=True)
    run.add_argument("--api-port", type=int, required=True, help="the API server's loopback port")
    run.add_argument("--serving-port", type=int, default=0, help="kubelet API port (0: off)")
    run.add_argument("--serving-cert", default="")
    run.add_argument("--serving-key", default="")
    run.add_argument("--client-ca", default="", help="CA of clients of the kubelet API")
    run.add_argument("--kubelet-version", default="v0.0.0")
    run.add_argument("--max-pods", type=int, default=500)
    run.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    run.add_argument("--log-dir", default=str(DEFAULT_LOG_DIR))
    run.add_argument("--venv", default=str(REPO_ROOT / ".venv"))
    run.add_argument("-v", "--verbose", action="store_true")
    logs = sub.add_parser("logs", help="print a pod's output")
    logs.add_argument("pod", help="NAMESPACE/POD")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--log-dir", default=str(DEFAULT_LOG_DIR))
    args = parser.parse_args(argv)
    return cmd_run(args) if args.command == "run" else cmd_logs(args)


if __name__ == "__main__":
    sys.exit(main())
