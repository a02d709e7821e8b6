//! Analyzer benchmark (prints figures; not a test). It writes realistic CloudTrail log files into
//! a temporary directory (the S3 layout `AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`,
//! CloudTrail's own file names, gzip `{"Records":[...]}` documents: management and data events of
//! 18 services, 80 roles used through assumed-role sessions, IAM users, AWS service events, a few
//! per cent of failed calls) and measures:
//!
//! - `throughput`: records parsed and matched per second by the `--from-files` path
//!   (`files::read_directory_with` into a `Usage`, on one thread, then on every core), with the
//!   share of it spent in gzip and in JSON parsing; the pure analysis; the real binary end to end;
//! - `trailscraper`: the same (smaller) log set through the real binary and through
//!   `trailscraper select --log-dir ... --filter-assumed-role-arn ... | trailscraper generate`
//!   in the same run, the ratio of the wall times (ours on every core and on one thread), and the actions where the two policies differ,
//!   each with its reason (read from `proposal.json`: evidence, unknown actions, denied calls);
//! - `memory`: the real binary on 10 million records in a process of its own, its peak RSS
//!   (`VmHWM` of `/proc/<pid>/status`, polled while it runs) against the same binary on the
//!   bundled sample logs. The records are written streamed (one file at a time) and removed after.
//!
//! Environment: `AGR_BENCH_PHASES` (default `throughput,trailscraper,memory`),
//! `AGR_BENCH_RECORDS` (1,000,000), `AGR_BENCH_MEMORY_RECORDS` (10,000,000),
//! `AGR_BENCH_TRAILSCRAPER_RECORDS` (300,000: start-up, about 40 ms, is then a small part of
//! our time), `AGR_BENCH_FILE_RECORDS` (records per log file,
//! 1,000), `AGR_BENCH_TRAILSCRAPER` (default `.venv-bench/bin/trailscraper`, installed by
//! `scripts/bench-deps.sh`; the phase is skipped with a message when it is missing),
//! `AGR_BENCH_KEEP` (keep the generated logs). Machine-readable lines: `analyze <key> <value>
//! <unit>`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use autoguardrails::analyze::catalog::Catalog;
use autoguardrails::analyze::files;
use autoguardrails::analyze::guardrails::{Preset, Rules};
use autoguardrails::analyze::permissions::{Permissions, Policy, PolicySource};
use autoguardrails::analyze::proposal::{self, Context, PolicyType, Settings};
use autoguardrails::analyze::record::{PrincipalMatcher, for_each_record};
use autoguardrails::analyze::usage::Usage;
use autoguardrails::principal::PrincipalArn;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;

const ACCOUNT: &str = "111122223333";
/// The analysed role (its sessions are about 8 % of the records).
const ROLE: &str = "arn:aws:iam::111122223333:role/ci-deployer";
const REGIONS: &[&str] = &["us-east-1", "eu-west-1", "us-west-2"];
const KMS_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// First day of the generated logs; 5-minute files per region from there.
const START_SECOND: i64 = 1_740_787_200; // 2025-03-01T00:00:00Z

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.replace(['_', ','], ""))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Removes generated logs unless `AGR_BENCH_KEEP` is set.
fn discard(dir: &Path) {
    if std::env::var_os("AGR_BENCH_KEEP").is_none() {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

fn line(key: &str, value: impl std::fmt::Display, unit: &str) {
    println!("analyze {key} {value} {unit}");
}

/// splitmix64: deterministic, fast, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// What a generated event looks like (request parameters, resources, data or management).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// An S3 object data event (bucket, key, object and bucket resources, SSE-KMS sometimes).
    S3Object,
    /// An S3 bucket-level call (resources: the bucket).
    S3Bucket,
    /// A call without request details worth modelling.
    Plain,
    /// EC2 describe calls with a filter set.
    Ec2Describe,
    /// EC2 RunInstances with tag-on-create and an instance profile.
    RunInstances,
    /// Lambda Invoke (data event on the function).
    LambdaInvoke,
    /// Lambda calls on a function (management).
    LambdaFunction,
    /// Lambda CreateFunction passing the execution role.
    LambdaCreate,
    /// KMS calls on the key.
    Kms,
    /// DynamoDB item calls (data event on the table).
    Dynamo,
    /// STS AssumeRole of another role.
    AssumeRole,
    /// CloudWatch Logs on a log group.
    Logs,
}

/// (weight, event source, event name, shape).
type EventKind = (u32, &'static str, &'static str, Shape);

/// What the analysed role does (weights in per mille of its calls).
const ROLE_EVENTS: &[EventKind] = &[
    (
        90,
        "ec2.amazonaws.com",
        "DescribeInstances",
        Shape::Ec2Describe,
    ),
    (
        40,
        "ec2.amazonaws.com",
        "DescribeSecurityGroups",
        Shape::Ec2Describe,
    ),
    (8, "ec2.amazonaws.com", "RunInstances", Shape::RunInstances),
    (150, "s3.amazonaws.com", "GetObject", Shape::S3Object),
    (80, "s3.amazonaws.com", "PutObject", Shape::S3Object),
    (40, "s3.amazonaws.com", "HeadObject", Shape::S3Object),
    (40, "s3.amazonaws.com", "ListObjects", Shape::S3Bucket),
    (10, "s3.amazonaws.com", "ListBuckets", Shape::Plain),
    (
        6,
        "s3.amazonaws.com",
        "CreateMultipartUpload",
        Shape::S3Object,
    ),
    (20, "s3.amazonaws.com", "UploadPart", Shape::S3Object),
    (
        6,
        "s3.amazonaws.com",
        "CompleteMultipartUpload",
        Shape::S3Object,
    ),
    (
        30,
        "lambda.amazonaws.com",
        "UpdateFunctionCode20150331v2",
        Shape::LambdaFunction,
    ),
    (
        30,
        "lambda.amazonaws.com",
        "GetFunction20150331v2",
        Shape::LambdaFunction,
    ),
    (
        4,
        "lambda.amazonaws.com",
        "CreateFunction20150331",
        Shape::LambdaCreate,
    ),
    (60, "lambda.amazonaws.com", "Invoke", Shape::LambdaInvoke),
    (60, "kms.amazonaws.com", "Decrypt", Shape::Kms),
    (30, "kms.amazonaws.com", "GenerateDataKey", Shape::Kms),
    (40, "sts.amazonaws.com", "GetCallerIdentity", Shape::Plain),
    (10, "sts.amazonaws.com", "AssumeRole", Shape::AssumeRole),
    (
        40,
        "monitoring.amazonaws.com",
        "PutMetricData",
        Shape::Plain,
    ),
    (40, "logs.amazonaws.com", "CreateLogStream", Shape::Logs),
    (
        20,
        "ecr.amazonaws.com",
        "GetAuthorizationToken",
        Shape::Plain,
    ),
    (
        40,
        "cloudformation.amazonaws.com",
        "DescribeStacks",
        Shape::Plain,
    ),
    (10, "apigateway.amazonaws.com", "GetRestApis", Shape::Plain),
    (10, "tagging.amazonaws.com", "GetResources", Shape::Plain),
    (40, "dynamodb.amazonaws.com", "Query", Shape::Dynamo),
    (2, "iam.amazonaws.com", "CreateUser", Shape::Plain),
];

/// What everyone else does.
const OTHER_EVENTS: &[EventKind] = &[
    (
        80,
        "ec2.amazonaws.com",
        "DescribeInstances",
        Shape::Ec2Describe,
    ),
    (
        30,
        "ec2.amazonaws.com",
        "DescribeVolumes",
        Shape::Ec2Describe,
    ),
    (
        20,
        "ec2.amazonaws.com",
        "DescribeNetworkInterfaces",
        Shape::Ec2Describe,
    ),
    (5, "ec2.amazonaws.com", "CreateTags", Shape::Plain),
    (180, "s3.amazonaws.com", "GetObject", Shape::S3Object),
    (90, "s3.amazonaws.com", "PutObject", Shape::S3Object),
    (30, "s3.amazonaws.com", "HeadObject", Shape::S3Object),
    (20, "s3.amazonaws.com", "DeleteObject", Shape::S3Object),
    (30, "s3.amazonaws.com", "ListObjects", Shape::S3Bucket),
    (10, "s3.amazonaws.com", "GetBucketLocation", Shape::S3Bucket),
    (60, "kms.amazonaws.com", "Decrypt", Shape::Kms),
    (30, "kms.amazonaws.com", "GenerateDataKey", Shape::Kms),
    (60, "sts.amazonaws.com", "AssumeRole", Shape::AssumeRole),
    (30, "sts.amazonaws.com", "GetCallerIdentity", Shape::Plain),
    (60, "dynamodb.amazonaws.com", "GetItem", Shape::Dynamo),
    (30, "dynamodb.amazonaws.com", "PutItem", Shape::Dynamo),
    (30, "dynamodb.amazonaws.com", "Query", Shape::Dynamo),
    (40, "lambda.amazonaws.com", "Invoke", Shape::LambdaInvoke),
    (
        10,
        "lambda.amazonaws.com",
        "GetFunction20150331v2",
        Shape::LambdaFunction,
    ),
    (40, "logs.amazonaws.com", "CreateLogStream", Shape::Logs),
    (20, "logs.amazonaws.com", "DescribeLogGroups", Shape::Plain),
    (
        40,
        "monitoring.amazonaws.com",
        "PutMetricData",
        Shape::Plain,
    ),
    (
        20,
        "monitoring.amazonaws.com",
        "GetMetricData",
        Shape::Plain,
    ),
    (30, "ssm.amazonaws.com", "GetParameter", Shape::Plain),
    (
        20,
        "secretsmanager.amazonaws.com",
        "GetSecretValue",
        Shape::Plain,
    ),
    (20, "ecr.amazonaws.com", "BatchGetImage", Shape::Plain),
    (
        10,
        "ecr.amazonaws.com",
        "GetAuthorizationToken",
        Shape::Plain,
    ),
    (10, "iam.amazonaws.com", "GetRole", Shape::Plain),
    (
        10,
        "cloudformation.amazonaws.com",
        "DescribeStacks",
        Shape::Plain,
    ),
    (10, "sns.amazonaws.com", "Publish", Shape::Plain),
    (15, "sqs.amazonaws.com", "SendMessage", Shape::Plain),
    (
        10,
        "elasticloadbalancing.amazonaws.com",
        "DescribeTargetHealth",
        Shape::Plain,
    ),
];

fn weighted(rng: &mut Rng, kinds: &'static [EventKind]) -> &'static EventKind {
    let total: u64 = kinds.iter().map(|k| u64::from(k.0)).sum();
    let mut x = rng.below(total);
    for kind in kinds {
        if x < u64::from(kind.0) {
            return kind;
        }
        x -= u64::from(kind.0);
    }
    &kinds[0]
}

/// Who makes a call.
enum Caller {
    /// The analysed role, through a session.
    Target,
    /// Another role (index), through a session.
    Role(u64),
    /// An IAM user (index).
    User(u64),
    /// An AWS service event (not an API call of a principal).
    Service,
}

fn uuid(rng: &mut Rng, out: &mut String) {
    let a = rng.next();
    let b = rng.next();
    let _ = write!(
        out,
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    );
}

fn identity(rng: &mut Rng, caller: &Caller, out: &mut String) {
    match caller {
        Caller::Target | Caller::Role(_) => {
            let name = match caller {
                Caller::Role(i) => format!(
                    "svc-{i:02}-{}",
                    ["app", "batch", "etl", "web"][*i as usize % 4]
                ),
                _ => "ci-deployer".to_string(),
            };
            let session = rng.below(500);
            let _ = write!(
                out,
                r#"{{"type":"AssumedRole","principalId":"AROAEXAMPLE{id:06}:session-{session}","arn":"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/session-{session}","accountId":"{ACCOUNT}","accessKeyId":"ASIAEXAMPLE{key:09}","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"AROAEXAMPLE{id:06}","arn":"arn:aws:iam::{ACCOUNT}:role/{name}","accountId":"{ACCOUNT}","userName":"{name}"}},"webIdFederationData":{{}},"attributes":{{"creationDate":"2025-03-01T00:00:00Z","mfaAuthenticated":"false"}}}}}}"#,
                id = name.len() * 7919 % 1_000_000,
                key = rng.below(1_000_000_000),
            );
        }
        Caller::User(i) => {
            let _ = write!(
                out,
                r#"{{"type":"IAMUser","principalId":"AIDAEXAMPLE{i:06}","arn":"arn:aws:iam::{ACCOUNT}:user/user-{i}","accountId":"{ACCOUNT}","accessKeyId":"AKIAEXAMPLE{i:09}","userName":"user-{i}"}}"#
            );
        }
        Caller::Service => {
            out.push_str(r#"{"type":"AWSService","invokedBy":"cloudtrail.amazonaws.com"}"#)
        }
    }
}

/// Writes one record.
fn record(rng: &mut Rng, time: i64, region: &str, out: &mut String) -> bool {
    let roll = rng.below(1000);
    let caller = if roll < 80 {
        Caller::Target
    } else if roll < 90 {
        Caller::Service
    } else if roll < 130 {
        Caller::User(rng.below(20))
    } else {
        Caller::Role(rng.below(80))
    };
    let target = matches!(caller, Caller::Target);
    let kind = weighted(rng, if target { ROLE_EVENTS } else { OTHER_EVENTS });
    let (_, source, name, shape) = *kind;
    let time = jiff::Timestamp::from_second(time).unwrap();
    let mut request = String::new();
    let mut response = String::from("null");
    let mut additional = String::new();
    let mut resources = String::new();
    let bucket = if target {
        format!("ci-artifacts-{ACCOUNT}")
    } else {
        format!("data-{}-{ACCOUNT}", rng.below(12))
    };
    let data = matches!(shape, Shape::S3Object | Shape::LambdaInvoke | Shape::Dynamo);
    match shape {
        Shape::S3Object => {
            let key = format!(
                "builds/{}/part-{:05}.bin",
                rng.below(400),
                rng.below(100_000)
            );
            let sse = target || rng.chance(300);
            let _ = write!(
                request,
                r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","key":"{key}""#
            );
            if sse && matches!(name, "PutObject" | "CreateMultipartUpload") {
                let _ = write!(
                    request,
                    r#","x-amz-server-side-encryption":"aws:kms","x-amz-server-side-encryption-aws-kms-key-id":"{KMS_KEY}""#
                );
            }
            if name == "UploadPart" {
                let _ = write!(
                    request,
                    r#","partNumber":"{}","uploadId":"upl-{}""#,
                    rng.below(20) + 1,
                    rng.below(1 << 30)
                );
            }
            request.push('}');
            if sse {
                response = format!(
                    r#"{{"x-amz-server-side-encryption":"aws:kms","x-amz-server-side-encryption-aws-kms-key-id":"{KMS_KEY}"}}"#
                );
            }
            let _ = write!(
                additional,
                r#"{{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","bytesTransferredIn":{},"bytesTransferredOut":{},"AuthenticationMethod":"AuthHeader","x-amz-id-2":"EXAMPLE{}+id2","SSEApplied":"{}"}}"#,
                rng.below(1 << 20),
                rng.below(1 << 20),
                rng.below(1 << 40),
                if sse { "SSE_KMS" } else { "Default_SSE_S3" }
            );
            let _ = write!(
                resources,
                r#"[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::{bucket}/{key}"}},{{"accountId":"{ACCOUNT}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::{bucket}"}}]"#
            );
        }
        Shape::S3Bucket => {
            let _ = write!(
                request,
                r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","list-type":"2","prefix":"builds/","max-keys":"1000"}}"#
            );
            let _ = write!(
                resources,
                r#"[{{"accountId":"{ACCOUNT}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::{bucket}"}}]"#
            );
        }
        Shape::Ec2Describe => {
            let _ = write!(
                request,
                r#"{{"maxResults":1000,"filterSet":{{"items":[{{"name":"tag:Environment","valueSet":{{"items":[{{"value":"env-{}"}}]}}}},{{"name":"instance-state-name","valueSet":{{"items":[{{"value":"running"}}]}}}}]}}}}"#,
                rng.below(5)
            );
        }
        Shape::RunInstances => {
            response.clear();
            let _ = write!(
                request,
                r#"{{"instancesSet":{{"items":[{{"imageId":"ami-0abcdef{:09}","minCount":1,"maxCount":1}}]}},"instanceType":"t3.micro","iamInstanceProfile":{{"name":"ci-runner"}},"tagSpecificationSet":{{"items":[{{"resourceType":"instance","tags":[{{"key":"Name","value":"ci-{}"}}]}}]}}}}"#,
                rng.below(1_000_000_000),
                rng.below(10_000)
            );
            let _ = write!(
                response,
                r#"{{"requestId":"r-{}","reservationId":"r-0{:016x}","ownerId":"{ACCOUNT}","instancesSet":{{"items":[{{"instanceId":"i-0{:016x}","instanceState":{{"code":0,"name":"pending"}}}}]}}}}"#,
                rng.below(1 << 30),
                rng.next(),
                rng.next()
            );
        }
        Shape::LambdaInvoke | Shape::LambdaFunction | Shape::LambdaCreate => {
            let function = format!("fn-{}", rng.below(if target { 6 } else { 40 }));
            let arn = format!("arn:aws:lambda:{region}:{ACCOUNT}:function:{function}");
            if shape == Shape::LambdaCreate {
                let _ = write!(
                    request,
                    r#"{{"functionName":"{function}","runtime":"python3.12","role":"arn:aws:iam::{ACCOUNT}:role/lambda-exec-{}","handler":"app.handler","publish":true}}"#,
                    rng.below(3)
                );
            } else {
                let _ = write!(request, r#"{{"functionName":"{arn}"}}"#);
            }
            if shape == Shape::LambdaInvoke {
                let _ = write!(additional, r#"{{"functionVersion":"{arn}:$LATEST"}}"#);
                let _ = write!(
                    resources,
                    r#"[{{"accountId":"{ACCOUNT}","type":"AWS::Lambda::Function","ARN":"{arn}"}}]"#
                );
            }
        }
        Shape::Kms => {
            let _ = write!(
                request,
                r#"{{"encryptionContext":{{"aws:s3:arn":"arn:aws:s3:::{bucket}/builds/{}"}},"encryptionAlgorithm":"SYMMETRIC_DEFAULT","keyId":"{KMS_KEY}"}}"#,
                rng.below(1000)
            );
            let _ = write!(
                resources,
                r#"[{{"accountId":"{ACCOUNT}","type":"AWS::KMS::Key","ARN":"{KMS_KEY}"}}]"#
            );
        }
        Shape::Dynamo => {
            let table = if target {
                "deployments".to_string()
            } else {
                format!("table-{}", rng.below(15))
            };
            let _ = write!(
                request,
                r#"{{"tableName":"{table}","key":{{"pk":{{"S":"item-{}"}}}},"consistentRead":false}}"#,
                rng.below(1_000_000)
            );
            let _ = write!(
                resources,
                r#"[{{"accountId":"{ACCOUNT}","type":"AWS::DynamoDB::Table","ARN":"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}"}}]"#
            );
        }
        Shape::AssumeRole => {
            let _ = write!(
                request,
                r#"{{"roleArn":"arn:aws:iam::{ACCOUNT}:role/deploy-{}","roleSessionName":"s-{}","durationSeconds":3600}}"#,
                rng.below(4),
                rng.below(100_000)
            );
            response.clear();
            let _ = write!(
                response,
                r#"{{"credentials":{{"accessKeyId":"ASIAEXAMPLE{:09}","sessionToken":"IQoJb3JpZ2luX2VjEXAMPLE","expiration":"Mar 1, 2025, 1:00:00 AM"}},"assumedRoleUser":{{"assumedRoleId":"AROAEXAMPLE:s","arn":"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/s"}}}}"#,
                rng.below(1_000_000_000)
            );
        }
        Shape::Logs => {
            let _ = write!(
                request,
                r#"{{"logGroupName":"/aws/lambda/fn-{}","logStreamName":"2025/03/01/[$LATEST]{:016x}"}}"#,
                rng.below(40),
                rng.next()
            );
        }
        Shape::Plain => {}
    }
    let denied = if target {
        name == "CreateUser"
    } else {
        rng.chance(20)
    };
    out.push_str(r#"{"eventVersion":"1.09","userIdentity":"#);
    identity(rng, &caller, out);
    let _ = write!(
        out,
        r#","eventTime":"{}","eventSource":"{source}","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"{}","userAgent":"{}","#,
        time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        if matches!(caller, Caller::Service) {
            "cloudtrail.amazonaws.com".to_string()
        } else {
            format!("192.0.2.{}", rng.below(250))
        },
        if target {
            "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64 command/deploy"
        } else {
            "aws-sdk-java/2.25.0 Linux/5.10 OpenJDK_64-Bit_Server_VM/17.0.9 Java/17.0.9 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/standard"
        }
    );
    if denied {
        out.push_str(r#""errorCode":"AccessDenied","errorMessage":"User is not authorized to perform this operation because no identity-based policy allows the action","#);
    }
    let _ = write!(
        out,
        r#""requestParameters":{},"responseElements":{},"#,
        if request.is_empty() { "null" } else { &request },
        if denied { "null" } else { &response }
    );
    if !additional.is_empty() {
        let _ = write!(out, r#""additionalEventData":{additional},"#);
    }
    out.push_str(r#""requestID":""#);
    uuid(rng, out);
    out.push_str(r#"","eventID":""#);
    uuid(rng, out);
    let _ = write!(
        out,
        r#"","readOnly":{},"#,
        ["Get", "List", "Describe", "Head"]
            .iter()
            .any(|p| name.starts_with(p))
    );
    if !resources.is_empty() {
        let _ = write!(out, r#""resources":{resources},"#);
    }
    let _ = write!(
        out,
        r#""eventType":"{}","managementEvent":{},"recipientAccountId":"{ACCOUNT}","eventCategory":"{}","tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"{}.{region}.amazonaws.com"}}}}"#,
        if matches!(caller, Caller::Service) {
            "AwsServiceEvent"
        } else {
            "AwsApiCall"
        },
        !data,
        if data { "Data" } else { "Management" },
        source.trim_end_matches(".amazonaws.com"),
    );
    target && !matches!(caller, Caller::Service)
}

/// A generated log set.
struct LogSet {
    files: u64,
    records: u64,
    target_records: u64,
    json_bytes: u64,
    gzip_bytes: u64,
    seconds: f64,
}

/// Writes `records` records in files of `per_file`, on every core (generation is not measured).
fn generate(dir: &Path, records: u64, per_file: u64, seed: u64) -> LogSet {
    let started = Instant::now();
    let files = records.div_ceil(per_file);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let totals: Vec<(u64, u64, u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut text = String::with_capacity(per_file as usize * 2048);
                    let (mut written, mut target, mut json, mut gz) = (0u64, 0u64, 0u64, 0u64);
                    let mut index = t;
                    while index < files {
                        let mut rng = Rng(seed ^ index.wrapping_mul(0x2545_F491_4F6C_DD1D));
                        let region = REGIONS[(index % REGIONS.len() as u64) as usize];
                        let slot = index / REGIONS.len() as u64;
                        let start = START_SECOND + slot as i64 * 300;
                        let count = per_file.min(records - index * per_file);
                        text.clear();
                        text.push_str(r#"{"Records":["#);
                        for i in 0..count {
                            if i > 0 {
                                text.push(',');
                            }
                            let at = start + (i * 300 / count) as i64;
                            if record(&mut rng, at, region, &mut text) {
                                target += 1;
                            }
                        }
                        text.push_str("]}");
                        let day = jiff::Timestamp::from_second(start).unwrap();
                        let folder = dir.join(format!(
                            "AWSLogs/{ACCOUNT}/CloudTrail/{region}/{}",
                            day.strftime("%Y/%m/%d")
                        ));
                        std::fs::create_dir_all(&folder).unwrap();
                        let path = folder.join(format!(
                            "{ACCOUNT}_CloudTrail_{region}_{}_{:016X}.json.gz",
                            jiff::Timestamp::from_second(start + 300)
                                .unwrap()
                                .strftime("%Y%m%dT%H%MZ"),
                            rng.next()
                        ));
                        let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
                        let mut encoder = GzEncoder::new(file, Compression::fast());
                        encoder.write_all(text.as_bytes()).unwrap();
                        encoder.finish().unwrap().flush().unwrap();
                        written += count;
                        json += text.len() as u64;
                        gz += std::fs::metadata(&path).unwrap().len();
                        index += threads;
                    }
                    (written, target, json, gz)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sum = |f: fn(&(u64, u64, u64, u64)) -> u64| totals.iter().map(f).sum::<u64>();
    LogSet {
        files,
        records: sum(|t| t.0),
        target_records: sum(|t| t.1),
        json_bytes: sum(|t| t.2),
        gzip_bytes: sum(|t| t.3),
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn describe(set: &LogSet, label: &str) {
    println!(
        "  {label}: {} records ({} of {ROLE}) in {} files, {:.0} MiB JSON ({} bytes/record), {:.0} MiB gzip; written in {:.1} s",
        set.records,
        set.target_records,
        set.files,
        set.json_bytes as f64 / 1048576.0,
        set.json_bytes / set.records.max(1),
        set.gzip_bytes as f64 / 1048576.0,
        set.seconds
    );
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if files::is_log_file(&path.to_string_lossy()) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn matcher() -> PrincipalMatcher {
    PrincipalMatcher::new(PrincipalArn::parse(ROLE).unwrap())
}

fn administrator_access() -> Permissions {
    let text =
        std::fs::read_to_string(root().join("examples/analyze/AdministratorAccess.json")).unwrap();
    Permissions {
        policies: vec![
            Policy::parse(
                PolicySource {
                    kind: "file".into(),
                    name: "AdministratorAccess".into(),
                },
                &text,
            )
            .unwrap(),
        ],
        boundary: None,
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child process measured: wall time and peak RSS (`VmHWM`, polled every 2 ms).
struct Measured {
    status: ExitStatus,
    wall: Duration,
    peak_kib: u64,
}

fn high_water_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn measure(command: &mut Command) -> Measured {
    let started = Instant::now();
    let mut child = command.spawn().expect("failed to start the child");
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Some(kib) = high_water_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Measured {
                status,
                wall: started.elapsed(),
                peak_kib: peak,
            };
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn binary(dir: &Path, output: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_autoguardrails"));
    command
        .args(["analyze", "--role-arn", ROLE, "--from-files"])
        .arg(dir)
        .arg("--current-policy")
        .arg(root().join("examples/analyze/AdministratorAccess.json"))
        .args([
            "--guardrails",
            "none",
            "--scope-resources",
            "--risk-threshold",
            "100",
            "--quiet",
            "--output",
        ])
        .arg(output)
        .env_remove("AGR_AWS_ENDPOINT_URL")
        .env_remove("AGR_BEDROCK_MODEL_ID")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Records per second of the `--from-files` path on this thread, and where the time goes.
fn throughput(work: &Path, records: u64, per_file: u64) {
    println!("\n## throughput: records parsed and matched per second (the --from-files path)");
    let dir = work.join("throughput");
    let set = generate(&dir, records, per_file, 1);
    describe(&set, "log set");
    let files = log_files(&dir);
    // Warm the page cache so every pass reads from memory.
    for f in &files {
        std::fs::read(f).unwrap();
    }
    // 1. gzip only.
    let started = Instant::now();
    let mut buffer = Vec::new();
    let mut inflated = 0u64;
    for f in &files {
        buffer.clear();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(f).unwrap())
            .read_to_end(&mut buffer)
            .unwrap();
        inflated += buffer.len() as u64;
    }
    let gunzip = started.elapsed().as_secs_f64();
    // 2. gzip + JSON parse of every record (no matching).
    let started = Instant::now();
    let mut parsed = 0u64;
    for f in &files {
        buffer.clear();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(f).unwrap())
            .read_to_end(&mut buffer)
            .unwrap();
        parsed += for_each_record(&buffer, |r| {
            std::hint::black_box(r.event_name.get());
        })
        .unwrap();
    }
    let parse = started.elapsed().as_secs_f64();
    assert_eq!(parsed, set.records);
    // 3. the real path: files::read_directory into a Usage (principal matching, aggregation),
    // on one thread (the goal's figure), then on every core (what the binary does).
    let mut best = f64::MAX;
    let mut usage = Usage::new(matcher(), None);
    for _ in 0..2 {
        usage = Usage::new(matcher(), None);
        let started = Instant::now();
        files::read_directory_with(&dir, &mut usage, &mut |_, _| {}, 1).unwrap();
        best = best.min(started.elapsed().as_secs_f64());
    }
    let mut best_all = f64::MAX;
    for _ in 0..2 {
        let mut all = Usage::new(matcher(), None);
        let started = Instant::now();
        files::read_directory(&dir, &mut all, &mut |_, _| {}).unwrap();
        best_all = best_all.min(started.elapsed().as_secs_f64());
        assert_eq!(all.counters, usage.counters);
        assert_eq!(all.groups.len(), usage.groups.len());
    }
    assert_eq!(usage.counters.events_read, set.records);
    let rate = set.records as f64 / best;
    println!(
        "  gzip only: {:.2} s ({:.0} MiB/s of JSON); gzip + parse: {:.2} s ({:.0} records/s)",
        gunzip,
        inflated as f64 / 1048576.0 / gunzip,
        parse,
        set.records as f64 / parse
    );
    println!(
        "  files::read_directory (parse + match + aggregate), best of 2: {:.2} s = {:.0} records/s, {} matched ({} groups)  [goal >= 200,000/s: {}]",
        best,
        rate,
        usage.counters.events_matched,
        usage.groups.len(),
        if rate >= 200_000.0 { "met" } else { "MISSED" }
    );
    let rate_all = set.records as f64 / best_all;
    println!(
        "  files::read_directory on {} threads, best of 2: {:.2} s = {:.0} records/s ({:.2}x one thread)",
        files::default_workers(),
        best_all,
        rate_all,
        rate_all / rate
    );
    line("records_per_second", format!("{rate:.0}"), "records/s");
    line(
        "records_per_second_all_cores",
        format!("{rate_all:.0}"),
        "records/s",
    );
    line(
        "records_per_second_gzip_parse_only",
        format!("{:.0}", set.records as f64 / parse),
        "records/s",
    );
    line(
        "gzip_mib_per_second",
        format!("{:.0}", inflated as f64 / 1048576.0 / gunzip),
        "MiB/s",
    );
    // 4. the pure analysis on that usage.
    let started = Instant::now();
    let catalog = Catalog::embedded().unwrap();
    let catalog_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let report = proposal::analyze(
        catalog,
        &usage,
        &administrator_access(),
        &Settings {
            scope_resources: true,
            policy_type: PolicyType::Managed,
            preset: Preset::None,
            rules: Rules::preset(Preset::None),
            exclude_services: BTreeSet::new(),
            suppress_actions: BTreeSet::new(),
            risk_threshold: 1.0,
        },
        &Context {
            requested_days: None,
            sources: Vec::new(),
            principal_created: None,
            permissions_origin: "bench".into(),
        },
    )
    .unwrap();
    println!(
        "  snapshot load {:.0} ms; proposal::analyze {:.0} ms ({} actions kept)",
        catalog_ms,
        started.elapsed().as_secs_f64() * 1e3,
        report.diff.kept.len()
    );
    // 5. the real binary end to end.
    let output = work.join("throughput-proposal.json");
    let run = measure(&mut binary(&dir, &output));
    assert!(
        run.status.code().is_some_and(|c| c == 0),
        "analyze failed: {:?}",
        run.status
    );
    println!(
        "  real binary end to end: {:.2} s = {:.0} records/s, peak RSS {:.1} MiB",
        run.wall.as_secs_f64(),
        set.records as f64 / run.wall.as_secs_f64(),
        mib(run.peak_kib)
    );
    line(
        "binary_records_per_second",
        format!("{:.0}", set.records as f64 / run.wall.as_secs_f64()),
        "records/s",
    );
    discard(&dir);
}

/// Peak memory of the real binary on many records (a process of its own: a fresh heap).
fn memory(work: &Path, records: u64, per_file: u64) {
    println!("\n## memory: peak RSS of the real binary, {records} records");
    let sample = work.join("sample-proposal.json");
    let small = measure(&mut binary(&root().join("examples/analyze/logs"), &sample));
    assert!(small.status.success());
    println!(
        "  bundled sample logs (examples/analyze/logs): peak RSS {:.1} MiB in {:.2} s",
        mib(small.peak_kib),
        small.wall.as_secs_f64()
    );
    let dir = work.join("memory");
    let set = generate(&dir, records, per_file, 2);
    describe(&set, "log set");
    let output = work.join("memory-proposal.json");
    let run = measure(&mut binary(&dir, &output));
    assert!(run.status.success(), "analyze failed: {:?}", run.status);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    let read = report["coverage"]["eventsRead"]
        .as_u64()
        .unwrap_or_default();
    assert_eq!(read, set.records);
    println!(
        "  {} records read, {} matched: {:.1} s = {:.0} records/s; peak RSS {:.1} MiB  [goal < 100 MiB: {}]",
        read,
        report["coverage"]["eventsMatched"],
        run.wall.as_secs_f64(),
        set.records as f64 / run.wall.as_secs_f64(),
        mib(run.peak_kib),
        if mib(run.peak_kib) < 100.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    line(
        "peak_rss_mib_sample_logs",
        format!("{:.1}", mib(small.peak_kib)),
        "MiB",
    );
    line("peak_rss_mib", format!("{:.1}", mib(run.peak_kib)), "MiB");
    line("memory_records", set.records, "records");
    line(
        "memory_records_per_second",
        format!("{:.0}", set.records as f64 / run.wall.as_secs_f64()),
        "records/s",
    );
    discard(&dir);
}

fn actions_of_trailscraper(policy: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for statement in policy["Statement"].as_array().into_iter().flatten() {
        let actions = match &statement["Action"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        for a in actions {
            out.insert(a.to_ascii_lowercase(), a);
        }
    }
    out
}

fn actions_of_proposal(report: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for policy in report["proposal"]["policies"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for statement in policy["document"]["Statement"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if statement["Effect"] != "Allow" {
                continue;
            }
            for a in statement["Action"].as_array().into_iter().flatten() {
                if let Some(a) = a.as_str() {
                    out.insert(a.to_ascii_lowercase(), a.to_string());
                }
            }
        }
    }
    out
}

fn resource_count(statements: &Value, key: &str) -> usize {
    let mut set = BTreeSet::new();
    for s in statements.as_array().into_iter().flatten() {
        match &s[key] {
            Value::String(r) => {
                set.insert(r.clone());
            }
            Value::Array(items) => {
                set.extend(items.iter().filter_map(|v| v.as_str().map(str::to_string)))
            }
            _ => {}
        }
    }
    set.len()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Why trailscraper has `action` and we do not.
fn only_trailscraper(action: &str, report: &Value, catalog: &Catalog) -> String {
    let unknown = report["unknownActions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| {
            u["candidate"]
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case(action))
        });
    if catalog.lookup(action).is_none() {
        let event = unknown
            .and_then(|u| u["event"].as_str())
            .map(|e| format!(" (event {e})"))
            .unwrap_or_default();
        if action.eq_ignore_ascii_case("lambda:Invoke") {
            return format!(
                "not an IAM action{event}: trailscraper writes the event name; Lambda authorizes Invoke as lambda:InvokeFunction, which we emit"
            );
        }
        return format!(
            "not an IAM action in the snapshot{event}: trailscraper writes <prefix>:<eventName>; we report the event in unknownActions and emit nothing"
        );
    }
    if let Some(denied) = report["diff"]["usedButNotGranted"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| {
            d["action"]
                .as_str()
                .is_some_and(|a| a.eq_ignore_ascii_case(action))
        })
    {
        return format!(
            "every call failed ({}): trailscraper grants failed calls too; we list it in diff.usedButNotGranted and never propose what is not granted today",
            denied["errorCodes"]
        );
    }
    for (name, e) in report["proposal"]["evidence"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if name.eq_ignore_ascii_case(action) && e["decision"] != "kept" {
            return format!("our decision {}: {}", e["decision"], e["detail"]);
        }
    }
    "UNEXPLAINED".into()
}

/// Why we have `action` and trailscraper does not.
fn only_ours(action: &str, report: &Value) -> String {
    let e = &report["proposal"]["evidence"][action];
    let reasons = strings(&e["reasons"]).join("; ");
    let events = strings(&e["events"]).join(", ");
    if e["basis"] == "inferred" {
        format!(
            "inferred from {}: {reasons}",
            strings(&e["inferredFrom"]).join(", ")
        )
    } else if reasons.is_empty() {
        format!("observed ({events}); trailscraper has no statement for it")
    } else {
        format!("observed as {events}: {reasons}")
    }
}

/// The same logs through trailscraper and the real binary, in the same run. (Both children are
/// reaped by `try_wait` in the polling loop.)
#[allow(clippy::zombie_processes)]
fn trailscraper(work: &Path, records: u64, per_file: u64) {
    println!("\n## trailscraper: the same logs through both tools (same run)");
    let tool = std::env::var("AGR_BENCH_TRAILSCRAPER")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".venv-bench/bin/trailscraper"));
    if !tool.exists() {
        println!(
            "  SKIPPED: {} not found (run scripts/bench-deps.sh)",
            tool.display()
        );
        return;
    }
    let version = Command::new(&tool).arg("--version").output().unwrap();
    println!("  {}", String::from_utf8_lossy(&version.stdout).trim());
    let dir = work.join("trailscraper");
    let set = generate(&dir, records, per_file, 3);
    describe(&set, "log set");
    // Ours: the real binary, end to end (snapshot load, scan, analysis, proposal.json).
    let output = work.join("ours-proposal.json");
    let ours = measure(&mut binary(&dir, &output));
    assert!(ours.status.success(), "analyze failed: {:?}", ours.status);
    // And on one thread (`--scan-threads 1`), for the per-core comparison.
    let one =
        measure(binary(&dir, &work.join("ours-one-thread.json")).args(["--scan-threads", "1"]));
    assert!(one.status.success(), "analyze failed: {:?}", one.status);
    // trailscraper: select | generate, as its README documents.
    let policy_path = work.join("trailscraper-policy.json");
    let started = Instant::now();
    let mut select = Command::new(&tool)
        .args(["select", "--log-dir"])
        .arg(&dir)
        .args(["--filter-assumed-role-arn", ROLE])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut generate_child = Command::new(&tool)
        .arg("generate")
        .stdin(Stdio::from(select.stdout.take().unwrap()))
        .stdout(std::fs::File::create(&policy_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut select_done, mut generate_done) = (None, None);
    let (mut select_peak, mut generate_peak) = (0u64, 0u64);
    while select_done.is_none() || generate_done.is_none() {
        if select_done.is_none() {
            if let Some(k) = high_water_kib(select.id()) {
                select_peak = select_peak.max(k);
            }
            if let Some(s) = select.try_wait().unwrap() {
                select_done = Some((s, started.elapsed()));
            }
        }
        if generate_done.is_none() {
            if let Some(k) = high_water_kib(generate_child.id()) {
                generate_peak = generate_peak.max(k);
            }
            if let Some(s) = generate_child.try_wait().unwrap() {
                generate_done = Some((s, started.elapsed()));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let (select_status, select_wall) = select_done.unwrap();
    let (generate_status, theirs) = generate_done.unwrap();
    assert!(
        select_status.success() && generate_status.success(),
        "trailscraper failed"
    );
    let ratio = theirs.as_secs_f64() / ours.wall.as_secs_f64();
    println!(
        "  autoguardrails analyze (real binary): {:.2} s = {:.0} records/s, peak RSS {:.1} MiB",
        ours.wall.as_secs_f64(),
        set.records as f64 / ours.wall.as_secs_f64(),
        mib(ours.peak_kib)
    );
    println!(
        "  trailscraper select | generate: {:.2} s = {:.0} records/s (select alone {:.2} s), peak RSS select {:.1} MiB, generate {:.1} MiB",
        theirs.as_secs_f64(),
        set.records as f64 / theirs.as_secs_f64(),
        select_wall.as_secs_f64(),
        mib(select_peak),
        mib(generate_peak)
    );
    let ratio_one = theirs.as_secs_f64() / one.wall.as_secs_f64();
    println!(
        "  the same binary with --scan-threads 1: {:.2} s = {:.0} records/s",
        one.wall.as_secs_f64(),
        set.records as f64 / one.wall.as_secs_f64()
    );
    println!(
        "  ratio trailscraper / autoguardrails: {ratio:.1}x  [goal >= 20x: {}]; one scan thread: {ratio_one:.1}x",
        if ratio >= 20.0 { "met" } else { "MISSED" }
    );
    line(
        "trailscraper_ratio_one_thread",
        format!("{ratio_one:.1}"),
        "x",
    );
    line("trailscraper_records", set.records, "records");
    line(
        "trailscraper_seconds",
        format!("{:.2}", theirs.as_secs_f64()),
        "s",
    );
    line(
        "ours_seconds_same_logs",
        format!("{:.2}", ours.wall.as_secs_f64()),
        "s",
    );
    line("trailscraper_ratio", format!("{ratio:.1}"), "x");
    // The actions where the policies differ, each with its reason.
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    let policy: Value =
        serde_json::from_str(&std::fs::read_to_string(&policy_path).unwrap()).unwrap();
    let catalog = Catalog::embedded().unwrap();
    let theirs_actions = actions_of_trailscraper(&policy);
    let ours_actions = actions_of_proposal(&report);
    let common = theirs_actions
        .keys()
        .filter(|k| ours_actions.contains_key(*k))
        .count();
    println!(
        "  actions: trailscraper {}, autoguardrails {}, in both {common}",
        theirs_actions.len(),
        ours_actions.len()
    );
    let mut unexplained = 0;
    println!("  only in trailscraper's policy:");
    for (key, action) in &theirs_actions {
        if !ours_actions.contains_key(key) {
            let why = only_trailscraper(action, &report, catalog);
            unexplained += usize::from(why == "UNEXPLAINED");
            println!("    - {action}: {why}");
        }
    }
    println!("  only in ours:");
    for (key, action) in &ours_actions {
        if !theirs_actions.contains_key(key) {
            println!("    - {action}: {}", only_ours(action, &report));
        }
    }
    let ours_resources: usize = report["proposal"]["policies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| resource_count(&p["document"]["Statement"], "Resource"))
        .sum();
    println!(
        "  resources: trailscraper lists {} distinct ARNs (every object key a call named), ours {} (objects generalized to bucket/*, \"*\" where a call named none); documents: trailscraper 1 of {} characters, ours {} within IAM's 6,144",
        resource_count(&policy["Statement"], "Resource"),
        ours_resources,
        serde_json::to_string(&policy).unwrap().len(),
        report["proposal"]["policies"]
            .as_array()
            .map_or(0, Vec::len)
    );
    line(
        "trailscraper_only_actions",
        theirs_actions
            .keys()
            .filter(|k| !ours_actions.contains_key(*k))
            .count(),
        "actions",
    );
    line(
        "ours_only_actions",
        ours_actions
            .keys()
            .filter(|k| !theirs_actions.contains_key(*k))
            .count(),
        "actions",
    );
    line("unexplained_differences", unexplained, "actions");
    discard(&dir);
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the arguments.
    let phases = std::env::var("AGR_BENCH_PHASES")
        .unwrap_or_else(|_| "throughput,trailscraper,memory".into());
    let per_file = setting("AGR_BENCH_FILE_RECORDS", 1_000).max(1);
    let work = std::env::temp_dir().join(format!("agr-bench-analyze-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let started = Instant::now();
    println!(
        "analyze bench: {} cores, temp dir {}, {per_file} records per log file",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        work.display()
    );
    for phase in phases.split(',').map(str::trim) {
        match phase {
            "throughput" => throughput(&work, setting("AGR_BENCH_RECORDS", 1_000_000), per_file),
            "trailscraper" => trailscraper(
                &work,
                setting("AGR_BENCH_TRAILSCRAPER_RECORDS", 300_000),
                per_file,
            ),
            "memory" => memory(
                &work,
                setting("AGR_BENCH_MEMORY_RECORDS", 10_000_000),
                per_file,
            ),
            "" => {}
            other => panic!("unknown phase {other}"),
        }
    }
    discard(&work);
    println!(
        "\nanalyze bench done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
