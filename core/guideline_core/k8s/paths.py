"""URL paths of Kubernetes resources: one builder for every call the components make."""

from __future__ import annotations

from urllib.parse import quote

from guideline_core import resource as gj


def path(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The path of a collection (`name` None; across all namespaces if `namespace` is None
    too), of one object, or of its subresource. `api_version` is `v1` for the core group,
    else `group/version`."""
    parts = ["api", api_version] if "/" not in api_version else ["apis", *api_version.split("/")]
    if namespace:
        parts += ["namespaces", namespace]
    parts.append(plural)
    if name:
        parts.append(name)
        if subresource:
            parts.append(subresource)
    return "/" + "/".join(quote(p, safe="") for p in parts)


def guidelinejobs(
    namespace: str | None = None, name: str | None = None, subresource: str | None = None
) -> str:
    """The path of GuidelineJobs (all namespaces if `namespace` is None), of one, or of its
    subresource (`status`)."""
    return path(gj.API_VERSION, gj.PLURAL, namespace, name, subresource)


def jobs(namespace: str | None = None, name: str | None = None) -> str:
    """The path of batch/v1 Jobs (all namespaces if `namespace` is None), or of one."""
    return path("batch/v1", "jobs", namespace, name)


def pods(namespace: str | None = None, name: str | None = None) -> str:
    """The path of pods (all namespaces if `namespace` is None), or of one."""
    return path("v1", "pods", namespace, name)


def namespace(name: str) -> str:
    """The path of a namespace."""
    return path("v1", "namespaces", name=name)


TOKEN_REVIEWS = path("authentication.k8s.io/v1", "tokenreviews")
