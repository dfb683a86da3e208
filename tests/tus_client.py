"""Uploads one file with tuspy (a real tus 1.0 client), resuming after failures.

usage: tus_client.py <endpoint> <access token> <file> <chunk size> [checksum]
Prints one JSON line: the upload URL, the final offset and the ids the server
returned on the final PATCH (Chronicle-File-Id / Chronicle-Version-Id).
"""

import json
import sys

from tusclient import client

endpoint, token, path, chunk_size = sys.argv[1:5]
checksum = len(sys.argv) > 5 and sys.argv[5] == "checksum"

tus = client.TusClient(endpoint, headers={"Authorization": "Bearer " + token})
uploader = tus.uploader(
    file_path=path,
    chunk_size=int(chunk_size),
    metadata={"filename": "big.bin", "filetype": "application/octet-stream"},
    # Each cut connection costs a retry or a few (HEAD may still see the old offset
    # while the server records the cut chunk: then 423/409, and another retry).
    retries=30,
    retry_delay=1,
    upload_checksum=checksum,
)
uploader.upload()
headers = uploader.request.response_headers
print(
    json.dumps(
        {
            "url": uploader.url,
            "offset": uploader.offset,
            "file_id": headers.get("chronicle-file-id"),
            "version_id": headers.get("chronicle-version-id"),
        }
    )
)
