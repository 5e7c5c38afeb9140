"""What moto (and botocore under it) keeps in memory that nobody reads, and what the local AWS keeps instead.

Measured on `vtriage run` of 100 and 500 alerts (tracemalloc snapshots and the resident set at each phase,
2026-11-29): the run held every object moto ever made of a model class, replaced or copied ones included
(1,639 DynamoDB items for the 382 its tables held after 100 alerts), botocore's service models with their
documentation (70% of each model: EC2's is 14 MB with it and 4 MB without), and moto's EC2 instance-type
catalogue (54 MB) that a run launching instances with no instance type nor placement never reads. Then
(500 alerts): every thread moto's Step Functions engine started, each ended execution's history as Python
objects (36 kB each), and, outside moto, a malloc arena per thread (`one_malloc_arena`).

Each saver keeps what moto stores, answers and refuses; `tests/unit/test_moto_memory.py` holds them to it.
They are applied while a LocalAws runs and removed when it stops (the catalogue stays deferred once
deferred: it is the same catalogue, read when first asked for).
"""

from __future__ import annotations

import copy
import ctypes
import functools
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import pickle
import platform
import sys
import threading
import weakref
import zlib
from collections.abc import Iterator, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar
from unittest import mock

import moto.utilities.utils
from botocore.loaders import JSONFileLoader
from moto.core.common_models import BaseModel

__all__ = [
    "LiveInstances",
    "OfferingsByRegion",
    "PackedEvents",
    "defer_instance_type_offerings",
    "engine_threads_held_weakly",
    "moto_memory",
    "one_malloc_arena",
    "without_documentation",
]

# botocore's data files give each shape, member and operation its documentation: HTML for the SDK's
# docstrings (help() on a client method), which nothing on the local AWS's path reads.
_DOCUMENTATION_KEYS = frozenset({"documentation", "documentationUrl"})


# glibc's mallopt parameter M_ARENA_MAX (malloc.h).
_M_ARENA_MAX = -8


def one_malloc_arena() -> bool:
    """Have every thread this process starts from now on allocate from glibc's main arena, as
    MALLOC_ARENA_MAX=1 would from the start; True when applied (False off glibc, where nothing changes).

    glibc gives each new thread that allocates an arena of its own, up to eight a core, and memory freed
    in an arena is reused only by the threads it serves. moto's engine runs each execution in threads of
    its own, up to 200 at once as the first batches' executions start: a 500-alert `vtriage run` held
    30 to 50 MB more with them than with the main arena for all. Python takes most of its memory from
    its own pools under the GIL, so the threads hardly wait on the arena's lock."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, 1))


def moto_memory() -> list[Any]:
    """The savers, not yet started."""
    defer_instance_type_offerings()
    # moto's Step Functions engine imports its EC2 models: imported once the catalogue is deferred.
    execution = importlib.import_module("moto.stepfunctions.parser.backend.execution")
    communication = execution.BaseExecutionWorkerCommunication
    return [
        mock.patch.object(BaseModel, "__new__", _tracked_while_alive),
        mock.patch.object(JSONFileLoader, "_load_file", _load_file_without_documentation),
        *engine_threads_held_weakly(),
        mock.patch.object(communication, "terminated", _history_packed_once_ended(communication.terminated)),
    ]


# moto's engine keeps each execution's history for GetExecutionHistory: every event, most with the state's
# whole input or output (49 events and 36 kB of Python objects for a C&C case, nearly half of what a run
# grows an alert). Nothing asks it of most finished executions (the runner reads the histories of those
# still running). Once an execution has ended, its history is kept packed (PackedEvents).


class PackedEvents(list[Any]):
    """An ended execution's history events, pickled and compressed (a tenth of their size), in place of
    moto's list: moto answers GetExecutionHistory with a deep copy of it, which is the events as they
    were, then a copy of any appended since (held as a list holds them)."""

    def __init__(self, events: list[Any]) -> None:
        super().__init__()
        # Packed again (an execution ended twice), the events packed before come first.
        whole = copy.deepcopy(events) if isinstance(events, PackedEvents) else events
        self._packed = zlib.compress(pickle.dumps(whole, pickle.HIGHEST_PROTOCOL), 1)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        events: list[Any] = pickle.loads(zlib.decompress(self._packed))  # noqa: S301 (packed here)
        return events + copy.deepcopy(list(self), memo)


def _history_packed_once_ended(terminated: Any) -> Any:
    """BaseExecutionWorkerCommunication.terminated, then the execution's history packed."""

    def terminated_then_packed(communication: Any) -> None:
        terminated(communication)
        manager = communication.execution.exec_worker.env.event_manager
        with manager._mutex:
            manager._history_event_list = PackedEvents(manager._history_event_list)

    return terminated_then_packed


# moto's Step Functions engine (LocalStack's) appends every thread it starts to TMP_THREADS: one for each
# execution, one for its program and one for each task state run, about 14 an alert. LocalStack joins them
# at shutdown; moto never reads the list nor empties it, so each finished thread stayed, with its events,
# conditions and locks: some 7,000 after 500 alerts (2 kB each, joined).
_ENGINE_THREADS_MODULE = "moto.stepfunctions.parser.utils"
_ENGINE_THREAD_STARTERS = (
    "moto.stepfunctions.parser.backend.execution_worker",
    "moto.stepfunctions.parser.asl.component.program.program",
    "moto.stepfunctions.parser.asl.component.test_state.program.test_state_program",
    "moto.stepfunctions.parser.asl.component.state.exec.execute_state",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.inline_iteration_component",
    "moto.stepfunctions.parser.asl.component.state.exec.state_parallel.branch_worker",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback",
)


def engine_threads_held_weakly() -> list[Any]:
    """Patches giving every module of moto's engine that names TMP_THREADS one list holding the threads
    weakly (LiveInstances): iterating it gives the threads that still exist, as moto's list would give them
    all; a finished thread goes once nothing else holds it."""
    own = importlib.import_module(_ENGINE_THREADS_MODULE).TMP_THREADS
    for name in _ENGINE_THREAD_STARTERS:
        importlib.import_module(name)
    # Every module holding moto's list under that name, those the starters imported included.
    holders = [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("moto.stepfunctions.") and getattr(module, "TMP_THREADS", None) is own
    ]
    threads = LiveInstances()
    return [mock.patch.object(module, "TMP_THREADS", threads) for module in holders]


class LiveInstances(list[Any]):
    """A model class's tracked instances (or the engine's threads), each held weakly: iterating gives
    those still alive.

    moto's BaseModel appends every instance it makes to its class's `instances_tracked` and holds it until
    moto is reset, for its dashboard (`/moto-api/data.json`) and for S3 to close its keys' buffers then.
    Every copy moto makes of an item to answer a read, every replaced item and every deleted message stayed
    alive with it: two thirds of the DynamoDB items of a run. Here an instance goes when nothing else holds
    it; the dashboard and S3's reset still find every instance that is."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._gone = 0

    def append(self, instance: Any) -> None:
        """Track an instance without keeping it alive; the references of instances gone are dropped once
        they are half the list (moto copies an item for each read: most go at once)."""
        with self._lock:
            if self._gone * 2 > super().__len__():
                self[:] = [reference for reference in super().__iter__() if reference() is not None]
                self._gone = 0
            try:
                reference: Any = weakref.ref(instance, self._forget)
            except TypeError:  # a class with slots and no weak reference slot: held as moto holds it
                reference = functools.partial(_itself, instance)
            super().append(reference)

    def _forget(self, _: weakref.ref[Any]) -> None:
        # Called while the collector runs, in whichever thread: no lock (a count a little off only makes a
        # compaction come early or late).
        self._gone += 1

    def __iter__(self) -> Iterator[Any]:
        alive = [reference() for reference in super().__iter__()]
        return iter([instance for instance in alive if instance is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _itself(instance: Any) -> Any:
    return instance


# The classes whose instances moto's reset itself goes through (S3 closes its keys' and uploads' buffers,
# those no bucket holds any more included): tracked as moto tracks them.
_KEPT_UNTIL_RESET = frozenset({("moto.s3.models", "FakeKey"), ("moto.s3.models", "FakeMultipart")})


def _tracked_while_alive(cls: type, *args: Any, **kwargs: Any) -> Any:
    """BaseModel.__new__ as moto has it, tracking the instance weakly (see LiveInstances)."""
    instance = super(BaseModel, cls).__new__(cls)  # type: ignore[misc]
    if (cls.__module__, cls.__name__) in _KEPT_UNTIL_RESET:
        cls.instances_tracked.append(instance)  # type: ignore[attr-defined]
        return instance
    tracked = cls.__dict__.get("instances_tracked")
    if not isinstance(tracked, LiveInstances):
        with _CONVERSION_LOCK:
            tracked = cls.__dict__.get("instances_tracked")
            if not isinstance(tracked, LiveInstances):
                # A class made, or reset by moto, since: its plain list's instances are tracked weakly too.
                held = list(tracked or [])
                tracked = LiveInstances()
                for kept in held:
                    tracked.append(kept)
                cls.instances_tracked = tracked  # type: ignore[attr-defined]
    tracked.append(instance)
    return instance


_CONVERSION_LOCK = threading.Lock()


def without_documentation(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object of a botocore data file with its documentation strings emptied, as a dict: botocore
    reads them as OrderedDicts, a third bigger, for an order a dict keeps too (nothing on the local AWS's
    path asks an OrderedDict's own methods of a model). The keys stay (botocore reads some documentation
    with `[...]`). Only a string is documentation: a member named `documentation` is a shape reference,
    an object, and stays."""
    return {
        key: "" if key in _DOCUMENTATION_KEYS and isinstance(value, str) else value for key, value in pairs
    }


def _load_file_without_documentation(loader: JSONFileLoader, full_path: str, open_method: Any) -> Any:
    """botocore's JSONFileLoader._load_file, reading objects with their documentation emptied."""
    if not os.path.isfile(full_path):
        return None
    with open_method(full_path, "rb") as stream:
        payload = stream.read().decode("utf-8")
    return json.loads(payload, object_pairs_hook=without_documentation)


# moto's EC2 instance-type offerings: for each location type (Region, zone, zone id) and Region, every
# instance type offered there, read from 90 files when moto's EC2 models are imported (45 MB). moto reads
# them only to check a launch's zone or a named instance type, and to answer DescribeInstanceTypeOfferings
# and DescribeSpotPriceHistory.
_CATALOGUE_MODULE = "moto.ec2.models.instance_types"
_OFFERINGS_FOLDER = "resources/instance_type_offerings"


_Value = TypeVar("_Value")


class _ReadWhenAskedFor(dict[str, _Value]):
    """A dict of moto's catalogue whose content is read when first asked for: every whole-dict view reads
    all of it first (`_read_all`); a subclass says how a single key is read (`__getitem__`, `get`)."""

    def _read_all(self) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        self._read_all()
        return super().__iter__()

    def __len__(self) -> int:
        self._read_all()
        return super().__len__()

    def keys(self) -> Any:
        """Every key, all read."""
        self._read_all()
        return super().keys()

    def values(self) -> Any:
        """Every value, all read."""
        self._read_all()
        return super().values()

    def items(self) -> Any:
        """Every key with its value, all read."""
        self._read_all()
        return super().items()

    def __eq__(self, other: object) -> bool:
        self._read_all()
        return super().__eq__(other)

    __hash__ = None

    def __repr__(self) -> str:
        self._read_all()
        return super().__repr__()


class OfferingsByRegion(_ReadWhenAskedFor[list[dict[str, Any]]]):
    """One location type's instance-type offerings by Region, as moto's catalogue holds them, each Region's
    file read when it is first asked for (and then kept, as moto keeps it)."""

    def __init__(self, location_type: str, files: dict[str, str]) -> None:
        super().__init__()
        self._location_type = location_type
        self._files = files
        self._lock = threading.Lock()

    def _read(self, region: object) -> None:
        if not isinstance(region, str) or region not in self._files or dict.__contains__(self, region):
            return
        with self._lock:
            if not dict.__contains__(self, region):
                offerings = moto.utilities.utils.load_resource(self._files[region])
                for offering in offerings:
                    offering["LocationType"] = self._location_type
                dict.__setitem__(self, region, offerings)

    def _read_all(self) -> None:
        for region in self._files:
            self._read(region)

    def __getitem__(self, region: str) -> list[dict[str, Any]]:
        self._read(region)
        return super().__getitem__(region)

    def get(self, region: str, default: Any = None) -> Any:
        """The Region's offerings, read now if they were not yet."""
        self._read(region)
        return super().get(region, default)

    def __contains__(self, region: object) -> bool:
        return region in self._files or super().__contains__(region)


def _offering_files(module: ModuleType) -> dict[str, dict[str, str]]:
    """The offerings' files by location type and Region, found as moto's catalogue finds them."""
    root = Path(str(module.__file__)).parent.parent
    return {
        location_type: {
            data_file.split(".")[0]: os.path.join("ec2", _OFFERINGS_FOLDER, location_type, data_file)
            for data_file in os.listdir(root / _OFFERINGS_FOLDER / location_type)
        }
        for location_type in os.listdir(root / _OFFERINGS_FOLDER)
    }


def _defer_offerings(module: ModuleType) -> None:
    """Put each location type's offerings off until they are asked for (those read are let go)."""
    catalogue: dict[str, Any] = module.INSTANCE_TYPE_OFFERINGS
    for location_type, files in _offering_files(module).items():
        if not isinstance(catalogue.get(location_type), OfferingsByRegion):
            # In place: moto's EC2 modules hold this very dict under their own names.
            catalogue[location_type] = OfferingsByRegion(location_type, files)


# moto's EC2 instance types (9 MB, and a copy of each type's details for DescribeInstanceTypes): read only
# to answer DescribeInstanceTypes and to check a Batch compute environment's instance families.
_INSTANCE_TYPES_FILE = "ec2/resources/instance_types.json"


@functools.cache
def _instance_types() -> dict[str, Any]:
    return dict(moto.utilities.utils.load_resource(_INSTANCE_TYPES_FILE))


class InstanceTypes(_ReadWhenAskedFor[Any]):
    """moto's INSTANCE_TYPES, read when first asked for."""

    def _read_all(self) -> None:
        if not dict.__len__(self):
            dict.update(self, _instance_types())

    def __getitem__(self, name: str) -> Any:
        self._read_all()
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        """The type's details."""
        self._read_all()
        return super().get(name, default)

    def __contains__(self, name: object) -> bool:
        self._read_all()
        return super().__contains__(name)


class InstanceFamilies(list[str]):
    """moto's INSTANCE_FAMILIES (each type's name before its dot, once), made when first asked for."""

    def _whole(self) -> None:
        if not super().__len__():
            self.extend({name.split(".")[0] for name in _instance_types()})

    def __contains__(self, family: object) -> bool:
        self._whole()
        return super().__contains__(family)

    def __iter__(self) -> Iterator[str]:
        self._whole()
        return super().__iter__()

    def __len__(self) -> int:
        self._whole()
        return super().__len__()

    def __getitem__(self, index: Any) -> Any:
        self._whole()
        return super().__getitem__(index)

    def __eq__(self, other: object) -> bool:
        self._whole()
        return super().__eq__(other)

    __hash__ = None


class _InstanceTypeList:
    """InstanceTypeBackend.instance_types, moto's list of every type, made when first asked for."""

    def __init__(self, instance_type: type) -> None:
        self._instance_type = instance_type
        self._made: list[Any] | None = None

    def __get__(self, backend: object, owner: type | None = None) -> list[Any]:
        if self._made is None:
            self._made = list(map(self._instance_type, _instance_types()))
        return self._made


def _defer_instance_types(module: ModuleType) -> None:
    """Put moto's instance types off until they are asked for (the module was run with none read)."""
    module.__dict__["INSTANCE_TYPES"] = InstanceTypes()
    module.__dict__["INSTANCE_FAMILIES"] = InstanceFamilies()
    module.InstanceTypeBackend.instance_types = _InstanceTypeList(module.InstanceType)


class _CatalogueLoader(importlib.abc.Loader):
    """Runs moto's catalogue module without reading its files (instance types, offerings), then defers
    them."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        """The module, as moto's own loader makes it."""
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        """Run the module with each file of the catalogue read as empty, then defer the files."""
        load_resource = moto.utilities.utils.load_resource

        def read_later(resource: str) -> Any:
            if resource == _INSTANCE_TYPES_FILE:
                return {}
            return [] if f"/{_OFFERINGS_FOLDER}/" in resource else load_resource(resource)

        with mock.patch.object(moto.utilities.utils, "load_resource", read_later):
            self._loader.exec_module(module)
        # The module keeps moto's own reader under its name, not the one it was run with.
        module.__dict__["load_resource"] = load_resource
        _defer_offerings(module)
        _defer_instance_types(module)


class _CatalogueFinder(importlib.abc.MetaPathFinder):
    """Finds moto's catalogue module as Python does, to be run by _CatalogueLoader."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """The catalogue module's spec with its loader wrapped; None for any other module."""
        if fullname != _CATALOGUE_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _CatalogueLoader(spec.loader)
        return spec


def defer_instance_type_offerings() -> None:
    """moto's instance-type offerings read when first asked for: put off now when moto's EC2 models are
    loaded already (those read are let go), or else when they are imported."""
    module = sys.modules.get(_CATALOGUE_MODULE)
    if module is not None:
        _defer_offerings(module)
    elif not any(isinstance(finder, _CatalogueFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _CatalogueFinder())


# Before moto's EC2 models are imported (vtriage_local.stack imports this module before moto_speedups,
# whose Step Functions engine imports them): their import would read the offerings.
defer_instance_type_offerings()
