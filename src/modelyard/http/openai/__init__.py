"""OpenAI-compatible HTTP endpoints (`/v1/...`)."""
