"""Request and response models of the REST API, one module per resource; the names
callers have always imported from `guideline_api.schemas` stay importable from here."""

from __future__ import annotations

from guideline_api.schemas.audit import AuditEntry, AuditPage
from guideline_api.schemas.batch import (
    BatchItem,
    BatchItemResult,
    BatchResult,
    ItemError,
    SubmitBatch,
)
from guideline_api.schemas.checklist import CHECKLIST_ITEM_SCHEMA, SOURCE_SCHEMA
from guideline_api.schemas.documents import DocumentInfo, DocumentWarning
from guideline_api.schemas.estimate import Cost, CostPrices, JobEstimate
from guideline_api.schemas.events import (
    EventQueue,
    JobEvent,
    JobProgress,
    ProgressEvent,
    QueueEvent,
    ReconnectEvent,
)
from guideline_api.schemas.health import CheckResult, Health, Liveness, OperatorHealth, Readiness
from guideline_api.schemas.jobs import (
    JOB_EXAMPLE,
    Amount,
    HistoryEntry,
    JobError,
    JobPage,
    JobStatus,
    JobTotals,
    JobView,
    QueueInfo,
)
from guideline_api.schemas.problems import FieldError, Problem
from guideline_api.schemas.runner import RunnerDocument, RunnerText
from guideline_api.schemas.submission import (
    CONTROL_RULE,
    MODEL_PATTERN,
    UUID_PATTERN,
    ReviewThresholds,
    SubmissionFields,
    SubmitDocument,
    SubmitJob,
)
from guideline_api.schemas.webhooks import WebhookDelivery, WebhookInfo

__all__ = [
    "CHECKLIST_ITEM_SCHEMA",
    "CONTROL_RULE",
    "JOB_EXAMPLE",
    "MODEL_PATTERN",
    "SOURCE_SCHEMA",
    "UUID_PATTERN",
    "Amount",
    "AuditEntry",
    "AuditPage",
    "BatchItem",
    "BatchItemResult",
    "BatchResult",
    "CheckResult",
    "Cost",
    "CostPrices",
    "DocumentInfo",
    "DocumentWarning",
    "EventQueue",
    "FieldError",
    "Health",
    "HistoryEntry",
    "ItemError",
    "JobError",
    "JobEstimate",
    "JobEvent",
    "JobPage",
    "JobProgress",
    "JobStatus",
    "JobTotals",
    "JobView",
    "Liveness",
    "OperatorHealth",
    "Problem",
    "ProgressEvent",
    "QueueEvent",
    "QueueInfo",
    "Readiness",
    "ReconnectEvent",
    "ReviewThresholds",
    "RunnerDocument",
    "RunnerText",
    "SubmissionFields",
    "SubmitBatch",
    "SubmitDocument",
    "SubmitJob",
    "WebhookDelivery",
    "WebhookInfo",
]
