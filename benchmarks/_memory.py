"""Peak memory of the current process, for the benchmarks that run each case in a child process.

``getrusage(RUSAGE_SELF).ru_maxrss`` is no good there: Linux carries the parent's high-water mark
over fork and exec. ``VmHWM`` in /proc/self/status belongs to this process image only.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mib() -> float:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: best effort
