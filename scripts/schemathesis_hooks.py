"""Schemathesis hooks for scripts/schemathesis.sh.

- A tus chunk (`PATCH /v1/uploads/{id}`) is raw bytes sent as
  `application/offset+octet-stream`; schemathesis knows `application/octet-stream`
  only, so the chunk body is serialised the same way.
- An `Idempotency-Key` names one request: the same key on a different request is
  answered `422 idempotency_key_reused`, by design. Generated keys repeat (the coverage
  phase sends "0" everywhere), so every well-formed generated key is replaced by a fresh
  one just before the request is sent (`before_call` runs in every phase, `map_headers`
  only in the generated ones); malformed keys (the negative cases, answered 400) are
  sent as generated.
- A case whose headers schemathesis calls valid must be valid. Its coverage phase makes
  header values of letters and digits only, so for a header whose pattern needs other
  characters (`Upload-Checksum: sha1 <base64>`) it has no valid value, seeds the
  optional header with one breaking the schema anyway (`0`) and still calls the case
  valid. Such an optional header is left out of the request, which is then what its
  label says; cases meant to be invalid are sent as generated.
- A case meant to break its headers must break one the request keeps. Schemathesis
  counts the security scheme's `Authorization` among an operation's required headers, so
  a negative case may "violate `required`" by leaving out only `Authorization` — which
  the `[auth]` login of schemathesis.toml then adds back, and the valid request is
  rightly accepted (seed 20265: `POST /v1/uploads` answered 201 with every header
  present). A negative header case whose headers all satisfy the operation's declared
  header parameters is such a case, and is not sent.
"""

import json
import re
import uuid

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

WELL_FORMED_KEY = re.compile(r"[!-~]{1,255}")


def _header_mode(case):
    """How schemathesis generated the case's headers (valid or not), if it says."""
    meta = case.meta
    component = None if meta is None else meta.components.get(ParameterLocation.HEADER)
    return None if component is None else component.mode


def _headers_called_valid(case):
    return _header_mode(case) == GenerationMode.POSITIVE


def _headers_meant_invalid(case):
    return _header_mode(case) == GenerationMode.NEGATIVE


def _declared_headers_valid(case):
    """Every declared header parameter present when required, and valid when present."""
    sent = {name.lower(): value for name, value in (case.headers or {}).items()}
    for parameter in case.operation.headers:
        value = sent.get(parameter.name.lower())
        if value is None:
            if parameter.is_required:
                return False
            continue
        if not _valid(parameter, value):
            return False
    return True


def _valid(parameter, value):
    """A header is text on the wire: `"5"` is a valid `integer` header."""
    if parameter.is_valid(value):
        return True
    if isinstance(value, str):
        try:
            return parameter.is_valid(json.loads(value))
        except ValueError:
            return False
    return False


@schemathesis.hook
def filter_case(ctx, case):
    return not (_headers_meant_invalid(case) and _declared_headers_valid(case))


def _drop_invalid_optional_text_headers(case):
    headers = case.headers
    for parameter in case.operation.headers:
        name = parameter.name
        if parameter.is_required or name not in headers:
            continue
        schema = parameter.definition.get("schema") or {}
        if schema.get("type") != "string":
            continue
        value = headers[name]
        if not isinstance(value, str) or not parameter.is_valid(value):
            del headers[name]


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and WELL_FORMED_KEY.fullmatch(value):
            headers[name] = f"st-{uuid.uuid4()}"
    if _headers_called_valid(case):
        _drop_invalid_optional_text_headers(case)
