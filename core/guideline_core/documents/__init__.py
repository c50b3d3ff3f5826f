"""Guideline documents shared by the API and the runner: format sniffing and text hygiene."""
