//! Writes the seed corpora under `fuzz/seeds/<target>/`: a handful of small valid inputs.
//!
//! ```text
//! cd fuzz && cargo run --example seeds
//! ```

use std::fs;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use valet_key::{Caveat, Claims, KeyId, Keyring, Limits, Op, Ops, UnixTime};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).expect("create the seed folder");
    fs::write(dir.join(name), bytes).expect("write a seed");
}

/// A token's text and its raw-segment form (see `fuzz_targets/token_parse.rs`), as two seeds.
fn write_token(name: &str, token: &valet_key::Token) {
    let text = token.to_string();
    write("token_parse", name, text.as_bytes());
    let body = text.strip_prefix(valet_key::TOKEN_PREFIX).expect("a token");
    let mut framed = vec![0xff];
    let parts: Vec<&str> = body.split('.').collect();
    let (tag, segments) = parts.split_last().expect("a tag");
    for part in segments {
        let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
        framed.push(u8::try_from(bytes.len()).expect("a segment under 256 bytes"));
        framed.extend(bytes);
    }
    framed.extend(URL_SAFE_NO_PAD.decode(tag).expect("base64url"));
    write("token_parse", &format!("{name}.raw"), &framed);
}

fn main() {
    let ring = Keyring::from_secrets(Some("k1"), &[("k1", [7; 32])]).expect("a valid keyring");
    let claims = |scope: &str, ops: Ops| Claims {
        key_id: KeyId([0x5a; 16]),
        subject: Some("alice".to_owned()),
        scope: scope.parse().expect("a valid scope"),
        ops,
        not_before: UnixTime(1_750_000_000),
        expires: UnixTime(1_750_000_600),
        limits: Limits::default(),
    };
    let read = Ops::NONE.with(Op::Read);

    let blob = ring
        .issue(claims("blob:photos/2024/cat.jpg", read))
        .expect("issue");
    write_token("blob_read", &blob);

    let mut wide = claims("blob:photos/2024/", read.with(Op::Write).with(Op::List));
    wide.limits = Limits {
        max_bytes: Some(1 << 20),
        max_uses: Some(10),
        content_type: Some("image/*".parse().expect("a media range")),
        client_ips: vec!["10.0.0.0/8".parse().expect("a CIDR")],
        filename: Some(valet_key::FileName::parse("cat.jpg").expect("a file name")),
        event_target: Some(valet_key::Name::parse("hooks").expect("a name")),
    };
    let prefix = ring.issue(wide).expect("issue");
    write_token("prefix_limits", &prefix);
    let narrowed = prefix
        .attenuate(Caveat {
            scope: Some("blob:photos/2024/jan/".parse().expect("a scope")),
            ops: Some(read),
            expires: Some(UnixTime(1_750_000_300)),
            max_bytes: Some(1 << 10),
            content_type: Some("image/png".parse().expect("a media range")),
            client_ips: vec!["10.1.0.0/16".parse().expect("a CIDR")],
            ..Caveat::default()
        })
        .and_then(|t| {
            t.attenuate(Caveat {
                max_uses: Some(1),
                not_before: Some(UnixTime(1_750_000_010)),
                ..Caveat::default()
            })
        })
        .expect("the caveats narrow");
    write_token("prefix_2_caveats", &narrowed);
    let table = ring
        .issue(claims(
            "table:orders/p1/b..m",
            Ops::NONE.with(Op::Read).with(Op::Update),
        ))
        .expect("issue");
    write_token("table_range", &table);
    let queue = ring
        .issue(claims("queue:jobs", Ops::NONE.with(Op::Enqueue)))
        .expect("issue");
    write_token("queue", &queue);

    for (name, text) in [
        ("blob_container", "blob:photos"),
        ("blob_prefix", "blob:photos/2024/"),
        ("blob_path", "blob:photos/2024/jan/cat.jpg"),
        ("table", "table:orders"),
        ("table_row", "table:orders/customer-1/row-7"),
        ("table_range", "table:orders/customer-1/a..m"),
        ("table_open_range", "table:orders/p/..m"),
        ("queue", "queue:jobs"),
        ("path_dots", "...//a/./b/../%2e"),
    ] {
        write("scope_parse", name, text.as_bytes());
    }

    // The attenuation target reads its input through `arbitrary`: any bytes are a valid
    // input, so these are just a few fixed, varied byte strings to start from.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..4 {
        let bytes: Vec<u8> = (0..64 + 64 * i)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        write("attenuation", &format!("bytes_{i}"), &bytes);
    }
}
