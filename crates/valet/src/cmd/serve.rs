//! `valet serve`: run the store (and, once it exists, the gate) until SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use valet_ledger::SqliteLedger;
use valet_store::{StoreConfig, TlsFiles};

use crate::cli::{Role, ServeArgs};

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.role == Role::Gate {
        anyhow::bail!("the gate role is not built yet; run --role store");
    }
    serve_store(args)
}

fn store_config(args: &ServeArgs) -> anyhow::Result<StoreConfig> {
    let mut config = StoreConfig::new(args.data.clone(), args.store_addr);
    config.keyring_path = args
        .keyring
        .clone()
        .unwrap_or_else(|| args.data.join("keyring"));
    config.skew = args.skew;
    config.cors_origins = args
        .cors_origins
        .iter()
        .flat_map(|o| o.split(','))
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    config.shutdown_grace = args.shutdown_grace;
    config.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    Ok(config)
}

fn serve_store(args: ServeArgs) -> anyhow::Result<()> {
    let config = store_config(&args)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data folder {}", config.data_dir.display()))?;
    let keyring = valet_keyring::load_or_create(&config.keyring_path)?;
    let ledger_path = config.data_dir.join("ledger.sqlite");
    let ledger = SqliteLedger::open(&ledger_path)
        .with_context(|| format!("opening the ledger {}", ledger_path.display()))?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let listeners = valet_store::bind_listeners(config.listen, workers)
        .with_context(|| format!("listening on {} (--store-addr)", config.listen))?;
    let addr = listeners[0].local_addr()?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        %addr,
        workers,
        data = %config.data_dir.display(),
        keyring = %config.keyring_path.display(),
        "store listening on {scheme}://{addr}"
    );
    let store = valet_store::Store::open(config, keyring, Arc::new(ledger))
        .context("opening the blob folder")?;
    valet_store::run(store, listeners, shutdown_signal())?;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
