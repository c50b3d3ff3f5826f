"""Code shared by the API, the operator and the runner: settings, database access, the
GuidelineJob resource's names and status model, structured logging."""
