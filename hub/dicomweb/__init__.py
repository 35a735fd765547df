"""The DICOMweb door (PS3.18): QIDO-RS, WADO-RS and STOW-RS under /dicomweb."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from hub.archive.errors import NotAcceptable, NotFound
from hub.dicomweb import qido, stow, wado
from hub.dicomweb.responses import problem

PREFIX = "/dicomweb"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def translate(handler: Handler) -> Handler:
    """Map core errors to PS3.18 statuses with their reasons."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except NotFound as exc:
            return problem(404, str(exc))
        except NotAcceptable as exc:
            return problem(406, str(exc))

    return wrapped


STUDY = PREFIX + "/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"
# (method, path, handler, route name) of every resource. Frames first: a tiled viewer asks for
# little else, and aiohttp tries the routes under /dicomweb/studies in the order they were added.
ROUTES: list[tuple[str, str, Handler, str]] = [
    ("GET", INSTANCE + "/frames/{frames}", wado.frames, "dicomweb.read.frames"),
    ("GET", PREFIX + "/studies", qido.search_studies, "dicomweb.read.qido.studies"),
    ("GET", STUDY + "/series", qido.search_series, "dicomweb.read.qido.study_series"),
    ("GET", PREFIX + "/series", qido.search_series, "dicomweb.read.qido.series"),
    ("GET", SERIES + "/instances", qido.search_instances, "dicomweb.read.qido.series_instances"),
    ("GET", STUDY + "/instances", qido.search_instances, "dicomweb.read.qido.study_instances"),
    ("GET", PREFIX + "/instances", qido.search_instances, "dicomweb.read.qido.instances"),
    ("POST", PREFIX + "/studies", stow.store_instances, "dicomweb.write.stow"),
    ("POST", STUDY, stow.store_instances, "dicomweb.write.stow_study"),
    ("GET", STUDY, wado.retrieve, "dicomweb.read.wado.study"),
    ("GET", SERIES, wado.retrieve, "dicomweb.read.wado.series"),
    ("GET", INSTANCE, wado.retrieve, "dicomweb.read.wado.instance"),
    ("GET", STUDY + "/metadata", wado.metadata, "dicomweb.read.metadata.study"),
    ("GET", SERIES + "/metadata", wado.metadata, "dicomweb.read.metadata.series"),
    ("GET", INSTANCE + "/metadata", wado.metadata, "dicomweb.read.metadata.instance"),
    ("GET", INSTANCE + "/bulkdata/{tag}", wado.bulkdata, "dicomweb.read.bulkdata"),
    ("GET", INSTANCE + "/rendered", wado.rendered_instance, "dicomweb.read.rendered.instance"),
    (
        "GET",
        INSTANCE + "/frames/{frames}/rendered",
        wado.rendered_instance,
        "dicomweb.read.rendered.frames",
    ),
    ("GET", STUDY + "/thumbnail", wado.thumbnail, "dicomweb.read.thumbnail.study"),
    ("GET", SERIES + "/thumbnail", wado.thumbnail, "dicomweb.read.thumbnail.series"),
    ("GET", INSTANCE + "/thumbnail", wado.thumbnail, "dicomweb.read.thumbnail.instance"),
    (
        "GET",
        INSTANCE + "/frames/{frames}/thumbnail",
        wado.thumbnail,
        "dicomweb.read.thumbnail.frames",
    ),
]


def setup(app: web.Application) -> None:
    for method, path, handler, name in ROUTES:
        app.router.add_route(method, path, translate(handler), name=name)
