"""The fake OpenAI-compatible server itself: answers the real SDK parses, scripted rules,
and control of a fake running as a separate process (as the cluster tests use it)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest
from support.fake_llm import FakeLLM, FakeLLMProcess

MESSAGES = [{"role": "user", "content": "Summarize this guideline."}]


def post(base_url: str, body: dict, step: str | None = None) -> tuple[int, dict, dict]:
    headers = {"Content-Type": "application/json"}
    if step:
        headers["X-Guideline-Step"] = step
    request = urllib.request.Request(
        base_url + "/chat/completions", data=json.dumps(body).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_the_sdk_parses_its_answers() -> None:
    with FakeLLM(
        {"summary": "S.", "checklist": [{"item": "A", "priority": "low", "category": "c"}]}
    ) as fake:
        client = openai.OpenAI(api_key="sk-fake", base_url=fake.base_url, max_retries=0)
        summary = client.chat.completions.create(model="m-1", messages=MESSAGES)
        checklist = client.chat.completions.create(
            model="m-1", messages=MESSAGES, response_format={"type": "json_object"}
        )
        client.close()

    assert summary.choices[0].message.content == "S."
    assert summary.choices[0].finish_reason == "stop"
    assert summary.model == "m-1"
    assert summary.usage is not None and summary.usage.total_tokens > 0
    assert json.loads(checklist.choices[0].message.content or "") == {
        "items": [{"item": "A", "priority": "low", "category": "c"}]
    }
    assert [r["step"] for r in fake.requests()] == ["summarize", "checklist"]
    assert fake.requests()[0]["authorization"] == "Bearer sk-fake"


def test_rules_apply_per_step_and_count_down() -> None:
    script = {
        "summary": "call {call}",
        "rules": [
            {"step": "checklist", "status": 500, "times": 1},
            {"status": 429, "times": 1, "retry_after": 2},
        ],
    }
    with FakeLLM(script) as fake:
        first = post(fake.base_url, {"messages": MESSAGES})
        second = post(fake.base_url, {"messages": MESSAGES})
        third = post(fake.base_url, {"messages": MESSAGES}, step="checklist")
        fourth = post(fake.base_url, {"messages": MESSAGES}, step="checklist")
        combine = post(fake.base_url, {"messages": MESSAGES}, step="combine")

    assert first[0] == 429 and first[1]["Retry-After"] == "2"
    assert first[2]["error"]["type"] == "rate_limit_error"
    assert second[0] == 200 and second[2]["choices"][0]["message"]["content"] == "call 2"
    assert third[0] == 500
    assert fourth[0] == 200
    assert combine[2]["choices"][0]["message"]["content"] == "call 1"
    assert [r["status"] for r in fake.requests()] == [429, 200, 500, 200, 200]
    assert [r["step"] for r in fake.requests("checklist")] == ["checklist", "checklist"]


def test_a_hang_is_released_when_the_fake_stops() -> None:
    fake = FakeLLM({"rules": [{"status": "hang", "seconds": 600}]}).start()
    client = openai.OpenAI(api_key="sk-fake", base_url=fake.base_url, max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    client.close()
    fake.stop()
    assert [r["status"] for r in fake.requests()] == ["hang"]


def test_a_fake_in_another_process_is_scripted_and_read_over_http() -> None:
    with FakeLLMProcess({"summary": "from the start script"}) as fake:
        status, _, body = post(fake.base_url, {"messages": MESSAGES, "model": "m"})
        assert (status, body["choices"][0]["message"]["content"]) == (200, "from the start script")
        assert len(fake.requests()) == 1

        fake.set_script({"rules": [{"status": 401, "message": "bad key {auth}"}]})
        assert fake.requests() == []  # a new script starts a new record
        status, _, body = post(fake.base_url, {"messages": MESSAGES})
        assert status == 401 and body["error"]["message"] == "bad key "
        assert [r["status"] for r in fake.requests("summarize")] == [401]

        fake.reset()
        assert fake.requests() == []
        process = fake._process
    assert process.poll() is not None
