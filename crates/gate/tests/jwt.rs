//! JWT bearers signed with RS256 and ES256, with key pairs made by the `openssl` command line
//! (the test fails, not skips, without it: `.ci/run` installs it): accepted, roles from the
//! roles claim and `default_roles`, a wrong key, algorithm confusion, and the `exp` and `nbf`
//! bounds at the clock-skew tolerance.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;

/// The configured clock-skew tolerance, in seconds.
const SKEW: u64 = 20;
const ISSUER: &str = "https://id.example";
const AUDIENCE: &str = "valet";

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command line is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key pair in `dir`: the private key (PKCS#8 PEM) and the public key file (SPKI PEM).
struct KeyPair {
    private_pem: Vec<u8>,
    public_file: PathBuf,
}

impl KeyPair {
    fn rsa(dir: &Path, name: &str) -> KeyPair {
        KeyPair::generate(
            dir,
            name,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        )
    }

    fn ec(dir: &Path, name: &str) -> KeyPair {
        KeyPair::generate(
            dir,
            name,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        )
    }

    fn generate(dir: &Path, name: &str, how: &[&str]) -> KeyPair {
        let private = dir.join(format!("{name}.key"));
        let public_file = dir.join(format!("{name}.pub"));
        let private_str = private.to_str().unwrap();
        let mut args = vec!["genpkey"];
        args.extend_from_slice(how);
        args.extend_from_slice(&["-out", private_str]);
        openssl(&args);
        openssl(&[
            "pkey",
            "-in",
            private_str,
            "-pubout",
            "-out",
            public_file.to_str().unwrap(),
        ]);
        KeyPair {
            private_pem: std::fs::read(&private).unwrap(),
            public_file,
        }
    }

    fn sign(&self, algorithm: Algorithm, claims: &Value) -> String {
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&self.private_pem).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&self.private_pem).unwrap(),
            other => panic!("{other:?}"),
        };
        encode(&Header::new(algorithm), claims, &key).unwrap()
    }
}

/// A gate that takes `algorithm` JWTs checked with `public_file`, with a skew of [`SKEW`],
/// roles from the `roles` claim and every JWT principal also in role `service`.
async fn jwt_stack(algorithm: &str, public_file: &Path, extra: &str) -> Stack {
    let jwt = format!(
        "\n[jwt]\nalgorithm = \"{algorithm}\"\npublic_key_file = '{}'\nissuer = \"{ISSUER}\"\n\
         audience = \"{AUDIENCE}\"\nroles_claim = \"roles\"\ndefault_roles = [\"service\"]\n{extra}",
        public_file.display()
    );
    Stack::start_with(move |c| {
        *c = c.replacen(
            "store_url = ",
            &format!("skew = \"{SKEW}s\"\nstore_url = "),
            1,
        );
        c.push_str(&jwt);
    })
    .await
}

fn now() -> u64 {
    valet_keyring::now().0
}

/// Claims for `sub` with `extra` merged in, valid for a minute.
fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 60});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

/// The principal and roles a proxy route passes upstream for `bearer`.
async fn identity(stack: &Stack, bearer: &str) -> (String, String) {
    let response = stack
        .http
        .get(stack.gate_url("/v2/who"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    let header = |name: &str| echo["headers"][name].as_str().unwrap().to_owned();
    (header("x-valet-principal"), header("x-valet-roles"))
}

fn shared() -> Value {
    json!({"resource": "blob:shared", "ops": ["read"]})
}

/// Issues `blob:shared` with `bearer`: `Ok(subject of the key)` or `Err((status, message))`.
async fn try_issue(stack: &Stack, bearer: &str) -> Result<String, (u16, String)> {
    let response = stack.issue(bearer, shared()).await;
    let status = response.status().as_u16();
    let json: Value = response.json().await.unwrap();
    if status != 201 {
        return Err((
            status,
            json["error"]["message"].as_str().unwrap_or("").to_owned(),
        ));
    }
    let token: valet_key::Token = json["token"].as_str().unwrap().parse().unwrap();
    Ok(token.claims().subject.clone().unwrap())
}

/// The library's type and variant names a refusal must never show the client.
const INTERNALS: [&str; 8] = [
    "Signature",
    "ErrorKind",
    "Error(",
    "Json(",
    "Base64",
    "MissingRequiredClaim",
    "InvalidIssuer",
    "InvalidAudience",
];

/// Asserts a 401 whose message names `why` and shows none of the library's internals.
async fn assert_refused(stack: &Stack, bearer: &str, why: &str, what: &str) {
    match try_issue(stack, bearer).await {
        Err((401, message)) => {
            assert!(message.contains(why), "{what}: {message}");
            for internal in INTERNALS {
                assert!(!message.contains(internal), "{what}: {message}");
            }
        }
        other => panic!("{what}: {other:?}"),
    }
}

#[tokio::test]
async fn rs256_tokens_are_accepted_with_their_roles() {
    let dir = tempfile::tempdir().unwrap();
    let pair = KeyPair::rsa(dir.path(), "rsa");
    let stack = jwt_stack("RS256", &pair.public_file, "").await;

    // No roles claim: the default role only.
    let plain = pair.sign(Algorithm::RS256, &claims("carol", json!({})));
    assert_eq!(try_issue(&stack, &plain).await.unwrap(), "carol");
    assert_eq!(
        identity(&stack, &plain).await,
        ("carol".into(), "service".into())
    );
    let response = stack
        .issue(
            &plain,
            json!({"resource": "blob:users/carol/x", "ops": ["read"]}),
        )
        .await;
    assert_eq!(code(response).await, (403, "policy_denied".into()));

    // Roles as an array: the default role, then the claim's.
    let user = pair.sign(
        Algorithm::RS256,
        &claims("carol", json!({"roles": ["user"]})),
    );
    assert_eq!(
        identity(&stack, &user).await,
        ("carol".into(), "service,user".into())
    );
    let key = stack
        .issue_ok(
            &user,
            json!({"resource": "blob:users/carol/x", "ops": ["read"]}),
        )
        .await;
    let token: valet_key::Token = key["token"].as_str().unwrap().parse().unwrap();
    assert_eq!(token.claims().subject.as_deref(), Some("carol"));
    // Its policy only: not another user's folder.
    let response = stack
        .issue(
            &user,
            json!({"resource": "blob:users/dave/x", "ops": ["read"]}),
        )
        .await;
    assert_eq!(code(response).await, (403, "policy_denied".into()));

    // Roles as a space-separated string.
    let admin = pair.sign(
        Algorithm::RS256,
        &claims("dave", json!({"roles": "user admin"})),
    );
    assert_eq!(
        identity(&stack, &admin).await,
        ("dave".into(), "service,user,admin".into())
    );
    stack
        .issue_ok(
            &admin,
            json!({"resource": "blob:files/x", "ops": ["write"]}),
        )
        .await;

    // Issuer and audience are still checked.
    let other_audience = pair.sign(Algorithm::RS256, &claims("carol", json!({"aud": "other"})));
    assert_refused(
        &stack,
        &other_audience,
        "audience does not include",
        "wrong audience",
    )
    .await;
    let other_issuer = pair.sign(
        Algorithm::RS256,
        &claims("carol", json!({"iss": "https://evil.example"})),
    );
    assert_refused(&stack, &other_issuer, "issuer is not", "wrong issuer").await;
}

#[tokio::test]
async fn rs256_refuses_other_keys_and_algorithm_confusion() {
    let dir = tempfile::tempdir().unwrap();
    let pair = KeyPair::rsa(dir.path(), "rsa");
    let other = KeyPair::rsa(dir.path(), "other");
    let ec = KeyPair::ec(dir.path(), "ec");
    let stack = jwt_stack("RS256", &pair.public_file, "").await;
    let good = claims("carol", json!({}));
    assert_eq!(
        try_issue(&stack, &pair.sign(Algorithm::RS256, &good))
            .await
            .unwrap(),
        "carol"
    );

    let wrong_key = other.sign(Algorithm::RS256, &good);
    assert_refused(
        &stack,
        &wrong_key,
        "the signature does not verify",
        "signed by another RSA key",
    )
    .await;

    // The classic confusion: HS256 with the (public) RSA key PEM as the HMAC secret.
    let public_pem = std::fs::read(&pair.public_file).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    assert_refused(&stack, &confused, "only", "HS256 with the public key").await;

    // Another asymmetric algorithm is refused too.
    let es256 = ec.sign(Algorithm::ES256, &good);
    assert_refused(&stack, &es256, "only", "ES256 at an RS256 gate").await;

    // And no algorithm at all.
    let signed = pair.sign(Algorithm::RS256, &good);
    let payload = signed.split('.').nth(1).unwrap();
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    match try_issue(&stack, &none).await {
        Err((401, _)) => {}
        other => panic!("alg none: {other:?}"),
    }
}

#[tokio::test]
async fn es256_tokens_are_accepted_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let pair = KeyPair::ec(dir.path(), "ec");
    let other = KeyPair::ec(dir.path(), "other");
    let rsa = KeyPair::rsa(dir.path(), "rsa");
    // The principal is named by another claim here.
    let stack = jwt_stack("es256", &pair.public_file, "principal_claim = \"uid\"\n").await;

    let user = pair.sign(
        Algorithm::ES256,
        &claims("ignored", json!({"uid": "erin", "roles": "user"})),
    );
    assert_eq!(try_issue(&stack, &user).await.unwrap(), "erin");
    assert_eq!(
        identity(&stack, &user).await,
        ("erin".into(), "service,user".into())
    );
    stack
        .issue_ok(
            &user,
            json!({"resource": "blob:users/erin/", "ops": ["list"]}),
        )
        .await;

    let no_uid = pair.sign(Algorithm::ES256, &claims("erin", json!({})));
    assert_refused(
        &stack,
        &no_uid,
        "no string claim 'uid'",
        "no principal claim",
    )
    .await;

    let wrong_key = other.sign(Algorithm::ES256, &claims("x", json!({"uid": "erin"})));
    assert_refused(
        &stack,
        &wrong_key,
        "the signature does not verify",
        "signed by another EC key",
    )
    .await;

    let public_pem = std::fs::read(&pair.public_file).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims("x", json!({"uid": "erin"})),
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    assert_refused(&stack, &confused, "only", "HS256 with the public key").await;

    let rs256 = rsa.sign(Algorithm::RS256, &claims("x", json!({"uid": "erin"})));
    assert_refused(&stack, &rs256, "only", "RS256 at an ES256 gate").await;
}

/// Runs `attempt` with the current second until the clock did not move to the next second
/// while it ran, so that the gate saw the same `now` as the token was made for.
async fn within_one_second<F, Fut, T>(attempt: F) -> T
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    loop {
        let before = now();
        let result = attempt(before).await;
        if now() == before {
            return result;
        }
    }
}

#[tokio::test]
async fn exp_and_nbf_are_checked_with_the_skew() {
    let dir = tempfile::tempdir().unwrap();
    let pair = KeyPair::ec(dir.path(), "ec");
    let stack = jwt_stack("ES256", &pair.public_file, "").await;
    let with = |field: &'static str, at: i64| {
        let pair = &pair;
        let stack = &stack;
        move |now: u64| async move {
            let time = (now as i64 + at) as u64;
            let mut c = claims("frank", json!({}));
            c[field] = json!(time);
            try_issue(stack, &pair.sign(Algorithm::ES256, &c)).await
        }
    };
    let skew = SKEW as i64;

    // `exp` may be up to the skew in the past.
    let result = within_one_second(with("exp", -skew - 1)).await;
    assert!(
        matches!(&result, Err((401, m)) if m.ends_with("the token has expired")),
        "exp = now - skew - 1: {result:?}"
    );
    let result = within_one_second(with("exp", -skew)).await;
    assert_eq!(result, Ok("frank".into()), "exp = now - skew");
    let result = within_one_second(with("exp", -skew + 5)).await;
    assert_eq!(result, Ok("frank".into()), "exp = now - skew + 5");

    // `nbf` may be up to the skew in the future.
    let result = within_one_second(with("nbf", skew + 1)).await;
    assert!(
        matches!(&result, Err((401, m)) if m.contains("the token is not valid yet")),
        "nbf = now + skew + 1: {result:?}"
    );
    let result = within_one_second(with("nbf", skew)).await;
    assert_eq!(result, Ok("frank".into()), "nbf = now + skew");
    let result = within_one_second(with("nbf", skew - 5)).await;
    assert_eq!(result, Ok("frank".into()), "nbf = now + skew - 5");

    // `exp` is required.
    let mut no_exp = claims("frank", json!({}));
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_refused(
        &stack,
        &pair.sign(Algorithm::ES256, &no_exp),
        "exp",
        "no exp",
    )
    .await;
}

/// With `issuer` and `audience` configured, a token must carry matching `iss` and `aud`, not
/// merely not carry other ones.
#[tokio::test]
async fn configured_issuer_and_audience_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let pair = KeyPair::ec(dir.path(), "ec");
    let stack = jwt_stack("ES256", &pair.public_file, "").await;
    for claim in ["iss", "aud"] {
        let mut without = claims("carol", json!({}));
        without.as_object_mut().unwrap().remove(claim);
        let token = pair.sign(Algorithm::ES256, &without);
        assert_refused(&stack, &token, claim, &format!("no {claim}")).await;
    }
}

/// A gate that takes HS256 JWTs signed with [`HS_SECRET`], with `extra` in its `[jwt]` table.
async fn hs256_stack(extra: &str) -> Stack {
    let jwt = format!("\n[jwt]\nalgorithm = \"HS256\"\nsecret = \"{HS_SECRET}\"\n{extra}");
    Stack::start_with(move |c| c.push_str(&jwt)).await
}

const HS_SECRET: &str = "0123456789abcdef0123456789abcdef";

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

/// Every registered claim of the wrong type is a refusal, with or without `iss` and `aud`
/// configured: a token whose `nbf` is a string is not valid early, one whose `exp` is a
/// string is not valid forever.
#[tokio::test]
async fn registered_claims_of_the_wrong_type_are_refused() {
    let later = now() + 3600;
    let wrong: Vec<(&str, Value, &str)> = vec![
        ("exp", json!(later.to_string()), "`exp` claim is not a time"),
        ("exp", json!(null), "`exp` claim is not a time"),
        ("exp", json!(true), "`exp` claim is not a time"),
        ("exp", json!(-1), "`exp` claim is not a time"),
        ("exp", json!([later]), "`exp` claim is not a time"),
        ("exp", json!({"at": later}), "`exp` claim is not a time"),
        ("nbf", json!(later.to_string()), "`nbf` claim is not a time"),
        ("nbf", json!("0"), "`nbf` claim is not a time"),
        ("nbf", json!(null), "`nbf` claim is not a time"),
        ("nbf", json!([0]), "`nbf` claim is not a time"),
        ("nbf", json!(-5), "`nbf` claim is not a time"),
        ("iat", json!("yesterday"), "`iat` claim is not a time"),
        ("iat", json!(false), "`iat` claim is not a time"),
        ("iss", json!(7), "`iss` claim is not a string"),
        ("iss", json!([ISSUER]), "`iss` claim is not a string"),
        ("iss", json!(null), "`iss` claim is not a string"),
        ("aud", json!(7), "`aud` claim is not a string or an array"),
        (
            "aud",
            json!([AUDIENCE, 7]),
            "`aud` claim is not a string or an array",
        ),
        (
            "aud",
            json!({"aud": AUDIENCE}),
            "`aud` claim is not a string or an array",
        ),
        (
            "aud",
            json!(null),
            "`aud` claim is not a string or an array",
        ),
        ("sub", json!(42), "`sub` claim is not a string"),
        ("sub", json!(["eve"]), "`sub` claim is not a string"),
    ];
    let configured = hs256_stack(&format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\ndefault_roles = [\"service\"]"
    ))
    .await;
    let open = hs256_stack("default_roles = [\"service\"]").await;
    for stack in [&configured, &open] {
        assert_eq!(
            try_issue(stack, &hs256(&claims("gina", json!({})))).await,
            Ok("gina".into())
        );
        for (field, value, why) in &wrong {
            let mut c = claims("gina", json!({}));
            c[*field] = value.clone();
            let what = format!("{field} = {value}");
            // An array or object where the library reads a registered claim stops its parse
            // before the claim is looked at: refused, as not of the JWT form.
            let why = match value {
                Value::Array(_) | Value::Object(_) if !["iss", "aud"].contains(field) => {
                    "not of the JWT form"
                }
                _ => why,
            };
            assert_refused(stack, &hs256(&c), why, &what).await;
        }
    }
    // The right types in their other forms pass: a fractional time, an audience list.
    let fine = claims(
        "gina",
        json!({"exp": now() as f64 + 60.5, "nbf": now() - 1, "iat": now(), "aud": ["other", AUDIENCE]}),
    );
    assert_eq!(
        try_issue(&configured, &hs256(&fine)).await,
        Ok("gina".into())
    );
}

/// Each way a JWT can fail, in plain words: never the library's names for it.
#[tokio::test]
async fn jwt_refusals_are_in_plain_words() {
    let stack = hs256_stack(&format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\ndefault_roles = [\"service\"]"
    ))
    .await;
    let good = hs256(&claims("gina", json!({})));
    let mut no_exp = claims("gina", json!({}));
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_iss = claims("gina", json!({}));
    no_iss.as_object_mut().unwrap().remove("iss");
    let mut no_aud = claims("gina", json!({}));
    no_aud.as_object_mut().unwrap().remove("aud");
    let parts: Vec<&str> = good.split('.').collect();
    let other_secret = encode(
        &Header::new(Algorithm::HS256),
        &claims("gina", json!({})),
        &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
    )
    .unwrap();
    let hs384 = encode(
        &Header::new(Algorithm::HS384),
        &claims("gina", json!({})),
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            hs256(&claims("gina", json!({"exp": now() - 3600}))),
            "the token has expired",
        ),
        (
            "not yet valid",
            hs256(&claims("gina", json!({"nbf": now() + 3600}))),
            "the token is not valid yet",
        ),
        ("no exp", hs256(&no_exp), "the token has no `exp` claim"),
        ("no iss", hs256(&no_iss), "the token has no `iss` claim"),
        ("no aud", hs256(&no_aud), "the token has no `aud` claim"),
        (
            "another issuer",
            hs256(&claims("gina", json!({"iss": "https://evil.example"}))),
            "the token's issuer is not",
        ),
        (
            "another audience",
            hs256(&claims("gina", json!({"aud": ["other"]}))),
            "the token's audience does not include",
        ),
        (
            "another secret",
            other_secret,
            "the signature does not verify",
        ),
        (
            "a changed signature",
            format!("{}.{}.{}", parts[0], parts[1], "A".repeat(parts[2].len())),
            "the signature does not verify",
        ),
        (
            "claims swapped under the signature",
            format!(
                "{}.{}.{}",
                parts[0],
                hs256(&claims("admin2", json!({})))
                    .split('.')
                    .nth(1)
                    .unwrap(),
                parts[2]
            ),
            "the signature does not verify",
        ),
        ("another algorithm", hs384, "accepts HS256 only"),
        (
            "alg none",
            format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]),
            "not of the JWT form",
        ),
        (
            "a signature not in base64url",
            format!("{}.{}.{}!", parts[0], parts[1], parts[2]),
            "the signature does not verify",
        ),
        (
            "claims not in base64url",
            format!("{}.{}!.{}", parts[0], parts[1], parts[2]),
            "the signature does not verify",
        ),
        (
            "claims not an object",
            format!(
                "{}.{}.{}",
                parts[0],
                "WzEsMiwzXQ", // [1,2,3]
                parts[2]
            ),
            "",
        ),
    ];
    for (what, token, why) in cases {
        assert_refused(&stack, &token, why, what).await;
    }
}
