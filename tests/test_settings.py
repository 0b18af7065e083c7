"""Settings layering (defaults < YAML < env < CLI flags) and start-up validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import ConfigError
from modelyard.settings import RouterPolicy, Settings, load_settings


def test_defaults() -> None:
    s = load_settings(env={})
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert [m.name for m in s.local_models] == ["smollm2-135m-instruct", "gemma-3-270m"]
    assert s.local_models[1].is_base_model
    assert [e.name for e in s.embedders] == ["all-minilm-l6-v2"]
    assert s.resolved_database_url.startswith("sqlite:///") and s.resolved_database_url.endswith(
        "modelyard.db"
    )
    assert str(s.resolved_data_dir).startswith(str(Path.home()))


def test_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "port: 9000\nhost: 0.0.0.0\nlimits: {max_n: 3, max_tokens: 100}\nrouter: {policy: latency}\n"
    )
    env = {"MODELYARD_PORT": "9100", "MODELYARD_LIMITS__MAX_N": "5", "MODELYARD_CONFIG": str(cfg)}
    s = load_settings(overrides={"port": 9200, "host": None}, env=env)
    assert s.port == 9200  # CLI flag beats env beats file
    assert s.host == "0.0.0.0"  # file beats default; a None flag is ignored
    assert s.limits.max_n == 5 and s.limits.max_tokens == 100  # env merges into the file's section
    assert s.router.policy is RouterPolicy.LATENCY
    assert load_settings(config=cfg, env={"MODELYARD_PORT": "9100"}).port == 9100


def test_env_json_lists() -> None:
    env = {
        "MODELYARD_DEPLOYMENTS": '[{"model": "m", "base_url": "http://h:1/v1/"}]',
        "MODELYARD_LOCAL_MODELS": "[]",
    }
    s = load_settings(env=env)
    assert s.deployments[0].base_url == "http://h:1/v1" and s.deployments[0].upstream_model is None
    assert s.local_models == []


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MODELYARD_PORT": "99999"}, "port = '99999'"),
        ({"MODELYARD_ROUTER__POLICY": "fastest"}, "router.policy = 'fastest'"),
        ({"MODELYARD_DEPLOYMENTS": '[{"model": "m", "base_url": "ftp://x"}]'}, "http:// or https://"),
        ({"MODELYARD_FALLBACKS": '{"a": ["ghost"]}'}, "unknown model 'ghost'"),
        ({"MODELYARD_DEPLOYMENTS": "[oops"}, "not valid JSON"),
        ({"MODELYARD_NO_SUCH_SETTING": "1"}, "no_such_setting"),
    ],
)
def test_errors_name_value_and_fix(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env=env)
    assert needle in exc.value.message


def test_bad_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("port: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(config=cfg, env={})
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(config=tmp_path / "missing.yaml", env={})


def test_every_field_is_documented() -> None:
    def walk(model: type) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                missing += walk(ann)
            elif not field.description:
                missing.append(f"{model.__name__}.{name}")
        return missing

    assert walk(Settings) == []
