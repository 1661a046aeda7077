//! Fetching documents from URLs that strangers name (client metadata documents, later federated
//! JWKS), without becoming a proxy into the private network: https only, public addresses only
//! (loopback over plain http only when configured, for tests), no redirects, bounded time and size.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("only https URLs may be fetched")]
    Scheme,
    #[error("the URL points at a private or local address")]
    Forbidden,
    #[error("request failed: {0}")]
    Http(String),
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the response is not valid JSON")]
    NotJson,
}

pub struct Fetcher {
    client: reqwest::Client,
    reach: Reach,
}

/// Which non-public addresses a fetch may reach.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reach {
    /// Loopback, over plain http too (tests, local development).
    pub loopback: bool,
    /// Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7), over https: an identity provider on an
    /// internal network. Link-local (cloud metadata) stays out of reach regardless.
    pub private: bool,
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            // Addresses that carry an IPv4 address are judged by it: mapped, compatible, NAT64, 6to4.
            let embedded = match s {
                [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _]
                    if !v6.is_loopback() && !v6.is_unspecified() =>
                {
                    Some((s[6], s[7]))
                }
                [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some((s[6], s[7])),
                [0x2002, hi, lo, ..] => Some((hi, lo)),
                _ => None,
            };
            if let Some((hi, lo)) = embedded {
                let v4 = std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
                return is_public(IpAddr::V4(v4));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

fn is_private_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn allowed(ip: IpAddr, reach: Reach) -> bool {
    is_public(ip) || (reach.loopback && ip.is_loopback()) || (reach.private && is_private_range(ip))
}

/// Resolves names, then drops every address the fetcher may not reach (defeats DNS pointing inward).
struct GuardedResolver {
    reach: Reach,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let reach = self.reach;
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let addrs: Vec<SocketAddr> = resolved.filter(|a| allowed(a.ip(), reach)).collect();
            if addrs.is_empty() {
                return Err(Box::new(FetchError::Forbidden) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl Fetcher {
    pub fn new(reach: Reach) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            // A proxy would resolve the host itself, past the guarded resolver.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .dns_resolver(Arc::new(GuardedResolver { reach }))
            .user_agent(concat!("agora/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, reach })
    }

    pub fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        let loopback_host = match url.host() {
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            Some(Host::Domain(d)) => d == "localhost",
            None => return Err(FetchError::Forbidden),
        };
        match url.scheme() {
            "https" => {}
            "http" if self.reach.loopback && loopback_host => {}
            _ => return Err(FetchError::Scheme),
        }
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        match literal {
            Some(ip) if !allowed(ip, self.reach) => Err(FetchError::Forbidden),
            _ => Ok(()),
        }
    }

    /// GETs `url` and parses its JSON body, reading at most `max_bytes`.
    pub async fn get_json(&self, url: &Url, max_bytes: usize) -> Result<serde_json::Value, FetchError> {
        self.check_url(url)?;
        let mut response = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Http(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(FetchError::Http(format!("status {}", response.status())));
        }
        if response.content_length().is_some_and(|len| len > max_bytes as u64) {
            return Err(FetchError::TooLarge(max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Http(e.without_url().to_string()))? {
            if body.len() + chunk.len() > max_bytes {
                return Err(FetchError::TooLarge(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| FetchError::NotJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        for private in [
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private} treated as public");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(is_public(public.parse().unwrap()), "{public} treated as private");
        }
    }

    #[test]
    fn url_rules() {
        let strict = Fetcher::new(Reach::default()).unwrap();
        let lenient = Fetcher::new(Reach { loopback: true, private: false }).unwrap();
        let internal = Fetcher::new(Reach { loopback: false, private: true }).unwrap();
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(strict.check_url(&url("https://example.com/x")).is_ok());
        assert!(strict.check_url(&url("http://example.com/x")).is_err());
        assert!(strict.check_url(&url("http://127.0.0.1:9/x")).is_err());
        assert!(strict.check_url(&url("https://10.0.0.1/x")).is_err());
        assert!(lenient.check_url(&url("http://127.0.0.1:9/x")).is_ok());
        assert!(lenient.check_url(&url("http://example.com/x")).is_err());
        assert!(lenient.check_url(&url("https://192.168.0.1/x")).is_err());
        assert!(internal.check_url(&url("https://10.1.2.3/jwks")).is_ok());
        assert!(internal.check_url(&url("http://10.1.2.3/jwks")).is_err(), "private still needs https");
        assert!(internal.check_url(&url("https://169.254.169.254/latest")).is_err(), "metadata stays unreachable");
        assert!(internal.check_url(&url("https://127.0.0.1/x")).is_err());
    }
}
