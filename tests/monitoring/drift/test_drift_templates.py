"""The Drain-style template miner: clustering, unseen templates and persisted state."""

from __future__ import annotations

import json

import numpy as np

from drift_stream import TOPICS, prompt
from modelyard.monitoring.drift.fingerprints import canonical
from modelyard.monitoring.drift.templates import WILDCARD, TemplateMiner


def test_renderings_of_one_template_join_one_cluster_and_differing_words_become_wildcards() -> None:
    miner = TemplateMiner()
    a = miner.add(canonical("Can you ship order 123 to paris instead of my home address?"))
    b = miner.add(canonical("Can you ship order 9 to berlin instead of my home address?"))
    assert a.id == b.id and b.size == 2
    assert WILDCARD in b.tokens and "<num>" in b.tokens
    c = miner.add(canonical("Give me a recipe for lasagna for 4 guests."))
    assert c.id != a.id


def test_the_stream_mines_pure_clusters_of_about_one_per_stream_template() -> None:
    rng = np.random.default_rng(1)
    miner = TemplateMiner()
    owner: dict[int, tuple[str, int]] = {}
    for topic in TOPICS:
        for i in range(len(TOPICS[topic])):
            for _ in range(20):
                c = miner.add(canonical(prompt(topic, rng, template=i)))
                assert owner.setdefault(c.id, (topic, i)) == (topic, i), "two templates merged"
    n_templates = sum(len(t) for t in TOPICS.values())
    # Drain splits by token count and by the first tokens, so a slot filled by one or two words
    # ("android phone") or a slot among the first two tokens splits a template; it never merges two.
    assert n_templates <= len(miner.clusters) <= 2 * n_templates


def test_a_new_template_is_unseen_and_state_round_trips_through_json() -> None:
    rng = np.random.default_rng(2)
    miner = TemplateMiner()
    for _ in range(100):
        miner.add(canonical(prompt("billing", rng)))
    restored = TemplateMiner.from_state(json.loads(json.dumps(miner.state())))
    known = canonical(prompt("billing", rng))
    assert restored.match(known) is not None
    assert restored.match(known).id == miner.match(known).id  # type: ignore[union-attr]
    assert restored.match(canonical(prompt("cooking", rng))) is None
    new = restored.add(canonical(prompt("cooking", rng)))
    assert new.id not in miner.clusters
