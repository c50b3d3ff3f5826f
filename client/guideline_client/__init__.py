"""`guideline-client`: the command-line client of the REST API. It speaks only HTTP and imports
nothing of the server (an import-linter contract), so it runs from any machine that reaches
the API."""
