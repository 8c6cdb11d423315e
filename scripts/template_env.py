#!/usr/bin/env python3
"""The environment infra/template.yaml gives a function, as it would be deployed: Globals'
variables and the function's own, with every intrinsic resolved. For the tests that run
the function binaries as deployed (tests/tests/it/deployed.rs): a variable the code reads
under another name than the template sets is then missing in the test too.

    scripts/template_env.py FUNCTION [--set LOGICAL_ID=VALUE ...] [--param NAME=VALUE ...]

`--set` gives what a resource's `Ref` (and `Fn::GetAtt X.Arn`/`.QueueName`/`.Name`)
resolves to; parameters take their defaults unless `--param` sets them; `AWS::NoValue`
drops the variable. A reference to anything not given is an error naming it. Prints a
JSON object {NAME: value}.
"""
import argparse
import json
import pathlib
import re
import sys

from cfnlint.decode import decode_str

ROOT = pathlib.Path(__file__).resolve().parent.parent
PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws",
          "AWS::StackName": "mailroom", "AWS::URLSuffix": "amazonaws.com"}


class Unresolved(Exception):
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("function")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--param", action="append", default=[])
    a = ap.parse_args()
    tpl, problems = decode_str((ROOT / "infra/template.yaml").read_text())
    if problems:
        raise SystemExit(f"infra/template.yaml does not parse: {problems}")
    given = dict(s.split("=", 1) for s in a.set)
    params = {k: str(v.get("Default", "")) for k, v in tpl["Parameters"].items()}
    params.update(dict(s.split("=", 1) for s in a.param))
    conditions = tpl.get("Conditions", {})
    mappings = tpl.get("Mappings", {})

    def ref(name):
        if name in PSEUDO:
            return PSEUDO[name]
        if name in params:
            return params[name]
        if name in given:
            return given[name]
        raise Unresolved(name)

    def cond(name):
        return truth(conditions[name])

    def truth(c):
        (op, args), = c.items()
        if op == "Fn::Equals":
            return str(val(args[0])) == str(val(args[1]))
        if op == "Fn::Not":
            return not truth(args[0])
        if op == "Fn::And":
            return all(truth(x) for x in args)
        if op == "Fn::Or":
            return any(truth(x) for x in args)
        if op == "Condition":
            return cond(args)
        raise Unresolved(op)

    def val(v):
        if isinstance(v, dict) and len(v) == 1:
            (op, args), = v.items()
            if op == "Ref":
                return None if args == "AWS::NoValue" else ref(str(args))
            if op == "Fn::GetAtt":
                lid, att = args if isinstance(args, list) else str(args).split(".", 1)
                key = f"{lid}.{att}"
                if key in given:
                    return given[key]
                raise Unresolved(key)
            if op == "Fn::If":
                return val(args[1] if cond(args[0]) else args[2])
            if op == "Fn::Sub":
                text = args if isinstance(args, str) else args[0]
                extra = {} if isinstance(args, str) else {k: val(x) for k, x in args[1].items()}

                def one(m):
                    n = m.group(1)
                    if n in extra:
                        return str(extra[n])
                    if "." in n:
                        return str(val({"Fn::GetAtt": n.split(".", 1)}))
                    return str(ref(n))
                return re.sub(r"\$\{([^}!]+)\}", one, str(text))
            if op == "Fn::Join":
                return str(args[0]).join(str(val(x)) for x in args[1])
            if op == "Fn::FindInMap":
                return mappings[val(args[0])][val(args[1])][val(args[2])]
            if op == "Fn::Select":
                return val(args[1])[int(val(args[0]))]
            raise Unresolved(op)
        if isinstance(v, list):
            return [val(x) for x in v]
        return v

    fn = tpl["Resources"].get(a.function)
    if not fn or fn.get("Type") != "AWS::Serverless::Function":
        raise SystemExit(f"{a.function} is not a function of infra/template.yaml")
    env = dict((tpl.get("Globals", {}).get("Function", {}).get("Environment", {}) or {}).get("Variables", {}))
    env.update(((fn.get("Properties", {}).get("Environment") or {}).get("Variables")) or {})
    out = {}
    try:
        for k, v in env.items():
            r = val(v)
            if r is not None:
                out[str(k)] = str(r)
    except Unresolved as e:
        raise SystemExit(f"{a.function}: its environment refers to {e}, which the caller did not --set")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
