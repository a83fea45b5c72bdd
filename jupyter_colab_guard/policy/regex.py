"""Policy regexes: RE2 syntax, compiled with google-re2, searched case-insensitively.

Python's ``re`` backtracks, so a pattern such as ``(a+)+b`` or ``(?:[\\w-]+\\.)*host`` takes
seconds to hours on a crafted cell of a few kilobytes. RE2 never backtracks: a search takes
time linear in the text. The price is the syntax RE2 cannot run in linear time
(lookaround, backreferences, possessive quantifiers, atomic and conditional groups); a
policy that uses it is rejected with a problem that names the construct.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import re2


class RegexMatch(Protocol):
    def group(self, *groups: int | str) -> Any: ...
    def start(self, group: int | str = 0) -> int: ...
    def end(self, group: int | str = 0) -> int: ...
    def span(self, group: int | str = 0) -> tuple[int, int]: ...


class RegexError(ValueError):
    """A pattern RE2 rejects; the message says why, in the policy author's terms."""


_OPTIONS = re2.Options()
_OPTIONS.case_sensitive = False
_OPTIONS.log_errors = False  # the loader reports the error; RE2 would also print it

# What RE2 names in its error (the text after "invalid perl operator: ") -> the construct.
_GROUPS = {
    "(?=": "lookahead (?=...)",
    "(?!": "negative lookahead (?!...)",
    "(?<=": "lookbehind (?<=...)",
    "(?<!": "negative lookbehind (?<!...)",
    "(?>": "atomic group (?>...)",
    "(?(": "conditional group (?(...)...)",
    "(?P": "named backreference (?P=name)",
}


def _explain(error: re2.error) -> str:
    raw = error.args[0] if error.args else str(error)
    message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    reason, _, culprit = message.partition(": ")
    construct = None
    if reason == "invalid perl operator":
        construct = _GROUPS.get(culprit)
    elif reason == "invalid escape sequence" and culprit[1:].isdigit():
        construct = f"backreference {culprit}"
    elif reason == "invalid escape sequence" and culprit == "\\Z":
        construct = "\\Z (RE2 writes the end of the text as \\z)"
    elif reason == "bad repetition operator" and culprit.endswith("+"):
        construct = f"possessive quantifier {culprit}"
    if construct is None:
        return f"invalid regex: {message}"
    return f"invalid regex: {construct} is not supported (policy regexes are RE2 syntax)"


_SURROGATE = re.compile("[\ud800-\udfff]")


class Regex:
    """A compiled policy pattern: RE2 (``.re2``), also searching text with lone surrogates.

    google-re2 encodes the text as UTF-8 and raises on a lone surrogate, which a cell gets
    from a literal such as ``"\\ud800"``; the analyzer would then drop the cell's findings.
    Such text is searched with U+FFFD in place of each surrogate (offsets stay the same).
    """

    __slots__ = ("re2",)

    def __init__(self, compiled: Any) -> None:
        self.re2 = compiled

    @property
    def pattern(self) -> str:
        return str(self.re2.pattern)

    def search(self, text: str, /) -> RegexMatch | None:
        try:
            return self.re2.search(text)
        except UnicodeEncodeError:
            return self.re2.search(_SURROGATE.sub("\ufffd", text))

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"


def compile_regex(text: str) -> Regex:
    """Compile a policy pattern; raises RegexError for a pattern RE2 cannot run."""
    try:
        return Regex(re2.compile(text, _OPTIONS))
    except re2.error as exc:
        raise RegexError(_explain(exc)) from None
    except UnicodeEncodeError:
        raise RegexError(
            "invalid regex: a lone surrogate (\\ud800-\\udfff) cannot be matched"
        ) from None
