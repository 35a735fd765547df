"""The conformance statement's parts, as served at /api/conformance (and described in its
OpenAPI schema by these same structs)."""

from __future__ import annotations

import msgspec


class Uid(msgspec.Struct):
    """A SOP class or transfer syntax; ``uid`` "*" stands for the one an object is stored in."""

    uid: str
    name: str


class Product(msgspec.Struct):
    name: str
    version: str
    implementation_class_uid: str
    implementation_version_name: str


class DimseService(msgspec.Struct):
    """A DIMSE service in one role: its SOP classes and the transfer syntaxes of each, in
    order of preference (the SCP accepts the first of these that a context proposes)."""

    service: str
    role: str  # "SCP" or "SCU"
    sop_classes: list[Uid]
    transfer_syntaxes: list[Uid]
    note: str = ""


class MatchingKey(msgspec.Struct):
    keyword: str
    tag: str
    level: str  # the level of the key: PATIENT, STUDY, SERIES, INSTANCE
    matching: list[str]  # besides universal matching, which every key takes


class QueryModel(msgspec.Struct):
    uid: str
    name: str
    levels: list[str]


class QueryRetrieve(msgspec.Struct):
    models: list[QueryModel]
    matching_keys: list[MatchingKey]
    return_keys: str
    retrieve_keys: list[str]
    move_destinations: str


class WorklistKey(msgspec.Struct):
    keyword: str  # "Sequence > Keyword" for a key of the Scheduled Procedure Step item
    matching: list[str]


class Worklist(msgspec.Struct):
    matching_keys: list[WorklistKey]
    return_keys: list[str]
    default_statuses: list[str]


class Dimse(msgspec.Struct):
    enabled: bool  # whether this node listens for DIMSE (Settings.dimse_port)
    tls: bool
    services: list[DimseService]
    query_retrieve: QueryRetrieve
    worklist: Worklist


class MediaType(msgspec.Struct):
    media_type: str
    transfer_syntaxes: list[Uid] = []
    note: str = ""


class Resource(msgspec.Struct):
    service: str  # QIDO-RS, WADO-RS, STOW-RS
    resource: str
    method: str
    path: str
    media_types: list[MediaType]


class Qido(msgspec.Struct):
    matching_keys: list[MatchingKey]
    fuzzy_matching: list[str]  # the keys fuzzymatching=true applies to
    includefield: str
    paging: str
    multiple_values: str


class Stow(msgspec.Struct):
    media_types: list[MediaType]
    response: str


class Dicomweb(msgspec.Struct):
    root: str
    resources: list[Resource]
    qido: Qido
    stow: Stow


class Statement(msgspec.Struct):
    product: Product
    dimse: Dimse
    dicomweb: Dicomweb
    security: list[str]
