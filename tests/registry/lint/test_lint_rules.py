"""Each lint rule against its failing and passing fixture, plus the scans' edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest
from lint_fixtures import FIXTURES, expected_positions, fixture_text, write_fixture

from modelyard.registry.lint import RULES, ModelCatalog, lint_file, lint_spec, spec_source
from modelyard.registry.lint.templates import interpolated
from modelyard.registry.lint.textscan import entropy, find_hidden_unicode, find_secrets
from modelyard.registry.prompt_spec import sandbox, spec_from_dict


def _params(kind: str) -> list:
    out = []
    for rule in RULES:
        name = f"{rule}_{kind}.yaml"
        marks = [pytest.mark.slow] if "model: smollm2" in fixture_text(name) else []
        out.append(pytest.param(rule, name, marks=marks, id=name))
    return out


def test_every_rule_has_both_fixtures() -> None:
    names = {p.name for p in FIXTURES.glob("*.yaml")}
    assert names == {f"{r}_{k}.yaml" for r in RULES for k in ("fail", "pass")}


@pytest.mark.parametrize(("rule", "name"), _params("fail"))
def test_failing_fixture_raises_the_rule_where_expected(
    rule: str, name: str, tmp_path: Path, catalog: ModelCatalog
) -> None:
    result = lint_file(write_fixture(name, tmp_path), catalog=catalog)
    got = {(f.rule, f.line, f.column) for f in result.findings if not f.suppressed}
    expected = expected_positions(name)
    assert expected and all(e[0] == rule for e in expected)
    assert set(expected) <= got, sorted(got)
    assert {f.rule for f in result.findings if (f.rule, f.line, f.column) in set(expected)} == {rule}


@pytest.mark.parametrize(("rule", "name"), _params("pass"))
def test_passing_fixture_does_not_raise_the_rule(
    rule: str, name: str, tmp_path: Path, catalog: ModelCatalog
) -> None:
    result = lint_file(write_fixture(name, tmp_path), catalog=catalog)
    assert rule not in {f.rule for f in result.findings}, result.findings
    assert not result.invalid


def test_registry_versions_lint_from_their_content() -> None:
    """The --registry path: a spec without a file, positions from spec_source, origin kept."""
    spec = spec_from_dict(
        {"name": "p", "messages": [{"role": "system", "content": "Hi {{ who }}"}], "variables": ["who"]}
    )
    findings = lint_spec(spec, None, "registry://p:3")
    by_rule = {f.rule: f for f in findings}
    assert set(by_rule) == {"PL005", "PL006", "PL007"}
    assert by_rule["PL007"].origin == "registry://p:3"
    line = spec_source(spec).splitlines()[by_rule["PL007"].line - 1]
    assert "{{ who }}" in line[by_rule["PL007"].column - 4 :]


def test_syntax_error_skips_variable_rules_that_need_a_tree() -> None:
    spec = spec_from_dict({"name": "p", "text": "{{ a ", "variables": ["b"], "parameters": {"max_tokens": 1}})
    assert {f.rule for f in lint_spec(spec, None, "x")} == {"PL001"}


@pytest.mark.parametrize(
    ("template", "reported"),
    [
        ("{{ a }}", {"a"}),
        ("{{ a | upper ~ '!' }}", {"a"}),
        ("{% for x in items %}{{ x.name }}{% endfor %}", {"items"}),
        ("{% set y = 'Hi ' ~ a %}{{ y }}", {"a"}),
        ("{% if a %}fixed{% endif %}", set()),
        ("{{ 'yes' if a else 'no' }}", set()),
        ("{% for x in items %}fixed{% endfor %}", set()),
    ],
)
def test_interpolation_follows_values_not_tests(template: str, reported: set[str]) -> None:
    tree = sandbox().parse(template)
    assert {u.name for u in interpolated(template, tree, {"a", "items"})} == reported


@pytest.mark.parametrize(
    "text",
    [
        "The password must be at least 16 characters long.",
        "Set api_key = {{ api_key }} in the header.",
        "token: abcdefghijklmnopqrstuvwxyz",
        "secret = 1111111111111111aaaa",
        "sk-this-is-not-a-real-key-just-a-long-phrase",
        "Our SKU is sk-1234 and the build hash is 3f2a9c.",
        "See https://example.com/docs?api_key=YOUR_KEY_HERE_123456",
    ],
)
def test_secret_scan_ignores_prose_and_placeholders(text: str) -> None:
    assert find_secrets(text) == []


def test_secret_messages_never_hold_the_secret() -> None:
    from lint_fixtures import SECRETS

    text = "\n".join(f"{k.lower()}: {v}" for k, v in SECRETS.items() if k != "GENERIC")
    text += f"\nclient_secret = {SECRETS['GENERIC']}"
    hits = find_secrets(text)
    assert len(hits) == len(SECRETS)
    for hit in hits:
        assert hit.needle not in hit.message
        assert all(v[6:] not in hit.message for v in SECRETS.values())


def test_entropy_separates_keys_from_words() -> None:
    assert entropy("9fQ2xL7pZr4KvB1mWs8TnY3cH6") > 4.0
    assert entropy("aaaaaaaaaaaaaaaa") == 0.0


def test_hidden_unicode_runs_and_allowed_joiners() -> None:
    hits = find_hidden_unicode("a\u200b\u200b\u200bb\u202ec\n\u2066")
    assert [(h.rule, h.offset) for h in hits] == [("PL010", 1), ("PL009", 5), ("PL009", 8)]
    assert "and 1 more" not in hits[0].message and hits[0].message.count("U+200B") == 3
    assert (
        find_hidden_unicode("\ufeffstart, then \U0001f468\u200d\U0001f469 and \u0645\u06cc\u200c\u062e") == []
    )
    assert [h.rule for h in find_hidden_unicode("a\u200db \u00ad")] == ["PL010", "PL010"]


def test_render_errors_need_no_target_model() -> None:
    spec = spec_from_dict(
        {"name": "p", "text": "{{ ''.__class__.__mro__ }}", "parameters": {"max_tokens": 1}}
    )
    findings = {f.rule: f for f in lint_spec(spec, None, "x")}
    assert set(findings) == {"PL011"} and findings["PL011"].where == "text"
