"""Canonical forms, fingerprints and the text a monitor watches."""

from __future__ import annotations

import numpy as np

from drift_stream import TOPICS, prompt
from modelyard.monitoring.drift.fingerprints import canonical, fingerprint, prompt_text


def test_a_template_changed_by_its_numbers_only_keeps_its_fingerprint() -> None:
    a = "Where is my package 12345? It was supposed to arrive on 2026-03-04."
    b = "where is my  package 987? It was supposed to arrive on 2025-11-30."
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint("Where is my parcel 12345? It was supposed to arrive on 2026-03-04.")


def test_every_rendering_of_a_stream_template_without_word_slots_shares_one_fingerprint() -> None:
    rng = np.random.default_rng(0)
    template = TOPICS["billing"][1]  # only numbers vary
    prints = {fingerprint(prompt("billing", rng, template=1)) for _ in range(50)}
    assert len(prints) == 1, template


def test_masks() -> None:
    text = (
        "Mail Bob@Example.com about https://x.io/a?b=1 ticket 550e8400-e29b-41d4-a716-446655440000, "
        "commit deadbeef12 at 10:30 on 12/31/2026, total -3.5"
    )
    assert canonical(text) == (
        "mail <email> about <url> ticket <uuid>, commit <hex> at <date> on <date>, total <num>"
    )
    assert canonical("  Hello\n\tWORLD  ") == "hello world"
    assert fingerprint("x") == fingerprint("X") and len(fingerprint("x")) == 64


def test_prompt_text_takes_the_user_messages() -> None:
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url"}]},
    ]
    assert prompt_text(messages) == "first\nsecond"
    assert prompt_text([{"role": "system", "content": "only system"}]) == "only system"
    assert prompt_text("a completion prompt") == "a completion prompt"
    assert prompt_text(["a", "b"]) == "a\nb"
    assert prompt_text({"input": ["x"]}) == "x"
    assert prompt_text(None) == "" and prompt_text([1, 2, 3]) == ""
