//! The route table: which path and method go where, delegate or proxy.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;

use http::{Method, Uri};
use valet_key::Op;

use crate::config::{ConfigError, ProxyConfig, RouteConfig};
use crate::request_path;

/// The delegate lifetime when a route names none: long enough to follow a redirect.
pub const DEFAULT_DELEGATE_TTL: Duration = Duration::from_secs(60);

/// The routes, tried in order.
#[derive(Debug)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
    /// The OpenAPI document describing these routes, made at the first `GET /openapi.json`
    /// (by `crate::openapi::served`, which knows how; kept here, where the routes live).
    pub(crate) document: OnceLock<bytes::Bytes>,
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

/// A route that matched, with what its placeholders captured from the normal-form path (still
/// percent-encoded).
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
    /// The path reads as this earlier route's once case, a trailing `/`, `.` or space, an
    /// encoded `;` and the like are ignored, but matches it only loosely.
    Ambiguous(&'static str),
}

#[derive(Debug)]
struct PathPattern {
    /// As configured, for the OpenAPI document.
    source: String,
    segments: Vec<Segment>,
}

#[derive(Debug)]
enum Segment {
    /// A literal segment in normal form, and its loose reading.
    Literal {
        text: String,
        folded: String,
    },
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
                None => Segment::Literal {
                    text: check_literal(text, part)?,
                    folded: request_path::loose_fold(part),
                },
            };
            segments.push(segment);
        }
        Ok(PathPattern {
            source: text.to_owned(),
            segments,
        })
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::One(n) | Segment::Rest(n) => Some(n.as_str()),
            Segment::Literal { .. } => None,
        })
    }

    /// The captures, if the normal-form `path` matches. `{name}` takes one non-empty segment,
    /// `{*name}` the rest, which may be empty: `/api/admin/{*rest}` claims `/api/admin` and
    /// `/api/admin/` too, so that they never fall through to a later, wider route.
    fn matches<'s, 'p>(&'s self, path: &'p str) -> Option<Vec<(&'s str, &'p str)>> {
        let mut rest = path.strip_prefix('/')?;
        let mut captures = Vec::new();
        let mut segments = self.segments.iter().peekable();
        while let Some(segment) = segments.next() {
            if let Segment::Rest(name) = segment {
                captures.push((name.as_str(), rest));
                return Some(captures);
            }
            let (part, tail) = match rest.split_once('/') {
                Some((part, tail)) => (part, Some(tail)),
                None => (rest, None),
            };
            match segment {
                Segment::Literal { text, .. } if text == part => {}
                Segment::One(name) if !part.is_empty() => captures.push((name.as_str(), part)),
                _ => return None,
            }
            rest = match (segments.peek(), tail) {
                (None, None) => return Some(captures),
                (None, Some(_)) => return None,
                (Some(Segment::Rest(_)), None) => "",
                (Some(_), None) => return None,
                (Some(_), Some(tail)) => tail,
            };
        }
        Some(captures)
    }

    /// Whether a lenient server could read the normal-form `path` as one this pattern matches:
    /// literals compared by their loose reading (`request_path::loose_fold`), one trailing `/`
    /// on either side ignored.
    fn matches_loosely(&self, path: &str) -> bool {
        let body = path.strip_prefix('/').unwrap_or(path);
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut parts = body.split('/').filter(|_| !body.is_empty());
        let pattern = match self.segments.split_last() {
            Some((Segment::Literal { text, .. }, init)) if text.is_empty() => init,
            _ => &self.segments[..],
        };
        for segment in pattern {
            match (segment, parts.next()) {
                (Segment::Rest(_), _) => return true,
                (Segment::Literal { folded, .. }, Some(part))
                    if request_path::loosely_equal(folded, part) => {}
                (Segment::One(_), Some(part)) if !part.is_empty() => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

/// A literal segment of a pattern, which must be in the normal form requests are matched in:
/// `%61dmin` would never match anything.
fn check_literal(pattern: &str, part: &str) -> Result<String, String> {
    let probe = format!("/{part}");
    match request_path::normalize(&probe) {
        Ok(Cow::Borrowed(_)) => Ok(part.to_owned()),
        Ok(Cow::Owned(normal)) => Err(format!(
            "'{pattern}': write the segment '{part}' as '{}' (the form requests are matched in)",
            &normal[1..]
        )),
        Err(why) => Err(format!("'{pattern}': segment '{part}': {why}")),
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
            .map(|routes| RouteTable {
                routes,
                document: OnceLock::new(),
            })
    }

    /// Every route, for checking roles against the policies.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The first route whose pattern and method match the normal-form `path`
    /// ([`crate::request_path::normalize`]).
    ///
    /// Route literals match exactly (RFC 3986: paths are case-sensitive), but a path that an
    /// earlier route, taking the method, matches loosely (`/api/ADMIN/x`, `/api/admin./x`,
    /// `/api/admin%3Bx` for `/api/admin/{*rest}`) is refused rather than handed to a later
    /// route: a case-insensitive or lenient upstream would read it as the earlier route's path,
    /// and the later route's roles were not meant for that. Refusing, rather than matching
    /// loosely, keeps what an upstream receives exactly what the route matched.
    pub(crate) fn find<'r, 'p>(
        &'r self,
        method: &Method,
        path: &'p str,
    ) -> Result<Matched<'r, 'p>, NoRoute> {
        let mut allowed: Vec<&Method> = Vec::new();
        let mut matched_path = false;
        for route in &self.routes {
            let captures = route.pattern.matches(path);
            if !route.allows(method) {
                if captures.is_some() {
                    matched_path = true;
                    // A route that matches the path but not the method has a list of methods.
                    for m in route.methods.iter().flatten() {
                        if !allowed.contains(&m) {
                            allowed.push(m);
                        }
                    }
                }
                continue;
            }
            if let Some(captures) = captures {
                return Ok(Matched { route, captures });
            }
            if route.pattern.matches_loosely(path) {
                return Err(NoRoute::Ambiguous(route.name));
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
            if let Some(m) = methods.iter().find(|m| op_for(m, false).is_none()) {
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

    /// The pattern as configured (`/files/{*path}`).
    pub(crate) fn pattern(&self) -> &str {
        &self.pattern.source
    }

    /// The pattern as an OpenAPI path template (`/files/{path}`), and its placeholders with
    /// whether each takes the rest of the path.
    pub(crate) fn template(&self) -> (String, Vec<(&str, bool)>) {
        let mut template = String::new();
        let mut names = Vec::new();
        for segment in &self.pattern.segments {
            template.push('/');
            match segment {
                Segment::Literal { text, .. } => template.push_str(text),
                Segment::One(name) | Segment::Rest(name) => {
                    template.push('{');
                    template.push_str(name);
                    template.push('}');
                    names.push((name.as_str(), matches!(segment, Segment::Rest(_))));
                }
            }
        }
        (template, names)
    }

    /// The methods the route takes; `None` for any.
    pub(crate) fn methods(&self) -> Option<&[Method]> {
        self.methods.as_deref()
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

/// The one operation a method asks of a delegate route (`None`: the method has none). Here,
/// not in `delegate`, because the table checks its routes' methods with it when it is built.
pub(crate) fn op_for(method: &Method, create_only: bool) -> Option<Op> {
    match *method {
        Method::GET | Method::HEAD => Some(Op::Read),
        Method::PUT if create_only => Some(Op::Create),
        Method::PUT => Some(Op::Write),
        Method::DELETE => Some(Op::Delete),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_segments() {
        let p = PathPattern::parse("/files/{*path}").unwrap();
        assert_eq!(p.matches("/files/a/b.txt").unwrap(), [("path", "a/b.txt")]);
        // A rest may be empty: the route claims its own prefix.
        assert_eq!(p.matches("/files/").unwrap(), [("path", "")]);
        assert_eq!(p.matches("/files").unwrap(), [("path", "")]);
        assert!(p.matches("/filesx/a").is_none());
        assert!(p.matches("/Files/a").is_none());
        let p = PathPattern::parse("/users/{id}/avatar").unwrap();
        assert_eq!(p.matches("/users/7/avatar").unwrap(), [("id", "7")]);
        assert!(p.matches("/users/7/8/avatar").is_none());
        assert!(p.matches("/users//avatar").is_none());
        assert!(p.matches("/users/7/avatar/x").is_none());
        assert!(p.matches("/users/7/avatar/").is_none());
        assert!(p.matches("/users/7").is_none());
        let p = PathPattern::parse("/healthz").unwrap();
        assert!(p.matches("/healthz").is_some());
        assert!(p.matches("/healthz/").is_none());
        let p = PathPattern::parse("/").unwrap();
        assert!(p.matches("/").is_some());
        assert!(p.matches("/x").is_none());
    }

    #[test]
    fn patterns_match_loosely_what_lenient_servers_read_as_theirs() {
        let p = PathPattern::parse("/api/admin/{*rest}").unwrap();
        for path in [
            "/api/ADMIN/x",
            "/API/Admin",
            "/api/admin./x",
            "/api/admin%20/x",
            "/api/admin%3Bx/users",
            "/api/adm%C4%B1n/x",
            "/api/admin/",
        ] {
            assert!(p.matches_loosely(path), "{path}");
        }
        for path in ["/api/admins/x", "/api/x/admin", "/api"] {
            assert!(!p.matches_loosely(path), "{path}");
        }
        let p = PathPattern::parse("/api/admin").unwrap();
        assert!(p.matches_loosely("/api/admin/"));
        assert!(p.matches_loosely("/api/Admin"));
        assert!(!p.matches_loosely("/api/admin/x"));
        let p = PathPattern::parse("/v2/{name}").unwrap();
        assert!(p.matches_loosely("/V2/x/"));
        assert!(!p.matches_loosely("/v2/"));
    }

    fn table(routes: &[(&str, &str)]) -> RouteTable {
        let configs: Vec<RouteConfig> = routes
            .iter()
            .map(|(path, role)| RouteConfig {
                path: (*path).to_owned(),
                methods: None,
                delegate: None,
                proxy: Some("http://127.0.0.1:9".into()),
                roles: vec![(*role).to_owned()],
                ttl: None,
                create_only: false,
                max_body: None,
                timeout: None,
            })
            .collect();
        RouteTable::new(&configs, &ProxyConfig::default()).unwrap()
    }

    /// The route (or refusal) a raw path gets, as the router does it: normalised, then found.
    fn pick(table: &RouteTable, raw: &str) -> Result<&'static str, String> {
        let normal = request_path::normalize(raw).map_err(|e| format!("bad_path: {e}"))?;
        table
            .find(&Method::GET, &normal)
            .map(|m| m.route.name)
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn no_spelling_of_the_admin_segment_reaches_the_catch_all() {
        let t = table(&[("/api/admin/{*rest}", "admin"), ("/api/{*rest}", "user")]);
        for raw in [
            "/api/admin/users",
            "/api/%61dmin/users",
            "/api/adm%69n/users",
            "/api/%61%64%6D%69%6e/users",
            "/api/admin/",
            "/api/admin",
        ] {
            assert_eq!(pick(&t, raw), Ok("routes[0]"), "{raw}");
        }
        for raw in [
            "/api/ADMIN/x",
            "/api/%41dmin/x",
            "/api/Admin",
            "/api/admin./x",
            "/api/admin%2e/x",
            "/api/admin%20/x",
            "/api/admin%3bx/users",
            "/api/admin;x/users",
            "/api//admin/x",
            "/api/x/../admin/x",
            "/api/admin%2Fusers",
            "/api/admin%00/x",
            "/api/admin\\x",
        ] {
            assert!(pick(&t, raw).is_err(), "{raw}: {:?}", pick(&t, raw));
        }
        assert_eq!(pick(&t, "/api/other"), Ok("routes[1]"));
        assert_eq!(pick(&t, "/api/administrators"), Ok("routes[1]"));
    }

    #[test]
    fn pattern_literals_must_be_in_normal_form() {
        for bad in [
            "/%61dmin/{*r}",
            "/a;b",
            "/a%2fb",
            "/a%2e%2e",
            "/a/../b",
            "/caf%c3%a9",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(PathPattern::parse("/caf%C3%A9/{*r}").is_ok());
    }

    proptest::proptest! {
        /// Whatever encoding of its unreserved bytes a path is sent in, it picks the route (or
        /// the refusal) its plain spelling picks.
        #[test]
        fn spellings_of_one_path_pick_one_route(
            path in "(/(admin|api|ADMIN|x|users|[a-z.~_-]{1,6})){1,4}/?",
            choices in proptest::collection::vec(0u8..3, 0..40),
        ) {
            let t = table(&[
                ("/api/admin/{*rest}", "admin"),
                ("/api/{id}/users", "user"),
                ("/api/{*rest}", "user"),
                ("/{*rest}", "user"),
            ]);
            let mut spelled = String::new();
            for (i, c) in path.chars().enumerate() {
                match choices.get(i) {
                    Some(1) if c != '/' => spelled.push_str(&format!("%{:02x}", c as u8)),
                    Some(2) if c != '/' => spelled.push_str(&format!("%{:02X}", c as u8)),
                    _ => spelled.push(c),
                }
            }
            proptest::prop_assert_eq!(pick(&t, &spelled), pick(&t, &path));
        }
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
