"""Python (IPython-transformed) source to facts: one libcst visitor pass of our own."""

from __future__ import annotations

import ast
import posixpath
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import libcst as cst

from . import sinks
from .budget import tick
from .facts import UNKNOWN, Anchor, Fact, FactSet, Value
from .fold import ITEMS, Binding, Folder, Lookup, as_text
from .guesses import guessed_arguments
from .ipymagics import MagicsMixin
from .shell import MAX_DEPTH, ShellScanner
from .summaries import Summary, bind_arguments, body_module
from .walk import walk

URL_LIKE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|magnet:\?|git@[\w.-]+:)\S+$", re.IGNORECASE)
WRITES = frozenset({"write", "write_text", "write_bytes", "writelines"})
MAX_PARSE = 20_000  # nested code longer than this is read by the linear pass
# Calls that save a URL to a file: the keywords that may name the file.
SAVERS = {
    "urlretrieve": ("filename",),
    "download": ("out", "output", "path"),
    "download_url_to_file": ("dst",),
}
SAVER_ROOTS = frozenset({"urllib", "wget", "gdown", "torch", "six"})
MAX_EXPANSIONS = 64  # calls of user wrappers expanded per cell


@dataclass
class Memory:
    """What a session remembers across cells (shared by all scanners of a session)."""

    files: dict[str, str] = field(default_factory=dict)  # path -> content written
    renames: dict[str, str] = field(default_factory=dict)  # program -> original program
    magic_aliases: dict[str, str] = field(default_factory=lambda: {"file": "writefile"})
    shell_aliases: dict[str, str] = field(default_factory=dict)  # %alias name -> command
    sink_names: set[str] = field(default_factory=set)  # names bound to os/subprocess/... things
    environ: dict[str, str] = field(default_factory=dict)  # %env / os.environ values set
    imports: set[str] = field(default_factory=set)  # modules earlier cells imported
    functions: dict[str, Summary] = field(default_factory=dict)  # user wrappers of sinks
    origins: dict[str, str] = field(default_factory=dict)  # downloaded file -> its URL


def _argv(value: Value) -> list[str] | None:
    if isinstance(value, list | tuple):
        return [v if isinstance(v, str) else as_text(v) or "?" for v in value]
    return None


def _runs_code(node: cst.BaseExpression) -> bool:
    """A string literal with f-string expressions, which run when it is evaluated."""
    if isinstance(node, cst.FormattedString):
        return any(isinstance(p, cst.FormattedStringExpression) for p in node.parts)
    if isinstance(node, cst.ConcatenatedString):
        return _runs_code(node.left) or _runs_code(node.right)
    return False


class PythonScanner(MagicsMixin, cst.CSTVisitor):
    """Walks a module once: keeps a flat scope of bindings, emits facts at sinks."""

    def __init__(
        self,
        facts: FactSet,
        memory: Memory,
        history: Lookup | None = None,
        outer: Anchor | None = None,
        depth: int = 0,
    ) -> None:
        super().__init__()
        self.facts = facts
        self.memory = memory
        self.history = history
        self.outer = outer  # nested code (exec'd, decoded): all facts point at the outer sink
        self.depth = depth
        # name -> ("const", value) | ("qual", name) | ("file", path) | ("expr", (node, before)):
        # an assignment is only folded when something looks the name up
        self.bindings: dict[str, Binding] = {}
        self.wants_args: Callable[[str], bool] = lambda name: True
        self.bindings_only = False  # a scope for name resolution: no facts, no sinks
        self._local_only = False
        self.decoded: list[tuple[str, Anchor]] = []
        self._current: Anchor | None = None
        self._prose: set[int] = set()  # literals printed as text: words, not actions
        self.module: cst.Module | None = None  # the snippet being visited
        self.base = 0
        self.indent = 0
        self.looped = 0  # loops.FOREVER or COUNTED: inside an endless loop
        self.items: frozenset[str] = frozenset()  # names holding an enclosing loop's item
        self.expanding: frozenset[str] = frozenset()  # wrappers being expanded (no recursion)
        # the folder and the shell scanner call back through a weak reference: a scanner
        # is then freed as soon as it is dropped, with the trees it holds (a cycle would
        # wait for a garbage collection, which the user's next cell would pay for)
        me = weakref.ref(self)
        self.folder = Folder(
            lambda name: me().lookup(name),  # type: ignore[union-attr]
            lambda text: me()._on_decoded(text),  # type: ignore[union-attr]
        )
        self.shell = ShellScanner(
            facts,
            memory.files,
            memory.renames,
            lambda text, anchor, depth: me().scan_python_text(text, anchor, depth),  # type: ignore[union-attr]
            memory.environ,
            memory.origins,
        )

    # -- scope --------------------------------------------------------------
    def lookup(self, name: str) -> Binding | None:
        if name in self.bindings:
            return self.binding(name)
        if self.history is not None and not self._local_only:
            return self.history(name)
        return None

    def binding(self, name: str) -> Binding | None:
        """The binding of a name, folding a pending assignment now (once)."""
        found = self.bindings.get(name)
        if found is None or found[0] != "expr":
            return found
        value_node, before = found[1]
        if before is None:
            del self.bindings[name]  # `x = x + "a"` reads the x bound before
        else:
            self.bindings[name] = before
        local_only, self._local_only = self._local_only, False
        try:
            result = self._evaluate(value_node)
        finally:
            self._local_only = local_only
        if result is None:
            self.bindings.pop(name, None)
        else:
            self.bindings[name] = result
        return result

    def _evaluate(self, value_node: cst.BaseExpression) -> Binding | None:
        value = self.folder.fold(value_node)
        if value is UNKNOWN or (
            isinstance(value, list | tuple) and all(v is UNKNOWN for v in value)
        ):
            items = self.folder.items_qual(value_node)
            if items is not None:  # a list or dict of instances: `sessions[i].post`
                return ("qual", items)
        if value is not UNKNOWN and (not isinstance(value, list | tuple) or value):
            return ("const", value)
        qual = self.folder.qual(value_node)
        return ("qual", qual) if qual else None

    def qual_bindings(self) -> list[tuple[str, str]]:
        """Names bound to a qualified name (`run = os.system`, `import x as y`)."""
        out = []
        for name in list(self.bindings):
            found = self.bindings.get(name)
            if found is None:  # folding an earlier name dropped this one (it folded to nothing)
                continue
            kind, value = found
            if kind == "expr" and isinstance(value[0], cst.Name | cst.Attribute | cst.Call):
                found = self.binding(name)
                kind, value = found if found is not None else ("", "")
            if kind == "qual":
                out.append((name, str(value)))
        return out

    def _bind(self, target: cst.BaseExpression, value_node: cst.BaseExpression) -> None:
        if isinstance(target, cst.Subscript):
            self._set_env(target, value_node)
        if isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name):
            # `tls.session = requests.Session()` (read back only for a threading.local)
            dotted = f"{target.value.value}.{target.attr.value}"
            self.bindings[dotted] = ("expr", (value_node, self.bindings.get(dotted)))
            return
        if not isinstance(target, cst.Name):
            return
        path = self._open_for_write(value_node)
        if path:
            self.bindings[target.value] = ("file", path)  # f = open("run.sh", "w")
            return
        before = self.bindings.get(target.value)
        self.bindings[target.value] = ("expr", (value_node, before))

    def anchor(self, node: cst.CSTNode, offset: int = 0) -> Anchor:
        if self.outer is not None:
            return self.outer
        return Anchor(
            node,
            offset,
            module=self.module,
            base=self.base,
            indent=self.indent,
            looped=self.looped,
        )

    def visit_snippet(
        self,
        module: cst.Module,
        base: int = 0,
        indent: int = 0,
        looped: int = 0,
        items: frozenset[str] = frozenset(),
    ) -> None:
        self.module, self.base, self.indent, self.looped = module, base, indent, looped
        self.items = items
        walk(self, module)  # module.visit(self), without rebuilding the tree; ticks per node

    def _on_decoded(self, text: str) -> None:
        if self._current is not None:
            self.decoded.append((text, self._current))

    # -- imports --------------------------------------------------------------
    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            module = cst.helpers.get_full_name_for_node(alias.name) or ""
            self.facts.add(
                Fact("import", name=module, evidence=f"import {module}", anchor=self.anchor(node))
            )
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.bindings[alias.asname.name.value] = ("qual", module)
            else:
                top = module.split(".")[0]
                self.bindings[top] = ("qual", top)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        """`from x.y import z` imports x.y and x.y.z. A relative import has the facts of its
        dotted tail, the name inside its package: `from ..helper.utils import z` imports
        helper.utils and helper.utils.z, `from . import y` imports y."""
        dots = "." * len(node.relative)
        module = cst.helpers.get_full_name_for_node(node.module) if node.module else ""
        module = module or ""
        if module:
            self.facts.add(
                Fact(
                    "import",
                    name=module,
                    evidence=f"from {dots}{module} import ...",
                    anchor=self.anchor(node),
                )
            )
        if isinstance(node.names, cst.ImportStar):
            return
        for alias in node.names:
            name = cst.helpers.get_full_name_for_node(alias.name) or ""
            full = f"{module}.{name}" if module else name
            self.facts.add(
                Fact(
                    "import",
                    name=full,
                    evidence=f"from {dots}{module} import {name}",
                    anchor=self.anchor(node),
                )
            )
            local = (
                alias.asname.name.value
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name)
                else name
            )
            self.bindings[local] = ("qual", full)

    # -- bindings ---------------------------------------------------------------
    def leave_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._bind(target.target, node.value)
            if isinstance(target.target, cst.Tuple) and isinstance(node.value, cst.Tuple):
                for t, v in zip(target.target.elements, node.value.elements, strict=False):
                    self._bind(t.value, v.value)
        self._string_fact(node.value, node)

    def _set_env(self, target: cst.Subscript, value_node: cst.BaseExpression) -> None:
        """`os.environ["POOL"] = "..."`: a later `!miner -o $POOL` sees the value."""
        if self.bindings_only or len(target.slice) != 1:
            return
        key = target.slice[0].slice
        if not isinstance(key, cst.Index) or self.folder.qual(target.value) != "os.environ":
            return
        name, value = as_text(self.folder.fold(key.value)), as_text(self.folder.fold(value_node))
        if name and value is not None:
            self.memory.environ[name] = value

    def leave_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._bind(node.target, node.value)

    def leave_AugAssign(self, node: cst.AugAssign) -> None:
        if isinstance(node.target, cst.Name) and isinstance(node.operator, cst.AddAssign):
            combined = cst.BinaryOperation(node.target, cst.Add(), node.value)
            self._bind(node.target, combined)

    def visit_For(self, node: cst.For) -> None:
        """`for s in sessions:` over a list of instances binds s to one of them."""
        if isinstance(node.target, cst.Name) and isinstance(node.iter, cst.Name | cst.Attribute):
            items = self.folder.qual(node.iter)
            if items is not None and items.endswith(ITEMS):
                self.bindings[node.target.value] = ("qual", items[: -len(ITEMS)])

    def visit_WithItem(self, node: cst.WithItem) -> None:
        """`with open("run.sh", "w") as f` binds a file; `with requests.Session() as s` an
        instance, so `s.get` is `requests.Session.get`."""
        if node.asname is not None and isinstance(node.asname.name, cst.Name):
            self._bind(node.asname.name, node.item)
            binding = self.bindings.get(node.asname.name.value)
            if binding is not None and binding[0] == "file":
                self.memory.files.setdefault(str(binding[1]), "")

    def _open_for_write(self, node: cst.BaseExpression) -> str | None:
        if not isinstance(node, cst.Call) or self.folder.qual(node.func) not in (
            "open",
            "io.open",
            "codecs.open",
            "builtins.open",
        ):
            return None
        values = [self.folder.fold(a.value) for a in node.args]
        mode = next(
            (
                as_text(self.folder.fold(a.value))
                for a in node.args
                if a.keyword and a.keyword.value == "mode"
            ),
            None,
        )
        if mode is None and len(values) > 1:
            mode = as_text(values[1])
        path = as_text(values[0]) if values else None
        return path if path and mode and any(c in mode for c in "wax") else None

    def visit_Expr(self, node: cst.Expr) -> bool:
        # a bare string statement (docstring, prose) does nothing: it is no evidence; but
        # the expressions of a bare f-string run (f"{os.system('x')}"): they are visited,
        # its text stays prose
        value = node.value
        if not isinstance(value, cst.SimpleString | cst.ConcatenatedString | cst.FormattedString):
            return True
        if not _runs_code(value):
            return False
        self._prose.add(id(value))
        return True

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        self._string_fact(node, node)

    def visit_FormattedString(self, node: cst.FormattedString) -> None:
        self._string_fact(node, node)

    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        if isinstance(node.operator, cst.Add | cst.Modulo | cst.Multiply):
            self._string_fact(node, node)  # "mining." + "authorize" anywhere, e.g. in a dict

    def visit_ConcatenatedString(self, node: cst.ConcatenatedString) -> None:
        self._string_fact(node, node)

    def _string_fact(self, value_node: cst.BaseExpression, at: cst.CSTNode) -> None:
        if self.bindings_only or isinstance(value_node, cst.Name | cst.Integer | cst.Float):
            return
        if id(value_node) in self._prose:
            return
        value = self._fold_local(value_node)
        text = as_text(value)
        if text is None and isinstance(value, list | tuple):
            parts = [as_text(v) for v in value]
            text = " ".join(p for p in parts if p) or None
        if text:
            self.facts.add(Fact("string", text=text, evidence=text[:200], anchor=self.anchor(at)))

    # -- calls -------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        if self.bindings_only:
            return
        self._current = self.anchor(node)
        try:
            self._call(node)
        finally:
            self._current = None

    def visit_Decorator(self, node: cst.Decorator) -> None:
        """A decorator is a call: `@bot.on_message(filters.command("mirror"))` and
        `@app.route("/upload", methods=["POST"])` are calls (visit_Call sees them); a bare
        `@bot.message_handler` is a call of that name with no arguments."""
        if self.bindings_only or isinstance(node.decorator, cst.Call):
            return
        name = self.folder.qual(node.decorator)
        if name:
            self.facts.add(Fact("call", name=name, anchor=self.anchor(node), source=node.decorator))

    def _key_text(self, node: cst.BaseExpression) -> str | None:
        return as_text(self._fold_local(node))

    def _fold_local(self, node: cst.BaseExpression) -> Value:
        """Fold without looking in other statements or cells (cheap; for plain facts)."""
        local_only, self._local_only = self._local_only, True
        try:
            return self.folder.fold(node)
        finally:
            self._local_only = local_only

    def _call(self, node: cst.Call) -> None:
        name = self.folder.qual(node.func)
        if name == "print" and self.depth == 0 and not any(a.keyword for a in node.args):
            # `print("e.g. hashcat ... rockyou.txt")` is prose; `print(..., file=f)` writes
            self._prose.update(id(a.value) for a in node.args)
        summary = self.memory.functions.get(name) if name else None
        wanted = name and (summary is not None or self.wants_args(name))
        fold = self.folder.fold if wanted else self._fold_local
        positional = [a.value for a in node.args if not a.keyword and not a.star]
        args = tuple(fold(a) for a in positional)
        kwargs = {a.keyword.value: fold(a.value) for a in node.args if a.keyword}
        anchor = self.anchor(node)
        if name:
            self.facts.add(
                Fact(
                    "call",
                    name=name,
                    args=args,
                    kwargs=kwargs,
                    guessed=guessed_arguments(node, self.items, self._key_text),
                    anchor=anchor,
                    source=node,
                )
            )
            if name in sinks.IMPORTERS and args and isinstance(args[0], str):
                self.facts.add(
                    Fact("import", name=args[0], evidence=f"{name}({args[0]!r})", anchor=anchor)
                )
        for value in (*args, *kwargs.values()):
            text = as_text(value)
            if text and URL_LIKE.match(text.strip()):
                self.facts.add(Fact("url", text=text.strip(), evidence=text.strip(), anchor=anchor))
            elif text and not isinstance(value, str):
                self.facts.add(Fact("string", text=text, evidence=text[:200], anchor=anchor))
        if name in ("os.putenv", "os.environ.setdefault") and len(args) == 2:
            key, value = as_text(args[0]), as_text(args[1])
            if key and value is not None:
                self.memory.environ[key] = value
        if isinstance(node.func, cst.Attribute) and node.func.attr.value in WRITES:
            self._write(node)  # f.write(...) where f is an open file
        elif summary is not None:
            self._expand(summary, args, kwargs, anchor)
        elif name:
            self._sink(name, node, args, kwargs, anchor)

    def _expand(
        self, summary: Summary, args: tuple[Value, ...], kwargs: dict[str, Value], anchor: Anchor
    ) -> None:
        """A call of a user's wrapper: its body again, with the call's arguments bound to
        its parameters, every fact pointing at the call. The same call twice in a cell is
        expanded once; past MAX_EXPANSIONS, what reaches a sink is read as a command."""
        if self.depth >= MAX_DEPTH or summary.name in self.expanding:
            return
        function = summary.function()
        if function is None:
            return
        bound = bind_arguments(function.params, args, kwargs, self.folder.fold)
        key = (summary.name, repr(bound)[:2000])
        if key in self.facts.expanded:
            return
        self.facts.expanded.add(key)
        if len(self.facts.expanded) > MAX_EXPANSIONS:
            self._reached(summary, bound, anchor)
            return
        scanner = PythonScanner(self.facts, self.memory, self.lookup, anchor, self.depth + 1)
        scanner.wants_args = self.wants_args
        scanner.expanding = self.expanding | {summary.name}
        for param, value in bound:
            scanner.bindings[param] = ("const", value)
        scanner.visit_snippet(body_module(function))
        scanner.finish()

    def _reached(self, summary: Summary, bound: list[tuple[str, Value]], anchor: Anchor) -> None:
        """The summary alone: each argument that reaches a sink, read as a command."""
        reaching = frozenset().union(*summary.reaches.values())
        for param, value in bound:
            if param not in reaching:
                continue
            text = as_text(value)
            if text is not None:
                self.shell.scan(text, anchor, self.depth + 1)
            elif (argv := _argv(value)) is not None and argv:
                self.shell.scan_argv(argv, anchor, self.depth + 1)

    def _sink(
        self,
        name: str,
        node: cst.Call,
        args: tuple[Value, ...],
        kwargs: dict[str, Value],
        anchor: Anchor,
    ) -> None:
        short = name.rsplit(".", 1)[-1]
        first = args[0] if args else kwargs.get("args", kwargs.get("cmd", UNKNOWN))
        if name in sinks.SHELL_STRING or (
            name.startswith("get_ipython.") and short in sinks.IPY_SHELL
        ):
            text = as_text(first)
            if text is not None:
                if name.startswith("get_ipython."):
                    text = self._ipython_expand(text, anchor)
                self.shell.scan(text, anchor, self.depth)
        elif name in sinks.SUBPROCESS:
            text = as_text(first)
            if text is not None:
                self.shell.scan(text, anchor, self.depth)
            elif (argv := _argv(first)) is not None:
                self.shell.scan_argv(argv, anchor, self.depth)
        elif name in sinks.EXEC_ARGV:
            argv = _argv(args[1]) if len(args) > 1 else None
            path = as_text(args[0]) if args else None
            if argv:
                self.shell.scan_argv([path or argv[0], *argv[1:]], anchor, self.depth)
            elif path:
                self.shell.scan_argv([path], anchor, self.depth)
        elif name in sinks.EXEC_LIST:
            parts = [as_text(a) or "?" for a in args[sinks.EXEC_LIST[name] :]]
            if parts:
                self.shell.scan_argv(
                    [parts[0], *parts[2:]] if len(parts) > 1 else parts, anchor, self.depth
                )
        elif name in sinks.SPAWN_ARGV:
            argv = _argv(args[2]) if len(args) > 2 else None
            if argv:
                self.shell.scan_argv(argv, anchor, self.depth)
        elif name in sinks.PYTHON_EXEC or (name.startswith("get_ipython.") and short == "run_cell"):
            text = as_text(first)
            if text is not None:
                self.scan_python_text(text, anchor, self.depth + 1)
        elif name.startswith("get_ipython.") and short in ("run_line_magic", "magic"):
            self._line_magic(args, anchor)
        elif name.startswith("get_ipython.") and short == "run_cell_magic":
            self._cell_magic(args, anchor)
        elif short in ("connect", "connect_ex", "create_connection", "open_connection"):
            self._connect(name, args, anchor)
        elif short in SAVERS and name.split(".")[0] in SAVER_ROOTS:
            self._saved(short, args, kwargs)

    def _saved(self, short: str, args: tuple[Value, ...], kwargs: dict[str, Value]) -> None:
        """`urlretrieve(URL, "cf")`, `wget.download(URL, out="cf")`: remember the name."""
        url = as_text(args[0]) if args else as_text(kwargs.get("url"))
        target = (
            args[1]
            if len(args) > 1
            else next((kwargs[k] for k in SAVERS[short] if k in kwargs), None)
        )
        path = as_text(target)
        if url and path:
            self.shell.remember_download(path, url.strip())

    def _connect(self, name: str, args: tuple[Value, ...], anchor: Anchor) -> None:
        if not args:
            return
        if isinstance(args[0], tuple | list) and len(args[0]) >= 2:
            host, port = args[0][0], args[0][1]
        elif len(args) >= 2:
            host, port = args[0], args[1]
        else:
            return
        host_text = host if isinstance(host, str) else ""
        port_num = port if isinstance(port, int) else None
        if host_text or port_num is not None:
            self.facts.add(
                Fact(
                    "connect",
                    text=host_text,
                    port=port_num,
                    evidence=f"{name}({host_text!r}, {port_num})",
                    anchor=anchor,
                )
            )

    def _write(self, node: cst.Call) -> None:
        """`f.write(text)` to a file opened for writing: remember and analyse the text."""
        func = node.func
        if not node.args or not isinstance(func, cst.Attribute):
            return
        path: str | None = None
        if isinstance(func.value, cst.Name):
            binding = self.lookup(func.value.value)
            if binding is not None and binding[0] == "file":
                path = binding[1]
        if path is None:
            path = self._open_for_write(func.value)
        if path is None and isinstance(func.value, cst.Call):
            inner = func.value
            if self.folder.qual(inner.func) in ("pathlib.Path", "Path") and inner.args:
                path = as_text(self.folder.fold(inner.args[0].value))
        content = as_text(self.folder.fold(node.args[0].value)) if path else None
        if path and content is None:  # open("cf", "wb").write(requests.get(URL).content)
            url = self._fetched_url(node.args[0].value)
            if url:
                self.shell.remember_download(path, url)
        if path and content is not None:
            self.memory.files[path] = self.memory.files.get(path, "") + content
            self._analyse_file(path, content, self.anchor(node))

    def _fetched_url(self, node: cst.BaseExpression) -> str | None:
        """The URL of a response whose body is written: `r.content`, `r.read()`."""
        if isinstance(node, cst.Call):
            node = node.func
        if isinstance(node, cst.Attribute):
            node = node.value
        return getattr(self.folder.qual(node), "url", None)

    def _analyse_file(self, path: str, content: str, anchor: Anchor) -> None:
        ext = posixpath.splitext(path)[1].lower()
        if ext == ".py" or ext == ".ipy":
            self.scan_python_text(content, anchor, self.depth + 1)
        elif ext in ("", ".sh", ".bash", ".zsh", ".command"):
            self.shell.scan(content, anchor, self.depth + 1)
        else:
            self.shell.data_file(path, content, anchor)

    # -- nested Python --------------------------------------------------------
    def scan_python_text(
        self, text: str, anchor: Anchor, depth: int, nested_cell: bool = False
    ) -> None:
        """Analyse code that a sink runs (exec, python -c, %%capture bodies)."""
        if depth > MAX_DEPTH:
            return
        from .transform import transform  # IPython syntax may appear in nested cells

        if len(text) > MAX_PARSE:  # too large for libcst in time: the linear pass reads it
            from .linear import LinearPass

            tick()
            try:
                tree = ast.parse(transform(text)[0] if nested_cell else text)
            except Exception:
                self.facts.add(Fact("string", text=text, evidence=text[:200], anchor=anchor))
                return
            LinearPass(self.facts, self.memory, lambda _line: anchor, self.wants_args)(
                tree.body, depth
            )
            return
        try:
            code = transform(text)[0] if nested_cell or "!" in text or "%" in text else text
            module = cst.parse_module(code)
        except Exception:
            self.facts.add(Fact("string", text=text, evidence=text[:200], anchor=anchor))
            return
        scanner = PythonScanner(self.facts, self.memory, self.lookup, anchor, depth)
        scanner.wants_args = self.wants_args
        scanner.visit_snippet(module)
        scanner.finish()

    def finish(self) -> None:
        """Analyse decoded text (base64, hex, chr lists) again, as shell and as Python."""
        pending, self.decoded = self.decoded, []
        for text, anchor in pending:
            if not text.strip() or "\x00" in text:
                continue
            self.facts.add(Fact("string", text=text, evidence=text[:200], anchor=anchor))
            self.shell.scan(text, anchor, self.depth + 1)
            self.scan_python_text(text, anchor, self.depth + 1)
