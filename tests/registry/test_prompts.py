"""The prompt registry on SQLite and PostgreSQL: immutable versions, unchanged pushes, labels
(``latest`` automatic, protected ones), tenant ownership and visibility, the audit log, the revision."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from modelyard.errors import Conflict, InvalidRequest, PermissionDenied
from modelyard.registry import Registry
from modelyard.registry.prompt_book import PromptBook
from modelyard.registry.prompt_models import PromptVersionRow
from modelyard.registry.prompt_records import PromptNotFound
from modelyard.registry.prompt_spec import PromptSpecError, spec_from_dict
from modelyard.registry.prompts import ANY_TENANT, PromptRegistry
from modelyard.store.audit import AuditEntry


def qa(template: str = "What is the capital of {{ country }}?", **extra: object) -> object:
    return spec_from_dict(
        {
            "name": "capital-qa",
            "messages": [{"role": "system", "content": "City only."}, {"role": "user", "content": template}],
            "variables": [{"name": "country", "default": "France"}],
            **extra,
        }
    )


@pytest.fixture
def prompts(registry: Registry) -> PromptRegistry:
    return PromptRegistry(registry.engine)


def test_push_numbers_versions_and_an_unchanged_push_returns_the_latest(
    registry: Registry, prompts: PromptRegistry
) -> None:
    before = registry.revision()
    v1, created1 = prompts.push(qa(), commit_message="first", actor="key:k1")
    assert (v1.version, created1, v1.author, v1.commit_message) == (1, True, "key:k1", "first")
    assert v1.digest == qa().digest() and v1.digest.startswith("sha256:")
    again, created = prompts.push(qa(), commit_message="same")
    assert (again.version, created, again.commit_message) == (1, False, "first")
    v2, created2 = prompts.push(qa("Capital of {{ country }}?"), commit_message="shorter")
    assert (v2.version, created2) == (2, True)
    assert registry.revision() > before
    info = prompts.get("capital-qa")
    assert [v.version for v in info.versions] == [1, 2]
    assert info.labels == {"latest": 2}
    assert info.version(1).spec().messages[1].content == "What is the capital of {{ country }}?"  # type: ignore[union-attr,index]
    # Pushing v1's content again is a new version (only the latest is compared).
    v3, created3 = prompts.push(qa())
    assert (v3.version, created3) == (3, True)


def test_versions_are_immutable(registry: Registry, prompts: PromptRegistry) -> None:
    prompts.push(qa())
    with pytest.raises(Conflict), prompts._write_sessions.begin() as session:
        row = session.scalars(select(PromptVersionRow)).one()
        row.commit_message = "rewritten"
        session.flush()
    assert prompts.get("capital-qa").versions[0].commit_message == ""


def test_labels_move_latest_is_automatic_and_select_resolves(prompts: PromptRegistry) -> None:
    prompts.push(qa(), labels=["production"])
    prompts.push(qa("v2 {{ country }}"), labels=["staging"])
    info = prompts.get("capital-qa")
    assert info.labels == {"production": 1, "staging": 2, "latest": 2}
    assert info.select(None).version == 1  # production first
    assert info.select("staging").version == 2 and info.select("2").version == 2
    assert info.select("latest").version == 2
    info = prompts.set_label("capital-qa", "production", 2)
    assert info.labels["production"] == 2
    info = prompts.delete_label("capital-qa", "production")
    assert "production" not in info.labels and info.select(None).version == 2  # then latest
    for bad in ("latest", "Bad Label", ""):
        with pytest.raises(InvalidRequest) as exc:
            prompts.set_label("capital-qa", bad, 1)
        assert exc.value.param == "label"
    with pytest.raises(PromptNotFound) as nf:
        info.select("nope")
    assert nf.value.param == "prompt.version" and nf.value.status_code == 404
    with pytest.raises(PromptNotFound) as nf:
        prompts.set_label("capital-qa", "canary", 9)
    assert nf.value.param == "version"
    with pytest.raises(PromptNotFound):
        prompts.delete_label("capital-qa", "never-set")


def test_protected_labels_move_only_for_system_admins(prompts: PromptRegistry) -> None:
    prompts.push(qa(), tenant="acme")
    prompts.push(qa("v2 {{ country }}"), tenant="acme")
    with pytest.raises(PermissionDenied):
        prompts.set_label("capital-qa", "production", 1, tenant="acme", protected=True, system=False)
    prompts.set_label("capital-qa", "production", 1, tenant="acme", protected=True)
    assert prompts.get("capital-qa", "acme").protected == {"production"}
    for attempt in (
        lambda: prompts.set_label("capital-qa", "production", 2, tenant="acme", system=False),
        lambda: prompts.delete_label("capital-qa", "production", tenant="acme", system=False),
        lambda: prompts.push(qa("v3 {{ country }}"), tenant="acme", labels=["production"], system=False),
    ):
        with pytest.raises(PermissionDenied):
            attempt()
    assert prompts.get("capital-qa", "acme").labels["production"] == 1
    assert len(prompts.get("capital-qa", "acme").versions) == 2  # the refused push stored nothing
    prompts.set_label("capital-qa", "staging", 2, tenant="acme", system=False)  # unprotected: fine
    prompts.set_label("capital-qa", "production", 2, tenant="acme")  # the system admin may
    assert prompts.get("capital-qa", "acme").labels["production"] == 2


def test_tenant_prompts_and_visibility(prompts: PromptRegistry) -> None:
    prompts.push(qa("global {{ country }}"))
    prompts.push(qa("acme {{ country }}"), tenant="acme")
    prompts.push(spec_from_dict({"name": "only-acme", "text": "hi"}), tenant="acme")
    assert prompts.find("capital-qa", "acme").tenant == "acme"  # its own shadows the global one
    assert prompts.find("capital-qa", "globex").tenant is None
    assert prompts.find("capital-qa", None).tenant is None
    with pytest.raises(PromptNotFound) as exc:
        prompts.find("only-acme", "globex")
    assert "does not exist" in exc.value.message
    names = {(p.tenant, p.name) for p in prompts.list_prompts("globex")}
    assert names == {(None, "capital-qa")}
    assert {(p.tenant, p.name) for p in prompts.list_prompts("acme")} == {
        (None, "capital-qa"),
        ("acme", "capital-qa"),
        ("acme", "only-acme"),
    }
    assert len(prompts.list_prompts(ANY_TENANT)) == 3


def test_changes_are_audited(registry: Registry, prompts: PromptRegistry) -> None:
    prompts.push(qa(), labels=["production"], tenant="acme", actor="key:k9")
    prompts.delete_label("capital-qa", "production", tenant="acme", actor="key:k9")
    with prompts._read() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(r.actor, r.action, r.target) for r in rows] == [
        ("key:k9", "prompt.create", "acme/capital-qa"),
        ("key:k9", "prompt.version.create", "acme/capital-qa:1"),
        ("key:k9", "prompt.label.set", "acme/capital-qa@production"),
        ("key:k9", "prompt.label.delete", "acme/capital-qa@production"),
    ]


def test_bad_pushes_store_nothing(prompts: PromptRegistry) -> None:
    with pytest.raises(PromptSpecError) as exc:
        prompts.push(qa("{{ country "))
    assert exc.value.param == "messages[1].content"
    with pytest.raises(InvalidRequest) as exc:
        prompts.push(qa(), labels=["latest"])
    assert exc.value.param == "labels"
    with pytest.raises(InvalidRequest) as exc:
        prompts.push(spec_from_dict({"name": "bad name!", "text": "x"}))
    assert exc.value.param == "name"
    assert prompts.list_prompts() == []


def test_book_follows_the_revision(registry: Registry, prompts: PromptRegistry) -> None:
    book = PromptBook(registry, prompts)
    assert book.refresh() is True and book.refresh() is False
    with pytest.raises(PromptNotFound) as exc:
        book.lookup("capital-qa", None)
    assert exc.value.param == "prompt.id"
    prompts.push(qa(), labels=["production"])
    prompts.push(qa("v2 {{ country }}"))
    assert book.refresh() is True
    assert book.lookup("capital-qa", "acme").select(None).version == 1
    prompts.set_label("capital-qa", "production", 2)
    assert book.lookup("capital-qa", None).select(None).version == 1  # cached until refreshed
    book.refresh()
    version = book.lookup("capital-qa", None).select(None)
    assert version.version == 2 and book.spec(version) is book.spec(version)
