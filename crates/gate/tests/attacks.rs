//! Attacks on the gate over real HTTP on loopback: a proxied client forging the principal
//! header (in every spelling, and in trailers), proxy and delegate paths that another server
//! would normalise, delegated keys used for more than they were minted for, credentials in the
//! wrong place or twice, oversize requests, browsers from foreign origins, revoked keys
//! replayed, and secrets leaking into logs. Each asserts the exact status and error code.
//!
//! Some of these found real holes when written; `docs/SECURITY.md` ("Findings, fixed") lists
//! them.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use valet_testkit::{logs, raw_http};

/// `GET path` as raw bytes with a bearer credential: the status and JSON error code.
async fn raw_get(addr: SocketAddr, path: &str, api_key: &str) -> (u16, String) {
    raw_http::status_and_code(&raw_http::send(addr, bearer_get(path, api_key)).await)
}

/// An upstream that keeps the raw bytes of every request it gets, then answers `200 ok`.
struct RawUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let mut bytes = Vec::new();
                    let mut chunk = [0u8; 64 * 1024];
                    // The whole request: until the gate has sent nothing for 300 ms.
                    while let Ok(Ok(n @ 1..)) =
                        tokio::time::timeout(Duration::from_millis(300), conn.read(&mut chunk))
                            .await
                    {
                        bytes.extend_from_slice(&chunk[..n]);
                    }
                    kept.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&bytes).into_owned());
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        RawUpstream { addr, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// A gate with the base configuration plus `/raw/{*rest}` proxied here.
    async fn stack(&self, extra: &str) -> Stack {
        let route = format!(
            "\n[[routes]]\npath = \"/raw/{{*rest}}\"\nproxy = \"http://{}\"\nroles = [\"user\", \"admin\"]\n{extra}",
            self.addr
        );
        Stack::start_with(|c| c.push_str(&route)).await
    }
}

/// The header lines of a raw request, lowercased names, without the request line.
fn header_lines(request: &str) -> Vec<(String, String)> {
    let head = request.split_once("\r\n\r\n").map_or(request, |(h, _)| h);
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_proxied_client_cannot_forge_the_principal_header() {
    let upstream = RawUpstream::start().await;
    let stack = upstream.stack("").await;
    let request = format!(
        "POST /raw/x HTTP/1.1\r\nHost: gate.example\r\nAuthorization: Bearer {ALICE}\r\n\
         X-Valet-Principal: admin\r\nx-valet-principal: root\r\nX-VALET-PRINCIPAL: admin\r\n\
         X-Valet-Roles: admin\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\
         X-Forwarded-For: 203.0.113.9\r\nProxy-Authorization: Basic eA==\r\n\
         Transfer-Encoding: chunked\r\nTrailer: X-Valet-Principal\r\nConnection: close\r\n\r\n\
         5\r\nhello\r\n0\r\nX-Valet-Principal: admin\r\nX-Valet-Roles: admin\r\n\r\n"
    );
    let answer = raw_http::send(stack.gate_addr, &request).await;
    assert_eq!(raw_http::status_and_code(&answer).0, 200, "{answer}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    let lines = header_lines(&seen[0]);
    let values = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("x-valet-principal"), ["alice"], "{}", seen[0]);
    assert_eq!(values("x-valet-roles"), ["user"], "{}", seen[0]);
    assert_eq!(values("x-forwarded-proto"), ["http"]);
    assert_eq!(values("x-forwarded-host"), ["gate.example"]);
    assert_eq!(values("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    for gone in ["authorization", "proxy-authorization", "trailer"] {
        assert!(values(gone).is_empty(), "{gone} reached the upstream");
    }
    // The body arrived, and the trailers with their forged identity did not.
    let body = seen[0].split_once("\r\n\r\n").unwrap().1;
    assert!(body.contains("hello"), "{body:?}");
    assert!(
        !body.to_ascii_lowercase().contains("x-valet"),
        "a trailer reached the upstream: {body:?}"
    );
}

#[tokio::test]
async fn spellings_of_identity_headers_that_upstreams_conflate_are_removed() {
    let upstream = RawUpstream::start().await;
    let stack = upstream.stack("").await;
    let request = format!(
        "GET /raw/x HTTP/1.1\r\nHost: gate.example\r\nAuthorization: Bearer {ALICE}\r\n\
         x_valet_principal: admin\r\nX_Valet_Roles: admin\r\n\
         Forwarded: for=203.0.113.9;host=evil.example;proto=https\r\nX-Real-IP: 203.0.113.9\r\n\
         Connection: close\r\n\r\n"
    );
    assert_eq!(
        raw_http::status_and_code(&raw_http::send(stack.gate_addr, &request).await).0,
        200
    );
    let seen = upstream.requests();
    let lines = header_lines(&seen[0]);
    // WSGI, Rack, PHP and CGI read `x_valet_principal` and `x-valet-principal` as one header.
    for (name, value) in &lines {
        let normalised = name.replace('_', "-");
        if normalised == "x-valet-principal" {
            assert_eq!(
                (name.as_str(), value.as_str()),
                ("x-valet-principal", "alice")
            );
        }
        if normalised == "x-valet-roles" {
            assert_eq!((name.as_str(), value.as_str()), ("x-valet-roles", "user"));
        }
    }
    // The client's own claims about where it is and how it came.
    for (name, value) in &lines {
        assert!(
            !matches!(name.as_str(), "forwarded" | "x-real-ip"),
            "{name}: {value} reached the upstream"
        );
    }
}

/// A gate that also accepts HS256 JWTs, with every JWT principal a `user`.
async fn jwt_stack(upstream: &RawUpstream) -> Stack {
    upstream
        .stack("\n[jwt]\nalgorithm = \"HS256\"\nsecret = \"0123456789abcdef0123456789abcdef\"\ndefault_roles = [\"user\"]\n")
        .await
}

fn jwt(sub: &str) -> String {
    let claims = json!({"sub": sub, "exp": valet_keyring::now().0 + 60});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
    )
    .unwrap()
}

#[tokio::test]
async fn a_jwt_cannot_take_an_api_key_principal() {
    let upstream = RawUpstream::start().await;
    let stack = jwt_stack(&upstream).await;
    for sub in ["admin", "alice", "robot"] {
        let response = stack
            .http
            .get(stack.gate_url("/raw/x"))
            .bearer_auth(jwt(sub))
            .send()
            .await
            .unwrap();
        assert_eq!(
            code(response).await,
            (401, "unauthenticated".into()),
            "{sub}"
        );
    }
    // A name with a control character is no principal at all.
    let response = stack
        .http
        .get(stack.gate_url("/raw/x"))
        .bearer_auth(jwt("carol\r\nx-valet-principal: admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (401, "unauthenticated".into()));
    assert!(upstream.requests().is_empty());
    // An ordinary JWT principal is passed on as itself.
    let response = stack
        .http
        .get(stack.gate_url("/raw/x"))
        .bearer_auth(jwt("carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let lines = header_lines(&upstream.requests()[0]);
    assert!(lines.contains(&("x-valet-principal".into(), "carol".into())));
}

#[tokio::test]
async fn a_jwt_cannot_take_an_api_key_principal_by_padding_it() {
    let upstream = RawUpstream::start().await;
    let stack = jwt_stack(&upstream).await;
    for sub in ["admin ", " admin", "  admin  "] {
        let response = stack
            .http
            .get(stack.gate_url("/raw/x"))
            .bearer_auth(jwt(sub))
            .send()
            .await
            .unwrap();
        assert_eq!(
            code(response).await,
            (401, "unauthenticated".into()),
            "{sub:?}"
        );
    }
    assert!(upstream.requests().is_empty());
}

/// Paths another server could read as another path: refused before any route sees them.
const REFUSED_PATHS: &[&str] = &[
    "/raw/../admin",
    "/raw/./x",
    "/raw/x/..",
    "/raw/%2e%2e/admin",
    "/raw/%2E%2e/admin",
    "/raw/.%2e/admin",
    "/raw/%2e./admin",
    "/raw/%2e/x",
    "/raw/%252e%252e/admin",
    "/raw/%25%32%65%25%32%65/admin",
    "/raw/a%2f..%2fadmin",
    "/raw/a%2Fb",
    "/raw/a%252fb",
    "/raw/a%5cb",
    "/raw/a%255cb",
    "/raw/a\\..\\admin",
    "/..",
];

#[tokio::test]
async fn proxy_paths_that_could_climb_out_are_refused_before_the_upstream() {
    let upstream = RawUpstream::start().await;
    let stack = upstream.stack("").await;
    for path in REFUSED_PATHS {
        assert_eq!(
            raw_get(stack.gate_addr, path, ALICE).await,
            (400, "bad_path".into()),
            "{path}"
        );
    }
    // The same on a route with a path template.
    for path in ["/v2/..", "/v2/%2e%2e", "/v2/.%2E", "/v2/%252e%252e"] {
        assert_eq!(
            raw_get(stack.gate_addr, path, ROBOT).await,
            (400, "bad_path".into()),
            "{path}"
        );
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    // An ordinary path goes through as it came.
    assert_eq!(raw_get(stack.gate_addr, "/raw/a.b/...", ALICE).await.0, 200);
    assert!(upstream.requests()[0].starts_with("GET /raw/a.b/... HTTP/1.1\r\n"));
}

#[tokio::test]
async fn proxy_paths_that_upstream_servers_normalise_are_refused() {
    let upstream = RawUpstream::start().await;
    let stack = upstream.stack("").await;
    for path in [
        "/raw/..;/admin",
        "/raw/..;jsessionid=x/admin",
        "/raw/%2e%2e;/admin",
        "/raw/%2e%2e%3b/admin",
        "/raw/.;/x",
        "/raw/..%00/admin",
        "/raw/..%2500/admin",
        "/raw/%c0%ae%c0%ae/admin",
        "/raw/%u002e%u002e/admin",
    ] {
        assert_eq!(
            raw_get(stack.gate_addr, path, ALICE).await,
            (400, "bad_path".into()),
            "{path}"
        );
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
}

/// An upstream that records the request line of every request and answers `200 ok` at once.
struct PathUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl PathUpstream {
    async fn start() -> PathUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n")
                        && conn.read(&mut byte).await.unwrap_or(0) == 1
                    {
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    kept.lock()
                        .unwrap()
                        .push(head.lines().next().unwrap_or("").to_owned());
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        PathUpstream { addr, seen }
    }

    fn request_lines(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// The normal form of a path the gate accepted, computed independently of the gate: escapes of
/// RFC 3986 unreserved bytes decoded, every other escape in upper-case hex.
fn reference_normal_form(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let value = u8::from_str_radix(&path[i + 1..i + 3], 16).unwrap();
            if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                out.push(value as char);
            } else {
                out.push_str(&format!("%{value:02X}"));
            }
            i += 3;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

/// Every spelling of `admin` from each letter raw, upper-cased, or percent-encoded in lower-
/// or upper-case hex (4^5 of them).
fn admin_spellings() -> Vec<String> {
    let mut spellings = vec![String::new()];
    for letter in "admin".chars() {
        let forms = [
            letter.to_string(),
            letter.to_ascii_uppercase().to_string(),
            format!("%{:02x}", letter as u8),
            format!("%{:02X}", letter as u8),
        ];
        spellings = spellings
            .iter()
            .flat_map(|s| forms.iter().map(move |f| format!("{s}{f}")))
            .collect();
    }
    spellings
}

/// The attack on route roles by spelling: with `/api/admin/{*rest}` for `admin` before
/// `/api/{*rest}` for `user`, every way to write the admin segment (each letter encoded or
/// not, in either case of hex or letter; with path parameters, encoded `;`, trailing dots and
/// spaces, an empty rest, `//`, `.` and `..` in every encoding, an encoded `/` or `\`, NUL, a
/// tab, a backslash, fullwidth and dotless letters) either reaches the admin route, where a
/// `user` is refused (`403 forbidden`) and an `admin` is forwarded with exactly the normal form
/// of the path, or is `400 bad_path` for both. A `user` never reaches an upstream with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_a_privileged_route_reaches_a_wider_one() {
    let admin_upstream = PathUpstream::start().await;
    let admin_route = format!(
        "[[routes]]\npath = \"/api/admin/{{*rest}}\"\nproxy = \"http://{}\"\nroles = [\"admin\"]\n\n[[routes]]\npath = \"/api/{{*rest}}\"",
        admin_upstream.addr
    );
    let stack = Stack::start_with(|c| {
        *c = c.replace("[[routes]]\npath = \"/api/{*rest}\"", &admin_route);
    })
    .await;
    let mut paths: Vec<String> = admin_spellings()
        .into_iter()
        .map(|admin| format!("/api/{admin}/users"))
        .collect();
    let bases = [
        "admin",
        "%61dmin",
        "ADMIN",
        "adm%C4%B1n",
        "adm%69n",
        "Admin",
        "%41dmin",
        "%EF%BD%81dmin",
    ];
    let before = [
        "",
        "./",
        "%2e/",
        "%2E/",
        "x/../",
        "x/%2e%2e/",
        "/",
        "%2F",
        "x%2F",
    ];
    let after = [
        "", ";x", ";", "%3Bx", "%3b", ".", "..", "%2e", "%2E", "%20", "%00", "%09", "%2F", "%2f",
        "\\", "%5C", "%5c", "%2500", "%252e", "%253B",
    ];
    let tails = [
        "/users",
        "/",
        "",
        "//users",
        "/./users",
        "/../users",
        "/%2e%2e/users",
        "/users/",
        "/users//",
        "/%2e/users",
    ];
    // Each decoration on a few bases; the prefixes (which are all refused) on every base.
    for base in &bases[..4] {
        for a in after {
            for t in tails {
                paths.push(format!("/api/{base}{a}{t}"));
            }
        }
    }
    for base in bases {
        for b in before {
            paths.push(format!("/api/{b}{base}/users"));
        }
    }
    let mut reached = 0;
    for path in &paths {
        let as_user = raw_get(stack.gate_addr, path, ALICE).await;
        let lines_before = admin_upstream.request_lines().len();
        let answer = raw_http::send(stack.gate_addr, bearer_get(path, ADMIN)).await;
        let as_admin = raw_http::status_and_code(&answer);
        match as_user {
            (403, code) if code == "forbidden" => {
                // The admin route: an admin is forwarded there, with the normal form.
                assert_eq!(as_admin.0, 200, "{path}: {answer}");
                assert_eq!(
                    raw_http::body(&answer),
                    "ok",
                    "{path}: not the admin upstream"
                );
                let lines = admin_upstream.request_lines();
                assert_eq!(lines.len(), lines_before + 1, "{path}");
                let normal = reference_normal_form(path);
                assert_eq!(
                    lines[lines_before],
                    format!("GET {normal} HTTP/1.1"),
                    "{path}"
                );
                assert!(
                    normal == "/api/admin" || normal.starts_with("/api/admin/"),
                    "{path} reached the admin upstream as {normal}"
                );
                reached += 1;
            }
            (400, code) if code == "bad_path" => {
                assert_eq!(as_admin, (400, "bad_path".into()), "{path}");
                assert_eq!(admin_upstream.request_lines().len(), lines_before, "{path}");
            }
            other => panic!("{path}: a user got {other:?}"),
        }
    }
    // Exactly the spellings of the lower-case name: 3^5 of the letter spellings (raw, or either
    // hex case), the two bases that are such spellings with the four plain tails (`/users`,
    // `/`, none, `/users/`), and those two and `adm%69n` with the prefix-less `/users`.
    assert_eq!(reached, 243 + 2 * 4 + 3, "{reached}");
    // A different name is another route's: the user's.
    for path in ["/api/administrators/x", "/api/admins", "/api/x/admin"] {
        assert_eq!(raw_get(stack.gate_addr, path, ALICE).await.0, 200, "{path}");
    }
}

#[tokio::test]
async fn delegate_paths_that_could_name_another_blob_are_bad_path() {
    let stack = Stack::start().await;
    for path in [
        "/files/../users/alice/x",
        "/files/a/%2e%2e/b",
        "/files/a/%2E%2E/b",
        "/files/a/.%2e/b",
        "/files/a%2f..%2fb",
        "/files/a%2Fb",
        "/files/a/%252e%252e/b",
        "/files/a/%252fb",
        "/files/a%5cb",
        "/files/a\\b",
        "/files/a%00b",
        "/files/a%0ab",
        "/files/a%c2%85b",
        "/files/%c0%ae%c0%ae/b",
        "/files/%e0%80%ae/b",
        "/files/%ff",
        "/files/a//b",
        "/files/./b",
        "/files/a/.",
    ] {
        assert_eq!(
            raw_get(stack.gate_addr, path, ADMIN).await,
            (400, "bad_path".into()),
            "{path}"
        );
    }
    // A folder is only listed; nothing else applies to one.
    for method in ["PUT", "DELETE", "HEAD"] {
        let request = format!(
            "{method} /files/a/ HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let answer = raw_http::send(stack.gate_addr, &request).await;
        let want = if method == "HEAD" {
            (400, String::new())
        } else {
            (400, "bad_path".into())
        };
        assert_eq!(raw_http::status_and_code(&answer), want, "{method}");
    }
    // `{sub}` stays one principal's folder, whatever the path or the principal's name says.
    for path in ["/me/%2e%2e/bob/x", "/me/..%2fbob/x", "/me/%7Bsub%7D/../x"] {
        assert_eq!(
            raw_get(stack.gate_addr, path, ALICE).await,
            (400, "bad_path".into()),
            "{path}"
        );
    }
    let response = stack
        .http
        .get(stack.gate_url("/me/x"))
        .bearer_auth(SLASHY)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (403, "policy_denied".into()));
}

/// The token in a delegate redirect.
async fn delegated(stack: &Stack, method: reqwest::Method, path: &str, api_key: &str) -> String {
    let response = stack
        .http
        .request(method, stack.gate_url(path))
        .bearer_auth(api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307, "{path}");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    location.split("vk=").nth(1).unwrap().to_owned()
}

async fn at_store(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> (u16, String) {
    let url = format!("http://{}{path}?vk={token}", stack.store_addr);
    let response = stack
        .http
        .request(method, url)
        .body("data")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn a_delegated_key_grants_exactly_the_request_it_was_minted_for() {
    use reqwest::Method;
    let stack = Stack::start_with(|c| {
        c.push_str("\n[[routes]]\npath = \"/drop/{*path}\"\ndelegate = \"blob:files/drop/{path}\"\nroles = [\"admin\"]\ncreate_only = true\n");
    })
    .await;
    let write = delegated(&stack, Method::PUT, "/files/a.txt", ADMIN).await;
    assert_eq!(
        at_store(&stack, Method::PUT, "/blob/files/a.txt", &write)
            .await
            .0,
        201
    );
    // A write key: not a read, not a delete, not another blob, not a listing.
    assert_eq!(
        at_store(&stack, Method::GET, "/blob/files/a.txt", &write).await,
        (403, "op_not_allowed".into())
    );
    assert_eq!(
        at_store(&stack, Method::DELETE, "/blob/files/a.txt", &write).await,
        (403, "op_not_allowed".into())
    );
    assert_eq!(
        at_store(&stack, Method::PUT, "/blob/files/b.txt", &write).await,
        (403, "out_of_scope".into())
    );
    assert_eq!(
        at_store(&stack, Method::GET, "/blob/files", &write).await,
        (403, "out_of_scope".into())
    );
    // GET and HEAD give read keys, DELETE a delete key, each for that blob only.
    for method in [Method::GET, Method::HEAD] {
        let read = delegated(&stack, method.clone(), "/files/a.txt", ADMIN).await;
        let parsed: valet_key::Token = read.parse().unwrap();
        assert_eq!(parsed.claims().ops.to_string(), "read", "{method}");
        assert_eq!(parsed.claims().scope.to_string(), "blob:files/a.txt");
        assert_eq!(
            parsed.claims().expires.0 - parsed.claims().not_before.0,
            60,
            "a delegated key lives for the route's ttl"
        );
        assert_eq!(
            at_store(&stack, Method::PUT, "/blob/files/a.txt", &read).await,
            (403, "op_not_allowed".into())
        );
        assert_eq!(
            at_store(&stack, Method::GET, "/blob/files/a.txt.bak", &read).await,
            (403, "out_of_scope".into())
        );
    }
    let delete = delegated(&stack, Method::DELETE, "/files/a.txt", ADMIN).await;
    assert_eq!(
        at_store(&stack, Method::GET, "/blob/files/a.txt", &delete).await,
        (403, "op_not_allowed".into())
    );
    // A folder's listing key lists, and reads nothing.
    let list = delegated(&stack, Method::GET, "/files/dir/", ADMIN).await;
    assert_eq!(
        at_store(&stack, Method::GET, "/blob/files/dir/x", &list).await,
        (403, "op_not_allowed".into())
    );
    // A create-only route's key never overwrites.
    let first = delegated(&stack, Method::PUT, "/drop/x", ADMIN).await;
    assert_eq!(
        at_store(&stack, Method::PUT, "/blob/files/drop/x", &first)
            .await
            .0,
        201
    );
    let second = delegated(&stack, Method::PUT, "/drop/x", ADMIN).await;
    let parsed: valet_key::Token = second.parse().unwrap();
    assert_eq!(parsed.claims().ops.to_string(), "create");
    assert_eq!(
        at_store(&stack, Method::PUT, "/blob/files/drop/x", &second).await,
        (412, "precondition_failed".into())
    );
    // A role's use cap reaches the delegated key: alice's keys allow 5 uses in all.
    let up = delegated(&stack, Method::PUT, "/me/n.txt", ALICE).await;
    assert_eq!(
        at_store(&stack, Method::PUT, "/blob/users/alice/n.txt", &up)
            .await
            .0,
        201
    );
    let down = delegated(&stack, Method::GET, "/me/n.txt", ALICE).await;
    for _ in 0..5 {
        assert_eq!(
            at_store(&stack, Method::GET, "/blob/users/alice/n.txt", &down)
                .await
                .0,
            200
        );
    }
    assert_eq!(
        at_store(&stack, Method::GET, "/blob/users/alice/n.txt", &down).await,
        (403, "key_exhausted".into())
    );
}

#[tokio::test]
async fn credentials_count_only_in_the_authorization_header() {
    let stack = Stack::start().await;
    let token = stack
        .issue_ok(ADMIN, json!({"resource": "blob:files/x", "ops": ["read"]}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases = [
        (
            "an API key in the query",
            format!("/files/x?api_key={ADMIN}&access_token={ADMIN}"),
            String::new(),
        ),
        (
            "a valet key in the query",
            format!("/files/x?vk={token}"),
            String::new(),
        ),
        (
            "a valet key as the credential",
            "/files/x".into(),
            format!("Authorization: Valet {token}\r\n"),
        ),
        (
            "a valet key as a bearer",
            "/files/x".into(),
            format!("Authorization: Bearer {token}\r\n"),
        ),
        (
            "an API key as Basic",
            "/files/x".into(),
            format!("Authorization: Basic {ADMIN}\r\n"),
        ),
        (
            "an API key in a cookie",
            "/files/x".into(),
            format!("Cookie: api_key={ADMIN}\r\n"),
        ),
        (
            "an API key in X-Api-Key",
            "/files/x".into(),
            format!("X-Api-Key: {ADMIN}\r\n"),
        ),
        (
            "an API key one character short",
            "/files/x".into(),
            format!("Authorization: Bearer {}\r\n", &ADMIN[1..]),
        ),
    ];
    for (what, target, header) in cases {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: g\r\n{header}Connection: close\r\n\r\n");
        let answer = raw_http::send(stack.gate_addr, &request).await;
        assert_eq!(
            raw_http::status_and_code(&answer),
            (401, "unauthenticated".into()),
            "{what}"
        );
        assert!(answer.contains("www-authenticate: Bearer"), "{what}");
    }
}

#[tokio::test]
async fn two_credentials_at_once_are_refused() {
    let stack = Stack::start().await;
    for (first, second) in [(ALICE, ADMIN), (ADMIN, ALICE)] {
        let request = format!(
            "GET /files/x HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {first}\r\nAuthorization: Bearer {second}\r\nConnection: close\r\n\r\n"
        );
        let answer = raw_http::send(stack.gate_addr, &request).await;
        assert_eq!(raw_http::status_and_code(&answer).0, 401, "{answer}");
    }
}

#[tokio::test]
async fn oversize_heads_are_refused_and_the_gate_keeps_serving() {
    let stack = Stack::start().await;
    let head = |target: &str, headers: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: g\r\n{headers}Connection: close\r\n\r\n")
    };
    let big_header = format!("X-Big: {}\r\n", "a".repeat(300 * 1024));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big_url = format!("/files/{}", "a".repeat(300 * 1024));
    for (what, request) in [
        ("a 300 KiB header", head("/files/x", &big_header)),
        ("200 headers", head("/files/x", &many)),
        ("a 300 KiB URL", head(&big_url, "")),
    ] {
        let answer = raw_http::send(stack.gate_addr, &request).await;
        assert_eq!(raw_http::status_and_code(&answer).0, 431, "{what}");
    }
    // A key-API body over 64 KiB is refused unparsed (documented as `bad_request`).
    let response = stack
        .http
        .post(stack.gate_url("/v1/keys"))
        .bearer_auth(ADMIN)
        .body(format!(
            "{{\"resource\":\"blob:files/x\",\"ops\":[\"read\"],\"filename\":\"{}\"}}",
            "a".repeat(70_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (400, "bad_request".into()));
    let response = stack
        .http
        .get(stack.gate_url("/files/x"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
}

#[tokio::test]
async fn no_foreign_origin_is_ever_allowed_to_read_the_gate() {
    let stack = Stack::start().await;
    for (method, path) in [
        ("OPTIONS", "/v1/keys"),
        ("OPTIONS", "/files/x"),
        ("POST", "/v1/keys"),
        ("GET", "/files/x"),
        ("GET", "/healthz"),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: g\r\nOrigin: https://evil.example\r\n\
             Access-Control-Request-Method: POST\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let answer = raw_http::send(stack.gate_addr, &request)
            .await
            .to_ascii_lowercase();
        assert!(
            !answer.contains("access-control-allow"),
            "{method} {path}: {answer}"
        );
    }
}

#[tokio::test]
async fn revoked_keys_stay_revoked_however_they_are_replayed() {
    let stack = Stack::start().await;
    let put = stack
        .issue_ok(ADMIN, json!({"resource": "blob:files/r", "ops": ["write"]}))
        .await;
    let response = stack
        .http
        .put(put["url"].as_str().unwrap())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let key = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/", "ops": ["read", "list"], "max_uses": 5}),
        )
        .await;
    let token: valet_key::Token = key["token"].as_str().unwrap().parse().unwrap();
    let narrowed = token
        .attenuate(valet_key::Caveat {
            ops: Some("list".parse().unwrap()),
            ..valet_key::Caveat::default()
        })
        .unwrap()
        .to_string();
    let complete = |credential: String| {
        let url = stack.gate_url(&format!(
            "/v1/keys/{}/complete",
            key["id"].as_str().unwrap()
        ));
        stack
            .http
            .post(url)
            .header("authorization", credential)
            .send()
    };
    // The narrowed copy ends the whole key; a revoked key is no credential to end it again.
    assert_eq!(
        complete(format!("Valet {narrowed}"))
            .await
            .unwrap()
            .status(),
        204
    );
    for text in [&narrowed, &token.to_string()] {
        let response = complete(format!("Valet {text}")).await.unwrap();
        assert_eq!(code(response).await, (403, "key_revoked".into()));
    }
    let listing = "/blob/users?prefix=alice/&vk=";
    for text in [token.to_string(), narrowed] {
        for _ in 0..3 {
            let url = format!("http://{}{listing}{text}", stack.store_addr);
            let response = stack.http.get(url).send().await.unwrap();
            assert_eq!(code(response).await, (403, "key_revoked".into()));
        }
    }
    // Its status says so, and no use was spent on the refused replays.
    let status: serde_json::Value = stack
        .http
        .get(stack.gate_url(&format!("/v1/keys/{}", key["id"].as_str().unwrap())))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["revoked"], true, "{status}");
    assert_eq!(status["uses"], 0, "{status}");
    // Another principal's key cannot be ended with this one.
    let bob = stack
        .issue_ok(
            BOB,
            json!({"resource": "blob:users/bob/x", "ops": ["read"]}),
        )
        .await;
    let url = stack.gate_url(&format!(
        "/v1/keys/{}/complete",
        bob["id"].as_str().unwrap()
    ));
    let response = stack
        .http
        .post(url)
        .header("authorization", format!("Valet {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (403, "forbidden".into()));
}

/// `POST /v1/keys/ID/complete` with `Authorization: Valet` as the key's holder: the status and
/// error code.
async fn complete_with(stack: &Stack, id: &str, token: &str) -> (u16, String) {
    let response = stack
        .http
        .post(stack.gate_url(&format!("/v1/keys/{id}/complete")))
        .header("authorization", format!("Valet {token}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
    (status, code)
}

/// The status and error code of a listing of `users/alice/` at the store with `token`.
async fn alice_listing(stack: &Stack, token: &str) -> (u16, String) {
    let url = format!(
        "http://{}/blob/users?prefix=alice/&vk={token}",
        stack.store_addr
    );
    let response = stack.http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
    (status, code)
}

#[tokio::test]
async fn only_a_current_copy_of_a_key_can_complete_its_family() {
    use valet_key::{Caveat, Token};
    let stack = Stack::start().await;
    let key = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/", "ops": ["read", "list"], "ttl": "1h"}),
        )
        .await;
    let id = key["id"].as_str().unwrap();
    let root: Token = key["token"].as_str().unwrap().parse().unwrap();
    let now = valet_keyring::now();
    let narrowed = |caveat: Caveat| root.append(caveat).unwrap().to_string();
    let sibling = narrowed(Caveat {
        ops: Some("list".parse().unwrap()),
        ..Caveat::default()
    });
    // Past the 30 s skew either way.
    let expired = narrowed(Caveat {
        expires: Some(now.minus(60)),
        ..Caveat::default()
    });
    let expired_long_ago = narrowed(Caveat {
        expires: Some(valet_key::UnixTime(1)),
        ..Caveat::default()
    });
    let not_yet = narrowed(Caveat {
        not_before: Some(now.plus(300)),
        ..Caveat::default()
    });
    let tampered = {
        let last = if sibling.ends_with('A') { 'Q' } else { 'A' };
        format!("{}{last}", &sibling[..sibling.len() - 1])
    };
    let other = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/", "ops": ["list"]}),
        )
        .await;
    let other_token = other["token"].as_str().unwrap();
    let revoked = stack
        .issue_ok(
            ALICE,
            json!({"resource": "blob:users/alice/", "ops": ["list"]}),
        )
        .await;
    let response = stack
        .http
        .delete(stack.gate_url(&format!("/v1/keys/{}", revoked["id"].as_str().unwrap())))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    let refused: [(&str, &str, &str, (u16, &str)); 8] = [
        ("an expired narrowing", id, &expired, (403, "key_expired")),
        (
            "one expired in 1970",
            id,
            &expired_long_ago,
            (403, "key_expired"),
        ),
        (
            "a narrowing not valid yet",
            id,
            &not_yet,
            (403, "key_not_yet_valid"),
        ),
        ("a tampered tag", id, &tampered, (401, "unauthenticated")),
        ("not a key", id, "vk1.nonsense", (401, "unauthenticated")),
        ("another key's token", id, other_token, (403, "forbidden")),
        (
            "a revoked key, for itself",
            revoked["id"].as_str().unwrap(),
            revoked["token"].as_str().unwrap(),
            (403, "key_revoked"),
        ),
        (
            "a revoked key, for another",
            id,
            revoked["token"].as_str().unwrap(),
            (403, "forbidden"),
        ),
    ];
    for (what, target, token, want) in refused {
        let (status, code) = complete_with(&stack, target, token).await;
        assert_eq!((status, code.as_str()), want, "{what}");
        // Nothing was revoked (asked without spending one of the role's five uses).
        for working in [id, other["id"].as_str().unwrap()] {
            let status: serde_json::Value = stack
                .get_as(&format!("/v1/keys/{working}"), ALICE)
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(status["revoked"], false, "after {what}: {status}");
        }
    }
    for working in [&root.to_string(), &sibling] {
        assert_eq!(alice_listing(&stack, working).await.0, 200);
    }
    // A current narrowing completes the family: the root key and every copy stop working.
    assert_eq!(
        complete_with(&stack, id, &sibling).await,
        (204, String::new())
    );
    for dead in [root.to_string(), sibling] {
        assert_eq!(
            alice_listing(&stack, &dead).await,
            (403, "key_revoked".into())
        );
    }
    assert_eq!(alice_listing(&stack, other_token).await.0, 200);
}

#[tokio::test]
async fn credentials_and_keys_never_reach_the_logs() {
    let logs = logs::capture();
    let stack = Stack::start().await;
    let issued = stack
        .issue_ok(
            ADMIN,
            json!({"resource": "blob:files/secret.txt", "ops": ["write"]}),
        )
        .await;
    let issued = issued["token"].as_str().unwrap().to_owned();
    let redirected = delegated(&stack, reqwest::Method::GET, "/files/secret.txt", ADMIN).await;
    let response = stack
        .http
        .get(stack.gate_url("/files/x"))
        .header("accept", "application/json")
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let shown: serde_json::Value = response.json().await.unwrap();
    let shown = shown["token"].as_str().unwrap().to_owned();
    // Refused attempts carry secrets too: a wrong API key, a proxied request.
    let _ = stack
        .http
        .get(stack.gate_url("/files/x"))
        .bearer_auth(format!("{ADMIN}x"))
        .send()
        .await
        .unwrap();
    let _ = stack
        .http
        .post(stack.gate_url("/api/x?token=secret-in-query"))
        .bearer_auth(ALICE)
        .body("x")
        .send()
        .await
        .unwrap();
    let metrics = stack.metrics_text().await;
    let logs = logs.text();
    assert!(logs.contains("valet::access"), "no access log captured");
    let proxied = logs
        .lines()
        .find(|l| l.contains("valet::access") && l.contains("path=\"/api/x\""))
        .unwrap_or_else(|| panic!("no access line for the proxied request in\n{logs}"));
    assert!(
        proxied.contains(" bytes=") && !proxied.contains(" bytes=0 "),
        "the proxied body's length is logged: {proxied}"
    );
    assert!(logs.contains("valet::issue"), "no issue log captured");
    for (what, secret) in [("the admin API key", ADMIN), ("alice's API key", ALICE)] {
        assert!(!logs.contains(secret), "{what} reached the logs");
        assert!(!metrics.contains(secret), "{what} reached the metrics");
    }
    for token in [&issued, &redirected, &shown] {
        let tag = token.rsplit_once('.').unwrap().1;
        assert!(!logs.contains(tag), "a key's tag reached the logs:\n{logs}");
        assert!(!metrics.contains(tag), "a key's tag reached the metrics");
    }
    assert!(
        !logs.contains("secret-in-query"),
        "a query string reached the logs"
    );
}
