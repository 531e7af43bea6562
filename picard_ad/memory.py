"""How much memory this process can still use: what both the image readers' size limit and the executors' batch
sizes are decided from."""

from __future__ import annotations

import os
from pathlib import Path


def meminfo_available(path: str = "/proc/meminfo") -> int | None:
    """MemAvailable of a /proc/meminfo file in bytes; None when the file or the line is missing or malformed."""
    try:
        with open(path) as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    fields = line.split()
                    return int(fields[1]) * 1024 if len(fields) >= 2 and fields[1].isdigit() else None
    except OSError:
        return None
    return None


def _cgroup_folders() -> list[tuple[Path, str, str, str]]:
    """(folder, limit file, usage file, inactive page cache key) of this process's memory cgroup, v2 and v1, and of
    the roots of their mounts (a container's own cgroup, where the namespace hides the path)."""
    own = {"v2": "", "v1": ""}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, cgroup = line.split(":", 2)
            if controllers == "":
                own["v2"] = cgroup
            elif "memory" in controllers.split(","):
                own["v1"] = cgroup
    except (OSError, ValueError):
        pass
    v2, v1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")
    v2_files = ("memory.max", "memory.current", "inactive_file")
    v1_files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
    folders = [(v2 / own["v2"].lstrip("/"), *v2_files), (v1 / own["v1"].lstrip("/"), *v1_files)]
    return list(dict.fromkeys([*folders, (v2, *v2_files), (v1, *v1_files)]))


def cgroup_available() -> int | None:
    """The least, over the cgroups in ``_cgroup_folders`` that set a memory limit, of the limit minus the usage.

    Usage counts the page cache; its inactive part is reclaimed before the limit bites, so it is not counted.
    """
    found = []
    for folder, limit_name, usage_name, cache_name in _cgroup_folders():
        try:
            limit = (folder / limit_name).read_text().strip()
            usage = int((folder / usage_name).read_text().strip())
            stats = dict(line.split()[:2] for line in (folder / "memory.stat").read_text().splitlines())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            found.append(max(0, int(limit) - usage + int(stats.get(cache_name, 0))))
    return min(found) if found else None


def address_space_available() -> int | None:
    """The address-space limit (``ulimit -v``) minus this process's size, in bytes; None without a limit."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        size = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        size = 0
    return max(0, soft - size)


def available_memory() -> int | None:
    """Bytes this process can still allocate: the least of the system's available memory (MemAvailable), the
    cgroup's limit minus its usage, and the address-space limit (``ulimit -v``) minus the process's size; None
    when none of them is known."""
    known = [v for v in (meminfo_available(), cgroup_available(), address_space_available()) if v is not None]
    return min(known) if known else None
