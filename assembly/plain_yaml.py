"""A config file as plain data: YAML read safely, within the limits a config keeps.

A config is a small mapping of strings, numbers, booleans, lists and mappings. Reading one refuses,
in one line naming the file and the key path, what is none of these: YAML sets, binary or dates
(dates stay strings), keys that are not strings, a key given twice in one mapping, files too large to
be a config, and alias bombs that expand to billions of values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from utils.errors import UserError
from utils.paths import not_found


def read_yaml(path: str | Path) -> Any:
    """The mapping a YAML config file holds (empty for an empty file); refuses anything else in one line."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"config {path}: is a folder; expected a YAML file such as configs/default.yaml")
    if not path.is_file():
        reason = not_found(path)
        raise UserError(f"config {path}: {'file not found' if reason == 'not found' else reason}")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise UserError(f"config {path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a config")
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
        raise UserError(f"config {path}: not valid YAML ({first_line(err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {path}: expected a mapping of sections at the top level")
    return data


MAX_CONFIG_BYTES = 1 << 20  # a config file is a few KiB; anything this large is not one
MAX_CONFIG_NODES = 100_000  # values after expanding YAML aliases (a 7-line alias bomb expands to billions)
MAX_CONFIG_DEPTH = 32  # nesting; the schema itself is at most 5 levels deep


class _PlainLoader(yaml.SafeLoader):
    """YAML's safe loader without the implicit timestamp type (``2024-01-01`` stays a string) and
    without silently merging a key given twice in one mapping (the last would win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
            if key in seen:
                where = f"on line {line}" if seen[key] == line else f"on lines {seen[key]} and {line}"
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key_node.value!r} appears twice in one mapping, {where}",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = line
        return super().construct_mapping(node, deep)


_PlainLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_yaml(text: str) -> Any:
    """Parse YAML text into plain data (dates stay strings); raises yaml.YAMLError or RecursionError."""
    return yaml.load(text, Loader=_PlainLoader)  # noqa: S506 - a SafeLoader subclass


def check_plain_data(data: Any, source: str) -> None:
    """Refuse what a config cannot hold: YAML sets, binary or dates, keys that are not strings, nesting
    deeper than :data:`MAX_CONFIG_DEPTH`, and more than :data:`MAX_CONFIG_NODES` values once aliases are
    expanded; the error names ``source`` and the key path."""
    count = 0
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        node, where, depth = stack.pop()
        count += 1
        at = f" at {where}" if where else ""
        if count > MAX_CONFIG_NODES:
            raise UserError(
                f"{source}: more than {MAX_CONFIG_NODES} values once YAML aliases are expanded; not a config"
            )
        if depth > MAX_CONFIG_DEPTH:
            raise UserError(f"{source}: nested deeper than {MAX_CONFIG_DEPTH} levels{at}")
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str) or not key:
                    raise UserError(f"{source}: keys must be non-empty strings, found {key!r}{at}")
                stack.append((value, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(node, list):
            stack.extend(
                (value, f"{where}.{i}" if where else str(i), depth + 1) for i, value in enumerate(node)
            )
        elif node is not None and not isinstance(node, (str, int, float, bool)):
            raise UserError(
                f"{source}: {type(node).__name__} values are not supported{at}; "
                "use strings, numbers, booleans, lists and mappings"
            )


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
