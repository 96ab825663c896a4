//! Where the runner may connect to on a task's behalf (issue 14, items 1 and 2).
//!
//! - Sources (`source_url`, studio tracks, dressing images and credits): every URL, the first
//!   and each redirect hop, is checked for scheme, `SOURCE_ALLOWED_HOSTS` and, for an address
//!   literal, its range; a host name is resolved by [`GuardedResolver`], which drops the
//!   addresses of refused ranges *at connect time*, so a name that resolves to a public address
//!   when checked and to a private one when connected (DNS rebinding) still reaches nothing.
//!   Loopback, link-local, private, shared (CGNAT), unspecified, broadcast and multicast ranges
//!   are refused unless `SOURCE_ALLOW_PRIVATE_NETWORKS=1`.
//! - Completion callbacks go only to the configured Manager origins ([`CallbackOrigins`]), and no
//!   redirect is followed (the token never leaves for another host).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is refused as a source: the `reason` label of the refusal.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_v4(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link_local")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private_network")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if is_ipv4_compatible(v6) || is_nat64(v6) {
                // ::a.b.c.d (deprecated IPv4-compatible form) and 64:ff9b::a.b.c.d (NAT64, which
                // a NAT64 gateway forwards to a.b.c.d): judged as the IPv4 address.
                let [.., a, b] = v6.segments();
                refused_v4(Ipv4Addr::from((u32::from(a) << 16) | u32::from(b)))
            } else if first == 0x2002 {
                // 2002:AABB:CCDD::/48, 6to4: the relay delivers to AA.BB.CC.DD.
                let [_, a, b, ..] = v6.segments();
                refused_v4(Ipv4Addr::from((u32::from(a) << 16) | u32::from(b)))
            } else {
                None
            }
        }
    }
}

fn is_ipv4_compatible(v6: Ipv6Addr) -> bool {
    v6.segments()[..6].iter().all(|s| *s == 0)
}

/// The NAT64 well-known prefix, 64:ff9b::/96.
fn is_nat64(v6: Ipv6Addr) -> bool {
    v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
}

fn refused_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if v4.is_link_local() {
        Some("link_local")
    } else if v4.is_private() {
        Some("private_network")
    } else if a == 100 && (64..128).contains(&b) {
        // 100.64.0.0/10, carrier-grade NAT: a provider's internal network.
        Some("private_network")
    } else if v4.is_broadcast() {
        Some("broadcast")
    } else if v4.is_multicast() || a >= 240 {
        Some("multicast")
    } else {
        None
    }
}

/// A source URL that may not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url}: {message} (reason: {reason})")]
pub struct Refused {
    /// The URL (or redirect hop) refused.
    pub url: String,
    /// The `reason` label: `scheme`, `host_not_allowed`, `loopback`, `link_local`,
    /// `private_network`, ...
    pub reason: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

/// The rules every source URL and redirect hop obeys. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SourcePolicy {
    /// `SOURCE_ALLOWED_HOSTS` (lower case); empty allows every host.
    pub allowed_hosts: Arc<Vec<String>>,
    /// `SOURCE_ALLOW_PRIVATE_NETWORKS`.
    pub allow_private: bool,
}

impl SourcePolicy {
    /// Checks the scheme, the host allow-list and, for an address literal, its range. (A host
    /// name's addresses are checked when it is resolved, by [`GuardedResolver`].)
    pub fn check(&self, url: &reqwest::Url) -> Result<(), Refused> {
        let refused = |reason, message: String| Refused {
            url: url.to_string(),
            reason,
            message,
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refused(
                "scheme",
                "only http and https sources are accepted".to_owned(),
            ));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if !self.allowed_hosts.is_empty() && !self.allowed_hosts.contains(&host) {
            return Err(refused(
                "host_not_allowed",
                format!("host {host:?} is not in SOURCE_ALLOWED_HOSTS"),
            ));
        }
        // The URL parser normalises address literals (`2130706433`, `0x7f.1`): `host_str` is
        // `127.0.0.1` or `[::1]`. reqwest connects to a literal without resolving it.
        let literal = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<IpAddr>().ok());
        if let Some(ip) = literal {
            if let Some(reason) = self.refuse_ip(ip) {
                return Err(refused(reason, private_message(ip)));
            }
        }
        Ok(())
    }

    /// The reason `ip` is refused, unless private networks are allowed.
    pub fn refuse_ip(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow_private {
            None
        } else {
            refused_range(ip)
        }
    }

    /// The redirect policy of source downloads: at most 5 hops, each checked like the first.
    pub fn redirect_policy(&self) -> reqwest::redirect::Policy {
        let policy = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                let error = Refused {
                    url: attempt.url().to_string(),
                    reason: "too_many_redirects",
                    message: "more than 5 redirects".to_owned(),
                };
                return attempt.error(error);
            }
            match policy.check(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(mut refused) => {
                    refused.message = format!("redirect refused: {}", refused.message);
                    attempt.error(refused)
                }
            }
        })
    }
}

fn private_message(ip: IpAddr) -> String {
    format!(
        "address {ip} is in a loopback, link-local or private range; \
         set SOURCE_ALLOW_PRIVATE_NETWORKS=1 to fetch sources from such networks"
    )
}

/// A DNS resolver that drops the addresses of refused ranges: what is connected to is what was
/// checked (no DNS rebinding). A name with only refused addresses fails to resolve, naming why.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: SourcePolicy,
}

impl GuardedResolver {
    /// A resolver applying `policy`.
    pub fn new(policy: SourcePolicy) -> Self {
        GuardedResolver { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let kept: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.refuse_ip(addr.ip()) {
                    Some(reason) => {
                        refused.get_or_insert((addr.ip(), reason));
                        false
                    }
                    None => true,
                })
                .collect();
            if kept.is_empty() {
                if let Some((ip, reason)) = refused {
                    tracing::warn!(%host, %ip, reason, "source host resolves to a refused address");
                    let error: Box<dyn std::error::Error + Send + Sync> = Box::new(Refused {
                        url: host.clone(),
                        reason,
                        message: format!("host {host:?} resolves to {}", private_message(ip)),
                    });
                    return Err(error);
                }
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// The reason label and message of a refusal somewhere in `error`'s source chain, if any.
pub fn find_refusal<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Refused> {
    let mut current: Option<&'e (dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = error.source();
    }
    None
}

/// `error` and its sources, joined by ": " (reqwest's own message omits the cause).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        current = cause.source();
    }
    text
}

/// The origins completion callbacks may go to (`MANAGER_CALLBACK_ORIGINS`, by default the
/// origin of `MANAGER_URL`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackOrigins(Vec<String>);

impl CallbackOrigins {
    /// `configured` (comma-separated origins), or `manager_url`'s origin when it is empty.
    pub fn new(configured: &[String], manager_url: &str) -> Result<Self, String> {
        let listed: Vec<&str> = configured
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        let sources: Vec<&str> = if listed.is_empty() {
            vec![manager_url]
        } else {
            listed
        };
        let mut origins = Vec::new();
        for text in sources {
            let url = reqwest::Url::parse(text)
                .map_err(|e| format!("MANAGER_CALLBACK_ORIGINS: `{text}` is not a URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!(
                    "MANAGER_CALLBACK_ORIGINS: `{text}` must be an http(s) origin"
                ));
            }
            origins.push(url.origin().ascii_serialization());
        }
        Ok(CallbackOrigins(origins))
    }

    /// `Ok` when `url` is at one of the origins; else why not (for the task's refusal).
    pub fn check(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| format!("completion_callback {url:?} is not a URL: {e}"))?;
        let origin = parsed.origin().ascii_serialization();
        if self.0.contains(&origin) {
            Ok(())
        } else {
            Err(format!(
                "completion_callback {url:?} is not at the Manager's origin (allowed: {}; \
                 MANAGER_CALLBACK_ORIGINS lists more) (reason: callback_origin)",
                self.0.join(", ")
            ))
        }
    }

    /// The allowed origins.
    pub fn origins(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_ranges() {
        for (ip, reason) in [
            ("127.0.0.1", Some("loopback")),
            ("127.9.9.9", Some("loopback")),
            ("169.254.169.254", Some("link_local")),
            ("10.1.2.3", Some("private_network")),
            ("172.16.0.1", Some("private_network")),
            ("192.168.1.1", Some("private_network")),
            ("100.64.0.1", Some("private_network")),
            ("0.0.0.0", Some("unspecified")),
            ("255.255.255.255", Some("broadcast")),
            ("224.0.0.1", Some("multicast")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("link_local")),
            ("::127.0.0.1", Some("loopback")),
            ("fe80::1", Some("link_local")),
            ("fd00::1", Some("private_network")),
            ("64:ff9b::a9fe:a9fe", Some("link_local")),
            ("64:ff9b::5db8:d822", None),
            ("2002:7f00:1::", Some("loopback")),
            ("2002:0a00:0001::1", Some("private_network")),
            ("93.184.216.34", None),
            ("2606:4700::1111", None),
            ("172.32.0.1", None),
        ] {
            let parsed: IpAddr = ip.parse().expect("ip");
            assert_eq!(refused_range(parsed), reason, "{ip}");
        }
    }

    #[test]
    fn literal_hosts_and_redirect_hops_are_checked() {
        let strict = SourcePolicy::default();
        let url = |u: &str| reqwest::Url::parse(u).expect("url");
        assert_eq!(
            strict
                .check(&url("http://169.254.169.254/latest/a.mp4"))
                .expect_err("refused")
                .reason,
            "link_local"
        );
        assert_eq!(
            strict
                .check(&url("http://[::ffff:7f00:1]:8080/a.mp4"))
                .expect_err("refused")
                .reason,
            "loopback"
        );
        assert!(strict.check(&url("http://media.example.org/a.mp4")).is_ok());
        assert_eq!(
            strict
                .check(&url("file:///etc/passwd"))
                .expect_err("refused")
                .reason,
            "scheme"
        );
        let open = SourcePolicy {
            allow_private: true,
            allowed_hosts: Arc::new(vec!["127.0.0.1".to_owned()]),
        };
        assert!(open.check(&url("http://127.0.0.1:9/a.mp4")).is_ok());
        assert_eq!(
            open.check(&url("http://localhost:9/a.mp4"))
                .expect_err("refused")
                .reason,
            "host_not_allowed"
        );
    }

    #[test]
    fn callback_origins() {
        let origins = CallbackOrigins::new(&[], "http://127.0.0.1:8000/").expect("origins");
        assert!(origins
            .check("http://127.0.0.1:8000/task/completion")
            .is_ok());
        assert!(origins
            .check("http://127.0.0.1:8001/task/completion")
            .is_err());
        assert!(origins
            .check("http://127.0.0.1:8000@evil.example/task/completion")
            .is_err());
        assert!(origins.check("https://127.0.0.1:8000/x").is_err());
        let listed = CallbackOrigins::new(
            &["https://manager.example.org".to_owned(), " ".to_owned()],
            "http://ignored:1",
        )
        .expect("origins");
        assert!(listed
            .check("https://manager.example.org:443/task/completion")
            .is_ok());
        assert!(listed.check("http://ignored:1/task/completion").is_err());
        assert!(CallbackOrigins::new(&["ftp://x".to_owned()], "").is_err());
    }
}
