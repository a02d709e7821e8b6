//! One test per entry of the CloudTrail ↔ IAM mismatch table, plus the rules around it.

use autoguardrails::analyze::catalog::Catalog;
use autoguardrails::analyze::mapping::{MISMATCHES, Mapped, map_event};

fn check(source: &str, event: &str) {
    let entry = MISMATCHES
        .iter()
        .find(|m| m.source == source && m.event == event)
        .unwrap_or_else(|| panic!("{source} {event} is not in the table"));
    let catalog = Catalog::embedded().unwrap();
    match map_event(catalog, source, event) {
        Mapped::Actions { actions, reason } => {
            assert_eq!(actions, entry.actions, "{source} {event}");
            assert_eq!(reason, Some(entry.reason));
            for a in actions {
                assert!(catalog.lookup(&a).is_some(), "{a} unknown to the snapshot");
            }
        }
        Mapped::NoPermission { reason } => {
            assert!(entry.actions.is_empty());
            assert_eq!(reason, entry.reason);
        }
        Mapped::Unknown { candidate } => panic!("{source} {event} maps to unknown {candidate}"),
    }
}

macro_rules! mismatch_tests {
    ($($name:ident: $source:literal, $event:literal;)*) => {
        $( #[test] fn $name() { check($source, $event); } )*

        #[test]
        fn every_table_entry_has_a_test() {
            let tested = [$(($source, $event)),*];
            for m in MISMATCHES {
                assert!(tested.contains(&(m.source, m.event)), "no test for {} {}", m.source, m.event);
            }
        }
    };
}

mismatch_tests! {
    s3_list_buckets: "s3.amazonaws.com", "ListBuckets";
    s3_head_object: "s3.amazonaws.com", "HeadObject";
    s3_head_bucket: "s3.amazonaws.com", "HeadBucket";
    s3_list_objects: "s3.amazonaws.com", "ListObjects";
    s3_list_objects_v2: "s3.amazonaws.com", "ListObjectsV2";
    s3_list_object_versions: "s3.amazonaws.com", "ListObjectVersions";
    s3_create_multipart_upload: "s3.amazonaws.com", "CreateMultipartUpload";
    s3_upload_part: "s3.amazonaws.com", "UploadPart";
    s3_upload_part_copy: "s3.amazonaws.com", "UploadPartCopy";
    s3_complete_multipart_upload: "s3.amazonaws.com", "CompleteMultipartUpload";
    s3_copy_object: "s3.amazonaws.com", "CopyObject";
    s3_delete_objects: "s3.amazonaws.com", "DeleteObjects";
    s3_list_multipart_uploads: "s3.amazonaws.com", "ListMultipartUploads";
    s3_list_parts: "s3.amazonaws.com", "ListParts";
    s3_get_bucket_encryption: "s3.amazonaws.com", "GetBucketEncryption";
    s3_put_bucket_encryption: "s3.amazonaws.com", "PutBucketEncryption";
    s3_delete_bucket_encryption: "s3.amazonaws.com", "DeleteBucketEncryption";
    s3_get_bucket_lifecycle: "s3.amazonaws.com", "GetBucketLifecycle";
    s3_get_bucket_lifecycle_configuration: "s3.amazonaws.com", "GetBucketLifecycleConfiguration";
    s3_put_bucket_lifecycle: "s3.amazonaws.com", "PutBucketLifecycle";
    s3_put_bucket_lifecycle_configuration: "s3.amazonaws.com", "PutBucketLifecycleConfiguration";
    s3_delete_bucket_lifecycle: "s3.amazonaws.com", "DeleteBucketLifecycle";
    s3_get_bucket_replication: "s3.amazonaws.com", "GetBucketReplication";
    s3_put_bucket_replication: "s3.amazonaws.com", "PutBucketReplication";
    s3_get_bucket_public_access_block: "s3.amazonaws.com", "GetBucketPublicAccessBlock";
    lambda_invoke: "lambda.amazonaws.com", "Invoke";
    sts_get_caller_identity: "sts.amazonaws.com", "GetCallerIdentity";
    signin_console_login: "signin.amazonaws.com", "ConsoleLogin";
    signin_switch_role: "signin.amazonaws.com", "SwitchRole";
    kms_generate_data_key_without_plaintext: "kms.amazonaws.com", "GenerateDataKeyWithoutPlaintext";
    tagging_get_resources: "tagging.amazonaws.com", "GetResources";
    monitoring_put_metric_data: "monitoring.amazonaws.com", "PutMetricData";
    dynamodb_streams_get_records: "streams.dynamodb.amazonaws.com", "GetRecords";
    dynamodb_streams_get_shard_iterator: "streams.dynamodb.amazonaws.com", "GetShardIterator";
    dynamodb_streams_describe_stream: "streams.dynamodb.amazonaws.com", "DescribeStream";
    dynamodb_streams_list_streams: "streams.dynamodb.amazonaws.com", "ListStreams";
}

#[test]
fn lambda_versioned_event_names_map_to_the_action() {
    let catalog = Catalog::embedded().unwrap();
    for (event, action) in [
        ("UpdateFunctionCode20150331v2", "lambda:UpdateFunctionCode"),
        ("CreateFunction20150331", "lambda:CreateFunction"),
        ("GetFunction20150331v2", "lambda:GetFunction"),
    ] {
        match map_event(catalog, "lambda.amazonaws.com", event) {
            Mapped::Actions { actions, .. } => assert_eq!(actions, vec![action.to_string()]),
            other => panic!("{event}: {other:?}"),
        }
    }
}

#[test]
fn unknown_events_are_reported_never_emitted() {
    let catalog = Catalog::embedded().unwrap();
    assert!(matches!(
        map_event(
            catalog,
            "ec2.amazonaws.com",
            "DescribeInstanceTopologyNextGen"
        ),
        Mapped::Unknown { .. }
    ));
}

/// API Gateway's management events map to the HTTP method; its named actions stay as named.
#[test]
fn api_gateway_management_calls_map_to_their_http_method() {
    use autoguardrails::analyze::mapping::REASON_API_GATEWAY_METHOD;
    let catalog = Catalog::embedded().unwrap();
    for (event, action) in [
        ("GetRestApis", "apigateway:GET"),
        ("CreateDeployment", "apigateway:POST"),
        ("UpdateStage", "apigateway:PATCH"),
        ("DeleteRestApi", "apigateway:DELETE"),
        ("PutIntegration", "apigateway:PUT"),
        ("GetApis", "apigateway:GET"),
    ] {
        assert_eq!(
            map_event(catalog, "apigateway.amazonaws.com", event),
            Mapped::Actions {
                actions: vec![action.to_string()],
                reason: Some(REASON_API_GATEWAY_METHOD)
            },
            "{event}"
        );
    }
    assert_eq!(
        map_event(catalog, "apigateway.amazonaws.com", "CreatePortal"),
        Mapped::Actions {
            actions: vec!["apigateway:CreatePortal".to_string()],
            reason: None
        }
    );
    assert!(matches!(
        map_event(
            catalog,
            "apigateway.amazonaws.com",
            "ImportDocumentationParts"
        ),
        Mapped::Unknown { .. }
    ));
}
