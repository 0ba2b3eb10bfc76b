"""A small JSON Schema (2020-12 subset) checker and generator for the API documents' tests.

No JSON Schema library is in the lock files, and the documents use a small, known subset (what msgspec
generates plus OpenAPI's parameters): ``$ref`` (local), ``type``, ``enum``, ``const``, ``properties``,
``required``, ``additionalProperties``, ``items``, ``anyOf``, ``minimum``/``maximum``,
``minLength``/``maxLength`` and ``pattern``. A keyword outside it is an error, not silently ignored, so
the checks cannot pass by not understanding a schema.

``exact=True`` also refuses an object field that the schema does not name: an answer must be documented
field by field, not merely be compatible.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st

KNOWN = {
    "$ref", "type", "enum", "const", "properties", "required", "additionalProperties", "items", "anyOf",
    "minimum", "maximum", "minLength", "maxLength", "pattern", "title", "description", "default",
    "format", "examples",
}  # fmt: skip


def resolve(root: dict[str, Any], ref: str) -> Any:
    """The value a local ``$ref`` (``#/a/b``) names in ``root``; KeyError if it names nothing."""
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    """Every ``$ref`` anywhere in ``node``."""
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return {
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "null": value is None,
    }[kind]


def errors(root: dict[str, Any], schema: dict[str, Any], value: Any, at: str = "$", exact: bool = False) -> list[str]:
    """What is wrong with ``value`` against ``schema`` (``$ref`` resolved in ``root``); empty when it matches."""
    unknown = set(schema) - KNOWN
    assert not unknown, f"{at}: the checker does not know {unknown}"
    if "$ref" in schema:
        found = errors(root, resolve(root, schema["$ref"]), value, at, exact)
        if found:
            return found
    if "anyOf" in schema:
        branches = [errors(root, s, value, at, exact) for s in schema["anyOf"]]
        if all(branches):
            return [f"{at}: matches none of anyOf: {branches}"]
    out: list[str] = []
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(k, value) for k in kinds):
            return [f"{at}: {value!r} is not {schema['type']}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{at}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        out.append(f"{at}: {value!r} is not {schema['const']!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{at}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{at}: {value} > {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            out.append(f"{at}: length {len(value)} out of bounds")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            out.append(f"{at}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{at}: missing {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                out += errors(root, props[name], item, f"{at}.{name}", exact)
            elif isinstance(extra, dict):
                out += errors(root, extra, item, f"{at}.{name}", exact)
            elif extra is False or (exact and "properties" in schema):
                out.append(f"{at}: undocumented field {name!r}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += errors(root, schema["items"], item, f"{at}[{i}]", exact)
    return out


def values(root: dict[str, Any], schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that match ``schema``: the valid inputs of a property test."""
    if "$ref" in schema:
        return values(root, resolve(root, schema["$ref"]))
    if "anyOf" in schema:
        return st.one_of([values(root, s) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([values(root, {**schema, "type": k}) for k in kind])
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 20))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(values(root, schema.get("items", {"type": "string"})), max_size=3)
    if kind == "object":
        props: dict[str, Any] = schema.get("properties", {})
        if not props:
            extra = schema.get("additionalProperties", {"type": "string"})
            return st.dictionaries(st.text(min_size=1, max_size=8), values(root, extra), max_size=3)
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {name: values(root, s) for name, s in props.items() if name in required},
            optional={name: values(root, s) for name, s in props.items() if name not in required},
        )
    raise AssertionError(f"no generator for {schema}")
