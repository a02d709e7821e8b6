//! The Helm chart ships the same CRDs as `crds/` (byte for byte), and the binary accepts the flags
//! and config file its Deployment renders.

use crate::support::rbac;

use std::fs;
use std::path::Path;

#[test]
fn chart_crds_are_identical_to_the_generated_crds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut repository: Vec<_> = fs::read_dir(root.join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut chart: Vec<_> = fs::read_dir(root.join("charts/autoguardrails/crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    repository.sort();
    chart.sort();
    assert_eq!(
        repository, chart,
        "charts/autoguardrails/crds must hold exactly the files of crds/ (cp crds/*.yaml charts/autoguardrails/crds/)"
    );
    assert!(!repository.is_empty());
    for name in &repository {
        let generated = fs::read(root.join("crds").join(name)).unwrap();
        let shipped = fs::read(root.join("charts/autoguardrails/crds").join(name)).unwrap();
        assert!(
            generated == shipped,
            "charts/autoguardrails/crds/{} differs from crds/{0}: run `make crds && cp crds/*.yaml charts/autoguardrails/crds/`",
            name.to_string_lossy()
        );
    }
}

/// Renders the chart with `values` and returns (the controller container's args, config.yaml).
fn rendered_args_and_config(values: &str) -> (Vec<String>, String) {
    let manifests = rbac::parse_manifests(&rbac::render_chart(values));
    let deployment = manifests
        .iter()
        .find(|m| m["kind"] == "Deployment")
        .expect("a Deployment");
    let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let config = manifests
        .iter()
        .find(|m| m["kind"] == "ConfigMap" && m["data"]["config.yaml"].is_string())
        .map(|m| m["data"]["config.yaml"].as_str().unwrap().to_string())
        .expect("the config ConfigMap");
    (args, config)
}

/// The binary accepts exactly what the chart renders (flags and config file), for the defaults
/// and with every option set; `--print-config` shows the effective result.
#[test]
fn the_binary_accepts_the_rendered_deployment_args_and_config() {
    let dir = std::env::temp_dir().join(format!("agr-chart-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("{}", vec!["leaderElection:", "enabled: true"]),
        (
            r#"{"controller":{"namespaces":["team-a","team-b"],"killSwitch":true,
                "protectedPrincipals":["arn:aws:iam::111111111111:role/break-glass","arn:aws:iam::111111111111:role/admin"],
                "config":{"poller":{"interval":"12h","monitorArns":["arn:aws:ce::111111111111:anomalymonitor/m1"]}}},
               "signals":{"events":{"apiKeySecret":{"name":"events-key","key":"apiKey"}}}}"#,
            vec![
                "killSwitch: true",
                "team-b",
                "arn:aws:iam::111111111111:role/admin",
                "name: events-key",
                "interval: PT12H",
            ],
        ),
        (
            r#"{"signals":{"sns":{"pinnedCertificates":{"secretName":"sns-certs"},
                "pinnedFingerprints":["16:2B:9C:DD:E0:9E:6B:39:AC:05:F6:A6:F9:53:77:0D:BC:11:21:FC:1C:B9:5B:4E:86:5D:A7:5B:9D:9B:37:52"]}}}"#,
            vec![
                "pinnedCertificatesDir: /etc/autoguardrails/sns-certificates",
                "16:2B:9C:DD",
            ],
        ),
        (
            r#"{"approvals":{"webhook":{"enabled":true},"slack":{"enabled":true,
                "signingSecret":{"name":"slack-signing"},
                "users":[{"slackUserId":"U0123ABCD","username":"alice","groups":["sre"]}]}}}"#,
            vec![
                "interactions: true",
                "signingSecretFile: /etc/autoguardrails/slack/signing-secret",
                "slackUserId: U0123ABCD",
                "extendBy: 2h",
            ],
        ),
        // Every setting of approvals.slack: SSM signing secret with rotation, a bot token
        // (e-mail mapping and postWith bot), response_url prefixes and limits.
        (
            r#"{"approvals":{"webhook":{"enabled":true},"slack":{"enabled":true,
                "signingSecretSsmParameter":"/agr/slack-signing","signingSecretRefresh":"10m",
                "signingSecretGrace":"2m","botToken":{"name":"slack-bot","key":"xoxb"},
                "apiBaseUrl":"https://slack.example/api/","emailCacheTtl":"30m","noteModal":true,
                "postWith":"bot","channel":"C0123ABCD",
                "responseUrlPrefixes":["https://hooks.slack.com/","https://hooks.slack-gov.com/"],
                "users":[{"email":"alice@example.com","username":"alice"},
                         {"slackUserId":"U0BOB","teamId":"T01","username":"bob","groups":["sre"]}],
                "extendBy":"4h","maxBodyBytes":32768,"replayCapacity":5000}}}"#,
            vec![
                "interactions: true",
                "signingSecretSsmParameter: /agr/slack-signing",
                "signingSecretRefresh: 10m",
                "signingSecretGrace: 2m",
                "botTokenFile: /etc/autoguardrails/slack-bot/token",
                "apiBaseUrl: https://slack.example/api/",
                "emailCacheTtl: 30m",
                "noteModal: true",
                "postWith: bot",
                "channel: C0123ABCD",
                "https://hooks.slack-gov.com/",
                "email: alice@example.com",
                "teamId: T01",
                "extendBy: 4h",
                "maxBodyBytes: 32768",
                "replayCapacity: 5000",
            ],
        ),
    ];
    for (values, expected) in cases {
        let (args, config) = rendered_args_and_config(values);
        assert_eq!(
            args.first().map(String::as_str),
            Some("controller"),
            "{args:?}"
        );
        let file = dir.join("config.yaml");
        fs::write(&file, &config).unwrap();
        let args: Vec<String> = args
            .into_iter()
            .map(|a| {
                if a.starts_with("--config=") {
                    format!("--config={}", file.display())
                } else {
                    a
                }
            })
            .collect();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
            .args(&args)
            .arg("--print-config")
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{values}: the binary refused {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for text in expected {
            assert!(
                printed.contains(text),
                "{values}: {text:?} not in\n{printed}"
            );
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

/// `approvals.slack.botToken` mounts that Secret's key read-only as the file the rendered config
/// names; a signing secret from SSM mounts no signing-secret volume; without a bot token nothing
/// is mounted for it.
#[test]
fn the_slack_bot_token_is_mounted_where_the_config_points() {
    let volumes = |values: &str| {
        let manifests = rbac::parse_manifests(&rbac::render_chart(values));
        let deployment = manifests
            .iter()
            .find(|m| m["kind"] == "Deployment")
            .expect("a Deployment")
            .clone();
        let spec = &deployment["spec"]["template"]["spec"];
        (
            spec["volumes"].as_array().cloned().unwrap_or_default(),
            spec["containers"][0]["volumeMounts"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        )
    };
    let (with_bot, mounts) = volumes(
        r#"{"approvals":{"webhook":{"enabled":true},"slack":{"enabled":true,
            "signingSecretSsmParameter":"/agr/slack-signing","botToken":{"name":"slack-bot","key":"xoxb"}}}}"#,
    );
    let bot = with_bot
        .iter()
        .find(|v| v["name"] == "slack-bot-token")
        .expect("the bot token volume");
    assert_eq!(bot["secret"]["secretName"], "slack-bot");
    assert_eq!(bot["secret"]["items"][0]["key"], "xoxb");
    assert_eq!(bot["secret"]["items"][0]["path"], "token");
    assert!(mounts.iter().any(|m| m["name"] == "slack-bot-token"
        && m["mountPath"] == "/etc/autoguardrails/slack-bot"
        && m["readOnly"] == true));
    assert!(!with_bot.iter().any(|v| v["name"] == "slack-signing-secret"));
    let (without, _) = volumes(
        r#"{"approvals":{"webhook":{"enabled":true},"slack":{"enabled":true,"signingSecret":{"name":"s"}}}}"#,
    );
    assert!(!without.iter().any(|v| v["name"] == "slack-bot-token"));
    assert!(without.iter().any(|v| v["name"] == "slack-signing-secret"));
}

/// `signals.sns.pinnedCertificates.secretName` mounts that Secret read-only where the rendered
/// config points `pinnedCertificatesDir`; without it nothing is mounted or configured.
#[test]
fn pinned_sns_certificates_are_mounted_from_their_secret() {
    let mount = |values: &str| {
        let manifests = rbac::parse_manifests(&rbac::render_chart(values));
        let deployment = manifests
            .iter()
            .find(|m| m["kind"] == "Deployment")
            .expect("a Deployment")
            .clone();
        let pod = &deployment["spec"]["template"]["spec"];
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "sns-certificates")
            .cloned();
        let mounted = pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "sns-certificates")
            .cloned();
        (volume, mounted)
    };
    let (volume, mounted) =
        mount(r#"{"signals":{"sns":{"pinnedCertificates":{"secretName":"sns-certs"}}}}"#);
    assert_eq!(volume.unwrap()["secret"]["secretName"], "sns-certs");
    let mounted = mounted.unwrap();
    assert_eq!(mounted["mountPath"], "/etc/autoguardrails/sns-certificates");
    assert_eq!(mounted["readOnly"], true);
    let (_, config) = rendered_args_and_config(
        r#"{"signals":{"sns":{"pinnedCertificates":{"secretName":"sns-certs"}}}}"#,
    );
    assert!(
        config.contains("pinnedCertificatesDir: /etc/autoguardrails/sns-certificates"),
        "{config}"
    );
    let (volume, mounted) = mount("{}");
    assert!(volume.is_none() && mounted.is_none());
    let (_, config) = rendered_args_and_config("{}");
    assert!(!config.contains("pinned"), "{config}");
}
