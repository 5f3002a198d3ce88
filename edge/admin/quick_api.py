"""`POST /api/v1/quick-tunnels`: a quick tunnel for anyone who asks, no login (`burrow tunnel --url`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge.tunnels.quick import QuickRefused
from edge.tunnels.quick_service import QuickService

QUICK_PATH = "/api/v1/quick-tunnels"
DISABLED = "this edge does not offer quick tunnels (its operator enables them with `burrow-edge serve --quick-tunnels`)"


def quick_routes(service: QuickService | None) -> list[Route]:
    """The quick-tunnel route; with `service` None (quick tunnels off) it answers 403 with a clear message."""

    async def create_quick_tunnel(request: Request) -> JSONResponse:
        """Create a quick tunnel: a random name under quick.<zone>, an ephemeral secret, no account.
        ---
        summary: Create a quick tunnel
        security: []
        responses:
          201: {description: "{id, secret, hostname, url, endpoint, zone, grace}"}
          403: {$ref: "#/components/responses/Error"}
          429: {$ref: "#/components/responses/Error"}
          503: {$ref: "#/components/responses/Error"}
        """
        if service is None:
            return JSONResponse({"error": DISABLED}, status_code=403)
        source = request.client.host if request.client else "?"
        try:
            return JSONResponse(service.create(source), status_code=201)
        except QuickRefused as exc:
            retry_after = str(max(1, round(exc.retry_after)))
            return JSONResponse({"error": str(exc)}, status_code=exc.status, headers={"retry-after": retry_after})

    return [Route(QUICK_PATH, create_quick_tunnel, methods=["POST"])]
