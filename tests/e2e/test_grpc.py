"""gRPC end to end: a real grpcio client → the edge's public HTTP/2 → tunnel → connector →
a real grpcio server, over h2c (`http://` + `http2Origin: true`) and h2 over TLS (`https://`
+ `http2Origin: true`, ALPN h2). Unary and the three streaming kinds, and an error status
whose message must arrive, i.e. trailers cross every hop in both directions.

The client trusts only the edge's dev CA (`init --dev-ca`): grpcio's BoringSSL accepts it."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme

from tests.e2e.conftest import ZONE

ORIGIN_NAME = "grpc-origin.internal"
HOSTS = ("grpc", "grpcs", "grpc-h1")
SERVICE = "/burrow.test.Echo/"
TIMEOUT = 20.0


# --- a tiny service without protoc: raw bytes in and out -----------------------------


def _unary(request: bytes, context) -> bytes:
    if request == b"missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: missing")
    metadata = dict(context.invocation_metadata())
    context.set_trailing_metadata((("echo-trailer", metadata.get("x-probe", "none")),))
    return b"echo:" + request


CANCELLED = threading.Event()  # set when the origin sees an endless stream's call end


def _server_stream(request: bytes, context):
    if request == b"endless":
        context.add_callback(CANCELLED.set)
        while context.is_active():
            yield b"tick"
            time.sleep(0.01)
        return
    for index in range(int(request)):
        yield f"item {index}".encode()


def _client_stream(requests, context) -> bytes:
    return b"|".join(requests)


def _bidi(requests, context):
    for request in requests:
        yield request.upper()


HANDLERS = grpc.method_handlers_generic_handler(
    "burrow.test.Echo",
    {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
    },
)


def start_server(credentials=None) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((HANDLERS,))
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, port


@dataclass
class Grpc:
    edge: object
    h2c_port: int
    tls_port: int


@pytest.fixture(scope="module")
def grpc_tunnel(edge, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grpc")
    ca = trustme.CA()
    ca_file = tmp / "origin-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert = ca.issue_cert(ORIGIN_NAME)
    tls_credentials = grpc.ssl_server_credentials(
        [(cert.private_key_pem.bytes(), b"".join(blob.bytes() for blob in cert.cert_chain_pems))]
    )
    plain, plain_port = start_server()
    secure, secure_port = start_server(tls_credentials)
    env = edge.login("grpc")
    edge.cli("burrow", "tunnel", "create", "grpc-tunnel", env=env)
    for host in HOSTS:
        edge.cli("burrow", "tunnel", "route", "dns", "grpc-tunnel", f"{host}.{ZONE}", env=env)
    config = Path(env["BURROW_HOME"]) / "config.yml"
    config.write_text(
        f"""tunnel: grpc-tunnel
ingress:
  - hostname: grpc.{ZONE}
    service: http://127.0.0.1:{plain_port}
    originRequest: {{http2Origin: true}}
  - hostname: grpcs.{ZONE}
    service: https://127.0.0.1:{secure_port}
    originRequest: {{http2Origin: true, originServerName: {ORIGIN_NAME}, caPool: {ca_file}}}
  - hostname: grpc-h1.{ZONE}
    service: http://127.0.0.1:{plain_port}
  - service: http_status:404
"""
    )
    connector = edge.start(["burrow", "tunnel", "run", "--config", config, "grpc-tunnel"], "grpc-connector", env)
    connector.wait_for_log(r"tunnel\.registered index=", count=4)
    yield Grpc(edge, plain_port, secure_port)
    connector.stop()
    plain.stop(None)
    secure.stop(None)


def channel_through_edge(tunnel: Grpc, host: str) -> grpc.Channel:
    """A TLS channel to the edge's loopback port that names `host` (SNI and :authority),
    trusting nothing but the dev CA."""
    credentials = grpc.ssl_channel_credentials(root_certificates=tunnel.edge.ca.read_bytes())
    return grpc.secure_channel(
        f"127.0.0.1:{tunnel.edge.https_port}",
        credentials,
        options=[("grpc.ssl_target_name_override", host), ("grpc.default_authority", host)],
    )


def methods(channel: grpc.Channel):
    raw = {"request_serializer": None, "response_deserializer": None}
    return (
        channel.unary_unary(SERVICE + "Unary", **raw),
        channel.unary_stream(SERVICE + "ServerStream", **raw),
        channel.stream_unary(SERVICE + "ClientStream", **raw),
        channel.stream_stream(SERVICE + "Bidi", **raw),
    )


@pytest.fixture(params=["grpc", "grpcs"], ids=["h2c", "h2-tls"])
def channel(request, grpc_tunnel):
    with channel_through_edge(grpc_tunnel, f"{request.param}.{ZONE}") as channel:
        yield channel


def test_unary_with_metadata_and_trailers(channel):
    unary, *_ = methods(channel)
    response, call = unary.with_call(b"hello", metadata=(("x-probe", "p1"),), timeout=TIMEOUT)
    assert response == b"echo:hello"
    assert call.code() == grpc.StatusCode.OK
    assert dict(call.trailing_metadata())["echo-trailer"] == "p1"


def test_server_streaming(channel):
    _, server_stream, *_ = methods(channel)
    assert list(server_stream(b"50", timeout=TIMEOUT)) == [f"item {i}".encode() for i in range(50)]


def test_client_streaming(channel):
    *_, client_stream, _ = methods(channel)
    chunks = [bytes([65 + i]) * 1000 for i in range(20)]
    assert client_stream(iter(chunks), timeout=TIMEOUT) == b"|".join(chunks)


def test_bidirectional_streaming_interleaves(channel):
    *_, bidi = methods(channel)
    # Each answer arrives before the next request is sent: the streams really are interleaved.
    import queue

    requests: queue.Queue = queue.Queue()
    responses = bidi(iter(requests.get, None), timeout=TIMEOUT)
    for word in (b"one", b"two", b"three"):
        requests.put(word)
        assert next(responses) == word.upper()
    requests.put(None)
    assert list(responses) == []


def test_large_messages_cross_both_ways(channel):
    unary, *_ = methods(channel)
    payload = bytes(range(256)) * 4096  # 1 MiB: several flow-control windows
    assert unary(payload, timeout=TIMEOUT) == b"echo:" + payload


def test_cancelling_a_call_ends_it_at_the_origin(channel):
    """The client's RST_STREAM crosses edge, tunnel and connector: the origin's handler stops."""
    _, server_stream, *_ = methods(channel)
    CANCELLED.clear()
    call = server_stream(b"endless", timeout=TIMEOUT)
    assert [next(call) for _ in range(3)] == [b"tick"] * 3
    call.cancel()
    assert CANCELLED.wait(10), "the origin never saw the call end"


def test_origin_error_status_and_message_arrive(channel):
    unary, *_ = methods(channel)
    with pytest.raises(grpc.RpcError) as raised:
        unary(b"missing", timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "no such thing: missing"


def test_unknown_method_is_unimplemented(channel):
    call = channel.unary_unary(SERVICE + "Nope", request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as raised:
        call(b"x", timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_http1_visitor_gets_the_body_and_no_trailers(grpc_tunnel, tmp_path):
    """An HTTP/1.1 visitor cannot receive trailers: the edge drops them and ends the response normally."""
    body = tmp_path / "message"
    body.write_bytes(b"\x00\x00\x00\x00\x05hello")  # one uncompressed gRPC message
    result = grpc_tunnel.edge.curl(
        f"grpc.{ZONE}", SERVICE + "Unary", "-i", "--data-binary", f"@{body}",
        "-H", "content-type: application/grpc", "-H", "te: trailers",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.1 200")
    assert result.stdout.endswith(b"\x00\x00\x00\x00\x0aecho:hello")
    assert b"grpc-status" not in result.stdout


def test_without_http2_origin_grpc_fails_cleanly(grpc_tunnel):
    """An HTTP/1.1 origin connection cannot carry gRPC: the client gets an error, not a hang."""
    with channel_through_edge(grpc_tunnel, f"grpc-h1.{ZONE}") as channel:
        unary, *_ = methods(channel)
        with pytest.raises(grpc.RpcError) as raised:
            unary(b"hello", timeout=TIMEOUT)
    assert raised.value.code() != grpc.StatusCode.DEADLINE_EXCEEDED


def test_unary_rate_through_the_tunnel_and_direct(grpc_tunnel, capsys):
    """Figures for the docs: sequential unary calls per second, bounded by count and time."""
    rates = {}
    with grpc.insecure_channel(f"127.0.0.1:{grpc_tunnel.h2c_port}") as direct, channel_through_edge(
        grpc_tunnel, f"grpc.{ZONE}"
    ) as tunnelled:
        for name, channel in (("direct", direct), ("tunnel", tunnelled)):
            unary, *_ = methods(channel)
            unary(b"warm-up", timeout=TIMEOUT)
            calls, start = 0, time.monotonic()
            while calls < 300 and time.monotonic() - start < 5.0:
                assert unary(b"x", timeout=TIMEOUT) == b"echo:x"
                calls += 1
            rates[name] = calls / (time.monotonic() - start)
    with capsys.disabled():
        print(f"\ngrpc unary calls/s: direct {rates['direct']:.0f}, through the tunnel {rates['tunnel']:.0f}")
    assert rates["tunnel"] > 5
