"""What every benchmark prints about the machine it ran on, and how it times a call (bench scripts
import it as `machine`)."""

import platform
import subprocess
import time


def cpu_model() -> str:
    """lscpu's "Model name", else what platform knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine() or "unknown"


def best_time(fn, repeats: int) -> float:
    """The least wall time of ``repeats`` calls of ``fn`` (the least disturbed run), seconds."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best
