"""Lint the prompt registry: every labelled version (``latest`` included) of every prompt, any tenant.

Each version lints from its stored content with :func:`~modelyard.registry.lint.core.lint_spec`
(positions refer to :func:`~modelyard.registry.lint.core.spec_source` of it; template suppression
comments apply, YAML comments are not stored). A version is named
``registry://[TENANT/]NAME:VERSION``; unlabelled older versions are not linted (nothing serves them).
"""

from __future__ import annotations

from modelyard.errors import InvalidRequest
from modelyard.registry.lint.context import ModelCatalog
from modelyard.registry.lint.core import FileResult, invalid_result, lint_spec


def lint_registry(
    database_url: str | None, *, model: str | None = None, catalog: ModelCatalog | None = None
) -> list[FileResult]:
    """One result per labelled version, sorted by tenant, name and version (migrates the database)."""
    from modelyard.registry.prompts import ANY_TENANT, PromptRegistry
    from modelyard.registry.service import Registry
    from modelyard.store.db import default_database_url

    registry = Registry(database_url or default_database_url())
    try:
        registry.migrate()
        prompts = PromptRegistry(registry.engine).list_prompts(ANY_TENANT)
    finally:
        registry.close()
    results: list[FileResult] = []
    for info in sorted(prompts, key=lambda p: (p.tenant or "", p.name)):
        for version in info.versions:
            if not version.labels:
                continue
            origin = f"registry://{info.tenant + '/' if info.tenant else ''}{version.ref}"
            try:
                spec = version.spec()
            except InvalidRequest as exc:
                results.append(
                    invalid_result(origin, f"not a valid prompt: {exc.message}", 1, 1, exc.param or "")
                )
                continue
            results.append(FileResult(origin, lint_spec(spec, None, origin, model=model, catalog=catalog)))
    return results
