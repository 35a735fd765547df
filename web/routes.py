"""Pages and static files of the browser UI.

Pages are plain HTML that load ES modules from ``/static``; vendor libraries are served straight
from ``node_modules`` (installed by ``npm ci``) under ``/static/vendor/<package>/``, so no build
step is needed. Page routes are named ``page.*`` (any logged-in user), assets ``public.static.*``;
the conformance statement's page is ``public.*`` as its data is.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from hub.errors import Problem

WEB_DIR = Path(__file__).resolve().parent
PAGES_DIR = WEB_DIR / "pages"
STATIC_DIR = WEB_DIR / "static"
NODE_MODULES = WEB_DIR / "node_modules"

# The only node_modules folders a page may load from: package name -> its browser build.
VENDOR_DIRS = {
    "openseadragon": NODE_MODULES / "openseadragon" / "build" / "openseadragon",
    "dicom-microscopy-viewer": NODE_MODULES / "dicom-microscopy-viewer" / "dist",
    "dicomweb-client": NODE_MODULES / "dicomweb-client" / "build",
}
VENDOR_CACHE = "public, max-age=86400"
OWN_ASSET_CACHE = "no-cache"  # revalidated by ETag, so a new release shows at once

PAGE_HEADERS = {"Cache-Control": "no-cache"}
# dicom-microscopy-viewer decodes frames with WebAssembly codecs in module workers, which the
# default policy (script-src 'self') forbids; this page alone also allows compiling WebAssembly.
WASM_PAGE_HEADERS = {
    **PAGE_HEADERS,
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
}

PAGES = {
    # route name: (path, html file, response headers). A page only some roles may open is
    # named in the area of the permission it needs; the others open to every account.
    "page.studies": ("/studies", "studies.html", PAGE_HEADERS),
    "page.viewer": ("/viewer/{study}", "viewer.html", PAGE_HEADERS),
    "page.ultrasound": ("/ultrasound/{study}", "ultrasound.html", PAGE_HEADERS),
    "page.upload": ("/upload", "upload.html", PAGE_HEADERS),
    "page.interop": ("/interop/{study}", "interop.html", WASM_PAGE_HEADERS),
    "forward.read.page": ("/forwarding", "forwarding.html", PAGE_HEADERS),
    "dose.read.page": ("/dose", "dose.html", PAGE_HEADERS),
    "page.worklist": ("/worklist", "worklist.html", PAGE_HEADERS),
    "admin.page": ("/admin", "admin.html", PAGE_HEADERS),
    "public.conformance.page": ("/conformance", "conformance.html", PAGE_HEADERS),
}


def setup(app: web.Application) -> None:
    router = app.router
    router.add_get("/", home, name="page.home")
    for name, (path, filename, headers) in PAGES.items():
        router.add_get(path, page_handler(filename, headers), name=name)
    # Registered before /static so the vendor prefix is matched first.
    router.add_get("/static/vendor/{package}/{path:.+}", vendor_file, name="public.static.vendor")
    router.add_static("/static", STATIC_DIR, name="public.static.files", append_version=False)
    app.on_response_prepare.append(_asset_cache_headers)


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/studies")


def page_handler(filename: str, headers: dict[str, str]):
    path = PAGES_DIR / filename

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers=headers)

    return page


async def vendor_file(request: web.Request) -> web.FileResponse:
    root = VENDOR_DIRS.get(request.match_info["package"])
    if root is None:
        raise Problem(404, "unknown vendor package")
    target = (root / request.match_info["path"]).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file():
        raise Problem(404, "no such file (run `npm ci` in web/ if the package is missing)")
    return web.FileResponse(target, headers={"Cache-Control": VENDOR_CACHE})


async def _asset_cache_headers(request: web.Request, response: web.StreamResponse) -> None:
    route = request.match_info.route if request.match_info else None
    if route is not None and route.name == "public.static.files":
        response.headers.setdefault("Cache-Control", OWN_ASSET_CACHE)
