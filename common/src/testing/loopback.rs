//! The guard of the tools that send load or break things on purpose: only this machine.

use std::net::IpAddr;

use anyhow::{Context, bail};

/// Refuses `raw` (named `what` in the error) unless it is a URL whose host is this machine:
/// 127.0.0.0/8, `localhost` or `::1`.
pub fn require_loopback(what: &str, raw: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(raw).with_context(|| format!("{what}: not a URL"))?;
    let loopback = match parsed.host() {
        // Non-special schemes (postgres://, amqp://) leave even an IP address as a name.
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    if !loopback {
        bail!("{what} {raw} is not on loopback (127.0.0.0/8, localhost, ::1): refused");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        for ok in [
            "http://127.0.0.1:3002",
            "http://127.1.2.3",
            "http://localhost:1",
            "http://[::1]:80",
            "postgres://postgres@127.0.0.1:5432/x",
            "amqp://guest:guest@localhost:5672/%2f",
            "amqp://guest:guest@[::1]:5672/%2f",
        ] {
            assert!(require_loopback("t", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1",
            "http://example.com",
            "postgres://db:5432/x",
            "postgres://db.internal:5432/x",
            "amqp://10.0.0.5:5672/%2f",
            "nonsense",
        ] {
            assert!(require_loopback("t", bad).is_err(), "{bad}");
        }
    }
}
