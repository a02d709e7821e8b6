//! EventBridge "AWS API Call via CloudTrail" events: recognises the envelope, reads the CloudTrail
//! record in `detail` with the analyzer's record type (`crate::analyze::record::Record`, one
//! parser of that shape), attributes the call to a role or user (`crate::principal`) and turns
//! the supported cost-starting and cost-stopping calls into [`Effect`]s. Pure: no I/O, no clock,
//! no prices (the estimator prices).

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::analyze::record::{Record, Text};
use crate::principal::{PrincipalArn, PrincipalKind};

use super::pricing::{PricedService, rds_key};

/// The EventBridge `detail-type` of CloudTrail management events.
pub const CLOUDTRAIL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// Most resources one event may start or stop (RunInstances launches at most a few thousand;
/// a larger list is refused rather than half read).
pub const MAX_RESOURCES_PER_EVENT: usize = 10_000;

/// Why an event that claims to be a CloudTrail API call cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// A required field is missing or of the wrong shape.
    #[error("malformed CloudTrail event: {0}")]
    Malformed(String),
}

/// A started resource, before pricing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    /// The resource's key, unique per account and region (`ec2:i-0abc`, `rds:mydb`).
    pub resource: String,
    /// What prices it.
    pub price: PriceRef,
    /// How many priced units it runs (instances of a training job, for example).
    pub quantity: u32,
}

/// How a started resource is priced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PriceRef {
    /// A snapshot price: service and key (`ec2` `m5.large`), in the event's region.
    Snapshot(PricedService, String),
    /// A SageMaker endpoint: priced from the endpoint configuration it names, when the
    /// `CreateEndpointConfig` event was seen.
    EndpointConfig(String),
    /// Nothing to price it by (an instance type missing from the event).
    Unknown(String),
}

/// A production variant of a SageMaker endpoint configuration.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Variant {
    /// `ml.*` instance type.
    pub instance_type: String,
    /// Initial instance count.
    pub count: u32,
}

/// What a call does to the committed hourly burn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Resources started.
    Start(Vec<Start>),
    /// Resources stopped (their keys).
    Stop(Vec<String>),
    /// A SageMaker endpoint configuration was created (prices later `CreateEndpoint` calls).
    EndpointConfig {
        /// Its name.
        name: String,
        /// Its production variants.
        variants: Vec<Variant>,
    },
    /// A call this estimator does not price.
    Unsupported,
}

/// One CloudTrail API call, read.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// CloudTrail's `eventID` (the idempotency key).
    pub event_id: String,
    /// `RunInstances`.
    pub event_name: String,
    /// `ec2.amazonaws.com`.
    pub event_source: String,
    /// `eventTime`.
    pub time: Timestamp,
    /// The account the call was made in (`recipientAccountId`, else the envelope's `account`).
    pub account: String,
    /// `awsRegion`.
    pub region: String,
    /// The role (session issuer) or user that made the call; `None` for root, AWS services and
    /// federated users, which cannot be quarantined.
    pub principal: Option<PrincipalArn>,
    /// The caller as CloudTrail names it (for messages when it is not attributable).
    pub caller: String,
    /// `errorCode` of a failed call.
    pub error_code: Option<String>,
    /// What the call does to the burn.
    pub effect: Effect,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, rename = "detail-type")]
    detail_type: Text<'a>,
    #[serde(borrow, default)]
    account: Text<'a>,
    #[serde(borrow, default)]
    detail: Option<&'a RawValue>,
}

/// Whether `text` is an EventBridge envelope of a CloudTrail API call (read cheaply: only the
/// envelope's top-level fields). Other JSON and non-JSON give `false`.
pub fn is_cloudtrail_event(text: &str) -> bool {
    if !text.trim_start().starts_with('{') {
        return false;
    }
    serde_json::from_str::<Envelope>(text)
        .is_ok_and(|e| e.detail_type.get() == Some(CLOUDTRAIL_DETAIL_TYPE))
}

/// Reads an EventBridge CloudTrail event. The caller checked [`is_cloudtrail_event`].
pub fn parse_event(text: &str) -> Result<Call, EventError> {
    let envelope: Envelope = serde_json::from_str(text)
        .map_err(|e| EventError::Malformed(format!("not an EventBridge envelope: {e}")))?;
    let detail = envelope
        .detail
        .ok_or_else(|| EventError::Malformed("missing detail".into()))?;
    let record = Record::parse(detail.get())
        .map_err(|e| EventError::Malformed(format!("detail is not a CloudTrail record: {e}")))?;
    let required = |value: &Text, field: &str| -> Result<String, EventError> {
        value
            .get()
            .filter(|v| !v.is_empty() && v.len() <= 256)
            .map(str::to_string)
            .ok_or_else(|| EventError::Malformed(format!("detail.{field} is missing")))
    };
    let event_id = required(&record.event_id, "eventID")?;
    let event_name = required(&record.event_name, "eventName")?;
    let event_source = required(&record.event_source, "eventSource")?;
    let region = required(&record.aws_region, "awsRegion")?;
    let time_text = required(&record.event_time, "eventTime")?;
    let time: Timestamp = time_text
        .parse()
        .map_err(|e| EventError::Malformed(format!("detail.eventTime {time_text:?}: {e}")))?;
    let recipient: Option<String> = detail_field(detail.get(), "recipientAccountId");
    let account = recipient
        .or_else(|| envelope.account.get().map(str::to_string))
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| EventError::Malformed("no 12-digit recipientAccountId or account".into()))?;
    let caller = record.caller_arn().map(|c| c.to_string());
    let principal = caller
        .as_deref()
        .and_then(|arn| PrincipalArn::parse(arn).ok())
        .map(|p| p.issuer())
        .filter(|p| matches!(p.kind(), PrincipalKind::Role | PrincipalKind::User));
    let caller = caller.unwrap_or_else(|| {
        record
            .user_identity()
            .and_then(|u| u.kind.get().map(str::to_string))
            .unwrap_or_else(|| "an unknown caller".into())
    });
    let error_code = record
        .error_code
        .get()
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let effect = if error_code.is_some() {
        Effect::Unsupported
    } else {
        let request = nested(record.raw_request_parameters.text());
        let response = nested(record.raw_response_elements.text());
        effect(&event_source, &event_name, &event_id, &request, &response)?
    };
    Ok(Call {
        event_id,
        event_name,
        event_source,
        time,
        account,
        region,
        principal,
        caller,
        error_code,
        effect,
    })
}

/// A top-level string field of the record not in the analyzer's view.
fn detail_field(detail: &str, field: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Only<'a> {
        #[serde(borrow, default, rename = "recipientAccountId")]
        recipient: Text<'a>,
    }
    debug_assert_eq!(field, "recipientAccountId");
    serde_json::from_str::<Only>(detail)
        .ok()
        .and_then(|o| o.recipient.get().map(str::to_string))
}

fn nested(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

fn text<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    let mut at = value;
    for key in path {
        at = at.get(key)?;
    }
    at.as_str().filter(|s| !s.is_empty())
}

fn items<'v>(value: &'v Value, path: &[&str]) -> Result<&'v [Value], EventError> {
    let mut at = value;
    for key in path {
        match at.get(key) {
            Some(next) => at = next,
            None => return Ok(&[]),
        }
    }
    let list = at.as_array().map(Vec::as_slice).unwrap_or(&[]);
    if list.len() > MAX_RESOURCES_PER_EVENT {
        return Err(EventError::Malformed(format!(
            "{} lists {} resources, more than the {MAX_RESOURCES_PER_EVENT} accepted",
            path.join("."),
            list.len()
        )));
    }
    Ok(list)
}

fn count(value: &Value, key: &str) -> Option<u32> {
    let v = value.get(key)?;
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .and_then(|n| u32::try_from(n).ok())
}

fn effect(
    source: &str,
    name: &str,
    event_id: &str,
    request: &Value,
    response: &Value,
) -> Result<Effect, EventError> {
    let snapshot = |service, key: &str| PriceRef::Snapshot(service, key.to_string());
    Ok(match (source, name) {
        ("ec2.amazonaws.com", "RunInstances") => {
            let launched = items(response, &["instancesSet", "items"])?;
            let requested_type = text(request, &["instanceType"]);
            let mut started = Vec::new();
            for (i, item) in launched.iter().enumerate() {
                let id = text(item, &["instanceId"])
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{event_id}#{i}"));
                let price = match text(item, &["instanceType"]).or(requested_type) {
                    Some(t) => snapshot(PricedService::Ec2, t),
                    None => PriceRef::Unknown("instance type not in the event".into()),
                };
                started.push(Start {
                    resource: format!("ec2:{id}"),
                    price,
                    quantity: 1,
                });
            }
            if started.is_empty() {
                // No response elements (CloudTrail omits large ones): the request's minCount
                // is what was launched at least.
                let requested = items(request, &["instancesSet", "items"])?;
                let n = requested
                    .iter()
                    .map(|i| count(i, "minCount").unwrap_or(1))
                    .sum::<u32>()
                    .max(1);
                let price = match requested_type {
                    Some(t) => snapshot(PricedService::Ec2, t),
                    None => PriceRef::Unknown("instance type not in the event".into()),
                };
                started.push(Start {
                    resource: format!("ec2:{event_id}"),
                    price,
                    quantity: n,
                });
            }
            Effect::Start(started)
        }
        ("ec2.amazonaws.com", "TerminateInstances") => {
            let mut ids: Vec<String> = Vec::new();
            for path in [&["instancesSet", "items"][..]] {
                for source in [request, response] {
                    for item in items(source, path)? {
                        if let Some(id) = text(item, &["instanceId"]) {
                            let key = format!("ec2:{id}");
                            if !ids.contains(&key) {
                                ids.push(key);
                            }
                        }
                    }
                }
            }
            Effect::Stop(ids)
        }
        ("ec2.amazonaws.com", "CreateNatGateway") => {
            let id = text(
                response,
                &["CreateNatGatewayResponse", "natGateway", "natGatewayId"],
            )
            .map(str::to_string)
            .unwrap_or_else(|| event_id.to_string());
            Effect::Start(vec![Start {
                resource: format!("nat:{id}"),
                price: snapshot(PricedService::NatGateway, "-"),
                quantity: 1,
            }])
        }
        ("ec2.amazonaws.com", "DeleteNatGateway") => {
            let id = text(request, &["DeleteNatGatewayRequest", "NatGatewayId"])
                .or_else(|| text(response, &["DeleteNatGatewayResponse", "natGatewayId"]));
            Effect::Stop(id.map(|id| vec![format!("nat:{id}")]).unwrap_or_default())
        }
        ("rds.amazonaws.com", "CreateDBInstance") => {
            let id = text(request, &["dBInstanceIdentifier"])
                .ok_or_else(|| {
                    EventError::Malformed(
                        "CreateDBInstance without requestParameters.dBInstanceIdentifier".into(),
                    )
                })?
                .to_ascii_lowercase();
            let class = text(request, &["dBInstanceClass"]);
            let engine = text(request, &["engine"]);
            let multi_az = request
                .get("multiAZ")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let price = match (class, engine) {
                (Some(class), Some(engine)) => {
                    PriceRef::Snapshot(PricedService::Rds, rds_key(class, engine, multi_az))
                }
                _ => PriceRef::Unknown("instance class or engine not in the event".into()),
            };
            Effect::Start(vec![Start {
                resource: format!("rds:{id}"),
                price,
                quantity: 1,
            }])
        }
        ("rds.amazonaws.com", "DeleteDBInstance") => Effect::Stop(
            text(request, &["dBInstanceIdentifier"])
                .map(|id| vec![format!("rds:{}", id.to_ascii_lowercase())])
                .unwrap_or_default(),
        ),
        ("eks.amazonaws.com", "CreateCluster") => {
            let id = text(request, &["name"])
                .or_else(|| text(response, &["cluster", "name"]))
                .ok_or_else(|| {
                    EventError::Malformed("CreateCluster without a cluster name".into())
                })?;
            Effect::Start(vec![Start {
                resource: format!("eks:{id}"),
                price: snapshot(PricedService::Eks, "cluster"),
                quantity: 1,
            }])
        }
        ("eks.amazonaws.com", "DeleteCluster") => Effect::Stop(
            text(request, &["name"])
                .or_else(|| text(response, &["cluster", "name"]))
                .map(|id| vec![format!("eks:{id}")])
                .unwrap_or_default(),
        ),
        ("sagemaker.amazonaws.com", "CreateTrainingJob") => {
            let id = text(request, &["trainingJobName"]).ok_or_else(|| {
                EventError::Malformed("CreateTrainingJob without trainingJobName".into())
            })?;
            let config = request.get("resourceConfig").unwrap_or(&Value::Null);
            let price = match text(config, &["instanceType"]) {
                Some(t) => snapshot(PricedService::SageMakerTraining, t),
                None => PriceRef::Unknown("training instance type not in the event".into()),
            };
            Effect::Start(vec![Start {
                resource: format!("sagemaker-training:{}", id.to_ascii_lowercase()),
                price,
                quantity: count(config, "instanceCount").unwrap_or(1).max(1),
            }])
        }
        ("sagemaker.amazonaws.com", "StopTrainingJob") => Effect::Stop(
            text(request, &["trainingJobName"])
                .map(|id| vec![format!("sagemaker-training:{}", id.to_ascii_lowercase())])
                .unwrap_or_default(),
        ),
        ("sagemaker.amazonaws.com", "CreateEndpointConfig") => {
            let name = text(request, &["endpointConfigName"]).ok_or_else(|| {
                EventError::Malformed("CreateEndpointConfig without endpointConfigName".into())
            })?;
            let mut variants = Vec::new();
            for variant in items(request, &["productionVariants"])? {
                // Serverless variants have no instance type and no hourly price.
                if let Some(t) = text(variant, &["instanceType"]) {
                    variants.push(Variant {
                        instance_type: t.to_string(),
                        count: count(variant, "initialInstanceCount").unwrap_or(1),
                    });
                }
            }
            Effect::EndpointConfig {
                name: name.to_ascii_lowercase(),
                variants,
            }
        }
        ("sagemaker.amazonaws.com", "CreateEndpoint") => {
            let id = text(request, &["endpointName"]).ok_or_else(|| {
                EventError::Malformed("CreateEndpoint without endpointName".into())
            })?;
            let config = text(request, &["endpointConfigName"]).ok_or_else(|| {
                EventError::Malformed("CreateEndpoint without endpointConfigName".into())
            })?;
            Effect::Start(vec![Start {
                resource: format!("sagemaker-endpoint:{}", id.to_ascii_lowercase()),
                price: PriceRef::EndpointConfig(config.to_ascii_lowercase()),
                quantity: 1,
            }])
        }
        ("sagemaker.amazonaws.com", "DeleteEndpoint") => Effect::Stop(
            text(request, &["endpointName"])
                .map(|id| vec![format!("sagemaker-endpoint:{}", id.to_ascii_lowercase())])
                .unwrap_or_default(),
        ),
        _ => Effect::Unsupported,
    })
}

/// The calls this module reads, as `eventSource` and `eventName` (the EventBridge rule's
/// pattern lists the same ones; docs/signals.md).
pub const SUPPORTED_CALLS: &[(&str, &str)] = &[
    ("ec2.amazonaws.com", "RunInstances"),
    ("ec2.amazonaws.com", "TerminateInstances"),
    ("ec2.amazonaws.com", "CreateNatGateway"),
    ("ec2.amazonaws.com", "DeleteNatGateway"),
    ("rds.amazonaws.com", "CreateDBInstance"),
    ("rds.amazonaws.com", "DeleteDBInstance"),
    ("eks.amazonaws.com", "CreateCluster"),
    ("eks.amazonaws.com", "DeleteCluster"),
    ("sagemaker.amazonaws.com", "CreateTrainingJob"),
    ("sagemaker.amazonaws.com", "StopTrainingJob"),
    ("sagemaker.amazonaws.com", "CreateEndpointConfig"),
    ("sagemaker.amazonaws.com", "CreateEndpoint"),
    ("sagemaker.amazonaws.com", "DeleteEndpoint"),
];

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = include_str!("../../../tests/fixtures/velocity/run-instances.json");

    #[test]
    fn reads_the_envelope_and_attributes_a_session_to_its_role() {
        assert!(is_cloudtrail_event(RUN));
        let call = parse_event(RUN).unwrap();
        assert_eq!(call.event_name, "RunInstances");
        assert_eq!(call.account, "123456789012");
        assert_eq!(
            call.principal.as_ref().map(|p| p.as_str()),
            Some("arn:aws:iam::123456789012:role/ci-deployer")
        );
        let Effect::Start(started) = call.effect else {
            panic!("a start");
        };
        assert_eq!(started.len(), 2);
        assert_eq!(started[0].resource, "ec2:i-0a1b2c3d4e5f60700");
    }

    #[test]
    fn other_events_are_not_cloudtrail_calls() {
        let anomaly = include_str!("../../../tests/fixtures/signals/eventbridge-anomaly.json");
        assert!(!is_cloudtrail_event(anomaly));
        assert!(!is_cloudtrail_event("not json"));
        assert!(!is_cloudtrail_event("[1,2]"));
    }

    #[test]
    fn missing_fields_are_malformed_with_the_field() {
        for field in ["eventID", "eventTime", "awsRegion", "eventName"] {
            let mut event: Value = serde_json::from_str(RUN).unwrap();
            event["detail"].as_object_mut().unwrap().remove(field);
            let error = parse_event(&event.to_string()).unwrap_err();
            assert!(error.to_string().contains(field), "{error}");
        }
        let mut event: Value = serde_json::from_str(RUN).unwrap();
        event["detail"]["eventTime"] = "yesterday".into();
        assert!(parse_event(&event.to_string()).is_err());
        let mut event: Value = serde_json::from_str(RUN).unwrap();
        event.as_object_mut().unwrap().remove("detail");
        assert!(
            parse_event(&event.to_string())
                .unwrap_err()
                .to_string()
                .contains("detail")
        );
        let mut event: Value = serde_json::from_str(RUN).unwrap();
        event["detail"]["recipientAccountId"] = "12".into();
        event["account"] = "x".into();
        assert!(parse_event(&event.to_string()).is_err());
    }

    #[test]
    fn a_launch_without_response_elements_counts_min_count() {
        let mut event: Value = serde_json::from_str(RUN).unwrap();
        event["detail"]["responseElements"] = Value::Null;
        let call = parse_event(&event.to_string()).unwrap();
        let Effect::Start(started) = call.effect else {
            panic!("a start");
        };
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].quantity, 2);
    }

    #[test]
    fn too_many_resources_are_refused_whole() {
        let mut event: Value = serde_json::from_str(RUN).unwrap();
        let items: Vec<Value> = (0..=MAX_RESOURCES_PER_EVENT)
            .map(|k| serde_json::json!({"instanceId": format!("i-{k}")}))
            .collect();
        event["detail"]["responseElements"]["instancesSet"]["items"] = items.into();
        assert!(parse_event(&event.to_string()).is_err());
    }
}
