"""Pydantic wire models of the HTTP APIs (OpenAI-compatible and admin); no logic lives here."""
