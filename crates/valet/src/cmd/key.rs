//! `valet key …`: keyrings, issuing, inspecting, narrowing and checking keys offline; issuing,
//! looking up and revoking them on a running gate with `--gate` (in `remote`).

mod remote;

use std::io::Read;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use rand_core::OsRng;
use serde_json::json;
use valet_key::{
    Access, Caveat, Claims, FileName, KeyId, Limits, MediaRange, Name, Op, Ops, Scope, Token,
    UnixTime, Verifier,
};
use valet_keyring as keyring_file;
use valet_ledger::{Ledger, OpenOptions};

use crate::cli::{AttenuateArgs, IssueArgs, KeyCommand, LimitArgs, RevokeArgs, VerifyArgs};
use crate::exit;
use crate::human;

pub fn run(cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::NewKeyring { out } => {
            if let Some(folder) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(folder)
                    .with_context(|| format!("creating the folder {}", folder.display()))?;
            }
            let ring = keyring_file::create(&out)?;
            let id = ring.active()?.id();
            eprintln!("created {} with active signing key {id}", out.display());
        }
        KeyCommand::Rotate { keyring } => {
            let (_, id) = keyring_file::rotate(&keyring)?;
            eprintln!("{id} is now the active signing key; older keys verify only");
        }
        KeyCommand::Stage { keyring } => {
            let (_, id) = keyring_file::stage(&keyring)?;
            eprintln!(
                "staged {id}: it verifies but does not sign; once every node has this file, \
                 promote it: valet key promote --keyring {} {id}",
                keyring.display()
            );
        }
        KeyCommand::Promote { keyring, id } => match keyring_file::promote(&keyring, &id)? {
            (_, Some(previous)) => {
                eprintln!("{id} is now the active signing key; {previous} verifies only")
            }
            (_, None) => eprintln!("{id} is the active signing key"),
        },
        KeyCommand::Retire { keyring, id } => {
            keyring_file::retire(&keyring, &id)?;
            eprintln!("retired {id}: keys it signed no longer verify");
        }
        KeyCommand::List { keyring } => list(&keyring)?,
        KeyCommand::Issue(args) if args.remote.gate.is_some() => return remote::issue(args),
        KeyCommand::Issue(args) => issue(args)?,
        KeyCommand::Inspect { token } => inspect(&read_token(token)?)?,
        KeyCommand::Attenuate(args) => attenuate(args)?,
        KeyCommand::Verify(args) => return verify(args),
        KeyCommand::Revoke(args) if args.remote.gate.is_some() => return remote::revoke(args),
        KeyCommand::Revoke(args) => revoke(args)?,
        KeyCommand::Status { key, remote, .. } if remote.gate.is_some() => {
            return remote::status(&remote, &key)
        }
        KeyCommand::Status {
            data, key, ledger, ..
        } => status(&data, ledger.as_deref(), &key)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A token's text from the argument, or from stdin when it is `-` (keeps it out of `ps`).
fn token_text(arg: String) -> anyhow::Result<String> {
    if arg != "-" {
        return Ok(arg);
    }
    let mut buf = String::new();
    std::io::stdin().read_to_string(&mut buf)?;
    Ok(buf.trim().to_owned())
}

fn read_token(arg: String) -> anyhow::Result<Token> {
    token_text(arg)?.parse().context("not a valet key")
}

fn list(path: &std::path::Path) -> anyhow::Result<()> {
    let ring = keyring_file::load(path)?;
    let keys: Vec<_> = ring
        .keys()
        .iter()
        .map(|k| {
            let active = ring.is_active(k.id());
            json!({
                "id": k.id(),
                "active": active,
                "state": if active { "active" } else { "verify-only" },
                "fingerprint": k.fingerprint(),
                "created_at": human::rfc3339(k.created().0),
            })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&keys)?);
    Ok(())
}

fn scope(text: &str) -> anyhow::Result<Scope> {
    // Escaped: a control character in the text is the usual reason it was refused, and it
    // must not reach the terminal as itself.
    text.parse()
        .with_context(|| format!("'{}' is not a resource", text.escape_debug()))
}

fn ops(text: &str) -> anyhow::Result<Ops> {
    text.parse().map_err(|e| anyhow!("--ops: {e}"))
}

fn media_range(text: Option<&String>) -> anyhow::Result<Option<MediaRange>> {
    text.map(|t| t.parse().with_context(|| format!("--content-type '{t}'")))
        .transpose()
}

/// The lifetime of a key issued offline when `--ttl` is not given.
const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(600);

fn issue(args: IssueArgs) -> anyhow::Result<()> {
    let keyring = args
        .keyring
        .as_deref()
        .ok_or_else(|| anyhow!("give --keyring FILE (or --gate URL)"))?;
    let ring = keyring_file::load(keyring)?;
    let ttl = args.ttl.unwrap_or(DEFAULT_TTL);
    let now = keyring_file::now();
    let (scope, ops) = (scope(&args.resource)?, ops(&args.ops)?);
    scope.check_ops(ops).map_err(|e| anyhow!("--ops: {e}"))?;
    let claims = Claims {
        key_id: KeyId::random(&mut OsRng),
        subject: args.subject,
        scope,
        ops,
        not_before: now,
        expires: now.plus(ttl.as_secs().max(1)),
        limits: Limits {
            max_bytes: args.limits.max_bytes,
            max_uses: args.limits.max_uses,
            content_type: media_range(args.limits.content_type.as_ref())?,
            client_ips: human::networks(&args.limits.ips)?,
            filename: args
                .filename
                .map(|f| FileName::parse(&f).with_context(|| format!("--filename '{f}'")))
                .transpose()?,
            event_target: args
                .event_target
                .map(|t| Name::parse(&t).with_context(|| format!("--event-target '{t}'")))
                .transpose()?,
        },
    };
    let key_id = claims.key_id;
    let expires = claims.expires;
    let token = ring.issue(claims)?;
    if args.json {
        let out = json!({
            "id": key_id.to_string(),
            "token": token.to_string(),
            "expires_at": human::rfc3339(expires.0),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{token}");
    }
    Ok(())
}

fn inspect(token: &Token) -> anyhow::Result<()> {
    let (not_before, expires) = token.effective_window();
    let limits = token.effective_limits();
    let out = json!({
        "version": 1,
        "signing_key": token.signing_key(),
        "claims": token.claims(),
        "caveats": token.caveats(),
        "effective": {
            "ops": token.effective_ops(),
            "not_before": human::rfc3339(not_before.0),
            "expires_at": human::rfc3339(expires.0),
            "max_bytes": limits.max_bytes,
            "max_uses": limits.max_uses,
            "content_types": limits.content_types,
        },
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn caveat_limits(limits: &LimitArgs, caveat: &mut Caveat) -> anyhow::Result<()> {
    caveat.max_bytes = limits.max_bytes;
    caveat.max_uses = limits.max_uses;
    caveat.content_type = media_range(limits.content_type.as_ref())?;
    caveat.client_ips = human::networks(&limits.ips)?;
    Ok(())
}

fn attenuate(args: AttenuateArgs) -> anyhow::Result<()> {
    let token = read_token(args.token)?;
    let now = keyring_file::now();
    let mut caveat = Caveat {
        scope: args.resource.as_deref().map(scope).transpose()?,
        ops: args.ops.as_deref().map(ops).transpose()?,
        expires: args.ttl.map(|d| now.plus(d.as_secs().max(1))),
        not_before: args.start_in.map(|d| now.plus(d.as_secs())),
        ..Caveat::default()
    };
    caveat_limits(&args.limits, &mut caveat)?;
    let narrowed = token.attenuate(caveat).context("cannot attenuate")?;
    println!("{narrowed}");
    Ok(())
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let ring = keyring_file::load(&args.keyring)?;
    let op: Op = args.op.parse().map_err(|e| anyhow!("--op: {e}"))?;
    let resource = scope(&args.resource)?;
    let token_text = token_text(args.token)?;
    let verifier = Verifier::new(ring).with_skew(args.skew.as_secs());
    let access = Access {
        op,
        resource: &resource,
        now: keyring_file::now(),
        client: args.ip,
    };
    match verifier.authorize(&token_text, &access) {
        Ok(grant) => {
            println!("{}", serde_json::to_string_pretty(&grant)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(denial) => {
            println!("{}", denial.code());
            eprintln!("valet: denied: {denial}");
            Ok(ExitCode::from(exit::DENIED))
        }
    }
}

/// The ledger given by `--ledger`, or the SQLite file in the data folder `data`.
fn ledger(
    data: &std::path::Path,
    ledger: Option<&str>,
) -> anyhow::Result<std::sync::Arc<dyn Ledger>> {
    let location = crate::settings::ledger_location(ledger, data);
    match valet_ledger::Backend::of(&location) {
        valet_ledger::Backend::Sqlite(path) => {
            if !path.exists() {
                anyhow::bail!(
                    "no ledger at {} (is --data the store's data folder?)",
                    path.display()
                );
            }
            valet_ledger::open(&location, &OpenOptions::default())
                .with_context(|| format!("opening {}", path.display()))
        }
        valet_ledger::Backend::Postgres(_) => {
            valet_ledger::open(&location, &OpenOptions::default()).context("opening the ledger")
        }
    }
}

/// A key id from its hex form, or from a token (whose expiry then bounds the record).
fn key_reference(text: &str) -> anyhow::Result<(KeyId, Option<UnixTime>)> {
    if let Some(id) = KeyId::parse_hex(text) {
        return Ok((id, None));
    }
    let token: Token = text
        .parse()
        .map_err(|_| anyhow!("'{text}' is neither a key id (32 hex digits) nor a valet key"))?;
    Ok((token.claims().key_id, Some(token.claims().expires)))
}

fn time_arg(text: &str) -> anyhow::Result<UnixTime> {
    if text.eq_ignore_ascii_case("now") {
        // Keys issued in the current second are revoked too, as through the gate's API; the
        // command then waits for that second to end (`until_reached`).
        return Ok(keyring_file::now().plus(1));
    }
    let time = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("'{text}' is not a time like 2026-11-27T12:00:00Z or 'now'"))?;
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(UnixTime(secs))
}

/// Returns once the clock has reached `before`, if that is at most a second away. Key times
/// are whole seconds, so `--before now` covers the rest of the current second, and a key
/// issued later in it would be born revoked: the command exits only once that second is over,
/// so that every key issued after it works, as the gate's `POST /v1/revocations` answers. (A
/// time further ahead, which only this offline command accepts, is not waited for.)
fn until_reached(before: UnixTime) {
    if before > keyring_file::now().plus(1) {
        return;
    }
    let target = std::time::UNIX_EPOCH + std::time::Duration::from_secs(before.0);
    while let Ok(left) = target.duration_since(std::time::SystemTime::now()) {
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left);
    }
}

fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let ledger = ledger(&args.data, args.ledger.as_deref())?;
    let now = keyring_file::now();
    match (args.key, args.subject, args.before) {
        (Some(key), None, None) => {
            let (id, expires) = key_reference(&key)?;
            let fresh = ledger.revoke_key(id, expires, now)?;
            eprintln!(
                "{} {id}",
                if fresh { "revoked" } else { "already revoked:" }
            );
        }
        (None, Some(subject), Some(before)) => {
            let before = time_arg(&before)?;
            ledger.revoke_subject(&subject, before, now)?;
            until_reached(before);
            eprintln!(
                "revoked every key of {subject:?} issued before {}",
                human::rfc3339(before.0)
            );
        }
        (None, None, Some(before)) => {
            let before = time_arg(&before)?;
            ledger.revoke_all_before(before, now)?;
            until_reached(before);
            eprintln!(
                "revoked every key issued before {}",
                human::rfc3339(before.0)
            );
        }
        _ => anyhow::bail!("give a key, or --subject S --before T, or --before T"),
    }
    Ok(())
}

fn status(data: &std::path::Path, ledger_at: Option<&str>, key: &str) -> anyhow::Result<()> {
    let (id, _) = key_reference(key)?;
    let status = ledger(data, ledger_at)?.status(id)?;
    let out = json!({"id": id.to_string(), "uses": status.uses, "revoked": status.revoked});
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
