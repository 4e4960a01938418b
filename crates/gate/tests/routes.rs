//! Delegate and proxy routes over real HTTP: curl follows the gate's redirects to a real store
//! (the bytes never pass through the gate), and proxy routes reach a real upstream.

mod support;

use std::process::Command;

use serde_json::json;
use support::*;
use valet_testkit::{logs, raw_http};

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed (.ci/run installs it)")
}

/// The status of a GET for `path` sent exactly as written (0 if the answer has none).
async fn raw_status(addr: std::net::SocketAddr, path: &str, key: &str) -> u16 {
    raw_http::status(&raw_http::send(addr, bearer_get(path, key)).await).unwrap_or(0)
}

fn bearer(key: &str) -> String {
    format!("Authorization: Bearer {key}")
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_follows_delegate_routes_for_uploads_and_downloads() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A small file (sent at once) and one over 1 MiB (curl waits for 100-continue).
    for (name, size) in [("small.txt", 1000usize), ("big.bin", 3 << 20)] {
        let source = dir.path().join(name);
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&source, &data).unwrap();
        let url = stack.gate_url(&format!("/files/up/{name}"));
        let (auth, src) = (bearer(ADMIN), source.to_str().unwrap().to_owned());
        let out = tokio::task::spawn_blocking(move || {
            curl(&[
                "-L",
                "-T",
                &src,
                "-H",
                &auth,
                "-w",
                "%{http_code}",
                "-o",
                "/dev/null",
                &url,
            ])
        })
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "201",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let target = dir.path().join(format!("{name}.down"));
        let (auth, dst, url) = (
            bearer(ADMIN),
            target.to_str().unwrap().to_owned(),
            stack.gate_url(&format!("/files/up/{name}")),
        );
        let out =
            tokio::task::spawn_blocking(move || curl(&["-L", "-f", "-H", &auth, "-o", &dst, &url]))
                .await
                .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&target).unwrap(), data);
    }
    // Not one body byte went through the gate; the store carried them all.
    assert_eq!(stack.gate_metric("valet_gate_body_bytes_in_total"), 0.0);
    assert_eq!(stack.gate_metric("valet_gate_body_bytes_out_total"), 0.0);
    let store_metrics = stack.store.metrics().render();
    assert!(metric(&store_metrics, "valet_store_bytes_in_total") >= (3 << 20) as f64);
    assert!(metric(&store_metrics, "valet_store_bytes_out_total") >= (3 << 20) as f64);
    assert!(stack
        .gate
        .metrics()
        .render()
        .contains("valet_gate_keys_issued_total{via=\"redirect\"} 4"));
}

#[tokio::test]
async fn delegate_answers_a_redirect_or_json_for_exactly_one_resource() {
    let stack = Stack::start().await;
    let response = stack
        .http
        .get(stack.gate_url("/files/a/b.txt"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!(
        "http://{}/blob/files/a/b.txt?vk=vk1.",
        stack.store_addr
    )));
    let token: valet_key::Token = location.split("vk=").nth(1).unwrap().parse().unwrap();
    assert_eq!(token.claims().scope.to_string(), "blob:files/a/b.txt");
    assert_eq!(token.claims().ops.to_string(), "read");
    assert_eq!(token.claims().expires.0 - token.claims().not_before.0, 60);
    // The JSON form, and the operation per method.
    for (method, op) in [
        ("GET", "read"),
        ("HEAD", "read"),
        ("PUT", "write"),
        ("DELETE", "delete"),
    ] {
        let response = stack
            .http
            .request(method.parse().unwrap(), stack.gate_url("/files/x"))
            .bearer_auth(ADMIN)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method}");
        if method == "HEAD" {
            continue;
        }
        let minted: serde_json::Value = response.json().await.unwrap();
        let token: valet_key::Token = minted["token"].as_str().unwrap().parse().unwrap();
        assert_eq!(token.claims().ops.to_string(), op, "{method}");
        assert!(minted["url"]
            .as_str()
            .unwrap()
            .contains("/blob/files/x?vk="));
    }
    let response = stack
        .http
        .post(stack.gate_url("/files/x"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (405, "method_not_allowed".into()));
}

#[tokio::test]
async fn delegate_paths_cannot_escape_their_resource() {
    let stack = Stack::start().await;
    for path in [
        "/files/../users/alice/x",
        "/files/a/%2e%2e/b",
        "/files/a/%2E%2E/b",
        "/files/a/.%2e/b",
        "/files/a%2f..%2fb",
        "/files/a/%252e%252e/b",
        "/files/a%5cb",
        "/files/a%00b",
        "/files/%c0%ae%c0%ae/b",
        "/files/%ff",
        "/files/a//b",
        "/files/./b",
    ] {
        // Raw bytes on the wire: an HTTP library would normalise some of these paths.
        let status = raw_status(stack.gate_addr, path, ADMIN).await;
        assert!(status == 400 || status == 404, "{path}: {status}");
    }
    // A folder is listed, and only listed.
    let response = stack
        .http
        .get(stack.gate_url("/files/a/"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("/blob/files?prefix=a%2F&vk="),
        "{location}"
    );
    let token: valet_key::Token = location.split("vk=").nth(1).unwrap().parse().unwrap();
    assert_eq!(token.claims().ops.to_string(), "list");
    let response = stack
        .http
        .delete(stack.gate_url("/files/a/"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (400, "bad_path".into()));
    // Delegate routes match the normal form of the path, as proxy routes do: an encoded
    // unreserved letter is the letter; another case of a route's literal is refused, as is a
    // route's prefix with nothing after it.
    let response = stack.get_as("/fil%65s/%61/b%2Etxt", ADMIN).await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/blob/files/a/b.txt?vk="), "{location}");
    for path in ["/FILES/a", "/Files/a", "/files./a", "/files", "/files/"] {
        let status = raw_status(stack.gate_addr, path, ADMIN).await;
        assert_eq!(status, 400, "{path}");
    }
    // `{sub}` keeps each principal in its own folder, whatever the path says.
    let response = stack
        .http
        .get(stack.gate_url("/me/notes.txt"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    assert!(response.headers()["location"]
        .to_str()
        .unwrap()
        .contains("/blob/users/alice/notes.txt?"));
    let response = stack
        .http
        .get(stack.gate_url("/me/%7Bsub%7D/x"))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("/blob/users/bob/%7Bsub%7D/x?"),
        "{location}"
    );
    // A route limited to admins, and the policy of the principal, both apply.
    let response = stack
        .http
        .get(stack.gate_url("/files/x"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (403, "forbidden".into()));
    let response = stack
        .http
        .delete(stack.gate_url("/me/x"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (403, "policy_denied".into()));
    let response = stack
        .http
        .get(stack.gate_url("/me/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (401, "unauthenticated".into()));
    let response = stack
        .http
        .get(stack.gate_url("/nowhere"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (404, "not_found".into()));
}

#[tokio::test]
async fn proxy_routes_forward_with_the_principal_and_without_secrets() {
    let stack = Stack::start().await;
    let response = stack
        .http
        .post(stack.gate_url("/api/compute/run?x=1&y=2"))
        .bearer_auth(ALICE)
        .header("x-valet-principal", "admin")
        .header("x-valet-roles", "admin")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "x-secret-hop")
        .header("x-secret-hop", "1")
        .header("proxy-authorization", "Basic eA==")
        .header("x-custom", "kept")
        .body("hello upstream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Hop-by-hop headers of the upstream's answer are not passed on.
    assert!(response.headers().get("x-hop").is_none());
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/api/compute/run");
    assert_eq!(echo["query"], "x=1&y=2");
    assert_eq!(echo["body_len"], 14);
    let headers = &echo["headers"];
    assert_eq!(
        headers["x-valet-principal"], "alice",
        "the client's forged header is replaced"
    );
    assert_eq!(headers["x-valet-roles"], "user");
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], stack.gate_addr.to_string());
    assert_eq!(headers["host"], stack.upstream_addr.to_string());
    assert_eq!(headers["x-custom"], "kept");
    for gone in ["authorization", "x-secret-hop", "proxy-authorization"] {
        assert!(
            headers.get(gone).is_none(),
            "{gone} was forwarded: {headers}"
        );
    }
    // A path template: `/v2/{name}` goes to `/echo/{name}`; GET only.
    let echo: serde_json::Value = stack
        .get_as("/v2/thing?q=1", ROBOT)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(echo["path"], "/echo/thing");
    assert_eq!(echo["query"], "q=1");
    let response = stack
        .http
        .post(stack.gate_url("/v2/thing"))
        .bearer_auth(ROBOT)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (405, "method_not_allowed".into()));
    // Route roles: the robot is not a user.
    let response = stack
        .http
        .get(stack.gate_url("/api/x"))
        .bearer_auth(ROBOT)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (403, "forbidden".into()));
    let response = stack
        .http
        .get(stack.gate_url("/api/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (401, "unauthenticated".into()));
    assert!(stack.gate_metric("valet_gate_body_bytes_in_total") >= 14.0);
}

#[tokio::test]
async fn proxy_limits_timeouts_and_failures_have_their_codes() {
    let stack = Stack::start().await;
    // Over the limit by Content-Length: refused before the upstream is called.
    let response = stack
        .http
        .post(stack.gate_url("/api/x"))
        .bearer_auth(ALICE)
        .body(vec![0u8; 64 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (413, "too_large".into()));
    // Over the limit while streaming (chunked, no length): cut at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![1u8; 8 * 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = stack
        .http
        .post(stack.gate_url("/api/x"))
        .bearer_auth(ALICE)
        .body(body)
        .send()
        .await;
    match response {
        Ok(r) => assert_eq!(code(r).await, (413, "too_large".into())),
        // The gate may answer and close before the client finished sending.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    // Within the limit, chunked: fine.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![1u8; 8 * 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let echo: serde_json::Value = stack
        .http
        .post(stack.gate_url("/api/x"))
        .bearer_auth(ALICE)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["body_len"], 32 * 1024);
    // The upstream takes 3 s; the route allows 1 s.
    let started = std::time::Instant::now();
    let response = stack
        .http
        .get(stack.gate_url("/api/slow"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (504, "upstream_timeout".into()));
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // A large answer streams through whole.
    let body = stack
        .http
        .get(stack.gate_url("/api/big?n=5000000"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), 5_000_000);
    assert!(stack.gate_metric("valet_gate_body_bytes_out_total") >= 5_000_000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_and_closed_ones_replaced() {
    let stack = Stack::start().await;
    let get = |path: &'static str| {
        let request = stack.http.get(stack.gate_url(path)).bearer_auth(ALICE);
        async move { request.send().await.unwrap() }
    };
    // Sequential requests of every kind, interleaved, on the workers' pools.
    for i in 0..60 {
        let (path, status, len) = match i % 5 {
            0 => ("/api/close", 200, 3),
            1 => ("/api/nocontent", 204, 0),
            2 => ("/api/big?n=100000", 200, 100_000),
            _ => ("/api/echo", 200, usize::MAX),
        };
        let response = get(path).await;
        assert_eq!(response.status(), status, "{i}: {path}");
        let body = response.bytes().await.unwrap();
        if len != usize::MAX {
            assert_eq!(body.len(), len, "{i}: {path}");
        }
    }
    let head = stack
        .http
        .head(stack.gate_url("/api/echo"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    // Concurrent requests, some bodies abandoned half-way.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let request = stack
            .http
            .get(stack.gate_url("/api/big?n=2000000"))
            .bearer_auth(ALICE);
        tasks.push(tokio::spawn(async move {
            let mut response = request.send().await.unwrap();
            if i % 4 == 0 {
                let _ = response.chunk().await;
                return 0;
            }
            response.bytes().await.unwrap().len()
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let len = task.await.unwrap();
        assert!(len == 0 && i % 4 == 0 || len == 2_000_000, "{i}: {len}");
    }
    let echo: serde_json::Value = get("/api/after").await.json().await.unwrap();
    assert_eq!(echo["path"], "/api/after");
}

#[tokio::test]
async fn proxy_paths_cannot_climb_out_of_their_route() {
    let stack = Stack::start().await;
    for path in [
        "/api/../adminonly/x",
        "/api/%2e%2e/adminonly/x",
        "/api/.%2E/adminonly/x",
        "/api/%252e%252e/adminonly/x",
        "/api/a%2f..%2fadminonly",
        "/v2/..",
        "/api/./x",
        "/api/a%5c..%5cb",
    ] {
        let status = raw_status(stack.gate_addr, path, ALICE).await;
        assert_eq!(status, 400, "{path}");
    }
    // Nothing reached the upstream.
    assert_eq!(stack.gate_metric("valet_gate_body_bytes_out_total"), 0.0);
}

/// A proxy route's upstream that is down is a 502 `upstream_unavailable` with a plain message:
/// the client learns neither the upstream's address nor the HTTP library's words; the operator
/// finds both, with the route, in one warning.
#[tokio::test]
async fn an_upstream_that_is_down_gives_502_and_tells_only_the_operator_why() {
    let logs = logs::capture();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let stack = Stack::start_with(|c| {
        c.push_str(&format!(
            "\n[[routes]]\npath = \"/down/{{*rest}}\"\nproxy = \"http://{closed}\"\n"
        ));
    })
    .await;
    let response = stack
        .http
        .get(stack.gate_url("/down/x"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body = response.text().await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["code"], "upstream_unavailable", "{json}");
    let port = closed.port().to_string();
    for internal in [
        port.as_str(),
        "127.0.0.1",
        "connect",
        "refused",
        "os error",
        "hyper",
        "tcp",
    ] {
        assert!(
            !body.to_ascii_lowercase().contains(internal),
            "the client was told {internal:?}: {body}"
        );
    }
    // The route's position in the configuration: after the four of the base configuration.
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("upstream unavailable") && l.contains(&port))
        .unwrap_or_else(|| panic!("no warning names the upstream:\n{text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("route=\"routes[4]\""), "{line}");
    assert!(line.contains(&format!("upstream={closed}")), "{line}");
    assert!(line.to_ascii_lowercase().contains("refused"), "{line}");
}

/// `https://` upstreams: the certificate must chain to a trusted root (the system's, or those
/// of `proxy.upstream_ca`) and name the host, by DNS name or by IP address; then requests flow
/// as over plain HTTP, on pooled connections. An upstream whose certificate is not trusted, or
/// a TLS port spoken to in plain HTTP, is a 502.
#[tokio::test]
async fn https_upstreams_are_verified_and_proxied() {
    let routes = r#"
[[routes]]
path = "/tls/{*rest}"
proxy = "https://localhost:{TLS_UPSTREAM_PORT}"

[[routes]]
path = "/tls-ip/{name}"
proxy = "https://127.0.0.1:{TLS_UPSTREAM_PORT}/echo/{name}"

[[routes]]
path = "/plain-to-tls/{*rest}"
proxy = "http://127.0.0.1:{TLS_UPSTREAM_PORT}"
"#;
    let stack = Stack::start_with(|c| {
        *c = c.replace("[proxy]\n", "[proxy]\nupstream_ca = \"{UPSTREAM_CA}\"\n");
        c.push_str(routes);
    })
    .await;
    let port = stack.tls_upstream_addr.port();
    for _ in 0..3 {
        let response = stack
            .http
            .post(stack.gate_url("/tls/compute/run?x=1"))
            .bearer_auth(ALICE)
            .body("over tls")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let echo: serde_json::Value = response.json().await.unwrap();
        assert_eq!(echo["path"], "/tls/compute/run");
        assert_eq!(echo["query"], "x=1");
        assert_eq!(echo["body_len"], 8);
        assert_eq!(echo["headers"]["host"], format!("localhost:{port}"));
        assert_eq!(echo["headers"]["x-valet-principal"], "alice");
    }
    let echo: serde_json::Value = stack
        .get_as("/tls-ip/thing", ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(echo["path"], "/echo/thing", "{echo}");

    let response = stack.get_as("/plain-to-tls/x", ALICE).await;
    assert_eq!(code(response).await, (502, "upstream_unavailable".into()));

    // Trusting another CA (and the system's roots) only: the upstream's certificate chains to
    // nothing the gate trusts.
    let other_ca = {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let path = stack.dir.path().join("other-ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        path
    };
    let untrusting = Stack::start_with(|c| {
        let line = format!("[proxy]\nupstream_ca = {:?}\n", other_ca.to_str().unwrap());
        *c = c.replace("[proxy]\n", &line);
        c.push_str(routes);
    })
    .await;
    let response = untrusting.get_as("/tls/x", ALICE).await;
    assert_eq!(code(response).await, (502, "upstream_unavailable".into()));
}

#[tokio::test]
async fn health_and_metrics_need_no_credentials() {
    let stack = Stack::start().await;
    let response = stack
        .http
        .get(stack.gate_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.text().await.unwrap(), "ok\n");
    let head = stack.http.head(stack.gate_url("/healthz")).send().await;
    let head = head.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "text/plain; charset=utf-8");
    let text = stack.metrics_text().await;
    assert!(text.contains("valet_gate_requests_total"), "{text}");
}

#[test]
fn bad_configurations_name_the_setting() {
    let cases = [
        (
            "[[routes]]\npath = \"files/{*p}\"\ndelegate = \"blob:files/{p}\"\n",
            "routes[0].path",
        ),
        (
            "[[routes]]\npath = \"/f/{*p}\"\ndelegate = \"blob:files/{q}\"\n",
            "routes[0].delegate",
        ),
        (
            "[[routes]]\npath = \"/f/{*p}\"\ndelegate = \"blob:files/../{p}\"\n",
            "routes[0].delegate",
        ),
        ("[[routes]]\npath = \"/f/{*p}\"\n", "routes[0].delegate"),
        (
            "[[routes]]\npath = \"/f/{*p}\"\nproxy = \"ftp://x\"\n",
            "routes[0].proxy",
        ),
        (
            "[[routes]]\npath = \"/f/{*p}\"\ndelegate = \"blob:files/{p}\"\nmethods = [\"POST\"]\n",
            "routes[0].methods",
        ),
        (
            "[[routes]]\npath = \"/f/{*p}\"\ndelegate = \"blob:files/{p}\"\nroles = [\"nobody\"]\n",
            "routes[0].roles",
        ),
        (
            "[roles.x]\nresources = [\"blob:a/{user}/\"]\nops = [\"read\"]\n",
            "roles.x.resources",
        ),
        (
            "[roles.x]\nresources = [\"*\"]\nops = [\"fly\"]\n",
            "roles.x.ops",
        ),
        (
            "[[api_keys]]\nprincipal = \"p\"\nsha256 = \"abc\"\n",
            "api_keys[0].sha256",
        ),
        (
            "[jwt]\nalgorithm = \"HS256\"\nsecret = \"short\"\n",
            "jwt.secret",
        ),
        ("[jwt]\nalgorithm = \"none\"\n", "jwt.algorithm"),
        (
            "[proxy]\nprincipal_header = \"bad header\"\n",
            "proxy.principal_header",
        ),
        (
            "[proxy]\nupstream_ca = \"/nonexistent/ca.pem\"\n[[routes]]\npath = \"/f/{*p}\"\nproxy = \"https://x\"\n",
            "routes[0].proxy",
        ),
    ];
    for (toml_text, setting) in cases {
        let text = format!("store_url = \"http://127.0.0.1:1\"\n{toml_text}");
        let config: valet_gate::GateConfig = toml::from_str(&text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let keyring = valet_keyring::create(&dir.path().join("k")).unwrap();
        let ledger =
            std::sync::Arc::new(valet_ledger::SqliteLedger::open(&dir.path().join("l")).unwrap());
        let err = valet_gate::Gate::new(config, keyring, dir.path().join("k"), ledger).unwrap_err();
        assert_eq!(err.setting, setting, "{toml_text}: {err}");
    }
    let _ = json!(null);
}
