"""Where the CPU went (Linux /proc): CPU seconds per process group over a phase of a bench, read
from /proc/<pid>/stat and /proc/stat; the PostgreSQL backends of the bench database are found by
their command line. Used by bench/ticket_bench.py; without /proc every figure is 0.
"""

from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return 0


def _machine_busy() -> int:
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v) - v[3] - v[4]  # all but idle and iowait
    except OSError:
        return 0


def _postgres_pids(dbname: str) -> list[int]:
    out = []
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if f" {dbname} ".encode() in f.read().replace(b"\0", b" "):
                        out.append(int(d))
            except OSError:
                pass
    return out


class CpuMeter:
    """CPU seconds of each group over a phase: this load generator, Foyer nodes, baseline
    processes, redis, the PostgreSQL backends of the bench database, and the rest of the machine
    (shared PostgreSQL processes such as the WAL writer, other users of the machine)."""

    def __init__(self, groups: dict[str, list[int]], dbname: str) -> None:
        self.groups = groups
        self.dbname = dbname

    def snapshot(self) -> dict[str, float]:
        groups = {**self.groups, "postgres (bench db)": _postgres_pids(self.dbname)}
        out = {name: sum(_proc_ticks(p) for p in pids) / _TICK for name, pids in groups.items()}
        out["machine busy"] = _machine_busy() / _TICK
        return out

    @staticmethod
    def render(before: dict[str, float], after: dict[str, float], wall: float) -> str:
        d = {k: max(0.0, after.get(k, 0.0) - before.get(k, 0.0)) for k in after}
        known = sum(v for k, v in d.items() if k != "machine busy")
        d["rest of machine"] = max(0.0, d["machine busy"] - known)
        parts = [f"{k} {v / wall:.2f}" for k, v in d.items() if k != "machine busy"]
        return f"cores used ({wall:.1f}s): " + ", ".join(parts) + f"; total {d['machine busy'] / wall:.2f} of 2"
