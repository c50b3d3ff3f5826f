"""The runner: the process each Job pod runs. It reads its GuidelineJob, runs the two-step
chain (summarize the guideline, then build a checklist from the summary) with an LLM
provider, and writes the outcome to the GuidelineJob's status.

Layout: `chain` (the provider-agnostic chain, free of Kubernetes: a package, one module a
concern), `providers` (`openai` and the offline `extractive`), `text` (sentences; the
map-reduce split), `grounding`, `obligations`, `quality`, `grades` and `citations` (what
the result says of each item), `models` (result and answer models), `errors` (failure
classification and redaction), `input` and `documents` (the job's text), `fit` (the
result's size bound), `chunk_cache`, `pacing` (rate limits), `tracing`, `progress`,
`guidelinejob_client` (Kubernetes I/O), `api_client` (the REST API's runner endpoints),
`backoff` (the retry loop those two share),
`main` (the console script `guideline-runner`).
"""
