#!/usr/bin/env python3
"""Serves the reports dashboard and a canned report for the browser check.

    python3 serve_sample.py [--port N] [--fail] [--summary FILE]

GET /dashboard        -> functions/mailroom/src/dashboard.html
GET /reports/summary  -> sample-summary.json (the query string is ignored),
                         or HTTP 500 with a JSON error when --fail is given

Binds 127.0.0.1 (port 0 = any free port) and prints the dashboard URL as its
first line on stdout, so a caller can read where it listens.
"""

import argparse
import http.server
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DASHBOARD = ROOT / "functions" / "mailroom" / "src" / "dashboard.html"


def make_handler(summary: Path, fail: bool):
    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, status, ctype, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            path = urlsplit(self.path).path
            if path in ("/dashboard", "/dashboard/"):
                self._send(200, "text/html; charset=utf-8", DASHBOARD.read_bytes())
            elif path == "/reports/summary":
                if fail:
                    body = json.dumps({"error": "sample server started with --fail"}).encode()
                    self._send(500, "application/json", body)
                else:
                    self._send(200, "application/json", summary.read_bytes())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        do_HEAD = do_GET

        def log_message(self, fmt, *args):
            sys.stderr.write("serve_sample: " + (fmt % args) + "\n")

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fail", action="store_true", help="answer /reports/summary with HTTP 500")
    ap.add_argument("--summary", type=Path, default=HERE / "sample-summary.json")
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.summary, args.fail))
    print(f"http://127.0.0.1:{server.server_address[1]}/dashboard", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
