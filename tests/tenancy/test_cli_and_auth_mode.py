"""The tenancy CLI (usage export to CSV and Parquet, keys) and the ``auth: auto`` quick-start rule:
anonymous on a fresh loopback install, required once a system admin key exists."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from modelyard.cli import app
from modelyard.tenancy.records import Usage
from modelyard.tenancy.store import TenancyStore
from servers import MockUpstream, RemoteServer, remote_config
from tenancy_support import SECRET


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "modelyard.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "tenancy": {"secret": SECRET}}))
    return cfg


def test_usage_export_csv_and_parquet(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["tenants", "create", "acme", "-m", "m", "--config", str(cfg)]).exit_code == 0
    store = TenancyStore(f"sqlite:///{tmp_path / 'data' / 'modelyard.db'}", SECRET.encode())
    records = [
        Usage(
            id=uuid.uuid4().hex,
            request_id=f"r{i}",
            tenant_id="acme",
            key_id=None,
            model="m",
            endpoint="chat/completions",
            status="ok",
            prompt_tokens=i,
            completion_tokens=2 * i,
            cost=0.5,
        )
        for i in range(5)
    ]
    store.insert_usage(records)
    store.close()
    out = runner.invoke(app, ["usage", "summary", "--group-by", "tenant,day", "--config", str(cfg)])
    assert (
        out.exit_code == 0 and '"prompt_tokens": 10' in out.stdout and '"completion_tokens": 20' in out.stdout
    )
    for fmt in ("csv", "parquet"):
        path = tmp_path / f"usage.{fmt}"
        res = runner.invoke(app, ["usage", "export", str(path), "--format", fmt, "--config", str(cfg)])
        assert res.exit_code == 0, res.output
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(path.read_text())))
            assert sorted(int(r["prompt_tokens"]) for r in rows) == [0, 1, 2, 3, 4]
        else:
            table = pq.read_table(path).to_pylist()
            assert sum(r["completion_tokens"] for r in table) == 20 and {r["tenant_id"] for r in table} == {
                "acme"
            }


def test_auto_auth_is_anonymous_only_until_an_admin_key_exists(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    cfg = remote_config(mock_upstream.url, tenancy={"secret": SECRET})  # auth: auto (the default)
    cfg["embedders"] = []
    srv = RemoteServer(tmp_path, cfg)
    body = {"model": "remote-chat", "messages": [{"role": "user", "content": "hi"}]}
    try:
        assert httpx.post(srv.url + "/v1/chat/completions", json=body).status_code == 200
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "modelyard.cli",
                "keys",
                "create",
                "--admin",
                "--config",
                str(srv.config_path),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        admin = out.stdout.splitlines()[0]
        assert admin.startswith("my-") and admin not in out.stderr
        time.sleep(1.1)  # auto mode re-checks for an admin key at most once a second
        r = httpx.post(srv.url + "/v1/chat/completions", json=body)
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
        h = {"authorization": f"Bearer {admin}"}
        assert httpx.post(srv.url + "/v1/chat/completions", json=body, headers=h).status_code == 200
    finally:
        srv.close()
