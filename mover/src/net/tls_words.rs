//! TLS failures in words: what rustls reports (an unknown issuer, a name mismatch, an alert from the
//! peer) said as what is wrong with which certificate and which flag fixes it, never as rustls' `Debug`
//! names (`Other(OtherError(CaUsedAsEndEntity))`).

use rustls::pki_types::UnixTime;
use rustls::{AlertDescription, CertificateError, Error};
use std::path::Path;

/// Whose certificate this side checks, against what.
#[derive(Clone, Copy, Debug)]
pub enum Checking<'a> {
    /// A client checking the daemon's certificate against `--ca`, for the URL's `host`.
    Daemon {
        /// The `--ca` file.
        ca: &'a Path,
        /// The host the certificate must name.
        host: &'a str,
    },
    /// The daemon checking client certificates against `--client-ca` (`None`: it takes none).
    Client {
        /// The `--client-ca` file.
        client_ca: Option<&'a Path>,
    },
}

/// Marks a refusal of this client's certificate (or of its lack of one), for the caller that classifies
/// failures: part of every such text.
pub const CLIENT_CERT_REFUSED: &str = "does not accept this client certificate";
/// Marks a daemon that requires a client certificate the client did not present.
pub const CLIENT_CERT_REQUIRED: &str = "requires a client certificate (--cert and --key)";

/// `e` in words for a failed handshake, or `None` for an error that is not about certificates or alerts
/// (the caller keeps its own explanation).
pub fn handshake_in_words(e: &Error, checking: Checking) -> Option<String> {
    match (e, checking) {
        (Error::InvalidCertificate(c), Checking::Daemon { ca, host }) => Some(daemon_certificate(c, ca, host)),
        (Error::InvalidCertificate(c), Checking::Client { client_ca }) => Some(client_certificate(c, client_ca)),
        (Error::NoCertificatesPresented, Checking::Client { .. }) => Some(
            "the client presented no certificate, and this daemon requires one (--client-ca without --tokens)".into(),
        ),
        (Error::AlertReceived(a), Checking::Daemon { .. }) => Some(alert_from_daemon(*a)),
        (Error::AlertReceived(a), Checking::Client { .. }) => Some(alert_from_client(*a)),
        (Error::PeerIncompatible(_), _) => Some(
            "the peer cannot speak TLS 1.3 with a common cipher suite and key exchange (mover needs TLS 1.3)".into(),
        ),
        _ => None,
    }
}

/// `e` in words for a TLS failure after the handshake (TLS 1.3 sends a refusal of the client's certificate
/// after the client considers the handshake done); `client` says which side we are.
pub fn after_handshake_in_words(e: &Error, client: bool) -> String {
    match (e, client) {
        (Error::AlertReceived(a), true) => alert_from_daemon(*a),
        (Error::AlertReceived(a), false) => alert_from_client(*a),
        _ => e.to_string(),
    }
}

fn daemon_certificate(c: &CertificateError, ca: &Path, host: &str) -> String {
    let ca = ca.display();
    match c {
        CertificateError::UnknownIssuer => format!(
            "the daemon's certificate is not signed by --ca '{ca}' (it is not trusted): pass the CA that issued it, \
             or the daemon's own certificate to pin it"
        ),
        CertificateError::NotValidForNameContext { presented, .. } if presented.is_empty() => {
            format!("the daemon's certificate names no host, not {host}: it needs a subjectAltName for {host}")
        }
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "the daemon's certificate is for {}, not {host}: connect by one of those names, or give the daemon a \
             certificate that names {host}",
            presented.iter().map(|n| presented_name(n)).collect::<Vec<_>>().join(", ")
        ),
        CertificateError::NotValidForName => format!("the daemon's certificate does not name {host}"),
        other => match shared(other) {
            Some(why) => format!("the daemon's certificate {why}"),
            None if ca_as_end_entity(other) => format!(
                "the daemon's certificate is not signed by --ca '{ca}': it is a self-signed CA certificate; to \
                 trust exactly it, pass that certificate itself as --ca"
            ),
            None => format!("the daemon's certificate is not accepted by --ca '{ca}' ({})", kind_in_words(other)),
        },
    }
}

fn client_certificate(c: &CertificateError, client_ca: Option<&Path>) -> String {
    let ca = client_ca.map_or_else(|| "--client-ca".to_string(), |p| format!("--client-ca '{}'", p.display()));
    match c {
        CertificateError::UnknownIssuer => format!("the client's certificate is not signed by {ca}"),
        other => match shared(other) {
            Some(why) => format!("the client's certificate {why}"),
            None if ca_as_end_entity(other) => {
                format!("the client's certificate is a self-signed CA certificate, not one signed by {ca}")
            }
            None => format!("the client's certificate is not accepted by {ca} ({})", kind_in_words(other)),
        },
    }
}

/// A name webpki presents as `DnsName("localhost")` or `IpAddress(127.0.0.1)`, as the user would write it.
fn presented_name(name: &str) -> &str {
    let inner = |prefix: &str| name.strip_prefix(prefix).and_then(|r| r.strip_suffix(')'));
    inner("DnsName(").map(|n| n.trim_matches('"')).or_else(|| inner("IpAddress(")).unwrap_or(name)
}

/// What is wrong with a certificate whichever side presented it (the words after "the X's certificate").
fn shared(c: &CertificateError) -> Option<String> {
    Some(match c {
        CertificateError::ExpiredContext { time, not_after } => {
            format!(
                "expired on {} (it is now {}): it needs renewing, or a clock is wrong",
                date(*not_after),
                date(*time)
            )
        }
        CertificateError::Expired => "has expired: it needs renewing, or a clock is wrong".into(),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "is not valid before {} (it is now {}): check the clocks of both hosts",
            date(*not_before),
            date(*time)
        ),
        CertificateError::NotValidYet => "is not valid yet: check the clocks of both hosts".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "is not made for this use (its extendedKeyUsage lacks serverAuth or clientAuth)".into()
        }
        CertificateError::BadSignature => "carries a signature that does not verify".into(),
        CertificateError::BadEncoding => "is not a well-formed X.509 certificate".into(),
        CertificateError::Revoked => "has been revoked".into(),
        _ => return None,
    })
}

/// webpki's "CA used as end entity" (a self-signed certificate with `CA:TRUE` offered as a leaf) comes as
/// an opaque `Other` error: recognised by its name, the only handle rustls gives.
fn ca_as_end_entity(c: &CertificateError) -> bool {
    matches!(c, CertificateError::Other(o) if format!("{o:?}").contains("CaUsedAsEndEntity"))
}

/// A certificate error's kind as lower-case words (`UnhandledCriticalExtension` -> "unhandled critical
/// extension"), for the rare ones without a sentence of their own.
fn kind_in_words(c: &CertificateError) -> String {
    let name = format!("{c:?}");
    let name = name.split(['(', ' ', '{']).next().unwrap_or_default();
    camel_to_words(if name == "Other" { "unrecognised problem" } else { name })
}

fn alert_from_daemon(a: AlertDescription) -> String {
    match a {
        AlertDescription::CertificateRequired => {
            format!("the daemon {CLIENT_CERT_REQUIRED}: this client presented none")
        }
        AlertDescription::BadCertificate
        | AlertDescription::UnknownCA
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateRevoked
        | AlertDescription::AccessDenied => format!(
            "the daemon {CLIENT_CERT_REFUSED} (--cert): it is not signed by the daemon's --client-ca, or it \
             expired ({} alert)",
            alert_words(a)
        ),
        other => format!("the daemon broke off the TLS handshake ({} alert)", alert_words(other)),
    }
}

fn alert_from_client(a: AlertDescription) -> String {
    match a {
        AlertDescription::BadCertificate
        | AlertDescription::UnknownCA
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateExpired
        | AlertDescription::DecryptError => format!(
            "the client does not trust this daemon's certificate: its --ca does not vouch for --tls-cert, or the \
             certificate does not name the host it dialled ({} alert)",
            alert_words(a)
        ),
        other => format!("the client broke off the TLS handshake ({} alert)", alert_words(other)),
    }
}

fn alert_words(a: AlertDescription) -> String {
    camel_to_words(&format!("{a:?}"))
}

/// `UnknownCA` -> "unknown CA", `BadCertificate` -> "bad certificate".
fn camel_to_words(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        let prev_lower = i > 0 && chars[i - 1].is_lowercase();
        if c.is_uppercase() && i > 0 && (prev_lower || next_lower) {
            out.push(' ');
        }
        // An acronym (CA) keeps its case; a word's capital is lowered.
        let in_acronym =
            c.is_uppercase() && !next_lower && (i + 1 < chars.len() || i > 0 && chars[i - 1].is_uppercase());
        out.push(if in_acronym { c } else { c.to_ascii_lowercase() });
    }
    out
}

/// A time as `2026-12-02 05:46:14 UTC`.
fn date(t: UnixTime) -> String {
    let secs = t.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest / 60 % 60, rest % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::OtherError;
    use std::sync::Arc;
    use std::time::Duration;

    const CA: &str = "/etc/mover/ca.pem";

    fn daemon(e: Error) -> String {
        handshake_in_words(&e, Checking::Daemon { ca: Path::new(CA), host: "files.example" }).expect("in words")
    }

    fn client(e: Error) -> String {
        handshake_in_words(&e, Checking::Client { client_ca: Some(Path::new("/etc/mover/clients.pem")) })
            .expect("in words")
    }

    fn no_debug_names(text: &str) {
        for name in ["Other(", "OtherError", "CaUsedAsEndEntity", "UnknownIssuer", "Context", "AlertReceived"] {
            assert!(!text.contains(name), "'{name}' in: {text}");
        }
    }

    #[derive(Debug)]
    struct CaUsedAsEndEntity;
    impl std::fmt::Display for CaUsedAsEndEntity {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("CaUsedAsEndEntity")
        }
    }
    impl std::error::Error for CaUsedAsEndEntity {}

    #[test]
    fn the_daemons_certificate_failures_name_the_flag_and_the_fix() {
        let t = |secs| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let cases = [
            (CertificateError::UnknownIssuer, "the daemon's certificate is not signed by --ca '/etc/mover/ca.pem'"),
            (
                CertificateError::Other(OtherError(Arc::new(CaUsedAsEndEntity))),
                "is not signed by --ca '/etc/mover/ca.pem': it is a self-signed CA certificate",
            ),
            (
                CertificateError::ExpiredContext { time: t(1_764_654_374), not_after: t(1_700_000_000) },
                "expired on 2023-11-14 22:13:20 UTC (it is now 2025-12-02 05:46:14 UTC)",
            ),
            (
                CertificateError::NotValidYetContext { time: t(0), not_before: t(86_400 * 366) },
                "is not valid before 1971-01-02 00:00:00 UTC",
            ),
            (
                CertificateError::NotValidForNameContext {
                    expected: ServerName::try_from("files.example").unwrap().to_owned(),
                    presented: vec!["DnsName(\"localhost\")".into(), "IpAddress(127.0.0.1)".into()],
                },
                "the daemon's certificate is for localhost, 127.0.0.1, not files.example: connect by one of those",
            ),
            (
                CertificateError::UnhandledCriticalExtension,
                "not accepted by --ca '/etc/mover/ca.pem' (unhandled critical extension)",
            ),
        ];
        for (c, want) in cases {
            let text = daemon(Error::InvalidCertificate(c));
            assert!(text.contains(want), "expected '{want}' in: {text}");
            no_debug_names(&text);
            assert!(!text.contains("DnsName") && !text.contains("IpAddress"), "{text}");
        }
        let text = daemon(Error::AlertReceived(AlertDescription::CertificateRequired));
        assert!(text.contains(CLIENT_CERT_REQUIRED), "{text}");
        let text = daemon(Error::AlertReceived(AlertDescription::UnknownCA));
        assert!(text.contains(CLIENT_CERT_REFUSED) && text.contains("unknown CA alert"), "{text}");
        no_debug_names(&text);
    }

    #[test]
    fn client_certificate_failures_say_what_the_daemon_expected() {
        let text = client(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        assert_eq!(text, "the client's certificate is not signed by --client-ca '/etc/mover/clients.pem'");
        let text = client(Error::NoCertificatesPresented);
        assert!(text.contains("presented no certificate"), "{text}");
        let text = client(Error::AlertReceived(AlertDescription::BadCertificate));
        assert!(text.contains("does not trust this daemon's certificate") && text.contains("bad certificate alert"));
        no_debug_names(&text);
        assert_eq!(handshake_in_words(&Error::DecryptError, Checking::Client { client_ca: None }), None);
    }

    #[test]
    fn names_become_words() {
        assert_eq!(camel_to_words("BadCertificate"), "bad certificate");
        assert_eq!(camel_to_words("UnknownCA"), "unknown CA");
        assert_eq!(camel_to_words("HandshakeFailure"), "handshake failure");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_424), (2025, 12, 2));
    }
}
