"""Field offsets -> file positions for each YAML scalar style."""

from __future__ import annotations

import pytest

from modelyard.registry.lint.source import SourceMap

TEXT = """name: p
messages:
  - role: user
    content: |
      line one
        indented {{ a }}
  - role: user
    content: "quoted {{ b }}"
  - role: user
    content: >
      folded first
      folded {{ c }}
  - role: user
    content: plain
      continued {{ d }}
parameters: {max_tokens: 3}
"""


@pytest.mark.parametrize(
    ("path", "needle", "expected"),
    [
        ("messages[0].content", "{{ a }}", (6, 18)),
        ("messages[1].content", "{{ b }}", (8, 22)),
        ("messages[2].content", "{{ c }}", (12, 14)),
        ("messages[3].content", "{{ d }}", (15, 17)),
    ],
)
def test_offsets_map_to_file_positions(path: str, needle: str, expected: tuple[int, int]) -> None:
    smap = SourceMap(TEXT)
    value = smap.nodes[path].value
    line, col = smap.locate(path, value, value.index(needle), needle)
    assert (line, col) == expected
    assert TEXT.splitlines()[line - 1][col - 1 :].startswith(needle)


def test_literal_blocks_need_no_needle_and_fields_point_at_keys() -> None:
    smap = SourceMap(TEXT)
    value = smap.nodes["messages[0].content"].value
    assert smap.locate("messages[0].content", value, value.index("{{ a }}")) == (6, 18)
    assert smap.field_position("parameters.max_tokens") == (16, 14)
    assert smap.field_position("messages[1]") == (7, 5)
    assert smap.field_position("nowhere") == (1, 1)


def test_broken_yaml_maps_everything_to_the_start() -> None:
    smap = SourceMap("name: [oops\n")
    assert smap.nodes == {} and smap.field_position("name") == (1, 1)
