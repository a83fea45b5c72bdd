"""Settings of the guard service, one object shared by all its parts.

The parts read them at each use, so a change (by the app or a test) applies at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..kernel.config import DEFAULT_MESSAGE


@dataclass
class GuardSettings:
    # without a usable policy or check: refuse ("closed") or run ("open")
    fail_mode: str = "closed"
    store_cell_text: bool = False
    # a kernel's report of a finding already recorded for that cell this recently: dropped
    dedupe_window: float = 300.0
    # private files for new kernels: policy snapshots and identity files
    snapshot_dir: str | None = None
    # shown in warnings
    service_name: str = "Colab"
    message: str = DEFAULT_MESSAGE
    faq_url: str = ""
    appeal_url: str = ""
    show_evidence: bool = False
    check_timeout: float = 10.0  # seconds; a check that takes longer: fail_mode decides
    # seconds of deep analysis per cell; past it the linear pass reads the rest and the
    # cell gets the policy's on_timeout (analysis.timeout); a worker process that has not
    # answered by worker_timeout is killed and started again
    check_budget: float = 3.0
    analysis_workers: int = 0  # child processes for the analysis; 0: in the server's threads
    checks_per_user: int = 1  # checks of one user at once (the rest wait their turn)

    @property
    def worker_timeout(self) -> float:
        return min(self.check_timeout * 0.8, self.check_budget * 2 + 2)

    max_cell_size: int = 1_000_000  # characters of code + user_expressions
    # websocket frames declaring more binary buffers than this are dropped unparsed
    max_frame_buffers: int = 256
    # kernel reports (anyone with code in the kernel can post them): limits
    max_report_bytes: int = 256 * 1024
    report_rate: tuple[int, float] = (30, 60.0)  # at most 30 reports per kernel per 60 s
    report_strikes: tuple[int, float] = (3, 3600.0)  # at most 3 strikes from one kernel/h
    # the kernel-side guard announces itself; kernels that do not within arm_timeout
    # are logged (and, with require_kernel_guard, refused)
    arm_timeout: float = 30.0
    require_kernel_guard: bool = True
    # kernelspecs in the user's own Jupyter data directory (which user code can write)
    trust_user_kernelspecs: bool = False
    # the user's ~/.ipython profile and PYTHONSTARTUP (run before the guard)
    trust_user_profile: bool = False
    # kernels of languages the check cannot read (not Python or a shell): refused
    refuse_unchecked_languages: bool = False
    # seconds a warn cell is held for the user's answer to the consent dialog
    consent_timeout: float = 300.0
