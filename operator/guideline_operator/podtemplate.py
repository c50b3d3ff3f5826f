"""The runner pods' platform settings (pull secrets, scheduling, annotations, resources,
extra env), read from the JSON file the chart mounts from its ConfigMap `<release>-runner-pod`.

Shape (every key optional): `{"annotations": {...}, "spec": {<PodSpec fields below>},
"resources": {<ResourceRequirements>}, "env": [<EnvVar>, ...]}`. Only the PodSpec fields in
`SPEC_FIELDS` are taken: security context, ServiceAccount and volumes stay the operator's.
The file is re-read when it changes (the kubelet updates a mounted ConfigMap in place), so
a `helm upgrade` reaches the next Job without restarting the operator."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger("guideline_operator")
SPEC_FIELDS: Final = (
    "imagePullSecrets",
    "nodeSelector",
    "tolerations",
    "affinity",
    "priorityClassName",
)
KEYS: Final = frozenset({"annotations", "spec", "resources", "env"})


@dataclass(frozen=True)
class PodTemplate:
    """What the chart adds to every runner pod."""

    annotations: dict[str, str] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    env: list[dict[str, Any]] = field(default_factory=list)


def parse(data: Any) -> PodTemplate:
    """A PodTemplate from the file's JSON; ValueError on unknown keys or wrong types."""
    if not isinstance(data, dict) or not set(data) <= KEYS:
        raise ValueError(f"runner pod template: expected an object with keys {sorted(KEYS)}")
    spec = data.get("spec") or {}
    unknown = set(spec) - set(SPEC_FIELDS)
    if unknown:
        raise ValueError(f"runner pod template: spec fields not allowed: {sorted(unknown)}")
    template = PodTemplate(
        annotations=dict(data.get("annotations") or {}),
        spec={k: v for k, v in spec.items() if v not in (None, "", [], {})},
        resources=dict(data.get("resources") or {}),
        env=list(data.get("env") or []),
    )
    if not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in template.env):
        raise ValueError("runner pod template: env entries need a name")
    return template


_cache: dict[str, tuple[int, PodTemplate]] = {}
_lock = threading.Lock()


def load(path: str) -> PodTemplate:
    """The template in `path` (cached until the file changes); empty when `path` is ""."""
    if not path:
        return PodTemplate()
    stamp = os.stat(path).st_mtime_ns  # follows the kubelet's ..data symlink
    with _lock:
        cached = _cache.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
    with open(path, encoding="utf-8") as handle:
        template = parse(json.load(handle))
    with _lock:
        _cache[path] = (stamp, template)
    log.info("runner pod template loaded", extra={"path": path})
    return template


def apply(pod_template: dict[str, Any], template: PodTemplate) -> None:
    """Adds `template` to a Job's `spec.template` in place. The operator's own annotations
    and env (the contract with the runner) win over the chart's."""
    metadata = pod_template.setdefault("metadata", {})
    metadata["annotations"] = {**template.annotations, **(metadata.get("annotations") or {})}
    spec = pod_template["spec"]
    spec.update(template.spec)
    container = spec["containers"][0]
    if template.resources:
        container["resources"] = template.resources
    env = container.setdefault("env", [])
    own = {e["name"] for e in env}
    env.extend(e for e in template.env if e["name"] not in own)
