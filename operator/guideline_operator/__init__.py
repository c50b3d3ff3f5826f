"""The guideline-ingest operator: runs each GuidelineJob as batch/v1 Jobs and mirrors their
state into the GuidelineJob's status and its PostgreSQL row.

`main` wires it (`handlers`: which kopf event calls which `reconciler.Reconciler` method);
the pass itself uses `starts`, `cancel_retry`, `transitions`, `admission` over `queue`,
`mirror` and `rows` (the database side), `housekeeping`, and the pure functions of
`observe`, `conditions` and `manifests`; `kubeapi` is its Kubernetes adapter.

Glossary: "admission" means three things in this project (docs/contracts.md, "Glossary").
- admission (alone): the operator's queue pass (`admission.Admission`), which starts
  waiting runs while slots are free, tenants in turn; a run it started is "admitted".
- admission policy: kube-apiserver's CEL admission control of GuidelineJobs (the chart's
  and hack/manifests/' MutatingAdmissionPolicy / ValidatingAdmissionPolicy objects): the
  created-by annotation, the operator's finalizer at creation, the runner's status writes.
- Kueue admission: with `kueue_queue_name`, Kueue decides when a suspended Job starts;
  the operator's admission then only publishes the queue's figures.
"""
