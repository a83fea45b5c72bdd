"""Strict loading of policy YAML: every problem names the file, line and key."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .folder import MAIN, NodeProblem, compose, expand_lists, folder_files, merge, version_of
from .keywords import regex_keywords, sharpened, word
from .model import (
    LEAF_KINDS,
    LOOP_ENDLESS,
    LOOP_REPEATED,
    Category,
    Combinator,
    Leaf,
    Matcher,
    Policy,
    PolicyException,
    Rule,
)
from .regex import Regex, RegexError, compile_regex

ACTIONS = ("log", "warn", "block")
SEVERITIES = ("low", "medium", "high", "critical")
CATEGORY_ID = re.compile(r"^[a-z][a-z0-9_]*$")
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
MANAGERS = ("pip", "conda", "apt", "npm")
REPO_NAME = re.compile(r"[\w.-]+(?:/[\w.-]+)?")  # a repository's name, or owner/name
MIN_SIGNATURE = 4  # characters of a binary signature; shorter ones occur in any file
ADDRESSES = ("public", "any")  # listen: which local addresses count (public: not loopback)
PORT_SPAN = re.compile(r"^(\d{1,9})(?:\s*-\s*(\d{1,9}))?$")  # listen: "22" or "5900-5910"


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.key}: {self.message}"


class PolicyError(Exception):
    """A policy file that cannot be used. ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def normalize_package(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _Reader:
    """Walks YAML nodes, converting values and collecting problems."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def error(self, node: Node | None, key: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        self.problems.append(Problem(self.where(node), line, key, message))

    def where(self, node: Node | None) -> str:
        """The file of a node (a policy folder has several)."""
        name = node.start_mark.name if node is not None else ""
        return name if name and not name.startswith("<") else self.path

    def mapping(
        self, node: Node, key: str, required: set[str], optional: set[str]
    ) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            self.error(node, key, "must be a mapping")
            return {}
        out: dict[str, Node] = {}
        for knode, vnode in node.value:
            name = str(knode.value)
            where = f"{key}.{name}" if key else name
            if name in out:
                self.error(knode, where, "duplicate key")
            elif name not in required | optional:
                allowed = ", ".join(sorted(required | optional))
                self.error(knode, where, f"unknown key (allowed: {allowed})")
            else:
                out[name] = vnode
        for name in sorted(required - out.keys()):
            self.error(node, f"{key}.{name}" if key else name, "required key is missing")
        return out

    def string(self, node: Node | None, key: str, default: str | None = None) -> str | None:
        if node is None:
            return default
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            if isinstance(node, ScalarNode) and node.tag in (
                "tag:yaml.org,2002:int",
                "tag:yaml.org,2002:float",
            ):
                return str(node.value)
            self.error(node, key, "must be a string")
            return default
        return str(node.value)

    def loop_kind(self, node: Node | None, key: str) -> int:
        """An optional `looped`: true (endless or counted far), false, or repeated."""
        kinds = {"true": LOOP_ENDLESS, "false": 0, "repeated": LOOP_REPEATED}
        if node is None:
            return 0
        if not (isinstance(node, ScalarNode) and node.value in kinds):
            self.error(node, key, "must be true or false or repeated")
            return 0
        return kinds[node.value]

    def choice(self, node: Node | None, key: str, choices: tuple[str, ...]) -> str | None:
        value = self.string(node, key)
        if value is not None and value not in choices:
            self.error(node, key, f"must be one of {', '.join(choices)}, not {value!r}")
            return None
        return value

    def strings(self, node: Node | None, key: str) -> tuple[str, ...]:
        """A string or a list of strings."""
        if node is None:
            return ()
        if isinstance(node, SequenceNode):
            items = [self.string(item, f"{key}[{i}]") for i, item in enumerate(node.value)]
            return tuple(i for i in items if i is not None)
        value = self.string(node, key)
        return (value,) if value is not None else ()

    def regex(self, node: Node | None, key: str) -> Regex | None:
        """An RE2 pattern (linear-time search); constructs RE2 lacks are problems."""
        text = self.string(node, key)
        if text is None:
            return None
        try:
            return compile_regex(text)
        except RegexError as exc:
            self.error(node, key, str(exc))
            return None

    def integer(self, node: Node, key: str) -> int | None:
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:int":
            try:  # as YAML reads it: 0x16, 1_000 (not int(): it raised on those)
                return int(SafeConstructor().construct_yaml_int(node))
            except ValueError:  # `!!int abc`
                pass
        self.error(node, key, "must be an integer")
        return None

    def data(self, node: Node | None) -> Any:
        """Free-form metadata: plain Python values."""
        if node is None:
            return {}
        return yaml.safe_load(yaml.serialize(node)) or {}


class _PolicyBuilder:
    def __init__(self, reader: _Reader) -> None:
        self.r = reader
        self.leaves: list[Leaf] = []
        self.warnings: list[str] = []

    # -- matchers ---------------------------------------------------------
    def matcher(self, node: Node, key: str, in_all: bool = False) -> Matcher | None:
        kinds = set(LEAF_KINDS) | {"all", "any", "not"}
        fields = self.r.mapping(node, key, set(), kinds | {"keywords", "min"})
        chosen = [k for k in fields if k not in ("keywords", "min")]
        if len(chosen) != 1:
            self.r.error(node, key, f"needs exactly one of {', '.join(sorted(kinds))}")
            return None
        kind = chosen[0]
        value = fields[kind]
        where = f"{key}.{kind}"
        if "keywords" in fields and kind in ("all", "any", "not"):
            self.r.error(
                fields["keywords"],
                f"{key}.keywords",
                "keywords belong beside a single matcher, not beside all/any/not",
            )
        if "keywords" in fields and kind in ("binary", "listen"):
            what = "the bytes of an executable" if kind == "binary" else "a listening socket"
            self.r.error(
                fields["keywords"],
                f"{key}.keywords",
                f"{kind} matches {what}, never cell text: no keywords",
            )
        if "min" in fields and kind != "binary":
            self.r.error(fields["min"], f"{key}.min", "min belongs beside binary only")
        if kind in ("all", "any"):
            if not isinstance(value, SequenceNode) or not value.value:
                self.r.error(value, where, "must be a non-empty list of matchers")
                return None
            children = [
                self.matcher(c, f"{where}[{i}]", in_all=kind == "all")
                for i, c in enumerate(value.value)
            ]
            kids = tuple(c for c in children if c is not None)
            if (
                kind == "all"
                and kids
                and all(isinstance(c, Combinator) and c.op == "not" for c in kids)
            ):
                self.r.error(value, where, "needs at least one matcher that is not 'not'")
            return Combinator(kind, kids) if len(kids) == len(children) else None
        if kind == "not":
            if not in_all:
                self.r.error(value, where, "'not' is only allowed inside 'all'")
            child = self.matcher(value, where)
            return Combinator("not", (child,)) if child is not None else None
        if kind == "binary":
            leaf = self.binary(value, where, fields.get("min"), f"{key}.min")
        elif kind == "listen":
            leaf = self.listen(value, where)
        else:
            leaf = self.leaf(kind, value, where)
        if leaf is None:
            return None
        explicit = tuple(
            k.lower() for k in self.r.strings(fields.get("keywords"), f"{key}.keywords")
        )
        if explicit:  # (a regex leaf's derived ones when sharper: see ``sharpened``)
            spelled = kind in ("url", "string")
            leaf.keywords = sharpened(explicit, leaf.keywords) if spelled else explicit
        if not leaf.keywords and kind in ("url", "string", "shell"):
            self.warnings.append(
                f"{self.r.where(value)}:{value.start_mark.line + 1}: {where}: no literal "
                "keyword; this leaf makes every cell go through deep analysis (add keywords: [...])"
            )
        leaf.index = len(self.leaves)
        self.leaves.append(leaf)
        return leaf

    def leaf(self, kind: str, node: Node, key: str) -> Leaf | None:
        r = self.r
        if kind == "import":
            names = r.strings(node, key)
            return Leaf(kind, names=names, keywords=tuple({word(n.split(".")[0]) for n in names}))
        if kind in ("url", "string"):
            pattern = r.regex(node, key)
            if pattern is None:
                return None
            return Leaf(kind, pattern=pattern, keywords=regex_keywords(pattern.pattern, spell=True))
        if kind == "call":
            f = r.mapping(node, key, set(), {"name", "like", "args", "kwargs", "looped", "guessed"})
            if "name" not in f and "like" not in f:
                r.error(node, f"{key}.name", "required key is missing (or like)")
            elif "name" in f and "like" in f:
                r.error(node, f"{key}.like", "give name or like, not both")
            names = r.strings(f.get("name"), f"{key}.name") if "name" in f else ()
            like = r.regex(f["like"], f"{key}.like") if "like" in f else None
            args = self._conditions(f["args"], f"{key}.args", int) if "args" in f else []
            kwargs = self._conditions(f["kwargs"], f"{key}.kwargs", str) if "kwargs" in f else []
            looped = r.loop_kind(f.get("looped"), f"{key}.looped")
            guessed = r.regex(f["guessed"], f"{key}.guessed") if "guessed" in f else None
            for name in names:
                if "*" in name and not (name.startswith("*.") and "*" not in name[2:]):
                    r.error(node, f"{key}.name", f"{name!r}: '*' only as the receiver, '*.method'")
            keywords = tuple({word(n.rsplit(".", 1)[-1]) for n in names})
            if like is not None:
                keywords = tuple(regex_keywords(like.pattern, spell=True))
            return Leaf(
                kind,
                names=names,
                pattern=like,
                args=tuple(args),
                kwargs=tuple(kwargs),
                looped=looped,
                guessed=guessed,
                keywords=keywords,
            )
        if kind == "shell":
            f = r.mapping(node, key, {"program"}, {"args"})
            programs = tuple(p.lower() for p in r.strings(f.get("program"), f"{key}.program"))
            pattern = r.regex(f.get("args"), f"{key}.args") if "args" in f else None
            if "*" in programs:
                keywords = regex_keywords(pattern.pattern) if pattern else ()
                if pattern is None:
                    r.error(node, f"{key}.args", "program '*' needs an args pattern")
            else:
                keywords = tuple(word(p) for p in programs)
            return Leaf(kind, names=programs, pattern=pattern, keywords=keywords)
        if kind == "install":
            f = r.mapping(node, key, {"package"}, {"manager"})
            managers = r.strings(f.get("manager"), f"{key}.manager")
            for manager in managers:
                if manager not in MANAGERS:
                    r.error(
                        f.get("manager"),
                        f"{key}.manager",
                        f"must be one of {', '.join(MANAGERS)}, not {manager!r}",
                    )
            packages = tuple(
                normalize_package(p) for p in r.strings(f.get("package"), f"{key}.package")
            )
            # `Fake_Pkg`, `fake.pkg` and `fake-pkg` are one package: key on its longest part
            keywords = tuple(
                word(p) if "-" not in p else max(p.split("-"), key=len) for p in packages
            )
            return Leaf(kind, names=packages, managers=managers, keywords=keywords)
        if kind == "repo":
            return self.repo(node, key)
        if kind == "connect":
            f = r.mapping(node, key, set(), {"host", "port"})
            if not f:
                r.error(node, key, "needs host or port")
            pattern = r.regex(f.get("host"), f"{key}.host") if "host" in f else None
            ports: list[int] = []
            if "port" in f:
                pnode = f["port"]
                items = pnode.value if isinstance(pnode, SequenceNode) else [pnode]
                ports = [p for p in (r.integer(i, f"{key}.port") for i in items) if p is not None]
            keywords = regex_keywords(pattern.pattern) if pattern else ()
            if ports and not keywords:
                keywords = tuple(word(str(p)) for p in ports)  # a literal port is in the text
            return Leaf(kind, pattern=pattern, ports=tuple(ports), keywords=keywords)
        return None

    def repo(self, node: Node, key: str) -> Leaf | None:
        """Repository names (`MHDDoS`) or owner/name (`MatrixTM/MHDDoS`), matched without
        case against the repositories URLs name. The keyword is the text every such URL
        holds: the name (a whole word where it is one), or `owner/name`."""
        names: list[str] = []
        for name in self.r.strings(node, key):
            cleaned = name.strip().lower().removesuffix(".git")
            if not REPO_NAME.fullmatch(cleaned):
                self.r.error(node, key, f"{name!r} is not a repository name or owner/name")
                continue
            names.append(cleaned)
        if not names:
            return None
        keywords = tuple(sorted({n if "/" in n else word(n) for n in names}))
        return Leaf("repo", names=tuple(names), keywords=keywords)

    def binary(self, node: Node, key: str, min_node: Node | None, min_key: str) -> Leaf | None:
        """Literal signatures (matched case-sensitively as UTF-8 bytes) and how many of them
        a file must hold. No keywords: a binary leaf never matches a cell."""
        r = self.r
        if not isinstance(node, SequenceNode) or not node.value:
            r.error(node, key, "must be a non-empty list of strings")
            return None
        signatures: list[str] = []
        for i, item in enumerate(node.value):
            text = r.string(item, f"{key}[{i}]")
            if text is None:
                continue
            if len(text) < MIN_SIGNATURE:
                r.error(
                    item,
                    f"{key}[{i}]",
                    f"a signature needs at least {MIN_SIGNATURE} characters, not {text!r}",
                )
            elif text in signatures:
                r.error(item, f"{key}[{i}]", f"duplicate signature {text!r}")
            else:
                signatures.append(text)
        minimum = 1
        if min_node is not None:
            value = r.integer(min_node, min_key)
            if value is not None and not 1 <= value <= len(node.value):
                r.error(min_node, min_key, f"must be between 1 and {len(node.value)}")
            minimum = value if value is not None else 1
        return Leaf("binary", names=tuple(signatures), minimum=minimum)

    def listen(self, node: Node, key: str) -> Leaf | None:
        """Ports (single or "a-b" ranges) of a listening socket and which of its local
        addresses count. No keywords: a listen leaf never matches a cell."""
        r = self.r
        f = r.mapping(node, key, {"ports"}, {"addresses"})
        addresses = r.choice(f.get("addresses"), f"{key}.addresses", ADDRESSES) or "public"
        ports = f.get("ports")
        if ports is None:  # not a mapping, or no ports: already reported
            return None
        if not isinstance(ports, SequenceNode) or not ports.value:
            r.error(ports, f"{key}.ports", "must be a non-empty list of ports and 'a-b' ranges")
            return None
        spans = [self._span(item, f"{key}.ports[{i}]") for i, item in enumerate(ports.value)]
        return Leaf("listen", spans=tuple(s for s in spans if s), addresses=addresses)

    def _span(self, node: Node, key: str) -> tuple[int, int] | None:
        """A port (22) or an inclusive range ("5900-5910") as (low, high)."""
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:int":
            port = self.r.integer(node, key)
            if port is None:
                return None
            low = high = port
        else:
            found = None
            if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:str":
                found = PORT_SPAN.match(node.value.strip())
            if found is None:
                self.r.error(node, key, "must be a port (1-65535) or a range 'a-b' of ports")
                return None
            low, high = int(found[1]), int(found[2] or found[1])
        if not (1 <= low <= 65535 and 1 <= high <= 65535):
            self.r.error(node, key, f"ports are 1-65535, not {node.value}")
        elif low > high:
            self.r.error(node, key, f"a range goes from low to high, not {low}-{high}")
        else:
            return low, high
        return None

    def _conditions(self, node: Node, key: str, key_type: type) -> list[tuple[Any, Regex]]:
        out: list[tuple[Any, Regex]] = []
        if not isinstance(node, MappingNode):
            self.r.error(node, key, "must be a mapping")
            return out
        for knode, vnode in node.value:
            where = f"{key}.{knode.value}"
            if key_type is int:
                index = self.r.integer(knode, where)
                if index is None:
                    continue
                name: Any = index
            else:
                name = str(knode.value)
            pattern = self.r.regex(vnode, where)
            if pattern is not None:
                out.append((name, pattern))
        return out

    # -- top level --------------------------------------------------------
    def build(self, root: Node, version: str) -> Policy | None:
        r = self.r
        top = r.mapping(
            root,
            "",
            {"version", "categories", "rules"},
            {"name", "tiers", "exceptions", "on_error", "on_timeout", "metadata"},
        )
        if "version" in top and r.string(top["version"], "version") != "1":
            r.error(top["version"], "version", "must be 1")
        name = r.string(top.get("name"), "name", "policy") or "policy"
        tiers = r.strings(top.get("tiers"), "tiers")
        on_error = r.choice(top.get("on_error"), "on_error", ACTIONS) or "log"
        on_timeout = r.choice(top.get("on_timeout"), "on_timeout", ACTIONS) or "block"
        categories = self.categories(top.get("categories"), tiers)
        rules = self.rules(top.get("rules"), categories, tiers)
        exceptions = self.exceptions(top.get("exceptions"), categories, rules, tiers)
        if r.problems:
            return None
        return Policy(
            name=name,
            tiers=tiers,
            categories=categories,
            rules=rules,
            exceptions=exceptions,
            on_error=on_error,
            on_timeout=on_timeout,
            version=version,
            leaves=self.leaves,
            warnings=self.warnings,
        )

    def _check_tiers(
        self, node: Node | None, key: str, tiers: tuple[str, ...], known: tuple[str, ...]
    ) -> None:
        for t in tiers:
            if t not in known:
                self.r.error(node, key, f"unknown tier {t!r} (declare it in top-level tiers)")

    def categories(self, node: Node | None, tiers: tuple[str, ...]) -> dict[str, Category]:
        out: dict[str, Category] = {}
        if not isinstance(node, SequenceNode):
            if node is not None:
                self.r.error(node, "categories", "must be a list")
            return out
        for i, item in enumerate(node.value):
            key = f"categories[{i}]"
            f = self.r.mapping(
                item,
                key,
                {"id", "title", "description", "action", "severity"},
                {"tiers", "metadata"},
            )
            cid = self.r.string(f.get("id"), f"{key}.id") or ""
            key = f"categories[{cid or i}]"
            if cid and not CATEGORY_ID.match(cid):
                self.r.error(f["id"], f"{key}.id", "must match [a-z][a-z0-9_]*")
            if cid and cid in out:
                self.r.error(f.get("id"), f"{key}.id", f"duplicate category id {cid!r}")
            ctiers = self.r.strings(f.get("tiers"), f"{key}.tiers")
            self._check_tiers(f.get("tiers"), f"{key}.tiers", ctiers, tiers)
            out[cid] = Category(
                id=cid,
                title=self.r.string(f.get("title"), f"{key}.title") or "",
                description=self.r.string(f.get("description"), f"{key}.description") or "",
                action=self.r.choice(f.get("action"), f"{key}.action", ACTIONS) or "block",
                severity=self.r.choice(f.get("severity"), f"{key}.severity", SEVERITIES) or "high",
                tiers=ctiers,
                metadata=self.r.data(f.get("metadata")),
            )
        return out

    def rules(
        self, node: Node | None, categories: dict[str, Category], tiers: tuple[str, ...]
    ) -> list[Rule]:
        out: list[Rule] = []
        seen: set[str] = set()
        if not isinstance(node, SequenceNode):
            if node is not None:
                self.r.error(node, "rules", "must be a list")
            return out
        for i, item in enumerate(node.value):
            key = f"rules[{i}]"
            f = self.r.mapping(
                item,
                key,
                {"id", "category", "message", "match", "examples"},
                {"severity", "action", "tiers", "metadata"},
            )
            rid = self.r.string(f.get("id"), f"{key}.id") or ""
            key = f"rules[{rid or i}]"
            if rid and not RULE_ID.match(rid):
                self.r.error(f["id"], f"{key}.id", "must match [a-z0-9][a-z0-9_.-]*")
            if rid and rid in seen:
                self.r.error(f.get("id"), f"{key}.id", f"duplicate rule id {rid!r}")
            seen.add(rid)
            cid = self.r.string(f.get("category"), f"{key}.category") or ""
            category = categories.get(cid)
            if "category" in f and category is None:
                self.r.error(f["category"], f"{key}.category", f"unknown category {cid!r}")
            rtiers = self.r.strings(f.get("tiers"), f"{key}.tiers")
            self._check_tiers(f.get("tiers"), f"{key}.tiers", rtiers, tiers)
            match = self.matcher(f["match"], f"{key}.match") if "match" in f else None
            ex_match, ex_no = self.examples(f.get("examples"), f"{key}.examples")
            message = self.r.string(f.get("message"), f"{key}.message") or ""
            action = self.r.choice(f.get("action"), f"{key}.action", ACTIONS)
            severity = self.r.choice(f.get("severity"), f"{key}.severity", SEVERITIES)
            if match is None or category is None:
                continue
            out.append(
                Rule(
                    id=rid,
                    category=cid,
                    message=message,
                    action=action or category.action,
                    severity=severity or category.severity,
                    tiers=rtiers or category.tiers,
                    match=match,
                    examples_match=ex_match,
                    examples_no_match=ex_no,
                    metadata=self.r.data(f.get("metadata")),
                    line=item.start_mark.line + 1,
                )
            )
        return out

    def examples(self, node: Node | None, key: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if node is None:
            return (), ()
        f = self.r.mapping(node, key, {"match", "no_match"}, set())
        ex_match = self.r.strings(f.get("match"), f"{key}.match")
        ex_no = self.r.strings(f.get("no_match"), f"{key}.no_match")
        for name, value in (("match", ex_match), ("no_match", ex_no)):
            if name in f and not value:
                self.r.error(f[name], f"{key}.{name}", "needs at least one example cell")
        return ex_match, ex_no

    def exceptions(
        self,
        node: Node | None,
        categories: dict[str, Category],
        rules: list[Rule],
        tiers: tuple[str, ...],
    ) -> list[PolicyException]:
        out: list[PolicyException] = []
        if node is None:
            return out
        if not isinstance(node, SequenceNode):
            self.r.error(node, "exceptions", "must be a list")
            return out
        rule_ids = {rule.id for rule in rules}
        for i, item in enumerate(node.value):
            key = f"exceptions[{i}]"
            f = self.r.mapping(
                item, key, {"id", "reason"}, {"users", "groups", "tiers", "categories", "rules"}
            )
            values = {
                k: self.r.strings(f.get(k), f"{key}.{k}")
                for k in ("users", "groups", "tiers", "categories", "rules")
            }
            if not (values["users"] or values["groups"] or values["tiers"]):
                self.r.error(item, key, "needs at least one of users, groups, tiers")
            if not (values["categories"] or values["rules"]):
                self.r.error(item, key, "needs at least one of categories, rules")
            self._check_tiers(f.get("tiers"), f"{key}.tiers", values["tiers"], tiers)
            for c in values["categories"]:
                if c not in categories:
                    self.r.error(
                        f.get("categories"), f"{key}.categories", f"unknown category {c!r}"
                    )
            for rid in values["rules"]:
                if rid not in rule_ids:
                    self.r.error(f.get("rules"), f"{key}.rules", f"unknown rule {rid!r}")
            out.append(
                PolicyException(
                    id=self.r.string(f.get("id"), f"{key}.id") or "",
                    reason=self.r.string(f.get("reason"), f"{key}.reason") or "",
                    **values,
                )
            )
        return out


def parse_policy(text: str, path: str = "<policy>") -> Policy:
    """Build a Policy from YAML text; raises PolicyError listing every problem."""
    return _build([(path, text)], path)


def _build(texts: list[tuple[str, str]], path: str) -> Policy:
    """A policy from one file or the files of a folder (``policy.yaml`` first)."""
    parts: list[tuple[str, Node]] = []
    for name, text in texts:
        try:
            node = compose(text, name)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 0
            raise PolicyError([Problem(name, line, "", f"YAML syntax error: {exc}")]) from None
        if node is None:
            if len(texts) == 1 or name == texts[0][0]:
                raise PolicyError([Problem(name, 1, "", "the file is empty")])
            continue
        parts.append((name, node))
    try:
        root = merge(parts)
        expand_lists(root)
    except NodeProblem as p:
        raise PolicyError([Problem(p.path, p.line, p.key, p.message)]) from None
    version = version_of(texts) if len(texts) > 1 else _digest(texts[0][1])
    reader = _Reader(path)
    policy = _PolicyBuilder(reader).build(root, version)
    if policy is None:
        raise PolicyError(reader.problems)
    policy.path = path
    return policy


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_policy_path() -> Path:
    """The shipped default: the installed copy, or the repository's policies/colab/."""
    installed = Path(__file__).resolve().parent.parent / "data" / "colab"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "policies" / "colab"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([Problem(str(path), 0, "", f"cannot read: {exc}")]) from None


def load_policy(path: str | Path | None = None) -> Policy:
    """Load a policy file or folder (None: the shipped default). Raises PolicyError."""
    target = Path(path) if path is not None else default_policy_path()
    if target.is_dir():
        if not (target / MAIN).is_file():
            raise PolicyError([Problem(str(target), 0, "", f"a policy folder needs {MAIN}")])
        return _build([(str(p), _read(p)) for p in folder_files(target)], str(target))
    return _build([(str(target), _read(target))], str(target))
