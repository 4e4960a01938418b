//! Prometheus metrics of the store: requests by route and status, bytes in and out, denials by
//! code, and request durations. Served as text at `GET /metrics`.

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

/// The store's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabel, Histogram>,
    denials: Family<CodeLabel, Counter>,
    /// Body bytes received in uploads.
    pub bytes_in: Counter,
    /// Body bytes sent in downloads.
    pub bytes_out: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set, registered under the `valet_store_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("valet_store");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0].into_iter())
        });
        let denials = Family::<CodeLabel, Counter>::default();
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
            "denials",
            "Requests refused for their key, by code",
            denials.clone(),
        );
        registry.register("bytes_in", "Upload body bytes received", bytes_in.clone());
        registry.register("bytes_out", "Download body bytes sent", bytes_out.clone());
        Metrics {
            registry,
            requests,
            durations,
            denials,
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

    /// Records a refusal for the key's sake.
    pub fn denial(&self, code: &'static str) {
        self.denials.get_or_create(&CodeLabel { code }).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
