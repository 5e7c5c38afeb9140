"""Where moto (and botocore under it) is slow out of proportion on the local runner's path, and what the
local AWS does instead.

Each patch keeps moto's behaviour (what it stores, answers and refuses) and spares a cost measured on a
100-alert `vtriage run` (py-spy, the thread holding the GIL, 2026-11-29); `tests/unit/test_moto_speedups.py`
holds each one to moto's own answer. They are applied while a LocalAws runs and removed when it stops.
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
import math
import os
import sys
import threading
from typing import Any
from unittest import mock

import botocore.session
import jsonpath_ng.parser
import moto.backends
import moto.settings
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.compat import get_current_datetime
from botocore.exceptions import NoCredentialsError
from botocore.loaders import Loader
from botocore.parsers import BaseJSONParser
from botocore.serialize import JSONSerializer
from botocore.validate import ParamValidator
from jsonpath_ng.ext.parser import parse as jsonpath_parse
from moto.core.utils import method_names_from_class
from moto.dynamodb.exceptions import ItemSizeTooLarge
from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
from moto.dynamodb.models.utilities import bytesize
from moto.dynamodb.responses import DynamoHandler, DynamoResult
from moto.sqs import models as sqs_models
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.utils import json_path

__all__ = [
    "EC2_ENDPOINT_PREFIX",
    "UNCHECKED_SIGNATURE",
    "attribute_values_whole",
    "moto_speedups",
    "signed_for_moto",
    "well_formed",
]


# EC2's endpoint prefix in botocore's model of it (`metadata.endpointPrefix`), which
# tests/unit/test_moto_speedups.py holds to the model.
EC2_ENDPOINT_PREFIX = "ec2"


def _moto_ec2_imported_without_its_model() -> None:
    """Import moto's EC2, before anything else does, without botocore reading EC2's whole service model
    three times: moto lists the three partitions' Regions as its EC2 models are imported, through
    Session.get_available_regions, which reads the model (14 MB of JSON, in a new session each time) for
    its endpoint prefix alone: 0.4 s of every vtriage run's CPU. The prefix is given for those readings;
    botocore reads the partitions' endpoints as before, so the Regions listed are the ones it lists.
    Nothing else: the patch lasts the import."""
    if "moto.ec2" in sys.modules:
        return
    read = botocore.session.Session.get_service_data

    def service_data(session: Any, service_name: str, api_version: Any = None) -> Any:
        if service_name == "ec2":
            return {"metadata": {"endpointPrefix": EC2_ENDPOINT_PREFIX}}
        return read(session, service_name, api_version)

    with mock.patch.object(botocore.session.Session, "get_service_data", service_data):
        importlib.import_module("moto.ec2")


# moto's Step Functions engine imports moto's EC2 (through AWS Batch's task): before it, below.
_moto_ec2_imported_without_its_model()

# The modules of moto's Step Functions engine that make a boto3 client for each task they run.
_ENGINE_CLIENT_MODULES = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sns",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sqs",
)

# The DynamoDB operations whose results moto already holds in the wire's form (items as attribute-value
# maps, counts, consumed capacity): their JSON is the result itself.
ITEM_OPERATIONS = frozenset(
    {
        "GetItem",
        "BatchGetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
    }
)
_DYNAMODB_CONTENT_TYPE = "application/x-amz-json-1.0"
# moto's item size limit (LimitedSizeDict): between the 400 KB documented and the 409-410 KB measured.
_MOTO_ITEM_LIMIT = 405_000
_RUNNING_SIZE = "_vtriage_running_size"


def moto_speedups() -> list[Any]:
    """The patches, not yet started."""
    patches = [
        _parsed_definitions_kept(),
        mock.patch.object(DynamoResult, "execute_result", items_as_json(DynamoResult.execute_result)),
        mock.patch.object(
            DynamoHandler, "parse_parameters", _items_read_as_json(DynamoHandler.parse_parameters)
        ),
        mock.patch.object(LimitedSizeDict, "__setitem__", _sized_setitem),
        mock.patch.object(LimitedSizeDict, "__delitem__", _forget_size),
        mock.patch.object(moto.backends, "list_of_moto_modules", _moto_modules),
        mock.patch("moto.core.responses.method_names_from_class", _method_names(method_names_from_class)),
        mock.patch.object(
            sqs_models.SQSBackend, "is_message_valid_based_on_retention_period", retained_message
        ),
    ]
    patches.append(mock.patch.object(json_path, "parse", _parsed_once(jsonpath_parse)))
    # ResultPath parses its path with jsonpath_ng's own parser, again for every task (2% of a run's CPU).
    patches.append(mock.patch.object(result_path, "parse", _parsed_once(jsonpath_ng.parser.parse)))
    patches += attribute_values_whole()
    patches += [
        mock.patch.object(Loader, method, _loaded_once(getattr(Loader, method)))
        for method in ("load_service_model", "load_data_with_path")
    ]
    for name in _ENGINE_CLIENT_MODULES:
        module = importlib.import_module(name)
        patches.append(
            mock.patch.object(module, "boto_client_for", _kept_engine_client(module.boto_client_for))
        )
    return patches


# What the Authorization header of a request to the local AWS carries in place of a signature.
UNCHECKED_SIGNATURE = "0" * 64


def signed_for_moto(*endpoint_urls: str) -> Any:
    """botocore's Signature Version 4, for the requests to the local AWS (at any of `endpoint_urls`: its
    address, and `localhost` with its port, where moto's Step Functions engine calls it), without the
    signature itself, which moto checks only when its IAM authorisation is on (INITIAL_NO_AUTH_ACTION_COUNT;
    the local AWS leaves it off): the canonical request (every header and a SHA-256 of the body) and the
    HMAC chain were 5% of a 100-alert run's CPU. The headers are the ones botocore sets (date, session
    token, `Authorization` with the access key, the credential scope moto reads the account, Region and
    service from, and the signed headers' names), with UNCHECKED_SIGNATURE as the signature. S3's signer
    (a subclass, whose payload hash moto reads) and any request elsewhere are signed by botocore."""
    sign = SigV4Auth.add_auth
    local = tuple(f"{url.rstrip('/')}/" for url in endpoint_urls)

    def add_auth(signer: Any, request: Any) -> None:
        if (
            type(signer) is not SigV4Auth
            or not str(request.url).startswith(local)
            or not math.isinf(moto.settings.INITIAL_NO_AUTH_ACTION_COUNT)
        ):
            sign(signer, request)
            return
        # As botocore's add_auth does, but for the canonical request, the string to sign and the HMACs.
        signing: Any = signer
        if signing.credentials is None:
            raise NoCredentialsError()
        request.context["timestamp"] = get_current_datetime().strftime(SIGV4_TIMESTAMP)
        signing._modify_request_before_signing(request)
        signing._inject_signature_to_request(request, UNCHECKED_SIGNATURE)

    return mock.patch.object(SigV4Auth, "add_auth", add_auth)


def _parsed_once(parse: Any) -> Any:
    """jsonpath_ng's parser, keeping each path's parsed expression: moto's engine parses a state's paths
    again each time it evaluates them (a parser built by ply for each: 5% of a run's CPU). A parsed path
    is only read when it finds matches or puts a value in place."""
    return functools.lru_cache(maxsize=1024)(parse)


def _loaded_once(load: Any) -> Any:
    """botocore's model loading, once a process for each kind of loader: each botocore session has a
    loader of its own, and the local AWS holds many in one process (the tools', each function's, each
    member account's, moto's, and one per moto backend asking for its Regions): a 30-alert run loaded
    EC2's model nine times and the endpoints seven, 120 MB of its 290. Models are only read once
    loaded (nothing handles botocore's `service-data-loaded`); moto's loader, which adds its own extras
    to the models, keeps its own."""
    loaded: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    @functools.wraps(load)
    def load_once(loader: Any, *args: Any, **kwargs: Any) -> Any:
        key = (type(loader), tuple(loader.search_paths), args, tuple(sorted(kwargs.items())))
        with lock:
            if key not in loaded:
                loaded[key] = load(loader, *args, **kwargs)
            return loaded[key]

    return load_once


def _parsed_definitions_kept() -> Any:
    """moto's engine parses the state machine's ASL again for every execution (ANTLR: a tenth of a run's
    CPU). Parsed definitions are kept by their text: the parsed tree is only read while it runs, each
    execution keeping its state in its own environment."""
    parsed: dict[str, Any] = {}
    parse_lock = threading.Lock()
    worker_class = importlib.import_module(
        "moto.stepfunctions.parser.backend.execution_worker"
    ).ExecutionWorker
    original = worker_class._get_evaluation_entrypoint

    def entrypoint(worker: Any) -> Any:
        definition = worker._evaluation_details.state_machine_details.definition
        with parse_lock:
            if definition not in parsed:
                parsed[definition] = original(worker)
            return parsed[definition]

    return mock.patch.object(worker_class, "_get_evaluation_entrypoint", entrypoint)


def _kept_engine_client(make: Any) -> Any:
    """moto's engine makes a boto3 client for every task it runs (a new connection each, and botocore's
    client set-up): one is kept per Region, service and moto port (clients are thread-safe; the engine's
    credentials are moto's fixed dummy ones)."""
    clients: dict[tuple[str, str, str], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service, os.environ.get("MOTO_PORT", ""))
        with lock:
            if key not in clients:
                clients[key] = make(region, service, state_credentials)
            return clients[key]

    return boto_client_for


def items_as_json(serialize: Any) -> Any:
    """moto's DynamoDB result serialiser, writing the results of item operations as plain JSON. moto walks
    the operation's output shape member by member, trying each name alias of each attribute value: 7 ms
    for a 4 KB case, a quarter of a run's CPU. The result is already the wire's document (binary values
    base64-encoded, absent members left out); any other result goes through moto's serialiser."""

    def execute_result(result: Any, context: Any) -> Any:
        if context.operation_model.name not in ITEM_OPERATIONS or not isinstance(result.result, dict):
            return serialize(result, context)
        try:
            body = json.dumps(_present(result.result), default=_base64)
        except TypeError:
            return serialize(result, context)
        return 200, {"Content-Type": _DYNAMODB_CONTENT_TYPE}, body

    return execute_result


def _items_read_as_json(parse: Any) -> Any:
    """moto's DynamoDB request parser, reading the requests of item operations as plain JSON: moto walks
    the operation's input shape member by member (7% of a run's CPU, most of it on the cases written).
    The request is already the document moto's parser makes, but for binary attribute values, which it
    decodes from base64; any other request goes through moto's parser."""

    def parse_parameters(handler: Any, request: Any) -> None:
        if handler._get_action() not in ITEM_OPERATIONS:
            parse(handler, request)
            return
        data = request.data or b"{}"
        try:
            params = json.loads(data)
        except ValueError:
            parse(handler, request)
            return
        # Only a request naming a binary type can hold one: most hold none, and are not walked.
        handler.params = _binary_decoded(params) if b'"B' in data else params

    return parse_parameters


def _binary_decoded(value: Any) -> Any:
    """The document with its binary attribute values (`{"B": ...}`, `{"BS": [...]}`) decoded from base64."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((kind, inner),) = value.items()
            if kind == "B" and isinstance(inner, str):
                return {"B": base64.b64decode(inner)}
            if kind == "BS" and isinstance(inner, list) and all(isinstance(item, str) for item in inner):
                return {"BS": [base64.b64decode(item) for item in inner]}
        return {key: _binary_decoded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_binary_decoded(item) for item in value]
    return value


# The types of DynamoDB's attribute values: a value is a map of one of them to its content.
_ATTRIBUTE_TYPES = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})


def _present(value: Any) -> Any:
    """The document without its absent (None) members, as the serialiser leaves them out. An attribute
    value is kept whole, not walked: moto makes it of its item's stored content, which holds no None
    (NULL is `{"NULL": true}`), and walking every value of every case was 3% of a run's CPU."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in _ATTRIBUTE_TYPES:
            return value
        return {key: _present(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_present(item) for item in value]
    return value


def _base64(value: Any) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"not JSON: {type(value).__name__}")


def _size(value: Any) -> int:
    return value.size() if type(value) is DynamoType else bytesize(str(value))


def _sized_setitem(item: LimitedSizeDict, key: str, value: Any) -> None:
    """moto's item size check, keeping the item's running size: moto sums every attribute again for each
    one it adds, quadratic in the attributes (a tenth of a run's CPU went to storing cases). The same sum,
    the same limit, the same refusal; the size is summed again whenever the item changed otherwise."""
    kept: tuple[int, int] | None = item.__dict__.get(_RUNNING_SIZE)
    replacing = key in item
    if kept is not None and kept[0] == len(item) and not replacing:
        size = kept[1]
    else:
        size = sum(bytesize(name) + _size(attribute) for name, attribute in item.items())
    added = bytesize(key) + _size(value)
    if size + added > _MOTO_ITEM_LIMIT:
        raise ItemSizeTooLarge
    dict.__setitem__(item, key, value)
    item.__dict__[_RUNNING_SIZE] = None if replacing else (len(item), size + added)


def _forget_size(item: LimitedSizeDict, key: str) -> None:
    item.__dict__.pop(_RUNNING_SIZE, None)
    dict.__delitem__(item, key)


_LIST_MOTO_MODULES = moto.backends.list_of_moto_modules


@functools.cache
def _moto_modules() -> tuple[str, ...]:
    """moto's service folders, listed once: moto lists its package folder (and stats each entry) for
    every request it serves, 4% of a run's CPU."""
    return tuple(_LIST_MOTO_MODULES())


def retained_message(backend: Any, queue_name: str, message: Any) -> bool:
    """moto's check that a message it receives is within its queue's retention period, reading the period
    alone. moto reads it through GetQueueAttributes, which makes every attribute of the queue three times
    over, the approximate message counts among them, each walking all the queue's messages: a receive of
    n messages from a queue of m was n * m steps (4% of a 100-alert run's CPU). The same period, compared
    the same way with the same clock."""
    period: int = backend.get_queue(queue_name).message_retention_period
    # moto's SQS models' own clock (its name there, as moto's check reads it).
    now: float = sqs_models.unix_time()  # type: ignore[attr-defined]
    sent_at: float = message.sent_timestamp / 1000
    return period + sent_at > now


def _method_names(names_of: Any) -> Any:
    """moto's list of a response class's methods, kept per class: moto builds it with inspect.getmembers
    for every request it serves (2% of a run's CPU)."""
    kept: dict[type, list[str]] = {}

    def method_names_from_class(clazz: Any) -> list[str]:
        if clazz not in kept:
            kept[clazz] = names_of(clazz)
        return kept[clazz]

    return method_names_from_class


# DynamoDB's attribute value (and DynamoDB Streams'): a structure of one member of these, each of
# botocore's shapes without constraints but the map keys' (AttributeName: at most 65,535 characters).
_ATTRIBUTE_VALUE = "AttributeValue"
_ATTRIBUTE_VALUE_MEMBERS = ("S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL")
_MAX_ATTRIBUTE_NAME = 65_535


def attribute_values_whole() -> list[Any]:
    """The patches, not yet started, that let botocore check, write and read DynamoDB's attribute values
    whole: botocore walks each value member by member, through its shape, to check it (validation), to
    write it (the JSON serialiser) and to read it back (the JSON parser), and a case is hundreds of
    them: a third of each case's GetItem and PutItem on the local AWS (botocore's side, 2026-11-29). A
    value of the expected form (one member, of the type its shape takes) is checked, written and read in
    one pass, to what botocore makes of it; any other value goes through botocore's own walk, so that
    what it refuses, and how it says so, is unchanged."""
    # botocore's own methods, private to it (its stubs leave them out): read from each class itself.
    validate, serialize, parse = (
        vars(ParamValidator)["_validate_structure"],
        vars(JSONSerializer)["_serialize_type_structure"],
        vars(BaseJSONParser)["_handle_structure"],
    )
    return [
        mock.patch.object(ParamValidator, "_validate_structure", _checked_whole(validate)),
        mock.patch.object(JSONSerializer, "_serialize_type_structure", _written_whole(serialize)),
        mock.patch.object(BaseJSONParser, "_handle_structure", _read_whole(parse)),
    ]


def _is_attribute_value(shape: Any) -> bool:
    return bool(shape.name == _ATTRIBUTE_VALUE and tuple(shape.members) == _ATTRIBUTE_VALUE_MEMBERS)


def well_formed(value: Any) -> bool:
    """Whether an attribute value given to botocore is of the one form checked whole: one member, holding
    the Python type botocore takes for it (str, bytes, bool, a list or dict of those), map keys within
    AttributeName's length. botocore accepts each such value; it checks any other itself."""
    if type(value) is not dict or len(value) != 1:
        return False
    ((kind, inner),) = value.items()
    if kind in ("S", "N"):
        return type(inner) is str
    if kind == "B":
        return type(inner) is bytes
    if kind in ("SS", "NS"):
        return type(inner) is list and all(type(element) is str for element in inner)
    if kind == "BS":
        return type(inner) is list and all(type(element) is bytes for element in inner)
    if kind == "M":
        return type(inner) is dict and all(
            type(name) is str and len(name) <= _MAX_ATTRIBUTE_NAME and well_formed(element)
            for name, element in inner.items()
        )
    if kind == "L":
        return type(inner) is list and all(well_formed(element) for element in inner)
    if kind in ("NULL", "BOOL"):
        return type(inner) is bool
    return False


def _checked_whole(validate: Any) -> Any:
    def validate_structure(validator: Any, params: Any, shape: Any, errors: Any, name: str) -> None:
        if _is_attribute_value(shape) and well_formed(params):
            return
        validate(validator, params, shape, errors, name)

    return validate_structure


def _wire(value: dict[str, Any]) -> dict[str, Any]:
    """A well-formed attribute value as botocore's JSON serialiser writes it: binary values in base64."""
    ((kind, inner),) = value.items()
    if kind == "B":
        return {kind: base64.b64encode(inner).decode("utf-8")}
    if kind == "BS":
        return {kind: [base64.b64encode(element).decode("utf-8") for element in inner]}
    if kind == "M":
        return {kind: {name: _wire(element) for name, element in inner.items()}}
    if kind == "L":
        return {kind: [_wire(element) for element in inner]}
    if kind in ("SS", "NS"):
        return {kind: list(inner)}
    return {kind: inner}


def _written_whole(serialize: Any) -> Any:
    def serialize_type_structure(
        serializer: Any, serialized: Any, value: Any, shape: Any, key: str | None
    ) -> None:
        if key is not None and _is_attribute_value(shape) and well_formed(value):
            serialized[key] = _wire(value)
            return
        serialize(serializer, serialized, value, shape, key)

    return serialize_type_structure


def _read(value: Any, blob: Any) -> Any:
    """An attribute value as the wire holds it, read as botocore's JSON parser reads it (binary values
    decoded by the parser's blob reader); None when it is not of the form read whole."""
    if type(value) is not dict or len(value) != 1:
        return None
    ((kind, inner),) = value.items()
    if kind in ("S", "N"):
        return value if type(inner) is str else None
    if kind == "B":
        return {kind: blob(inner)} if type(inner) is str else None
    if kind in ("SS", "NS", "BS"):
        if type(inner) is not list or not all(type(element) is str for element in inner):
            return None
        return {kind: [blob(element) for element in inner] if kind == "BS" else list(inner)}
    if kind in ("NULL", "BOOL"):
        return value if type(inner) is bool else None
    if kind == "M":
        if type(inner) is not dict:
            return None
        read_map = {}
        for name, element in inner.items():
            read_element = _read(element, blob)
            if read_element is None:
                return None
            read_map[name] = read_element
        return {kind: read_map}
    if kind == "L":
        if type(inner) is not list:
            return None
        read_list = []
        for element in inner:
            read_element = _read(element, blob)
            if read_element is None:
                return None
            read_list.append(read_element)
        return {kind: read_list}
    return None


def _read_whole(handle: Any) -> Any:
    def handle_structure(parser: Any, shape: Any, value: Any) -> Any:
        if _is_attribute_value(shape):
            read = _read(value, parser._blob_parser)
            if read is not None:
                return read
        return handle(parser, shape, value)

    return handle_structure
