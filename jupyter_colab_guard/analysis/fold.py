"""Constant folding and name resolution over libcst expressions, in one pass of our own."""

from __future__ import annotations

import ast
import base64
import binascii
import bz2
import codecs
import lzma
import posixpath
import shlex
import zlib
from collections.abc import Callable
from typing import Any

import libcst as cst

from .budget import tick
from .facts import UNKNOWN, Value

MAX_FOLD = 100_000  # longest string the folder builds
MAX_PAYLOAD = 65_536  # longest `literal * n` or random payload the folder builds
# Calls that return n random bytes: folded to n zero bytes, so a rule reads the size.
RANDOM_BYTES = frozenset(
    {
        "os.urandom",
        "random._urandom",
        "random.randbytes",
        "secrets.token_bytes",
        "numpy.random.bytes",
    }
)
MAX_INFLATE = 1_000_000  # most bytes a decompression may produce (bombs are cut here)
# Decompressors the folder runs, by qualified name and codec name: zlib's wbits for zlib and
# gzip (47: either header), or the name of a bounded streaming decompressor.
INFLATERS: dict[str, int | str] = {
    "zlib.decompress": 15,
    "gzip.decompress": 47,
    "bz2.decompress": "bz2",
    "lzma.decompress": "lzma",
}
COMPRESSION_CODECS: dict[str, int | str] = {
    "zlib": 15,
    "zlib_codec": 15,
    "zip": 15,
    "bz2": "bz2",
    "bz2_codec": "bz2",
}
BUILTINS = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "__import__",
        "getattr",
        "open",
        "get_ipython",
        "globals",
        "vars",
        "locals",
        "chr",
        "bytes",
        "bytearray",
        "str",
        "map",
        "reversed",
        "setattr",
        "input",
    }
)
NAMESPACE_DICTS = frozenset(
    {
        "__builtins__",
        "__builtins__.__dict__",
        "builtins.__dict__",
        "builtins",
        "globals",
        "vars",
        "locals",
    }
)

FETCHES = frozenset({"get", "urlopen", "stream"})  # calls whose result is a URL's body
FETCH_MODULES = frozenset({"requests", "httpx", "urllib", "urllib3", "urllib2"})


class Fetched(str):
    """The qualified name a fetch's result stands for (`requests.get`), with its URL: a
    later `open("cf", "wb").write(r.content)` saves that URL under the name cf."""

    url: str

    def __new__(cls, name: str, url: str) -> Fetched:
        made = super().__new__(cls, name)
        made.url = url
        return made


ITEMS = "[]"  # suffix of a container's qualified name: each item is an instance of the rest
PICKERS = frozenset({"random.choice", "secrets.choice", "next", "iter", "itertools.cycle"})

# A binding is ("const", value) or ("qual", qualified name).
Binding = tuple[str, Any]
Lookup = Callable[[str], Binding | None]


def string_value(literal: str) -> str | bytes:
    """The value of a string literal; the common plain case without ast.literal_eval."""
    quote = literal[-1]
    if literal[0] == quote:
        body = (
            literal[3:-3] if literal.startswith(quote * 3) and len(literal) >= 6 else literal[1:-1]
        )
        if "\\" not in body:
            return body
        try:
            return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeError:
            pass
    return ast.literal_eval(literal)


def as_text(value: Value) -> str | None:
    """A folded value as text (bytes decoded), or None when it is not text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return None


def _is_known(value: Value) -> bool:
    return value is not UNKNOWN


def inflate(data: bytes, how: int | str) -> bytes:
    """Decompressed ``data`` (zlib wbits, "bz2" or "lzma"), at most MAX_INFLATE bytes: time
    and memory stay bounded by the cut, whatever the input claims."""
    if isinstance(how, int):
        return zlib.decompressobj(how).decompress(data, MAX_INFLATE)
    if how == "bz2":
        return bz2.BZ2Decompressor().decompress(data, MAX_INFLATE)
    return lzma.LZMADecompressor().decompress(data, MAX_INFLATE)


def _repeated(value: str | bytes | list[Value], count: int) -> Value:
    """`b"X" * 1400`: a payload of known length, if it stays within MAX_PAYLOAD items (a
    list: within 1000); past that, unknown (memory stays bounded)."""
    cap = 1000 if isinstance(value, list) else MAX_PAYLOAD
    if count < 0 or len(value) * count > cap:
        return UNKNOWN
    return value * count


class Folder:
    """Evaluates expressions to constants (``fold``) or qualified names (``qual``).

    ``lookup`` resolves a bare name: the scanner's own scope first, then earlier cells.
    ``on_decoded`` receives text produced by a decoder (base64, hex, chr, rot13) so the
    caller can analyse it again.
    """

    def __init__(self, lookup: Lookup, on_decoded: Callable[[str], None]) -> None:
        self.lookup = lookup
        self.on_decoded = on_decoded

    # -- qualified names ----------------------------------------------------
    def qual(self, node: cst.BaseExpression) -> str | None:
        if isinstance(node, cst.Name):
            binding = self.lookup(node.value)
            if binding is not None:
                return binding[1] if binding[0] == "qual" else None
            return node.value
        if isinstance(node, cst.Attribute):
            base = self.qual(node.value)
            if base == "threading.local" and isinstance(node.value, cst.Name):
                # `tls.s = requests.Session()` then `tls.s.post(...)`: the attribute's binding
                kept = self.lookup(f"{node.value.value}.{node.attr.value}")
                if kept is not None and kept[0] == "qual":
                    return str(kept[1])
            return f"{base}.{node.attr.value}" if base else None
        if isinstance(node, cst.Call):
            return self.call_qual(node)
        if isinstance(node, cst.Subscript) and len(node.slice) == 1:
            key = node.slice[0].slice
            if isinstance(key, cst.Index):
                base = self.qual(node.value)
                if base is not None and base.endswith(ITEMS):
                    return base[: -len(ITEMS)]  # sessions[i] of a list of requests.Session
                name = as_text(self.fold(key.value))
                if name is None or base is None:
                    return None
                if base in NAMESPACE_DICTS:
                    return self.qual(cst.Name(name)) if name.isidentifier() else name
                if base == "sys.modules":
                    return name
                if base.endswith(".__dict__"):
                    return f"{base[: -len('.__dict__')]}.{name}"
        return None

    def call_qual(self, node: cst.Call) -> str | None:
        """The qualified name a call's result stands for (modules, getattr, instances)."""
        func = self.qual(node.func)
        if func in ("__import__", "importlib.import_module", "importlib.__import__") and node.args:
            module = as_text(self.fold(node.args[0].value))
            return module if module else None
        if func == "getattr" and len(node.args) >= 2:
            base = self.qual(node.args[0].value)
            attr = as_text(self.fold(node.args[1].value))
            return f"{base}.{attr}" if base and attr else None
        if func in ("globals", "vars", "locals"):
            return func
        if func in PICKERS and node.args:
            items = self.qual(node.args[0].value)  # random.choice(sessions)
            if items is not None and items.endswith(ITEMS):
                return items[: -len(ITEMS)]
        if func and func.rsplit(".", 1)[-1] in FETCHES and func.split(".")[0] in FETCH_MODULES:
            url = as_text(self.fold(node.args[0].value)) if node.args else None
            if url and "://" in url:
                return Fetched(func, url.strip())
        return func  # an instance stands for its class

    def items_qual(self, node: cst.BaseExpression) -> str | None:
        """`[requests.Session() for _ in range(8)]`, `{k: requests.Session() ...}`, a
        display of such calls: the qualified name every item stands for, plus ITEMS (one
        name for all the items, or None)."""
        if isinstance(node, cst.ListComp | cst.SetComp | cst.GeneratorExp):
            elements: list[cst.BaseExpression] = [node.elt]
        elif isinstance(node, cst.DictComp):
            elements = [node.value]
        elif isinstance(node, cst.List | cst.Tuple | cst.Set):
            elements = [e.value for e in node.elements if isinstance(e, cst.Element)]
        elif isinstance(node, cst.Dict):
            elements = [e.value for e in node.elements if isinstance(e, cst.DictElement)]
        else:
            return None
        if not elements or not all(isinstance(e, cst.Call) for e in elements):
            return None
        names = {self.qual(e) for e in elements}
        name = names.pop() if len(names) == 1 else None
        return f"{name}{ITEMS}" if name and not name.endswith(ITEMS) else None

    # -- constants ------------------------------------------------------------
    def fold(self, node: cst.BaseExpression) -> Value:
        try:
            value = self._fold(node)
        except (
            ValueError,
            TypeError,
            OverflowError,
            IndexError,
            KeyError,
            UnicodeError,
            RecursionError,
            binascii.Error,
            LookupError,
            MemoryError,
            zlib.error,
            lzma.LZMAError,
            OSError,
            EOFError,
        ):
            return UNKNOWN
        if isinstance(value, str | bytes) and len(value) > MAX_FOLD:
            return UNKNOWN
        return value

    def _fold(self, node: cst.BaseExpression) -> Value:
        tick()
        if isinstance(node, cst.SimpleString):
            return string_value(node.value)
        if isinstance(node, cst.ConcatenatedString):
            left, right = self.fold(node.left), self.fold(node.right)
            if type(left) is type(right) and isinstance(left, str | bytes):
                return left + right  # type: ignore[operator]
            return UNKNOWN
        if isinstance(node, cst.FormattedString):
            return self._fstring(node)
        if isinstance(node, cst.Integer | cst.Float):
            return node.evaluated_value
        if isinstance(node, cst.Name):
            if node.value in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.value]
            binding = self.lookup(node.value)
            return binding[1] if binding is not None and binding[0] == "const" else UNKNOWN
        if isinstance(node, cst.List | cst.Tuple | cst.Set):
            items = [self.fold(e.value) for e in node.elements if isinstance(e, cst.Element)]
            return tuple(items) if isinstance(node, cst.Tuple) else items
        if isinstance(node, cst.BinaryOperation):
            return self._binary(node)
        if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
            value = self.fold(node.expression)
            return -value if isinstance(value, int | float) else UNKNOWN
        if isinstance(node, cst.Subscript):
            return self._subscript(node)
        if isinstance(node, cst.Call):
            return self._call(node)
        return UNKNOWN

    def _fstring(self, node: cst.FormattedString) -> Value:
        parts: list[str] = []
        for part in node.parts:
            if isinstance(part, cst.FormattedStringText):
                parts.append(part.value)
                continue
            value = self.fold(part.expression)
            parts.append("?" if value is UNKNOWN else str(value))
        return "".join(parts)

    def _binary(self, node: cst.BinaryOperation) -> Value:
        left, right = self.fold(node.left), self.fold(node.right)
        if isinstance(node.operator, cst.Add) and (
            (isinstance(left, str) and right is UNKNOWN)
            or (left is UNKNOWN and isinstance(right, str))
        ):
            # "./xmrig -u " + os.environ["W"]: keep what is known, like an f-string does
            return (left if isinstance(left, str) else "?") + (
                right if isinstance(right, str) else "?"
            )
        if left is UNKNOWN or right is UNKNOWN:
            return UNKNOWN
        if isinstance(node.operator, cst.Add):
            if isinstance(left, list) and isinstance(right, list | tuple):
                return left + list(right)
            return left + right
        if isinstance(node.operator, cst.Multiply):
            if isinstance(left, int) and isinstance(right, str | bytes | list):
                left, right = right, left  # 1400 * b"X"
            if isinstance(left, str | bytes | list) and isinstance(right, int):
                return _repeated(left, right)
            if isinstance(left, int | float) and isinstance(right, int | float):
                return left * right
            return UNKNOWN
        if isinstance(node.operator, cst.Modulo) and isinstance(left, str):
            return left % right
        if (
            isinstance(node.operator, cst.Subtract)
            and isinstance(left, int)
            and isinstance(right, int)
        ):
            return left - right
        return UNKNOWN

    def _subscript(self, node: cst.Subscript) -> Value:
        base = self.fold(node.value)
        if len(node.slice) != 1 or not isinstance(base, str | bytes | list | tuple):
            return UNKNOWN
        index = node.slice[0].slice
        if isinstance(index, cst.Slice):
            bounds = [
                None if b is None else self.fold(b) for b in (index.lower, index.upper, index.step)
            ]
            if any(b is UNKNOWN or not (b is None or isinstance(b, int)) for b in bounds):
                return UNKNOWN
            return base[slice(*bounds)]
        key = self.fold(index.value)
        return base[key] if isinstance(key, int) else UNKNOWN

    def _iterable(self, node: cst.BaseExpression) -> list[Value] | None:
        """Items of a literal iterable, `map(chr, [...])` or `chr(c) for c in [...]`."""
        if isinstance(node, cst.Call) and self.qual(node.func) == "map" and len(node.args) == 2:
            fn = self.qual(node.args[0].value)
            items = self.fold(node.args[1].value)
            if fn == "chr" and isinstance(items, list | tuple):
                return [chr(i) for i in items if isinstance(i, int)]
            if fn == "str" and isinstance(items, list | tuple):
                return [str(i) for i in items]
            return None
        if isinstance(node, cst.GeneratorExp | cst.ListComp):
            comp = node.for_in
            items = self.fold(comp.iter)
            if not isinstance(items, list | tuple | str) or comp.inner_for_in is not None:
                return None
            if not isinstance(comp.target, cst.Name):
                return None
            var = comp.target.value
            out: list[Value] = []
            outer = self.lookup
            for item in items:
                self.lookup = lambda n, item=item: ("const", item) if n == var else outer(n)
                try:
                    out.append(self.fold(node.elt))
                finally:
                    self.lookup = outer
            return out
        value = self.fold(node)
        if isinstance(value, list | tuple):
            return list(value)
        if isinstance(value, str):
            return list(value)
        return None

    def _call(self, node: cst.Call) -> Value:
        func = node.func
        args = [a.value for a in node.args if not a.keyword and not a.star]
        if isinstance(func, cst.Attribute):
            receiver = self.fold(func.value)  # a method on a constant: "".join, .decode
            if receiver is not UNKNOWN:
                return self._method(func, args, receiver)
        name = self.qual(func)
        values = [self.fold(a) for a in args]
        if name == "chr" and values and isinstance(values[0], int):
            return chr(values[0])
        if name in ("str",) and values:
            return str(values[0]) if _is_known(values[0]) else UNKNOWN
        if name in ("bytes", "bytearray") and values:
            items = self._iterable(args[0]) if not isinstance(values[0], str) else None
            if items is not None and all(isinstance(i, int) for i in items):
                return self._decoded(bytes(items))  # type: ignore[arg-type]
            if isinstance(values[0], str) and len(values) > 1:
                return values[0].encode(str(values[1]))
            return UNKNOWN
        if name in ("bytes.fromhex", "bytearray.fromhex", "binascii.unhexlify", "binascii.a2b_hex"):
            text = as_text(values[0]) if values else None
            return self._decoded(bytes.fromhex(text.replace(" ", ""))) if text else UNKNOWN
        if name in (
            "base64.b64decode",
            "base64.decodebytes",
            "base64.urlsafe_b64decode",
            "base64.standard_b64decode",
            "base64.b32decode",
            "base64.b16decode",
            "base64.a85decode",
            "base64.b85decode",
        ):
            data = values[0] if values else UNKNOWN
            if isinstance(data, str):
                data = data.encode()
            if not isinstance(data, bytes):
                return UNKNOWN
            decoder = getattr(base64, name.split(".")[1])
            return self._decoded(decoder(data))
        if name == "codecs.decode" and len(values) >= 2 and isinstance(values[1], str):
            data = values[0]
            if isinstance(data, str) and values[1].replace("_", "").lower() in ("rot13", "rot-13"):
                return self._decoded(codecs.decode(data, "rot13"))
            if isinstance(data, str):
                data = data.encode()
            if not isinstance(data, bytes):
                return UNKNOWN
            how = COMPRESSION_CODECS.get(values[1].lower().replace("-", "_"))
            if how is not None:  # never codecs' own unbounded decompression
                return self._inflated(data, how)
            return self._decoded(codecs.decode(data, values[1]))
        if name in INFLATERS and values and isinstance(values[0], bytes | bytearray):
            how = INFLATERS[name]
            if name == "zlib.decompress" and len(values) > 1 and isinstance(values[1], int):
                how = values[1]
            return self._inflated(bytes(values[0]), how)
        if (
            name in ("os.path.join", "posixpath.join")
            and values
            and all(isinstance(v, str) for v in values)
        ):
            return posixpath.join(*values)  # type: ignore[arg-type]
        if name == "shlex.split" and values and isinstance(values[0], str):
            return shlex.split(values[0])  # Popen(shlex.split(f"./miner -o {pool}"))
        if name in ("shlex.join", "subprocess.list2cmdline") and values:
            items = values[0]
            if isinstance(items, list | tuple) and all(isinstance(i, str) for i in items):
                return " ".join(items)  # type: ignore[arg-type]
            return UNKNOWN
        if name in RANDOM_BYTES and values and isinstance(values[0], int):
            size = values[0]
            return bytes(size) if 0 <= size <= MAX_PAYLOAD else UNKNOWN
        if name == "reversed" and values and isinstance(values[0], str | list):
            return list(reversed(values[0]))  # type: ignore[arg-type]
        return UNKNOWN

    def _method(
        self, func: cst.Attribute, args: list[cst.BaseExpression], receiver: Value
    ) -> Value:
        method = func.attr.value
        if isinstance(receiver, str) and method == "join" and args:
            items = self._iterable(args[0])
            if items is None or not all(isinstance(i, str) for i in items):
                return UNKNOWN
            joined = receiver.join(items)  # type: ignore[arg-type]
            return (
                self._decoded(joined)
                if isinstance(args[0], cst.Call | cst.GeneratorExp | cst.ListComp)
                else joined
            )
        if isinstance(receiver, bytes) and method == "join" and args:
            items = self._iterable(args[0])
            if items is None or not all(isinstance(i, bytes) for i in items):
                return UNKNOWN
            return receiver.join(items)  # type: ignore[arg-type]
        values = [self.fold(a) for a in args]
        if any(v is UNKNOWN for v in values):
            return UNKNOWN
        if isinstance(receiver, bytes | bytearray) and method == "decode":
            return bytes(receiver).decode(*(str(v) for v in values[:1]) or ("utf-8",), "replace")
        if isinstance(receiver, str) and method == "encode":
            return receiver.encode(*(str(v) for v in values[:1]) or ("utf-8",))
        if isinstance(receiver, str) and method == "format":
            return receiver.format(*values)
        if isinstance(receiver, str | bytes) and method in (
            "replace",
            "lower",
            "upper",
            "strip",
            "lstrip",
            "rstrip",
            "split",
            "title",
            "swapcase",
            "casefold",
            "zfill",
            "center",
            "ljust",
            "rjust",
            "removeprefix",
            "removesuffix",
            "translate",
            "splitlines",
        ):
            return getattr(receiver, method)(*values)
        return UNKNOWN

    def _inflated(self, data: bytes, how: int | str) -> Value:
        """A decompression's output; a bomb (more than MAX_FOLD bytes) is analysed in its
        first MAX_FOLD bytes only and folds to nothing."""
        out = inflate(data, how)
        if len(out) > MAX_FOLD:
            self._decoded(out[:MAX_FOLD])
            return UNKNOWN
        return self._decoded(out)

    def _decoded(self, value: Value) -> Value:
        text = as_text(value)
        if text:
            self.on_decoded(text)
        return value
