//! Alerts to a syslog collector (a SIEM) as RFC 5424 messages whose MSG is a CEF record
//! ([`super::cef`]), over UDP (RFC 5426: one message per datagram) or TCP (RFC 6587
//! octet-counting framing: `LEN SP MSG`).
//!
//! The target is checked when the sink is made ([`Syslog::connect`]): an address that does
//! not parse or resolve, or a TCP collector that does not accept the connection, is an error
//! then, before any monitoring starts. UDP has no connection: only the address is checked.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use super::{cef, rfc3339, Alert, AlertSink};
use crate::error::{Error, Result};

/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one TCP write may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The facility used unless told otherwise: 4, security/authorization messages.
pub const DEFAULT_FACILITY: u8 = 4;

/// The transport to the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP, one message per datagram (RFC 5426).
    Udp,
    /// TCP with octet-counting framing (RFC 6587 §3.4.1).
    Tcp,
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// The syslog/CEF sink (see the module documentation).
pub struct Syslog {
    conn: Conn,
    addr: SocketAddr,
    target: String,
    facility: u8,
    hostname: String,
}

impl std::fmt::Debug for Syslog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syslog")
            .field("target", &self.target)
            .field("facility", &self.facility)
            .finish()
    }
}

fn config_error(target: &str, reason: impl Into<String>) -> Error {
    Error::Config {
        what: format!("syslog target {target:?}"),
        reason: reason.into(),
    }
}

/// `udp://HOST:PORT` or `tcp://HOST:PORT` split into its transport and address.
///
/// # Errors
/// [`Error::Config`] naming the target: no scheme, another scheme, or no port.
pub fn parse_target(target: &str) -> Result<(Transport, &str)> {
    let (scheme, rest) = target
        .split_once("://")
        .ok_or_else(|| config_error(target, "expected udp://HOST:PORT or tcp://HOST:PORT"))?;
    let transport = match scheme {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        s => {
            return Err(config_error(
                target,
                format!("unknown transport {s:?} (udp or tcp)"),
            ))
        }
    };
    if rest
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(config_error(target, "expected HOST:PORT after the scheme"));
    }
    Ok((transport, rest))
}

impl Syslog {
    /// A sink for `target` (`udp://HOST:PORT` or `tcp://HOST:PORT`) with the default facility
    /// and this host's name.
    ///
    /// # Errors
    /// [`Error::Config`] naming the target when it does not parse, does not resolve, or (TCP)
    /// refuses the connection or does not answer within [`CONNECT_TIMEOUT`].
    pub fn connect(target: &str) -> Result<Syslog> {
        let (transport, hostport) = parse_target(target)?;
        let addr = hostport
            .to_socket_addrs()
            .map_err(|e| config_error(target, format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| config_error(target, "resolves to no address"))?;
        let conn = open(transport, addr).map_err(|e| config_error(target, e.to_string()))?;
        Ok(Syslog {
            conn,
            addr,
            target: target.to_owned(),
            facility: DEFAULT_FACILITY,
            hostname: local_hostname(),
        })
    }

    /// Use `facility` (0–23) instead of [`DEFAULT_FACILITY`].
    ///
    /// # Errors
    /// [`Error::Config`] when it is above 23.
    pub fn with_facility(mut self, facility: u8) -> Result<Syslog> {
        if facility > 23 {
            return Err(config_error(
                &self.target,
                format!("facility {facility} is not 0-23"),
            ));
        }
        self.facility = facility;
        Ok(self)
    }

    /// The RFC 5424 message this sink sends for `alert`.
    pub fn message(&self, alert: &Alert) -> String {
        format_message(alert, self.facility, &self.hostname)
    }

    fn deliver(&mut self, msg: &str) -> std::io::Result<()> {
        match &mut self.conn {
            Conn::Udp(s) => s.send(msg.as_bytes()).map(|_| ()),
            Conn::Tcp(s) => {
                let framed = format!("{} {msg}", msg.len());
                s.write_all(framed.as_bytes()).and_then(|()| s.flush())
            }
        }
    }
}

fn open(transport: Transport, addr: SocketAddr) -> std::io::Result<Conn> {
    Ok(match transport {
        Transport::Udp => {
            let local: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let s = UdpSocket::bind(local)?;
            s.connect(addr)?;
            Conn::Udp(s)
        }
        Transport::Tcp => {
            let s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
            s.set_write_timeout(Some(WRITE_TIMEOUT))?;
            Conn::Tcp(s)
        }
    })
}

impl AlertSink for Syslog {
    /// One message; a TCP connection that broke is reopened once.
    fn send(&mut self, alert: &Alert) -> Result<()> {
        let msg = self.message(alert);
        let first = self.deliver(&msg);
        let r = match (first, &self.conn) {
            (Err(_), Conn::Tcp(_)) => open(Transport::Tcp, self.addr).and_then(|c| {
                self.conn = c;
                self.deliver(&msg)
            }),
            (r, _) => r,
        };
        r.map_err(|e| config_error(&self.target, format!("delivery failed: {e}")))
    }
}

/// Syslog severity (RFC 5424 §6.2.1) for a CEF severity: 8–10 critical (2), 5–7 warning (4),
/// 0–4 notice (5).
pub fn syslog_severity(cef_severity: u8) -> u8 {
    match cef_severity {
        8.. => 2,
        5..=7 => 4,
        _ => 5,
    }
}

/// Keep only PRINTUSASCII (33–126), at most `max` characters; empty becomes the NILVALUE `-`.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| ('!'..='~').contains(c))
        .take(max)
        .collect();
    if f.is_empty() {
        "-".into()
    } else {
        f
    }
}

/// This host's name (`/proc/sys/kernel/hostname`), or `-` when unknown.
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| header_field(h.trim(), 255))
        .unwrap_or_else(|_| "-".into())
}

/// The RFC 5424 message for `alert`: `<PRI>1 TIMESTAMP HOSTNAME xenvmi PROCID MSGID - CEF:…`.
/// PRI is `facility * 8 + severity` ([`syslog_severity`]); MSGID is the alert's `what`.
pub fn format_message(alert: &Alert, facility: u8, hostname: &str) -> String {
    let pri = u32::from(facility.min(23)) * 8 + u32::from(syslog_severity(alert.severity));
    format!(
        "<{pri}>1 {} {} {} {} {} - {}",
        rfc3339(alert.time),
        header_field(hostname, 255),
        cef::PRODUCT,
        std::process::id(),
        header_field(&alert.what, 32),
        cef::format(alert)
    )
}
