//! CloudTrail records as the analyzer reads them: a borrowed, tolerant view of one record (only
//! the fields the analysis uses), the principal matcher over `userIdentity`, and the streaming
//! reader of a log file's `Records` array that hands records one at a time to a callback. It must
//! not map events to IAM actions (that is `mapping`) nor do I/O beyond the byte slice given.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::principal::PrincipalArn;

/// Why a log document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The document is not JSON of the CloudTrail log file shape.
    #[error("not a CloudTrail log document: {0}")]
    Document(String),
    /// A single record (LookupEvents' `CloudTrailEvent`) is not a CloudTrail record.
    #[error("not a CloudTrail record: {0}")]
    Record(String),
}

impl RecordError {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        "InvalidRecord"
    }
}

/// A string field that tolerates any JSON type (non-strings read as absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    /// The string, when the field held one.
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Text::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        deserializer.deserialize_any(TextVisitor(PhantomData))
    }
}

/// An object field that tolerates any JSON type (non-objects read as absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object<T>(pub Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|v| Object(Some(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Object(None))
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(Object(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Object(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Object(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Object(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Object(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Object(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Object(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Object(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Object::deserialize(d)
            }
        }
        deserializer.deserialize_any(ObjectVisitor(PhantomData))
    }
}

impl<T> Object<T> {
    /// The object, when the field held one.
    pub fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

/// A nested object of a record kept as its JSON text until it is asked for. Most records of a
/// log belong to other principals: their nested objects are skipped, never parsed (decision
/// 129). Absent, `null` and non-object values read as absent when parsed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nested<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Nested<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<&'a RawValue>::deserialize(deserializer).map(Nested)
    }
}

impl<'a> Nested<'a> {
    /// The JSON text of the value, when the field was present.
    pub fn text(&self) -> Option<&'a str> {
        self.0.map(RawValue::get)
    }
    /// The value as the object `T`, when it is one.
    pub fn object<T: Deserialize<'a>>(&self) -> Option<T> {
        serde_json::from_str::<Object<T>>(self.text()?)
            .ok()
            .and_then(|o| o.0)
    }
    /// The value as an array of `T`, empty when it is none.
    pub fn array<T: Deserialize<'a>>(&self) -> Vec<T> {
        self.text()
            .and_then(|text| serde_json::from_str::<Option<Vec<T>>>(text).ok())
            .flatten()
            .unwrap_or_default()
    }
}

/// `userIdentity.sessionContext.sessionIssuer`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SessionIssuer<'a> {
    /// The role (or user) that issued the session.
    #[serde(borrow, default)]
    pub arn: Text<'a>,
}

/// `userIdentity.sessionContext`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionContext<'a> {
    /// The issuer.
    #[serde(borrow, default)]
    pub session_issuer: Object<SessionIssuer<'a>>,
}

/// `userIdentity`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity<'a> {
    /// `AssumedRole`, `IAMUser`, `AWSService`, ...
    #[serde(borrow, default, rename = "type")]
    pub kind: Text<'a>,
    /// The caller's ARN (an STS assumed-role ARN for role sessions).
    #[serde(borrow, default)]
    pub arn: Text<'a>,
    /// Session context of temporary credentials.
    #[serde(borrow, default)]
    pub session_context: Object<SessionContext<'a>>,
}

/// The parts of `requestParameters` the analysis uses (dependent-action inference).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RequestParameters<'a> {
    /// Lambda `CreateFunction`/`UpdateFunctionConfiguration` execution role.
    #[serde(borrow, default)]
    pub role: Text<'a>,
    /// A role passed to a service (Step Functions, CodeBuild, Glue, EventBridge, ...).
    #[serde(borrow, default, rename = "roleArn")]
    pub role_arn: Text<'a>,
    /// CloudFormation's spelling.
    #[serde(borrow, default, rename = "roleARN")]
    pub role_arn_upper: Text<'a>,
    /// ECS task definitions.
    #[serde(borrow, default, rename = "executionRoleArn")]
    pub execution_role_arn: Text<'a>,
    /// ECS task role.
    #[serde(borrow, default, rename = "taskRoleArn")]
    pub task_role_arn: Text<'a>,
    /// CodeBuild, EMR and others.
    #[serde(borrow, default, rename = "serviceRole")]
    pub service_role: Text<'a>,
    /// EC2 `RunInstances` instance profile (presence only).
    #[serde(default, rename = "iamInstanceProfile")]
    pub iam_instance_profile: Option<IgnoredAny>,
    /// EC2 tag-on-create (presence only).
    #[serde(default, rename = "tagSpecificationSet")]
    pub tag_specification_set: Option<IgnoredAny>,
    /// S3 bucket.
    #[serde(borrow, default, rename = "bucketName")]
    pub bucket_name: Text<'a>,
    /// S3 SSE-KMS key on write.
    #[serde(
        borrow,
        default,
        rename = "x-amz-server-side-encryption-aws-kms-key-id"
    )]
    pub sse_kms_key_id: Text<'a>,
    /// S3 requested encryption on write (`aws:kms`).
    #[serde(borrow, default, rename = "x-amz-server-side-encryption")]
    pub sse: Text<'a>,
    /// A KMS key named by EC2/EBS and others.
    #[serde(borrow, default, rename = "kmsKeyId")]
    pub kms_key_id: Text<'a>,
}

/// The parts of `responseElements` the analysis uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponseElements<'a> {
    /// S3 SSE-KMS key used.
    #[serde(
        borrow,
        default,
        rename = "x-amz-server-side-encryption-aws-kms-key-id"
    )]
    pub sse_kms_key_id: Text<'a>,
    /// S3 encryption applied (`aws:kms`).
    #[serde(borrow, default, rename = "x-amz-server-side-encryption")]
    pub sse: Text<'a>,
}

/// The parts of `additionalEventData` the analysis uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AdditionalEventData<'a> {
    /// `SSE_KMS`, `SSE_S3`, `Default_SSE_S3`.
    #[serde(borrow, default, rename = "SSEApplied")]
    pub sse_applied: Text<'a>,
}

/// One entry of `resources`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RecordResource<'a> {
    /// The resource ARN.
    #[serde(borrow, default, rename = "ARN")]
    pub arn: Text<'a>,
    /// `AWS::S3::Object`, `AWS::S3::Bucket`, `AWS::Lambda::Function`, ...
    #[serde(borrow, default, rename = "type")]
    pub kind: Text<'a>,
}

/// One CloudTrail record (the fields the analysis uses; everything else is skipped).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record<'a> {
    /// `2024-01-02T03:04:05Z`.
    #[serde(borrow, default)]
    pub event_time: Text<'a>,
    /// `s3.amazonaws.com`.
    #[serde(borrow, default)]
    pub event_source: Text<'a>,
    /// `GetObject`.
    #[serde(borrow, default)]
    pub event_name: Text<'a>,
    /// The region the call was made in.
    #[serde(borrow, default)]
    pub aws_region: Text<'a>,
    /// The event's unique id.
    #[serde(borrow, default, rename = "eventID")]
    pub event_id: Text<'a>,
    /// The error code of a failed call.
    #[serde(borrow, default)]
    pub error_code: Text<'a>,
    /// `AwsApiCall`, `AwsServiceEvent`, `AwsConsoleSignIn`, ...
    #[serde(borrow, default)]
    pub event_type: Text<'a>,
    /// The caller ([`Record::user_identity`]).
    #[serde(borrow, default, rename = "userIdentity")]
    pub raw_user_identity: Nested<'a>,
    /// [`Record::request_parameters`].
    #[serde(borrow, default, rename = "requestParameters")]
    pub raw_request_parameters: Nested<'a>,
    /// [`Record::response_elements`].
    #[serde(borrow, default, rename = "responseElements")]
    pub raw_response_elements: Nested<'a>,
    /// [`Record::additional_event_data`].
    #[serde(borrow, default, rename = "additionalEventData")]
    pub raw_additional_event_data: Nested<'a>,
    /// [`Record::resources`].
    #[serde(borrow, default, rename = "resources")]
    pub raw_resources: Nested<'a>,
}

impl<'a> Record<'a> {
    /// Parses one record (LookupEvents' `CloudTrailEvent` string, an Athena row's JSON).
    pub fn parse(text: &'a str) -> Result<Record<'a>, RecordError> {
        serde_json::from_str(text).map_err(|e| RecordError::Record(e.to_string()))
    }

    /// The caller.
    pub fn user_identity(&self) -> Option<UserIdentity<'a>> {
        self.raw_user_identity.object()
    }
    /// Selected request parameters.
    pub fn request_parameters(&self) -> Option<RequestParameters<'a>> {
        self.raw_request_parameters.object()
    }
    /// Selected response elements.
    pub fn response_elements(&self) -> Option<ResponseElements<'a>> {
        self.raw_response_elements.object()
    }
    /// Selected additional event data.
    pub fn additional_event_data(&self) -> Option<AdditionalEventData<'a>> {
        self.raw_additional_event_data.object()
    }
    /// Resources named by the event (data events always name theirs).
    pub fn resources(&self) -> Vec<RecordResource<'a>> {
        self.raw_resources.array()
    }

    /// The ARN that identifies the caller for principal matching: the session issuer of a
    /// role session, else `userIdentity.arn`.
    pub fn caller_arn(&self) -> Option<Cow<'a, str>> {
        let identity = self.user_identity()?;
        identity
            .session_context
            .0
            .and_then(|c| c.session_issuer.0)
            .and_then(|i| i.arn.0)
            .filter(|a| !a.is_empty())
            .or(identity.arn.0)
    }
}

/// Whether `text` (JSON) may hold `name` in a string, ASCII case ignored: it holds it
/// literally, or it has a `\u` escape that could spell it.
fn may_hold(text: &[u8], name: &[u8]) -> bool {
    let Some((&first, rest)) = name.split_first() else {
        return true;
    };
    if memchr::memmem::find(text, b"\\u").is_some() {
        return true;
    }
    memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), text).any(|at| {
        text.get(at + 1..at + 1 + rest.len())
            .is_some_and(|tail| tail.eq_ignore_ascii_case(rest))
    })
}

/// Decides whether a record's caller is the analysed principal, with a cache of caller ARNs (a
/// log holds few distinct callers, so each is parsed once).
#[derive(Debug, Clone)]
pub struct PrincipalMatcher {
    target: PrincipalArn,
    cache: HashMap<Box<str>, bool>,
}

/// Entries the matcher remembers before it starts over.
const MATCHER_CACHE_LIMIT: usize = 65_536;

impl PrincipalMatcher {
    /// A matcher for the given role or user.
    pub fn new(target: PrincipalArn) -> PrincipalMatcher {
        PrincipalMatcher {
            target,
            cache: HashMap::new(),
        }
    }
    /// The analysed principal.
    pub fn target(&self) -> &PrincipalArn {
        &self.target
    }
    /// Whether `record` was made by the analysed principal (a role's sessions count as the
    /// role; ARNs are compared with the project's principal rule, never as strings).
    pub fn matches(&mut self, record: &Record) -> bool {
        // IAM compares names without regard to ASCII case, and every ARN that names the
        // principal or one of its sessions holds its name: a caller whose text does not hold
        // it is someone else, found without parsing (decision 129).
        let Some(identity) = record.raw_user_identity.text() else {
            return false;
        };
        if !may_hold(identity.as_bytes(), self.target.name().as_bytes()) {
            return false;
        }
        let Some(arn) = record.caller_arn() else {
            return false;
        };
        self.matches_arn(&arn)
    }
    /// As [`PrincipalMatcher::matches`], for a caller ARN.
    pub fn matches_arn(&mut self, arn: &str) -> bool {
        if let Some(hit) = self.cache.get(arn) {
            return *hit;
        }
        let hit = PrincipalArn::parse(arn).is_ok_and(|p| p.issuer().same_principal(&self.target));
        if self.cache.len() >= MATCHER_CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(arn.into(), hit);
        hit
    }
}

/// Reads a CloudTrail log document (`{"Records":[...]}`) from a byte slice, calling `each` for
/// every record without collecting them. Returns the number of records read.
pub fn for_each_record<F>(document: &[u8], each: F) -> Result<u64, RecordError>
where
    F: FnMut(Record<'_>),
{
    struct Document<F>(F, u64);
    struct RecordsSeed<'f, F>(&'f mut F, &'f mut u64);

    impl<'de, F: FnMut(Record<'_>)> Visitor<'de> for &mut Document<F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a CloudTrail log document with a Records array")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = false;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key == "Records" {
                    seen = true;
                    map.next_value_seed(RecordsSeed(&mut self.0, &mut self.1))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if seen {
                Ok(())
            } else {
                Err(de::Error::missing_field("Records"))
            }
        }
    }
    impl<'de, F: FnMut(Record<'_>)> DeserializeSeed<'de> for RecordsSeed<'_, F> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de, F: FnMut(Record<'_>)> Visitor<'de> for RecordsSeed<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(record) = seq.next_element::<Record<'de>>()? {
                (self.0)(record);
                *self.1 += 1;
            }
            Ok(())
        }
    }

    let mut state = Document(each, 0);
    let mut deserializer = serde_json::Deserializer::from_slice(document);
    deserializer
        .deserialize_map(&mut state)
        .map_err(|e| RecordError::Document(e.to_string()))?;
    deserializer
        .end()
        .map_err(|e| RecordError::Document(e.to_string()))?;
    Ok(state.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSUMED: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROAX:s","arn":"arn:aws:sts::123456789012:assumed-role/Deployer/s","accountId":"123456789012","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAX","arn":"arn:aws:iam::123456789012:role/ci/Deployer","accountId":"123456789012","userName":"Deployer"}}},"eventTime":"2024-05-01T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","requestParameters":{"bucketName":"b","key":"k"},"responseElements":null,"additionalEventData":{"SSEApplied":"SSE_KMS"},"eventID":"e1","resources":[{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::b/k"}]}"#;

    #[test]
    fn reads_the_fields_used_and_tolerates_odd_types() {
        let r = Record::parse(ASSUMED).unwrap();
        assert_eq!(r.event_name.get(), Some("GetObject"));
        assert_eq!(
            r.caller_arn(),
            Some("arn:aws:iam::123456789012:role/ci/Deployer".into())
        );
        assert_eq!(
            r.additional_event_data().unwrap().sse_applied.get(),
            Some("SSE_KMS")
        );
        let odd =
            r#"{"eventName":5,"requestParameters":"text","resources":[],"responseElements":[1]}"#;
        let r = Record::parse(odd).unwrap();
        assert_eq!(r.event_name.get(), None);
        assert!(r.request_parameters().is_none());
        assert!(r.response_elements().is_none());
        assert!(r.resources().is_empty());
    }

    #[test]
    fn sessions_match_their_role_by_identity_not_by_string() {
        let mut m = PrincipalMatcher::new(
            PrincipalArn::parse("arn:aws:iam::123456789012:role/deployer").unwrap(),
        );
        assert!(m.matches(&Record::parse(ASSUMED).unwrap()));
        assert!(m.matches_arn("arn:aws:sts::123456789012:assumed-role/DEPLOYER/x"));
        assert!(!m.matches_arn("arn:aws:iam::123456789012:user/Deployer"));
        assert!(!m.matches_arn("arn:aws:sts::210987654321:assumed-role/Deployer/x"));
        assert!(!m.matches_arn("not an arn"));
    }

    #[test]
    fn a_caller_is_skipped_unparsed_only_when_its_text_cannot_name_the_principal() {
        assert!(may_hold(br#"{"arn":"x:role/DePloyer"}"#, b"deployer"));
        assert!(may_hold(br#"{"arn":"x:role/D\u0065ployer"}"#, b"deployer"));
        assert!(!may_hold(br#"{"arn":"x:role/deploye"}"#, b"deployer"));
        assert!(!may_hold(b"", b"deployer"));
        assert!(may_hold(b"anything", b""));
        let mut m = PrincipalMatcher::new(
            PrincipalArn::parse("arn:aws:iam::123456789012:role/deployer").unwrap(),
        );
        // An escaped spelling of the role is still the role.
        let escaped = ASSUMED.replace("role/ci/Deployer", "role/ci/D\\u0065ployer");
        assert!(m.matches(&Record::parse(&escaped).unwrap()));
        let other = ASSUMED
            .replace("role/ci/Deployer", "role/ci/Builder")
            .replace("assumed-role/Deployer", "assumed-role/Builder");
        assert!(!m.matches(&Record::parse(&other).unwrap()));
        // Odd shapes of nested values read as absent, never as a failed record.
        let odd = r#"{"userIdentity":"x","resources":{"ARN":"a"},"additionalEventData":null}"#;
        let r = Record::parse(odd).unwrap();
        assert!(r.user_identity().is_none() && r.resources().is_empty());
        assert!(r.additional_event_data().is_none() && !m.matches(&r));
    }

    #[test]
    fn streams_records_of_a_document() {
        let doc = format!(r#"{{"Records":[{ASSUMED},{ASSUMED}],"extra":{{"a":1}}}}"#);
        let mut names = Vec::new();
        let n = for_each_record(doc.as_bytes(), |r| {
            names.push(r.event_name.get().unwrap_or_default().to_string())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(names, vec!["GetObject", "GetObject"]);
        assert!(for_each_record(b"{\"NoRecords\":[]}", |_| {}).is_err());
        assert!(for_each_record(b"{\"Records\":[", |_| {}).is_err());
    }
}
