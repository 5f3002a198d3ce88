"""The connector's end of private-network flows, over a real tunnel pair and loopback sockets (issue 17)."""

from __future__ import annotations

import socket

import trio

from connector.origins.private import PrivateDialer
from shared import private_flows as flows
from shared.config import WarpRouting
from shared.events import RequestHead
from shared.protocol import KIND_PRIVATE
from tests.connector import tunnel_pair


def flow_head(protocol: str, authority: str, networks: str = "127.0.0.0/8") -> RequestHead:
    return RequestHead(protocol.upper().encode(), b"/", authority.encode(), protocol.encode(),
                       ((flows.NETWORKS_HEADER, networks.encode()),), True)  # fmt: skip


async def start(nursery, warp: WarpRouting):
    edge, server, _ = await tunnel_pair.start(nursery, [{"service": "http_status:404"}])
    server.private = PrivateDialer(warp)
    return edge


async def refusal(edge, head: RequestHead) -> tuple[int, str]:
    async with await edge.open_stream(head, KIND_PRIVATE) as stream:
        response = await stream.receive_response()
        body = b""
        while chunk := await stream.receive():
            body += chunk
    assert response.status != 200
    return flows.reply_code(response.headers), body.decode()


async def test_tcp_flow_pipes_bytes_both_ways_and_half_closes() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]

    async def echo_upper(task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        conn = await listener.accept()
        data = b""
        while chunk := await conn.receive_some(1024):
            data += chunk
        await conn.send_all(data.upper())
        await conn.aclose()

    async with trio.open_nursery() as nursery:
        edge = await start(nursery, WarpRouting(enabled=True))
        await nursery.start(echo_upper)
        async with await edge.open_stream(flow_head("tcp", f"127.0.0.1:{port}"), KIND_PRIVATE) as stream:
            assert (await stream.receive_response()).status == 200
            await stream.send(b"hello private network")
            await stream.end()  # the client's EOF reaches the host as a half-close
            received = b""
            while chunk := await stream.receive():
                received += chunk
        assert received == b"HELLO PRIVATE NETWORK"
        nursery.cancel_scope.cancel()


async def test_udp_flow_carries_datagrams() -> None:
    server = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]

    async def reflect():
        for _ in range(2):
            data, peer = await server.recvfrom(2048)
            await server.sendto(data[::-1], peer)

    async with trio.open_nursery() as nursery:
        edge = await start(nursery, WarpRouting(enabled=True))
        nursery.start_soon(reflect)
        async with await edge.open_stream(flow_head("udp", f"127.0.0.1:{port}"), KIND_PRIVATE) as stream:
            assert (await stream.receive_response()).status == 200
            await stream.send(flows.frame_datagram(b"abc") + flows.frame_datagram(b"12345"))
            reader, got = flows.DatagramReader(), []
            while len(got) < 2:
                got += reader.feed(await stream.receive())
        assert got == [b"cba", b"54321"]
        server.close()
        nursery.cancel_scope.cancel()


async def test_refusals_carry_their_socks_reply_codes() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    async with trio.open_nursery() as nursery:
        off = await start(nursery, WarpRouting(enabled=False))
        on = await start(nursery, WarpRouting(enabled=True))
        assert (await refusal(off, flow_head("tcp", "127.0.0.1:80")))[0] == flows.NETWORK_UNREACHABLE
        code, reason = await refusal(on, flow_head("tcp", "127.0.0.1:80", networks="198.18.5.0/24"))
        assert code == flows.NOT_ALLOWED and "outside the networks" in reason  # the edge's list is enforced here too
        assert (await refusal(on, flow_head("tcp", f"127.0.0.1:{closed_port}")))[0] == flows.CONNECTION_REFUSED
        code, reason = await refusal(on, flow_head("tcp", "localhost:80"))
        assert code == flows.ADDRESS_TYPE_NOT_SUPPORTED and "resolveNames" in reason
        nursery.cancel_scope.cancel()
