"""A RAG bundle served as a model: end to end through the real server with the official ``openai``
client (the generator is the mock upstream, which echoes the prompt it was sent)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from modelyard.cli import app
from servers import MockUpstream, RemoteServer, remote_config

KB = Path(__file__).parents[2] / "evals" / "rag"


def test_a_bundle_whose_template_lacks_context_is_refused_at_start_up(tmp_path: Path) -> None:
    cfg = tmp_path / "m.yaml"
    bundle = {"name": "kb-bot", "corpus": "kb", "model": "m", "template": "Q: {{question}}"}
    cfg.write_text(yaml.safe_dump({"rag": {"bundles": [bundle]}}))
    result = CliRunner().invoke(app, ["serve", "--config", str(cfg)])
    assert result.exit_code == 2 and "lacks {{context}}" in result.output


@pytest.fixture(scope="module")
def bundle_server(
    mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RemoteServer]:
    config = remote_config(mock_upstream.url)
    config["embedders"] = []
    config["rag"] = {"bundles": [{"name": "support-kb", "corpus": "kb", "model": "remote-chat", "top_k": 3}]}
    srv = RemoteServer(tmp_path_factory.mktemp("rag-bundle"), config)
    try:
        yield srv
    finally:
        srv.close()


@pytest.mark.slow
def test_rag_answer_end_to_end_with_citations(bundle_server: RemoteServer) -> None:
    http = httpx.Client(base_url=bundle_server.url + "/admin/rag", timeout=60)
    assert http.post("/corpora", json={"name": "kb"}).status_code == 201
    docs = [json.loads(line) for line in (KB / "documents.jsonl").read_text().splitlines()]
    assert http.post("/corpora/kb/documents", json={"documents": docs}).status_code == 200
    client = bundle_server.client
    question = "Who first spotted the planet Oberis?"
    resp = client.chat.completions.create(
        model="support-kb", messages=[{"role": "user", "content": question}]
    )
    rag = (resp.model_extra or {})["rag"]
    assert rag["bundle"] == "support-kb" and rag["corpus"] == "kb" and rag["version"] == 1
    assert rag["citations"][0]["document_id"] == "planet-oberis-discovery"
    assert rag["citations"][0]["chunk_id"].startswith("planet-oberis-discovery#")
    assert len(rag["citations"]) == 3 and rag["citations"][0]["score"] >= rag["citations"][1]["score"]
    answer = resp.choices[0].message.content or ""
    assert (
        "Ada Kowal" in answer and "[1] (planet-oberis-discovery)" in answer
    )  # the context reached the model
    stream = client.chat.completions.create(
        model="support-kb", messages=[{"role": "user", "content": question}], stream=True
    )
    chunks = list(stream)
    assert (chunks[0].model_extra or {})["rag"]["citations"][0]["document_id"] == "planet-oberis-discovery"
    assert "Ada Kowal" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    plain = client.chat.completions.create(model="remote-chat", messages=[{"role": "user", "content": "hi"}])
    assert "rag" not in (plain.model_extra or {})  # other models pass through the layer untouched
