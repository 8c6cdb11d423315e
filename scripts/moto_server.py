"""moto_server with DynamoDB requests serialised.

Real DynamoDB applies each write atomically (an `ADD` counter never loses an increment,
a condition is checked and the write applied as one step). moto's server handles requests
on threads and its DynamoDB backend takes no lock, so two concurrent updates of one item
can interleave. The storage contract tests check exactly that atomicity, so this launcher
runs the unmodified moto server with one lock around DynamoDB requests (they are short);
S3 and SQS (including long polls) stay concurrent.

Usage: .venv/bin/python scripts/moto_server.py -H 127.0.0.1 -p PORT
"""
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import main

_lock = threading.Lock()
_call = DomainDispatcherApplication.__call__


def _serialised(self, environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
        with _lock:
            # Materialise the body inside the lock, so the backend work is done under it.
            return list(_call(self, environ, start_response))
    return _call(self, environ, start_response)


DomainDispatcherApplication.__call__ = _serialised

if __name__ == "__main__":
    sys.exit(main())
