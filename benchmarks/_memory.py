"""Peak memory of a call, on CPU (process high-water mark) or CUDA (allocator peak)."""

from __future__ import annotations

import torch


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_mib(fn, device: str | torch.device = "cpu") -> tuple[object, float]:
    """Run ``fn()`` and return its result and the extra peak memory it needed, in MiB.

    On CUDA this is the allocator's peak above the memory allocated before the call; on CPU
    it is the rise of the process's resident high-water mark (reset through
    ``/proc/self/clear_refs``, Linux only), which counts every allocation, not only torch's.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        result = fn()
        torch.cuda.synchronize()
        return result, (torch.cuda.max_memory_allocated() - before) / 2**20
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _status_kib("VmRSS")
    result = fn()
    return result, max(_status_kib("VmHWM") - before, 0) / 1024
