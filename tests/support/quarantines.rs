//! Quarantines in every notable lifecycle situation, with status and history produced by the real
//! state machine (`lifecycle::create`/`step`) from a given start time, as the controller writes them.
#![allow(dead_code)]

use autoguardrails::controller::crd::{
    DenySpec, HistoryEntry, Mode, NotifySpec, PolicyRef, Principal, PrincipalKind, Quarantine,
    QuarantineSpec, QuarantineStatus, SecretKeyRef, SignalRecord, SignalSource, SlackSpec,
};
use autoguardrails::controller::lifecycle::{self, Context, Event, State};
use autoguardrails::controller::notify::blocks::MessageKind;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const NAMESPACE: &str = "autoguardrails";

/// A Quarantine spec as the controller creates it from `dev-compute-spike` and an anomaly.
pub fn spec(mode: Mode, observed_at: Timestamp) -> QuarantineSpec {
    QuarantineSpec {
        policy_ref: PolicyRef {
            name: "dev-compute-spike".into(),
        },
        signal: Some(SignalRecord {
            source: SignalSource::CostAnomaly,
            id: "anomaly-7f3c2a1e-0b5d-4c8e-9a61-2d4f0e8b7c90".into(),
            account_id: "111111111111".into(),
            service: Some("Amazon Elastic Compute Cloud - Compute".into()),
            region: Some("ap-northeast-1".into()),
            budget_name: None,
            impact_usd: 912.4,
            observed_at: Time(observed_at),
            details_url: Some(
                "https://console.aws.amazon.com/cost-management/home#/anomaly-detection/monitors/m-1/anomalies/anomaly-7f3c2a1e".into(),
            ),
            summary: Some(
                "EC2 spend in ap-northeast-1 is $912.40 above the expected $120.00 (dev-ci role launching p4d instances)".into(),
            ),
        }),
        targets: vec![
            Principal {
                kind: PrincipalKind::IamRole,
                arn: "arn:aws:iam::111111111111:role/dev-ci".into(),
            },
            Principal {
                kind: PrincipalKind::IamUser,
                arn: "arn:aws:iam::111111111111:user/build-bot".into(),
            },
        ],
        target_reasons: Vec::new(),
        deny: DenySpec {
            actions: vec![
                "ec2:RunInstances".into(),
                "ec2:CreateNatGateway".into(),
                "sagemaker:CreateTrainingJob".into(),
            ],
            regions: vec!["ap-northeast-1".into()],
            conditions: Vec::new(),
        },
        actions: autoguardrails::controller::crd::default_actions(),
        mode,
        ttl: "4h".into(),
        approval_timeout: Some("1h".into()),
        required_approvers: None,
        notify: Some(NotifySpec {
            slack: Some(SlackSpec {
                webhook_secret_ref: Some(SecretKeyRef {
                    name: "slack-webhook".into(),
                    key: "url".into(),
                }),
                webhook_ssm_parameter: None,
                channel_hint: Some("#cost-alerts".into()),
            }),
        }),
    }
}

fn minutes(start: Timestamp, minutes: i64) -> Timestamp {
    start + SignedDuration::from_mins(minutes)
}

/// The object with `state` written to status.
pub fn object(name: &str, spec: QuarantineSpec, state: &State) -> Quarantine {
    let mut quarantine = Quarantine::new(name, spec);
    quarantine.metadata.namespace = Some(NAMESPACE.into());
    let mut status = QuarantineStatus::default();
    state.apply_to_status(&mut status);
    quarantine.status = Some(status);
    quarantine
}

/// A Quarantine whose newest notable history entry is of `kind`, created at `start`; returns it and
/// the index of that entry.
pub fn scenario(kind: MessageKind, start: Timestamp) -> (Quarantine, usize) {
    let approve = Event::Approve {
        actor: "alice".into(),
        note: "confirmed runaway p4d launches".into(),
    };
    let (mode, kill_switch, events): (Mode, bool, Vec<(i64, Event)>) = match kind {
        MessageKind::Planned => (Mode::DryRun, false, vec![]),
        MessageKind::KillSwitchDryRun => (Mode::Auto, true, vec![]),
        MessageKind::PendingApproval => (Mode::Manual, false, vec![]),
        MessageKind::Activated => (Mode::Manual, false, vec![(7, approve)]),
        MessageKind::DriftRepaired => (Mode::Auto, false, vec![]),
        MessageKind::Released => (
            Mode::Manual,
            false,
            vec![
                (7, approve),
                (
                    42,
                    Event::Release {
                        actor: "bob".into(),
                        note: "the job was fixed and redeployed".into(),
                    },
                ),
                (42, Event::ReleaseSucceeded),
            ],
        ),
        MessageKind::Rejected => (
            Mode::Manual,
            false,
            vec![(
                9,
                Event::Reject {
                    actor: "carol".into(),
                    note: "planned load test, see CHG-1042".into(),
                },
            )],
        ),
        MessageKind::Expired => (Mode::DryRun, false, vec![(240, Event::Tick)]),
        MessageKind::ApprovalTimedOut => (Mode::Manual, false, vec![(60, Event::Tick)]),
        MessageKind::EnforcementFailed => (
            Mode::Auto,
            false,
            vec![(
                1,
                Event::EnforcementFailed {
                    reason: "AccessDenied: iam:AttachRolePolicy on arn:aws:iam::111111111111:role/dev-ci".into(),
                    retryable: false,
                },
            )],
        ),
    };
    let spec = spec(mode, minutes(start, -20));
    let context = Context::from_spec(&spec, start, kill_switch).expect("fixture spec");
    let mut state = lifecycle::create(&context, start).state;
    for (at, event) in &events {
        state = lifecycle::step(state, &context, event, minutes(start, *at)).state;
    }
    if kind == MessageKind::DriftRepaired {
        state.history.push(HistoryEntry {
            time: Time(minutes(start, 25)),
            event: "DriftRepaired".into(),
            actor: "controller".into(),
            message: "deny policy agr-5c1e9a was detached from arn:aws:iam::111111111111:role/dev-ci outside the controller; re-attached".into(),
            channel: None,
        });
    }
    let name = format!("dev-compute-spike-{}", kind.event().to_lowercase());
    let quarantine = object(&name, spec, &state);
    let index = state
        .history
        .iter()
        .rposition(|entry| {
            // The Planned message carries the kill-switch note; KillSwitchDryRun alone is folded.
            let wanted = if kind == MessageKind::KillSwitchDryRun {
                MessageKind::Planned
            } else {
                kind
            };
            entry.event == wanted.event()
        })
        .unwrap_or_else(|| panic!("{kind:?} not in history: {:?}", state.history));
    (quarantine, index)
}

/// A fixed start time for snapshots.
pub fn fixed_start() -> Timestamp {
    "2026-11-20T10:00:00Z".parse().expect("timestamp")
}
