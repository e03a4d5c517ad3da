"""The explorer's web app (Starlette) and the server that runs it (uvicorn).

Routes (every answer JSON unless said otherwise; a refused request is 4xx ``{"error": message}``):

* ``GET /``: the page (HTML, template ``app/templates/explore.html.j2``, CSS and script inline);
* ``GET /concepts/{k}?image=ID``: concept k's page, the atlas's card(s) (HTML);
* ``GET /api/info``: the model, the split, the sliders' range;
* ``GET /api/images?page=&per_page=&label=``: one page of the split; ``GET /api/images/{i}.png``:
  one image of it (PNG);
* ``POST /api/select`` ``{"index": i}``: explore dataset image i;
* ``POST /api/upload``: explore the file sent as the raw body (``application/octet-stream``,
  its name URL-encoded in ``X-Filename``), at most ``Explorer.max_upload_bytes``;
* ``POST /api/regenerate`` ``{"image": ID, "lambdas": {"k": λ, ...}}``: the image regenerated.

POSTs must say they send JSON (or octet-stream): a web page elsewhere cannot make a browser send
those without a CORS preflight, which this app never grants. HTML pages carry a
Content-Security-Policy that lets them load nothing but this server and inline data.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from viscoin.app.state import Explorer, RequestError
from viscoin.errors import UserError, user_message

CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
LOOPBACK_NAMES = ("localhost",)


def _environment() -> jinja2.Environment:
    """The app's templates, then the atlas's (``card.html.j2``, ``base.css``, ``atlas.css``, ``atlas.js``)."""
    from viscoin.report.html import template_environment

    return template_environment(
        jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader("viscoin.app", "templates"),
                jinja2.PackageLoader("viscoin.report", "templates"),
            ]
        )
    )


def _html(text: str) -> HTMLResponse:
    return HTMLResponse(
        text,
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(
        data, status, headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    )


def _refused(request: Request, exc: Exception) -> JSONResponse:
    status = exc.status if isinstance(exc, RequestError) else 400
    return _json({"error": user_message(exc)}, status)


def _failed(request: Request, exc: Exception) -> JSONResponse:
    traceback.print_exception(exc, file=sys.stderr)
    return _json(
        {"error": f"the explorer failed on this request ({type(exc).__name__}: {exc})"}, 500
    )


async def _json_body(request: Request) -> Any:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise RequestError("send the request as JSON (Content-Type: application/json).", 415)
    try:
        return await request.json()
    except ValueError:
        raise RequestError("the request body is not valid JSON.") from None


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise RequestError(f"{name} must be an integer, got {value!r}.") from None


def create_app(explorer: Explorer, allowed_hosts: Sequence[str] | None = None) -> Starlette:
    """The explorer's Starlette app. ``allowed_hosts``: the ``Host`` header values it answers
    (e.g. ``127.0.0.1``, ``localhost``; refuses others, against DNS rebinding); None: any."""
    env = _environment()
    page_template = env.get_template("explore.html.j2")
    concept_template = env.get_template("concept.html.j2")

    async def page(request: Request) -> Response:
        from viscoin import __version__

        return _html(page_template.render(info=explorer.info(), version=__version__))

    async def concept_page(request: Request) -> Response:
        concept = request.path_params["concept"]
        key = request.query_params.get("image") or None
        cards = await run_in_threadpool(explorer.concept_cards, concept, key)
        return _html(
            concept_template.render(
                concept=concept,
                cards=cards,
                info=explorer.info(),
                pixelated=explorer.model.resolution < 256,
            )
        )

    async def info(request: Request) -> Response:
        return _json(explorer.info())

    async def images(request: Request) -> Response:
        listing = explorer.list_images(
            _int_param(request, "page", 0),
            _int_param(request, "per_page", explorer.info()["per_page"]),
            _int_param(request, "label", None),
        )
        return _json(listing)

    async def thumbnail(request: Request) -> Response:
        png = await run_in_threadpool(explorer.thumbnail, request.path_params["index"])
        return Response(
            png,
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=600", "X-Content-Type-Options": "nosniff"},
        )

    async def select(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or "index" not in body:
            raise RequestError('send {"index": i}, the position of an image in the split.')
        return _json(await run_in_threadpool(explorer.select, body["index"]))

    async def upload(request: Request) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind != "application/octet-stream" and not kind.startswith("image/"):
            raise RequestError(
                "send the file's bytes as the request body "
                "(Content-Type: application/octet-stream or image/...).",
                415,
            )
        limit = explorer.max_upload_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise RequestError(explorer.too_large_message(int(length)), 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(explorer.too_large_message(), 413)
            chunks.append(chunk)
        name = unquote(request.headers.get("x-filename", ""))
        return _json(await run_in_threadpool(explorer.upload, b"".join(chunks), name))

    async def regenerate(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or "image" not in body:
            raise RequestError('send {"image": ID, "lambdas": {"k": λ, ...}}.')
        return _json(
            await run_in_threadpool(explorer.regenerate, body["image"], body.get("lambdas", {}))
        )

    routes = [
        Route("/", page),
        Route("/concepts/{concept:int}", concept_page),
        Route("/api/info", info),
        Route("/api/images", images),
        Route("/api/images/{index:int}.png", thumbnail),
        Route("/api/select", select, methods=["POST"]),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/regenerate", regenerate, methods=["POST"]),
    ]
    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={UserError: _refused, Exception: _failed},
    )


# -- serving --------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_warning(host: str, port: int) -> str | None:
    """The warning printed when the explorer listens beyond this machine (None on loopback)."""
    if is_loopback(host):
        return None
    return (
        f"warning: listening on {host}:{port}, not only on this machine: anyone who can reach it "
        "can use the explorer (it has no login) and upload images to it. "
        "--host 127.0.0.1 keeps it local."
    )


def allowed_hosts_for(host: str) -> list[str] | None:
    """The ``Host`` header values to answer when listening on ``host``: the loopback names when it
    is loopback (so another site's name, rebound to 127.0.0.1, is refused), else any."""
    if not is_loopback(host) or ":" in host:  # IPv6 literals: the middleware cannot parse them
        return None
    return sorted({host, "127.0.0.1", "localhost"})


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: any free port), or one :class:`UserError`
    saying why not (the port is in use, the host is not an address of this machine, ...)."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be from 0 to 65535 (0: any free port), got {port}.")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: not an address or name of this machine ({exc}).") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform != "win32":  # on Windows the option lets a second server share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is in use (another explorer or server?): pick another "
                "with --port, or --port 0 for any free one."
            ) from None
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    return sock


def serve(
    app: Starlette, sock: socket.socket, on_started: Callable[[], None] | None = None
) -> None:
    """Serve ``app`` on the bound ``sock`` until Ctrl-C (SIGINT) or SIGTERM.

    ``on_started`` is called once the server accepts connections and handles Ctrl-C itself: an
    address announced before then could be opened, or interrupted, before anything answers it.
    """
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_started is not None:
                on_started()

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    Server(config).run(sockets=[sock])


def url_of(sock: socket.socket, host: str) -> str:
    """The address a browser opens for a server on ``sock``."""
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"
