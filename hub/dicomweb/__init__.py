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


def setup(app: web.Application) -> None:
    study = PREFIX + "/studies/{study}"
    series = study + "/series/{series}"
    instance = series + "/instances/{instance}"
    # Frames first: a tiled viewer asks for little else, and aiohttp tries the routes under
    # /dicomweb/studies in the order they were added.
    routes = [
        ("GET", instance + "/frames/{frames}", wado.frames, "dicomweb.read.frames"),
        ("GET", PREFIX + "/studies", qido.search_studies, "dicomweb.read.qido.studies"),
        ("GET", study + "/series", qido.search_series, "dicomweb.read.qido.study_series"),
        ("GET", PREFIX + "/series", qido.search_series, "dicomweb.read.qido.series"),
        (
            "GET",
            series + "/instances",
            qido.search_instances,
            "dicomweb.read.qido.series_instances",
        ),
        ("GET", study + "/instances", qido.search_instances, "dicomweb.read.qido.study_instances"),
        ("GET", PREFIX + "/instances", qido.search_instances, "dicomweb.read.qido.instances"),
        ("POST", PREFIX + "/studies", stow.store_instances, "dicomweb.write.stow"),
        ("POST", study, stow.store_instances, "dicomweb.write.stow_study"),
        ("GET", study, wado.retrieve, "dicomweb.read.wado.study"),
        ("GET", series, wado.retrieve, "dicomweb.read.wado.series"),
        ("GET", instance, wado.retrieve, "dicomweb.read.wado.instance"),
        ("GET", study + "/metadata", wado.metadata, "dicomweb.read.metadata.study"),
        ("GET", series + "/metadata", wado.metadata, "dicomweb.read.metadata.series"),
        ("GET", instance + "/metadata", wado.metadata, "dicomweb.read.metadata.instance"),
        ("GET", instance + "/bulkdata/{tag}", wado.bulkdata, "dicomweb.read.bulkdata"),
        ("GET", instance + "/rendered", wado.rendered_instance, "dicomweb.read.rendered.instance"),
        (
            "GET",
            instance + "/frames/{frames}/rendered",
            wado.rendered_instance,
            "dicomweb.read.rendered.frames",
        ),
        ("GET", study + "/thumbnail", wado.thumbnail, "dicomweb.read.thumbnail.study"),
        ("GET", series + "/thumbnail", wado.thumbnail, "dicomweb.read.thumbnail.series"),
        ("GET", instance + "/thumbnail", wado.thumbnail, "dicomweb.read.thumbnail.instance"),
        (
            "GET",
            instance + "/frames/{frames}/thumbnail",
            wado.thumbnail,
            "dicomweb.read.thumbnail.frames",
        ),
    ]
    for method, path, handler, name in routes:
        app.router.add_route(method, path, translate(handler), name=name)
