"""A synthetic prompt stream for drift tests (importable as ``drift_stream``): prompts rendered from
templates of several topics with random slot values, whose topic mix can change half-way; and a
deterministic hashing bag-of-words embedder, so that the fast tests need no model.

Before the change the stream draws from ``BEFORE`` (billing, shipping, tech support); after it from
``AFTER`` (travel and cooking join, billing leaves).
"""

from __future__ import annotations

import zlib

import numpy as np

TOPICS: dict[str, list[str]] = {
    "billing": [
        "Why was I charged {amount} dollars on my {card} card for order {order}?",
        "Can I get a refund of {amount} dollars for invoice {order}?",
        "My bill for {month} shows {amount} twice, please fix it.",
        "How do I change the payment method on my account to {card}?",
        "Is there a discount if I pay {amount} dollars for the whole year?",
    ],
    "shipping": [
        "Where is my package {order}? It was supposed to arrive on {date}.",
        "Can you ship order {order} to {city} instead of my home address?",
        "The parcel for order {order} arrived damaged, what should I do?",
        "How long does delivery to {city} take for {n} items?",
        "Do you offer express shipping to {city} before {date}?",
    ],
    "tech": [
        "The app crashes when I open {feature} on my {device}.",
        "How do I reset the password for {email}?",
        "I cannot log in on my {device}, it says error {order}.",
        "The {feature} page is very slow since the update on {date}.",
        "How do I turn on two factor authentication for {email}?",
    ],
    "travel": [
        "Book a flight from {city} to {city2} on {date} for {n} people.",
        "What are good hotels in {city} under {amount} dollars a night?",
        "Which museums should I visit during {n} days in {city}?",
        "Is it better to take the train or fly from {city} to {city2}?",
        "What should I pack for a trip to {city} in {month}?",
    ],
    "cooking": [
        "Give me a recipe for {dish} for {n} guests.",
        "How long do I bake {dish} at {n} degrees?",
        "What can I use instead of eggs in {dish}?",
        "Suggest a wine that goes well with {dish}.",
        "How do I make {dish} without an oven?",
    ],
}
BEFORE = {"billing": 1.0, "shipping": 1.0, "tech": 1.0}
AFTER = {"shipping": 1.0, "tech": 1.0, "travel": 1.0, "cooking": 1.0}
SLOTS: dict[str, list[str]] = {
    "card": ["visa", "mastercard", "amex", "debit", "credit"],
    "month": ["january", "february", "march", "april", "may", "june", "july", "august"],
    "city": ["paris", "berlin", "madrid", "rome", "lisbon", "vienna", "prague", "oslo", "dublin"],
    "city2": ["london", "amsterdam", "brussels", "zurich", "munich", "milan", "porto"],
    "feature": ["settings", "checkout", "search", "profile", "notifications", "camera", "map"],
    "device": ["iphone", "android phone", "tablet", "laptop", "smart tv", "chromebook"],
    "dish": ["lasagna", "banana bread", "chicken curry", "ratatouille", "pancakes", "risotto", "paella"],
}


def prompt(topic: str, rng: np.random.Generator, template: int | None = None) -> str:
    templates = TOPICS[topic]
    t = templates[int(rng.integers(len(templates)))] if template is None else templates[template]
    values = {k: v[int(rng.integers(len(v)))] for k, v in SLOTS.items()}
    values.update(
        amount=str(int(rng.integers(5, 900))),
        order=f"{int(rng.integers(10_000, 99_999))}",
        date=f"2026-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}",
        n=str(int(rng.integers(2, 12))),
        email=f"user{int(rng.integers(1, 999))}@example.com",
    )
    return t.format(**values)


def window(n: int, mix: dict[str, float], rng: np.random.Generator) -> list[str]:
    names = list(mix)
    p = np.array([mix[k] for k in names])
    return [prompt(names[int(i)], rng) for i in rng.choice(len(names), size=n, p=p / p.sum())]


def stream(windows: int, size: int, change_at: int, seed: int = 0) -> list[list[str]]:
    """``windows`` windows of ``size`` prompts; windows from index ``change_at`` on use ``AFTER``."""
    rng = np.random.default_rng(seed)
    return [window(size, AFTER if i >= change_at else BEFORE, rng) for i in range(windows)]


class HashingEmbedder:
    """Bag of words hashed to ``dimensions`` signed buckets, L2-normalised (the Embedder protocol)."""

    max_input_tokens = 512

    def __init__(self, dimensions: int = 384) -> None:
        self.dimensions = dimensions

    def _words(self, text: str) -> list[str]:
        return "".join(c.lower() if c.isalnum() else " " for c in text).split()

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(self._words(t)) + 2 for t in texts]

    def decode(self, token_ids: list[int]) -> str:
        return " ".join(str(i) for i in token_ids)

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), np.float32)
        for i, text in enumerate(texts):
            for w in self._words(text):
                h = zlib.crc32(w.encode())
                out[i, h % self.dimensions] += 1.0 if (h >> 16) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)
