"""Process clocks and memory from /proc (Linux), for the GPU scripts."""

from __future__ import annotations

import os


def age_s(pid: int | None = None) -> float:
    """Seconds since the process started (its exec), from /proc/<pid>/stat and /proc/uptime."""
    with open(f"/proc/{pid or os.getpid()}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) - started


def rss_mib(pid: int | None = None) -> tuple[float, float]:
    """(current, peak) resident memory in MiB: VmRSS and VmHWM."""
    values = {}
    with open(f"/proc/{pid or os.getpid()}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)
