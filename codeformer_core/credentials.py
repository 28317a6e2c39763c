"""Who may use the app: user names and passwords, from `app.py --auth` and `--auth-file` or `CODEFORMER_AUTH`.

A password must never reach a log, a report or an error message: `Login` leaves it out of its repr, and every
refusal here says where the bad entry is (a line, an entry's position), never what it holds.
"""

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidOptionError

SHARED_MODE_BITS = 0o066
"""Group and others may read or write: whoever can read the file has every password, whoever can write it can add
a login of their own."""


@dataclass(frozen=True)
class Login:
    user: str
    password: str = field(repr=False)

    @classmethod
    def parse(cls, text: str, where: str) -> "Login":
        """`user:password` (the password may hold colons; spaces around either are dropped); `where` names the
        entry in the refusal, which never quotes it."""
        user, colon, password = text.partition(":")
        user, password = user.strip(), password.strip()
        if not (colon and user and password):
            raise InvalidOptionError(f"{where} is not user:password")
        return cls(user, password)


def logins_from_list(text: str, variable: str) -> tuple[Login, ...]:
    """The logins of an environment variable: `user:password` entries separated by commas (so a password there
    cannot hold a comma; an --auth-file can)."""
    entries = [entry for entry in text.split(",") if entry.strip()]
    return tuple(Login.parse(entry, f"entry {number} of {variable}") for number, entry in enumerate(entries, 1))


def read_logins_file(path: Path) -> tuple[Login, ...]:
    """One `user:password` a line (blank lines and `#` comments skipped), from a file only its owner can read."""
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and mode & SHARED_MODE_BITS:  # elsewhere these bits do not say who may read it
            raise InvalidOptionError(
                f"{path} can be read or changed by other users of this machine: make it private with chmod 600 {path}"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidOptionError(f"{path} cannot be read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidOptionError(f"{path} is not UTF-8 text") from None  # the decoder's message quotes a byte
    logins = tuple(
        Login.parse(line, f"line {number} of {path}")
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not logins:
        raise InvalidOptionError(f"{path} has no user:password line")
    return logins


def merge_logins(*sources: Iterable[Login]) -> tuple[Login, ...]:
    """Every login once, in order; a user given two different passwords is refused rather than one of them kept
    unnoticed."""
    passwords: dict[str, str] = {}
    for login in (login for source in sources for login in source):
        if passwords.setdefault(login.user, login.password) != login.password:
            raise InvalidOptionError(f"the user {login.user!r} is given two different passwords: keep one")
    return tuple(Login(user, password) for user, password in passwords.items())
