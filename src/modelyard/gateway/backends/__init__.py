"""Backends behind one Protocol (:class:`~modelyard.gateway.backends.base.Backend`).

``local`` runs the built-in engine, ``openai_compat`` talks to any OpenAI-compatible server,
``embedding`` serves a sentence-embedding model.
"""

from modelyard.gateway.backends.base import Backend, BackendRequest, Endpoint

__all__ = ["Backend", "BackendRequest", "Endpoint"]
