#!/usr/bin/env python3
"""A webhook receiver for the integration tests (tests/integration/webhooks.rs).

serve --log FILE [--fail-first N]
    Listens on 127.0.0.1 (a free port, printed as the first line of stdout), answers
    500 to the first N requests and 204 afterwards, and appends every request — headers,
    body, and what it answered — to FILE as one JSON line.

verify --log FILE --secret whsec_...
    Checks every logged request with the `standardwebhooks` package (the reference
    implementation of the Standard Webhooks specification) and prints a JSON summary:
    {"verified": n, "rejected": [...], "delivered": [webhook-id, ...] (2xx answers, in
    order), "positions": [data.position of each delivered request]}.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def serve(log_path: str, fail_first: int) -> None:
    lock = threading.Lock()
    seen = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                seen["n"] += 1
                status = 500 if seen["n"] <= fail_first else 204
                entry = {
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("utf-8"),
                    "status": status,
                }
                with open(log_path, "a", encoding="utf-8") as log:
                    log.write(json.dumps(entry) + "\n")
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def verify(log_path: str, secret: str) -> None:
    wh = Webhook(secret)
    summary = {"verified": 0, "rejected": [], "delivered": [], "positions": []}
    with open(log_path, encoding="utf-8") as log:
        for line in log:
            entry = json.loads(line)
            headers = entry["headers"]
            try:
                payload = wh.verify(entry["body"], headers)
            except WebhookVerificationError as err:
                summary["rejected"].append({"id": headers.get("webhook-id"), "error": str(err)})
                continue
            summary["verified"] += 1
            if 200 <= entry["status"] < 300:
                summary["delivered"].append(headers["webhook-id"])
                summary["positions"].append(payload["data"]["position"])
    json.dump(summary, sys.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "verify"])
    parser.add_argument("--log", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--secret")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.log, args.fail_first)
    else:
        verify(args.log, args.secret)


if __name__ == "__main__":
    main()
