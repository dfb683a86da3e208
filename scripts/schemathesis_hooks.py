"""Schemathesis hooks for scripts/schemathesis.sh.

- A tus chunk (`PATCH /v1/uploads/{id}`) is raw bytes sent as
  `application/offset+octet-stream`; schemathesis knows `application/octet-stream`
  only, so the chunk body is serialised the same way.
- An `Idempotency-Key` names one request: the same key on a different request is
  answered `422 idempotency_key_reused`, by design. Generated keys repeat (the coverage
  phase sends "0" everywhere), so every well-formed generated key is replaced by a fresh
  one; malformed keys (the negative cases, answered 400) are sent as generated.
"""

import re
import uuid

import schemathesis

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

WELL_FORMED_KEY = re.compile(r"[!-~]{1,255}")


@schemathesis.hook("map_headers")
def fresh_idempotency_keys(ctx, headers):
    if headers:
        for name in list(headers):
            value = headers[name]
            if name.lower() == "idempotency-key" and isinstance(value, str) and WELL_FORMED_KEY.fullmatch(value):
                headers[name] = f"st-{uuid.uuid4()}"
    return headers
