"""`make space-check`: install and start the app the way a Hugging Face Space builder does, then restore a face.

    .venv/bin/python -m tools.space_check [--python python3.12] [--keep DIR]

In a temporary folder it exports the committed tree (what a push to a Space carries), makes a fresh virtual
environment with the README's `python_version` (the nearest Python here), installs `packages.txt` with apt and
`pre-requirements.txt` if they exist, then `requirements.txt` with a plain `pip install -r` (build isolation and
all, as the builder runs it), and prints how long that took. It then starts `python app.py` with SPACE_ID set,
a weights folder holding a generated CodeFormer checkpoint and no network for weights, asks `/restore` for an
aligned face through gradio_client, and checks the answer is a 512x512 PNG. Exit code 0 when all of that worked.

Not part of `make test`: it downloads several GB (torch, twice: once more inside basicsr's isolated build).
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.shared_data import DEFAULT_SHARED_DIR, SHARED_DIR_VARIABLE

REPO_ROOT = Path(__file__).resolve().parents[1]
FACE = "aligned/0240.png"
SPACE_PYTHON = "3.12"
"""The README front matter's python_version, to the minor version."""
STARTUP_TIMEOUT = 600.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", help="interpreter for the Space's venv (default: a Python 3.12, the README's)")
    parser.add_argument("--keep", type=Path, help="work here and keep it, instead of a temporary folder")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="space-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return check(work, args.python or find_python(SPACE_PYTHON))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def check(work: Path, python: str) -> int:
    space = work / "space"
    export_committed_tree(space)
    venv = work / "venv"
    started = time.monotonic()
    install(space, venv, python)
    print(f"[space-check] install: {time.monotonic() - started:.0f} s with {version(venv)}", flush=True)
    weights = work / "weights"
    weights.mkdir(exist_ok=True)
    # The golden fill reads the checkpoint's key list from this checkout's ../shared.
    shared = {**os.environ, SHARED_DIR_VARIABLE: str(DEFAULT_SHARED_DIR)}
    run([venv / "bin/python", "-c", "import sys; from tests.support.golden import "
         "write_official_checkpoint; write_official_checkpoint('restore', sys.argv[1])", weights / "codeformer.pth"],
        cwd=space, env=shared)
    port = free_port()
    env = {**os.environ, "SPACE_ID": "local/space-check", "CODEFORMER_WEIGHTS_DIR": str(weights),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([venv / "bin/python", "app.py", "--port", str(port)], cwd=space, env=env)
    try:
        started = time.monotonic()
        url = f"http://127.0.0.1:{port}/"
        wait_for(url, server)
        print(f"[space-check] app answered after {time.monotonic() - started:.0f} s", flush=True)
        started = time.monotonic()
        request = (
            "import sys, cv2; from gradio_client import Client, handle_file;"
            "path, report = Client(sys.argv[1], verbose=False).predict(handle_file(sys.argv[2]), aligned=True,"
            " upscale=1, api_name='/restore');"
            "image = cv2.imread(path, cv2.IMREAD_UNCHANGED); print(report);"
            "sys.exit(0 if image is not None and image.shape[:2] == (512, 512) else 1)"
        )
        face = DEFAULT_SHARED_DIR / "samples" / FACE
        run([venv / "bin/python", "-c", request, url, face], cwd=space)
        print(f"[space-check] /restore gave a 512x512 PNG in {time.monotonic() - started:.0f} s: OK", flush=True)
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)


def find_python(version: str) -> str:
    """A working `python<version>`: on PATH, or one pyenv installed (its shim fails unless that version is
    selected); else this interpreter, said in one line."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(str(path) for path in Path.home().glob(f".pyenv/versions/{version}*/bin/python{version}"))
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    print(f"[space-check] no Python {version} here: using {sys.executable}", flush=True)
    return sys.executable


def export_committed_tree(target: Path) -> None:
    """What a push carries: the committed files, not the working tree's extras (a kept folder is replaced)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO_ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)


def install(space: Path, venv: Path, python: str) -> None:
    run([python, "-m", "venv", venv])
    pip = [venv / "bin/python", "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    run([*pip, "--upgrade", "pip"])
    if (space / "packages.txt").is_file():
        packages = (space / "packages.txt").read_text().split()
        run(["apt-get", "install", "-y", "-qq", *packages])
    if (space / "pre-requirements.txt").is_file():
        run([*pip, "-r", space / "pre-requirements.txt"])
    run([*pip, "-r", space / "requirements.txt"])


def version(venv: Path) -> str:
    script = "import sys, torch; print(f'Python {sys.version.split()[0]}, torch {torch.__version__}')"
    done = subprocess.run([venv / "bin/python", "-c", script], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def wait_for(url: str, server: subprocess.Popen) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"[space-check] app.py exited with code {server.returncode} before answering")
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except (urllib.error.URLError, OSError):
            time.sleep(2)
    raise SystemExit(f"[space-check] the app did not answer within {STARTUP_TIMEOUT:.0f} s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(command: list, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    print("[space-check] $", " ".join(map(str, command)), flush=True)
    subprocess.run([str(part) for part in command], cwd=cwd, env=env, check=True)


if __name__ == "__main__":
    sys.exit(main())
