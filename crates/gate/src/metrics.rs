//! Prometheus metrics of the gate, served at `GET /metrics`. The body byte counters count
//! only proxied bodies: a delegated transfer never passes through the gate, and the counters
//! prove it.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViaLabel {
    via: &'static str,
}

/// The gate's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabel, Histogram>,
    refusals: Family<CodeLabel, Counter>,
    issued: Family<ViaLabel, Counter>,
    /// Request body bytes the gate carried (proxy routes only).
    pub bytes_in: Counter,
    /// Response body bytes the gate carried (proxy routes only).
    pub bytes_out: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set, registered under the `valet_gate_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("valet_gate");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0].into_iter())
        });
        let refusals = Family::<CodeLabel, Counter>::default();
        let issued = Family::<ViaLabel, Counter>::default();
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
        registry.register(
            "refusals",
            "Requests refused, by error code",
            refusals.clone(),
        );
        registry.register(
            "keys_issued",
            "Keys issued, by API or delegate route",
            issued.clone(),
        );
        registry.register(
            "body_bytes_in",
            "Request body bytes carried by proxy routes",
            bytes_in.clone(),
        );
        registry.register(
            "body_bytes_out",
            "Response body bytes carried by proxy routes",
            bytes_out.clone(),
        );
        Metrics {
            registry,
            requests,
            durations,
            refusals,
            issued,
            bytes_in,
            bytes_out,
        }
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

    /// Records a refused request.
    pub fn refusal(&self, code: &'static str) {
        self.refusals.get_or_create(&CodeLabel { code }).inc();
    }

    /// Records an issued key.
    pub fn issued(&self, via: &'static str) {
        self.issued.get_or_create(&ViaLabel { via }).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
