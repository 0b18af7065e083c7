"""Fixtures of the tenancy tests; they live in ``tests/tenancy_support.py`` to be shared with
``tests/http/admin``."""

from tenancy_support import redis_prefix, store  # noqa: F401
