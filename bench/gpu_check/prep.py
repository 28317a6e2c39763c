"""Fill bench/gpu-carry/ (git-ignored) with what a bare GPU machine needs for the check and cannot fetch itself:

- wheels/: pure-Python wheels of the modules `imports.CARRIED` names, each at the version this Python runs (the
  one the CPU tests use), for the machine's Python 3.12;
- golden/: ../shared/golden's vectors (a device call takes the repository, not ../shared);
- samples/00.jpg: the whole-photo sample (never committed: the samples are not ours to redistribute).

    .venv/bin/python -m bench.gpu_check.prep        # make gpu-check-prep

A device call carries at most 64 MiB, the working tree included; this stops short of it.
"""

import shutil
import subprocess
import sys
from importlib.metadata import version

from .imports import CARRIED
from .plan import DEFAULT_CARRY, PHOTO_NAME, REPO_ROOT, SHARED_DIR, TASKS

DEVICE_PYTHON = "3.12"
CALL_LIMIT_MIB = 64.0


def main() -> int:
    if DEFAULT_CARRY.exists():
        shutil.rmtree(DEFAULT_CARRY)  # one version of each wheel: two would stop the whole install there
    wheels = DEFAULT_CARRY / "wheels"
    wheels.mkdir(parents=True)
    pins = [f"{module.replace('_', '-')}=={version(module.replace('_', '-'))}" for module in CARRIED]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", DEVICE_PYTHON, "--dest", str(wheels), *pins], check=True)
    compiled = [path.name for path in wheels.glob("*.whl") if not path.name.endswith("-none-any.whl")]
    if compiled:
        print(f"prep: not pure Python, so not certain to run there: {', '.join(compiled)}", file=sys.stderr)
        return 1
    golden = DEFAULT_CARRY / "golden"
    golden.mkdir()
    for task in TASKS:
        for name in (f"{task}.keys.json", f"{task}.npz", f"{task}_input.png"):
            shutil.copy2(SHARED_DIR / "golden" / name, golden / name)
    samples = DEFAULT_CARRY / "samples"
    samples.mkdir()
    shutil.copy2(SHARED_DIR / "samples" / "whole" / PHOTO_NAME, samples / PHOTO_NAME)
    return _report_sizes()


def _report_sizes() -> int:
    """List what will be carried; fail if it and the working tree exceed one device call's limit."""
    files = sorted(path for path in DEFAULT_CARRY.rglob("*") if path.is_file())
    for path in files:
        print(f"{path.stat().st_size / 2**20:8.2f} MiB  {path.relative_to(REPO_ROOT)}")
    carried = sum(path.stat().st_size for path in files) / 2**20
    tree = _working_tree_mib()
    print(f"{carried:8.2f} MiB  carried ({len(files)} files); with the working tree ({tree:.1f} MiB): "
          f"{carried + tree:.1f} of {CALL_LIMIT_MIB:g} MiB")
    if carried + tree > CALL_LIMIT_MIB:
        print("prep: too big for one device call", file=sys.stderr)
        return 1
    return 0


def _working_tree_mib() -> float:
    """Tracked and untracked-but-not-ignored files: what a device call sends besides the carried paths."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    paths = [REPO_ROOT / name for name in listed if name]
    return sum(path.stat().st_size for path in paths if path.is_file()) / 2**20


if __name__ == "__main__":
    sys.exit(main())
