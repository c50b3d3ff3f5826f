"""One Kubernetes vocabulary for the components: a dict-in, dict-out `Client`, one error
hierarchy (`errors`), one path builder (`paths`) and the credentials (`credentials`), over
two transports: `stdlib` (the runner's fast start: no `kubernetes` import) and `pooled` (the
API and the operator; import it explicitly, as it imports the `kubernetes` package)."""

from guideline_core.k8s import paths
from guideline_core.k8s.client import MERGE_PATCH, Client, Transport
from guideline_core.k8s.errors import (
    AlreadyExistsError,
    ConflictError,
    ForbiddenError,
    KubeError,
    NotFoundError,
    RejectedError,
    UnavailableError,
)

__all__ = [
    "MERGE_PATCH",
    "AlreadyExistsError",
    "Client",
    "ConflictError",
    "ForbiddenError",
    "KubeError",
    "NotFoundError",
    "RejectedError",
    "Transport",
    "UnavailableError",
    "paths",
]
