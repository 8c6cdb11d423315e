#!/usr/bin/env python3
"""Checks the permissions of the SAM template (infra/template.yaml) that cfn-lint cannot.

    .venv/bin/python scripts/check_template.py [TEMPLATE]

Prints one line per problem and exits 1, or prints "template permissions: N functions
checked" and exits 0. The rules:

1. A function with a `MAILROOM_*_QUEUE_URL` variable (its own or Globals') naming queue Q
   (`!Ref Q`), Q not its own SQS event source, has sqs:SendMessage on Q and, when Q is
   encrypted with a KMS key of the template, kms:GenerateDataKey and kms:Decrypt on it.
2. A function with s3:PutObject on a bucket encrypted with a KMS key of the template has
   kms:GenerateDataKey on that key.
3. A function with an SQS event source whose queue is encrypted with a key of the
   template has kms:Decrypt on it.
4. A `*_SECRET_ARN` variable naming secret S comes with secretsmanager:GetSecretValue on S
   and, when S is encrypted with a key of the template, kms:Decrypt on that key.
5. No environment variable (Globals or function) holds a secret value: no
   `{{resolve:secretsmanager` or `{{resolve:ssm-secure` dynamic reference, no reference to
   a NoEcho parameter.
6. No statement of a KMS key policy allows kms:Encrypt, kms:Decrypt or kms:GenerateDataKey*
   (kms:*, * and other wildcards included) without a Condition.
7. Operations (issue 24): every SQS event source caps its concurrency
   (ScalingConfig.MaximumConcurrency); the dashboard shows every function's errors and
   every dead-letter queue; every HTTP API has default throttling and access logs, and
   its public routes (form submissions, tracking) a throttle of their own.
8. Names (issue 24): every `MAILROOM_*` variable the template sets (Globals or a
   function) is read by the Rust code (a `"NAME"` literal under shared/*/src or
   functions/*/src; `NAME_SECRET_ARN` counts when `NAME` is one, as `load_secrets` reads
   it), so a variable renamed on one side only fails here. `*_SECRET_SOURCE` variables are
   exempt: they are never read, only changed to make CloudFormation update a function when
   its secret's source changes.

Fn::If: a function is checked once per combination of the conditions its Fn::Ifs use
(both branches of each), so a permission granted under the same condition as the
variable that needs it counts; rules 5 and 6 look at every branch. Intrinsic functions in
policy resources (Ref, Fn::GetAtt, Fn::Sub, Fn::Join, lists) are rendered to ARNs with
made-up account, region and physical names and matched like IAM does (* and ?). SAM's
policy templates SQSSendMessagePolicy, SQSPollerPolicy, AWSSecretsManagerGetSecretValuePolicy,
KMSDecryptPolicy, KMSEncryptPolicy, S3WritePolicy, S3CrudPolicy and S3FullAccessPolicy
are understood; other policy templates and managed policies grant nothing here. Deny
statements are applied; conditions of the functions' own statements are not evaluated
(a conditional Allow counts as a grant). A function with an explicit Role is checked
against that AWS::IAM::Role's inline policies and the AWS::IAM::Policy /
AWS::IAM::ManagedPolicy resources attached to it.
"""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

try:
    from cfnlint.decode import decode
except ImportError:  # older cfn-lint releases
    from cfn_lint.decode import decode  # type: ignore[no-redef]

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
STACK = "stack"
NOVALUE = object()
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": PARTITION,
    "AWS::StackName": STACK,
    "AWS::StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/id",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NotificationARNs": "",
}
QUEUE_VAR = re.compile(r"^MAILROOM_[A-Z0-9_]+_QUEUE_URL$")
SECRET_VAR = re.compile(r"_SECRET_ARN$")
SECRET_REFS = ("{{resolve:secretsmanager", "{{resolve:ssm-secure")
# What rule 6 protects: the actions that encrypt, decrypt or make data keys.
KMS_DATA_ACTIONS = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext",
]


def _sam_policy_template(name: str, args: object) -> list[dict] | None:
    """The statements of SAM policy template `name` with its arguments, or None."""
    args = args if isinstance(args, dict) else {}

    def arg(key: str) -> object:
        return args.get(key, "")

    def queue(actions: list[str]) -> list[dict]:
        res = {
            "Fn::Sub": [
                "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${q}",
                {"q": arg("QueueName")},
            ]
        }
        return [{"Effect": "Allow", "Action": actions, "Resource": res}]

    def key(action: str) -> list[dict]:
        res = {
            "Fn::Sub": [
                "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/${k}",
                {"k": arg("KeyId")},
            ]
        }
        return [{"Effect": "Allow", "Action": action, "Resource": res}]

    def bucket(actions: list[str]) -> list[dict]:
        b = arg("BucketName")
        res = [
            {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${b}", {"b": b}]},
            {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${b}/*", {"b": b}]},
        ]
        return [{"Effect": "Allow", "Action": actions, "Resource": res}]

    templates = {
        "SQSSendMessagePolicy": lambda: queue(["sqs:SendMessage*"]),
        "SQSPollerPolicy": lambda: queue(
            [
                "sqs:ChangeMessageVisibility",
                "sqs:ChangeMessageVisibilityBatch",
                "sqs:DeleteMessage",
                "sqs:DeleteMessageBatch",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
            ]
        ),
        "AWSSecretsManagerGetSecretValuePolicy": lambda: [
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arg("SecretArn")}
        ],
        "KMSDecryptPolicy": lambda: key("kms:Decrypt"),
        "KMSEncryptPolicy": lambda: key("kms:Encrypt"),
        "S3WritePolicy": lambda: bucket(["s3:PutObject", "s3:PutObjectAcl", "s3:PutLifecycleConfiguration"]),
        "S3CrudPolicy": lambda: bucket(
            ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:GetObjectVersion", "s3:PutObject",
             "s3:PutObjectAcl", "s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration", "s3:DeleteObject"]
        ),
        "S3FullAccessPolicy": lambda: bucket(["s3:*Object*", "s3:ListBucket", "s3:GetBucketLocation"]),
    }
    make = templates.get(name)
    return make() if make else None


def glob_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: * any run of characters, ? one character."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def as_list(v: object) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]


class Template:
    def __init__(self, tpl: dict):
        self.tpl = tpl
        self.resources: dict = tpl.get("Resources") or {}
        self.parameters: dict = tpl.get("Parameters") or {}

    def rtype(self, lid: str) -> str | None:
        r = self.resources.get(lid)
        return r.get("Type") if isinstance(r, dict) else None

    def props(self, lid: str) -> dict:
        r = self.resources.get(lid) or {}
        p = r.get("Properties") if isinstance(r, dict) else None
        return p if isinstance(p, dict) else {}

    # ------------------------------------------------------------ rendering
    def ref(self, name: str) -> object:
        if name == "AWS::NoValue":
            return NOVALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return f"{{param:{name}}}"
        t = self.rtype(name)
        if t == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}-queue"
        if t == "AWS::KMS::Key":
            return f"{name}-keyid"
        if t in ("AWS::S3::Bucket",):
            return f"{name.lower()}-bucket"
        if t in ("AWS::SecretsManager::Secret", "AWS::SNS::Topic", "AWS::IAM::ManagedPolicy"):
            return self.getatt(name, "Arn")
        return f"{{ref:{name}}}"

    def getatt(self, name: str, attr: str) -> str:
        t = self.rtype(name)
        a = f"arn:{PARTITION}"
        if t == "AWS::SQS::Queue":
            return {
                "Arn": f"{a}:sqs:{REGION}:{ACCOUNT}:{name}-queue",
                "QueueName": f"{name}-queue",
                "QueueUrl": str(self.ref(name)),
            }.get(attr, f"{{getatt:{name}.{attr}}}")
        if t == "AWS::KMS::Key":
            return {"Arn": f"{a}:kms:{REGION}:{ACCOUNT}:key/{name}-keyid", "KeyId": f"{name}-keyid"}.get(
                attr, f"{{getatt:{name}.{attr}}}"
            )
        if t == "AWS::S3::Bucket":
            return {"Arn": f"{a}:s3:::{name.lower()}-bucket"}.get(attr, f"{{getatt:{name}.{attr}}}")
        if t == "AWS::SecretsManager::Secret":
            return f"{a}:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
        if t == "AWS::DynamoDB::Table":
            return {"Arn": f"{a}:dynamodb:{REGION}:{ACCOUNT}:table/{name}-table"}.get(
                attr, f"{{getatt:{name}.{attr}}}"
            )
        if t == "AWS::SNS::Topic":
            return f"{a}:sns:{REGION}:{ACCOUNT}:{name}-topic"
        return f"{{getatt:{name}.{attr}}}"

    def render(self, v: object, scen: dict[str, bool]) -> object:
        """A string (or NOVALUE) for v under the condition values `scen`; lists stay lists."""
        if isinstance(v, list):
            out = [self.render(x, scen) for x in v]
            flat: list = []
            for x in out:
                if x is NOVALUE:
                    continue
                flat.extend(x if isinstance(x, list) else [x])
            return flat
        if not isinstance(v, dict):
            return v if isinstance(v, str) else str(v)
        if len(v) != 1:
            return "{object}"
        (k, a), = v.items()
        if k == "Ref":
            return self.ref(str(a))
        if k == "Fn::GetAtt":
            parts = a.split(".", 1) if isinstance(a, str) else list(a)
            return self.getatt(str(parts[0]), str(parts[1]) if len(parts) > 1 else "")
        if k == "Fn::If":
            cond, yes, no = a
            return self.render(yes if scen.get(cond, True) else no, scen)
        if k == "Fn::Sub":
            text, vars_ = (a, {}) if isinstance(a, str) else (a[0], a[1] if len(a) > 1 else {})

            def one(m: re.Match) -> str:
                name = m.group(1)
                if name.startswith("!"):
                    return "${" + name[1:] + "}"
                if name in vars_:
                    r = self.render(vars_[name], scen)
                elif "." in name and name.split(".", 1)[0] in self.resources:
                    r = self.getatt(*name.split(".", 1))
                else:
                    r = self.ref(name)
                return "" if r is NOVALUE else r if isinstance(r, str) else ",".join(map(str, r))

            return re.sub(r"\$\{([^}]*)\}", one, text)
        if k == "Fn::Join":
            sep, items = a
            r = self.render(items, scen)
            return sep.join(map(str, r)) if isinstance(r, list) else str(r)
        return f"{{{k}}}"

    def strings(self, v: object, scen: dict[str, bool]) -> list[str]:
        r = self.render(v, scen)
        if r is NOVALUE:
            return []
        return [str(x) for x in (r if isinstance(r, list) else [r])]

    # ------------------------------------------------------------ template facts
    def key_of(self, value: object) -> str | None:
        """The template's AWS::KMS::Key that a KmsKeyId-like value names, if any."""
        for lid, r in self.resources.items():
            if not isinstance(r, dict) or r.get("Type") != "AWS::KMS::Key":
                continue
            if value in ({"Ref": lid}, {"Fn::GetAtt": [lid, "Arn"]}, {"Fn::GetAtt": f"{lid}.Arn"},
                         {"Fn::Sub": f"${{{lid}.Arn}}"}, {"Fn::Sub": f"${{{lid}}}"}):
                return lid
        return None

    def queue_key(self, q: str) -> str | None:
        return self.key_of(self.props(q).get("KmsMasterKeyId"))

    def secret_key(self, s: str) -> str | None:
        return self.key_of(self.props(s).get("KmsKeyId"))

    def bucket_keys(self) -> dict[str, str]:
        out = {}
        for lid, r in self.resources.items():
            if not isinstance(r, dict) or r.get("Type") != "AWS::S3::Bucket":
                continue
            enc = (self.props(lid).get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration") or []
            for rule in as_list(enc):
                d = rule.get("ServerSideEncryptionByDefault") if isinstance(rule, dict) else None
                k = self.key_of(d.get("KMSMasterKeyID")) if isinstance(d, dict) else None
                if k:
                    out[lid] = k
        return out

    def noecho(self) -> set[str]:
        return {
            n for n, p in self.parameters.items() if isinstance(p, dict) and str(p.get("NoEcho", "")).lower() == "true"
        }


def conditions_in(v: object, out: set[str]) -> set[str]:
    if isinstance(v, dict):
        for k, a in v.items():
            if k == "Fn::If" and isinstance(a, list) and a and isinstance(a[0], str):
                out.add(a[0])
            conditions_in(a, out)
    elif isinstance(v, list):
        for x in v:
            conditions_in(x, out)
    return out


def resolve_ifs(v: object, scen: dict[str, bool]) -> object:
    """v with every Fn::If replaced by its branch under `scen` (NOVALUE dropped)."""
    if isinstance(v, list):
        out = [resolve_ifs(x, scen) for x in v]
        return [x for x in out if x is not NOVALUE]
    if isinstance(v, dict):
        if len(v) == 1 and "Fn::If" in v and isinstance(v["Fn::If"], list) and len(v["Fn::If"]) == 3:
            cond, yes, no = v["Fn::If"]
            return resolve_ifs(yes if scen.get(cond, True) else no, scen)
        if v == {"Ref": "AWS::NoValue"}:
            return NOVALUE
        if len(v) == 1 and next(iter(v)) in ("Fn::Sub", "Fn::Join", "Fn::GetAtt", "Ref"):
            return v  # rendered later, Fn::If inside handled by render
        out = {k: resolve_ifs(x, scen) for k, x in v.items()}
        return {k: x for k, x in out.items() if x is not NOVALUE}
    return v


class Permissions:
    """The Allow and Deny statements of one function's role, rendered."""

    def __init__(self, t: Template, statements: list[dict], scen: dict[str, bool]):
        self.allow: list[tuple[list[str], bool, list[str], bool]] = []
        self.deny: list[tuple[list[str], bool, list[str], bool]] = []
        for st in statements:
            if not isinstance(st, dict):
                continue
            not_action = "NotAction" in st
            actions = [str(a) for a in t.strings(st.get("NotAction" if not_action else "Action"), scen)]
            not_res = "NotResource" in st
            res = t.strings(st.get("NotResource" if not_res else "Resource"), scen)
            entry = (actions, not_action, res, not_res)
            (self.deny if st.get("Effect") == "Deny" else self.allow).append(entry)

    @staticmethod
    def _matches(entry: tuple[list[str], bool, list[str], bool], action: str, arn: str) -> bool:
        actions, not_action, res, not_res = entry
        a = any(glob_match(p, action, ignore_case=True) for p in actions)
        r = any(glob_match(p, arn) for p in res)
        return (a != not_action) and (r != not_res)

    def has(self, action: str, arn: str) -> bool:
        return any(self._matches(e, action, arn) for e in self.allow) and not any(
            self._matches(e, action, arn) for e in self.deny
        )

    def puts_into(self, bucket_arn: str) -> bool:
        """Whether s3:PutObject is allowed on some object of the bucket: tried on one
        object under each resource pattern of the Allow statements, and on bucket/x."""
        objects = {f"{bucket_arn}/x"}
        for _, _, res, _ in self.allow:
            for p in res:
                if p.startswith(bucket_arn + "/"):
                    objects.add(f"{bucket_arn}/" + p[len(bucket_arn) + 1:].replace("*", "x").replace("?", "x"))
        return any(self.has("s3:PutObject", o) for o in objects)


def explicit_role(props: dict) -> str | None:
    """The logical id named by the function's Role, when it names one."""
    role = props.get("Role")
    if isinstance(role, dict):
        if "Fn::GetAtt" in role:
            g = role["Fn::GetAtt"]
            return str((g.split(".", 1) if isinstance(g, str) else g)[0])
        if "Ref" in role:
            return str(role["Ref"])
    return None


def role_policy_resources(t: Template, rid: str) -> list[str]:
    """The AWS::IAM::Policy / ManagedPolicy resources attached to role `rid`."""
    return [lid for lid, r in t.resources.items()
            if isinstance(r, dict) and r.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
            and {"Ref": rid} in as_list(t.props(lid).get("Roles"))]


def policy_statements(t: Template, props: dict, scen: dict[str, bool]) -> list:
    """The statements of the role of the function with properties `props` under `scen`."""
    if props.get("Role") is not None:
        # An explicit role: its inline policies and the policies attached to it.
        rid = explicit_role(props)
        if rid is None or t.rtype(rid) != "AWS::IAM::Role":
            return []
        out: list = []
        for p in as_list(resolve_ifs(t.props(rid).get("Policies"), scen)):
            if isinstance(p, dict):
                out.extend(as_list((p.get("PolicyDocument") or {}).get("Statement")))
        for lid in role_policy_resources(t, rid):
            doc = resolve_ifs(t.props(lid).get("PolicyDocument"), scen)
            out.extend(as_list((doc or {}).get("Statement") if isinstance(doc, dict) else None))
        return [st for st in (resolve_ifs(x, scen) for x in out) if st is not NOVALUE]
    out = []
    for p in as_list(props.get("Policies")):
        if isinstance(p, dict) and "Statement" in p:
            out.extend(as_list(p["Statement"]))
        elif isinstance(p, dict) and len(p) == 1:
            (name, args), = p.items()
            out.extend(_sam_policy_template(name, args) or [])
    return out


def env_of(globals_env: dict, props: dict) -> dict:
    env = dict(globals_env)
    own = ((props.get("Environment") or {}).get("Variables")) or {}
    if isinstance(own, dict):
        env.update(own)
    return env


def sqs_sources(t: Template, props: dict, scen: dict[str, bool]) -> list[str]:
    """The queues (logical ids) of the function's SQS event sources."""
    out = []
    events = props.get("Events") or {}
    for ev in events.values() if isinstance(events, dict) else []:
        if not isinstance(ev, dict) or ev.get("Type") != "SQS":
            continue
        arns = t.strings((ev.get("Properties") or {}).get("Queue"), scen)
        for lid, r in t.resources.items():
            if isinstance(r, dict) and r.get("Type") == "AWS::SQS::Queue" and t.getatt(lid, "Arn") in arns:
                out.append(lid)
    return out


def check_function(t: Template, fn: str, globals_env: dict, scen: dict[str, bool]) -> list[str]:
    props = resolve_ifs(t.props(fn), scen)
    env = resolve_ifs(env_of(globals_env, t.props(fn)), scen)
    perms = Permissions(t, resolve_ifs(policy_statements(t, props, scen), scen), scen)
    problems = []
    sources = sqs_sources(t, props, scen)

    def need(action: str, key: str, why: str) -> None:
        if not perms.has(action, t.getatt(key, "Arn")):
            problems.append(f"{fn}: {why} without {action} on {key}")

    # 1. producers
    for var, val in sorted(env.items()):
        if not QUEUE_VAR.match(var) or not (isinstance(val, dict) and set(val) == {"Ref"}):
            continue
        q = val["Ref"]
        if t.rtype(q) != "AWS::SQS::Queue" or q in sources:
            continue
        if not perms.has("sqs:SendMessage", t.getatt(q, "Arn")):
            problems.append(f"{fn}: sends to {q} ({var}) without sqs:SendMessage on it")
        k = t.queue_key(q)
        if k:
            for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                need(action, k, f"sends to {q} ({var}, encrypted with {k})")
    # 2. writers to a KMS-encrypted bucket
    for bucket, k in sorted(t.bucket_keys().items()):
        if perms.puts_into(t.getatt(bucket, "Arn")):
            need("kms:GenerateDataKey", k, f"has s3:PutObject on {bucket} (encrypted with {k})")
    # 3. consumers
    for q in sorted(set(sources)):
        k = t.queue_key(q)
        if k:
            need("kms:Decrypt", k, f"receives from {q} (SQS event source, encrypted with {k})")
    # 4. secrets named by *_SECRET_ARN
    for var, val in sorted(env.items()):
        if not SECRET_VAR.search(var) or val is NOVALUE:
            continue
        targets = t.strings(val, scen)
        if not perms.has("secretsmanager:GetSecretValue", targets[0] if targets else ""):
            problems.append(f"{fn}: {var} names {describe(val)} without secretsmanager:GetSecretValue on it")
        s = val["Ref"] if isinstance(val, dict) and set(val) == {"Ref"} else None
        k = t.secret_key(s) if s and t.rtype(s) == "AWS::SecretsManager::Secret" else None
        if k:
            need("kms:Decrypt", k, f"reads {s} ({var}, encrypted with {k})")
    return problems


def describe(v: object) -> str:
    if isinstance(v, dict) and set(v) == {"Ref"}:
        return str(v["Ref"])
    return str(v)


def walk_secret_values(t: Template, where: str, var: str, v: object, noecho: set[str], out: list[str]) -> None:
    """Rule 5 for one variable's value, every branch."""
    if isinstance(v, str):
        for marker in SECRET_REFS:
            if marker in v:
                out.append(f"{where}: {var} holds a secret value ({marker}...}})")
                return
    elif isinstance(v, list):
        for x in v:
            walk_secret_values(t, where, var, x, noecho, out)
    elif isinstance(v, dict):
        if set(v) == {"Ref"} and v["Ref"] in noecho:
            out.append(f"{where}: {var} holds the NoEcho parameter {v['Ref']}")
            return
        if set(v) == {"Fn::Sub"}:
            a = v["Fn::Sub"]
            text = a if isinstance(a, str) else a[0] if a else ""
            for name in re.findall(r"\$\{([^}!.]*)\}", str(text)):
                if name in noecho:
                    out.append(f"{where}: {var} holds the NoEcho parameter {name}")
        for x in v.values():
            walk_secret_values(t, where, var, x, noecho, out)


def branches(v: object) -> list:
    """Every version of v, one per combination of its Fn::If branches."""
    conds = sorted(conditions_in(v, set()))
    out = []
    for values in itertools.product((True, False), repeat=len(conds)):
        r = resolve_ifs(v, dict(zip(conds, values)))
        if r not in out:
            out.append(r)
    return out


def check_key_policies(t: Template) -> list[str]:
    """Rule 6."""
    problems = []
    for lid, r in t.resources.items():
        if not isinstance(r, dict) or r.get("Type") != "AWS::KMS::Key":
            continue
        policy = t.props(lid).get("KeyPolicy") or {}
        for doc in branches(policy):
            statements = as_list(doc.get("Statement")) if isinstance(doc, dict) else []
            for i, st in enumerate(statements):
                if not isinstance(st, dict) or st.get("Effect") != "Allow" or st.get("Condition"):
                    continue
                not_action = "NotAction" in st
                patterns = [str(a) for a in as_list(st.get("NotAction" if not_action else "Action"))]
                allowed = [a for a in KMS_DATA_ACTIONS
                           if any(glob_match(p, a, ignore_case=True) for p in patterns) != not_action]
                if allowed:
                    sid = st.get("Sid") or f"#{i + 1}"
                    what = ", ".join(patterns) if not not_action else "every action but " + ", ".join(patterns)
                    problems.append(f"{lid}: key policy statement {sid} allows {what} without a Condition")
    return problems


def check_operations(t: Template, functions: list[str]) -> list[str]:
    """Rule 7."""
    problems = []
    for fn in functions:
        for name, ev in ((t.props(fn).get("Events") or {}).items()):
            if isinstance(ev, dict) and ev.get("Type") == "SQS":
                cap = ((ev.get("Properties") or {}).get("ScalingConfig") or {}).get("MaximumConcurrency")
                if cap is None:
                    problems.append(f"{fn}: SQS event {name} has no ScalingConfig.MaximumConcurrency")
    dashboards = [lid for lid, r in t.resources.items()
                  if isinstance(r, dict) and r.get("Type") == "AWS::CloudWatch::Dashboard"]
    body = ""
    for d in dashboards:
        b = t.props(d).get("DashboardBody")
        body += str(b.get("Fn::Sub") if isinstance(b, dict) else b)
    for fn in functions:
        if "${%s}" % fn not in body:
            problems.append(f"the dashboard does not show {fn}'s errors")
    for lid, r in t.resources.items():
        if isinstance(r, dict) and r.get("Type") == "AWS::SQS::Queue" and lid.endswith("DLQ"):
            if "${%s.QueueName}" % lid not in body:
                problems.append(f"the dashboard does not show the depth of {lid}")
    for lid, r in t.resources.items():
        if not (isinstance(r, dict) and r.get("Type") == "AWS::Serverless::HttpApi"):
            continue
        props = t.props(lid)
        d = props.get("DefaultRouteSettings") or {}
        if d.get("ThrottlingRateLimit") is None or d.get("ThrottlingBurstLimit") is None:
            problems.append(f"{lid}: no DefaultRouteSettings throttling")
        if not (props.get("AccessLogSettings") or {}).get("DestinationArn"):
            problems.append(f"{lid}: no AccessLogSettings")
        paths = ((props.get("DefinitionBody") or {}).get("paths") or {})
        routes = props.get("RouteSettings") or {}
        for path, item in paths.items():
            if not (path.startswith("/forms/") or path.startswith("/t/")):
                continue
            for method in item:
                key = f"{method.upper()} {path}"
                if (routes.get(key) or {}).get("ThrottlingRateLimit") is None:
                    problems.append(f"{lid}: public route {key} has no throttle of its own")
    return problems


NAME_IN_CODE = re.compile(r'"(MAILROOM_[A-Z0-9_]+)"')


def check_env_names(t: Template, functions: list[str], globals_env: dict, root: Path) -> list[str]:
    read = set()
    for pattern in ("shared/*/src/**/*.rs", "functions/*/src/**/*.rs"):
        for f in root.glob(pattern):
            read.update(NAME_IN_CODE.findall(f.read_text(encoding="utf-8")))
    problems = []
    for where, env in [("Globals", globals_env)] + [
        (fn, ((t.props(fn).get("Environment") or {}).get("Variables")) or {}) for fn in functions
    ]:
        for var in (env if isinstance(env, dict) else {}):
            if not var.startswith("MAILROOM_") or var.endswith("_SECRET_SOURCE"):
                continue
            if var in read or (var.endswith("_SECRET_ARN") and var[: -len("_SECRET_ARN")] in read):
                continue
            problems.append(f"{where}: sets {var}, which no code reads (a name that differs between template and code?)")
    return problems


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    path = Path(argv[1]) if len(argv) > 1 else root / "infra" / "template.yaml"
    tpl, matches = decode(str(path))
    if matches or not isinstance(tpl, dict):
        for m in matches:
            print(f"{path}: {m}")
        if not matches:
            print(f"{path}: not a template")
        return 1
    t = Template(tpl)
    globals_env = (((tpl.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get("Variables") or {}
    functions = sorted(lid for lid, r in t.resources.items()
                       if isinstance(r, dict) and r.get("Type") == "AWS::Serverless::Function")
    problems: list[str] = []
    noecho = t.noecho()
    # 5. secret values in environments
    for var, v in (globals_env.items() if isinstance(globals_env, dict) else []):
        walk_secret_values(t, "Globals", var, v, noecho, problems)
    for fn in functions:
        own = (t.props(fn).get("Environment") or {}).get("Variables") or {}
        for var, v in (own.items() if isinstance(own, dict) else []):
            walk_secret_values(t, fn, var, v, noecho, problems)
    # 1-4, once per combination of the conditions the function's Fn::Ifs use
    for fn in functions:
        r = t.resources[fn]
        rid = explicit_role(t.props(fn))
        if t.props(fn).get("Role") is not None and t.rtype(rid or "") != "AWS::IAM::Role":
            problems.append(f"{fn}: its Role is not an AWS::IAM::Role of the template: permissions not checked")
            continue
        used = conditions_in(env_of(globals_env, t.props(fn)), set())
        conditions_in(t.props(fn), used)
        if rid:
            conditions_in(t.props(rid), used)
            for lid in role_policy_resources(t, rid):
                conditions_in(t.props(lid), used)
        conds = sorted(used)
        seen: dict[str, list[dict[str, bool]]] = {}
        combos = [dict(zip(conds, vals)) for vals in itertools.product((True, False), repeat=len(conds))]
        if r.get("Condition"):
            combos = [dict(c, **{r["Condition"]: True}) for c in combos]
        for scen in combos:
            for p in check_function(t, fn, globals_env, scen):
                seen.setdefault(p, []).append(scen)
        for p, scens in seen.items():
            if len(scens) == len(combos) or not conds:
                problems.append(p)
            else:
                # The conditions that have the same value wherever the problem shows.
                fixed = {c: scens[0][c] for c in conds if all(x[c] == scens[0][c] for x in scens)}
                when = ", ".join(f"{c}={'true' if v else 'false'}" for c, v in sorted(fixed.items()))
                problems.append(f"{p} (when {when or 'some conditions hold'})")
    # 6. key policies
    problems.extend(check_key_policies(t))
    # 7. operations
    problems.extend(check_operations(t, functions))
    # 8. variable names
    problems.extend(check_env_names(t, functions, globals_env, root))
    unique = list(dict.fromkeys(problems))
    for p in unique:
        print(p)
    if unique:
        return 1
    print(f"template permissions: {len(functions)} functions checked")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
