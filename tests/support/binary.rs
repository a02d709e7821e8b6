//! Driving the real `autoguardrails` binary as a user does: kubectl against the emulator, the
//! controller process, moto's IAM, polling waits sized for a loaded 2-core machine.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_iam::Client as IamClient;

use super::moto;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn new(kubeconfig: PathBuf) -> Kubectl {
        let bin = root().join(".venv/bin/kubectl");
        assert!(
            bin.exists(),
            "{} is missing: run `make deps` (scripts/test-deps.sh) first",
            bin.display()
        );
        Kubectl { bin, kubeconfig }
    }

    /// Runs kubectl; panics with its output unless it succeeds.
    pub fn run(&self, args: &[&str]) -> String {
        self.run_with_input(args, None)
    }

    pub fn run_with_input(&self, args: &[&str], input: Option<&str>) -> String {
        let mut child = Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(text) = input {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

/// The controller process; killed on drop if still running.
pub struct ControllerProcess {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl ControllerProcess {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn iam_client(moto: &moto::MotoServer) -> IamClient {
    let config = autoguardrails::aws::sdk::load_base_config(&moto.settings()).await;
    IamClient::new(&config)
}

/// Creates IAM roles in moto, each trusting EC2.
pub async fn create_roles(iam: &IamClient, roles: &[&str]) {
    for role in roles {
        iam.create_role()
            .role_name(*role)
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send()
            .await
            .unwrap();
    }
}

/// The emulator with our CRDs applied, `namespace` created and the `/events` key Secret
/// (`events-key`, key `apiKey`) in it, as the chart leaves a cluster; and kubectl pointed at it.
pub async fn cluster_with_events_key(
    namespace: &str,
    api_key: &str,
) -> (kube_emulator::Emulator, Kubectl) {
    let emulator = kube_emulator::Emulator::start_with(kube_emulator::Options::default())
        .await
        .unwrap();
    let kubectl = Kubectl::new(emulator.kubeconfig_path().to_path_buf());
    kubectl.run(&["apply", "-f", root().join("crds").to_str().unwrap()]);
    kubectl.run(&["create", "namespace", namespace]);
    kubectl.run(&[
        "create",
        "secret",
        "generic",
        "events-key",
        "-n",
        namespace,
        &format!("--from-literal=apiKey={api_key}"),
    ]);
    (emulator, kubectl)
}

pub async fn attached(iam: &IamClient, role: &str) -> Vec<String> {
    iam.list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect()
}

pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `autoguardrails controller --config CONFIG` as the chart runs it (kubeconfig, test AWS
/// credentials, pod name and namespace in the environment), with `extra_args` and `extra_env`
/// added and stderr in `dir/controller.log`.
pub fn spawn_controller_with_env(
    kubeconfig: &Path,
    config: &Path,
    namespace: &str,
    dir: &Path,
    extra_args: &[&str],
    extra_env: &[(&str, &std::ffi::OsStr)],
) -> ControllerProcess {
    let log = dir.join("controller.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_autoguardrails"));
    command
        .args([
            "controller",
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "text",
        ])
        .args(extra_args)
        .env("KUBECONFIG", kubeconfig)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("POD_NAME", "autoguardrails-0")
        .env("POD_NAMESPACE", namespace)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    ControllerProcess {
        child: Some(command.spawn().unwrap()),
        log,
    }
}

/// An HTTP client for talking to the binary's listeners. The listener closes a keep-alive
/// connection that stays idle past its header-read timeout (10 s); a client reusing one at that
/// moment gets a broken pipe, so pooled connections are dropped sooner than that.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// POSTs a JSON body to `/events` with the API key; the HTTP status and the answer's `outcome`
/// and `reason`.
pub async fn post_event(
    http: &reqwest::Client,
    url: &str,
    api_key: &str,
    body: &serde_json::Value,
) -> (u16, String, String) {
    let response = http
        .post(url)
        .header("x-api-key", api_key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
    (
        status,
        body["outcome"].as_str().unwrap_or_default().to_string(),
        body["reason"].as_str().unwrap_or_default().to_string(),
    )
}

/// The value of the first metric line starting with `line_prefix` on `ops/metrics`, 0 if none.
pub async fn metric_value(http: &reqwest::Client, ops: &str, line_prefix: &str) -> f64 {
    let text = http
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The controller configuration the end-to-end tests share: the real SDK against `endpoint`
/// (moto, or a proxy in front of it) with one attempt and no client-side rate limit, a fast
/// Lease, Slack off, free ports for the two listeners; plus each test's own top-level settings,
/// `aws` lines and the `/events` key Secret when asked for.
pub struct ControllerConfig {
    namespace: String,
    endpoint: String,
    settings: Vec<(String, String)>,
    aws_lines: String,
    events_key: bool,
    pub metrics_port: u16,
    pub signals_port: u16,
}

impl ControllerConfig {
    /// A configuration for `namespace` with the SDK backend at `endpoint`.
    pub fn sdk(namespace: &str, endpoint: &str) -> ControllerConfig {
        ControllerConfig {
            namespace: namespace.to_string(),
            endpoint: endpoint.to_string(),
            settings: Vec::new(),
            aws_lines: String::new(),
            events_key: false,
            metrics_port: free_port(),
            signals_port: free_port(),
        }
    }

    /// A top-level setting (`driftPeriod`, `sweepPeriod`, …), written in the order given.
    pub fn setting(mut self, key: &str, value: &str) -> ControllerConfig {
        self.settings.push((key.to_string(), value.to_string()));
        self
    }

    /// Lines added under `aws:` (indented by two spaces already, ending in a newline).
    pub fn aws_lines(mut self, lines: &str) -> ControllerConfig {
        self.aws_lines = lines.to_string();
        self
    }

    /// `/events` authenticated by the `events-key` Secret (key `apiKey`), as
    /// [`cluster_with_events_key`] leaves it.
    pub fn events_key(mut self) -> ControllerConfig {
        self.events_key = true;
        self
    }

    /// The YAML file's text.
    pub fn yaml(&self) -> String {
        let ns = &self.namespace;
        let mut text = format!("clusterId: e2e\nnamespaces: [{ns}]\n");
        for (key, value) in &self.settings {
            text.push_str(&format!("{key}: {value}\n"));
        }
        text.push_str(&format!(
            "metricsAddr: 127.0.0.1:{}\nsignalsAddr: 127.0.0.1:{}\n",
            self.metrics_port, self.signals_port
        ));
        text.push_str(&format!(
            "aws:\n  backend: sdk\n  endpointUrl: {}\n  maxAttempts: 1\n  requestsPerSecond: 0\n{}",
            self.endpoint, self.aws_lines
        ));
        text.push_str(&format!(
            "leaderElection:\n  leaseNamespace: {ns}\n  leaseDuration: 4s\n  renewDeadline: 3s\n  retryPeriod: 500ms\n"
        ));
        if self.events_key {
            text.push_str(
                "signals:\n  events:\n    apiKeySecret: { name: events-key, key: apiKey }\n",
            );
        }
        text.push_str("notifications:\n  enabled: false\n");
        text
    }

    /// Writes the file into `dir` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("config.yaml");
        std::fs::write(&path, self.yaml()).unwrap();
        path
    }

    /// The metrics/health listener's base URL.
    pub fn ops_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.metrics_port)
    }

    /// A URL on the signals listener (`/events`, `/sns`).
    pub fn signals_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.signals_port)
    }

    /// Writes the file into `dir` and starts the controller with it
    /// ([`spawn_controller_with_env`]).
    pub fn spawn(
        &self,
        kubeconfig: &Path,
        dir: &Path,
        extra_args: &[&str],
        extra_env: &[(&str, &std::ffi::OsStr)],
    ) -> ControllerProcess {
        let config = self.write(dir);
        spawn_controller_with_env(
            kubeconfig,
            &config,
            &self.namespace,
            dir,
            extra_args,
            extra_env,
        )
    }
}
