//! Human forms of sizes, durations, times and address lists on the command line.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use ipnet::IpNet;

/// `10MiB`, `5 MB`, `1024`.
pub fn size(text: &str) -> Result<u64, String> {
    // The parser's own reasons ("invalid digit found in string") add nothing to an example.
    parse_size::parse_size(text).map_err(|_| format!("'{text}' is not a size like 10MiB or 5MB"))
}

/// `90s`, `10m`, `1h 30m`.
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| match e {
        // The one reason worth repeating; the others ("expected number at 0") name positions.
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!(
                "'{text}' is not a duration like 90s or 10m: '{unit}' is not a unit (s, m, h, d)"
            )
        }
        _ => format!("'{text}' is not a duration like 90s or 10m"),
    })
}

/// `192.0.2.0/24`, `2001:db8::/32`, or one address (`192.0.2.7`), refusing host bits so that
/// `10.0.0.1/8` is not silently read as the whole of `10.0.0.0/8`.
pub fn network(text: &str) -> anyhow::Result<IpNet> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    let net: IpNet = text
        .parse()
        .with_context(|| format!("'{text}' is not an address or CIDR block"))?;
    if net.trunc() != net {
        bail!("'{text}' has host bits set; did you mean {}?", net.trunc());
    }
    Ok(net)
}

/// Every network in a list of comma-separated lists (the flag may also be repeated).
pub fn networks(lists: &[String]) -> anyhow::Result<Vec<IpNet>> {
    lists
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(network)
        .collect()
}

/// A Unix time as RFC 3339, for JSON meant for people.
pub fn rfc3339(unix: u64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_take_human_forms() {
        assert_eq!(size("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(size("1kB"), Ok(1000));
        assert_eq!(size("42"), Ok(42));
        assert!(size("ten").is_err());
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(
            duration("soon"),
            Err("'soon' is not a duration like 90s or 10m".into())
        );
        assert_eq!(
            duration("10 mins").unwrap(),
            Duration::from_secs(600),
            "humantime's long units are fine"
        );
        assert_eq!(
            duration("10x"),
            Err("'10x' is not a duration like 90s or 10m: 'x' is not a unit (s, m, h, d)".into())
        );
        assert_eq!(
            size("lots"),
            Err("'lots' is not a size like 10MiB or 5MB".into())
        );
    }

    #[test]
    fn networks_refuse_host_bits() {
        assert_eq!(network("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(network("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(network("10.0.0.1/8").is_err());
        assert!(network("nonsense").is_err());
        let list = networks(&["10.0.0.0/8, ::1".into(), "192.0.2.1".into()]).unwrap();
        assert_eq!(list.len(), 3);
    }
}
