"""docs/settings.md is generated from the settings tree; it must match the code exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import ConfigError
from modelyard.settings import Settings, load_settings
from modelyard.settings_docs import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_settings_reference_is_current() -> None:
    assert DOC.read_text() == render(), "regenerate: python -m modelyard.settings_docs > docs/settings.md"


def test_every_setting_is_in_the_reference() -> None:
    text = DOC.read_text()
    for name in Settings.model_fields:
        assert f"`{name}`" in text


@pytest.mark.parametrize(
    ("engine", "fragment"),
    [({"max_num_seqs": 0}, "engine.max_num_seqs=0"), ({"bogus": 1}, "unknown engine setting(s) ['bogus']")],
)
def test_bad_engine_settings_stop_start_up(engine: dict[str, int], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(overrides={"engine": engine}, env={})
    assert fragment in str(info.value)


def test_good_engine_settings_pass() -> None:
    assert load_settings(overrides={"engine": {"max_num_seqs": 4}}, env={}).engine == {"max_num_seqs": 4}
