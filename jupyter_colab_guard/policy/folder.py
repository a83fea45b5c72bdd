"""Reading a policy as YAML nodes: one file, or a folder of files merged into one.

A policy folder holds ``policy.yaml`` (version, name, tiers, settings, categories) and
any number of other ``*.yaml`` files below it (for example one per category under
``rules/`` and tool catalogues under ``catalogue/``), each with ``rules``,
``categories``, ``exceptions`` or ``lists``. Lists are named lists of strings; an item
``$name`` in any list of a rule stands for the items of the list ``name``. Every node
keeps the file it came from, so problems name the right file and line.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAIN = "policy.yaml"
MERGED = ("rules", "categories", "exceptions")  # lists concatenated across files
STR = "tag:yaml.org,2002:str"
REF = re.compile(r"^\$([a-z][a-z0-9_]*)$")  # $name: the items of list name


class NodeProblem(Exception):
    def __init__(self, path: str, line: int, key: str, message: str) -> None:
        super().__init__(message)
        self.path, self.line, self.key, self.message = path, line, key, message


def compose(text: str, path: str) -> Node | None:
    """YAML nodes of ``text`` whose marks name ``path``."""
    loader = yaml.SafeLoader(text)
    loader.name = path
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def folder_files(folder: Path) -> list[Path]:
    """``policy.yaml`` first, then every other YAML file below, in path order. Hidden
    files and folders are skipped (a Kubernetes ConfigMap keeps copies in ``..data``)."""
    others = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.is_file()
        and p != folder / MAIN
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    return [folder / MAIN, *others]


def version_of(texts: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for name, text in texts:
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()[:16]


def _key(k: Node) -> str:
    return str(k.value)


def _problem(node: Node, key: str, message: str) -> NodeProblem:
    return NodeProblem(node.start_mark.name, node.start_mark.line + 1, key, message)


def merge(parts: list[tuple[str, Node]]) -> MappingNode:
    """One root mapping from the main file's and the other files' roots."""
    main_path, main = parts[0]
    if not isinstance(main, MappingNode):
        raise NodeProblem(main_path, main.start_mark.line + 1, "", "must be a mapping")
    root = MappingNode(main.tag, list(main.value), main.start_mark, main.end_mark)
    index = {_key(k): i for i, (k, _) in enumerate(root.value)}
    for path, node in parts[1:]:
        if not isinstance(node, MappingNode):
            raise NodeProblem(path, node.start_mark.line + 1, "", "must be a mapping")
        for k, v in node.value:
            name = _key(k)
            if name not in (*MERGED, "lists"):
                raise NodeProblem(
                    path,
                    k.start_mark.line + 1,
                    name,
                    f"belongs in {MAIN} (other files hold only rules, categories, "
                    "exceptions and lists)",
                )
            if name not in index:
                index[name] = len(root.value)
                root.value.append((k, v))
                continue
            old_k, old = root.value[index[name]]
            kind = MappingNode if name == "lists" else SequenceNode
            if not isinstance(v, kind) or not isinstance(old, kind):
                raise NodeProblem(path, v.start_mark.line + 1, name, "must be a list")
            joined = kind(old.tag, [*old.value, *v.value], old.start_mark, old.end_mark)
            root.value[index[name]] = (old_k, joined)
    return root


def expand_lists(root: MappingNode) -> None:
    """Replace ``$name`` items with the named list's items; drop ``lists``."""
    lists: dict[str, list[Node]] = {}
    kept = []
    for k, v in root.value:
        if _key(k) != "lists":
            kept.append((k, v))
            continue
        if not isinstance(v, MappingNode):
            raise _problem(v, "lists", "must be a mapping")
        for lk, lv in v.value:
            name = _key(lk)
            where = f"lists.{name}"
            if name in lists:
                raise _problem(lk, where, "duplicate list")
            if not isinstance(lv, SequenceNode) or not all(
                isinstance(i, ScalarNode) for i in lv.value
            ):
                raise _problem(lv, where, "must be a list of strings")
            lists[name] = lv.value
    root.value = kept
    _expand(root, lists)


def _expand(node: Node, lists: dict[str, list[Node]]) -> None:
    if isinstance(node, MappingNode):
        for _, v in node.value:
            _expand(v, lists)
    elif isinstance(node, SequenceNode):
        out: list[Node] = []
        for item in node.value:
            text = item.value if isinstance(item, ScalarNode) and item.tag == STR else ""
            ref = REF.match(text) if isinstance(text, str) else None
            if ref:
                if ref[1] not in lists:
                    raise _problem(item, text, "no list of that name (declare it under lists)")
                out.extend(lists[ref[1]])
            else:
                _expand(item, lists)
                out.append(item)
        node.value = out


def document(folder: Path) -> object:
    """The merged policy of a folder as plain data (for schema checks), lists kept."""
    parts = []
    for path in folder_files(folder):
        node = compose(path.read_text(encoding="utf-8"), str(path))
        if node is not None:
            parts.append((str(path), node))
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(merge(parts))
    finally:
        loader.dispose()


def flatten(folder: Path) -> str:
    """The folder's policy as one YAML text (what a server hands to kernels and workers)."""
    return yaml.safe_dump(document(folder), sort_keys=False, allow_unicode=True, width=100)


def signature(path: Path) -> tuple[object, ...]:
    """Changes when any file of a policy file or folder does (for hot reload)."""
    files = folder_files(path) if path.is_dir() else [path]
    sig: list[object] = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            sig.append((str(f), "missing"))
            continue
        sig.append((str(f), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(sig)
