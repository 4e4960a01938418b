//! Prometheus metrics of the store, served as text at `GET /metrics`: what every Valet server
//! counts ([`ServerMetrics`]: requests by route and status, durations, bytes in and out), with
//! refusals counted for the key's sake only (`valet_store_denials`, by code).

use std::ops::Deref;

use valet_http::metrics::{MetricName, ServerMetricNames, ServerMetrics};

/// The store's metrics.
#[derive(Debug)]
pub struct Metrics(ServerMetrics);

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set, registered under the `valet_store_` prefix.
    pub fn new() -> Metrics {
        Metrics(ServerMetrics::new(ServerMetricNames {
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
        }))
    }

    /// Records a refusal for the key's sake.
    pub fn denial(&self, code: &'static str) {
        self.0.refused(code);
    }
}

impl Deref for Metrics {
    type Target = ServerMetrics;

    fn deref(&self) -> &ServerMetrics {
        &self.0
    }
}
