//! The test vectors of `docs/KEY-FORMAT.md`, recomputed here: if the format changes, the
//! document must change with it.

mod common;

use valet_key::{
    Access, Caveat, Claims, KeyId, Keyring, Limits, Op, Scope, Token, UnixTime, Verifier,
};

const JAN_1_2026: UnixTime = UnixTime(1_767_225_600);

fn secret() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

fn ring() -> Keyring {
    Keyring::from_secrets(Some("k1"), &[("k1", secret())]).unwrap()
}

fn key_id() -> KeyId {
    KeyId(std::array::from_fn(|i| i as u8))
}

fn vector_1() -> Token {
    ring()
        .issue(Claims {
            key_id: key_id(),
            subject: None,
            scope: "blob:photos/2024/cat.jpg".parse().unwrap(),
            ops: "read".parse().unwrap(),
            not_before: JAN_1_2026,
            expires: JAN_1_2026.plus(600),
            limits: Limits::default(),
        })
        .unwrap()
}

fn vector_2() -> Token {
    ring()
        .issue(Claims {
            key_id: key_id(),
            subject: Some("alice".into()),
            scope: "blob:photos/2024/".parse().unwrap(),
            ops: "read,write,list".parse().unwrap(),
            not_before: JAN_1_2026,
            expires: JAN_1_2026.plus(3600),
            limits: Limits {
                max_bytes: Some(10 * 1024 * 1024),
                max_uses: Some(3),
                content_type: Some("image/*".parse().unwrap()),
                client_ips: vec![
                    "192.0.2.0/24".parse().unwrap(),
                    "2001:db8::/32".parse().unwrap(),
                ],
                filename: Some(valet_key::FileName::parse("cat.jpg").unwrap()),
                event_target: Some(valet_key::Name::parse("uploads").unwrap()),
            },
        })
        .unwrap()
}

fn vector_3() -> Token {
    vector_2()
        .attenuate(Caveat {
            scope: Some("blob:photos/2024/jan/".parse().unwrap()),
            ops: Some("read".parse().unwrap()),
            expires: Some(JAN_1_2026.plus(60)),
            ..Caveat::default()
        })
        .unwrap()
}

fn document() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/KEY-FORMAT.md");
    std::fs::read_to_string(path).expect("docs/KEY-FORMAT.md exists")
}

/// The value after `label` on the first line of the document that starts with it.
fn labelled(doc: &str, label: &str) -> String {
    doc.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("docs/KEY-FORMAT.md has no line starting with {label:?}"))
        .trim()
        .to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_documented_tokens_are_what_the_code_produces() {
    let doc = document();
    let computed = [vector_1(), vector_2(), vector_3()];
    for (i, token) in computed.iter().enumerate() {
        let label = format!("token {}:", i + 1);
        assert_eq!(
            labelled(&doc, &label),
            token.to_string(),
            "vector {}",
            i + 1
        );
    }
}

#[test]
fn the_documented_bytes_of_vector_1_are_exact() {
    let doc = document();
    let text = vector_1().to_string();
    let claims_b64 = text.split('.').nth(1).unwrap();
    let claims = base64_decode(claims_b64);
    assert_eq!(labelled(&doc, "claims 1:"), hex(&claims));
    let tag = base64_decode(text.rsplit('.').next().unwrap());
    assert_eq!(labelled(&doc, "tag 1:"), hex(&tag));
    let caveat = base64_decode(vector_3().to_string().split('.').nth(2).unwrap());
    assert_eq!(labelled(&doc, "caveat 3:"), hex(&caveat));
}

#[test]
fn the_documented_tokens_verify_as_documented() {
    let verifier = Verifier::new(ring()).with_skew(0);
    let resource: Scope = "blob:photos/2024/jan/a.jpg".parse().unwrap();
    let access = Access {
        op: Op::Read,
        resource: &resource,
        now: JAN_1_2026.plus(30),
        client: Some("192.0.2.9".parse().unwrap()),
    };
    let doc = document();
    let v3 = labelled(&doc, "token 3:");
    let grant = verifier.authorize(&v3, &access).unwrap();
    assert_eq!(grant.valid_until, JAN_1_2026.plus(60));
    let write = Access {
        op: Op::Write,
        ..access
    };
    assert_eq!(
        verifier.authorize(&v3, &write).unwrap_err().code(),
        "op_not_allowed"
    );
    let v2 = labelled(&doc, "token 2:");
    assert!(verifier.authorize(&v2, &write).is_ok());
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64url") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[test]
#[ignore = "prints the vectors for pasting into docs/KEY-FORMAT.md"]
fn print_vectors() {
    for (i, t) in [vector_1(), vector_2(), vector_3()].iter().enumerate() {
        println!("token {}: {t}", i + 1);
    }
    let v1 = vector_1().to_string();
    println!(
        "claims 1: {}",
        hex(&base64_decode(v1.split('.').nth(1).unwrap()))
    );
    println!(
        "tag 1: {}",
        hex(&base64_decode(v1.rsplit('.').next().unwrap()))
    );
    println!(
        "caveat 3: {}",
        hex(&base64_decode(
            vector_3().to_string().split('.').nth(2).unwrap()
        ))
    );
    println!("secret: {}", hex(&secret()));
}
