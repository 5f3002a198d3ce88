"""StreamServer counts and logs each stream once: by hostname and status class, origin failures
by kind, the visitor who left before the answer, and the requests in flight."""

from __future__ import annotations

import functools
import logging

import trio
import trio.testing

from connector.tunnel.metrics import ConnectorMetrics
from connector.tunnel.streams import StreamServer
from shared.events import RequestHead
from shared.logs import CONNECTOR_ACCESS_LOGGER
from tests.connector.tunnel_pair import fetch, start
from tests.e2e.conftest import free_port


def value(m: ConnectorMetrics, name: str, **labels) -> float | None:
    return m.registry.get_sample_value(name, labels)


def get(host: str, target: bytes = b"/") -> RequestHead:
    headers = ((b"host", host.encode()), (b"burrow-request-id", b"rid-1"))
    return RequestHead(b"GET", target, host.encode(), headers=headers)


async def test_each_request_counted_once_by_host_and_status_class_with_origin_errors_by_kind(caplog):
    caplog.set_level(logging.INFO, CONNECTOR_ACCESS_LOGGER)
    rules = [
        {"hostname": "hello.test", "service": "hello_world"},
        {"hostname": "down.test", "service": f"http://127.0.0.1:{free_port()}"},
        {"service": "http_status:418"},
    ]
    async with trio.open_nursery() as nursery:
        edge, server, m = await start(nursery, rules)
        statuses = [(await fetch(edge, get(host)))[0] for host in ("hello.test", "Hello.test:443", "down.test", "x.test")]
        nursery.cancel_scope.cancel()
    assert statuses == [200, 200, 502, 418]
    assert value(m, "burrow_connector_requests_total", host="hello.test", status_class="2xx") == 2
    assert value(m, "burrow_connector_requests_total", host="down.test", status_class="5xx") == 1
    assert value(m, "burrow_connector_requests_total", host="x.test", status_class="4xx") == 1
    assert value(m, "burrow_connector_origin_errors_total", host="down.test", kind="refused") == 1
    assert value(m, "burrow_connector_request_duration_seconds_count", host="hello.test") == 2
    assert value(m, "burrow_connector_response_bytes_total", host="hello.test") > 0
    assert value(m, "burrow_connector_concurrent_requests") == 0

    lines = [record.fields for record in caplog.records if record.name == CONNECTOR_ACCESS_LOGGER]
    assert [(f["host"], f["status"], f["rule"]) for f in lines] == [
        ("hello.test", 200, 1), ("hello.test", 200, 1), ("down.test", 502, 2), ("x.test", 418, 3),
    ]
    assert lines[2]["origin"] == rules[1]["service"] and lines[2]["request_id"] == "rid-1"
    assert (lines[2]["method"], lines[2]["path"]) == ("GET", "/")


async def test_a_visitor_who_left_before_the_answer_is_counted_once_with_status_0():
    arrived, answer, served = trio.Event(), trio.Event(), trio.Event()

    async def slow_origin(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        arrived.set()
        await answer.wait()
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async def handler(server: StreamServer, stream) -> None:
        try:
            await server.serve(stream)
        finally:
            served.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, slow_origin, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        edge, server, m = await start(nursery, [{"service": f"http://127.0.0.1:{port}"}], handler)
        stream = await edge.open_stream(get("slow.test"))
        await arrived.wait()
        assert value(m, "burrow_connector_concurrent_requests") == 1
        await stream.aclose()  # the edge resets the stream: its visitor went away
        await trio.testing.wait_all_tasks_blocked()  # the connector has read the reset
        answer.set()
        await served.wait()
        nursery.cancel_scope.cancel()
    assert value(m, "burrow_connector_requests_total", host="slow.test", status_class="0xx") == 1
    assert sum(
        sample.value for family in m.registry.collect() for sample in family.samples
        if sample.name == "burrow_connector_requests_total"
    ) == 1
    assert value(m, "burrow_connector_origin_errors_total", host="slow.test", kind="closed") is None
    assert value(m, "burrow_connector_concurrent_requests") == 0
