"""Validate response bodies against OpenAI's published OpenAPI description (``components.schemas``).

The schemas modelyard's responses must satisfy, with everything they reference, are vendored in
``tests/http/schemas/openai-openapi-subset.json`` (MIT, OpenAI; extracted from openai/openai-openapi at commit
f85dbe223d40e1a31cba812ab2d755c7e98a92a3) so that a fresh clone tests without the 3 MB original.
Regenerate it from the original with::

    python tests/openai_schema.py /path/to/openapi.yaml

OpenAPI 3.1 schemas are JSON Schema 2020-12; the few OpenAPI 3.0 ``nullable: true`` forms are
rewritten to their 3.1 equivalent (``null`` added to the type) when the subset is loaded.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SUBSET = Path(__file__).parent / "http" / "schemas" / "openai-openapi-subset.json"
REFERENCE = Path("/work/shared/reference/openai-openapi/openapi.yaml")
ROOTS = (
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "CreateEmbeddingResponse",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
)
_URI = "urn:openai-openapi"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return out + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def extract(schemas: dict[str, Any]) -> dict[str, Any]:
    """The :data:`ROOTS` of ``schemas`` and every schema they reference, transitively."""
    need: dict[str, Any] = {}
    stack = list(ROOTS)
    while stack:
        name = stack.pop()
        if name in need:
            continue
        need[name] = schemas[name]
        stack += [r.rsplit("/", 1)[-1] for r in _refs(schemas[name])]
    return dict(sorted(need.items()))


def _nullable_to_31(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable_to_31(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable_to_31(v) for k, v in node.items()}
    if node.pop("nullable", False):
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        kind = node.get("type")
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
        elif isinstance(kind, list):
            node["type"] = [*kind, "null"]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


@cache
def _registry() -> Registry:  # type: ignore[type-arg]
    schemas = _nullable_to_31(json.loads(SUBSET.read_text()))
    document = {"components": {"schemas": schemas}}
    return Registry().with_resource(_URI, Resource.from_contents(document, default_specification=DRAFT202012))


def validate(name: str, body: Any) -> None:
    """Fail (an AssertionError naming every violation) if ``body`` is not a valid ``name``."""
    validator = Draft202012Validator({"$ref": f"{_URI}#/components/schemas/{name}"}, registry=_registry())
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        details = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors)
        raise AssertionError(f"not a valid OpenAI {name}: {details}\n{json.dumps(body)[:2000]}")


def as_final_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    """A completions stream chunk as the schema can check it.

    OpenAI streams ``/v1/completions`` as ``CreateCompletionResponse`` objects, but every chunk before
    the last has ``finish_reason: null``, which that schema (written for the whole response) does not
    allow; such a chunk is checked with the reason filled in, everything else as sent.
    """
    choices = [
        {**c, "finish_reason": "stop"} if isinstance(c, dict) and c.get("finish_reason") is None else c
        for c in chunk.get("choices", [])
    ]
    return {**chunk, "choices": choices}


def as_float_embeddings(response: dict[str, Any]) -> dict[str, Any]:
    """An embeddings response with ``encoding_format: base64`` vectors decoded (the schema only
    describes float lists; OpenAI sends little-endian float32 bytes in base64 for ``base64``)."""
    data = []
    for item in response.get("data", []):
        vector = item.get("embedding")
        if isinstance(vector, str):
            raw = base64.b64decode(vector, validate=True)
            assert len(raw) % 4 == 0, "base64 embedding is not float32 data"
            vector = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        data.append({**item, "embedding": vector})
    return {**response, "data": data}


if __name__ == "__main__":
    import yaml

    source = Path(sys.argv[1]) if len(sys.argv) > 1 else REFERENCE
    doc = yaml.load(source.read_text(), Loader=yaml.CSafeLoader)
    SUBSET.write_text(json.dumps(extract(doc["components"]["schemas"]), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SUBSET}")
