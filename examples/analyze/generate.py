#!/usr/bin/env python3
"""Regenerates examples/analyze/logs: three weeks (2024-05-01 .. 2024-05-21) of CloudTrail log files
in the AWSLogs layout for the role ci-deployer of account 111122223333, with management and data
events (EC2, S3 objects with SSE-KMS, Lambda with a passed role, KMS, one AccessDenied) and a few
calls of another principal. Record shapes follow the examples of the AWS CloudTrail User Guide
(see tests/fixtures/cloudtrail/README.md); every value is made up. Deterministic output."""
import gzip, io, json, os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logs")
ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ci-deployer"
OTHER = f"arn:aws:iam::{ACCOUNT}:role/someone-else"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"

def identity(role_arn, session="build-42"):
    name = role_arn.rsplit("/", 1)[1]
    return {"type": "AssumedRole", "principalId": f"AROAEXAMPLEID:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{session}", "accountId": ACCOUNT,
            "accessKeyId": "ASIAEXAMPLEKEY", "sessionContext": {"sessionIssuer": {"type": "Role",
            "principalId": "AROAEXAMPLEID", "arn": role_arn, "accountId": ACCOUNT, "userName": name},
            "attributes": {"creationDate": "2024-05-01T00:00:00Z", "mfaAuthenticated": "false"}}}

n = 0
def rec(day, hour, source, name, region="us-east-1", who=ROLE, req=None, resp=None, resources=None,
        error=None, extra=None, data=False):
    global n
    n += 1
    r = {"eventVersion": "1.09", "userIdentity": identity(who),
         "eventTime": f"2024-05-{day:02d}T{hour:02d}:{(n * 7) % 60:02d}:00Z", "eventSource": source,
         "eventName": name, "awsRegion": region, "sourceIPAddress": "192.0.2.10",
         "userAgent": "aws-cli/2.15.0", "requestParameters": req, "responseElements": resp,
         "requestID": f"REQ{n:06d}", "eventID": f"00000000-0000-4000-8000-{n:012d}",
         "readOnly": name.startswith(("Get", "List", "Describe", "Head")),
         "eventType": "AwsApiCall", "managementEvent": not data, "recipientAccountId": ACCOUNT,
         "eventCategory": "Data" if data else "Management"}
    if resources: r["resources"] = resources
    if error: r["errorCode"], r["errorMessage"] = error, "User is not authorized to perform this operation"
    if extra: r["additionalEventData"] = extra
    return r

files = {}
def add(region, day, record):
    files.setdefault((region, day), []).append(record)

for day in range(1, 22):
    add("us-east-1", day, rec(day, 8, "ec2.amazonaws.com", "DescribeInstances", req={"instancesSet": {}}))
    add("eu-west-1", day, rec(day, 9, "ec2.amazonaws.com", "DescribeInstances", region="eu-west-1"))
    obj = f"arn:aws:s3:::ci-artifacts-{ACCOUNT}/builds/{day}/app.zip"
    add("us-east-1", day, rec(day, 10, "s3.amazonaws.com", "GetObject", data=True,
        req={"bucketName": f"ci-artifacts-{ACCOUNT}", "key": f"builds/{day}/app.zip"},
        resp={"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": KEY},
        extra={"SSEApplied": "SSE_KMS", "bytesTransferredOut": 1024},
        resources=[{"type": "AWS::S3::Object", "ARN": obj},
                   {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::ci-artifacts-{ACCOUNT}"}]))
    add("us-east-1", day, rec(day, 11, "s3.amazonaws.com", "PutObject", data=True,
        req={"bucketName": f"ci-artifacts-{ACCOUNT}", "key": f"builds/{day}/app.zip", "x-amz-server-side-encryption": "aws:kms",
             "x-amz-server-side-encryption-aws-kms-key-id": KEY},
        extra={"SSEApplied": "SSE_KMS"},
        resources=[{"type": "AWS::S3::Object", "ARN": obj},
                   {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::ci-artifacts-{ACCOUNT}"}]))
    add("us-east-1", day, rec(day, 12, "s3.amazonaws.com", "ListObjectsV2", data=True,
        req={"bucketName": f"ci-artifacts-{ACCOUNT}", "list-type": "2", "prefix": "builds/"},
        resources=[{"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::ci-artifacts-{ACCOUNT}"}]))
    add("us-east-1", day, rec(day, 13, "lambda.amazonaws.com", "UpdateFunctionCode20150331v2",
        req={"functionName": "deploy-hook", "s3Bucket": f"ci-artifacts-{ACCOUNT}"},
        resources=None))
    add("us-east-1", day, rec(day, 13, "lambda.amazonaws.com", "Invoke", data=True,
        req={"functionName": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:deploy-hook"},
        resources=[{"accountId": ACCOUNT, "type": "AWS::Lambda::Function",
                    "ARN": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:deploy-hook"}]))
    add("us-east-1", day, rec(day, 14, "kms.amazonaws.com", "Decrypt",
        req={"encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
        resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": KEY}]))
    add("us-east-1", day, rec(day, 7, "sts.amazonaws.com", "GetCallerIdentity"))
    add("us-east-1", day, rec(day, 15, "s3.amazonaws.com", "DeleteBucket", who=OTHER,
        req={"bucketName": "not-ours"}))
    if day % 7 == 1:
        add("us-east-1", day, rec(day, 16, "lambda.amazonaws.com", "CreateFunction20150331",
            req={"functionName": f"hook-{day}", "role": f"arn:aws:iam::{ACCOUNT}:role/lambda-exec", "runtime": "python3.12"}))
        add("us-east-1", day, rec(day, 16, "ec2.amazonaws.com", "RunInstances",
            req={"instancesSet": {"items": [{"imageId": "ami-0abcdef1234567890", "minCount": 1, "maxCount": 1}]},
                 "instanceType": "t3.micro",
                 "iamInstanceProfile": {"name": "ci-runner"},
                 "tagSpecificationSet": {"items": [{"resourceType": "instance", "tags": [{"key": "Name", "value": "runner"}]}]}}))
add("us-east-1", 20, rec(20, 17, "dynamodb.amazonaws.com", "DeleteTable", req={"tableName": "builds"},
    error="AccessDenied"))
add("us-east-1", 21, rec(21, 18, "ec2.amazonaws.com", "DescribeInstanceTopologyNextGen"))

for (region, day), records in sorted(files.items()):
    d = os.path.join(ROOT, "AWSLogs", ACCOUNT, "CloudTrail", region, "2024", "05", f"{day:02d}")
    os.makedirs(d, exist_ok=True)
    name = f"{ACCOUNT}_CloudTrail_{region}_202405{day:02d}T0000Z_example{day:02d}.json.gz"
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(json.dumps({"Records": records}, separators=(",", ":")).encode())
    with open(os.path.join(d, name), "wb") as f:
        f.write(buf.getvalue())
print(f"{n} records in {len(files)} files")
