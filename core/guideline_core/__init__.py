"""Code shared by the API, the operator and the runner: settings, database access, the
GuidelineJob resource's names and status model, structured logging."""


def version() -> str:
    """The project's one version: pyproject.toml's, read from the installed package."""
    from importlib.metadata import version as installed_version  # lazy: the runner's start

    return installed_version("guideline-ingest")
