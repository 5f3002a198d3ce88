"""connector/origins/connect.py through StreamServer and a real tunnel pair: the PROXY
protocol header an origin connection starts with, and client certificates (mTLS)."""

from __future__ import annotations

import functools
import socket
import ssl
import threading

import h11
import pytest
import trio
import trustme

from shared import protocol
from shared.events import RequestHead
from shared.transport import TunnelConnection
from tests.connector.tunnel_pair import fetch, start

HOST = b"app.example.test"
VISITOR = ((b"burrow-connecting-ip", b"203.0.113.7"), (b"burrow-connecting-port", b"51000"))


async def serve(nursery, handler) -> int:
    """A loopback origin running `handler(stream)` per connection; its port."""
    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1]


async def tunnel(nursery, service: str, origin_request: dict) -> TunnelConnection:
    """The edge side of a tunnel whose connector serves one rule for HOST."""
    rules = [{"hostname": HOST.decode(), "service": service, "originRequest": origin_request}, {"service": "http_status:404"}]
    edge, _, _ = await start(nursery, rules)
    return edge


async def get(edge: TunnelConnection, *headers: tuple[bytes, bytes]) -> tuple[int, bytes]:
    return await fetch(edge, RequestHead(b"GET", b"/", HOST, headers=((b"host", HOST), *headers)))


async def answer(stream: trio.abc.Stream, prefix: bytes = b"") -> None:
    """Read one HTTP/1.1 request; answer 200 with `prefix` (what came before the request) as the body."""
    conn = h11.Connection(h11.SERVER)
    while (event := conn.next_event()) is not h11.EndOfMessage and not isinstance(event, h11.EndOfMessage):
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
    response = h11.Response(status_code=200, headers=[(b"content-length", str(len(prefix)).encode())])
    await stream.send_all(conn.send(response) + conn.send(h11.Data(data=prefix)) + conn.send(h11.EndOfMessage()))


async def read_line(stream: trio.abc.Stream) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        line += await stream.receive_some(1)
    return line


async def test_proxy_protocol_v1_on_http_gives_each_request_its_own_connection():
    connections = []

    async def origin(stream):
        connections.append(stream)
        await answer(stream, await read_line(stream))

    async with trio.open_nursery() as nursery:
        port = await serve(nursery, origin)
        edge = await tunnel(nursery, f"http://127.0.0.1:{port}", {"proxyProtocol": "v1"})
        first = await get(edge, *VISITOR)
        second = await get(edge, (b"burrow-connecting-ip", b"2001:db8::7"))  # an edge that sent no port
        nursery.cancel_scope.cancel()
    assert first == (200, f"PROXY TCP4 203.0.113.7 127.0.0.1 51000 {port}\r\n".encode())
    assert second == (200, f"PROXY TCP6 2001:db8::7 ::ffff:7f00:1 0 {port}\r\n".encode())
    assert len(connections) == 2  # never reused: each connection carries one visitor


async def test_proxy_protocol_v2_on_a_tcp_service():
    async def origin(stream):
        header = b""
        while len(header) < 28:
            header += await stream.receive_some(28 - len(header))
        await stream.send_all(header)

    async with trio.open_nursery() as nursery:
        port = await serve(nursery, origin)
        edge = await tunnel(nursery, f"tcp://127.0.0.1:{port}", {"proxyProtocol": "v2"})
        head = RequestHead(b"GET", b"/", HOST, headers=((b"host", HOST), (b"upgrade", b"burrow-tcp"), *VISITOR))
        async with await edge.open_stream(head, protocol.KIND_UPGRADE) as stream:
            assert (await stream.receive_response()).status == 101
            received = b""
            while len(received) < 28:
                received += await stream.receive()
        nursery.cancel_scope.cancel()
    assert received[:16] == b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"
    assert received[16:] == bytes([203, 0, 113, 7, 127, 0, 0, 1]) + (51000).to_bytes(2, "big") + port.to_bytes(2, "big")


class TlsOrigin:
    """A blocking TLS origin in a thread that requires a client certificate from `ca` and
    answers 200; a refused handshake's alert is sent and the socket drained, never reset."""

    def __init__(self, ca: trustme.CA) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("origin.internal").configure_cert(self.context)
        ca.configure_trust(self.context)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            raw, _ = self.listener.accept()
            raw.settimeout(5)
            tls = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            try:
                tls.do_handshake()
                while b"\r\n\r\n" not in (data := tls.recv(65536)) and data:
                    pass
                tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            except (ssl.SSLError, OSError):  # the alert went out; drain rather than reset the connection
                tls.shutdown(socket.SHUT_WR)
                while tls.recv(65536):
                    pass
            finally:
                tls.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A TLS origin requiring client certificates, its CA and client certificate files."""
    tmp = tmp_path_factory.mktemp("pki")
    ca, stranger = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    for name, issuer in (("good", ca), ("stranger", stranger)):
        leaf = issuer.issue_cert("burrow-connector")
        leaf.cert_chain_pems[0].write_to_path(str(tmp / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(tmp / f"{name}.key"))
    return tmp, TlsOrigin(ca)


@pytest.mark.parametrize(
    "client, status, message",
    [
        ("good", 200, b""),
        (None, 502, b"requires a client certificate (TLS alert: certificate required); set originRequest clientCertificate"),
        ("stranger", 502, b"refused the client certificate"),
    ],
)
async def test_client_certificate(pki, client, status, message):
    tmp, origin = pki
    options = {"caPool": str(tmp / "ca.pem"), "originServerName": "origin.internal"}
    if client:
        options |= {"clientCertificate": str(tmp / f"{client}.pem"), "clientKey": str(tmp / f"{client}.key")}
    async with trio.open_nursery() as nursery:
        edge = await tunnel(nursery, f"https://127.0.0.1:{origin.port}", options)
        got_status, body = await get(edge)
        nursery.cancel_scope.cancel()
    assert got_status == status and message in body, body
