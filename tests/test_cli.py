"""The ``modelyard`` command line (typer), run in-process."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from modelyard.cli import app

runner = CliRunner()


def test_help_lists_serve() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "serve" in result.output


def test_serve_help_documents_flags() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--config", "--host", "--port", "--data-dir", "--database-url", "--log-level"):
        assert flag in result.output


def test_serve_rejects_bad_settings_before_starting(tmp_path: Path) -> None:
    cfg = tmp_path / "m.yaml"
    cfg.write_text("router: {policy: fastest}\n")
    result = runner.invoke(app, ["serve", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "router.policy" in result.output and "fastest" in result.output
