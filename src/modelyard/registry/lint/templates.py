"""What a template's Jinja2 tree says: the variables it reads and the ones it writes into its output.

Both work on the tree the sandboxed environment of :mod:`modelyard.registry.prompt_spec` parses,
so lint and rendering agree on the syntax. Positions are offsets into the template source
(Jinja2 nodes only carry line numbers; the column is the first occurrence of the name on that line
inside a ``{{ }}`` or ``{% %}`` tag).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jinja2
from jinja2 import meta, nodes

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_OUTPUT_TAG = re.compile(r"\{\{.*?\}\}", re.S)


@dataclass(slots=True, frozen=True)
class NameUse:
    name: str
    offset: int


def line_offset(source: str, lineno: int) -> int:
    """Offset of the first non-blank character of 1-based line ``lineno``."""
    start = 0
    for _ in range(max(lineno, 1) - 1):
        nl = source.find("\n", start)
        if nl < 0:
            break
        start = nl + 1
    end = source.find("\n", start)
    line = source[start : end if end >= 0 else len(source)]
    return start + (len(line) - len(line.lstrip()))


def name_offset(source: str, name: str, lineno: int, tags: re.Pattern[str] = _TAG) -> int:
    """Offset of ``name`` inside a tag on (or after) line ``lineno``; the line start if not found."""
    start = line_offset(source, lineno)
    line_start = source.rfind("\n", 0, start) + 1
    word = re.compile(rf"\b{re.escape(name)}\b")
    for tag in tags.finditer(source):
        if tag.end() <= line_start:
            continue
        m = word.search(tag.group(0))
        if m:
            return tag.start() + m.start()
    return start


def free_names(env: jinja2.Environment, tree: nodes.Template) -> set[str]:
    """Names the template reads from its context (the environment's globals such as ``range`` excluded)."""
    return set(meta.find_undeclared_variables(tree)) - set(env.globals)


def first_uses(source: str, tree: nodes.Template, names: set[str]) -> list[NameUse]:
    """The first use of each of ``names`` in ``tree``, in source order."""
    seen: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load" and node.name in names and node.name not in seen:
            seen[node.name] = name_offset(source, node.name, node.lineno)
    return sorted((NameUse(n, o) for n, o in seen.items()), key=lambda u: u.offset)


def interpolated(source: str, tree: nodes.Template, variables: set[str]) -> list[NameUse]:
    """Uses of ``variables`` whose value reaches the output (``{{ x }}``, ``{{ x | upper }}``, a loop
    variable over ``x``, a ``{% set %}`` from ``x``). A name only tested (``{% if x %}``, the condition
    of ``a if x else b``) does not reach the output and is not reported.
    """
    tainted = set(variables)
    origin = {v: v for v in variables}
    changed = True
    while changed:
        changed = False
        for node in tree.find_all((nodes.For, nodes.Assign)):
            assert isinstance(node, nodes.For | nodes.Assign)
            value = node.iter if isinstance(node, nodes.For) else node.node
            hit = next((n.name for n in _loads(value) if n.name in tainted), None)
            if hit is None:
                continue
            targets = (
                [node.target] if isinstance(node.target, nodes.Name) else node.target.find_all(nodes.Name)
            )
            for target in targets:
                if target.name not in tainted:
                    tainted.add(target.name)
                    origin[target.name] = origin[hit]
                    changed = True
    uses: dict[str, int] = {}
    for out in tree.find_all(nodes.Output):
        for expr in out.nodes:
            if isinstance(expr, nodes.TemplateData):
                continue
            for name in _loads(expr):
                var = origin.get(name.name)
                if name.name in tainted and var is not None and var not in uses:
                    uses[var] = name_offset(source, name.name, name.lineno, _OUTPUT_TAG)
    return sorted((NameUse(n, o) for n, o in uses.items()), key=lambda u: u.offset)


def _loads(expr: nodes.Node) -> list[nodes.Name]:
    """Name loads of ``expr`` outside the tests of conditional expressions."""
    if isinstance(expr, nodes.Name):
        return [expr] if expr.ctx == "load" else []
    found: list[nodes.Name] = []
    for child in expr.iter_child_nodes():
        if isinstance(expr, nodes.CondExpr) and child is expr.test:
            continue
        found += _loads(child)
    return found
