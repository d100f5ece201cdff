"""What every benchmark prints about the machine it ran on (bench scripts import it as `machine`)."""

import platform
import subprocess


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
