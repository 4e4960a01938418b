//! The gate's shared state, built from a checked configuration.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::HeaderName;
use valet_key::{Keyring, Verifier};
use valet_keyring::{KeyringWatch, Reload};
use valet_ledger::Ledger;

use crate::auth::{Authenticator, Principal};
use crate::config::{ConfigError, GateConfig};
use crate::error::GateError;
use crate::metrics::Metrics;
use crate::policy::Policies;
use crate::routes::RouteTable;

/// Everything a gate request handler may need.
pub struct Gate {
    pub(crate) store_url: String,
    pub(crate) https: bool,
    pub(crate) auth: Authenticator,
    pub(crate) policies: Policies,
    pub(crate) routes: RouteTable,
    pub(crate) limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// A separate bucket for revocations: each one is a durable ledger write.
    revocation_limiter: Option<DefaultKeyedRateLimiter<String>>,
    pub(crate) principal_header: HeaderName,
    pub(crate) roles_header: HeaderName,
    pub(crate) ledger: Arc<dyn Ledger>,
    pub(crate) metrics: Metrics,
    keys: KeyringWatch,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("store_url", &self.store_url)
            .field("auth", &self.auth)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// Checks `config` and assembles the gate. `keyring` was loaded from `keyring_path`, which
    /// is watched for rotations.
    pub fn new(
        config: GateConfig,
        keyring: Keyring,
        keyring_path: PathBuf,
        ledger: Arc<dyn Ledger>,
    ) -> Result<Arc<Gate>, ConfigError> {
        let store_url = check_store_url(&config.store_url)?;
        let policies = Policies::new(&config.roles)?;
        let auth = Authenticator::new(
            &config.api_keys,
            config.jwt.as_ref(),
            &config.roles,
            config.skew.as_secs(),
        )?;
        let routes = RouteTable::new(&config.routes, &config.proxy)?;
        for (i, route) in routes.iter().enumerate() {
            if let Some(role) = route.roles.iter().find(|r| !policies.has_role(r)) {
                return Err(ConfigError::new(
                    format!("routes[{i}].roles"),
                    format!("no role named '{role}' in [roles]"),
                ));
            }
        }
        let header = |setting: &str, name: &str| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ConfigError::new(setting, format!("'{name}': {e}")))
        };
        Ok(Arc::new(Gate {
            store_url,
            https: config.https,
            auth,
            policies,
            routes,
            limiter: rate_limiter(
                config.rate_limit.per_second,
                config.rate_limit.burst,
                "rate_limit.burst",
            )?,
            revocation_limiter: rate_limiter(
                config.rate_limit.revocations_per_second,
                config.rate_limit.revocations_burst,
                "rate_limit.revocations_burst",
            )?,
            principal_header: header("proxy.principal_header", &config.proxy.principal_header)?,
            roles_header: header("proxy.roles_header", &config.proxy.roles_header)?,
            ledger,
            metrics: Metrics::new(),
            keys: KeyringWatch::new(keyring_path, keyring, config.skew.as_secs()),
        }))
    }

    /// The verifier for the current keyring; its keyring signs.
    pub(crate) fn verifier(&self) -> Arc<Verifier> {
        self.keys.current()
    }

    /// The metrics, for tests and embedding.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Re-reads the keyring file if it changed since the last look.
    pub fn reload_keyring_if_changed(&self) {
        match self.keys.reload_if_changed() {
            Ok(Reload::Unchanged) => {}
            Ok(Reload::Reloaded { ids, active }) => tracing::info!(
                ?ids,
                ?active,
                "keyring reloaded: keys {}; active {}",
                ids.join(", "),
                active.as_deref().unwrap_or("none")
            ),
            Err(e) => tracing::warn!(error = %e, "keyring changed but could not be read"),
        }
    }

    /// Counts one request against the principal's rate.
    pub(crate) fn check_rate(&self, principal: &Principal) -> Result<(), GateError> {
        charge(self.limiter.as_ref(), &principal.name)
    }

    /// Counts one revocation against `principal`'s revocation rate, before anything is written:
    /// a refused call writes nothing.
    pub(crate) fn check_revocation_rate(&self, principal: &String) -> Result<(), GateError> {
        charge(self.revocation_limiter.as_ref(), principal)
    }

    /// Forgets rate-limit state of principals that have been quiet, so that memory stays
    /// bounded however many principals come and go.
    pub(crate) fn forget_quiet_principals(&self) {
        for limiter in [&self.limiter, &self.revocation_limiter]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Takes one token of `who`'s bucket, or says how long to wait for one.
fn charge(
    limiter: Option<&DefaultKeyedRateLimiter<String>>,
    who: &String,
) -> Result<(), GateError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(who).map_err(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        GateError::RateLimited {
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    })
}

fn rate_limiter(
    per_second: u32,
    burst: u32,
    burst_setting: &str,
) -> Result<Option<DefaultKeyedRateLimiter<String>>, ConfigError> {
    let Some(rate) = NonZeroU32::new(per_second) else {
        return Ok(None);
    };
    let burst = NonZeroU32::new(burst)
        .ok_or_else(|| ConfigError::new(burst_setting, "must be at least 1"))?;
    Ok(Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    )))
}

fn check_store_url(text: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::new("store_url", format!("'{text}' {why}"));
    let uri: http::Uri = text.parse().map_err(|_| bad("is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(bad("must be an http:// or https:// URL with a host"));
    }
    if uri.query().is_some() {
        return Err(bad("must not have a query"));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// Runs the gate's housekeeping every two seconds: keyring reloads and rate-limit cleanup.
pub async fn housekeeping(gate: Arc<Gate>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let gate = gate.clone();
        let _ = tokio::task::spawn_blocking(move || {
            gate.reload_keyring_if_changed();
            gate.forget_quiet_principals();
        })
        .await;
    }
}
