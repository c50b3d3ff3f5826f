#!/usr/bin/env python3
"""A webhook receiver for guideline-ingest: verifies each delivery's Standard Webhooks
signature with the `standardwebhooks` package (`pip install standardwebhooks`), prints the
job's outcome once per webhook-id (retries repeat the id), and answers 204.

    WEBHOOK_SECRET="$(cat .local/webhook-secret)" python examples/webhook-receiver.py 9000
    # then submit with "callback_url": "http://127.0.0.1:9000/hook"
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

verifier = Webhook(os.environ["WEBHOOK_SECRET"])  # whsec_...
seen: set[str] = set()


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            # Checks the signature (any of the space-separated ones) and that
            # webhook-timestamp is within 5 minutes of now.
            job = verifier.verify(body, dict(self.headers))
        except WebhookVerificationError as exc:
            self.send_response(400)
            self.end_headers()
            print(f"rejected: {exc}", file=sys.stderr)
            return
        webhook_id = self.headers["webhook-id"]
        if webhook_id not in seen:  # a retry of a delivery we already took
            seen.add(webhook_id)
            outcome = job.get("error") or {
                "items": len((job.get("result") or {}).get("checklist", []))
            }
            print(json.dumps({"event_id": job["event_id"], "status": job["status"], **outcome}))
            sys.stdout.flush()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    ThreadingHTTPServer(("127.0.0.1", port), Hook).serve_forever()
