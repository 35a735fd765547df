"""The DICOM conformance statement of a node, built from the tables the doors themselves use:
the DIMSE SCP's own AE (its supported presentation contexts), the query engine's keys, the
worklist's matching keys, the DICOMweb routes and their media negotiation. Nothing here is a
second list of what the doors accept; a door that changes what it accepts changes this."""

from __future__ import annotations

import dataclasses
import typing
from importlib.metadata import PackageNotFoundError, metadata

from pydicom import Dataset
from pydicom._uid_dict import UID_dictionary
from pydicom.uid import UID
from pynetdicom.sop_class import uid_to_service_class

from hub.archive.attributes import tag_of
from hub.archive.query import KEYS, MATCHING
from hub.config import Settings
from hub.conformance.model import (
    Dicomweb,
    Dimse,
    DimseService,
    MatchingKey,
    MediaType,
    Product,
    Qido,
    QueryModel,
    QueryRetrieve,
    Resource,
    Statement,
    Stow,
    Uid,
    Worklist,
    WorklistKey,
)
from hub.dicomweb import PREFIX, ROUTES, media, qido, stow, wado
from hub.dicomweb.responses import DICOM_JSON
from hub.dimse import find, retrieve
from hub.dimse.config import UNCOMPRESSED, DimseConfig
from hub.dimse.scu import ExactSendingAE
from hub.dimse.service import scp_ae
from hub.forward.dimse_sender import CONVERTIBLE
from hub.security.middleware import SESSION_COOKIE
from hub.security.tls import MINIMUM_VERSION
from hub.worklist.dataset import worklist_dataset
from hub.worklist.model import MATCHED_AS, WorklistItem

DISTRIBUTION = "tessera-hub"
AS_STORED = Uid("*", "the transfer syntax the object is stored in")
SERVICE_NAMES = {
    "VerificationServiceClass": "Verification",
    "StorageServiceClass": "Storage",
    "QueryRetrieveServiceClass": "Query/Retrieve",
    "BasicWorklistManagementServiceClass": "Modality Worklist",
}


def build_statement(settings: Settings) -> Statement:
    """The statement of a node run with ``settings``. Blocking (it builds the SCP's
    presentation contexts, a fraction of a second): call it from a thread."""
    config = _dimse_config(settings)
    ae = scp_ae(config)
    keys = _matching_keys()
    return Statement(
        product=_product(),
        dimse=Dimse(
            enabled=settings.dimse_port is not None,
            tls=config.tls is not None,
            services=_scp_services(ae) + _scu_services(),
            query_retrieve=_query_retrieve(ae, keys),
            worklist=_worklist(),
        ),
        dicomweb=Dicomweb(
            root=PREFIX,
            resources=[_resource(method, path, handler) for method, path, handler, _ in ROUTES],
            qido=_qido(keys, settings),
            stow=Stow(media_types=STOW_MEDIA, response=DICOM_JSON),
        ),
        security=_security(config),
    )


def _dimse_config(settings: Settings) -> DimseConfig:
    # A node without a DIMSE port would accept, once given one, what this configuration says.
    return DimseConfig.from_settings(
        dataclasses.replace(settings, dimse_port=settings.dimse_port or 0)
    )


def _product() -> Product:
    try:
        about = metadata(DISTRIBUTION)
        name, version = about["Name"], about["Version"]
    except PackageNotFoundError:
        name, version = DISTRIBUTION, "0"
    ae = ExactSendingAE()  # the class of the SCP and of the hub's own associations
    return Product(name, version, str(ae.implementation_class_uid), ae.implementation_version_name)


def _uid(value: str) -> Uid:
    return Uid(str(value), UID(value).name)


# -- DIMSE ---------------------------------------------------------------------


def _scp_services(ae: ExactSendingAE) -> list[DimseService]:
    """The SCP's supported contexts, grouped by service class and transfer syntaxes."""
    groups: dict[tuple[str, tuple[str, ...]], list[Uid]] = {}
    roles: dict[tuple[str, tuple[str, ...]], bool] = {}
    for cx in ae.supported_contexts:
        kind = uid_to_service_class(cx.abstract_syntax).__name__
        group = (SERVICE_NAMES.get(kind, kind), tuple(cx.transfer_syntax))
        groups.setdefault(group, []).append(_uid(cx.abstract_syntax))
        roles[group] = bool(cx.scp_role)
    services = []
    for (service, syntaxes), sop_classes in groups.items():
        note = ""
        if roles[(service, syntaxes)]:
            note = "SCP/SCU role selection accepted: a C-GET requester takes the C-STOREs"
        services.append(
            DimseService(service, "SCP", sop_classes, [_uid(ts) for ts in syntaxes], note)
        )
    return services


def _scu_services() -> list[DimseService]:
    """What the hub proposes when it sends (hub.dimse.scu and hub.forward.dimse_sender):
    each object's own transfer syntax, never transcoded between compressed ones."""
    any_stored = [Uid("*", "the SOP class of each object sent")]
    return [
        DimseService(
            "Storage",
            "SCU",
            any_stored,
            [AS_STORED, *map(_uid, UNCOMPRESSED)],
            "C-MOVE and C-GET sub-operations; the uncompressed syntaxes only for objects "
            "stored uncompressed. A C-GET requester's storage contexts are accepted in the "
            "SCP's order of preference, one syntax per SOP class, so it should offer the "
            "syntax of the objects it retrieves",
        ),
        DimseService(
            "Storage",
            "SCU",
            any_stored,
            [AS_STORED, *map(_uid, CONVERTIBLE)],
            "forwarding; the little-endian syntaxes only for objects stored in one of them, "
            "and only to a target configured with convert_uncompressed",
        ),
    ]


def _matching_keys() -> list[MatchingKey]:
    return [
        MatchingKey(keyword, tag_of(keyword) or "", key.level, list(MATCHING[key.kind]))
        for keyword, key in KEYS.items()
    ]


def _query_retrieve(ae: ExactSendingAE, keys: list[MatchingKey]) -> QueryRetrieve:
    qr = [
        cx.abstract_syntax
        for cx in ae.supported_contexts
        if uid_to_service_class(cx.abstract_syntax).__name__ == "QueryRetrieveServiceClass"
    ]
    models = [
        QueryModel(str(model), UID(model).name, _levels(model))
        for model in qr
        if model != find.MWL_FIND
    ]
    return QueryRetrieve(
        models=models,
        matching_keys=keys,
        return_keys=(
            "any attribute of the stored objects: an identifier element without a value, or "
            "one the engine cannot match on, is returned (empty when the object has none)"
        ),
        retrieve_keys=list(retrieve.UNIQUE_KEYS),
        move_destinations=(
            "the DIMSE peers administrators list (admin page, /api/admin/peers, tessera dimse "
            "peer), first filled from dimse_move_destinations; any other is answered 0xA801"
        ),
    )


def _levels(model: str) -> list[str]:
    return [level for level in find.LEVELS if level != "PATIENT" or model in find.PATIENT_ROOT]


def _worklist() -> Worklist:
    step = "ScheduledProcedureStepSequence > "
    keys = [
        WorklistKey(keyword, list(MATCHING[MATCHED_AS[field]]))
        for keyword, field in find.MWL_KEYS.items()
    ]
    keys += [
        WorklistKey(step + keyword, list(MATCHING[MATCHED_AS[field]]))
        for keyword, field in find.MWL_STEP_KEYS.items()
    ]
    keys.append(WorklistKey(step + find.MWL_STATUS, ["single value"]))
    return Worklist(keys, _worklist_return_keys(), list(find.MWL_DEFAULT_STATUSES))


def _worklist_return_keys() -> list[str]:
    """The attributes the MWL answer carries: those of an answer for an empty item (less
    SpecificCharacterSet, which an answer carries only when it needs to)."""
    answer = worklist_dataset(_empty_item())
    wanted = [e for e in answer if e.tag not in find.CONTROL]
    return [name for element in wanted for name in _keywords(element, "")]


def _keywords(element, prefix: str) -> list[str]:
    names = [prefix + element.keyword]
    if element.VR == "SQ":
        for item in element.value:
            assert isinstance(item, Dataset)
            names += [n for e in item for n in _keywords(e, f"{prefix}{element.keyword} > ")]
    return names


def _empty_item() -> WorklistItem:
    hints = typing.get_type_hints(WorklistItem)
    values = {}
    for f in dataclasses.fields(WorklistItem):
        hint = str(hints[f.name])
        if "list" in hint:
            values[f.name] = []
        elif "None" in hint:
            values[f.name] = None
        elif hints[f.name] in (int, float):
            values[f.name] = 0
        else:
            values[f.name] = ""
    return WorklistItem(**values)


# -- DICOMweb ------------------------------------------------------------------

MULTIPART_DICOM = f'multipart/related; type="{media.DICOM}"'
DECODED = Uid(str(media.DECODED_TS), f"{UID(media.DECODED_TS).name}, decoded")
STOW_MEDIA = [
    MediaType(
        MULTIPART_DICOM,
        [_uid(u) for u in UID_dictionary if UID(u).is_transfer_syntax],
        "each part stored as received, in any of these transfer syntaxes",
    )
]
JSON = [MediaType(DICOM_JSON)]
RENDERED = [MediaType(t) for t in media.RENDERED_TYPES]
# What each handler of hub.dicomweb.ROUTES serves: (service, resource, media types).
RESOURCES: dict[object, tuple[str, str, list[MediaType]]] = {
    qido.search_studies: ("QIDO-RS", "search for studies", JSON),
    qido.search_series: ("QIDO-RS", "search for series", JSON),
    qido.search_instances: ("QIDO-RS", "search for instances", JSON),
    stow.store_instances: ("STOW-RS", "store instances", STOW_MEDIA),
    wado.retrieve: (
        "WADO-RS",
        "instances",
        [
            MediaType(
                MULTIPART_DICOM,
                [AS_STORED, DECODED],
                "transfer-syntax=* or none: as stored; "
                f"transfer-syntax={media.DECODED_TS}: decoded",
            )
        ],
    ),
    wado.metadata: ("WADO-RS", "metadata", JSON),
    wado.frames: (
        "WADO-RS",
        "frames",
        [
            MediaType(
                media.OCTET_STREAM,
                [AS_STORED, DECODED],
                "transfer-syntax=*: as stored; none: as stored when uncompressed, else decoded",
            ),
            *(
                MediaType(t, [_uid(ts) for ts in sorted(syntaxes)], "frames stored so, as stored")
                for t, syntaxes in media.IMAGE_TYPES.items()
            ),
        ],
    ),
    wado.bulkdata: (
        "WADO-RS",
        "bulk data",
        [
            MediaType(f'multipart/related; type="{media.OCTET_STREAM}"', note="the default"),
            MediaType(media.OCTET_STREAM, note="a single value alone"),
        ],
    ),
    wado.rendered_instance: ("WADO-RS", "rendered", RENDERED),
    wado.thumbnail: ("WADO-RS", "thumbnail", RENDERED),
}


def _resource(method: str, path: str, handler) -> Resource:
    service, resource, media_types = RESOURCES[handler]
    return Resource(service, resource, method, path, media_types)


def _qido(keys: list[MatchingKey], settings: Settings) -> Qido:
    listed = [k for k, key in KEYS.items() if key.kind in qido.LIST_KINDS]
    return Qido(
        matching_keys=keys,
        fuzzy_matching=[k for k, key in KEYS.items() if key.kind == "pn"],
        includefield=(
            "keywords or tags, comma-separated or repeated, or all; an attribute the level "
            "cannot return is named in a Warning header"
        ),
        paging=f"limit and offset; at most {settings.max_query_results} results a request",
        multiple_values=(
            f"{', '.join(listed)} take several values as A,B or A\\B or the key repeated"
        ),
    )


# -- security ------------------------------------------------------------------


def _security(config: DimseConfig) -> list[str]:
    tls = MINIMUM_VERSION.name.replace("TLSv", "TLS ").replace("_", ".")
    lines = [
        f"HTTPS (web, API, DICOMweb): {tls} or later, when served with a certificate",
        f"DICOMweb and API callers: a bearer token or the {SESSION_COOKIE} session cookie",
        "DIMSE: calling AE titles on an allow-list, per service, optionally bound to an "
        "address or a TLS client certificate; C-ECHO is open to every AE",
    ]
    if config.allowed_aes:
        lines.append("DIMSE associations only from the calling AE titles of dimse_allowed_aes")
    if config.tls is None:
        lines.append("DICOM over TLS: not configured on this node (dimse_tls)")
    else:
        mutual = ", with client certificates (mutual TLS)" if config.tls.get("ca") else ""
        lines.append(f"DICOM over TLS ({tls} or later) on the DIMSE port{mutual}")
    return lines
