//! `valet key issue|status|revoke --gate URL`: the offline commands' counterparts on a running
//! gate's key API — `POST /v1/keys`, `GET` and `DELETE /v1/keys/ID`, `POST /v1/revocations` —
//! with the API key as `Authorization: Bearer`. Server errors are printed and mapped to exit
//! codes by `cmd::http`, as for `valet get` and `valet put`.

use std::process::ExitCode;

use anyhow::Context;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Map, Value};

use super::{key_reference, time_arg};
use crate::cli::{GateArgs, IssueArgs, RevokeArgs};
use crate::cmd::http::{self, finish, runtime, usage, ServerError, IDLE_TIMEOUT};
use crate::human;

/// The largest answer read from the key API.
const MAX_ANSWER: usize = 64 * 1024;

/// A gate's key API, and the credentials to use it.
struct KeyApi {
    client: reqwest::Client,
    gate: Url,
    api_key: String,
}

impl KeyApi {
    fn new(args: &GateArgs) -> anyhow::Result<KeyApi> {
        let gate = args
            .gate
            .clone()
            .ok_or_else(|| usage("give the gate with --gate URL or VALET_GATE"))?;
        let api_key = args
            .api_key
            .clone()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| usage("the gate needs an API key: --api-key KEY or VALET_API_KEY"))?;
        Ok(KeyApi {
            client: http::client(args.cacert.as_deref())?,
            gate,
            api_key: api_key.trim().to_owned(),
        })
    }

    /// Sends one request; the JSON answer on success (`None` for `204`), or the server's error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Option<Value>> {
        // Appended, not joined: a gate may live under a base path (https://host/api/).
        let url = format!("{}{path}", self.gate.as_str().trim_end_matches('/'));
        let url = Url::parse(&url).map_err(|e| usage(format!("bad gate URL {url} ({e})")))?;
        let mut request = self
            .client
            .request(method.clone(), url)
            .timeout(IDLE_TIMEOUT)
            .header(AUTHORIZATION, format!("Bearer {}", self.api_key))
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body)?);
        }
        let shown = format!(
            "{method} {}{path}",
            self.gate.as_str().trim_end_matches('/')
        );
        let response = request
            .send()
            .await
            .map_err(http::network_error)
            .with_context(|| format!("requesting {shown}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ServerError::from_response(response).await.into());
        }
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let body = http::read_capped(response, MAX_ANSWER).await;
        serde_json::from_slice(&body)
            .map(Some)
            .with_context(|| format!("the gate's answer to {shown} is not JSON"))
    }
}

/// `valet key issue --gate`: `POST /v1/keys`.
pub(super) fn issue(args: IssueArgs) -> anyhow::Result<ExitCode> {
    finish(runtime()?.block_on(async {
        let api = KeyApi::new(&args.remote)?;
        let answer = api
            .call(Method::POST, "/v1/keys", Some(key_request(&args)))
            .await?
            .context("the gate issued no key")?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else {
            let token = answer["token"]
                .as_str()
                .context("the gate's answer has no token")?;
            println!("{token}");
        }
        Ok(())
    }))
}

/// The body of `POST /v1/keys`: what the command line asks for, and nothing the gate would
/// have to guess (an absent `ttl` lets the role's policy choose).
fn key_request(args: &IssueArgs) -> Value {
    let mut body = Map::new();
    body.insert("resource".into(), json!(args.resource));
    body.insert("ops".into(), json!(args.ops));
    if let Some(ttl) = args.ttl {
        body.insert("ttl".into(), json!(ttl.as_secs().max(1)));
    }
    let limits = &args.limits;
    if let Some(n) = limits.max_bytes {
        body.insert("max_bytes".into(), json!(n));
    }
    if let Some(n) = limits.max_uses {
        body.insert("max_uses".into(), json!(n));
    }
    if let Some(t) = &limits.content_type {
        body.insert("content_type".into(), json!(t));
    }
    let ips: Vec<&str> = limits
        .ips
        .iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|ip| !ip.is_empty())
        .collect();
    if !ips.is_empty() {
        body.insert("ip".into(), json!(ips));
    }
    if let Some(name) = &args.filename {
        body.insert("filename".into(), json!(name));
    }
    Value::Object(body)
}

/// `valet key status --gate`: `GET /v1/keys/ID`.
pub(super) fn status(remote: &GateArgs, key: &str) -> anyhow::Result<ExitCode> {
    finish(runtime()?.block_on(async {
        let (id, _) = key_reference(key).map_err(|e| usage(e.to_string()))?;
        let api = KeyApi::new(remote)?;
        let answer = api
            .call(Method::GET, &format!("/v1/keys/{id}"), None)
            .await?
            .context("the gate answered no status")?;
        println!("{}", serde_json::to_string_pretty(&answer)?);
        Ok(())
    }))
}

/// `valet key revoke --gate`: `DELETE /v1/keys/ID`, or `POST /v1/revocations`.
pub(super) fn revoke(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    finish(runtime()?.block_on(async {
        let api = KeyApi::new(&args.remote)?;
        match (args.key, args.subject, args.before) {
            (Some(key), None, None) => {
                let (id, _) = key_reference(&key).map_err(|e| usage(e.to_string()))?;
                api.call(Method::DELETE, &format!("/v1/keys/{id}"), None)
                    .await?;
                eprintln!("revoked {id}");
            }
            (None, subject, Some(before)) => {
                // Checked here for a clear message; sent as written (`now` is the gate's now).
                let at = human::rfc3339(time_arg(&before)?.0);
                let mut body = json!({ "before": before });
                if let Some(subject) = &subject {
                    body["subject"] = json!(subject);
                }
                api.call(Method::POST, "/v1/revocations", Some(body))
                    .await?;
                match subject {
                    Some(subject) => {
                        eprintln!("revoked every key of {subject:?} issued before {at}")
                    }
                    None => eprintln!("revoked every key issued before {at}"),
                }
            }
            _ => {
                return Err(usage(
                    "give a key, or --subject S --before T, or --before T",
                ))
            }
        }
        Ok(())
    }))
}
