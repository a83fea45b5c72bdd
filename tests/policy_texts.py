"""Small policies shared by the tests of several layers."""

from __future__ import annotations


def oldtool_policy(name: str) -> str:
    """A one-rule policy that blocks running ``oldtool`` (tests add rules after it)."""
    return f"""\
version: 1
name: {name}
categories:
  - id: tools
    title: Running forbidden tools
    description: These tools must not run here.
    action: block
    severity: high
rules:
  - id: oldtool
    category: tools
    message: Runs the old tool.
    match: {{shell: {{program: [oldtool]}}}}
    examples: {{match: ["!oldtool"], no_match: ["print(1)"]}}
"""
