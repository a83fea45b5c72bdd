"""Shared by the tests of leaf kinds (binary, listen): a one-rule policy around a
matcher, the JSON Schema, and the check that a bad leaf is a problem at its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from jupyter_colab_guard.policy import PolicyError, load_policy

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "jupyter_colab_guard" / "policy" / "schema.json").read_text())


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def one_rule(matcher: str, example: str) -> str:
    """A policy of one rule matching ``matcher``; ``example``: its one matching cell."""
    return f"""\
version: 1
categories:
  - {{id: c, title: C, description: C., action: block, severity: high}}
rules:
  - id: r
    category: c
    message: M.
    match:
      {matcher}
    examples: {{match: [{example!r}], no_match: ["!ls"]}}
"""


def schema_errors(text: str) -> list[object]:
    return list(Draft202012Validator(SCHEMA).iter_errors(yaml.safe_load(text)))


def assert_problem_at(
    tmp_path: Path, text: str, needle: str, key: str, fragment: str, schema: bool
) -> None:
    """Loading ``text`` fails with a problem under ``key`` on the line of ``needle``;
    the schema rejects it too when ``schema``."""
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    found = [p for p in info.value.problems if p.key == key and fragment in p.message]
    assert found, info.value.problems
    assert (found[0].path, found[0].line) == (str(path), line_of(text, needle))
    errors = schema_errors(text)
    assert bool(errors) == schema, errors
