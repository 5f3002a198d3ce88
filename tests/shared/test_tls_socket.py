"""TLSSocketStream over real sockets: batched reads, half-close, errors, closing, cancellation."""

import os
import ssl

import pytest
import trio
import trustme

from shared.half_close import accept_half_close
from shared.tls_socket import TLSSocketListener, TLSSocketStream, open_tls_over_tcp
from tests.tls_pair import SERVER_NAME, tls_contexts, tls_socket_pair


async def test_a_receive_takes_the_full_records_already_there_and_never_more_than_asked():
    client, server = await tls_socket_pair()
    body = os.urandom(8 * 16384)
    await client.send_all(body)
    await trio.sleep(0.05)  # every record on the socket before the read
    assert await server.receive_some(256 * 1024) == body
    await client.send_all(body)
    await trio.sleep(0.05)
    assert await server.receive_some(100_000) == body[:100_000]
    rest = b""
    while len(rest) < len(body) - 100_000:
        rest += await server.receive_some(256 * 1024)
    assert rest == body[100_000:]
    await client.send_all(b"small")
    assert await server.receive_some(256 * 1024) == b"small"
    await client.aclose()  # close_notify: the end reads as b""
    assert await server.receive_some(256 * 1024) == b""


async def test_send_eof_is_a_fin_the_server_reads_as_the_end_and_both_ways_keep_working():
    server_context, client_context = (accept_half_close(context) for context in tls_contexts())
    client_sock, server_sock = trio.socket.socketpair()
    client = TLSSocketStream.wrap(client_sock, client_context, server_hostname=SERVER_NAME)
    server = TLSSocketStream.wrap(server_sock, server_context, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    await client.send_all(b"question")
    await client.send_eof()
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"more")
    assert await server.receive_some() == b"question"
    assert await server.receive_some() == b""
    await server.send_all(b"answer")  # the other way still open
    await server.send_eof()
    assert await client.receive_some() == b"answer"
    assert await client.receive_some() == b""  # FIN without close_notify: EOF with accept_half_close
    await client.aclose()
    await server.aclose()


async def test_a_client_without_accept_half_close_calls_a_bare_fin_broken():
    client, server = await tls_socket_pair()
    await server.send_eof()
    with pytest.raises(trio.BrokenResourceError) as caught:
        await client.receive_some()
    assert isinstance(caught.value.__cause__, ssl.SSLEOFError)


async def test_an_untrusted_certificate_breaks_the_handshake_with_the_reason():
    server_context, _ = tls_contexts()
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)
    client_sock, server_sock = trio.socket.socketpair()
    client = TLSSocketStream.wrap(client_sock, stranger, server_hostname=SERVER_NAME)
    server = TLSSocketStream.wrap(server_sock, server_context, server_side=True)

    async def refused_server():
        with pytest.raises(trio.BrokenResourceError):
            await server.do_handshake()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refused_server)
        with pytest.raises(trio.BrokenResourceError) as caught:
            await client.do_handshake()
        await client.aclose()
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    await client.aclose()
    await server.aclose()


async def test_alpn_and_the_peer_certificate_are_those_negotiated():
    client, server = await tls_socket_pair(alpn=["burrow-test/1"])
    assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "burrow-test/1"
    assert ("DNS", SERVER_NAME) in client.getpeercert()["subjectAltName"]


async def test_two_tasks_sending_at_once_is_an_error_not_interleaved_records():
    client, server = await tls_socket_pair()
    big = b"x" * (16 * 1024 * 1024)  # more than the socket buffers: the first send waits
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, big)
        await trio.sleep(0.05)
        with pytest.raises(trio.BusyResourceError):
            await client.send_all(b"y")
        nursery.cancel_scope.cancel()
    await client.aclose()
    await server.aclose()


async def test_a_send_cancelled_midway_leaves_the_stream_broken_for_sending():
    client, server = await tls_socket_pair()
    with trio.move_on_after(0.1):
        await client.send_all(b"x" * (16 * 1024 * 1024))  # nobody reads: it waits, then is cancelled
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"y")
    await client.aclose()
    await server.aclose()


async def test_closing_wakes_a_task_waiting_to_receive():
    client, server = await tls_socket_pair()
    caught = []

    async def wait_for_bytes():
        try:
            await server.receive_some()
        except trio.ClosedResourceError as exc:
            caught.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_bytes)
        await trio.sleep(0.05)
        await server.aclose()
    assert len(caught) == 1
    with pytest.raises(trio.ClosedResourceError):
        await server.receive_some()
    assert await client.receive_some() == b""  # the close_notify got there
    await client.aclose()


async def test_a_listener_serves_tls_and_a_client_opens_it_over_tcp():
    server_context, client_context = tls_contexts()
    [tcp] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = TLSSocketListener(tcp, server_context)
    port = tcp.socket.getsockname()[1]

    async def answer(stream: TLSSocketStream) -> None:
        await stream.do_handshake()
        await stream.send_all(b"hello " + await stream.receive_some())
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, answer, [listener])
        client = await open_tls_over_tcp("127.0.0.1", port, client_context, server_hostname=SERVER_NAME)
        await client.do_handshake()
        await client.send_all(b"visitor")
        assert await client.receive_some() == b"hello visitor"
        assert await client.receive_some() == b""
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_a_task_reading_a_stream_that_never_waits_still_lets_others_run():
    MESSAGES = 64  # noqa: N806 - few enough to sit in the socket's buffer
    client, server = await tls_socket_pair()
    for _ in range(MESSAGES):
        await client.send_all(b"m")  # separate records, all on the socket before the reads
    await trio.sleep(0.05)
    ticks = []

    async def ticker():
        while True:
            ticks.append(len(received))
            await trio.sleep(0)

    received = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.sleep(0)
            while len(received) < MESSAGES:
                received.append(await server.receive_some(1))
            nursery.cancel_scope.cancel()
    # every read that did not wait is a schedule point: the ticker ran between the reads (two
    # apart when trio runs the ticker first in one scheduling batch and last in the next)
    assert len(ticks) >= MESSAGES // 2
    assert all(b - a <= 2 for a, b in zip(ticks, ticks[1:])), ticks


async def test_send_nowait_takes_what_the_socket_takes_and_send_all_the_rest_arrives_whole_in_order():
    client, server = await tls_socket_pair()
    assert client.send_nowait(b"small") == 5
    assert await server.receive_some(1024) == b"small"
    big = os.urandom(16 * 1024 * 1024)  # more than the socket buffers hold while nobody reads
    sent = client.send_nowait(big)
    assert sent < len(big)  # OpenSSL may have written records yet report none: the retry carries on
    received = bytearray()

    async def read_all() -> None:
        while len(received) < len(big):
            received.extend(await server.receive_some(256 * 1024))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await client.send_all(memoryview(big)[sent:])  # the same bytes OpenSSL was refused, then the rest
    assert received == big
    await client.aclose()
    with pytest.raises(trio.ClosedResourceError):
        client.send_nowait(b"late")
    await server.aclose()


async def test_a_receive_after_an_answer_waits_for_the_reply_unless_the_last_read_was_full():
    client, server = await tls_socket_pair()
    recv = server.ssl_object.recv
    calls = []

    def counted(*args):
        calls.append(args)
        return recv(*args)

    server.ssl_object.recv = counted
    await client.send_all(b"request")
    assert await server.receive_some(100) == b"request"
    await server.send_all(b"answer")
    async with trio.open_nursery() as nursery:

        async def reply_later():
            assert await client.receive_some(100) == b"answer"
            await trio.sleep(0.02)
            await client.send_all(b"reply")

        nursery.start_soon(reply_later)
        assert await server.receive_some(100) == b"reply"
    assert len(calls) == 2  # no read tried (and failed) before the reply came
    await client.send_all(b"0123456789")  # one record, read in part: the rest stays in OpenSSL
    assert await server.receive_some(4) == b"0123"
    await server.send_all(b"more?")
    with trio.fail_after(2):  # the socket has nothing more: waiting for it would hang
        assert await server.receive_some(100) == b"456789"
    await client.aclose()
    await server.aclose()
