//! Prometheus metrics of the store, served as text at `GET /metrics`: what every Valet server
//! counts ([`ServerMetrics`]: requests by route and status, durations, bytes in and out), with
//! refusals counted for the key's sake only (`valet_store_denials`, by code), and the
//! small-blob cache: its hits and misses, and what it holds (`valet_store_blob_cache_entries`,
//! `_bytes`, read when scraped so that serving a blob pays nothing for them), and the download
//! bytes sent without copying (`valet_store_bytes_out_zero_copy`): an operator can see whether
//! `sendfile` is in effect (plain HTTP/1) or not (TLS, HTTP/2).

use std::ops::Deref;

use prometheus_client::metrics::gauge::Gauge;
use valet_http::metrics::{Counter, MetricName, ServerMetricNames, ServerMetrics};

use crate::blobs::CacheCounters;

/// The store's metrics.
#[derive(Debug)]
pub struct Metrics {
    server: ServerMetrics,
    blob_cache: CacheCounters,
    blob_cache_entries: Gauge,
    blob_cache_bytes: Gauge,
    /// Download body bytes sent with `sendfile`, also counted in `bytes_out`.
    pub bytes_out_zero_copy: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set, registered under the `valet_store_` prefix.
    pub fn new() -> Metrics {
        let mut server = ServerMetrics::new(ServerMetricNames {
            prefix: "valet_store",
            refused: MetricName {
                name: "denials",
                help: "Requests refused for their key, by code",
            },
            bytes_in: MetricName {
                name: "bytes_in",
                help: "Upload body bytes received",
            },
            bytes_out: MetricName {
                name: "bytes_out",
                help: "Download body bytes sent",
            },
        });
        let blob_cache = CacheCounters::default();
        server.registry().register(
            "blob_cache_hits",
            "Small blobs served from memory",
            blob_cache.hits.clone(),
        );
        server.registry().register(
            "blob_cache_misses",
            "Small blobs read from their file",
            blob_cache.misses.clone(),
        );
        let blob_cache_entries = Gauge::default();
        let blob_cache_bytes = Gauge::default();
        server.registry().register(
            "blob_cache_entries",
            "Small blobs held in memory",
            blob_cache_entries.clone(),
        );
        server.registry().register(
            "blob_cache_bytes",
            "Bytes the small-blob cache counts against its budget",
            blob_cache_bytes.clone(),
        );
        let bytes_out_zero_copy = Counter::default();
        server.registry().register(
            "bytes_out_zero_copy",
            "Download body bytes sent from the file without copying (sendfile), also in bytes_out",
            bytes_out_zero_copy.clone(),
        );
        Metrics {
            server,
            blob_cache,
            blob_cache_entries,
            blob_cache_bytes,
            bytes_out_zero_copy,
        }
    }

    /// The counters the small-blob cache counts its hits and misses into.
    pub fn blob_cache_counters(&self) -> CacheCounters {
        self.blob_cache.clone()
    }

    /// Records what the small-blob cache holds, just before the metrics are rendered.
    pub fn blob_cache(&self, entries: u64, bytes: u64) {
        self.blob_cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.blob_cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

impl Deref for Metrics {
    type Target = ServerMetrics;

    fn deref(&self) -> &ServerMetrics {
        &self.server
    }
}
