"""The runner: the process each Job pod runs. It reads its GuidelineJob, runs the two-step
chain (summarize the guideline, then build a checklist from the summary) with an LLM
provider, and writes the outcome to the GuidelineJob's status.

Layout: `chain` (the provider-agnostic chain, free of Kubernetes), `providers` (`openai`
and the offline `extractive`), `text` (splitting for map-reduce), `models` (result and
answer models), `errors` (failure classification and redaction), `status` (Kubernetes
I/O), `main` (the console script `guideline-runner`).
"""
