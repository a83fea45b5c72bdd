"""Configuration files a cell writes (JSON, YAML, TOML, INI) as `key = value` lines.

`{"outbounds": [{"protocol": "vmess"}]}`, `outbounds:\\n  - protocol: vmess` and
`[[outbounds]]\\nprotocol = "vmess"` all read `outbounds.protocol = vmess`, so one string
rule (`protocol = vmess`) sees a tool's configuration whatever its format. Bounded: at most
MAX_CONFIG characters are parsed and MAX_LINES lines produced (YAML aliases cannot blow up).
"""

from __future__ import annotations

import configparser
import json
import posixpath
import tomllib
from collections.abc import Iterator
from typing import Any

import yaml

MAX_CONFIG = 64_000
MAX_LINES = 2_000
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
EXTENSIONS = frozenset(
    {".json", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".config", ".properties"}
)


def config_lines(path: str, content: str) -> str | None:
    """The flattened `key = value` lines of a configuration file; None when the file is
    not one (by its extension: the prefilter's marker sees the same names) or does not
    parse."""
    ext = posixpath.splitext(path)[1].lower()
    stripped = content.lstrip()
    if len(content) > MAX_CONFIG or not stripped or ext not in EXTENSIONS:
        return None
    data = _parse(ext, content, stripped)
    if not isinstance(data, dict | list):
        return None
    lines = list(_flatten(data))
    return "\n".join(lines) or None


def _parse(ext: str, content: str, stripped: str) -> Any:
    try:
        if ext == ".json":
            return json.loads(content)
        if ext in (".yaml", ".yml"):
            return yaml.load(content, Loader=_LOADER)
        if ext == ".toml":
            return tomllib.loads(content)
        if stripped[0] in "{[" and ext in (".conf", ".config"):
            return json.loads(content)  # v2ray/xray's config.conf is JSON
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read_string(content if stripped.startswith("[") else "[_]\n" + content)
        return {s: dict(parser.items(s)) for s in parser.sections()}
    except (ValueError, yaml.YAMLError, tomllib.TOMLDecodeError, configparser.Error):
        return None
    except RecursionError:
        return None


def _flatten(data: Any) -> Iterator[str]:
    """`path.to.key = value` per scalar (list items keep their parent's path)."""
    stack: list[tuple[str, Any]] = [("", data)]
    produced = visited = 0
    while stack and produced < MAX_LINES and visited < 10 * MAX_LINES:
        path, value = stack.pop()
        visited += 1
        if isinstance(value, dict):
            items = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
            stack.extend(reversed(items))
        elif isinstance(value, list | tuple):
            stack.extend((path, v) for v in reversed(value))
        else:
            produced += 1
            yield f"{path or '_'} = {_scalar(value)}"


def _scalar(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return "null" if value is None else str(value)
