//! The address a request comes from, as the rate limits count it.

use std::net::IpAddr;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures::future::{Ready, ready};
use ipnet::IpNet;

use crate::error::Error;

/// The reverse proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|network| network.contains(&address))
    }
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the right-most
/// address in `X-Forwarded-For` that is not a trusted proxy. Entries left of that one were
/// written by the client and prove nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequest for ClientIp {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(peer) = req.peer_addr() else {
            return ready(Err(Error::Unexpected(anyhow::anyhow!(
                "the request has no peer address"
            ))));
        };
        let trusted = req
            .app_data::<web::Data<TrustedProxies>>()
            .map(|data| data.get_ref().clone())
            .unwrap_or_default();
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok());
        ready(Ok(ClientIp(client_address(peer.ip(), forwarded, &trusted))))
    }
}

/// [`ClientIp`] from the peer, the `X-Forwarded-For` header values in order, and the trusted
/// proxies.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|value| value.split(',')).collect();
    // Walking from the right, each address was written by the proxy to its right, which is
    // trusted so far: the first one that is not a trusted proxy is the client.
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(address) = parse_hop(hop) else {
            // A trusted proxy would not write this; stop at the last address we believe.
            break;
        };
        client = address;
        if !trusted.contains(address) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, perhaps with a port (`[v6]:port`, `v4:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// An IPv4 address mapped into IPv6 (a dual-stack socket's view of an IPv4 peer) as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::parse_networks;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(list: &str) -> TrustedProxies {
        TrustedProxies(parse_networks(list).unwrap())
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        let client = client_address(
            ip("203.0.113.9"),
            ["198.51.100.1"].into_iter(),
            &TrustedProxies::default(),
        );
        assert_eq!(client, ip("203.0.113.9"));
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_entry_is_the_client() {
        let proxies = trusted("10.0.0.0/8");
        // The client forged the first entry; the proxies appended the rest.
        let client = client_address(
            ip("10.0.0.5"),
            ["1.2.3.4, 203.0.113.9", "10.0.0.7"].into_iter(),
            &proxies,
        );
        assert_eq!(client, ip("203.0.113.9"));
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address_with_the_header() {
        let client = client_address(
            ip("203.0.113.9"),
            ["10.0.0.1"].into_iter(),
            &trusted("10.0.0.0/8"),
        );
        assert_eq!(client, ip("203.0.113.9"));
    }

    #[test]
    fn entries_with_ports_and_mapped_addresses_are_read_and_garbage_stops_the_walk() {
        let proxies = trusted("10.0.0.1");
        let with_port =
            client_address(ip("10.0.0.1"), ["[2001:db8::1]:4711"].into_iter(), &proxies);
        assert_eq!(with_port, ip("2001:db8::1"));
        let mapped = client_address(
            ip("::ffff:10.0.0.1"),
            ["203.0.113.9:80"].into_iter(),
            &proxies,
        );
        assert_eq!(mapped, ip("203.0.113.9"));
        let garbage = client_address(ip("10.0.0.1"), ["not-an-address"].into_iter(), &proxies);
        assert_eq!(garbage, ip("10.0.0.1"));
        let none = client_address(ip("10.0.0.1"), std::iter::empty(), &proxies);
        assert_eq!(none, ip("10.0.0.1"));
    }
}
