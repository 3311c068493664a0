"""Forward time and peak memory of every registered denoiser, as ratios to deepinv's DnCNN.

The peer, ``deepinv.models.DnCNN(pretrained=None)`` (20 layers, 64 channels), is measured in
the same run on the same input. Registry-driven: a newly registered denoiser appears here.

Usage: ``python benchmarks/bench_registry_denoisers.py [--quick] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import deepinv as dinv
import torch

from deepinv_pnn.registry import components

sys.path.insert(0, str(Path(__file__).parent))
from _memory import peak_memory_mib  # noqa: E402


def measure(model, x, repeats: int) -> tuple[float, float]:
    """Median seconds per forward pass and peak extra memory of one pass in MiB."""
    with torch.no_grad():
        # memory of the first pass, before the allocator caches anything
        _, peak = peak_memory_mib(lambda: model(x, 0.1), x.device)
        times = []
        for _ in range(repeats):
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x, 0.1)
            if x.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    size, repeats = (64, 3) if args.quick else (256, 5)
    torch.manual_seed(0)
    rows = []
    for channels in (1,):
        x = torch.rand(1, channels, size, size, device=args.device)
        peer = dinv.models.DnCNN(in_channels=channels, out_channels=channels, pretrained=None).to(args.device).eval()
        peer_time, peer_mem = measure(peer, x, repeats)
        rows.append(("DnCNN (peer)", peer_time, peer_mem, 1.0, 1.0))
        for component in components("denoiser"):
            if channels not in component.channels and not component.contract.get("any_channels"):
                continue
            model = component.build().to(args.device).eval()
            seconds, memory = measure(model, x, repeats)
            rows.append((component.name, seconds, memory, seconds / peer_time, memory / max(peer_mem, 1e-9)))
    print(f"denoiser forward pass, 1x1x{size}x{size}, {args.device}, median of {repeats}")
    print(f"{'denoiser':<18} {'time (ms)':>10} {'peak (MiB)':>11} {'time/DnCNN':>11} {'mem/DnCNN':>10}")
    for name, seconds, memory, t_ratio, m_ratio in rows:
        print(f"{name:<18} {seconds * 1e3:10.1f} {memory:11.1f} {t_ratio:11.2f} {m_ratio:10.2f}")


if __name__ == "__main__":
    main()
