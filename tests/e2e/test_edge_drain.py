"""SIGTERM to the edge, as visitors see it: a kept-alive HTTP/1.1 connection gets
`Connection: close` on the response in flight, an idle one is closed, and an HTTP/2
connection gets GOAWAY naming its last stream, which still completes."""

from __future__ import annotations

import signal
import socket
import ssl
import time

import h2.config
import h2.connection
import hpack
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame

from tests.e2e.conftest import ZONE
from tests.e2e.tunnels import edge_with_origin_tunnel

HOST = f"app.{ZONE}"
SLOW = "/?delay=3"


def connect(edge, alpn: str) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(edge.ca))
    context.set_alpn_protocols([alpn])
    sock = socket.create_connection(("127.0.0.1", edge.https_port), timeout=15)
    tls = context.wrap_socket(sock, server_hostname=HOST)
    assert tls.selected_alpn_protocol() == alpn
    return tls


def read_http1_response(tls: ssl.SSLSocket) -> tuple[int, dict[str, str]]:
    """Status and headers of one response; its body (Content-Length) is read and dropped."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, "the edge closed the connection before answering"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += tls.recv(65536)
    return int(lines[0].split()[1]), headers


def get_http1(tls: ssl.SSLSocket, path: str) -> None:
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())


def closed(tls: ssl.SSLSocket, timeout: float) -> bool:
    tls.settimeout(timeout)
    try:
        return tls.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


class Http2Client:
    """Just enough HTTP/2 to send a GET and read the raw frames that come back (h2's own
    client state machine refuses frames after a GOAWAY; a real client must not)."""

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self.tls = tls
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.buffer = b""
        self.decoder = hpack.Decoder()

    def get(self, path: str) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, [(":method", "GET"), (":path", path), (":scheme", "https"), (":authority", HOST)], end_stream=True)
        self.tls.sendall(self.h2.data_to_send())
        return stream_id

    def frames(self, deadline: float):
        """Every frame until the edge closes the connection (or `deadline`)."""
        while time.monotonic() < deadline:
            while len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                self.buffer = self.buffer[9 + length :]
                yield frame
            try:
                data = self.tls.recv(65536)
            except (ConnectionError, ssl.SSLError):
                return
            if not data:
                return
            self.buffer += data

    def status(self, frame: HeadersFrame) -> int:
        return int(dict(self.decoder.decode(frame.data))[":status"])


def test_visitors_are_told_the_edge_is_draining(tmp_path):
    with edge_with_origin_tunnel(tmp_path, HOST, ("--grace-period", "10")) as (edge, _connector):
        idle = connect(edge, "http/1.1")
        get_http1(idle, "/")
        status, headers = read_http1_response(idle)
        assert status == 200 and headers.get("connection") != "close"  # kept alive, now idle

        busy = connect(edge, "http/1.1")
        get_http1(busy, SLOW)
        multiplexed = Http2Client(connect(edge, "h2"))
        stream_id = multiplexed.get(SLOW)
        time.sleep(0.7)  # both slow requests are at the origin (it answers after 3 s)
        edge.proc.popen.send_signal(signal.SIGTERM)
        drained_at = time.monotonic()

        # closed at once, not when the drain ends (after the slow requests, 2.3 s from now)
        assert closed(idle, 1.5), "an idle kept-alive connection stayed open during the drain"
        assert time.monotonic() - drained_at < 1.5

        status, headers = read_http1_response(busy)
        assert status == 200 and headers.get("connection") == "close"
        assert closed(busy, 5)

        goaway, status, ended = None, None, False
        for frame in multiplexed.frames(time.monotonic() + 10):
            if isinstance(frame, GoAwayFrame):
                goaway = goaway or frame
            elif isinstance(frame, HeadersFrame) and frame.stream_id == stream_id:
                status = multiplexed.status(frame)
                ended = ended or "END_STREAM" in frame.flags
            elif isinstance(frame, DataFrame) and frame.stream_id == stream_id:
                ended = ended or "END_STREAM" in frame.flags
        assert goaway is not None and goaway.error_code == 0 and goaway.last_stream_id == stream_id
        assert status == 200 and ended, "the stream named in the GOAWAY did not complete"

        assert edge.proc.popen.wait(timeout=15) == 0
        assert "edge.drained timed_out=False requests_cut=0" in edge.proc.log()

