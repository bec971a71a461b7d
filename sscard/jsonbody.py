"""JSON request bodies from untrusted callers: parsed with a depth limit and checked against
the JSON Schema that the service's OpenAPI document publishes for the endpoint, so that what
is documented is what is enforced.

Every failure is a :class:`JsonBodyError` naming the problem and where (a JSON pointer), for
a 400 answer: never a 500 (a 5,000-deep array exhausted the parser's recursion), never a wrong
type taken for another (``"detached": "no"`` read as true).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

#: deeper bodies are refused; no endpoint needs more than a few levels
MAX_DEPTH = 32


class JsonBodyError(ValueError):
    """The body is not acceptable JSON for the endpoint; the message says why and where;
    ``keyword`` and ``pointer``: the schema keyword that failed and the place (if any)."""

    def __init__(self, message: str, keyword: str = "", pointer: str = "") -> None:
        super().__init__(message)
        self.keyword = keyword
        self.pointer = pointer


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, stopping once it passes ``limit`` (iterative: a
    deep value must not exhaust the stack here either)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return deepest


def parse(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in ``data`` (UTF-8), nested at most ``max_depth`` levels."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonBodyError(f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonBodyError(f"the body is nested more than {max_depth} levels deep") from None
    except json.JSONDecodeError as exc:
        raise JsonBodyError(f"the body is not JSON: {exc.msg} at line {exc.lineno} column "
                            f"{exc.colno}") from None
    if _depth(value, max_depth) > max_depth:
        raise JsonBodyError(f"the body is nested more than {max_depth} levels deep")
    # UTF-8 cannot carry a surrogate, but a \\udXXX escape can: a lone one is not Unicode, and
    # databases, logs and encoders downstream fail on it
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise JsonBodyError("the body holds a lone surrogate escape (\\udXXX): not Unicode text")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "integer", float: "number", list: "array", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)


def _pointer(error: ValidationError) -> str:
    return "/" + "/".join(str(p) for p in error.absolute_path)


def _message(error: ValidationError) -> str:
    where = _pointer(error)
    field = "the body" if where == "/" else f"'{where[1:]}'"
    kind = error.validator
    if kind == "type":
        return f"{field} must be of type {error.validator_value}, not {_json_type(error.instance)}"
    if kind == "required":
        return f"{field}: {error.message}"
    if kind == "additionalProperties":
        return f"{field}: {error.message}"
    # the schema's own message would quote the (possibly huge or secret) value
    limit = error.validator_value
    if kind in ("maxLength", "minLength"):
        return f"{field} is {'longer' if kind == 'maxLength' else 'shorter'} than {limit} " \
               "characters"
    if kind in ("maxItems", "minItems"):
        return f"{field} has {'more' if kind == 'maxItems' else 'fewer'} than {limit} items"
    if kind == "enum":
        return f"{field} must be one of {', '.join(map(str, limit))}"
    if kind == "const":
        return f"{field} must be {json.dumps(limit)}"
    if kind == "pattern":
        return f"{field} is not valid base64" if "A-Za-z0-9+/" in str(limit) else (
            f"{field} has the wrong form")
    return f"{field}: {error.message[:200]}"


class BodySchema:
    """One endpoint's request schema (JSON Schema 2020-12, as OpenAPI 3.1 writes it)."""

    def __init__(self, schema: Mapping[str, Any], max_depth: int = MAX_DEPTH) -> None:
        Draft202012Validator.check_schema(schema)
        self.validator = Draft202012Validator(schema)
        self.max_depth = max_depth

    def load(self, data: bytes) -> Any:
        """Parse and validate; JsonBodyError naming the first problem found."""
        value = parse(data, self.max_depth)
        error = best_match(self.validator.iter_errors(value))
        if error is not None:
            raise JsonBodyError(_message(error), str(error.validator), _pointer(error))
        return value


class LimitedJSONProvider(DefaultJSONProvider):
    """Flask's JSON with :func:`parse` for reading: ``request.get_json()`` then refuses a
    body nested too deeply as malformed JSON (400) instead of failing with a RecursionError
    (500). Writing is unchanged."""

    max_depth = MAX_DEPTH

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return parse(s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s,
                     self.max_depth)


def limit_json(app: Flask) -> None:
    """Make ``app`` read request JSON with the depth limit (one line per web layer)."""
    provider = LimitedJSONProvider(app)
    provider.ensure_ascii = app.json.ensure_ascii  # type: ignore[attr-defined]
    provider.sort_keys = app.json.sort_keys  # type: ignore[attr-defined]
    app.json = provider
