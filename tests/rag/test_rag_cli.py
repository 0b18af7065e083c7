"""``modelyard rag`` in-process with the real MiniLM and LanceDB: create, ingest, query, re-embed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli import app

KB = Path(__file__).parents[2] / "evals" / "rag"
runner = CliRunner()


def test_rag_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["rag", "--help"])
    assert result.exit_code == 0
    for command in ("create", "ingest", "query", "reembed", "evaluate", "versions", "alias"):
        assert command in result.output


@pytest.mark.slow
def test_ingest_query_and_a_refused_reembed(tmp_path: Path) -> None:
    cfg = tmp_path / "modelyard.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'data'}\n")
    base = ["--config", str(cfg)]
    assert runner.invoke(app, ["rag", "create", "kb", *base]).exit_code == 0
    result = runner.invoke(app, ["rag", "ingest", "kb", str(KB / "documents.jsonl"), *base])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert (
        report["documents_added"] == 200 and report["chunks_embedded"] == 200 and report["chunks_per_s"] > 0
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "legacy.txt").write_bytes(b"caf\xe9")
    result = runner.invoke(app, ["rag", "ingest", "kb", str(bad), *base])
    assert result.exit_code == 1 and "legacy.txt is not UTF-8" in result.output
    result = runner.invoke(
        app, ["rag", "query", "kb", "Who first spotted the planet Oberis?", "--top-k", "2", *base]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"][0]["document_id"] == "planet-oberis-discovery"
    args = ["rag", "reembed", "kb", "--embedder", "packaged:all-minilm-l6-v2", "--dimensions", "64"]
    result = runner.invoke(app, [*args, "--labels", str(KB / "queries.jsonl"), *base])
    assert result.exit_code == 3, result.output
    assert "kept version 1" in result.output and "ndcg@10" in result.output
    result = runner.invoke(app, ["rag", "versions", "kb", *base])
    listing = json.loads(result.stdout)
    assert listing["aliases"] == {"production": 1}
    assert [v["embedder"]["dimensions"] for v in listing["versions"]] == [384, 64]
    assert all(v["evaluation"]["metrics"]["recall@5"] > 0 for v in listing["versions"])
