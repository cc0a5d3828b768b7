"""A config file as plain data: YAML read safely, within the limits a config keeps.

A config is a small mapping of strings, numbers, booleans, lists and mappings. Reading one refuses,
in one line naming the file and the key path, what is none of these: YAML sets, binary or dates
(dates stay strings), keys that are not strings, a key given twice in one mapping, files too large to
be a config (or that are no regular file: a FIFO, a device), alias bombs that expand to billions of
values, and numbers no option means: an integer of more than :data:`MAX_INT_DIGITS` digits (Python would
refuse to convert one of 4,300) or a float literal of more than :data:`MAX_NUMBER_TEXT` characters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from utils.bounds import in_bounds, shown
from utils.errors import UserError
from utils.io import read_text
from utils.paths import check_path_text, not_found


def read_yaml(path: str | Path) -> Any:
    """The mapping a YAML config file holds (empty for an empty file); refuses anything else in one line."""
    check_path_text(str(path), "config")
    path = Path(path)
    if path.is_dir():
        raise UserError(f"config {path}: is a folder; expected a YAML file such as configs/default.yaml")
    if not path.exists():
        reason = not_found(path)
        raise UserError(f"config {path}: {'file not found' if reason == 'not found' else reason}")
    text = read_text(path, "config", MAX_CONFIG_BYTES)
    try:
        data = parse_yaml(text)
    except (yaml.YAMLError, RecursionError, ValueError) as err:
        raise UserError(f"config {path}: not valid YAML ({first_line(err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {path}: expected a mapping of sections at the top level")
    return data


MAX_CONFIG_BYTES = 1 << 20  # a config file is a few KiB; anything this large is not one
MAX_CONFIG_NODES = 100_000  # values after expanding YAML aliases (a 7-line alias bomb expands to billions)
MAX_CONFIG_DEPTH = 32  # nesting; the schema itself is at most 5 levels deep
MAX_INT_DIGITS = 30  # an integer literal; the config's own bound (assembly.config.MAX_INT) is 10 digits
MAX_NUMBER_TEXT = 64  # a float literal's characters
MAX_MAGNITUDE = 1e300  # numbers handed to the schema; its bounds are far smaller


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

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = len(str(node.value).replace("_", "").lstrip("+-"))
        if digits > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {digits} digits; no option takes more than {MAX_INT_DIGITS}",
                node.start_mark,
            )  # fmt: skip
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        if len(str(node.value)) > MAX_NUMBER_TEXT:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number written with more than {MAX_NUMBER_TEXT} characters", node.start_mark
            )
        return super().construct_yaml_float(node)


_PlainLoader.add_constructor("tag:yaml.org,2002:int", _PlainLoader.construct_yaml_int)
_PlainLoader.add_constructor("tag:yaml.org,2002:float", _PlainLoader.construct_yaml_float)


_PlainLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_yaml(text: str) -> Any:
    """Parse YAML text into plain data (dates stay strings); raises yaml.YAMLError or RecursionError."""
    return yaml.load(text, Loader=_PlainLoader)  # noqa: S506 - a SafeLoader subclass


def check_plain_data(data: Any, source: str) -> None:
    """Refuse what a config cannot hold: YAML sets, binary or dates, keys that are not strings, nesting
    deeper than :data:`MAX_CONFIG_DEPTH`, more than :data:`MAX_CONFIG_NODES` values once aliases are
    expanded, and numbers of a magnitude beyond :data:`MAX_MAGNITUDE` (or not finite: the schema's own
    bounds name those); the error names ``source`` and the key path. Data from JSON (a Flower message, a
    checkpoint) passes here too, so a huge integer never reaches a conversion to text."""
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
        elif isinstance(node, int) and not in_bounds(node, MAX_MAGNITUDE):
            raise UserError(f"{source}: {shown(node)}{at} is beyond any value an option takes")
        elif node is not None and not isinstance(node, (str, int, float, bool)):
            raise UserError(
                f"{source}: {type(node).__name__} values are not supported{at}; "
                "use strings, numbers, booleans, lists and mappings"
            )


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
