"""``modelyard top --once`` against the real server shows the models it served."""

from __future__ import annotations

from typer.testing import CliRunner

from modelyard.cli import app
from servers import RemoteServer


def test_top_once(server: RemoteServer) -> None:
    for _ in range(2):
        list(
            server.client.chat.completions.create(
                model="remote-chat", messages=[{"role": "user", "content": "a b c"}], stream=True
            )
        )
    out = CliRunner().invoke(app, ["top", "--url", server.url, "--once", "--interval", "0.2"])
    assert out.exit_code == 0, out.output
    line = next(ln for ln in out.output.splitlines() if "remote-chat" in ln)
    assert "TTFT p50 ms" in out.output and "active streams" in out.output
    assert int(line.split("│")[2]) >= 2  # requests column
    down = CliRunner().invoke(app, ["top", "--url", "http://127.0.0.1:9", "--once"])
    assert down.exit_code == 1 and "cannot read" in down.output
