//! kube-emulator: an in-memory Kubernetes API server for tests, served over plain HTTP on loopback.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_emulator::EmulatorError> {
//! let emulator = kube_emulator::Emulator::start().await?;
//! let client = emulator.client().await?;
//! emulator.faults().fail_next("list", "configmaps", 1, 500);
//! # let _ = client; Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod cel_rules;
pub mod error;
pub mod events;
pub mod fields;
pub mod openapi;
pub mod protobuf;
pub mod rbac;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod store;
pub mod table;
pub mod tls;

pub use auth::TokenEntry;
pub use error::{ApiError, EmulatorError};
pub use server::RequestRecord;

use server::State;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Start-up settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Where to write the kubeconfig; a fresh temporary directory when None.
    pub kubeconfig_path: Option<PathBuf>,
    /// How many events the watch history keeps (older rvs get 410).
    pub history_capacity: usize,
    /// Capacity of the live fan-out channel (a watcher lagging further is disconnected).
    pub broadcast_capacity: usize,
    /// Interval of periodic BOOKMARK events.
    pub bookmark_interval: Duration,
    /// Bearer tokens besides the bootstrap admin's (`auth::ADMIN_TOKEN`, always known).
    pub tokens: Vec<TokenEntry>,
    /// Who requests without credentials are (see `auth::Unauthenticated`).
    pub unauthenticated: auth::Unauthenticated,
    /// Serve HTTPS with this certificate (kubectl sends bearer tokens only over HTTPS); plain
    /// HTTP when None.
    pub tls: Option<tls::ServerTls>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig_path: None,
            history_capacity: 10_000,
            broadcast_capacity: 16_384,
            bookmark_interval: Duration::from_secs(1),
            tokens: Vec::new(),
            unauthenticated: auth::Unauthenticated::default(),
            tls: None,
        }
    }
}

/// A running emulator; stops serving when dropped.
#[derive(Debug)]
pub struct Emulator {
    /// Shared state.
    state: Arc<State>,
    /// Bound address.
    address: SocketAddr,
    /// The kubeconfig written at start.
    kubeconfig_path: PathBuf,
    /// A temporary directory to remove on drop.
    temporary_directory: Option<PathBuf>,
    /// Stops the accept loop and connections.
    shutdown: watch::Sender<bool>,
    /// The CA PEM clients trust when serving HTTPS.
    ca_pem: Option<String>,
}

/// Fault injection handle.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Shared state.
    state: Arc<State>,
}

impl Faults {
    /// Makes the next `count` requests with `verb` (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, or `*`)
    /// on `resource` (plural like `configmaps`, which includes its subresources; `quarantines/status`
    /// for one subresource only; or `*`) fail with `status_code` and a matching Status.
    pub fn fail_next(&self, verb: &str, resource: &str, count: usize, status_code: u16) {
        self.state.fail_next(verb, resource, count, status_code);
    }

    /// Delays every request by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.state.set_latency(latency);
    }

    /// Ends every open watch stream (clients see a clean end of stream and rewatch).
    pub fn close_watches(&self) {
        self.state
            .close_watches
            .send_modify(|generation| *generation += 1);
    }

    /// Drops the watch history: a watch from any earlier resourceVersion gets a 410 Expired ERROR event.
    pub fn compact(&self) {
        self.state.write().compact();
    }
}

impl Emulator {
    /// Starts an emulator on a free loopback port.
    pub async fn start() -> Result<Self, EmulatorError> {
        Self::start_with(Options::default()).await
    }

    /// Starts an emulator with options.
    pub async fn start_with(options: Options) -> Result<Self, EmulatorError> {
        let listener = TcpListener::bind(options.listen).await?;
        let address = listener.local_addr()?;
        let (close_watches, _) = watch::channel(0u64);
        let state = Arc::new(State {
            store: RwLock::new(Store::new(
                options.history_capacity,
                options.broadcast_capacity,
            )),
            faults: Mutex::new(server::FaultState::default()),
            requests: Mutex::new(Vec::new()),
            close_watches,
            bookmark_interval: options.bookmark_interval,
            address: address.to_string(),
            authenticator: RwLock::new(auth::Authenticator::new(
                std::iter::once(TokenEntry::admin()).chain(options.tokens),
                options.unauthenticated,
            )),
        });
        let (kubeconfig_path, temporary_directory) = match options.kubeconfig_path {
            Some(path) => (path, None),
            None => {
                let directory = std::env::temp_dir().join(format!(
                    "kube-emulator-{}-{}-{:x}",
                    std::process::id(),
                    address.port(),
                    store::random_u64()
                ));
                std::fs::create_dir_all(&directory)?;
                (directory.join("kubeconfig"), Some(directory))
            }
        };
        let acceptor = match &options.tls {
            Some(tls) => Some(tls::acceptor(tls).map_err(EmulatorError::Parse)?),
            None => None,
        };
        let ca_pem = options.tls.as_ref().map(|tls| tls.ca_pem.clone());
        let scheme = if ca_pem.is_some() { "https" } else { "http" };
        std::fs::write(
            &kubeconfig_path,
            kubeconfig_text(
                &format!("{scheme}://{address}"),
                auth::ADMIN_TOKEN,
                ca_pem.as_deref(),
            ),
        )?;
        let (shutdown, shutdown_receiver) = watch::channel(false);
        tokio::spawn(accept_loop(
            listener,
            acceptor,
            state.clone(),
            shutdown_receiver,
        ));
        Ok(Self {
            state,
            address,
            kubeconfig_path,
            temporary_directory,
            shutdown,
            ca_pem,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:43123` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.address)
    }

    /// Bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Path of the kubeconfig file pointing at this emulator.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// A `kube::Client` for this emulator as the bootstrap admin (default namespace `default`).
    pub async fn client(&self) -> Result<kube::Client, EmulatorError> {
        Ok(kube::Client::try_from(self.config().await?)?)
    }

    /// The client configuration of the bootstrap admin (from the emulator's kubeconfig), for
    /// callers that add headers or settings before building a client.
    pub async fn config(&self) -> Result<kube::Config, EmulatorError> {
        config_from_kubeconfig(&self.kubeconfig_path).await
    }

    /// Makes `entry`'s token known from now on (replacing an entry with the same token).
    pub fn add_token(&self, entry: TokenEntry) {
        self.state
            .authenticator
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .add(entry);
    }

    /// Writes a kubeconfig that authenticates with `token` (next to the emulator's own) and returns its path.
    pub fn kubeconfig_for(&self, name: &str, token: &str) -> Result<PathBuf, EmulatorError> {
        let directory = self
            .kubeconfig_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let path = directory.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &path,
            kubeconfig_text(&self.url(), token, self.ca_pem.as_deref()),
        )?;
        Ok(path)
    }

    /// Fault injection.
    pub fn faults(&self) -> Faults {
        Faults {
            state: self.state.clone(),
        }
    }

    /// All requests served so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.read().current_resource_version()
    }

    /// Creates or replaces CRDs from a (multi-document) YAML string; returns their names.
    pub fn apply_crd_yaml(&self, yaml: &str) -> Result<Vec<String>, EmulatorError> {
        let mut names = Vec::new();
        for document in split_yaml_documents(yaml) {
            let object: serde_json::Value = serde_saphyr::from_str(&document)
                .map_err(|error| EmulatorError::Parse(error.to_string()))?;
            if object.is_null() {
                continue;
            }
            let mut store = self.state.write();
            let resource = store
                .registry
                .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
                .ok_or_else(|| EmulatorError::Parse("CRD type missing".to_string()))?;
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let options = store::WriteOptions {
                manager: "kube-emulator".to_string(),
                ..store::WriteOptions::default()
            };
            match store.get(&resource, "", &name) {
                Ok(_) => {
                    store.update(&resource, "", &name, object, None, &options, false)?;
                }
                Err(_) => {
                    store.create(&resource, "", object, &options)?;
                }
            }
            names.push(name);
        }
        Ok(names)
    }
}

/// Splits a multi-document YAML stream.
fn split_yaml_documents(yaml: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    for line in yaml.lines() {
        if line.trim_end() == "---" {
            documents.push(String::new());
        } else if let Some(current) = documents.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents
        .into_iter()
        .filter(|document| {
            document
                .lines()
                .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        })
        .collect()
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(directory) = &self.temporary_directory {
            let _ = std::fs::remove_dir_all(directory);
        }
    }
}

/// A kube client configuration read from a kubeconfig file (its current context).
pub async fn config_from_kubeconfig(path: &Path) -> Result<kube::Config, EmulatorError> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|error| EmulatorError::Parse(error.to_string()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|error| EmulatorError::Parse(error.to_string()))
}

/// The kubeconfig text for a server URL, authenticating as the bootstrap admin.
pub fn kubeconfig(server: &str) -> String {
    kubeconfig_with_token(server, auth::ADMIN_TOKEN)
}

/// The kubeconfig text for a server URL and a bearer token.
pub fn kubeconfig_with_token(server: &str, token: &str) -> String {
    kubeconfig_text(server, token, None)
}

/// The kubeconfig text for a server URL, a bearer token and the CA to trust (HTTPS).
pub fn kubeconfig_text(server: &str, token: &str, ca_pem: Option<&str>) -> String {
    let authority = ca_pem
        .map(|pem| format!("\n    certificate-authority-data: {}", tls::base64_of(pem)))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-emulator\n  cluster:\n    server: {server}{authority}\nusers:\n- name: kube-emulator\n  user:\n    token: {token}\ncontexts:\n- name: kube-emulator\n  context:\n    cluster: kube-emulator\n    user: kube-emulator\n    namespace: default\ncurrent-context: kube-emulator\n"
    )
}

/// Accepts connections until shutdown.
async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // As the Kubernetes API server does (Go turns Nagle's algorithm off on every TCP
                // connection): a watch event written right after another is sent at once, not
                // held for the client's delayed ACK (up to 40 ms on Linux).
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "TCP_NODELAY not set");
                }
                let state = state.clone();
                let connection_shutdown = shutdown.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        None => serve_connection(stream, state, connection_shutdown).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => serve_connection(stream, state, connection_shutdown).await,
                            Err(error) => tracing::debug!(%error, "TLS handshake failed"),
                        },
                    }
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Serves one (plain or TLS) connection until it ends or the emulator stops.
async fn serve_connection<S>(stream: S, state: Arc<State>, mut shutdown: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| server::handle(state.clone(), request));
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = &mut connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        _ = shutdown.changed() => {}
    }
}
