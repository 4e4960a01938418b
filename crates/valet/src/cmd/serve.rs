//! `valet serve`: run the gate, the store, or both, until SIGINT or SIGTERM.

mod keyring;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use valet_gate::config::{ApiKeyConfig, GateConfig};
use valet_gate::Gate;
use valet_http::{ServeOptions, Site};
use valet_key::Keyring;
use valet_ledger::{Ledger, OpenOptions};
use valet_store::{Store, StoreConfig};

use crate::cli::ServeArgs;
use crate::settings::{self, Settings};

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.print_defaults {
        print!("{}", settings::DEFAULTS);
        return Ok(());
    }
    let settings = Settings::load(&args)?;
    let tls = settings.tls()?;
    // Every setting is checked before anything is opened or created.
    settings.blob_storage()?;
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("creating the data folder {}", settings.data.display()))?;
    let keyring = keyring::open(&settings)?;
    let ledger = open_ledger(&settings)?;
    let ledger_for_pruning = ledger.clone();
    let workers = settings
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let scheme = if tls.is_some() { "https" } else { "http" };

    let mut sites: Vec<Site> = Vec::new();
    let mut store_addr = settings.store_addr;
    let mut background: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> =
        Vec::new();
    if settings.role.runs_store() {
        let listeners = valet_store::bind_listeners(settings.store_addr, workers)
            .with_context(|| format!("listening on {} (store_addr)", settings.store_addr))?;
        store_addr = listeners[0].local_addr()?;
        let store = open_store(
            &settings,
            tls.clone(),
            store_addr,
            keyring.clone(),
            ledger.clone(),
        )?;
        tracing::info!(addr = %store_addr, workers, data = %settings.data.display(), "store listening on {scheme}://{store_addr}");
        background.push(Box::pin(valet_store::watch_keyring(store.clone())));
        background.push(Box::pin(valet_store::sweep_abandoned_uploads(
            store.clone(),
        )));
        sites.push(store.site(listeners));
    }
    if settings.role.runs_gate() {
        let listeners = valet_store::bind_listeners(settings.gate_addr, workers)
            .with_context(|| format!("listening on {} (gate_addr)", settings.gate_addr))?;
        let gate_addr = listeners[0].local_addr()?;
        let store_url = settings.store_url().map_or_else(
            || format!("{scheme}://{}", public(store_addr)),
            str::to_owned,
        );
        let (admin_key, created) = settings::admin_api_key(&settings)?;
        let gate = open_gate(
            &settings,
            tls.is_some(),
            &store_url,
            &admin_key,
            keyring,
            ledger,
        )?;
        tracing::info!(addr = %gate_addr, workers, store_url, "gate listening on {scheme}://{gate_addr}");
        if created {
            welcome(
                &settings,
                &format!("{scheme}://{}", public(gate_addr)),
                &admin_key,
            );
        }
        background.push(Box::pin(valet_gate::housekeeping(gate.clone())));
        let options = ServeOptions {
            tls,
            shutdown_grace: settings.shutdown_grace,
            limits: settings.connection_limits(),
            ..ServeOptions::default()
        };
        sites.push(gate.site(options, listeners));
    }
    background.push(Box::pin(prune_ledger(ledger_for_pruning)));
    let background = async move {
        futures_util::future::join_all(background).await;
    };
    valet_http::run(sites, background, shutdown_signal())?;
    Ok(())
}

/// An address to put in a URL: a wildcard listen address is reached at the loopback.
fn public(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}

fn open_store(
    settings: &Settings,
    tls: Option<valet_http::TlsFiles>,
    addr: SocketAddr,
    keyring: Keyring,
    ledger: Arc<dyn Ledger>,
) -> anyhow::Result<Arc<Store>> {
    let mut config = StoreConfig::new(settings.data.clone(), addr);
    config.keyring_path = settings.keyring_path();
    // The gate's setting: the tolerance both tiers allow a key's window.
    config.skew = settings.gate.skew;
    config.cors_origins = settings.cors_origins.clone();
    config.shutdown_grace = settings.shutdown_grace;
    config.blob_cache = settings.blob_cache;
    config.blob_mode = settings.blob_mode;
    config.blobs = settings.blob_storage()?;
    config.limits = settings.connection_limits();
    config.tls = tls;
    let what = match &config.blobs {
        valet_store::BlobStorage::Folder => "opening the blob folder".to_owned(),
        valet_store::BlobStorage::S3(s3) => format!("opening the blob bucket s3://{}", s3.bucket),
    };
    Store::open(config, keyring, ledger).context(what)
}

fn open_gate(
    settings: &Settings,
    https: bool,
    store_url: &str,
    admin_key: &str,
    keyring: Keyring,
    ledger: Arc<dyn Ledger>,
) -> anyhow::Result<Arc<Gate>> {
    let mut config = GateConfig {
        store_url: store_url.to_owned(),
        https,
        ..settings.gate.clone()
    };
    config.api_keys.push(ApiKeyConfig {
        principal: "admin".into(),
        roles: vec!["admin".into()],
        sha256: valet_gate::api_key_hash(admin_key),
    });
    Gate::new(config, keyring, settings.keyring_path(), ledger)
        .map_err(|e| anyhow::anyhow!("bad configuration: {e}"))
}

/// Printed once, when the admin API key is created: what to do next.
fn welcome(settings: &Settings, gate_url: &str, admin_key: &str) {
    let key_file = settings.data.join("admin-api-key");
    println!(
        "\nValet is ready. Admin API key (shown once; also in {file}, owner-only):\n\n    {admin_key}\n\n\
         Upload and download a file through the gate (the bytes go straight to the store):\n\n    \
         curl -L -T README.md -H \"Authorization: Bearer {admin_key}\" {gate_url}/files/README.md\n    \
         curl -L -H \"Authorization: Bearer {admin_key}\" {gate_url}/files/README.md\n\n\
         Or get a key to hand to someone else:\n\n    \
         curl -H \"Authorization: Bearer {admin_key}\" -d '{{\"resource\":\"blob:files/README.md\",\"ops\":[\"read\"],\"ttl\":\"10m\"}}' {gate_url}/v1/keys\n",
        file = key_file.display()
    );
}

/// The ledger the settings name (see `valet_ledger::open`), named in messages without any
/// password.
fn open_ledger(settings: &Settings) -> anyhow::Result<Arc<dyn Ledger>> {
    let location = settings.ledger_location();
    // A key is honoured for the skew past its expiry: its uses must be remembered as long.
    let defaults = OpenOptions::default();
    let options = OpenOptions::default()
        .with_forget_grace(defaults.forget_grace.max(settings.gate.skew))
        .with_staleness(settings.ledger_staleness);
    let ledger = valet_ledger::open(&location, &options).or_else(|err| {
        match valet_ledger::Backend::of(&location) {
            valet_ledger::Backend::Postgres(_) => Err(err).context("opening the ledger"),
            valet_ledger::Backend::Sqlite(path) => {
                Err(err).with_context(|| format!("opening the ledger {}", path.display()))
            }
        }
    })?;
    tracing::info!(ledger = %ledger_name(&location), "ledger open");
    Ok(ledger)
}

/// How the ledger is named in logs: a PostgreSQL URL without its user and password.
fn ledger_name(location: &str) -> String {
    match valet_ledger::Backend::of(location) {
        valet_ledger::Backend::Postgres(url) => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        valet_ledger::Backend::Sqlite(path) => path.display().to_string(),
    }
}

/// Once a minute, lets the ledger drop the rows of keys past their expiry (and grace): every
/// key issued through the API and every counted use leaves one. Run once per process,
/// whichever roles it serves; a failure costs only disk space until the next try.
async fn prune_ledger(ledger: Arc<dyn Ledger>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    tick.tick().await;
    loop {
        tick.tick().await;
        let ledger = ledger.clone();
        let pruned =
            tokio::task::spawn_blocking(move || ledger.forget_expired(valet_keyring::now())).await;
        match pruned {
            Ok(Ok(0)) | Err(_) => {}
            Ok(Ok(rows)) => tracing::debug!(rows, "ledger: forgot expired keys"),
            Ok(Err(e)) => tracing::warn!(error = %e, "ledger: cannot forget expired keys"),
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        let signal = tokio::select! {
            _ = interrupt => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        tracing::info!(signal, "{signal} received: shutting down");
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        tracing::info!(signal = "SIGINT", "SIGINT received: shutting down");
    }
}
