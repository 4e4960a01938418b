//! A real store on an ephemeral loopback port, its data in a temporary folder, and helpers to
//! mint keys for it.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::ObjectStoreExt as _;
use tokio::sync::oneshot;
use valet_key::{Caveat, Claims, KeyId, Keyring, Limits, Scope, Token, UnixTime};
use valet_ledger::{Ledger, SqliteLedger};
use valet_store::{BlobStorage, S3Settings, Store, StoreConfig};
use valet_testkit::garage::{self, Garage};
use valet_testkit::raw_http;

/// Which blob backend a store under test keeps its blobs in: the conformance suite
/// (`tests/blobs.rs`) runs every case on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `DATA/blobs`, the default.
    Folder,
    /// A bucket of its own in this test binary's Garage, under the prefix `valet/`.
    Garage,
}

/// The prefix under which a Garage-backed test store keeps its containers.
pub const S3_PREFIX: &str = "valet";

/// A test store's bucket, and a client for it that bypasses the store.
pub struct TestBucket {
    pub name: String,
    pub client: AmazonS3,
}

/// Settings for a store on `bucket` of `garage`.
pub fn s3_settings(garage: &Garage, bucket: &str) -> S3Settings {
    S3Settings {
        bucket: bucket.to_owned(),
        prefix: S3_PREFIX.to_owned(),
        endpoint: Some(garage.endpoint.clone()),
        region: Some(garage::REGION.to_owned()),
        access_key_id: Some(garage::ACCESS_KEY_ID.to_owned()),
        secret_access_key: Some(garage::SECRET_ACCESS_KEY.to_owned()),
        ..S3Settings::default()
    }
}

/// A client for `bucket` of `garage`, as any S3 tool would see it.
pub fn s3_client(garage: &Garage, bucket: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(&garage.endpoint)
        .with_region(garage::REGION)
        .with_access_key_id(garage::ACCESS_KEY_ID)
        .with_secret_access_key(garage::SECRET_ACCESS_KEY)
        .with_allow_http(true)
        .build()
        .unwrap()
}

pub struct TestStore {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub keyring: Keyring,
    pub ledger: Arc<SqliteLedger>,
    pub store: Arc<Store>,
    pub http: reqwest::Client,
    /// Set when the blobs are in Garage.
    pub bucket: Option<TestBucket>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn now() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

pub fn scope(text: &str) -> Scope {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// What a test key grants; `Default` is a 10-minute key with no limits.
#[derive(Default, Clone)]
pub struct KeySpec {
    pub subject: Option<String>,
    pub not_before: Option<UnixTime>,
    pub expires: Option<UnixTime>,
    pub limits: Limits,
}

impl KeySpec {
    /// A 10-minute key with these limits.
    pub fn limited(limits: Limits) -> KeySpec {
        KeySpec {
            limits,
            ..KeySpec::default()
        }
    }
}

impl TestStore {
    /// `PUT url` with `body` and, if given, one extra header.
    pub async fn put_with(
        &self,
        url: &str,
        header: Option<(&str, &str)>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self.http.put(url).body(body);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request.send().await.unwrap()
    }

    pub async fn start() -> TestStore {
        TestStore::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut StoreConfig)) -> TestStore {
        TestStore::start_on_with(Backend::Folder, configure).await
    }

    /// A store keeping its blobs in `backend`.
    pub async fn start_on(backend: Backend) -> TestStore {
        TestStore::start_on_with(backend, |_| {}).await
    }

    /// A store keeping its blobs in `backend`, configured by `configure`.
    pub async fn start_on_with(
        backend: Backend,
        configure: impl FnOnce(&mut StoreConfig),
    ) -> TestStore {
        let bucket = match backend {
            Backend::Folder => None,
            Backend::Garage => Some(
                tokio::task::spawn_blocking(|| {
                    let garage = Garage::shared();
                    let name = garage.bucket();
                    let client = s3_client(garage, &name);
                    TestBucket { name, client }
                })
                .await
                .unwrap(),
            ),
        };
        let settings = bucket
            .as_ref()
            .map(|bucket| s3_settings(Garage::shared(), &bucket.name));
        TestStore::start_configured(bucket, move |config| {
            if let Some(settings) = settings {
                config.blobs = BlobStorage::S3(settings);
            }
            configure(config);
        })
        .await
    }

    async fn start_configured(
        bucket: Option<TestBucket>,
        configure: impl FnOnce(&mut StoreConfig),
    ) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let keyring_path = dir.path().join("keyring");
        let keyring = valet_keyring::create(&keyring_path).unwrap();
        let ledger = Arc::new(SqliteLedger::open(&dir.path().join("ledger.sqlite")).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = StoreConfig::new(dir.path().to_owned(), addr);
        config.keyring_path = keyring_path;
        configure(&mut config);
        let store =
            Store::open(config, keyring.clone(), ledger.clone() as Arc<dyn Ledger>).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let store = store.clone();
            async move {
                valet_store::serve(store, listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        TestStore {
            addr,
            dir,
            keyring,
            ledger,
            store,
            http: reqwest::Client::new(),
            bucket,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// The store's `GET /metrics` answer, as a scraper gets it.
    pub async fn metrics_text(&self) -> String {
        let response = self.http.get(self.url("/metrics")).send().await;
        response.unwrap().text().await.unwrap()
    }

    /// The body of `GET url`, whatever the status.
    pub async fn get_bytes(&self, url: &str) -> reqwest::Result<bytes::Bytes> {
        self.http.get(url).send().await?.bytes().await
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn blob_file(&self, container: &str, path: &str) -> PathBuf {
        self.data().join("blobs").join(container).join(path)
    }

    /// The bytes stored for a blob, read from where the backend keeps them (not through the
    /// store), or `None` if nothing is stored there.
    pub async fn stored(&self, container: &str, path: &str) -> Option<Vec<u8>> {
        match &self.bucket {
            None => std::fs::read(self.blob_file(container, path)).ok(),
            Some(bucket) => {
                let key = object_store::path::Path::from(format!("{S3_PREFIX}/{container}/{path}"));
                match bucket.client.get(&key).await {
                    Ok(found) => Some(found.bytes().await.unwrap().to_vec()),
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => panic!("reading {key} from the bucket: {e}"),
                }
            }
        }
    }

    /// Whether nothing is stored under `container/folder/`: for the folder, that the folder
    /// itself is gone (emptied folders are pruned).
    pub async fn folder_gone(&self, container: &str, folder: &str) -> bool {
        use futures_util::StreamExt as _;
        match &self.bucket {
            None => !self
                .data()
                .join("blobs")
                .join(container)
                .join(folder)
                .exists(),
            Some(bucket) => {
                let prefix =
                    object_store::path::Path::from(format!("{S3_PREFIX}/{container}/{folder}"));
                object_store::ObjectStore::list(&bucket.client, Some(&prefix))
                    .next()
                    .await
                    .is_none()
            }
        }
    }

    /// Multipart uploads begun in the bucket and neither completed nor aborted (zero for the
    /// folder, which has none).
    pub async fn unfinished_uploads(&self) -> u64 {
        match &self.bucket {
            None => 0,
            Some(bucket) => {
                let name = bucket.name.clone();
                tokio::task::spawn_blocking(move || Garage::shared().unfinished_uploads(&name))
                    .await
                    .unwrap()
            }
        }
    }

    /// Files left in the temporary upload folder.
    pub fn temp_files(&self) -> usize {
        std::fs::read_dir(self.data().join("tmp")).unwrap().count()
    }

    pub fn token(&self, scope_text: &str, ops: &str, spec: KeySpec) -> Token {
        let now = now();
        let claims = Claims {
            key_id: KeyId::random(&mut rand_core::OsRng),
            subject: spec.subject,
            scope: scope(scope_text),
            ops: ops.parse().unwrap(),
            not_before: spec.not_before.unwrap_or(now),
            expires: spec.expires.unwrap_or(now.plus(600)),
            limits: spec.limits,
        };
        // Unchecked: the store must answer even keys no issuer would make now (a queue
        // operation on a blob), as an older issuer may have signed them.
        self.keyring.issue_unchecked(claims).unwrap()
    }

    /// A plain key's text.
    pub fn key(&self, scope_text: &str, ops: &str) -> String {
        self.token(scope_text, ops, KeySpec::default()).to_string()
    }

    pub fn key_with(&self, scope_text: &str, ops: &str, spec: KeySpec) -> String {
        self.token(scope_text, ops, spec).to_string()
    }

    pub fn attenuated(&self, token: &Token, caveat: Caveat) -> String {
        token.attenuate(caveat).unwrap().to_string()
    }

    /// Uploads `data` with a fresh write key; panics unless it is stored.
    pub async fn put(
        &self,
        container: &str,
        path: &str,
        data: impl Into<reqwest::Body>,
        content_type: &str,
    ) {
        let key = self.key(&format!("blob:{container}/{path}"), "write");
        let response = self
            .http
            .put(self.url(&format!("/blob/{container}/{path}?vk={key}")))
            .header("content-type", content_type)
            .body(data)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "PUT {path}: {}",
            response.status()
        );
    }

    /// Sends raw bytes as one HTTP/1.1 request and returns the raw response, so that no
    /// client library normalises the path first.
    pub async fn raw(&self, request: &str) -> String {
        raw_http::send(self.addr, request).await
    }

    /// Status code of a raw `GET target` with `Connection: close`.
    pub async fn raw_get_status(&self, target: &str, extra_headers: &str) -> u16 {
        raw_http::status_of(&self.raw(&raw_get(target, extra_headers)).await)
    }
}

/// A raw `GET target` with `Connection: close` and `extra_headers` (whole header lines).
pub fn raw_get(target: &str, extra_headers: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra_headers}\r\n")
}

/// The error codes the store can produce: those its one mapping function's source names, and
/// `Denial::code()`'s, the key crate's denials. `tests/openapi.rs` holds them against the
/// document, `tests/hygiene.rs` against `docs/ERRORS.md`.
/// The value of a counter in the store's metrics text.
pub fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

pub fn codes_in_source() -> BTreeSet<String> {
    let mut codes = valet_testkit::openapi::codes_in_source(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/error.rs"
    ));
    for denial in [
        "key_invalid",
        "key_expired",
        "key_not_yet_valid",
        "out_of_scope",
        "op_not_allowed",
        "ip_not_allowed",
    ] {
        codes.insert(denial.into());
    }
    codes
}

/// The error code of a JSON error response.
pub async fn error_code(response: reqwest::Response) -> String {
    let json: serde_json::Value = response.json().await.expect("a JSON error body");
    json["error"]["code"]
        .as_str()
        .expect("an error code")
        .to_owned()
}
