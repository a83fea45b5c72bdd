"""Kernel-side settings: the ``KernelGuard`` traitlets configurable.

Set them on the kernel command line (``--KernelGuard.policy_path=...``), in
``ipython_kernel_config.py`` (``c.KernelGuard.policy_path = ...``) or through the
server extension, which appends them to every kernel it starts.
"""

from __future__ import annotations

import os

from traitlets import Bool, Enum, Float, Unicode
from traitlets.config import Configurable

DEFAULT_MESSAGE = (
    "You may be executing code that is disallowed, and this may restrict your ability to "
    "use {service} in the future. Please note the prohibited actions specified in our FAQ."
)
DEFAULT_FAQ_URL = "https://research.google.com/colaboratory/faq.html#disallowed-activities"


def render_message(message: str, service: str) -> str:
    """The message with '{service}' replaced (str.replace: operator text may contain
    other braces). Shared by the kernel guard and the server's refusal."""
    return message.replace("{service}", service)


def default_audit_log() -> str:
    """``$JUPYTER_DATA_DIR/colab_guard/audit.jsonl`` (see ``jupyter --data-dir``)."""
    from jupyter_core.paths import jupyter_data_dir

    return os.path.join(jupyter_data_dir(), "colab_guard", "audit.jsonl")


class KernelGuard(Configurable):
    """Settings of the kernel extension (no code edits needed to change them)."""

    policy_path = Unicode("", help="Policy YAML file; empty means the shipped default policy.").tag(
        config=True
    )
    policy_dir = Unicode(
        "",
        help="The server's private folder of policy snapshots (policy-<version>.yaml). "
        "Set: before each cell the guard puts in force the version the server marked on "
        "the execute_request, read from this folder and checked against its hash.",
    ).tag(config=True)
    service_name = Unicode("Colab", help="Service name put into the message.").tag(config=True)
    message = Unicode(
        DEFAULT_MESSAGE, help="Warning text; '{service}' is replaced by service_name."
    ).tag(config=True)
    faq_url = Unicode(DEFAULT_FAQ_URL, help="Link to the prohibited-actions FAQ.").tag(config=True)
    appeal_url = Unicode("", help="Link to file an appeal; hidden when empty.").tag(config=True)
    show_evidence = Bool(
        False, help="Show the matched text to the user (hiding it slows evaders)."
    ).tag(config=True)
    check_budget = Float(
        3.0,
        help="Seconds of deep analysis per cell in the kernel; past it the rest is read by "
        "the linear pass and the policy's on_timeout applies.",
    ).tag(config=True)
    fail_closed = Bool(
        True,
        help="Block cells when the guard itself fails (policy cannot load, analyzer error).",
    ).tag(config=True)
    warn_default_headless = Enum(
        ["cancel", "run"],
        default_value="cancel",
        help="Choice for a 'warn' finding when the frontend does not allow stdin.",
    ).tag(config=True)
    audit_log = Unicode(
        "", help="JSON-lines audit log; empty means $JUPYTER_DATA_DIR/colab_guard/audit.jsonl."
    ).tag(config=True)
    tier = Unicode("", help="Tier of the kernel's user (e.g. free, paid); empty = first tier.").tag(
        config=True
    )
    identity_file = Unicode(
        "",
        help="JSON file with the kernel user's tier, groups and admin-granted exceptions "
        "(written by the server extension, re-read when it changes).",
    ).tag(config=True)
    allow_unload = Bool(
        False, help="Let %unload_ext remove the guard (otherwise it is refused and reported)."
    ).tag(config=True)

    def audit_log_path(self) -> str:
        return self.audit_log or default_audit_log()

    def rendered_message(self) -> str:
        return render_message(self.message, self.service_name)
