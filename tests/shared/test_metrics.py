"""The /metrics, /ready, /healthcheck endpoint: the pure `respond()` and its bounded trio shell."""

import json

import h11
import pytest
import trio
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import MetricsLimits, MetricsServer, respond


def make_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("burrow_test_things", "Things.", registry=registry).inc(3)
    return registry


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


RESPONSES = [
    (b"GET", b"/healthcheck", True, 200, b"OK\n"),
    (b"GET", b"/ready", True, 200, None),
    (b"GET", b"/ready", False, 503, None),
    (b"GET", b"/ready?verbose=1", False, 503, None),
    (b"GET", b"/nope", True, 404, None),
    (b"POST", b"/metrics", True, 405, None),
    (b"HEAD", b"/healthcheck", True, 200, b"OK\n"),
]
assert RESPONSES


@pytest.mark.parametrize("method, target, ok, status, body", RESPONSES, ids=[f"{m.decode()} {t.decode()} {o}" for m, t, o, *_ in RESPONSES])
def test_respond(method, target, ok, status, body):
    reply = respond(method, target, make_registry(), lambda: (ok, {"readyConnections": int(ok)}))
    assert reply.status == status
    if body is not None:
        assert reply.body == body
    if target.startswith(b"/ready"):
        assert json.loads(reply.body) == {"status": status, "readyConnections": int(ok)}
        assert reply.content_type == b"application/json"


def test_metrics_text_comes_from_the_given_registry_only():
    reply = respond(b"GET", b"/metrics", make_registry(), lambda: (True, {}))
    assert reply.status == 200 and reply.content_type.startswith(b"text/plain")
    assert samples(reply.body.decode())[("burrow_test_things_total", ())] == 3
    assert b"python_gc" not in reply.body  # not the global registry


async def request(port: int, *targets: bytes, extra_headers=()) -> list[tuple[int, bytes]]:
    """Send each GET on one keep-alive connection; the (status, body) of each answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    answers = []
    async with stream:
        for target in targets:
            headers = [(b"host", b"localhost"), *extra_headers]
            await stream.send_all(conn.send(h11.Request(method=b"GET", target=target, headers=headers)) + conn.send(h11.EndOfMessage()))
            status, body = None, b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    raise AssertionError(event)
            answers.append((status, body))
            if conn.our_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
    return answers


async def test_server_answers_over_a_real_socket(nursery):
    ready = {"n": 0}
    server = MetricsServer(make_registry(), lambda: (ready["n"] > 0, {"readyConnections": ready["n"]}))
    host, port = await nursery.start(server.serve, ("127.0.0.1", 0))
    assert host == "127.0.0.1" and port > 0
    (status, body), = await request(port, b"/ready")
    assert status == 503 and json.loads(body) == {"status": 503, "readyConnections": 0}
    ready["n"] = 2
    answers = await request(port, b"/ready", b"/healthcheck", b"/metrics")  # keep-alive
    assert [status for status, _ in answers] == [200, 200, 200]
    assert json.loads(answers[0][1]) == {"status": 200, "readyConnections": 2}
    assert samples(answers[2][1].decode())[("burrow_test_things_total", ())] == 3


async def test_server_limits(nursery):
    limits = MetricsLimits(max_connections=2, max_header_bytes=1024, request_timeout=0.5, max_requests=2)
    server = MetricsServer(make_registry(), lambda: (True, {}), limits)
    _, port = await nursery.start(server.serve, ("127.0.0.1", 0))
    # a head above the limit: 431, then the connection closes
    (status, _), = await request(port, b"/healthcheck", extra_headers=[(b"x-big", b"a" * 2000)])
    assert status == 431
    # at most max_requests per connection
    assert len(await request(port, b"/healthcheck", b"/healthcheck", b"/healthcheck")) == 2
    # idle connections are closed after the request timeout; beyond the cap, new ones are closed at once
    idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    extra = await trio.open_tcp_stream("127.0.0.1", port)
    with trio.fail_after(5):
        assert await extra.receive_some(10) == b""
        for stream in idle:
            assert await stream.receive_some(10) == b""  # closed after request_timeout
    # and the slots come back
    assert await request(port, b"/healthcheck") == [(200, b"OK\n")]


async def test_a_taken_port_is_a_config_error(nursery):
    from shared.errors import ConfigError

    server = MetricsServer(make_registry(), lambda: (True, {}))
    _, port = await nursery.start(server.serve, ("127.0.0.1", 0))
    with pytest.raises(ConfigError, match=f"cannot listen for metrics on 127.0.0.1:{port}"):
        await server.serve(("127.0.0.1", port))
