//! Prometheus metrics of the gate, served at `GET /metrics`: what every Valet server counts
//! ([`ServerMetrics`]: requests by route and status, durations, refusals by code), with keys
//! issued by way of issue. The body byte counters count only proxied bodies: a delegated
//! transfer never passes through the gate, and the counters prove it.

use std::ops::Deref;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use valet_http::metrics::{MetricName, ServerMetricNames, ServerMetrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViaLabel {
    via: &'static str,
}

/// The gate's metrics.
#[derive(Debug)]
pub struct Metrics {
    server: ServerMetrics,
    issued: Family<ViaLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set, registered under the `valet_gate_` prefix.
    pub fn new() -> Metrics {
        let mut server = ServerMetrics::new(ServerMetricNames {
            prefix: "valet_gate",
            refused: MetricName {
                name: "refusals",
                help: "Requests refused, by error code",
            },
            bytes_in: MetricName {
                name: "body_bytes_in",
                help: "Request body bytes carried by proxy routes",
            },
            bytes_out: MetricName {
                name: "body_bytes_out",
                help: "Response body bytes carried by proxy routes",
            },
        });
        let issued = Family::<ViaLabel, Counter>::default();
        server.registry().register(
            "keys_issued",
            "Keys issued, by API or delegate route",
            issued.clone(),
        );
        Metrics { server, issued }
    }

    /// Records an issued key.
    pub fn issued(&self, via: &'static str) {
        self.issued.get_or_create(&ViaLabel { via }).inc();
    }
}

impl Deref for Metrics {
    type Target = ServerMetrics;

    fn deref(&self) -> &ServerMetrics {
        &self.server
    }
}
