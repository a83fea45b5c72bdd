"""A policy as one text: what the shared store holds and what kernels are handed.

A policy file is kept as written; a folder is flattened to one YAML text. Either is
validated first, with problems named against the operator's own files and lines.
"""

from __future__ import annotations

from pathlib import Path

from .folder import flatten
from .loader import PolicyError, Problem, load_policy, parse_policy
from .model import Policy


def read_document(path: str | Path) -> tuple[str, Policy]:
    """(text, policy) of a policy file or folder; raises PolicyError on any problem."""
    target = Path(path)
    load_policy(target)  # every problem, against the files and lines as written
    if target.is_dir():
        text = flatten(target)
    else:
        try:
            text = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError([Problem(str(target), 0, "", f"cannot read: {exc}")]) from None
    return text, parse_document(text, str(target))


def parse_document(text: str, name: str = "<document>") -> Policy:
    """The policy of one YAML or JSON text (JSON is YAML); raises PolicyError."""
    if not isinstance(text, str) or not text.strip():
        raise PolicyError([Problem(name, 0, "", "the policy document is empty")])
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PolicyError([Problem(name, 0, "", "the document is not valid UTF-8 text")]) from None
    return parse_policy(text, name)
