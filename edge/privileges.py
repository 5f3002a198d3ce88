"""`burrow-edge serve --user` (or `user:` in edge.yml): give up root once every port is bound.

`target_user` checks the request before anything is bound (clear errors, no
traceback); `drop_to` hands the edge home to the user and switches the process
(every thread: glibc applies set*id to all of them) to the user's uid and gid
with no supplementary groups.
"""

from __future__ import annotations

import logging
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


def target_user(name: str) -> User:
    """The account to run as; ConfigError when it is unknown or when we are not root."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"user {name!r} (--user or user: in edge.yml): no such user on this system") from None
    if os.geteuid() != 0:
        raise ConfigError(f"running as user {name!r} needs the edge to start as root (it binds its ports, then drops root)")
    if entry.pw_uid == 0:
        raise ConfigError(f"user {name!r} is root: name an unprivileged user")
    return User(name, entry.pw_uid, entry.pw_gid)


def drop_to(user: User, home: Path) -> None:
    """Give `home` and everything in it to `user` (files the edge made as root), then become `user`."""
    _hand_over(home, user)
    os.setgroups([])
    os.setgid(user.gid)
    os.setuid(user.uid)
    if os.getuid() != user.uid or os.geteuid() != user.uid:
        raise ConfigError(f"could not drop root for {user.name}")
    log.info("edge.privileges_dropped user=%s uid=%d gid=%d", user.name, user.uid, user.gid)


def _hand_over(home: Path, user: User) -> None:
    paths = [home]
    for directory, dirnames, filenames in os.walk(home):  # symlinks are neither followed nor changed
        paths += [Path(directory, name) for name in dirnames + filenames]
    for path in paths:
        stat = path.lstat()
        if not path.is_symlink() and (stat.st_uid, stat.st_gid) != (user.uid, user.gid):
            os.chown(path, user.uid, user.gid, follow_symlinks=False)
