//! What each role may obtain, and the check of a key request against it.
//!
//! A request is granted when one of the principal's roles allows all of it: a resource pattern
//! that covers the requested scope, the operations, the lifetime, the byte and use caps. A
//! request for more is refused with `policy_denied` and a message naming the bound: never
//! silently narrowed to fit. A bound the request leaves open is filled from the policy (a
//! role with `max_bytes` never yields a key without one).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ipnet::IpNet;
use valet_key::{FileName, Limits, MediaRange, Ops, Scope};

use crate::auth::Principal;
use crate::config::{ConfigError, RoleConfig};
use crate::error::GateError;

/// The lifetime of a key when the request names none (capped by the role's `max_ttl`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// What a client asks for.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// The resource.
    pub scope: Scope,
    /// The operations.
    pub ops: Ops,
    /// The lifetime; default [`DEFAULT_TTL`].
    pub ttl: Option<Duration>,
    /// Limits; open ones are filled from the policy.
    pub limits: Limits,
}

/// A request the policy allows, with every bound filled in.
#[derive(Debug, Clone)]
pub struct Approved {
    /// The resource.
    pub scope: Scope,
    /// The operations.
    pub ops: Ops,
    /// The lifetime.
    pub ttl: Duration,
    /// The limits the key will carry.
    pub limits: Limits,
}

/// Every role's policy.
#[derive(Debug)]
pub(crate) struct Policies {
    roles: HashMap<String, RolePolicy>,
}

#[derive(Debug)]
struct RolePolicy {
    name: String,
    resources: Vec<ResourcePattern>,
    ops: Ops,
    max_ttl: Duration,
    max_bytes: Option<u64>,
    max_uses: Option<u64>,
    may_revoke: bool,
}

/// A resource a role may obtain keys for.
#[derive(Debug)]
enum ResourcePattern {
    /// Every resource.
    Any,
    /// A scope, with `{sub}` standing for the principal's name.
    Template(String),
}

impl ResourcePattern {
    fn parse(text: &str) -> Result<ResourcePattern, String> {
        if text.trim() == "*" {
            return Ok(ResourcePattern::Any);
        }
        let rest = text.replace("{sub}", "");
        if rest.contains(['{', '}']) {
            return Err(format!("'{text}': the only placeholder is {{sub}}"));
        }
        // Check the shape once with a stand-in name, so that a typo fails at start.
        text.replace("{sub}", "principal")
            .parse::<Scope>()
            .map_err(|e| format!("'{text}' is not a resource pattern: {e}"))?;
        Ok(ResourcePattern::Template(text.to_owned()))
    }

    /// Whether the pattern, for `principal`, covers `scope`.
    fn covers(&self, principal: &str, scope: &Scope) -> bool {
        match self {
            ResourcePattern::Any => true,
            ResourcePattern::Template(t) => {
                let Some(text) = fill_sub(t, principal) else {
                    return false;
                };
                text.parse::<Scope>().is_ok_and(|s| s.covers(scope))
            }
        }
    }

    fn describe(&self, principal: &str) -> String {
        match self {
            ResourcePattern::Any => "*".into(),
            ResourcePattern::Template(t) => fill_sub(t, principal).unwrap_or_else(|| t.clone()),
        }
    }
}

/// `template` with `{sub}` replaced by `principal`, if the name can stand as one path segment
/// (no `/`, not `.` or `..`, no character a path refuses): a principal named `alice/x` must
/// not get `users/alice/x/`, inside `alice`'s space.
pub(crate) fn fill_sub(template: &str, principal: &str) -> Option<String> {
    if !template.contains("{sub}") {
        return Some(template.to_owned());
    }
    Some(template.replace("{sub}", principal_segment(principal)?))
}

/// The principal's name, if it can stand as one path segment.
pub(crate) fn principal_segment(principal: &str) -> Option<&str> {
    let one_segment = !principal.contains('/') && valet_key::BlobPath::parse(principal).is_ok();
    one_segment.then_some(principal)
}

impl Policies {
    pub(crate) fn new(roles: &BTreeMap<String, RoleConfig>) -> Result<Policies, ConfigError> {
        let mut compiled = HashMap::with_capacity(roles.len());
        for (name, role) in roles {
            let setting = |field: &str| format!("roles.{name}.{field}");
            let resources = role
                .resources
                .iter()
                .map(|r| ResourcePattern::parse(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConfigError::new(setting("resources"), e))?;
            if resources.is_empty() {
                return Err(ConfigError::new(setting("resources"), "lists no resource"));
            }
            let ops = role
                .ops
                .join(",")
                .parse::<Ops>()
                .map_err(|e| ConfigError::new(setting("ops"), e))?;
            if role.max_ttl.is_zero() {
                return Err(ConfigError::new(setting("max_ttl"), "must be positive"));
            }
            compiled.insert(
                name.clone(),
                RolePolicy {
                    name: name.clone(),
                    resources,
                    ops,
                    max_ttl: role.max_ttl,
                    max_bytes: role.max_bytes,
                    max_uses: role.max_uses,
                    may_revoke: role.may_revoke,
                },
            );
        }
        Ok(Policies { roles: compiled })
    }

    /// Whether a role of this name exists.
    pub(crate) fn has_role(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    /// The longest lifetime any key from this gate can have: the largest `max_ttl` (every key
    /// the policy approves, by the API or a delegate route, lives at most its role's). What a
    /// revocation of a key whose expiry the gate does not know must outlive.
    pub(crate) fn longest_ttl(&self) -> Duration {
        self.roles
            .values()
            .map(|r| r.max_ttl)
            .max()
            .unwrap_or(DEFAULT_TTL)
    }

    /// Whether one of the principal's roles may revoke keys it did not obtain.
    pub(crate) fn may_revoke(&self, principal: &Principal) -> bool {
        self.roles_of(principal).any(|r| r.may_revoke)
    }

    fn roles_of<'a>(&'a self, principal: &'a Principal) -> impl Iterator<Item = &'a RolePolicy> {
        principal.roles.iter().filter_map(|r| self.roles.get(r))
    }

    /// The request with every bound filled in, if one of the principal's roles allows it all.
    /// Otherwise the refusal of the role that came closest (whose resources matched).
    pub(crate) fn approve(
        &self,
        principal: &Principal,
        request: &KeyRequest,
    ) -> Result<Approved, GateError> {
        let mut refusal: Option<(bool, String)> = None;
        for role in self.roles_of(principal) {
            match role.check(principal, request) {
                Ok(approved) => return Ok(approved),
                Err((resource_matched, why)) => {
                    if refusal
                        .as_ref()
                        .is_none_or(|(matched, _)| resource_matched && !matched)
                    {
                        refusal = Some((resource_matched, why));
                    }
                }
            }
        }
        Err(GateError::PolicyDenied(refusal.map_or_else(
            || {
                format!(
                    "principal '{}' has no role that grants keys",
                    principal.name
                )
            },
            |(_, why)| why,
        )))
    }
}

impl RolePolicy {
    /// The approved request, or why not and whether the resource at least matched.
    fn check(
        &self,
        principal: &Principal,
        request: &KeyRequest,
    ) -> Result<Approved, (bool, String)> {
        let role = &self.name;
        if !self
            .resources
            .iter()
            .any(|p| p.covers(&principal.name, &request.scope))
        {
            let allowed: Vec<_> = self
                .resources
                .iter()
                .map(|p| p.describe(&principal.name))
                .collect();
            return Err((
                false,
                format!(
                    "resource {} is outside role '{role}' (allowed: {})",
                    request.scope,
                    allowed.join(", ")
                ),
            ));
        }
        let denied = |why: String| Err((true, why));
        if !request.ops.within(self.ops) {
            return denied(format!(
                "ops {} exceed role '{role}' (allowed: {})",
                request.ops, self.ops
            ));
        }
        let ttl = request.ttl.unwrap_or(DEFAULT_TTL.min(self.max_ttl));
        if ttl > self.max_ttl {
            return denied(format!(
                "ttl {} exceeds role '{role}''s max_ttl {}",
                humantime::format_duration(ttl),
                humantime::format_duration(self.max_ttl)
            ));
        }
        if ttl.is_zero() {
            return denied("ttl must be positive".into());
        }
        let mut limits = request.limits.clone();
        limits.max_bytes =
            capped("max_bytes", role, limits.max_bytes, self.max_bytes).or_else(denied_bound)?;
        limits.max_uses =
            capped("max_uses", role, limits.max_uses, self.max_uses).or_else(denied_bound)?;
        Ok(Approved {
            scope: request.scope.clone(),
            ops: request.ops,
            ttl,
            limits,
        })
    }
}

fn denied_bound<T>(why: String) -> Result<T, (bool, String)> {
    Err((true, why))
}

/// The requested value of a cap, or the policy's when none was asked; more than the policy's
/// is refused.
fn capped(
    bound: &str,
    role: &str,
    requested: Option<u64>,
    policy: Option<u64>,
) -> Result<Option<u64>, String> {
    match (requested, policy) {
        (Some(asked), Some(cap)) if asked > cap => Err(format!(
            "{bound} {asked} exceeds role '{role}''s {bound} {cap}"
        )),
        (None, cap) => Ok(cap),
        (asked, _) => Ok(asked),
    }
}

/// Limits of a key request given as text, checked.
#[derive(Debug, Default)]
pub(crate) struct RequestedLimits<'a> {
    pub max_bytes: Option<u64>,
    pub max_uses: Option<u64>,
    pub content_type: Option<&'a str>,
    pub ips: Vec<&'a str>,
    pub filename: Option<&'a str>,
}

impl RequestedLimits<'_> {
    /// The limits, or a `bad_request` naming the field.
    pub(crate) fn parse(&self) -> Result<Limits, GateError> {
        let bad =
            |field: &str, e: &dyn std::fmt::Display| GateError::BadRequest(format!("{field}: {e}"));
        if self.max_uses == Some(0) {
            return Err(GateError::BadRequest("max_uses: must be at least 1".into()));
        }
        let content_type = self
            .content_type
            .map(|t| t.parse::<MediaRange>().map_err(|e| bad("content_type", &e)))
            .transpose()?;
        let client_ips = self
            .ips
            .iter()
            .map(|t| parse_network(t).map_err(|e| bad("ip", &e)))
            .collect::<Result<Vec<_>, _>>()?;
        let filename = self
            .filename
            .map(|f| FileName::parse(f).map_err(|e| bad("filename", &e)))
            .transpose()?;
        Ok(Limits {
            max_bytes: self.max_bytes,
            max_uses: self.max_uses,
            content_type,
            client_ips,
            filename,
            event_target: None,
        })
    }
}

/// One address or a CIDR block without host bits.
fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    let net: IpNet = text
        .parse()
        .map_err(|_| format!("'{text}' is not an address or CIDR block"))?;
    if net.trunc() != net {
        return Err(format!(
            "'{text}' has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}
