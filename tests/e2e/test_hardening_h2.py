"""HTTP/2 pseudo-header abuse against a real edge, tunnel and recording origin: each request
is refused (stream reset or GOAWAY) and never reaches the origin."""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import HeadersFrame

from tests.e2e.conftest import ZONE
from tests.e2e.recording_origin import start_recording_origin
from tests.e2e.tunnels import edge_context, run_tunnel
from tests.h2_client import visitor

HOST = f"hard2.{ZONE}"


def base(path: str) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", HOST.encode()), (b":path", path.encode())]


def without(fields, name):
    return [field for field in fields if field[0] != name]


CASES = {
    "missing-path": lambda p: without(base(p), b":path") + [(b"x-marker", p.encode())],
    "missing-method": lambda p: without(base(p), b":method"),
    "duplicate-method": lambda p: base(p) + [(b":method", b"POST")],
    "duplicate-path": lambda p: base(p) + [(b":path", b"/smuggled")],
    "unknown-pseudo": lambda p: base(p) + [(b":smuggle", b"1")],
    "pseudo-after-regular": lambda p: base(p)[:3] + [(b"x-a", b"1"), base(p)[3]],
    "response-pseudo": lambda p: base(p) + [(b":status", b"200")],
    "connection-header": lambda p: base(p) + [(b"connection", b"keep-alive")],
    "transfer-encoding": lambda p: base(p) + [(b"transfer-encoding", b"chunked")],
    "te-not-trailers": lambda p: base(p) + [(b"te", b"gzip")],
    "upper-case-name": lambda p: base(p) + [(b"X-Upper", b"1")],
    "empty-path": lambda p: without(base(p), b":path") + [(b":path", b""), (b"x-marker", p.encode())],
    "cr-lf-in-value": lambda p: base(p) + [(b"x-inject", b"a\r\nGET /smuggled HTTP/1.1")],
}


def replaced(name: bytes, value: bytes):
    """`base` with one pseudo-header's value replaced, the marker in a header field."""
    return lambda p: [(n, value if n == name else v) for n, v in base("/")] + [(b"x-marker", p.encode())]


# RFC 9113 §8.3.1 values h2 lets through: each is a stream error PROTOCOL_ERROR, and the
# connection carries the next request.
MALFORMED = {
    "path-without-slash": replaced(b":path", b"hostile-h2/x"),
    "path-absolute-form": replaced(b":path", f"https://{HOST}/x".encode()),
    "path-asterisk-for-get": replaced(b":path", b"*"),
    "path-with-space": replaced(b":path", b"/a b"),
    "authority-userinfo": replaced(b":authority", f"user@{HOST}".encode()),
    "authority-with-path": replaced(b":authority", f"{HOST}/x".encode()),
    "scheme-unknown": replaced(b":scheme", b"ftp"),
    "scheme-empty": replaced(b":scheme", b""),
    "method-not-a-token": replaced(b":method", b"GE T"),
}


@pytest.fixture(scope="module")
def record(edge):
    server, record = start_recording_origin()
    run_tunnel(edge, "hardening-h2", [("hard2", f"http://127.0.0.1:{server.server_address[1]}")])
    yield record
    server.shutdown()


def send_raw(edge, *requests, raw: bytes = b"") -> list:
    """Send HEADERS frames built without h2's own checks (or `raw` frames); the events until
    the last stream or the connection ends."""
    context = edge_context(edge)
    context.set_alpn_protocols(["h2"])
    with context.wrap_socket(socket.create_connection(("127.0.0.1", edge.https_port), timeout=10), server_hostname=HOST) as sock:
        config = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False)
        conn = h2.connection.H2Connection(config)
        conn.initiate_connection()
        for stream_id, fields in zip(range(1, 2 * len(requests), 2), requests):
            conn.send_headers(stream_id, fields, end_stream=True)
        sock.sendall(conn.data_to_send() + raw)
        last = 2 * len(requests) - 1
        events = []
        ends = (h2.events.StreamReset, h2.events.StreamEnded)
        while not any(isinstance(e, h2.events.ConnectionTerminated) or (isinstance(e, ends) and e.stream_id == last) for e in events):
            data = sock.recv(65536)
            if not data:
                break
            events += conn.receive_data(data)
            sock.sendall(conn.data_to_send())
        return events


@pytest.mark.parametrize("case", list(CASES))
def test_pseudo_header_abuse_is_refused(edge, record, case):
    marker = f"/hostile-h2/{case}"
    events = send_raw(edge, CASES[case](marker))
    responses = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    refused = any(isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated)) for e in events)
    statuses = [dict(e.headers)[b":status"] for e in responses]
    assert refused or (statuses and statuses[0].startswith(b"4")), events
    assert not record.matching(marker)
    assert not record.matching("/smuggled")


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_pseudo_header_values_are_a_stream_error(edge, record, case):
    marker = f"/hostile-h2/{case}"
    events = send_raw(edge, MALFORMED[case](marker), base(f"/fine-h2/after-{case}"))
    [reset] = [e for e in events if isinstance(e, h2.events.StreamReset)]
    assert (reset.stream_id, reset.error_code) == (1, ErrorCodes.PROTOCOL_ERROR)
    [response] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert response.stream_id == 3 and dict(response.headers)[b":status"] == b"200"
    assert not record.matching(marker) and record.matching(f"/fine-h2/after-{case}")


def test_options_asterisk_is_well_formed_and_refused_as_on_http1(edge, record):
    fields = [(b":method", b"OPTIONS"), *replaced(b":path", b"*")("/hostile-h2/options-asterisk")[1:]]
    events = send_raw(edge, fields)
    [response] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert dict(response.headers)[b":status"] == b"400"
    assert not record.matching("/hostile-h2/options-asterisk")


def test_an_undecodable_header_block_is_a_compression_error(edge, record):
    # An indexed field naming entry 2**21 of a table that holds 61 static entries.
    events = send_raw(edge, raw=HeadersFrame(1, data=b"\xff\xff\xff\x7f", flags=["END_HEADERS", "END_STREAM"]).serialize())
    [goaway] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == ErrorCodes.COMPRESSION_ERROR


def test_a_valid_request_passes(edge, record):
    events = send_raw(edge, base("/fine-h2/ok"))
    [response] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert dict(response.headers)[b":status"] == b"200"
    assert record.matching("/fine-h2/ok")


async def test_authority_other_than_sni_gets_421(edge, record):
    """A connection opened for HOST (TLS SNI) may not carry requests for another hostname the
    certificate also covers (connection coalescing): 421, and the client retries elsewhere."""
    async with visitor(edge.https_port, edge.ca, HOST) as client:
        assert (await client.request("/sni-same")).status == 200
        client.authority = f"other.{ZONE}:{edge.https_port}"
        response = await client.request("/sni-other")
        assert response.status == 421 and b"TLS server name" in response.body
        client.authority = f"{HOST.upper()}.:{edge.https_port}"  # the same name, spelled differently
        assert (await client.request("/sni-spelled")).status == 200
    assert record.matching("/sni-same") and record.matching("/sni-spelled") and not record.matching("/sni-other")
