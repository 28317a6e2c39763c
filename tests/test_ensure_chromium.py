"""`make test`'s first step (tools/ensure_chromium.sh): the browser tests' chromium, installed as root on Debian, else
one line saying how, before the suite runs. Run with stand-ins for `id` and `apt-get` on a PATH that has nothing
else, so no test here installs anything or depends on who runs it."""

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "ensure_chromium.sh"
BASH = shutil.which("bash")
CHMOD = shutil.which("chmod")
HOW = "`sudo apt-get install chromium`"


def ensure_chromium(
    tmp_path: Path, *, uid: int, apt_get: str | None = None
) -> tuple[subprocess.CompletedProcess, Path]:
    """Runs the script as user `uid`, with `apt-get` a stand-in that logs its arguments and then runs the given shell
    lines (None: no apt-get, as off Debian); the chromium it looks for is tmp_path/chromium. Returns the result and
    the log of apt-get calls."""
    tools = tmp_path / "tools"
    tools.mkdir()
    stand_ins = {"id": f"echo {uid}"}
    if apt_get is not None:
        stand_ins["apt-get"] = f'echo "$*" >> "{tmp_path}/apt-get.log"\n{apt_get}'
    for name, body in stand_ins.items():
        (tools / name).write_text(f"#!/bin/sh\n{body}\n")
        (tools / name).chmod(0o755)
    env = {"PATH": str(tools), "CODEFORMER_CHROMIUM": str(tmp_path / "chromium")}
    done = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    return done, tmp_path / "apt-get.log"


# What apt-get's stand-in does for `install`: puts an executable where Debian's package puts chromium.
INSTALLS = f'case "$1" in install) echo > "$CODEFORMER_CHROMIUM" && {CHMOD} +x "$CODEFORMER_CHROMIUM" ;; esac'


def test_a_present_chromium_is_used_as_it_is(tmp_path: Path) -> None:
    chromium = tmp_path / "chromium"
    chromium.write_text("")
    chromium.chmod(0o755)
    done, apt_log = ensure_chromium(tmp_path, uid=0, apt_get=INSTALLS)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not apt_log.exists()


def test_as_root_on_debian_it_installs_chromium(tmp_path: Path) -> None:
    done, apt_log = ensure_chromium(tmp_path, uid=0, apt_get=INSTALLS)
    assert done.returncode == 0, done.stderr
    assert apt_log.read_text().splitlines() == ["update -qq", "install -y -qq chromium"]
    assert done.stderr == "make test: installing Debian's chromium for the browser tests\n"


@pytest.mark.parametrize(
    ("uid", "apt_get"),
    [(1000, INSTALLS), (0, None), (0, "exit 100"), (0, ":")],
    ids=["not root", "not Debian", "apt-get fails", "installed, but not where the tests look"],
)
def test_where_it_cannot_install_it_stops_with_one_line_naming_the_package_and_the_command(
    tmp_path: Path, uid: int, apt_get: str | None
) -> None:
    done, apt_log = ensure_chromium(tmp_path, uid=uid, apt_get=apt_get)
    assert done.returncode == 1
    last = done.stderr.splitlines()[-1]
    assert "Debian's package chromium" in last and HOW in last and str(tmp_path / "chromium") in last
    if uid != 0:  # without root, nothing is tried: the one line is all
        assert done.stderr == last + "\n" and not apt_log.exists()
