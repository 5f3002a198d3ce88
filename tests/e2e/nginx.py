"""nginx as a real origin: one process with the server blocks a test module gives it,
stopped with the module's edge."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from tests.e2e.conftest import START_TIMEOUT, Proc, wait_until

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="needs nginx (apt-get install -y nginx)")

CONF = """\
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  default_type text/plain;
{servers}
}}
"""


def start_nginx(edge, tmp: Path, servers: str, ports: list[int]) -> Proc:
    """nginx with `servers` (server blocks; `{tmp}` is `tmp`) listening on `ports` of 127.0.0.1."""
    conf = tmp / "nginx.conf"
    conf.write_text(CONF.format(tmp=tmp, servers=servers.replace("{tmp}", str(tmp))))
    proc = Proc([NGINX, "-c", str(conf), "-p", str(tmp)], tmp / "nginx.log", edge.env)
    edge.procs.append(proc)
    wait_until(lambda: all(_listening(port) for port in ports) or not proc.alive(), START_TIMEOUT, "nginx to listen")
    assert proc.alive(), proc.log() + (tmp / "error.log").read_text()
    return proc


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
