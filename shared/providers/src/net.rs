//! Where a mail server given by a user may be: the SSRF guard of the IMAP and SMTP
//! clients. An admin (through the API, which may run inside a VPC) names a host; unless
//! the workspace allows private hosts, every address it resolves to must be public, so
//! the API cannot be made to probe or log in to the network it runs in. The check is on
//! the resolved addresses, and the connection goes to one of those very addresses (no
//! second lookup a DNS answer could change in between).

use std::net::{IpAddr, SocketAddr};

/// Whether `ip` is loopback, link-local, private (RFC 1918, RFC 4193), shared (CGNAT),
/// unspecified, multicast or otherwise not a public unicast address.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)
        }
    }
}

/// The addresses `host:port` resolves to that may be connected: all of them when
/// `allow_private`, else the public ones, refusing when none is.
pub async fn resolve(host: &str, port: u16, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if all.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    if allow_private {
        return Ok(all);
    }
    let public: Vec<SocketAddr> = all.iter().copied().filter(|a| !is_private(a.ip())).collect();
    if public.is_empty() {
        return Err(format!(
            "{host} is a loopback, link-local or private address ({}): refused; a workspace that runs its own mail server on a private network allows it with `[security] allow_private_mail_hosts = true`",
            all[0].ip()
        ));
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for p in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_private(p.parse().unwrap()), "{p}");
        }
        for p in ["8.8.8.8", "142.250.1.1", "2a00:1450:4001::1"] {
            assert!(!is_private(p.parse().unwrap()), "{p}");
        }
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed() {
        assert!(resolve("127.0.0.1", 993, false).await.unwrap_err().contains("refused"));
        assert!(resolve("localhost", 993, false).await.is_err());
        assert_eq!(resolve("127.0.0.1", 993, true).await.unwrap(), vec!["127.0.0.1:993".parse().unwrap()]);
    }
}
