//! Block Kit messages: a snapshot of every message kind (histories made by the real state machine),
//! each checked against Slack's limits and the structure we rely on; truncation of long lists; a
//! property test over hostile text; and the rendered examples in docs/notifications.md.
//! Set `UPDATE_SNAPSHOTS=1` to rewrite the snapshot files and the docs section after a deliberate change.

use crate::support::quarantines;

use std::path::PathBuf;

use autoguardrails::controller::crd::{HistoryEntry, Mode, Phase, Principal, PrincipalKind};
use autoguardrails::controller::lifecycle::{self, Context};
use autoguardrails::controller::notify::Message;
use autoguardrails::controller::notify::blocks::{
    self, MAX_BLOCKS, MAX_HEADER_TEXT, MAX_SECTION_TEXT, MessageKind, RenderOptions, check_limits,
    render, render_plain,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use quarantines::{fixed_start, object, scenario, spec};

fn options() -> RenderOptions {
    RenderOptions {
        cluster: Some("prod-ops".into()),
        ..RenderOptions::default()
    }
}

fn updating() -> bool {
    std::env::var_os("UPDATE_SNAPSHOTS").is_some()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every snapshot case: file stem and message.
fn cases() -> Vec<(String, Message)> {
    let mut cases = Vec::new();
    for kind in MessageKind::ALL {
        let (quarantine, index) = scenario(kind, fixed_start());
        let message = render(&quarantine, index, &options()).expect("renders");
        let stem = match kind {
            MessageKind::KillSwitchDryRun => "planned-kill-switch".to_string(),
            other => kebab(other.event()),
        };
        cases.push((stem, message));
    }
    // Manual + kill switch: the kill switch note rides on the approval request.
    let manual = spec(Mode::Manual, fixed_start());
    let context = Context::from_spec(&manual, fixed_start(), true).unwrap();
    let state = lifecycle::create(&context, fixed_start()).state;
    let quarantine = object("dev-compute-spike-manual-kill-switch", manual, &state);
    cases.push((
        "pending-approval-kill-switch".into(),
        render(&quarantine, 0, &options()).unwrap(),
    ));
    // A KillSwitchDryRun entry with no sibling gets a message of its own.
    let (mut quarantine, _) = scenario(MessageKind::Activated, fixed_start());
    let status = quarantine.status.as_mut().unwrap();
    status.history.push(HistoryEntry {
        time: Time(fixed_start() + jiff::SignedDuration::from_mins(30)),
        event: "KillSwitchDryRun".into(),
        actor: "controller".into(),
        message: "kill switch engaged: approvals are refused while it stays engaged".into(),
        channel: None,
    });
    let index = status.history.len() - 1;
    cases.push((
        "kill-switch-dry-run".into(),
        render(&quarantine, index, &options()).unwrap(),
    ));
    cases
}

fn kebab(event: &str) -> String {
    let mut out = String::new();
    for (position, c) in event.chars().enumerate() {
        if c.is_uppercase() && position > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[test]
fn every_message_kind_matches_its_snapshot() {
    let dir = root().join("tests/snapshots/notify");
    let mut mismatched = Vec::new();
    for (stem, message) in cases() {
        let path = dir.join(format!("{stem}.json"));
        let rendered = format!(
            "{}\n",
            serde_json::to_string_pretty(&message.payload()).unwrap()
        );
        if updating() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &rendered).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != rendered {
            mismatched.push(format!("{stem}:\n{rendered}"));
        }
    }
    assert!(
        mismatched.is_empty(),
        "messages differ from tests/snapshots/notify/ (rerun with UPDATE_SNAPSHOTS=1 after a deliberate change):\n{}",
        mismatched.join("\n")
    );
}

#[test]
fn every_message_is_valid_block_kit_within_limits() {
    for (stem, message) in cases() {
        let problems = check_limits(&message);
        assert!(problems.is_empty(), "{stem}: {problems:?}");
        // Valid JSON that survives a round trip, with the fields Slack requires.
        let payload = message.payload();
        let text = serde_json::to_string(&payload).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, payload);
        assert!(payload["text"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(payload["blocks"].as_array().unwrap().len() <= MAX_BLOCKS);
        assert_eq!(payload["channel"], "#cost-alerts", "{stem}: channel hint");
        assert_eq!(payload["blocks"][0]["type"], "header", "{stem}");
        // What and why: policy, account, service, region, impact, targets, actions, TTL, link.
        let plain = render_plain(&message);
        for needle in [
            "dev-compute-spike",
            "111111111111",
            "Amazon Elastic Compute Cloud - Compute",
            "ap-northeast-1",
            "$912.40",
            "arn:aws:iam::111111111111:role/dev-ci",
            "ec2:RunInstances",
            "*TTL:* 4h",
            "https://console.aws.amazon.com/cost-management/",
            "UTC",
        ] {
            assert!(
                plain.contains(needle),
                "{stem}: {needle:?} missing in\n{plain}"
            );
        }
    }
}

#[test]
fn commands_are_exact_and_fit_the_phase() {
    let name_of = |kind| scenario(kind, fixed_start());
    let plain = |kind| {
        let (quarantine, index) = name_of(kind);
        let name = quarantine.metadata.name.clone().unwrap();
        (
            render_plain(&render(&quarantine, index, &options()).unwrap()),
            name,
        )
    };
    let (text, name) = plain(MessageKind::PendingApproval);
    assert!(text.contains(&format!(
        "kubectl annotate quarantine {name} -n autoguardrails --overwrite autoguardrails.io/approve='your-name: why it is safe to enforce'"
    )));
    assert!(text.contains("autoguardrails.io/reject="));
    assert!(!text.contains("autoguardrails.io/release="));
    let (text, _) = plain(MessageKind::Activated);
    assert!(
        text.contains("autoguardrails.io/release=") && text.contains("autoguardrails.io/extend=")
    );
    assert!(!text.contains("autoguardrails.io/approve="));
    assert!(text.contains("*Approved by:* alice"));
    let (text, _) = plain(MessageKind::Released);
    assert!(!text.contains("kubectl annotate"));
    assert!(text.contains("*Release reason:* ReleaseRequested"));
    assert!(text.contains("*Release started by:* bob"));
    let (text, _) = plain(MessageKind::EnforcementFailed);
    assert!(
        text.contains("autoguardrails.io/release=") && !text.contains("autoguardrails.io/extend=")
    );
    let (text, _) = plain(MessageKind::KillSwitchDryRun);
    assert!(text.contains("kill switch engaged"), "{text}");

    // A message about an earlier change offers the commands of the phase the quarantine is in now.
    let (quarantine, _) = name_of(MessageKind::Released);
    let activated = quarantine
        .status
        .as_ref()
        .unwrap()
        .history
        .iter()
        .position(|entry| entry.event == "Activated")
        .unwrap();
    let text = render_plain(&render(&quarantine, activated, &options()).unwrap());
    assert!(!text.contains("kubectl annotate"), "{text}");
    assert!(text.contains("the quarantine is now Released"));
    // The commands parse back into the events the state machine expects.
    for phase in [
        Phase::PendingApproval,
        Phase::Active,
        Phase::Failed,
        Phase::DryRun,
    ] {
        for command in blocks::commands(phase, "q", "ns") {
            let start = command.find("autoguardrails.io/").unwrap();
            let (key, value) = command[start..].split_once('=').unwrap();
            let value = value.trim_matches('\'');
            let mut annotations = std::collections::BTreeMap::new();
            annotations.insert(key.to_string(), value.to_string());
            let events = lifecycle::parse_annotations(&annotations);
            assert_eq!(events.len(), 1, "{command}");
            assert!(
                !matches!(events[0], lifecycle::Event::InvalidAnnotation { .. }),
                "{command} -> {:?}",
                events[0]
            );
        }
    }
}

#[test]
fn entries_that_warrant_no_message_render_nothing() {
    let (quarantine, _) = scenario(MessageKind::Activated, fixed_start());
    let history = &quarantine.status.as_ref().unwrap().history;
    let approved = history.iter().position(|e| e.event == "Approved").unwrap();
    assert!(render(&quarantine, approved, &options()).is_none());
    assert!(render(&quarantine, history.len() + 5, &options()).is_none());
}

#[test]
fn long_target_and_action_lists_are_truncated_with_a_count() {
    let (mut quarantine, index) = scenario(MessageKind::Activated, fixed_start());
    quarantine.spec.targets = (0..100)
        .map(|n| Principal {
            kind: PrincipalKind::IamRole,
            arn: format!("arn:aws:iam::111111111111:role/{}-{n}", "x".repeat(60)),
        })
        .collect();
    quarantine.spec.deny.actions = (0..100).map(|n| format!("ec2:Action{n}")).collect();
    let message = render(&quarantine, index, &options()).unwrap();
    assert!(
        check_limits(&message).is_empty(),
        "{:?}",
        check_limits(&message)
    );
    let plain = render_plain(&message);
    assert!(plain.contains("*Targets (100):*"));
    assert!(plain.contains("…and 90 more"), "{plain}");
    assert!(plain.contains("*Denied actions (100):*"));
    assert!(plain.contains("ec2:Action9`"));
    assert!(!plain.contains("ec2:Action10`"));
}

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[<>&|*_~`a-z ]{0,300}",
        ".{0,2000}",
        Just("<!channel> <https://evil.example|click> &amp; ```".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever text the signal, history and names carry, the message stays within Slack's limits
    /// and user text cannot inject mrkdwn links or mentions.
    #[test]
    fn any_text_stays_within_limits(
        summary in hostile_text(),
        message in hostile_text(),
        actor in hostile_text(),
        service in hostile_text(),
        target_count in 1usize..150,
        arn_tail in "[a-z0-9/_+=,.@-]{1,200}",
        url in prop_oneof![Just("https://console.aws.amazon.com/x".to_string()), hostile_text()],
    ) {
        let (mut quarantine, index) = scenario(MessageKind::PendingApproval, fixed_start());
        let signal = quarantine.spec.signal.as_mut().unwrap();
        signal.summary = Some(summary);
        signal.service = Some(service);
        signal.details_url = Some(url);
        quarantine.spec.targets = (0..target_count)
            .map(|n| Principal { kind: PrincipalKind::IamRole, arn: format!("arn:aws:iam::111111111111:role/{arn_tail}{n}") })
            .collect();
        let entry = &mut quarantine.status.as_mut().unwrap().history[index];
        entry.message = message;
        entry.actor = actor;
        let rendered = render(&quarantine, index, &options()).unwrap();
        let problems = check_limits(&rendered);
        prop_assert!(problems.is_empty(), "{:?}", problems);
        let header = rendered.blocks[0]["text"]["text"].as_str().unwrap();
        prop_assert!(header.chars().count() <= MAX_HEADER_TEXT);
        for block in &rendered.blocks {
            if let Some(text) = block["text"]["text"].as_str() {
                prop_assert!(text.chars().count() <= MAX_SECTION_TEXT);
                if block["type"] == "section" {
                    // The only `<` in mrkdwn is the details link we build ourselves.
                    let links = text.matches('<').count();
                    prop_assert!(links <= 1 && (links == 0 || text.starts_with(":mag: <https://")), "{}", text);
                }
            }
        }
    }
}

const DOCS_BEGIN: &str = "<!-- BEGIN GENERATED EXAMPLES (tests/notify_blocks.rs) -->";
const DOCS_END: &str = "<!-- END GENERATED EXAMPLES -->";

#[test]
fn docs_show_a_rendered_example_of_each_message() {
    let mut generated = String::new();
    for (stem, message) in cases() {
        generated.push_str(&format!(
            "\n### `{stem}`\n\n````text\n{}````\n\n<details><summary>JSON payload</summary>\n\n```json\n{}\n```\n\n</details>\n",
            render_plain(&message),
            serde_json::to_string_pretty(&message.payload()).unwrap()
        ));
    }
    let path = root().join("docs/notifications.md");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let (Some(begin), Some(end)) = (current.find(DOCS_BEGIN), current.find(DOCS_END)) else {
        panic!("docs/notifications.md lacks the generated-examples markers");
    };
    let expected = format!(
        "{}{DOCS_BEGIN}\n{generated}\n{}",
        &current[..begin],
        &current[end..]
    );
    if updating() {
        std::fs::write(&path, &expected).unwrap();
    } else {
        assert!(
            current == expected,
            "docs/notifications.md examples are stale: rerun with UPDATE_SNAPSHOTS=1"
        );
    }
}
