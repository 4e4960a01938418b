//! A real gate and a real store on ephemeral loopback ports, sharing a keyring and a ledger in
//! a temporary folder, and a real upstream for proxy routes that echoes what it received.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use valet_gate::config::GateConfig;
use valet_gate::Gate;
use valet_ledger::{Ledger, SqliteLedger};
use valet_store::{Store, StoreConfig};

pub const ADMIN: &str = "vak_test_admin_0000000000000000000000000000000000000000000000000000";
pub const ALICE: &str = "vak_test_alice_0000000000000000000000000000000000000000000000000000";
pub const BOB: &str = "vak_test_bob_00000000000000000000000000000000000000000000000000000";
pub const ROBOT: &str = "vak_test_robot_0000000000000000000000000000000000000000000000000000";
pub const SLASHY: &str = "vak_test_slashy_000000000000000000000000000000000000000000000000000";

/// The gate configuration every test starts from; `{STORE}` and `{UPSTREAM}` are filled in.
pub fn base_config() -> String {
    format!(
        r#"
store_url = "http://{{STORE}}"

[roles.admin]
resources = ["*"]
ops = ["read", "write", "create", "delete", "list"]
max_ttl = "24h"
may_revoke = true

[roles.user]
resources = ["blob:users/{{sub}}/"]
ops = ["read", "write", "list"]
max_ttl = "1h"
max_bytes = "1MiB"
max_uses = 5

[roles.service]
resources = ["blob:shared"]
ops = ["read"]
max_ttl = "5m"

[rate_limit]
per_second = 0

[proxy]
timeout = "1s"
max_body = "64KiB"

[[api_keys]]
principal = "admin"
roles = ["admin"]
sha256 = "{admin}"

[[api_keys]]
principal = "alice"
roles = ["user"]
sha256 = "{alice}"

[[api_keys]]
principal = "bob"
roles = ["user"]
sha256 = "{bob}"

[[api_keys]]
principal = "robot"
roles = ["service"]
sha256 = "{robot}"

[[api_keys]]
principal = "eve/../alice"
roles = ["user"]
sha256 = "{slashy}"

[[routes]]
path = "/files/{{*path}}"
delegate = "blob:files/{{path}}"
roles = ["admin"]

[[routes]]
path = "/me/{{*path}}"
delegate = "blob:users/{{sub}}/{{path}}"

[[routes]]
path = "/api/{{*rest}}"
proxy = "http://{{UPSTREAM}}"
roles = ["user", "admin"]

[[routes]]
path = "/v2/{{name}}"
proxy = "http://{{UPSTREAM}}/echo/{{name}}"
methods = ["GET"]
"#,
        admin = valet_gate::api_key_hash(ADMIN),
        alice = valet_gate::api_key_hash(ALICE),
        bob = valet_gate::api_key_hash(BOB),
        robot = valet_gate::api_key_hash(ROBOT),
        slashy = valet_gate::api_key_hash(SLASHY),
    )
}

pub struct Stack {
    pub gate_addr: SocketAddr,
    pub store_addr: SocketAddr,
    pub upstream_addr: SocketAddr,
    /// The same upstream over TLS, with a certificate for `localhost` and `127.0.0.1` from a
    /// test CA whose certificate is at `{UPSTREAM_CA}` in the configuration.
    pub tls_upstream_addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub gate: Arc<Gate>,
    pub store: Arc<Store>,
    pub ledger: Arc<SqliteLedger>,
    /// Follows no redirect, so that tests see the gate's own answers.
    pub http: reqwest::Client,
    stop: watch::Sender<bool>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(|_| {}).await
    }

    /// Starts with the base configuration, after `edit` changed its text.
    pub async fn start_with(edit: impl FnOnce(&mut String)) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let keyring_path = dir.path().join("keyring");
        let keyring = valet_keyring::create(&keyring_path).unwrap();
        let ledger = Arc::new(SqliteLedger::open(&dir.path().join("ledger.sqlite")).unwrap());
        let (stop, stopped) = watch::channel(false);

        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        tokio::spawn(run_upstream(upstream, stopped.clone()));
        let (tls_upstream, upstream_ca) = tls_upstream(dir.path()).await;
        let tls_upstream_addr = tls_upstream.local_addr().unwrap();
        tokio::spawn(run_tls_upstream(
            tls_upstream,
            valet_http::TlsFiles {
                cert: dir.path().join("upstream-cert.pem"),
                key: dir.path().join("upstream-key.pem"),
            },
            stopped.clone(),
        ));

        let store_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let store_addr = store_listener.local_addr().unwrap();
        let mut store_config = StoreConfig::new(dir.path().to_owned(), store_addr);
        store_config.keyring_path = keyring_path.clone();
        let store = Store::open(
            store_config,
            keyring.clone(),
            ledger.clone() as Arc<dyn Ledger>,
        )
        .unwrap();
        tokio::spawn({
            let store = store.clone();
            let stopped = stopped.clone();
            async move {
                valet_store::serve(store, store_listener, until(stopped))
                    .await
                    .unwrap();
            }
        });

        let mut text = base_config();
        edit(&mut text);
        let text = text
            .replace("{STORE}", &store_addr.to_string())
            .replace("{UPSTREAM}", &upstream_addr.to_string())
            .replace("{TLS_UPSTREAM_PORT}", &tls_upstream_addr.port().to_string())
            .replace("{UPSTREAM_CA}", upstream_ca.to_str().unwrap());
        let config: GateConfig = toml::from_str(&text).unwrap();
        let gate = Gate::new(
            config,
            keyring,
            keyring_path,
            ledger.clone() as Arc<dyn Ledger>,
        )
        .unwrap();
        let gate_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gate_addr = gate_listener.local_addr().unwrap();
        tokio::spawn({
            let gate = gate.clone();
            let options = valet_http::ServeOptions {
                shutdown_grace: Duration::from_millis(100),
                ..valet_http::ServeOptions::default()
            };
            async move {
                valet_http::serve(gate, &options, gate_listener, until(stopped))
                    .await
                    .unwrap();
            }
        });
        Stack {
            gate_addr,
            store_addr,
            upstream_addr,
            tls_upstream_addr,
            dir,
            gate,
            store,
            ledger,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            stop,
        }
    }

    /// `GET path` at the gate with `api_key` as the bearer credential.
    pub async fn get_as(&self, path: &str, api_key: &str) -> reqwest::Response {
        self.http
            .get(self.gate_url(path))
            .bearer_auth(api_key)
            .send()
            .await
            .unwrap()
    }

    pub fn gate_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gate_addr)
    }

    /// `POST /v1/keys` as `api_key` with `body`.
    pub async fn issue(&self, api_key: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.gate_url("/v1/keys"))
            .bearer_auth(api_key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/revocations` as `api_key` with `body`.
    pub async fn revoke_many(&self, api_key: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.gate_url("/v1/revocations"))
            .bearer_auth(api_key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Issues and returns the 201 body, panicking otherwise.
    pub async fn issue_ok(&self, api_key: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self.issue(api_key, body).await;
        let status = response.status();
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{json}");
        json
    }

    /// The gate's `GET /metrics` answer, as a scraper gets it.
    pub async fn metrics_text(&self) -> String {
        let response = self.http.get(self.gate_url("/metrics")).send().await;
        response.unwrap().text().await.unwrap()
    }

    /// The value of a counter in the gate's metrics text.
    pub fn gate_metric(&self, name: &str) -> f64 {
        metric(&self.gate.metrics().render(), name)
    }
}

/// The value of the first sample named `name` (with its labels, if given) in `text`.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A raw `GET path` request with a bearer credential, asking to close the connection after
/// the answer (for `valet_testkit::raw_http::send`).
pub fn bearer_get(path: &str, api_key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer {api_key}\r\nConnection: close\r\n\r\n"
    )
}

/// The error code of a JSON error response.
pub async fn code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// The test upstream: `/slow` answers after 3 s, `/big?n=N` streams N bytes in 64 KiB chunks,
/// anything else echoes the request (method, path, query, headers, body length) as JSON.
async fn run_upstream(listener: TcpListener, stopped: watch::Receiver<bool>) {
    loop {
        let mut stopped_now = stopped.clone();
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted.unwrap(),
            _ = stopped_now.wait_for(|s| *s) => return,
        };
        tokio::spawn(async move {
            let service = service_fn(
                |request: hyper::Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(upstream_answer(request).await)
                },
            );
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A listener for the TLS upstream, and its CA certificate written into `dir` (the server's
/// own certificate and key go beside it, for `run_tls_upstream`).
async fn tls_upstream(dir: &std::path::Path) -> (TcpListener, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("upstream-cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("upstream-key.pem"), key.serialize_pem()).unwrap();
    let ca_path = dir.join("upstream-ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    (TcpListener::bind("127.0.0.1:0").await.unwrap(), ca_path)
}

/// The test upstream over TLS: the same answers as `run_upstream`.
async fn run_tls_upstream(
    listener: TcpListener,
    files: valet_http::TlsFiles,
    stopped: watch::Receiver<bool>,
) {
    let acceptor = files.acceptor().unwrap();
    loop {
        let mut stopped_now = stopped.clone();
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted.unwrap(),
            _ = stopped_now.wait_for(|s| *s) => return,
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A client that does not trust the certificate gives up here.
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(
                |request: hyper::Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(upstream_answer(request).await)
                },
            );
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type UpstreamBody = http_body_util::Either<
    Full<Bytes>,
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>,
>;

async fn upstream_answer(
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<UpstreamBody> {
    let path = request.uri().path().to_owned();
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if path.ends_with("/nocontent") {
        let mut response =
            hyper::Response::new(http_body_util::Either::Left(Full::new(Bytes::new())));
        *response.status_mut() = hyper::StatusCode::NO_CONTENT;
        return response;
    }
    if path.ends_with("/close") {
        let mut response = hyper::Response::new(http_body_util::Either::Left(Full::new(
            Bytes::from_static(b"bye"),
        )));
        response
            .headers_mut()
            .insert("connection", "close".parse().unwrap());
        return response;
    }
    if path.ends_with("/big") {
        let n: usize = request
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("n="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1 << 20);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let mut frames = Vec::new();
        let mut left = n;
        while left > 0 {
            let take = left.min(chunk.len());
            frames.push(Ok(Frame::data(chunk.slice(..take))));
            left -= take;
        }
        let body = StreamBody::new(futures_util::stream::iter(frames));
        return hyper::Response::new(http_body_util::Either::Right(body));
    }
    let method = request.method().to_string();
    let query = request.uri().query().map(str::to_owned);
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                serde_json::Value::String(v.to_str().unwrap_or("?").to_owned()),
            )
        })
        .collect();
    let body_len = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(usize::MAX);
    let json = serde_json::json!({
        "method": method, "path": path, "query": query, "headers": headers, "body_len": body_len,
    });
    let mut response = hyper::Response::new(http_body_util::Either::Left(Full::new(Bytes::from(
        json.to_string(),
    ))));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
        .headers_mut()
        .insert("connection", "keep-alive, x-hop".parse().unwrap());
    response
        .headers_mut()
        .insert("x-hop", "secret-hop".parse().unwrap());
    response
}
