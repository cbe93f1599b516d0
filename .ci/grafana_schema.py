#!/usr/bin/env python3
"""Checks the Grafana dashboards clusterkit provisions against Grafana's own
schema, as grafana-foundation-sdk (Grafana's package, generated from the
schema of the Grafana version it is pinned to) models it.

For every dashboard-*.json in the directory given (`clusterkit monitor render
--out DIR`):
- every key survives a decode and encode through the SDK's models (a key the
  schema does not know is dropped, and named here);
- every value has the type the model's field declares (enums and literals by
  their allowed values), panel options and field configs included;
- every panel type and every query's data source type is one the SDK knows.
Exits 1 naming each problem with its JSON path.
"""

import enum
import json
import pathlib
import sys
import types
import typing

from grafana_foundation_sdk.cog import plugins, runtime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard

plugins.register_default_plugins()
RUNTIME = runtime.Runtime()


def matches(value, hint):
    """Whether `value` is of the type `hint` declares."""
    if hint is typing.Any or isinstance(hint, (str, typing.ForwardRef)):
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if origin is list:
        return isinstance(value, list) and all(matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(matches(v, args[1]) for v in value.values())
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, hint) or value in [e.value for e in hint]
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        # A model class: the value decoded into it (or a variant of it).
        return isinstance(value, hint) or (
            hint.__module__.endswith("variants") and hasattr(value, "to_json")
        )
    return True


def walk(obj, path, problems):
    """Checks the fields of a decoded model object, then its children."""
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            walk(v, f"{path}[{i}]", problems)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            walk(v, f"{path}.{k}", problems)
        return
    if not hasattr(obj, "to_json") or isinstance(obj, runtime.UnknownDataquery):
        return
    try:
        hints = typing.get_type_hints(type(obj))
    except Exception:  # a hint the SDK cannot resolve: its fields unchecked
        hints = {}
    for name, hint in hints.items():
        if name.startswith("_") or not hasattr(obj, name):
            continue
        value = getattr(obj, name)
        if value is not None and not matches(value, hint):
            problems.append(f"{path}.{name}: {value!r} is not {hint}")
        walk(value, f"{path}.{name}", problems)


def survives(original, encoded, path, problems):
    """Every key of `original` is still in `encoded`, recursively."""
    if isinstance(original, dict):
        if not isinstance(encoded, dict):
            problems.append(f"{path}: became {type(encoded).__name__}")
            return
        for k, v in original.items():
            if k not in encoded:
                problems.append(f"{path}.{k}: not in Grafana's schema (dropped by the SDK)")
            else:
                survives(v, encoded[k], f"{path}.{k}", problems)
    elif isinstance(original, list) and isinstance(encoded, list):
        for i, (a, b) in enumerate(zip(original, encoded)):
            survives(a, b, f"{path}[{i}]", problems)


def check(path):
    data = json.loads(path.read_text())
    problems = []
    model = dashboard.Dashboard.from_json(data)
    encoded = json.loads(json.dumps(model, cls=JSONEncoder))
    survives(data, encoded, "$", problems)
    walk(model, "$", problems)
    panels = data.get("panels", [])
    for i, p in enumerate(panels):
        kind = p.get("type", "")
        if kind != "row" and RUNTIME.panelcfg_config(kind) is None:
            problems.append(f"$.panels[{i}].type: {kind!r} is not a panel type Grafana ships")
        for j, t in enumerate(p.get("targets", [])):
            ds = (t.get("datasource") or p.get("datasource") or {}).get("type", "")
            if ds and ds not in RUNTIME.dataquery_variants:
                problems.append(f"$.panels[{i}].targets[{j}].datasource.type: {ds!r} unknown")
    return len(panels), problems


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: grafana_schema.py DIR (from `clusterkit monitor render --out DIR`)")
    files = sorted(pathlib.Path(sys.argv[1]).glob("dashboard-*.json"))
    if not files:
        sys.exit(f"{sys.argv[1]}: no dashboard-*.json: nothing was checked")
    failed = False
    for f in files:
        count, problems = check(f)
        if problems:
            failed = True
            for p in problems:
                print(f"{f.name}: {p}")
        else:
            print(f"{f.name}: {count} panels, every key and value as Grafana's schema says")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
