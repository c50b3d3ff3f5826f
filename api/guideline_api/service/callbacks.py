"""Checking the callback URLs of one submission request: each distinct host is resolved
once, the lookups run a few at a time, and all of them within one time budget, so a batch
of 500 items naming slow or dead hosts costs at most the budget, not 500 blocking lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait

from guideline_api.webhooks import targets

Resolver = Callable[[str, bool], targets.Target]
# Lookups made at once for one request (getaddrinfo blocks its thread).
MAX_PARALLEL_LOOKUPS = 8


def refusals(
    urls: Iterable[str], resolve: Resolver, *, allow_private: bool, budget_seconds: float
) -> dict[str, str | None]:
    """Each URL's refusal (None: webhooks may call it). A host is resolved once for all the
    URLs naming it (the addresses, and so the verdict, do not depend on the port or path);
    a host not resolved within `budget_seconds` refuses its URLs."""
    verdicts: dict[str, str | None] = {}
    by_host: dict[str, list[str]] = {}
    for url in dict.fromkeys(urls):
        try:
            host = targets.check_form(url).hostname or ""
        except targets.TargetRefusedError as exc:
            verdicts[url] = str(exc)
            continue
        by_host.setdefault(host, []).append(url)
    if not by_host:
        return verdicts
    pool = ThreadPoolExecutor(
        max_workers=min(MAX_PARALLEL_LOOKUPS, len(by_host)), thread_name_prefix="callback-dns"
    )
    try:
        lookups = {
            host: pool.submit(resolve, urls[0], allow_private) for host, urls in by_host.items()
        }
        done, _ = wait(lookups.values(), timeout=budget_seconds)
    finally:
        # A lookup still running cannot be interrupted; it ends on its own, unread.
        pool.shutdown(wait=False, cancel_futures=True)
    for host, lookup in lookups.items():
        verdict: str | None
        if lookup not in done:
            verdict = f"host {host!r} could not be checked within {budget_seconds:g} s"
        else:
            error = lookup.exception()
            if error is not None and not isinstance(error, targets.TargetRefusedError):
                raise error
            verdict = None if error is None else str(error)
        for url in by_host[host]:
            verdicts[url] = verdict
    return verdicts
