"""An in-memory kube-apiserver behind the one Kubernetes client (`guideline_core.k8s.Client`),
for fast Reconciler unit tests: `FakeClient()` is a real `Client` whose transport keeps the
objects in a dict instead of etcd, so the operator's adapter (`guideline_operator.kubeapi.Kube`)
and the client's own verbs (paging, create_if_missing, delete options) run unchanged.

What it models, as kube-apiserver does it (tests/test_fake_kube.py checks each against the
real control plane): objects by (apiVersion, plural, namespace, name); uid, resourceVersion
(one counter for the store, bumped only by a write that changes something), generation
(bumped by a change outside metadata and status), creationTimestamp; label selectors
(`=`, `==`, `!=`, `in`, `notin`, `k`, `!k`); paged lists (`limit`, `continue`); the status
subresource (a write to the object ignores status, one to /status everything else); JSON
merge patches (RFC 7386: None deletes) with a `metadata.resourceVersion` precondition;
finalizers (a delete only sets deletionTimestamp until they are gone); background garbage
collection of dependents (ownerReferences); and the errors, built from Status objects as
kube-apiserver's are (`guideline_core.k8s.errors.error_for`).

What it does not: controllers (the tests play the Job controller and the kubelet with
`FakeClient.start_pod` / status patches), admission webhooks and policies, schema
validation beyond an object's name and the GuidelineJob's immutable spec, watches.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from guideline_core import resource as gj
from guideline_core.k8s import Client, paths
from guideline_core.k8s.client import MERGE_PATCH, Query
from guideline_core.k8s.errors import KubeError, error_for

# (apiVersion, plural) -> (kind, namespaced, has a status subresource)
RESOURCES: dict[tuple[str, str], tuple[str, bool, bool]] = {
    ("v1", "namespaces"): ("Namespace", False, True),
    ("v1", "pods"): ("Pod", True, True),
    ("v1", "configmaps"): ("ConfigMap", True, False),
    ("batch/v1", "jobs"): ("Job", True, True),
    (gj.API_VERSION, gj.PLURAL): (gj.KIND, True, True),
    ("kopf.dev/v1", "kopfpeerings"): ("KopfPeering", True, False),
    ("kopf.dev/v1", "clusterkopfpeerings"): ("ClusterKopfPeering", False, False),
}
CUSTOM_GROUPS = {gj.API_VERSION, "kopf.dev/v1"}  # list items keep apiVersion and kind
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
Key = tuple[str, str, str, str]  # (apiVersion, plural, namespace or "", name)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, None deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _status_error(status: int, reason: str, message: str) -> KubeError:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason}
    return error_for(status, json.dumps({**body, "message": message, "code": status}))


def _not_found(plural: str, name: str) -> KubeError:
    return _status_error(404, "NotFound", f'{plural} "{name}" not found')


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _requirements(selector: str) -> Iterator[tuple[str, str, set[str]]]:
    """(key, operator, values) of a label selector's comma-separated requirements."""
    for part in re.findall(r"(?:[^,(]|\([^)]*\))+", selector or ""):
        part = part.strip()
        if match := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", part):
            values = {v.strip() for v in match.group(3).split(",")}
            yield match.group(1), match.group(2), values
        elif match := re.fullmatch(r"([^!=\s]+)\s*(==|=|!=)\s*(\S*)", part):
            op = "!=" if match.group(2) == "!=" else "="
            yield match.group(1), op, {match.group(3)}
        elif part.startswith("!"):
            yield part[1:].strip(), "!", set()
        else:
            yield part, "exists", set()


def selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """True if `labels` satisfy every requirement of `selector`."""
    for key, op, values in _requirements(selector or ""):
        present, value = key in labels, labels.get(key)
        ok = {
            "=": present and value in values,
            "!=": not present or value not in values,
            "in": present and value in values,
            "notin": not present or value not in values,
            "exists": present,
            "!": not present,
        }[op]
        if not ok:
            return False
    return True


def _split(path: str) -> tuple[str, str, str, str | None, str | None]:
    """(apiVersion, plural, namespace, name, subresource) of a path `paths.path` built."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[0] == "api":
        api_version, rest = parts[1], parts[2:]
    else:
        api_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    elif rest[:1] == ["namespaces"] and len(rest) == 2 and api_version == "v1":
        return api_version, "namespaces", "", rest[1], None
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    return api_version, plural, namespace, name, subresource


class FakeApiServer:
    """The in-memory kube-apiserver: a `guideline_core.k8s.Transport`."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.revision = 1
        self.calls: Counter[str] = Counter()  # "PATCH jobs/status" -> how many

    # --- the transport -------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One call, answered from the store."""
        api_version, plural, namespace, name, sub = _split(path)
        self.calls[f"{method} {plural}{'/' + sub if sub else ''}"] += 1
        resource = RESOURCES.get((api_version, plural))
        if resource is None:  # an unknown type: kube-apiserver's plain 404, no Status
            raise error_for(404, b"404 page not found\n", "Not Found")
        if method == "GET" and name is None:
            return self._list(api_version, plural, namespace or None, dict(query or []))
        if method == "GET":
            return copy.deepcopy(self._get((api_version, plural, namespace, name or "")))
        if method == "POST":
            return self._create(api_version, plural, namespace, copy.deepcopy(body))
        if method == "PATCH" and name is not None:
            if content_type != MERGE_PATCH:
                raise NotImplementedError(f"the fake only does merge patches, not {content_type}")
            return self._patch((api_version, plural, namespace, name), body, sub)
        if method == "DELETE" and name is not None:
            return self._delete((api_version, plural, namespace, name))
        raise NotImplementedError(f"{method} {path}")

    def close(self) -> None:
        """Nothing to release."""

    # --- the verbs -----------------------------------------------------------------------

    def _get(self, key: Key) -> dict[str, Any]:
        obj = self.objects.get(key)
        if obj is None:
            raise _not_found(key[1], key[3])
        return obj

    def _list(
        self, api_version: str, plural: str, namespace: str | None, query: dict[str, Any]
    ) -> dict[str, Any]:
        matching = [
            obj
            for (version, kind, ns, _), obj in sorted(self.objects.items())
            if (version, kind) == (api_version, plural)
            and (namespace is None or ns == namespace)
            and selector_matches(query.get("labelSelector"), obj["metadata"].get("labels") or {})
        ]
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or 0) or len(matching)
        page = matching[start : start + limit]
        items = [copy.deepcopy(obj) for obj in page]
        if api_version not in CUSTOM_GROUPS:  # built-in types' list items carry neither
            for item in items:
                item.pop("apiVersion", None)
                item.pop("kind", None)
        metadata: dict[str, Any] = {"resourceVersion": str(self.revision)}
        if start + limit < len(matching):
            metadata["continue"] = str(start + limit)
        return {
            "kind": f"{RESOURCES[api_version, plural][0]}List",
            "items": items,
            "metadata": metadata,
        }

    def _create(
        self, api_version: str, plural: str, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        kind, namespaced, has_status = RESOURCES[api_version, plural]
        metadata = body.setdefault("metadata", {})
        if metadata.get("namespace") not in (None, namespace) and namespaced:
            raise _status_error(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on "
                "the request",
            )
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + secrets.token_hex(3)[:5]
        name = metadata.get("name") or ""
        if not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
            raise _status_error(
                422,
                "Invalid",
                f'{kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": a '
                "lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.'",
            )
        if namespaced and (("v1", "namespaces", "", namespace) not in self.objects):
            raise _not_found("namespaces", namespace)
        key = (api_version, plural, namespace if namespaced else "", name)
        if key in self.objects:
            raise _status_error(409, "AlreadyExists", f'{plural} "{name}" already exists')
        body["apiVersion"], body["kind"] = api_version, kind
        if namespaced:
            metadata["namespace"] = namespace
        metadata.pop("deletionTimestamp", None)
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=_now())
        if "spec" in body:
            metadata["generation"] = 1
        if kind == "Namespace":
            metadata.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        if has_status:  # a create's status is dropped (the status subresource's)
            body.pop("status", None)
            if api_version not in CUSTOM_GROUPS:
                body["status"] = {"phase": "Pending"} if kind == "Pod" else {}
        self._store(key, body)
        return copy.deepcopy(body)

    def _patch(self, key: Key, patch: dict[str, Any], sub: str | None) -> dict[str, Any]:
        current = self._get(key)
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise _status_error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {key[1]} "{key[3]}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        has_status = RESOURCES[key[0], key[1]][2]
        if sub == "status":
            status = merge_patch(current.get("status") or {}, patch.get("status") or {})
            updated = {**current, "status": status}
        else:
            updated = merge_patch(current, patch)
            if has_status:
                updated["status"] = current.get("status")
                if updated["status"] is None:
                    updated.pop("status")
        updated["metadata"] = {
            **updated["metadata"],
            **{k: current["metadata"][k] for k in ("uid", "creationTimestamp", "resourceVersion")},
        }
        if updated == current:
            return copy.deepcopy(current)  # no change: no write, the same resourceVersion
        outside = {k: v for k, v in updated.items() if k not in ("metadata", "status")}
        changed = outside != {k: v for k, v in current.items() if k not in ("metadata", "status")}
        if changed and key[1] == gj.PLURAL:  # the CRD's CEL rule on spec
            raise _status_error(
                422,
                "Invalid",
                f'{gj.KIND}.{gj.GROUP} "{key[3]}" is invalid: spec: Invalid value: "object": '
                "spec is immutable after creation; create a new GuidelineJob instead",
            )
        if changed and "generation" in current["metadata"]:
            updated["metadata"]["generation"] = current["metadata"]["generation"] + 1
        meta = updated["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(key)
            return copy.deepcopy(updated)
        self._store(key, updated)
        return copy.deepcopy(updated)

    def _delete(self, key: Key) -> dict[str, Any]:
        obj = self._get(key)
        metadata = obj["metadata"]
        if metadata.get("finalizers"):
            if not metadata.get("deletionTimestamp"):
                updated = copy.deepcopy(obj)
                updated["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
                self._store(key, updated)
            return copy.deepcopy(self.objects[key])
        self._remove(key)
        return {"kind": "Status", "apiVersion": "v1", "status": "Success"}

    # --- storage -------------------------------------------------------------------------

    def _store(self, key: Key, obj: dict[str, Any]) -> None:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self.objects[key] = obj

    def _remove(self, key: Key) -> None:
        """Remove an object, then (the garbage collector, in the background) its
        dependents, and a namespace's objects with it."""
        obj = self.objects.pop(key)
        self.revision += 1
        uid = obj["metadata"]["uid"]
        for other_key, other in list(self.objects.items()):
            refs = other["metadata"].get("ownerReferences") or []
            owned = any(ref.get("uid") == uid for ref in refs)
            in_namespace = key[1] == "namespaces" and other_key[2] == key[3]
            if (owned or in_namespace) and other_key in self.objects:
                self._delete(other_key)


class FakeClient(Client):
    """The one Kubernetes client over `FakeApiServer`, with what the tests need to play the
    cluster's controllers and to count the calls made."""

    def __init__(self) -> None:
        self.server = FakeApiServer()
        super().__init__(self.server)

    def writes(self) -> int:
        """Calls that create, change or delete something, so far."""
        return sum(n for call, n in self.server.calls.items() if not call.startswith("GET"))

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        """A namespace (`labels`: e.g. its tenant)."""
        body = {"metadata": {"name": name, "labels": labels or {}}}
        self.create(paths.path("v1", "namespaces"), body)

    def start_pod(self, job: dict[str, Any], *, running: bool = True) -> dict[str, Any]:
        """What the Job controller and the kubelet do: a pod of `job`'s template, owned by
        it, and (`running`) its runner container started."""
        metadata, template = job["metadata"], job["spec"]["template"]
        pod = {
            "metadata": {
                **copy.deepcopy(template.get("metadata") or {}),
                "generateName": f"{metadata['name']}-",
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": metadata["name"],
                        "uid": metadata["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": copy.deepcopy(template["spec"]),
        }
        created = self.create(paths.pods(metadata["namespace"]), pod)
        if running:
            created = self.set_container_state(created, {"running": {"startedAt": _now()}})
        return created

    def set_container_state(self, pod: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        """The kubelet's report of the runner container's `state` (running / terminated)."""
        terminated = state.get("terminated")
        phase = "Running"
        if terminated is not None:
            phase = "Succeeded" if terminated.get("exitCode") == 0 else "Failed"
        status = {
            "phase": phase,
            "containerStatuses": [{"name": "runner", "state": state}],
        }
        metadata = pod["metadata"]
        path = paths.pods(metadata["namespace"], metadata["name"]) + "/status"
        return self.merge_patch(path, {"status": status})

    def set_job_condition(
        self, job: dict[str, Any], kind: str, reason: str = "", message: str = "", **counts: int
    ) -> dict[str, Any]:
        """The Job controller's verdict: condition `kind` (Complete, Failed) True, and the
        pod counts (`succeeded`, `failed`)."""
        condition = {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": _now(),
        }
        metadata = job["metadata"]
        path = paths.jobs(metadata["namespace"], metadata["name"]) + "/status"
        return self.merge_patch(path, {"status": {"conditions": [condition], **counts}})
