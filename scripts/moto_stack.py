#!/usr/bin/env python3
"""A fresh Mailroom stack's storage and sign-in on moto, for the bootstrap test
(tests/tests/it/bootstrap.rs): what `sam deploy` plus the `AdminEmail` parameter give a new
team, as far as moto's CloudFormation can create it.

- CloudFormation creates MailroomKey, MainTable and MailBucket from infra/template.yaml
  itself (their definitions, parameters and conditions as they are), with the template's
  outputs MainTableName, MailBucketName and KeyArn.
- What moto's CloudFormation cannot create is made directly with the template's own
  properties, and given the output the template gives it: ThreadKeySecret (Secrets
  Manager; output ThreadKeySecretArn), UserPool, UserPoolClient and FirstAdminUser
  (Cognito; outputs UserPoolId, UserPoolClientId).
- The first admin then signs in (the password a person would set at first sign-in is set
  here) and the script prints the stack's outputs, the issuer, its JWKS URL and the ID
  token, as JSON.

    scripts/moto_stack.py --endpoint http://127.0.0.1:5123 --stack NAME --admin EMAIL
"""
import argparse
import json
import pathlib
import secrets

import boto3
from cfnlint.decode import decode_str

ROOT = pathlib.Path(__file__).resolve().parent.parent
NATIVE = ["MailroomKey", "MainTable", "MailBucket"]
OUTPUTS = ["MainTableName", "MailBucketName", "KeyArn"]


def plain(v):
    """cfn-lint's decoded nodes as plain JSON values."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, str):
        return str(v)
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--admin", required=True)
    a = ap.parse_args()
    tpl, problems = decode_str((ROOT / "infra/template.yaml").read_text())
    if problems:
        raise SystemExit(f"infra/template.yaml does not parse: {problems}")
    tpl = plain(tpl)
    res = tpl["Resources"]
    kw = dict(endpoint_url=a.endpoint, region_name="us-east-1",
              aws_access_key_id="test", aws_secret_access_key="test")

    # Made directly: the thread key (ThreadKeySecret's GenerateSecretString).
    gen = res["ThreadKeySecret"]["Properties"]["GenerateSecretString"]
    sm = boto3.client("secretsmanager", **kw)
    secret_arn = sm.create_secret(
        Name=f"{a.stack}-ThreadKeySecret-{secrets.token_hex(4)}",
        SecretString=secrets.token_urlsafe(gen["PasswordLength"])[: gen["PasswordLength"]],
    )["ARN"]

    # The user pool, its API client and the first admin, from the template's properties.
    idp = boto3.client("cognito-idp", **kw)
    pool_p = res["UserPool"]["Properties"]
    pool = idp.create_user_pool(
        PoolName=f"{a.stack}-users",
        UsernameAttributes=pool_p["UsernameAttributes"],
        AutoVerifiedAttributes=pool_p["AutoVerifiedAttributes"],
        AdminCreateUserConfig=pool_p["AdminCreateUserConfig"],
    )["UserPool"]["Id"]
    client_p = res["UserPoolClient"]["Properties"]
    client = idp.create_user_pool_client(
        UserPoolId=pool,
        ClientName=f"{a.stack}-api",
        GenerateSecret=client_p["GenerateSecret"],
        ExplicitAuthFlows=client_p["ExplicitAuthFlows"] + ["ALLOW_ADMIN_USER_PASSWORD_AUTH"],
        ReadAttributes=client_p["ReadAttributes"],
        WriteAttributes=client_p["WriteAttributes"],
    )["UserPoolClient"]["ClientId"]
    admin_p = res["FirstAdminUser"]["Properties"]
    attrs = [
        {"Name": x["Name"], "Value": a.admin if isinstance(x["Value"], dict) else x["Value"]}
        for x in admin_p["UserAttributes"]
    ]
    idp.admin_create_user(UserPoolId=pool, Username=a.admin, UserAttributes=attrs,
                          DesiredDeliveryMediums=admin_p["DesiredDeliveryMediums"])
    password = "Aa1!" + secrets.token_urlsafe(16)
    idp.admin_set_user_password(UserPoolId=pool, Username=a.admin, Password=password, Permanent=True)
    auth = idp.admin_initiate_auth(UserPoolId=pool, ClientId=client, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                   AuthParameters={"USERNAME": a.admin, "PASSWORD": password})

    # CloudFormation: the key, the table and the bucket as the template defines them.
    sub = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": tpl["Parameters"],
        "Conditions": tpl["Conditions"],
        "Resources": {n: res[n] for n in NATIVE},
        "Outputs": {n: tpl["Outputs"][n] for n in OUTPUTS},
    }
    sub["Outputs"]["ThreadKeySecretArn"] = {"Value": secret_arn}
    sub["Outputs"]["UserPoolId"] = {"Value": pool}
    sub["Outputs"]["UserPoolClientId"] = {"Value": client}
    cfn = boto3.client("cloudformation", **kw)
    cfn.create_stack(StackName=a.stack, TemplateBody=json.dumps(sub))
    stack = cfn.describe_stacks(StackName=a.stack)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise SystemExit(f"stack {a.stack}: {stack['StackStatus']} {stack.get('StackStatusReason')}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    print(json.dumps({
        "outputs": outputs,
        "issuer": f"https://cognito-idp.us-east-1.amazonaws.com/{pool}",
        "jwks_url": f"{a.endpoint}/{pool}/.well-known/jwks.json",
        "id_token": auth["AuthenticationResult"]["IdToken"],
    }))


if __name__ == "__main__":
    main()
