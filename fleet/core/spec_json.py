"""A ``TenantSpec`` as JSON and back, field by field, so that a parked tenant's manifest
carries whatever the spec holds, including fields added after this module was written.

Generic rules, no field named here:
- a field declared with ``repr=False`` is a secret (the token, a database password): it goes
  to the ``secrets`` half, everything else to ``settings``;
- mappings become objects, tuples lists, nested dataclasses objects (rebuilt from the
  field's type on the way back);
- an ``S3Settings`` (where Litestream replicates, and with which key) goes to ``secrets``
  whole: its secret key is one.
A field the JSON lacks takes the spec's default; a key the spec no longer has is dropped.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from fleet.supervisor.s3 import S3Settings

from .hosting import TenantSpec

_S3_ATTRS = ("endpoint", "bucket", "region", "access_key_id", "secret_access_key")


def spec_to_json(spec: TenantSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, secrets) of ``spec``, both plain JSON."""
    settings: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if isinstance(value, S3Settings):
            secrets[f.name] = {a: getattr(value, a) for a in _S3_ATTRS}
        elif not f.repr:
            secrets[f.name] = _plain(value)
        else:
            settings[f.name] = _plain(value)
    return settings, secrets


def spec_from_json(settings: Mapping[str, Any], secrets: Mapping[str, Any]) -> TenantSpec:
    hints = typing.get_type_hints(TenantSpec)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(TenantSpec):
        source = secrets if (f.name in secrets) else settings
        if f.name in source:
            values[f.name] = _typed(hints[f.name], source[f.name])
    return TenantSpec(**values)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [_plain(v) for v in value]
    return value


def _typed(hint: Any, value: Any) -> Any:
    """``value`` (JSON) as ``hint`` asks: dataclasses and S3Settings rebuilt, tuples too."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(hint):
            if member is not type(None):
                return _typed(member, value)
    if hint is S3Settings:
        return S3Settings(**{a: value[a] for a in _S3_ATTRS})
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        inner = typing.get_type_hints(hint)
        known = {f.name for f in dataclasses.fields(hint)}
        make: Any = hint
        return make(**{k: _typed(inner[k], v) for k, v in value.items() if k in known})
    if origin in (tuple, frozenset) and isinstance(value, list):
        return origin(value)
    return value
