//! The route table: which path and method go where, delegate or proxy.

use std::time::Duration;

use http::{Method, Uri};

use crate::config::{ConfigError, ProxyConfig, RouteConfig};

/// The delegate lifetime when a route names none: long enough to follow a redirect.
pub const DEFAULT_DELEGATE_TTL: Duration = Duration::from_secs(60);

/// The routes, tried in order.
#[derive(Debug)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
}

/// One route.
#[derive(Debug)]
pub(crate) struct Route {
    /// Its position in the configuration, for logs and metrics. Leaked once per route when
    /// the configuration is loaded, so that metric labels cost no allocation per request.
    pub name: &'static str,
    pattern: PathPattern,
    methods: Option<Vec<Method>>,
    /// Roles allowed; empty for any authenticated principal.
    pub roles: Vec<String>,
    /// What to do.
    pub action: Action,
}

/// What a route does with a request.
#[derive(Debug)]
pub(crate) enum Action {
    /// Mint a key for the resource and send the client to the store.
    Delegate(DelegateRoute),
    /// Forward to an upstream.
    Proxy(ProxyRoute),
}

/// A delegate route.
#[derive(Debug)]
pub(crate) struct DelegateRoute {
    /// The resource template: captures by name and `{sub}`.
    pub resource: String,
    /// The minted key's lifetime.
    pub ttl: Duration,
    /// Whether a `PUT` gets `create` rather than `write`.
    pub create_only: bool,
}

/// A proxy route.
#[derive(Debug)]
pub(crate) struct ProxyRoute {
    /// The upstream's host and port.
    pub authority: http::uri::Authority,
    /// TLS to the upstream, for an `https://` URL.
    pub tls: Option<valet_http::TlsClient>,
    /// The same, as the `Host` header the upstream gets.
    pub host: http::HeaderValue,
    /// The upstream path template, or `None` to forward the request's path as it is.
    pub path: Option<String>,
    /// The largest request body.
    pub max_body: u64,
    /// How long the upstream may take to answer.
    pub timeout: Duration,
}

/// A route that matched, with what its placeholders captured (raw, still percent-encoded).
#[derive(Debug)]
pub(crate) struct Matched<'r, 'p> {
    pub route: &'r Route,
    pub captures: Vec<(&'r str, &'p str)>,
}

/// Why no route answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoRoute {
    /// No pattern matches the path.
    NotFound,
    /// A pattern matches, but not with this method: the methods the matching routes take,
    /// for `Allow`.
    MethodNotAllowed(String),
}

#[derive(Debug)]
struct PathPattern {
    segments: Vec<Segment>,
}

#[derive(Debug)]
enum Segment {
    Literal(String),
    One(String),
    Rest(String),
}

impl PathPattern {
    fn parse(text: &str) -> Result<PathPattern, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("'{text}' must start with '/'"));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => match name.strip_prefix('*') {
                    Some(rest_name) if i + 1 == parts.len() => {
                        Segment::Rest(check_name(rest_name)?)
                    }
                    Some(_) => return Err(format!("'{text}': {{*name}} must be the last segment")),
                    None => Segment::One(check_name(name)?),
                },
                None if part.contains(['{', '}']) => {
                    return Err(format!("'{text}': a placeholder must be a whole segment"))
                }
                None if part.is_empty() && i + 1 != parts.len() => {
                    return Err(format!("'{text}' has an empty segment"))
                }
                None => Segment::Literal((*part).to_owned()),
            };
            segments.push(segment);
        }
        Ok(PathPattern { segments })
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::One(n) | Segment::Rest(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The captures, if `path` matches. `{name}` takes one non-empty segment, `{*name}` the
    /// non-empty rest.
    fn matches<'s, 'p>(&'s self, path: &'p str) -> Option<Vec<(&'s str, &'p str)>> {
        let mut rest = path.strip_prefix('/')?;
        let mut captures = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            let last = i + 1 == self.segments.len();
            if let Segment::Rest(name) = segment {
                if rest.is_empty() {
                    return None;
                }
                captures.push((name.as_str(), rest));
                return Some(captures);
            }
            let (part, tail) = match rest.split_once('/') {
                Some((part, tail)) if !last => (part, tail),
                Some(_) => return None,
                None if last => (rest, ""),
                None => return None,
            };
            match segment {
                Segment::Literal(l) if l == part => {}
                Segment::One(name) if !part.is_empty() => captures.push((name.as_str(), part)),
                _ => return None,
            }
            rest = tail;
        }
        Some(captures)
    }
}

fn check_name(name: &str) -> Result<String, String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "'{{{name}}}': placeholder names are letters, digits and '_'"
        ));
    }
    if name == "sub" {
        return Err("'{sub}' is the principal's name; pick another placeholder name".into());
    }
    Ok(name.to_owned())
}

/// `template` with `{name}` replaced by the values in `values`; `None` if a placeholder has
/// no value.
pub(crate) fn fill(template: &str, values: &[(&str, &str)]) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        let name = &rest[open + 1..close];
        let value = values.iter().find(|(n, _)| *n == name)?.1;
        out.push_str(value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

impl RouteTable {
    pub(crate) fn new(
        routes: &[RouteConfig],
        proxy: &ProxyConfig,
    ) -> Result<RouteTable, ConfigError> {
        routes
            .iter()
            .enumerate()
            .map(|(i, r)| Route::new(i, r, proxy))
            .collect::<Result<Vec<_>, _>>()
            .map(|routes| RouteTable { routes })
    }

    /// Every route, for checking roles against the policies.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The first route whose pattern and method match.
    pub(crate) fn find<'r, 'p>(
        &'r self,
        method: &Method,
        path: &'p str,
    ) -> Result<Matched<'r, 'p>, NoRoute> {
        let mut allowed: Vec<&Method> = Vec::new();
        let mut matched_path = false;
        for route in &self.routes {
            let Some(captures) = route.pattern.matches(path) else {
                continue;
            };
            if route.allows(method) {
                return Ok(Matched { route, captures });
            }
            matched_path = true;
            // A route that matches the path but not the method has a list of methods.
            for m in route.methods.iter().flatten() {
                if !allowed.contains(&m) {
                    allowed.push(m);
                }
            }
        }
        if !matched_path {
            return Err(NoRoute::NotFound);
        }
        let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
        Err(NoRoute::MethodNotAllowed(allow.join(", ")))
    }
}

impl Route {
    fn new(index: usize, config: &RouteConfig, proxy: &ProxyConfig) -> Result<Route, ConfigError> {
        let setting = |field: &str| format!("routes[{index}].{field}");
        let pattern =
            PathPattern::parse(&config.path).map_err(|e| ConfigError::new(setting("path"), e))?;
        let methods = config
            .methods
            .as_ref()
            .map(|list| {
                list.iter()
                    .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ConfigError::new(setting("methods"), e))
            })
            .transpose()?;
        let names: Vec<&str> = pattern.names().collect();
        let stand_ins: Vec<(&str, &str)> = names
            .iter()
            .map(|n| (*n, "x"))
            .chain([("sub", "x")])
            .collect();
        let action = match (&config.delegate, &config.proxy) {
            (Some(resource), None) => {
                let filled = fill(resource, &stand_ins).ok_or_else(|| {
                    ConfigError::new(
                        setting("delegate"),
                        format!("'{resource}' uses a placeholder the path does not capture"),
                    )
                })?;
                let scope = filled.parse::<valet_key::Scope>().map_err(|e| {
                    ConfigError::new(setting("delegate"), format!("'{resource}': {e}"))
                })?;
                if !matches!(scope, valet_key::Scope::Blob { .. }) {
                    return Err(ConfigError::new(
                        setting("delegate"),
                        "only blob resources can be delegated today",
                    ));
                }
                Action::Delegate(DelegateRoute {
                    resource: resource.clone(),
                    ttl: config.ttl.unwrap_or(DEFAULT_DELEGATE_TTL),
                    create_only: config.create_only,
                })
            }
            (None, Some(upstream)) => Action::Proxy(
                ProxyRoute::new(upstream, &stand_ins, config, proxy)
                    .map_err(|e| ConfigError::new(setting("proxy"), e))?,
            ),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    setting("delegate"),
                    "a route either delegates or proxies, not both",
                ))
            }
            (None, None) => {
                return Err(ConfigError::new(
                    setting("delegate"),
                    "a route needs `delegate = \"RESOURCE\"` or `proxy = \"URL\"`",
                ))
            }
        };
        let methods = match (&action, methods) {
            (_, Some(m)) => Some(m),
            (Action::Delegate(_), None) => {
                Some(vec![Method::GET, Method::HEAD, Method::PUT, Method::DELETE])
            }
            (Action::Proxy(_), None) => None,
        };
        if let (Action::Delegate(_), Some(methods)) = (&action, &methods) {
            if let Some(m) = methods
                .iter()
                .find(|m| crate::delegate::op_for(m, false).is_none())
            {
                return Err(ConfigError::new(
                    setting("methods"),
                    format!("{m} cannot be delegated (GET, HEAD, PUT, DELETE can)"),
                ));
            }
        }
        Ok(Route {
            name: Box::leak(format!("routes[{index}]").into_boxed_str()),
            pattern,
            methods,
            roles: config.roles.clone(),
            action,
        })
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }
}

impl ProxyRoute {
    fn new(
        upstream: &str,
        stand_ins: &[(&str, &str)],
        config: &RouteConfig,
        defaults: &ProxyConfig,
    ) -> Result<ProxyRoute, String> {
        if upstream.contains("{sub}") {
            return Err(format!(
                "'{upstream}': {{sub}} is not available in upstream URLs (the principal goes in a header)"
            ));
        }
        let probe = fill(upstream, stand_ins)
            .ok_or_else(|| format!("'{upstream}' uses a placeholder the path does not capture"))?;
        let uri: Uri = probe
            .parse()
            .map_err(|e| format!("'{upstream}' is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => Some(
                valet_http::TlsClient::new(defaults.upstream_ca.as_deref())
                    .map_err(|e| format!("'{upstream}': {e}"))?,
            ),
            _ => {
                return Err(format!(
                    "'{upstream}': upstreams are http:// or https:// URLs"
                ))
            }
        };
        if uri.query().is_some() {
            return Err(format!("'{upstream}': an upstream URL has no query"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("'{upstream}' has no host"))?;
        let origin = format!("{}://{authority}", uri.scheme_str().unwrap_or("http"));
        let host = http::HeaderValue::from_str(authority.as_str())
            .map_err(|e| format!("'{upstream}': {e}"))?;
        let path = upstream
            .strip_prefix(&origin)
            .filter(|p| !p.is_empty() && *p != "/")
            .map(str::to_owned);
        Ok(ProxyRoute {
            authority,
            tls,
            host,
            path,
            max_body: config.max_body.unwrap_or(defaults.max_body),
            timeout: config.timeout.unwrap_or(defaults.timeout),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_segments() {
        let p = PathPattern::parse("/files/{*path}").unwrap();
        assert_eq!(p.matches("/files/a/b.txt").unwrap(), [("path", "a/b.txt")]);
        assert!(p.matches("/files/").is_none());
        assert!(p.matches("/files").is_none());
        assert!(p.matches("/filesx/a").is_none());
        let p = PathPattern::parse("/users/{id}/avatar").unwrap();
        assert_eq!(p.matches("/users/7/avatar").unwrap(), [("id", "7")]);
        assert!(p.matches("/users/7/8/avatar").is_none());
        assert!(p.matches("/users//avatar").is_none());
        assert!(p.matches("/users/7/avatar/x").is_none());
        let p = PathPattern::parse("/healthz").unwrap();
        assert!(p.matches("/healthz").is_some());
        assert!(p.matches("/healthz/").is_none());
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "files",
            "/a/{*rest}/b",
            "/a/x{y}",
            "/a/{sub}",
            "/a//b",
            "/a/{b-c}",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_fill_by_name() {
        assert_eq!(
            fill("blob:files/{sub}/{path}", &[("path", "a/b"), ("sub", "al")]).unwrap(),
            "blob:files/al/a/b"
        );
        assert!(fill("blob:{nope}", &[]).is_none());
    }
}
