"""Suppression comments: YAML line and file comments, template comments, and text that only looks like one."""

from __future__ import annotations

from pathlib import Path

from modelyard.registry.lint import lint_file, lint_spec
from modelyard.registry.lint.source import SourceMap
from modelyard.registry.prompt_spec import spec_from_dict

BASE = """name: p
messages:
  - role: system
    content: "Hi {{{{ who }}}}"{same}
  - role: user
    content: "Hello"
variables: [who]
parameters: {{max_tokens: 8}}
"""


def _rules(tmp_path: Path, text: str, *, suppressed: bool = False) -> set[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return {f.rule for f in lint_file(path).findings if f.suppressed == suppressed}


def test_unsuppressed_baseline(tmp_path: Path) -> None:
    assert _rules(tmp_path, BASE.format(same="")) == {"PL005", "PL007"}


def test_comment_on_the_same_line(tmp_path: Path) -> None:
    text = BASE.format(same="  # modelyard: disable=PL007")
    assert _rules(tmp_path, text) == {"PL005"}
    assert _rules(tmp_path, text, suppressed=True) == {"PL007"}


def test_comment_on_the_line_above_only(tmp_path: Path) -> None:
    above = BASE.format(same="").replace(
        '    content: "Hi', '    # modelyard: disable=PL007\n    content: "Hi'
    )
    assert _rules(tmp_path, above) == {"PL005"}
    two_above = BASE.format(same="").replace(
        "  - role: system", "  # modelyard: disable=PL007\n  - role: system"
    )
    assert _rules(tmp_path, two_above) == {"PL005", "PL007"}


def test_other_ids_and_lists(tmp_path: Path) -> None:
    assert _rules(tmp_path, BASE.format(same="  # modelyard: disable=PL004")) == {"PL005", "PL007"}
    assert _rules(tmp_path, BASE.format(same="  # modelyard: disable=PL004, pl007")) == {"PL005"}


def test_file_level_comment(tmp_path: Path) -> None:
    text = "# modelyard: disable-file=PL005,PL007\n" + BASE.format(same="")
    assert _rules(tmp_path, text) == set()
    assert _rules(tmp_path, text, suppressed=True) == {"PL005", "PL007"}


def test_template_comment_same_and_next_line() -> None:
    same = "{# modelyard: disable=PL007 #}Hi {{ who }}"
    next_line = "{#- modelyard: disable=PL007 -#}\nHi {{ who }}"
    far = "{# modelyard: disable=PL007 #}\n\nHi {{ who }}"
    for template, silenced in ((same, True), (next_line, True), (far, False)):
        spec = spec_from_dict(
            {
                "name": "p",
                "messages": [{"role": "system", "content": template}],
                "variables": ["who"],
                "parameters": {"max_tokens": 8},
            }
        )
        live = {f.rule for f in lint_spec(spec, None, "x") if not f.suppressed}
        assert ("PL007" not in live) is silenced, template


def test_template_file_comment_covers_the_prompt() -> None:
    spec = spec_from_dict(
        {
            "name": "p",
            "messages": [
                {"role": "system", "content": "{# modelyard: disable-file=PL007,PL006 #}{{ who }}"},
                {"role": "developer", "content": "{{ who }}"},
            ],
            "variables": ["who"],
        }
    )
    assert {f.rule for f in lint_spec(spec, None, "x") if not f.suppressed} == {"PL005"}


def test_directive_inside_a_block_scalar_is_template_text_not_a_comment(tmp_path: Path) -> None:
    text = """name: p
messages:
  - role: system
    content: |
      # modelyard: disable=PL007
      Hi {{ who }}
variables: [who]
parameters: {max_tokens: 8}
"""
    assert "PL007" in _rules(tmp_path, text)
    assert SourceMap(text).suppressions().lines == {}
