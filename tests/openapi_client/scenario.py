"""A short scenario through a client generated from Chronicle's /openapi.json with
openapi-python-client (PyPI): register, log in, create an API key, upload a file with the
key, list files, revoke the key. Run by scripts/openapi-client.sh against a real
`chronicle serve`; any step that does not answer as documented fails the run.

usage: python3 scenario.py BASE_URL  (the generated package `chronicle_client` on sys.path)
"""

import io
import sys
import time
import uuid

from chronicle_client import AuthenticatedClient, Client
from chronicle_client.api.api_keys import create as create_key, list_ as list_keys, revoke as revoke_key
from chronicle_client.api.auth import login, register
from chronicle_client.api.files import create_file, get as get_file, list_ as list_files
from chronicle_client.models import (
    CreateApiKey,
    CreatedApiKey,
    ErrorBody,
    FilePage,
    LoginRequest,
    NewFileForm,
    RegisterRequest,
    TokenResponse,
    UploadAccepted,
)
from chronicle_client.types import File

passed = 0


def check(name, condition, detail=""):
    global passed
    if not condition:
        print(f"FAIL {name}: {detail}")
        print(f"{passed} passed, 1 failed")
        sys.exit(1)
    passed += 1
    print(f"ok   {name}")


def main(base):
    anonymous = Client(base_url=base, raise_on_unexpected_status=True, timeout=30)
    handle = "gen" + uuid.uuid4().hex[:8]
    email = f"{handle}@example.com"
    password = "correct horse battery staple"
    r = register.sync_detailed(
        client=anonymous,
        body=RegisterRequest(email=email, handle=handle, name="Generated", password=password, tenant_name="Generated Inc"),
    )
    check("register", r.status_code == 201, r.content)
    token = login.sync(client=anonymous, body=LoginRequest(email=email, password=password))
    check("login", isinstance(token, TokenResponse), token)

    admin = AuthenticatedClient(base_url=base, token=token.access_token, raise_on_unexpected_status=True, timeout=30)
    created = create_key.sync(client=admin, body=CreateApiKey(name="generated client"))
    check("create api key", isinstance(created, CreatedApiKey) and created.key.startswith("chk_"), created)

    keyed = AuthenticatedClient(base_url=base, token=created.key, raise_on_unexpected_status=True, timeout=30)
    body = NewFileForm(file=File(payload=io.BytesIO(b"hello from a generated client"), file_name="hello.txt", mime_type="text/plain"))
    accepted = create_file.sync(client=keyed, body=body)
    check("upload with the key", isinstance(accepted, UploadAccepted), accepted)

    # The listing is a read table: the upload appears within a moment.
    for _ in range(100):
        page = list_files.sync(client=keyed)
        if page.items:
            break
        time.sleep(0.1)
    check("list files", isinstance(page, FilePage) and any(str(f.id) == str(accepted.file_id) for f in page.items), page)
    one = get_file.sync_detailed(id=accepted.file_id, client=keyed)
    check("get the file", one.status_code == 200, one.content)

    for _ in range(100):
        keys = list_keys.sync(client=admin)
        if keys:
            break
        time.sleep(0.1)
    check("list api keys", isinstance(keys, list) and len(keys) == 1 and keys[0].prefix == created.key[:12], keys)

    r = revoke_key.sync_detailed(id=created.id, client=admin)
    check("revoke the key", r.status_code == 204, r.content)
    refused = list_files.sync_detailed(client=keyed)
    check(
        "a revoked key is refused",
        refused.status_code == 401 and isinstance(refused.parsed, ErrorBody) and refused.parsed.error.code == "api_key_revoked",
        refused.content,
    )
    print(f"{passed} passed, 0 failed")


if __name__ == "__main__":
    main(sys.argv[1])
