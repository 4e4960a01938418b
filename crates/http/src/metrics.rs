//! The metrics every Valet server keeps, in one place so that the gate's and the store's
//! `/metrics` have the same names, labels and buckets: requests by route and status, time to
//! the response head by route, requests refused by error code, and body bytes in and out. Each
//! tier registers what only it counts next to them ([`ServerMetrics::registry`]).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The counter type of [`ServerMetrics::bytes_in`] and `bytes_out`, which body streams hold.
pub use prometheus_client::metrics::counter::Counter;

/// The `Content-Type` of the text exposition that [`ServerMetrics::render`] writes.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the duration buckets, in seconds: from a cached small answer to a long
/// transfer's head.
const DURATION_BUCKETS: [f64; 9] = [0.0005, 0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// What a metric is called and what its help text says.
#[derive(Clone, Copy, Debug)]
pub struct MetricName {
    /// The name after the server's prefix (`denials` → `valet_store_denials`).
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
}

/// How a server names its refusal and body-byte counters, which mean slightly different
/// things in each tier (the store counts key denials, the gate every refusal; the gate's
/// bytes are proxied bodies only).
#[derive(Clone, Copy, Debug)]
pub struct ServerMetricNames {
    /// The prefix of every name (`valet_store`).
    pub prefix: &'static str,
    /// Requests refused, labelled by error code.
    pub refused: MetricName,
    /// Request body bytes received.
    pub bytes_in: MetricName,
    /// Response body bytes sent.
    pub bytes_out: MetricName,
}

/// The metrics every server keeps.
#[derive(Debug)]
pub struct ServerMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabel, Histogram>,
    refused: Family<CodeLabel, Counter>,
    /// Request body bytes received.
    pub bytes_in: Counter,
    /// Response body bytes sent.
    pub bytes_out: Counter,
}

impl ServerMetrics {
    /// A fresh set under `names.prefix`.
    pub fn new(names: ServerMetricNames) -> ServerMetrics {
        let mut registry = Registry::with_prefix(names.prefix);
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(DURATION_BUCKETS.into_iter())
        });
        let refused = Family::<CodeLabel, Counter>::default();
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        registry.register(
            "requests",
            "Requests by route and HTTP status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the response head, by route",
            durations.clone(),
        );
        registry.register(names.refused.name, names.refused.help, refused.clone());
        registry.register(names.bytes_in.name, names.bytes_in.help, bytes_in.clone());
        registry.register(
            names.bytes_out.name,
            names.bytes_out.help,
            bytes_out.clone(),
        );
        ServerMetrics {
            registry,
            requests,
            durations,
            refused,
            bytes_in,
            bytes_out,
        }
    }

    /// Where a tier registers the metrics only it keeps, under the same prefix.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Records one finished request.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.durations
            .get_or_create(&RouteLabel { route })
            .observe(seconds);
    }

    /// Records one refused request.
    pub fn refused(&self, code: &'static str) {
        self.refused.get_or_create(&CodeLabel { code }).inc();
    }

    /// The text exposition, served as [`METRICS_CONTENT_TYPE`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> ServerMetricNames {
        ServerMetricNames {
            prefix: "valet_test",
            refused: MetricName {
                name: "refusals",
                help: "Refused",
            },
            bytes_in: MetricName {
                name: "bytes_in",
                help: "In",
            },
            bytes_out: MetricName {
                name: "bytes_out",
                help: "Out",
            },
        }
    }

    #[test]
    fn counts_requests_refusals_and_bytes_under_the_prefix() {
        let mut metrics = ServerMetrics::new(names());
        let extra = Counter::<u64>::default();
        metrics
            .registry()
            .register("extra", "A tier's own", extra.clone());
        metrics.request("blob_get", 200, 0.0002);
        metrics.request("blob_get", 200, 0.002);
        metrics.refused("key_expired");
        metrics.bytes_out.inc_by(4096);
        extra.inc();
        let text = metrics.render();
        for line in [
            "valet_test_requests_total{route=\"blob_get\",status=\"200\"} 2",
            "valet_test_request_duration_seconds_bucket{le=\"0.0005\",route=\"blob_get\"} 1",
            "valet_test_refusals_total{code=\"key_expired\"} 1",
            "valet_test_bytes_out_total 4096",
            "valet_test_bytes_in_total 0",
            "valet_test_extra_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
