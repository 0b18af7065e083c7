"""Where a prompt's fields sit in its YAML source, and the suppression comments in it.

:class:`SourceMap` composes the YAML once (``yaml.compose``: nodes with their ``start_mark``) and
maps a field path (``messages[1].content``, ``variables[0]``, ``parameters.max_tokens``) plus an
offset inside that field's string value to a 1-based file line and column. The mapping is exact
for literal block scalars (``|``) and single-line scalars; for folded or multi-line plain/quoted
scalars it searches the raw source for the offending text and falls back to the scalar's start.

Suppression comments:

- a YAML comment ``# modelyard: disable=PL004,PL007`` silences those rules on its own line and on
  the line below it; ``# modelyard: disable-file=PL004`` silences them in the whole file;
- inside a template, ``{# modelyard: disable=PL007 #}`` silences the rules on the template's line
  of the comment and the next one; ``{# modelyard: disable-file=PL007 #}`` in the whole prompt.
  Template comments survive in the registry (YAML comments do not), and never reach a rendered prompt.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

import yaml

_DIRECTIVE = re.compile(r"modelyard:\s*(disable|disable-file)\s*=\s*([A-Za-z0-9_, \t]+)")
_YAML_COMMENT = re.compile(r"#\s*" + _DIRECTIVE.pattern)
_JINJA_COMMENT = re.compile(r"\{#-?\s*" + _DIRECTIVE.pattern + r"-?#\}")


def _ids(raw: str) -> set[str]:
    return {p.strip().upper() for p in raw.split(",") if p.strip()}


@dataclass(slots=True)
class Suppressions:
    """Rules switched off per file line, per template line, and for the whole file."""

    file_rules: set[str] = field(default_factory=set)
    lines: dict[int, set[str]] = field(default_factory=dict)  # 1-based file line -> rules
    template_lines: dict[tuple[str, int], set[str]] = field(default_factory=dict)  # (where, 0-based)

    def covers(self, rule: str, line: int, where: str, template_line: int | None) -> bool:
        if rule in self.file_rules:
            return True
        if rule in self.lines.get(line, ()) or rule in self.lines.get(line - 1, ()):
            return True
        if template_line is None:
            return False
        return any(
            rule in self.template_lines.get((where, n), ()) for n in (template_line, template_line - 1)
        )

    def add_template(self, where: str, source: str) -> None:
        for match in _JINJA_COMMENT.finditer(source):
            ids = _ids(match.group(2))
            if match.group(1) == "disable-file":
                self.file_rules |= ids
            else:
                self.template_lines.setdefault((where, source.count("\n", 0, match.start())), set()).update(
                    ids
                )


class SourceMap:
    """Field paths of a prompt's YAML source -> nodes, and offsets in their values -> file positions."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes: dict[str, yaml.Node] = {}
        self.keys: dict[str, yaml.Node] = {}
        self._scalars: list[tuple[int, int]] = []
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            root = None
        if root is not None:
            self._walk(root, "")

    def _walk(self, node: yaml.Node, path: str) -> None:
        self.nodes[path] = node
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                self._scalars.append((key.start_mark.index, key.end_mark.index))
                name = str(key.value)
                child = f"{path}.{name}" if path else name
                self.keys[child] = key
                self._walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, f"{path}[{i}]")
        else:
            self._scalars.append((node.start_mark.index, node.end_mark.index))

    def _position(self, index: int) -> tuple[int, int]:
        line = max(0, bisect.bisect_right(self._line_starts, index) - 1)
        return line + 1, index - self._line_starts[line] + 1

    def field_position(self, path: str) -> tuple[int, int]:
        """The 1-based position of ``path``'s key (for a mapping entry) or node; (1, 1) if unknown."""
        node = self.keys.get(path) or self.nodes.get(path)
        if node is None:
            return 1, 1
        return node.start_mark.line + 1, node.start_mark.column + 1

    def locate(self, path: str, value: str, offset: int, needle: str | None = None) -> tuple[int, int]:
        """The file position of ``value[offset]``, where ``value`` is the string at ``path``."""
        node = self.nodes.get(path)
        if not isinstance(node, yaml.ScalarNode):
            return self.field_position(path)
        start, end = node.start_mark, node.end_mark
        value_line = value.count("\n", 0, offset)
        value_col = offset - (value.rfind("\n", 0, offset) + 1)
        if node.style == "|":
            line0 = start.line + 1 + value_line
            return line0 + 1, self._block_indent(start.line + 1, end.line) + value_col + 1
        if needle:
            raw = self.text[start.index : end.index]
            nth = value.count(needle, 0, offset)
            at = -1
            for _ in range(nth + 1):
                at = raw.find(needle, at + 1)
                if at < 0:
                    break
            if at >= 0:
                return self._position(start.index + at)
        if start.line == end.line or (value_line == 0 and node.style in (None, "", "'", '"')):
            quote = 1 if node.style in ("'", '"') else 0
            return start.line + 1, start.column + 1 + quote + value_col
        return start.line + 1, start.column + 1

    def _block_indent(self, first: int, last: int) -> int:
        lines = self.text.splitlines()
        for n in range(first, min(last + 1, len(lines))):
            if lines[n].strip():
                return len(lines[n]) - len(lines[n].lstrip(" "))
        return 0

    def suppressions(self) -> Suppressions:
        """The YAML-comment suppressions (``#`` outside every scalar: a real comment, not template text)."""
        sup = Suppressions()
        for match in _YAML_COMMENT.finditer(self.text):
            if any(a <= match.start() < b for a, b in self._scalars):
                continue
            ids = _ids(match.group(2))
            if match.group(1) == "disable-file":
                sup.file_rules |= ids
            else:
                sup.lines.setdefault(self._position(match.start())[0], set()).update(ids)
        return sup
