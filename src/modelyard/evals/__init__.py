"""Evaluation: suites, scorers (the LLM judge among them), the runner, reports and gates."""
