"""Schemathesis hooks for scripts/schemathesis.sh.

A tus chunk (`PATCH /v1/uploads/{id}`) is raw bytes sent as
`application/offset+octet-stream`; schemathesis knows `application/octet-stream` only,
so the chunk body is serialised the same way.
"""

import schemathesis

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
