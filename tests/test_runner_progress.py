"""A job's progress as the chain counts it (sections and calls done of total, against the
calls the fake LLM really received) and as the runner publishes it (throttled, at once at
the end of a round, never holding up a call)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from guideline_core.settings import RunnerSettings
from guideline_core.splitting import checklist_sections
from guideline_runner.chain import run_chain
from guideline_runner.chain.checklist import section_key
from guideline_runner.models import PartialSummary
from guideline_runner.progress import Progress, Publisher, Snapshot
from guideline_runner.providers import make_provider
from support.fake_llm import FakeLLM
from test_runner_chain import guideline_block, sectioned_guideline, settings_for, valve_rules


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


class Recorder:
    """Every snapshot `Progress` reports, with whether it ended a round."""

    def __init__(self) -> None:
        self.seen: list[tuple[Snapshot, bool]] = []
        self._lock = threading.Lock()

    def __call__(self, snapshot: Snapshot, round_end: bool) -> None:
        with self._lock:
            self.seen.append((snapshot, round_end))

    @property
    def last(self) -> Snapshot:
        return self.seen[-1][0]


def counted_chain(
    fake: FakeLLM, text: str, partial: PartialSummary | None = None, **overrides: Any
) -> Recorder:
    settings = settings_for(fake, **overrides)
    provider = make_provider(settings)
    recorder = Recorder()
    try:
        run_chain(text, settings, provider, partial, progress=Progress(recorder))
    finally:
        provider.close()
    return recorder


def assert_consistent(recorder: Recorder) -> None:
    """Done never passes the total, and neither count goes back."""
    previous = Snapshot()
    for snapshot, _ in recorder.seen:
        assert snapshot.calls_done <= snapshot.calls_total
        assert snapshot.sections_done <= snapshot.sections_total
        assert snapshot.calls_done >= previous.calls_done
        assert snapshot.sections_done >= previous.sections_done
        assert snapshot.calls_total >= previous.calls_total
        previous = snapshot


def test_a_long_guideline_counts_every_call_and_section_it_makes(fake: FakeLLM) -> None:
    text = sectioned_guideline(24)
    fake.set_script(
        {"summary": "part {call}.", "combine": "C.", "checklist": "obligations", "latency": 0.05}
    )

    recorder = counted_chain(fake, text, chunk_chars=600, llm_concurrency=4)

    sections = len(checklist_sections(text, 600))
    calls = len(fake.requests())
    assert sections > 4 and len(fake.requests("combine")) >= 1
    assert recorder.last == Snapshot(
        sections_done=sections, sections_total=sections, calls_done=calls, calls_total=calls
    )
    assert_consistent(recorder)
    # The sections are known from the start; the checklist calls are planned then too.
    first = recorder.seen[0][0]
    assert first.sections_total == sections and first.calls_total >= sections
    # One change per answered call, and the rounds' ends: map, each combine round, checklist.
    answered = [s for s, end in recorder.seen if not end]
    rounds = [s for s, end in recorder.seen if end]
    steps = itertools.pairwise(answered)
    assert sum(1 for a, b in steps if b.calls_done > a.calls_done) >= calls - 1
    assert len(rounds) >= 3
    # A section is done when its checklist answer is in, not before.
    summary_calls = calls - sections
    for snapshot, _ in recorder.seen:
        assert snapshot.sections_done == max(0, snapshot.calls_done - summary_calls)


def test_a_retry_counts_the_kept_sections_as_done_and_plans_only_the_others(
    fake: FakeLLM,
) -> None:
    text = sectioned_guideline(24)
    sections = checklist_sections(text, 600)
    fake.set_script({"checklist": "obligations"})
    kept = {section_key(s): [] for s in sections[:3]}
    partial = PartialSummary.model_validate(
        {"summary": "Kept summary.", "attempt": 1, "sections": kept}
    )

    recorder = counted_chain(fake, text, partial, chunk_chars=600, llm_concurrency=2)

    asked = [guideline_block(r) for r in fake.requests("checklist")]
    assert len(asked) == len(sections) - 3 and fake.requests("summarize") == []
    assert recorder.seen[0][0].sections_total == len(sections)
    assert any(s.sections_done == 3 and s.calls_done == 0 for s, _ in recorder.seen)
    assert recorder.last == Snapshot(len(sections), len(sections), len(asked), len(asked))
    assert_consistent(recorder)


def test_a_short_guideline_is_two_calls_and_one_section(fake: FakeLLM) -> None:
    fake.set_script({"checklist": "obligations"})

    recorder = counted_chain(fake, valve_rules(5))

    assert recorder.last == Snapshot(1, 1, 2, 2)
    assert [s.calls_done for s, end in recorder.seen if end] == [1, 2]


def test_the_extractive_provider_counts_its_two_steps() -> None:
    settings = RunnerSettings(provider="extractive")
    recorder = Recorder()

    run_chain(valve_rules(200), settings, make_provider(settings), progress=Progress(recorder))

    assert recorder.last == Snapshot(1, 1, 2, 2)


class Writes:
    """What a publisher wrote, and when."""

    def __init__(self, fail_first: int = 0) -> None:
        self.done: list[tuple[float, Snapshot]] = []
        self.fail_first = fail_first

    def __call__(self, snapshot: Snapshot) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("apiserver said no")
        self.done.append((time.monotonic(), snapshot))


def wait_until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_publisher_writes_at_most_once_per_interval_and_the_latest_counts() -> None:
    writes = Writes()
    publisher = Publisher(writes, interval=0.4)
    progress = Progress(publisher.offer)
    progress.plan(calls=100, sections=10)
    started = time.monotonic()
    try:
        for _ in range(100):
            progress.call_done()
            time.sleep(0.01)
        # The last counts are written once the interval has passed, with no further change.
        wait_until(lambda: writes.done and writes.done[-1][1].calls_done == 100)
    finally:
        publisher.close()
    elapsed = time.monotonic() - started
    assert len(writes.done) <= elapsed / 0.4 + 2  # not one write per call
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(writes.done)]
    assert all(gap >= 0.35 for gap in gaps), gaps
    assert [s.calls_done for _, s in writes.done] == sorted({s.calls_done for _, s in writes.done})


def test_the_end_of_a_round_is_written_at_once_and_a_failed_write_is_not_fatal() -> None:
    writes = Writes(fail_first=1)
    publisher = Publisher(writes, interval=1.0)
    progress = Progress(publisher.offer)
    try:
        progress.plan(calls=2)  # written (and failing) once the first interval has passed
        wait_until(lambda: writes.fail_first == 0, timeout=3)
        progress.call_done()
        progress.call_done()
        progress.round_done()
        asked = time.monotonic()
        wait_until(lambda: len(writes.done) == 1, timeout=3)
        # Within the interval since the last write: the round's end does not wait for it.
        assert writes.done[0][0] - asked < 0.5
        assert writes.done[0][1] == Snapshot(0, 0, 2, 2)
        progress.round_done()  # nothing changed: nothing written
        time.sleep(0.2)
        assert len(writes.done) == 1
    finally:
        publisher.close()
    assert not any(t.name == "progress" and t.is_alive() for t in threading.enumerate())


def test_a_run_shorter_than_the_interval_writes_nothing() -> None:
    writes = Writes()
    publisher = Publisher(writes, interval=5)
    progress = Progress(publisher.offer)
    progress.plan(calls=2, sections=1)
    progress.call_done()
    progress.round_done()
    progress.call_done(1)
    progress.round_done()
    time.sleep(0.2)
    publisher.close()
    assert writes.done == []


def test_closing_writes_the_last_counts_once() -> None:
    writes = Writes()
    publisher = Publisher(writes, interval=1.0)
    progress = Progress(publisher.offer)
    progress.plan(calls=3)
    wait_until(lambda: len(writes.done) == 1)
    progress.call_done()  # within the interval: not written yet
    time.sleep(0.1)
    assert len(writes.done) == 1
    publisher.close()
    publisher.close()
    assert [s.calls_done for _, s in writes.done] == [0, 1]
