"""A rule's rewrites and header edits (`stripPathPrefix`, `setRequestHeaders`,
`removeRequestHeaders`, `setResponseHeaders`, `removeResponseHeaders`), made once per
rule and applied to the heads around the origin client. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace

from connector.ingress.origin_request import OriginRequest
from shared.events import Headers, RequestHead, ResponseHead

FORWARDED_PREFIX = b"x-forwarded-prefix"


@dataclass(frozen=True)
class Edits:
    """What to change; each `drop_*` also holds the names `set_*` replaces."""

    strip_prefix: bytes
    set_request: Headers
    drop_request: frozenset[bytes]
    set_response: Headers
    drop_response: frozenset[bytes]

    @classmethod
    def of(cls, options: OriginRequest) -> Edits | None:
        """The edits `options` asks for; None when there are none (the request path then does no work)."""
        edits = cls(
            options.strip_path_prefix,
            options.set_request_headers,
            options.remove_request_headers | {name for name, _ in options.set_request_headers},
            options.set_response_headers,
            options.remove_response_headers | {name for name, _ in options.set_response_headers},
        )
        return edits if edits.strip_prefix or edits.drop_request or edits.drop_response else None

    def request(self, head: RequestHead) -> RequestHead:
        """The request as the origin gets it: the prefix stripped (then named in X-Forwarded-Prefix)
        when the path is under it, then the header edits."""
        target, headers = head.target, head.headers
        if self.strip_prefix and (stripped := strip_prefix(target, self.strip_prefix)) is not None:
            target = stripped
            headers = _edited(headers, frozenset({FORWARDED_PREFIX}), ((FORWARDED_PREFIX, self.strip_prefix),))
        if self.drop_request:
            headers = _edited(headers, self.drop_request, self.set_request)
        return replace(head, target=target, headers=headers)

    def response(self, head: ResponseHead) -> ResponseHead:
        if not self.drop_response:
            return head
        return replace(head, headers=_edited(head.headers, self.drop_response, self.set_response))

    def wrap(self, stream):
        """`stream` (a TunnelStream) as the origin client should see it: the edited request head,
        and its response head edited on the way back."""
        return _EditedStream(stream, self)


def strip_prefix(target: bytes, prefix: bytes) -> bytes | None:
    """`target` without `prefix` when its path is `prefix` or below it (/api takes /api, /api/x
    and /api?q, not /apiary); None otherwise."""
    if not target.startswith(prefix):
        return None
    rest = target[len(prefix) :]
    if rest[:1] not in (b"", b"/", b"?"):
        return None
    return rest if rest.startswith(b"/") else b"/" + rest


def _edited(headers: Headers, drop: frozenset[bytes], add: Headers) -> Headers:
    return tuple((name, value) for name, value in headers if name not in drop) + add


class _EditedStream:
    """A tunnel stream whose request head is edited and whose response head is edited when sent;
    everything else is the stream's own."""

    def __init__(self, stream, edits: Edits) -> None:
        self._stream = stream
        self._edits = edits
        self.head = edits.request(stream.head)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

    async def send_response(self, head: ResponseHead) -> None:
        await self._stream.send_response(self._edits.response(head))
