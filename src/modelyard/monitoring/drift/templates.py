"""Template mining in the manner of Drain (He et al., "Drain: An Online Log Parsing Approach with
Fixed Depth Tree", ICWS 2017), on the canonical form of :mod:`.fingerprints`.

Why not the ``drain3`` library: its last release (0.9.11) pins ``cachetools==4.2.1`` exactly, and
``mlflow-skinny`` (in ``dev``) needs ``cachetools>=5``; pip resolves ``drain3`` beside it only by
backtracking to 0.9.1 (2021), which pins ``jsonpickle==1.4.1`` exactly and persists its state with
jsonpickle (decoding that state can construct arbitrary objects). Neither is worth a dependency.
This is the part of Drain3 we use, in ~100 lines: the same fixed-depth tree (token count, then the
first ``depth - 2`` tokens, tokens holding a mask or a digit going to the ``<*>`` branch), the same
similarity (the share of equal tokens, ``sim_th`` 0.4 as Drain3's default) and the same merge (positions
that differ become ``<*>``). The canonical form has already masked numbers, ids and dates, which is
what Drain3's masking instructions are for.

Cluster ids are integers handed out in order and never reused, so a template keeps its id as it
generalises; :meth:`TemplateMiner.state` / :meth:`TemplateMiner.from_state` persist the miner as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WILDCARD = "<*>"


@dataclass(slots=True)
class Cluster:
    id: int
    tokens: list[str]
    size: int = 1

    @property
    def template(self) -> str:
        return " ".join(self.tokens)


class TemplateMiner:
    """Online template miner; :meth:`add` returns the cluster a canonical prompt belongs to."""

    def __init__(self, *, depth: int = 4, sim_th: float = 0.4, max_children: int = 100) -> None:
        if depth < 3:
            raise ValueError("depth is at least 3 (the root, the length level and one token level)")
        self.depth, self.sim_th, self.max_children = depth, sim_th, max_children
        self.clusters: dict[int, Cluster] = {}
        self._tree: dict[Any, Any] = {}
        self._next_id = 1

    def add(self, canonical_text: str) -> Cluster:
        tokens = canonical_text.split() or [""]
        leaf = self._leaf(tokens, create=True)
        assert leaf is not None
        best = self._match(leaf, tokens)
        if best is None:
            best = Cluster(self._next_id, list(tokens))
            self._next_id += 1
            self.clusters[best.id] = best
            leaf.append(best.id)
            return best
        best.tokens = [a if a == b else WILDCARD for a, b in zip(best.tokens, tokens, strict=True)]
        best.size += 1
        return best

    def match(self, canonical_text: str) -> Cluster | None:
        """The cluster ``canonical_text`` would join, without changing the miner."""
        tokens = canonical_text.split() or [""]
        leaf = self._leaf(tokens, create=False)
        return None if leaf is None else self._match(leaf, tokens)

    def _leaf(self, tokens: list[str], *, create: bool) -> list[int] | None:
        node = self._tree.setdefault(len(tokens), {}) if create else self._tree.get(len(tokens))
        if node is None:
            return None
        for token in tokens[: self.depth - 2]:
            key = WILDCARD if _variable(token) else token
            if key not in node:
                if create and len(node) < self.max_children:
                    node[key] = {}
                else:
                    key = WILDCARD
                    if key not in node:
                        if not create:
                            return None
                        node[key] = {}
            node = node[key]
        return node.setdefault("", []) if create else node.get("")  # type: ignore[no-any-return]

    def _match(self, leaf: list[int], tokens: list[str]) -> Cluster | None:
        best, best_sim, best_params = None, -1.0, -1
        for cid in leaf:
            c = self.clusters[cid]
            same = sum(1 for a, b in zip(c.tokens, tokens, strict=True) if a == b and a != WILDCARD)
            params = sum(1 for a in c.tokens if a == WILDCARD)
            sim = same / len(tokens)
            if sim > best_sim or (sim == best_sim and params > best_params):
                best, best_sim, best_params = c, sim, params
        return best if best is not None and best_sim >= self.sim_th else None

    def state(self) -> dict[str, Any]:
        return {
            "version": 1, "depth": self.depth, "sim_th": self.sim_th, "max_children": self.max_children,
            "next_id": self._next_id,
            "clusters": [[c.id, c.tokens, c.size] for c in self.clusters.values()],
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TemplateMiner:
        miner = cls(depth=state["depth"], sim_th=state["sim_th"], max_children=state["max_children"])
        for cid, tokens, size in state["clusters"]:
            c = Cluster(int(cid), list(tokens), int(size))
            miner.clusters[c.id] = c
            leaf = miner._leaf(c.tokens, create=True)
            assert leaf is not None
            leaf.append(c.id)
        miner._next_id = int(state["next_id"])
        return miner


def _variable(token: str) -> bool:
    return token == WILDCARD or token.startswith("<") or any(ch.isdigit() for ch in token)
