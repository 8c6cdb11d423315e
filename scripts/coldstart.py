"""Cold start of the Lambda functions, measured against a local Lambda Runtime API and moto.

Usage (from the repository root, after scripts/lambda-package.sh):

    .venv/bin/python scripts/coldstart.py [--runs 5] [--json] [--moto URL]
                                          [--lambda-dir DIR] [--workspace FILE | --no-workspace]
                                          [--env KEY=VALUE]... [--keep-logs] [--raw FILE]

For every run, each function's bootstrap (target/lambda/<bin>/bootstrap, or under
$CARGO_TARGET_DIR) is started fresh with the environment the SAM template gives it and
AWS_LAMBDA_RUNTIME_API pointing at a minimal Runtime API served here. It gets two real
events that do the full work against moto (S3, SQS, DynamoDB), chained the way the
deployed stack chains them:

    ingest  <- {"raw_base64", "inbox", "folder"}: a new support request (fresh Message-ID)
               --raw FILE: that message instead (its Message-ID replaced by a fresh one)
    match   <- SQS event whose body is the pointer ingest put on the ingest queue
    route   <- SQS event with the body match put on the route queue
    ticket  <- SQS event with the body route put on the ticket queue

Recorded per function and run:
    init        spawn -> its first GET /runtime/invocation/next (everything main() does
                before the handler loop: logging, config, AWS SDK clients)
    init cpu    CPU time its threads used by then (/proc/PID/task/*/schedstat); Lambda at
                128 MB gets a fraction of a vCPU, so this is the part that scales up there
    first       first event handed over -> its POST .../response (first AWS calls: new
                connections, workspace load), and the CPU time the process used meanwhile
    warm        the same for a second, equally fresh event in the same process
    rss         peak resident memory (VmHWM) after both events

The event times include moto's own time for every AWS call (a Python server on this
machine); the cpu figures are the function's share alone.

Prints median and max per function and OK/OVER for the median init against the 50 ms
target; --json prints the same figures (and every sample) as JSON. Exits 3 when a function
misses the target, 1 on any failure (its logs are kept then; --keep-logs keeps them always).

moto: --moto URL, else $MAILROOM_TEST_MOTO, else one started here
(.venv/bin/python scripts/moto_server.py, as scripts/test.sh does). The workspace: route and
ticket read only the workspace model item (`workspace`/`current`, attribute `config`), so the
file (default examples/acme-corp.toml) is written as that item directly with boto3; the
per-item rows `mailroom apply` also writes (deal links, configured contacts) are not, so
route finds no deals. --no-workspace leaves it out: route then still creates contacts and
companies but routes nothing, and ticket creates no ticket.
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import http.server
import json
import os
import queue
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ["mailroom-ingest", "mailroom-match", "mailroom-route", "mailroom-ticket"]
INIT_TARGET_MS = 50.0
REGION = "us-east-1"
ACCOUNT = "123456789012"
INBOX = "support@acme-corp.example"
THREAD_KEY = "coldstart-thread-key-0123456789abcdef"
EVENT_TIMEOUT_S = 30  # the template's function Timeout


class Failed(Exception):
    """A function or the setup did not do what it should; the message says what."""


# ------------------------------------------------------------------ the Runtime API


class RuntimeApi:
    """The Lambda Runtime API for one function process: hands out the events queued with
    `invoke`, one per GET /next, and records when things happened (time.perf_counter)."""

    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()  # (request_id, body bytes), None = stop
        self.done: queue.Queue = queue.Queue()  # (request_id, kind, body, time, cpu ms)
        self.handed: dict[str, tuple[float, float | None]] = {}  # request_id -> (time, cpu ms)
        self.first_next: float | None = None
        self.init_cpu_ms: float | None = None
        self.pid: int | None = None
        self.pid_known = threading.Event()
        self.ready = threading.Event()  # set at the first GET /next
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.api = self  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.events.put(None)  # releases a GET /next still waiting
        self.server.shutdown()
        self.server.server_close()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A stopped function drops its waiting GET /next: not worth a traceback.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API
    PREFIX = "/2018-06-01/runtime/"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, body: bytes = b"{}") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        api: RuntimeApi = self.server.api  # type: ignore[attr-defined]
        if self.path != self.PREFIX + "invocation/next":
            self._reply(404, b'{"errorMessage":"not found"}')
            return
        now = time.perf_counter()
        with api.lock:
            if api.first_next is None:
                api.first_next = now
                api.pid_known.wait(5)
                api.init_cpu_ms = cpu_ms(api.pid)
                api.ready.set()
        item = api.events.get()
        if item is None:  # shutting down: leave the function waiting on a closed socket
            self.close_connection = True
            return
        request_id, body = item
        deadline_ms = int(time.time() * 1000) + EVENT_TIMEOUT_S * 1000
        trace = f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=1"
        api.handed[request_id] = (time.perf_counter(), cpu_ms(api.pid))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline_ms))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", api.server.function_arn)  # type: ignore[attr-defined]
        self.send_header("Lambda-Runtime-Trace-Id", trace)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        api: RuntimeApi = self.server.api  # type: ignore[attr-defined]
        now = time.perf_counter()
        cpu = cpu_ms(api.pid)
        body = self._body()
        parts = self.path[len(self.PREFIX) :].split("/") if self.path.startswith(self.PREFIX) else []
        if parts == ["init", "error"]:
            api.done.put((None, "init-error", body, now, cpu))
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            api.done.put((parts[1], parts[2], body, now, cpu))
        else:
            self._reply(404, b'{"errorMessage":"not found"}')
            return
        self._reply(202, b'{"status":"OK"}')


def cpu_ms(pid: int | None) -> float | None:
    """CPU time (on-CPU ns from schedstat) of all threads of a process, in ms."""
    if pid is None:
        return None
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e6


def peak_rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ------------------------------------------------------------------ one function process


class Function:
    """A bootstrap started against its own RuntimeApi, as Lambda starts one."""

    def __init__(self, name: str, bootstrap: Path, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.api = RuntimeApi()
        self.api.server.function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"  # type: ignore[attr-defined]
        self.log = log
        env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{self.api.port}")
        self.log_file = open(log, "ab")
        self.spawned = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(bootstrap)], env=env, cwd=bootstrap.parent,
            stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=self.log_file,
        )
        self.api.pid = self.proc.pid
        self.api.pid_known.set()

    def _fail(self, what: str) -> Failed:
        self.log_file.flush()
        tail = self.log.read_text(errors="replace").splitlines()[-15:]
        return Failed(f"{self.name}: {what}\n  log ({self.log}):\n    " + "\n    ".join(tail))

    def wait_init(self) -> tuple[float, float | None]:
        """Waits for the first GET /next; returns (init ms, init cpu ms)."""
        end = time.monotonic() + EVENT_TIMEOUT_S
        while not self.api.ready.wait(0.05):
            self._check_alive()
            if time.monotonic() > end:
                raise self._fail(f"no GET /next within {EVENT_TIMEOUT_S}s of the start")
        return (self.api.first_next - self.spawned) * 1000, self.api.init_cpu_ms

    def _check_alive(self) -> None:
        try:
            _, kind, body, _, _ = self.api.done.get_nowait()
            if kind == "init-error":
                raise self._fail(f"reported an init error: {body.decode(errors='replace')}")
            raise self._fail(f"posted {kind} before any event")
        except queue.Empty:
            pass
        if self.proc.poll() is not None:
            raise self._fail(f"exited with status {self.proc.returncode}")

    def invoke(self, payload: dict) -> tuple[dict, float, float | None]:
        """Hands one event over; returns (response, ms from handing it over to the response,
        CPU ms the process used meanwhile)."""
        request_id = str(uuid.uuid4())
        self.api.events.put((request_id, json.dumps(payload).encode()))
        end = time.monotonic() + EVENT_TIMEOUT_S
        while True:
            try:
                rid, kind, body, at, cpu_at = self.api.done.get(timeout=0.05)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise self._fail(f"exited with status {self.proc.returncode} during an invocation")
                if time.monotonic() > end:
                    raise self._fail(f"no response within {EVENT_TIMEOUT_S}s")
                continue
            if kind == "init-error":
                raise self._fail(f"reported an init error: {body.decode(errors='replace')}")
            if rid == request_id:
                break
        if kind == "error":
            raise self._fail(f"invocation error: {body.decode(errors='replace')}")
        response = json.loads(body) if body else {}
        if response.get("batchItemFailures"):
            raise self._fail(f"batch item failures: {response['batchItemFailures']}")
        handed_at, handed_cpu = self.api.handed[request_id]
        cpu = None if cpu_at is None or handed_cpu is None else cpu_at - handed_cpu
        return response, (at - handed_at) * 1000, cpu

    def stop(self) -> float | None:
        """Ends the process; returns its peak RSS in MiB."""
        rss = peak_rss_mib(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.api.close()
        self.log_file.close()
        return rss


# ------------------------------------------------------------------ moto


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(logdir: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    log = open(logdir / "moto.log", "wb")
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/python"), str(ROOT / "scripts/moto_server.py"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    end = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return f"http://127.0.0.1:{port}", proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                proc.kill()
                raise Failed(f"moto did not start (log: {logdir / 'moto.log'})")
            time.sleep(0.2)


def to_av(v):
    """JSON value -> DynamoDB attribute value, as the store's DynamoDB adapter maps them."""
    if v is None:
        return {"NULL": True}
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, (int, float)):
        return {"N": str(v)}
    if isinstance(v, str):
        return {"S": v}
    if isinstance(v, list):
        return {"L": [to_av(x) for x in v]}
    if isinstance(v, dict):
        return {"M": {k: to_av(x) for k, x in v.items()}}
    raise TypeError(f"no DynamoDB form for {type(v).__name__}")


class Stack:
    """A fresh bucket, table (tests/src/lib.rs's definition, with gsi1) and the three
    stage queues with their dead-letter queues, on moto."""

    def __init__(self, moto: str) -> None:
        import boto3  # in .venv (moto[server] depends on it)

        session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION)
        self.s3 = session.client("s3", endpoint_url=moto)
        self.sqs = session.client("sqs", endpoint_url=moto)
        self.ddb = session.client("dynamodb", endpoint_url=moto)
        token = secrets.token_hex(4)
        self.bucket = f"mailroom-coldstart-{token}"
        self.table = f"mailroom-coldstart-{token}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.ddb.create_table(
            TableName=self.table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi1sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[{
                "IndexName": "gsi1",
                "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }],
        )
        self.queues = {stage: self._queue_pair(f"coldstart-{stage}-{token}") for stage in ("ingest", "route", "ticket")}

    def _queue_pair(self, name: str) -> dict[str, str]:
        dlq = self.sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = self.sqs.create_queue(
            QueueName=name,
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})},
        )["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"url": url, "arn": arn}

    def put_workspace(self, path: Path) -> None:
        """The workspace model item that route and ticket load (what `mailroom apply` puts in
        `workspace`/`current`.config); the file is taken as valid and already normalised."""
        with open(path, "rb") as f:
            config = tomllib.load(f)
        item = {"pk": "workspace", "sk": "current", "config": config, "version": 1,
                "applied_at": email.utils.format_datetime(email.utils.localtime()), "items": []}
        self.ddb.put_item(TableName=self.table, Item={k: to_av(v) for k, v in item.items()})

    def take_sqs_event(self, stage: str) -> dict:
        """Receives the one message the previous function put on `stage`'s queue and wraps it
        as the SQS event Lambda's event source mapping would deliver (then deletes it, as the
        mapping does after a successful batch)."""
        q = self.queues[stage]
        got = self.sqs.receive_message(
            QueueUrl=q["url"], MaxNumberOfMessages=10, WaitTimeSeconds=5,
            AttributeNames=["All"], MessageAttributeNames=["All"],
        ).get("Messages", [])
        if len(got) != 1:
            raise Failed(f"expected one message on the {stage} queue, found {len(got)}")
        m = got[0]
        self.sqs.delete_message(QueueUrl=q["url"], ReceiptHandle=m["ReceiptHandle"])
        attrs = {
            k: {"stringValue": v.get("StringValue"), "binaryValue": v.get("BinaryValue"),
                "stringListValues": [], "binaryListValues": [], "dataType": v["DataType"]}
            for k, v in m.get("MessageAttributes", {}).items()
        }
        record = {
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": attrs,
            "md5OfBody": m.get("MD5OfBody"), "eventSource": "aws:sqs",
            "eventSourceARN": q["arn"], "awsRegion": REGION,
        }
        if "MD5OfMessageAttributes" in m:
            record["md5OfMessageAttributes"] = m["MD5OfMessageAttributes"]
        return {"Records": [record]}

    def census(self) -> dict[str, int]:
        """Items in the table by kind (the part of pk before '#'), to show the work done."""
        counts: dict[str, int] = {}
        for page in self.ddb.get_paginator("scan").paginate(TableName=self.table, ProjectionExpression="pk"):
            for it in page["Items"]:
                kind = it["pk"]["S"].split("#", 1)[0]
                counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items()))

    def function_env(self, name: str, moto: str) -> dict[str, str]:
        """The template's environment for `name` (Globals + the function's Variables), what
        Lambda itself sets for a provided.al2023 function, and moto's endpoint."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC",
            "RUST_LOG": "info", "MAILROOM_THREAD_KEY": THREAD_KEY,
            "MAILROOM_BUCKET": self.bucket, "MAILROOM_TABLE": self.table,
            "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex,
            "AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO",
            "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023", "_HANDLER": "bootstrap",
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_ENDPOINT_URL": moto,
        }
        # Each function gets only the queue it sends to (infra/template.yaml).
        sends_to = {"mailroom-ingest": "ingest", "mailroom-match": "route", "mailroom-route": "ticket"}.get(name)
        if sends_to:
            env[f"MAILROOM_{sends_to.upper()}_QUEUE_URL"] = self.queues[sends_to]["url"]
        return env


# ------------------------------------------------------------------ the mail

# A 1x1 PNG: the "screenshot" a customer attaches.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

REQUESTS = [
    ("Invoice INV-2024-{n} was charged twice",
     "Hi Acme team,\n\nour card was charged twice for invoice INV-2024-{n} this month (see the\n"
     "screenshot of the statement). Could you refund the duplicate payment?\n\nThanks,\n{name}\n{company}"),
    ("Help with SSO setup for our workspace",
     "Hello,\n\nwe are trying to finish the setup of single sign-on and the callback fails\n"
     "with 'invalid audience'. Screenshot attached. Is there a guide for Okta?\n\nBest regards,\n{name}\n{company}"),
]


def support_mail(which: int) -> bytes:
    """A new support request from a new customer at a new company, with a unique Message-ID,
    so every run does the full work (new message, conversation, contact, company, ticket)."""
    token = secrets.token_hex(4)
    first, last = [("Jane", "Doe"), ("Ravi", "Menon")][which % 2]
    company = f"Northwind {token.upper()}"
    domain = f"northwind-{token}.example"
    sender = f"{first.lower()}.{last.lower()}@{domain}"
    subject, body = REQUESTS[which % 2]
    n = int(token[:4], 16)
    fields = {"n": n, "name": f"{first} {last}", "company": company}
    msg = EmailMessage(policy=SMTP)
    msg["Return-Path"] = f"<{sender}>"
    msg["Delivered-To"] = INBOX
    msg["Received"] = (f"from mail.{domain} (mail.{domain} [203.0.113.7]) by mx.acme-corp.example "
                       f"with ESMTPS id {token}; {email.utils.formatdate()}")
    msg["From"] = email.utils.formataddr((f"{first} {last}", sender))
    msg["To"] = f"Acme Support <{INBOX}>"
    msg["Subject"] = subject.format(**fields)
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@mail.{domain}>"
    msg["MIME-Version"] = "1.0"
    text = body.format(**fields)
    msg.set_content(text)
    html = "".join(f"<p>{p.replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
    msg.add_alternative(f"<html><body>{html}</body></html>", subtype="html")
    msg.add_attachment(PNG, maintype="image", subtype="png", filename="screenshot.png")
    return msg.as_bytes()


def with_fresh_message_id(raw: bytes) -> bytes:
    """`raw` (--raw FILE) with its Message-ID header replaced by a fresh one, or one added
    at the end of the header when it has none, so every event is a new message; the other
    bytes are left as they are. Its inbox is the event's "inbox", whatever its headers say."""
    end = re.search(rb"\r?\n(?=\r?\n)", raw)  # the end of the last header line
    cut = end.end() if end else len(raw)
    head, body = raw[:cut], raw[cut:]
    nl = b"\r\n" if b"\r\n" in head else b"\n"
    if head and not head.endswith(b"\n"):
        head += nl
    new = f"Message-ID: <{uuid.uuid4().hex}@coldstart.mailroom.example>".encode() + nl
    out, dropping = [], False
    for line in head.splitlines(keepends=True):
        if dropping and line[:1] in (b" ", b"\t"):
            continue  # a folded continuation of the old Message-ID
        dropping = line.lower().startswith(b"message-id:")
        out.append(new if dropping else line)
    if new not in out:
        out.append(new)
    return b"".join(out) + body


# ------------------------------------------------------------------ the runs


def run_once(stack: Stack, moto: str, bootstraps: dict[str, Path], logdir: Path, run: int,
             extra_env: dict[str, str], raw: bytes | None = None) -> dict[str, dict]:
    """One run: each function started fresh, given a cold and a warm event, stopped."""
    results: dict[str, dict] = {}
    # The two events each function gets: ingest's are requests; the others' come from the queues.
    pending = [
        {"raw_base64": base64.b64encode(support_mail(i) if raw is None else with_fresh_message_id(raw)).decode(),
         "inbox": INBOX, "folder": "inbox"}
        for i in range(2)
    ]
    downstream = {"mailroom-ingest": "ingest", "mailroom-match": "route", "mailroom-route": "ticket"}
    for name in FUNCTIONS:
        env = stack.function_env(name, moto) | extra_env
        fn = Function(name, bootstraps[name], env, logdir / f"{name}.run{run}.log")
        try:
            init_ms, init_cpu = fn.wait_init()
            latencies, cpus, responses, next_events = [], [], [], []
            for event in pending:
                response, ms, cpu = fn.invoke(event)
                latencies.append(ms)
                cpus.append(cpu)
                responses.append(response)
                if name in downstream:
                    next_events.append(stack.take_sqs_event(downstream[name]))
            if name == "mailroom-ingest" and any(r.get("outcome") != "stored" for r in responses):
                raise Failed(f"ingest did not store a new message: {responses}")
        finally:
            rss = fn.stop()
        results[name] = {"init_ms": init_ms, "init_cpu_ms": init_cpu, "first_ms": latencies[0],
                         "first_cpu_ms": cpus[0], "warm_ms": latencies[1], "warm_cpu_ms": cpus[1],
                         "rss_mib": rss}
        pending = next_events
    return results


def summary(samples: list[float | None]) -> dict:
    xs = [x for x in samples if x is not None]
    if not xs:
        return {"median": None, "max": None, "samples": []}
    return {"median": round(statistics.median(xs), 2), "max": round(max(xs), 2), "samples": [round(x, 2) for x in xs]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="cold starts per function (default 5)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--moto", default=os.environ.get("MAILROOM_TEST_MOTO"),
                    help="moto endpoint to use (default $MAILROOM_TEST_MOTO, else start one)")
    default_target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    ap.add_argument("--lambda-dir", type=Path, default=default_target / "lambda",
                    help="where lambda-package.sh put <bin>/bootstrap (default $CARGO_TARGET_DIR/lambda)")
    ap.add_argument("--workspace", type=Path, default=ROOT / "examples/acme-corp.toml",
                    help="workspace file whose model route and ticket get (default examples/acme-corp.toml)")
    ap.add_argument("--no-workspace", action="store_true", help="run without a workspace")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for every function (repeatable), e.g. RUST_LOG=debug")
    ap.add_argument("--keep-logs", action="store_true", help="keep the functions' logs (always kept on failure)")
    ap.add_argument("--raw", type=Path, metavar="FILE",
                    help="ingest this raw message (RFC 5322) instead of the generated request; "
                         "its Message-ID is replaced by a fresh one for every event")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if any("=" not in e for e in args.env):
        ap.error("--env takes KEY=VALUE")
    extra_env = dict(e.split("=", 1) for e in args.env)
    try:
        raw = args.raw.read_bytes() if args.raw else None
    except OSError as e:
        ap.error(f"--raw: {e}")

    bootstraps = {name: args.lambda_dir / name / "bootstrap" for name in FUNCTIONS}
    missing = [str(p) for p in bootstraps.values() if not os.access(p, os.X_OK)]
    if missing:
        print("missing bootstrap binaries:\n  " + "\n  ".join(missing)
              + "\nbuild them first with scripts/lambda-package.sh (same CARGO_TARGET_DIR), or pass --lambda-dir",
              file=sys.stderr)
        return 1

    logdir = Path(tempfile.mkdtemp(prefix="mailroom-coldstart-"))
    moto_proc = None
    try:
        moto = args.moto
        if not moto:
            moto, moto_proc = start_moto(logdir)
        stack = Stack(moto)
        if not args.no_workspace:
            stack.put_workspace(args.workspace)
        runs = []
        for r in range(args.runs):
            runs.append(run_once(stack, moto, bootstraps, logdir, r + 1, extra_env, raw))
            if not args.json:
                print(f"run {r + 1}/{args.runs}: " + ", ".join(
                    f"{n.removeprefix('mailroom-')} init {res['init_ms']:.1f} ms" for n, res in runs[-1].items()),
                    file=sys.stderr)
        census = stack.census()
    except Failed as e:
        print(f"coldstart: {e}\n(logs kept in {logdir})", file=sys.stderr)
        return 1
    finally:
        if moto_proc is not None:
            moto_proc.terminate()
            moto_proc.wait()

    figures = []
    for name in FUNCTIONS:
        f = {"function": name}
        for key in ("init_ms", "init_cpu_ms", "first_ms", "first_cpu_ms", "warm_ms", "warm_cpu_ms", "rss_mib"):
            f[key] = summary([run[name][key] for run in runs])
        f["ok"] = f["init_ms"]["median"] <= INIT_TARGET_MS
        figures.append(f)
    if args.json:
        print(json.dumps({
            "runs": args.runs, "moto": moto, "init_target_ms": INIT_TARGET_MS,
            "workspace": None if args.no_workspace else str(args.workspace),
            "items_after": census, "functions": figures, "logs": str(logdir) if args.keep_logs else None,
        }, indent=2))
    else:

        def cell(s: dict) -> str:  # "median / max"
            return "-" if s["median"] is None else f"{s['median']:.1f} / {s['max']:.1f}"

        def med(s: dict) -> str:
            return "-" if s["median"] is None else f"{s['median']:.1f}"

        print(f"\n{args.runs} cold start(s) per function; moto {moto}; workspace "
              f"{'none' if args.no_workspace else args.workspace.name}")
        print("ms as median / max; cpu = the function's own CPU ms (median); rss = peak MiB (max)")
        print(f"{'function':<17}{'init':>15}{'cpu':>6}{'first event':>16}{'cpu':>6}{'warm event':>16}{'cpu':>6}"
              f"{'rss':>6}  init <= {INIT_TARGET_MS:g} ms (median)")
        for f in figures:
            print(f"{f['function']:<17}{cell(f['init_ms']):>15}{med(f['init_cpu_ms']):>6}"
                  f"{cell(f['first_ms']):>16}{med(f['first_cpu_ms']):>6}"
                  f"{cell(f['warm_ms']):>16}{med(f['warm_cpu_ms']):>6}{f['rss_mib']['max'] or 0:>6.1f}"
                  f"  {'OK' if f['ok'] else 'OVER'}")
        print("items in the table afterwards: " + ", ".join(f"{k} {v}" for k, v in census.items()))
        if args.keep_logs:
            print(f"function logs: {logdir}")
    if not args.keep_logs:
        shutil.rmtree(logdir, ignore_errors=True)
    return 0 if all(f["ok"] for f in figures) else 3


if __name__ == "__main__":
    sys.exit(main())
