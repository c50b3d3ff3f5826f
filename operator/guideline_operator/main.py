"""`guideline-operator`: runs the kopf operator in this process.

    guideline-operator --standalone                       # one operator (tests, local stack)
    guideline-operator --peering guideline --priority 10  # replicated: highest priority acts

Settings come from `GUIDELINE_*` environment variables (see `OperatorSettings` in
guideline_core.settings); flags override them. Prometheus metrics are served on
`--metrics-port` (default `metrics_port`), kopf's liveness probe on `--liveness`
(default `http://0.0.0.0:<liveness_port>/healthz`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence

import kopf
from guideline_core import db, logs
from guideline_core.k8s import KubeError
from guideline_core.k8s import pooled as k8s_pooled
from guideline_core.settings import OperatorSettings
from prometheus_client import REGISTRY, start_http_server

from guideline_operator import handlers, tracing
from guideline_operator.housekeeping import Heartbeat, identity
from guideline_operator.kubeapi import Kube
from guideline_operator.metrics import Metrics
from guideline_operator.mirror import DatabaseMirror
from guideline_operator.reconciler import Reconciler

log = logging.getLogger("guideline_operator")


class KopfRecordFilter(logging.Filter):
    """Makes kopf's per-object log records fit the JSON logs: drops kopf's internal extras
    (its settings object, the raw object reference) and adds the object's event_id."""

    def __init__(self, event_ids: Mapping[tuple[str, str], str]):
        super().__init__()
        self.event_ids = event_ids

    def filter(self, record: logging.LogRecord) -> bool:
        ref = getattr(record, "k8s_ref", None)
        for attr in ("k8s_ref", "k8s_skip", "settings"):
            if hasattr(record, attr):
                delattr(record, attr)
        if isinstance(ref, Mapping) and ref.get("name"):
            key = (ref.get("namespace") or "", ref["name"])
            record.object = f"{ref.get('kind', '')}/{key[0]}/{key[1]}"
            if not hasattr(record, "event_id") and key in self.event_ids:
                record.event_id = self.event_ids[key]
        return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="guideline-operator",
        description="The guideline-ingest operator: runs GuidelineJobs as batch/v1 Jobs and "
        "mirrors their state into the CR status and PostgreSQL.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--standalone", action="store_true", default=None, help="no peering (single operator)"
    )
    mode.add_argument("--peering", metavar="NAME", help="join kopf peering object NAME")
    parser.add_argument("--priority", type=int, help="peering priority (highest is active)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="namespace to serve (repeatable; default: GUIDELINE_NAMESPACE)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", default=None, help="serve every namespace"
    )
    parser.add_argument("--liveness", metavar="URL", help="kopf liveness endpoint, or 'off'")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port; 0 turns it off")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING ...")
    return parser.parse_args(argv)


def build_settings(args: argparse.Namespace) -> OperatorSettings:
    """Settings from the environment with the flags applied."""
    settings = OperatorSettings()
    overrides: dict[str, object] = {}
    if args.standalone:
        overrides["standalone"] = True
    if args.peering:
        overrides.update(standalone=False, peering_name=args.peering)
    if args.priority is not None:
        overrides["peering_priority"] = args.priority
    if args.all_namespaces:
        overrides["all_namespaces"] = True
    if args.namespace:
        overrides.update(namespace=args.namespace[0], all_namespaces=False)
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    if args.log_level:
        overrides["log_level"] = args.log_level
    return settings.model_copy(update=overrides)


def main(argv: Sequence[str] | None = None) -> None:
    """Console script entry point."""
    args = parse_args(argv)
    settings = build_settings(args)
    namespaces = None if settings.all_namespaces else (args.namespace or [settings.namespace])
    logs.configure(settings.log_level, component="operator")
    if logging.getLogger().level > logging.DEBUG:
        # kopf reports every handler run at INFO ("Handler ... succeeded"), and aiohttp
        # every liveness probe: only their warnings are worth a line.
        for noisy in ("kopf.objects", "aiohttp.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # One HTTP connection per handler worker plus the admission pass and the heartbeat:
    # a smaller pool makes workers wait for (or urllib3 discard) connections under load.
    kube = Kube(k8s_pooled.connect(pool_size=settings.handler_workers + 4))  # needs credentials
    database = db.Database(settings.database_url, minconn=1, maxconn=settings.handler_workers + 4)
    models = {*settings.allowed_models}
    for limits in settings.tenant_limits.values():
        models.update(limits.allowed_models or ())
    metrics = Metrics(  # the only model label values; tenants bounded
        REGISTRY,
        models=models,
        prices=settings.model_prices,
        tenants=settings.tenant_limits,
        max_tenants=settings.metrics_max_tenants,
    )
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="0.0.0.0", registry=REGISTRY)
    rec = Reconciler(
        settings,
        kube,
        DatabaseMirror(database, metrics, settings.model_prices),
        metrics,
        namespaces=namespaces,
        tracer=tracing.setup(),
    )
    heartbeat = Heartbeat(
        database,
        metrics,
        identity=identity(),
        interval=settings.heartbeat_interval_seconds,
        retention_days=settings.db_retention_days,
        purge_interval=settings.db_purge_interval_seconds,
        cache_retention_days=settings.chunk_cache_retention_days,
        audit_retention_days=settings.audit_retention_days,
    )
    log_filter = KopfRecordFilter(rec.event_ids)
    for handler in logging.getLogger().handlers:
        handler.addFilter(log_filter)
    registry = kopf.OperatorRegistry()
    handlers.register(registry, rec, heartbeat, settings)
    if settings.peering_name and not settings.standalone:
        for namespace in namespaces or [None]:
            try:
                rec.kube.ensure_peering(namespace, settings.peering_name)
            except KubeError as exc:  # e.g. no RBAC to create it: it must exist then
                log.warning(
                    "could not create the peering object",
                    extra={"peering": settings.peering_name, "status": exc.status},
                )
    liveness = args.liveness or f"http://0.0.0.0:{settings.liveness_port}/healthz"
    log.info(
        "starting",
        extra={
            "standalone": settings.standalone,
            "peering": settings.peering_name,
            "priority": settings.peering_priority,
            "metrics_port": settings.metrics_port,
            "liveness": None if liveness == "off" else liveness,
        },
    )
    kopf.run(
        registry=registry,
        settings=handlers.kopf_settings(settings),
        standalone=settings.standalone or not settings.peering_name,
        priority=settings.peering_priority,
        peering_name=None if settings.standalone else settings.peering_name,
        clusterwide=namespaces is None,
        namespaces=namespaces or (),
        liveness_endpoint=None if liveness == "off" else liveness,
    )


if __name__ == "__main__":
    main()
