//! Where webhooks may go (SSRF protection). A tenant admin chooses the URL, so without a
//! guard Chronicle would be a proxy into its own network: the metadata service at
//! 169.254.169.254, Postgres on loopback, anything on 10.0.0.0/8.
//!
//! The check is on the **addresses actually connected to**, after DNS resolution: the
//! HTTP client resolves every host through [`GuardedResolver`], which drops refused
//! addresses (a name resolving only to refused ones fails), so a hostname that resolves
//! to loopback — or starts to after it was registered (DNS rebinding) — is refused at
//! connect time. IP-literal hosts never reach a resolver; [`check_url`] refuses them
//! before any request. Redirects are not followed and no proxy is used (either would
//! connect somewhere unchecked).
//!
//! Refused unless an allowlisted network (`WEBHOOK_ALLOW_NETWORKS`) contains the address:
//! the unspecified, loopback, private (RFC 1918, unique local), shared (CGNAT),
//! link-local, multicast, broadcast, documentation, benchmarking and reserved ranges, and
//! IPv6 forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4),
//! which are judged by the embedded address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Networks a webhook may never reach unless allowlisted.
const REFUSED: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// The address policy: refused ranges, minus what configuration allows.
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    refused: Vec<IpNet>,
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// `allowed`: networks that may be reached although refused by default (tests and
    /// deployments whose receivers live on a private network).
    pub fn new(allowed: Vec<IpNet>) -> Self {
        let refused = REFUSED
            .iter()
            .map(|n| n.parse().expect("the refused networks are valid"))
            .collect();
        Self { refused, allowed }
    }

    /// Whether a webhook may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allowed.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        // An IPv6 address that carries an IPv4 one is as good as that address.
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = embedded_v4(v6)
        {
            return self.permits(IpAddr::V4(v4));
        }
        !self.refused.iter().any(|n| n.contains(&ip))
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:AABB:CCDD::`) address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // `::` and `::1` are judged as themselves.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// Why a URL cannot be a webhook target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("the URL is not valid")]
    Invalid,
    #[error("the URL must be http or https")]
    Scheme,
    #[error("the URL must not carry credentials")]
    Credentials,
    #[error("the URL's address is not allowed (loopback, private, link-local …)")]
    Address,
    #[error("the URL's host does not resolve")]
    Unresolvable,
}

/// Parses and checks a webhook URL without resolving it: http(s), a host, no userinfo,
/// and an IP-literal host only if the policy permits it.
pub fn check_url(policy: &AddressPolicy, raw: &str) -> Result<url::Url, UrlRefused> {
    let url = url::Url::parse(raw).map_err(|_| UrlRefused::Invalid)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlRefused::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefused::Credentials);
    }
    match url.host() {
        None => Err(UrlRefused::Invalid),
        Some(url::Host::Ipv4(ip)) if !policy.permits(IpAddr::V4(ip)) => Err(UrlRefused::Address),
        Some(url::Host::Ipv6(ip)) if !policy.permits(IpAddr::V6(ip)) => Err(UrlRefused::Address),
        Some(_) => Ok(url),
    }
}

/// [`check_url`], then resolves a host name and refuses it unless every address it
/// resolves to is permitted (registration: a name that points anywhere refused is
/// refused, even if it also has public addresses).
pub async fn check_url_resolved(policy: &AddressPolicy, raw: &str) -> Result<url::Url, UrlRefused> {
    let url = check_url(policy, raw)?;
    if let Some(url::Host::Domain(host)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| UrlRefused::Unresolvable)?
            .collect();
        if addrs.is_empty() {
            return Err(UrlRefused::Unresolvable);
        }
        if addrs.iter().any(|a| !policy.permits(a.ip())) {
            return Err(UrlRefused::Address);
        }
    }
    Ok(url)
}

/// The HTTP client's resolver: the system's answer with refused addresses removed.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> =
                all.into_iter().filter(|a| policy.permits(a.ip())).collect();
            if permitted.is_empty() {
                return Err(format!("{host}: no permitted address (SSRF guard)").into());
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client webhooks are sent with: guarded resolution, no redirects, no proxy, the
/// given timeouts.
pub fn client(
    policy: Arc<AddressPolicy>,
    timeout: std::time::Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(GuardedResolver::new(policy))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
        .timeout(timeout)
        .user_agent(concat!("Chronicle-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_permitted() {
        let p = AddressPolicy::new(vec![]);
        for refused in [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(!p.permits(ip(refused)), "{refused} permitted");
        }
        for permitted in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(p.permits(ip(permitted)), "{permitted} refused");
        }
    }

    #[test]
    fn the_allowlist_opens_exactly_its_networks() {
        let p = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(p.permits(ip("127.0.0.1")));
        assert!(
            p.permits(ip("::ffff:127.0.0.1")),
            "mapped form of an allowed address"
        );
        assert!(!p.permits(ip("10.0.0.1")));
        assert!(!p.permits(ip("::1")));
    }

    #[test]
    fn urls_are_checked_before_any_request() {
        let p = AddressPolicy::new(vec![]);
        assert_eq!(
            check_url(&p, "http://127.0.0.1:9/x"),
            Err(UrlRefused::Address)
        );
        assert_eq!(check_url(&p, "http://10.0.0.1/"), Err(UrlRefused::Address));
        assert_eq!(check_url(&p, "http://[::1]/"), Err(UrlRefused::Address));
        assert_eq!(
            check_url(&p, "http://[::ffff:7f00:1]/"),
            Err(UrlRefused::Address)
        );
        // Decimal and short forms are parsed as the address they are.
        assert_eq!(
            check_url(&p, "http://2130706433/"),
            Err(UrlRefused::Address)
        );
        assert_eq!(check_url(&p, "http://127.1/"), Err(UrlRefused::Address));
        assert_eq!(check_url(&p, "ftp://example.com/"), Err(UrlRefused::Scheme));
        assert_eq!(
            check_url(&p, "https://u:p@example.com/"),
            Err(UrlRefused::Credentials)
        );
        assert_eq!(check_url(&p, "not a url"), Err(UrlRefused::Invalid));
        assert!(check_url(&p, "https://example.com/hook").is_ok());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_after_resolution() {
        let p = AddressPolicy::new(vec![]);
        assert_eq!(
            check_url_resolved(&p, "http://localhost:9/hook").await,
            Err(UrlRefused::Address)
        );
        let open = AddressPolicy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        assert!(
            check_url_resolved(&open, "http://localhost:9/hook")
                .await
                .is_ok()
        );
    }
}
