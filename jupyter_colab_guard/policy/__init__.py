"""Policy files: loading, validation and the data model."""

from .loader import PolicyError, Problem, default_policy_path, load_policy, parse_policy
from .model import Category, Identity, Leaf, Policy, PolicyException, Rule

__all__ = [
    "Category",
    "Identity",
    "Leaf",
    "Policy",
    "PolicyError",
    "PolicyException",
    "Problem",
    "Rule",
    "default_policy_path",
    "load_policy",
    "parse_policy",
]
