//! A process's sockets (what `ss -p` or `netstat -p` lists for it): every open descriptor
//! whose file is a socket, with the socket's inode number (`socket:[ino]` in `/proc/PID/fd`)
//! and what its `struct sock` says: family, type, protocol, state and both ends (IPv4/IPv6
//! address and port, UNIX path).
//!
//! A file is a socket when its `f_op` is the kernel's `socket_file_ops` (as `sock_from_file`
//! decides); without that symbol, when its inode's mode is `S_IFSOCK` and its `struct socket`
//! (`file->private_data`) points back at the file. From the `struct socket`, `sk` is the
//! `struct sock`, whose first member `__sk_common` (`struct sock_common`) holds the family,
//! state, addresses and ports; `sk_type` and `sk_protocol` are plain `u16`s since 5.6. A UNIX
//! socket's `struct sock` is the start of a `struct unix_sock`, whose `addr` is the bound name
//! and `peer` the connected socket. Every offset comes from the kernel's types.
//!
//! Bounded: the descriptor walk is [`super::files`]' ([`super::files::MAX_FDS`]), and each
//! socket costs a fixed number of reads (a UNIX name at most 108 bytes, the peer's one step).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Linux;
use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::GuestMemory;

/// `AF_UNIX`.
pub const AF_UNIX: u16 = 1;
/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
/// `AF_NETLINK`.
pub const AF_NETLINK: u16 = 16;
/// `AF_PACKET`.
pub const AF_PACKET: u16 = 17;

/// `S_IFMT` and `S_IFSOCK` of an inode's `i_mode`.
const S_IFMT: u16 = 0o170_000;
const S_IFSOCK: u16 = 0o140_000;
/// Longest `sockaddr_un.sun_path`.
const UNIX_PATH_MAX: u64 = 108;

/// What a `struct sock` says about one socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sock {
    /// Address family (`AF_*`: 1 UNIX, 2 IPv4, 10 IPv6, 16 netlink, 17 packet, ...).
    pub family: u16,
    /// Socket type (`SOCK_*`: 1 stream, 2 datagram, 3 raw, 5 sequenced packets).
    pub sock_type: u16,
    /// Protocol number (IPv4/IPv6: `IPPROTO_*`, 6 TCP, 17 UDP; netlink: `NETLINK_*`).
    pub protocol: u16,
    /// The name `netstat` gives it: `tcp`, `udp`, `tcp6`, `udp6`, `raw`, `raw6`, `udplite`,
    /// `icmp` (ping), `sctp`, `mptcp` (each with `6` for IPv6), `unix`, `netlink`, `packet`,
    /// or `af<N>` for any other family.
    pub proto: String,
    /// The local end: `addr:port` (`[addr]:port` for IPv6) for IPv4/IPv6, the bound path
    /// for UNIX (`@name` for an abstract name), `None` for an unbound UNIX socket and for
    /// other families.
    pub local: Option<String>,
    /// The remote end, as `local` (`0.0.0.0:0` when unconnected); for UNIX the peer's bound
    /// path, `None` without a peer or when the peer is unbound.
    pub remote: Option<String>,
    /// IPv4, IPv6 and UNIX: `sk_state` by its name in `include/net/tcp_states.h`
    /// (`ESTABLISHED`, `SYN_SENT`, `SYN_RECV`, `FIN_WAIT1`, `FIN_WAIT2`, `TIME_WAIT`,
    /// `CLOSE`, `CLOSE_WAIT`, `LAST_ACK`, `LISTEN`, `CLOSING`, `NEW_SYN_RECV`,
    /// `BOUND_INACTIVE`; `UNKNOWN(n)` otherwise). UDP, raw and UNIX sockets use the same
    /// numbers: `CLOSE` is unconnected, `ESTABLISHED` connected, and a listening UNIX
    /// stream socket is `LISTEN`. Other families give their states other meanings: the
    /// number, in decimal.
    pub state: String,
}

/// One socket a process holds open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socket {
    /// The descriptor.
    pub fd: u64,
    /// The socket's inode number, as in `socket:[ino]`.
    pub inode: u64,
    /// What its `struct sock` says, or why it could not be read.
    pub sock: std::result::Result<Sock, String>,
}

/// The offsets a socket read needs, all relative to the structure named.
struct SockOffsets {
    file_f_op: u64,
    file_private_data: u64,
    file_f_inode: u64,
    inode_i_ino: u64,
    inode_i_mode: u64,
    socket_sk: u64,
    socket_file: u64,
    /// `sock.__sk_common` plus each `sock_common` field: offsets from the `struct sock`.
    skc_family: u64,
    skc_state: u64,
    skc_daddr: u64,
    skc_rcv_saddr: u64,
    skc_dport: u64,
    skc_num: u64,
    /// `None` in a kernel built without IPv6.
    skc_v6: Option<(u64, u64)>,
    sk_type: u64,
    sk_protocol: u64,
    /// `None` in a kernel whose types lack `unix_sock` (UNIX sockets in a module whose BTF
    /// is not loaded).
    unix: Option<UnixOffsets>,
}

struct UnixOffsets {
    /// `unix_sock.sk`, `unix_sock.addr`, `unix_sock.peer`.
    sk: u64,
    addr: u64,
    peer: u64,
    /// `unix_address.len`, and `unix_address.name` + `sockaddr_un.sun_path`.
    len: u64,
    path: u64,
    /// `sockaddr_un.sun_path`: what `len` counts before the path.
    path_in_name: u64,
}

impl SockOffsets {
    fn resolve(l: &Linux) -> Result<SockOffsets> {
        let t = l.types();
        let common = t.require("sock", "__sk_common")?;
        let skc = |f: &str| -> Result<u64> { Ok(common + t.require("sock_common", f)?) };
        let skc_v6 = match (
            t.field("sock_common", "skc_v6_daddr"),
            t.field("sock_common", "skc_v6_rcv_saddr"),
        ) {
            (Some(d), Some(s)) => Some((common + d.offset, common + s.offset)),
            _ => None,
        };
        let unix = (|| {
            let path_in_name = t.field("sockaddr_un", "sun_path")?.offset;
            Some(UnixOffsets {
                sk: t.field("unix_sock", "sk")?.offset,
                addr: t.field("unix_sock", "addr")?.offset,
                peer: t.field("unix_sock", "peer")?.offset,
                len: t.field("unix_address", "len")?.offset,
                path: t.field("unix_address", "name")?.offset + path_in_name,
                path_in_name,
            })
        })();
        Ok(SockOffsets {
            file_f_op: t.require("file", "f_op")?,
            file_private_data: t.require("file", "private_data")?,
            file_f_inode: t.require("file", "f_inode")?,
            inode_i_ino: t.require("inode", "i_ino")?,
            inode_i_mode: t.require("inode", "i_mode")?,
            socket_sk: t.require("socket", "sk")?,
            socket_file: t.require("socket", "file")?,
            skc_family: skc("skc_family")?,
            skc_state: skc("skc_state")?,
            skc_daddr: skc("skc_daddr")?,
            skc_rcv_saddr: skc("skc_rcv_saddr")?,
            skc_dport: skc("skc_dport")?,
            skc_num: skc("skc_num")?,
            skc_v6,
            sk_type: t.require("sock", "sk_type")?,
            sk_protocol: t.require("sock", "sk_protocol")?,
            unix,
        })
    }
}

fn add(base: Gva, off: u64, what: &'static str) -> Result<Gva> {
    base.checked_add(off).ok_or(Error::Overflow(what))
}

/// `include/net/tcp_states.h`.
fn state_name(s: u8) -> String {
    const NAMES: [&str; 13] = [
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
        "NEW_SYN_RECV",
        "BOUND_INACTIVE",
    ];
    match (s as usize).checked_sub(1).and_then(|i| NAMES.get(i)) {
        Some(n) => (*n).to_owned(),
        None => format!("UNKNOWN({s})"),
    }
}

/// The name `netstat` gives a socket (see [`Sock::proto`]).
fn proto_name(family: u16, sock_type: u16, protocol: u16) -> String {
    const SOCK_DGRAM: u16 = 2;
    const SOCK_RAW: u16 = 3;
    match family {
        AF_UNIX => "unix".to_owned(),
        AF_INET | AF_INET6 => {
            let base = match (sock_type, protocol) {
                (SOCK_RAW, _) => "raw",
                (_, 6) => "tcp",
                (_, 17) => "udp",
                (_, 136) => "udplite",
                (SOCK_DGRAM, 1 | 58) => "icmp",
                (_, 132) => "sctp",
                (_, 262) => "mptcp",
                _ => "ip",
            };
            if family == AF_INET6 {
                format!("{base}6")
            } else {
                base.to_owned()
            }
        }
        AF_NETLINK => "netlink".to_owned(),
        AF_PACKET => "packet".to_owned(),
        f => format!("af{f}"),
    }
}

/// A UNIX socket name as `ss` shows it: a path up to its NUL, or `@` and an abstract name
/// (whose NULs are shown as `@` too).
fn unix_name(path: &[u8]) -> String {
    match path.split_first() {
        Some((0, rest)) => {
            let shown: Vec<u8> = rest
                .iter()
                .map(|&b| if b == 0 { b'@' } else { b })
                .collect();
            format!("@{}", String::from_utf8_lossy(&shown))
        }
        _ => {
            let end = memchr::memchr(0, path).unwrap_or(path.len());
            String::from_utf8_lossy(&path[..end]).into_owned()
        }
    }
}

impl Linux {
    /// The sockets among the open files of the task at `task` (a `struct task_struct *`), by
    /// descriptor (see the module docs). A kernel thread has none.
    ///
    /// # Errors
    /// A field the kernel's types lack; memory errors for the descriptor table, or for a
    /// file's `f_op`, inode or `struct socket` (a `struct sock` that cannot be read fails
    /// only that socket's [`Socket::sock`]); [`Error::Corrupt`] for a socket file whose
    /// `struct socket` does not point back at it.
    pub fn sockets<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        task: Gva,
    ) -> Result<Vec<Socket>> {
        let o = SockOffsets::resolve(self)?;
        let ks = self.info().kernel_space;
        let socket_ops = self.symbol("socket_file_ops");
        let mut out = Vec::new();
        for (fd, file) in self.descriptors(mem, task)? {
            let f_op = mem.read_va(ks, add(file, o.file_f_op, "file.f_op")?)?;
            let by_ops = socket_ops.map(|ops| ops == f_op);
            if by_ops == Some(false) {
                continue;
            }
            let inode = mem.read_va(ks, add(file, o.file_f_inode, "file.f_inode")?)?;
            if by_ops.is_none() {
                let mut m = [0u8; 2];
                mem.read(ks, add(inode, o.inode_i_mode, "inode.i_mode")?, &mut m)?;
                if u16::from_le_bytes(m) & S_IFMT != S_IFSOCK {
                    continue;
                }
            }
            let socket = mem.read_va(ks, add(file, o.file_private_data, "file.private_data")?)?;
            let back = if socket.0 == 0 {
                Gva(0)
            } else {
                mem.read_va(ks, add(socket, o.socket_file, "socket.file")?)?
            };
            if back != file {
                if by_ops.is_none() {
                    // An S_IFSOCK inode opened with O_PATH is no socket of this process.
                    continue;
                }
                return Err(Error::Corrupt {
                    what: "socket.file",
                    addr: socket,
                    reason: format!(
                        "descriptor {fd}: the socket of file {file} points at file {back}"
                    ),
                });
            }
            let ino = mem.read_u64(ks, add(inode, o.inode_i_ino, "inode.i_ino")?)?;
            let sock = mem
                .read_va(ks, add(socket, o.socket_sk, "socket.sk")?)
                .and_then(|sk| self.read_sock_with(mem, &o, sk))
                .map_err(|e| e.to_string());
            out.push(Socket {
                fd,
                inode: ino,
                sock,
            });
        }
        Ok(out)
    }

    /// Decode one `struct sock` (at `sk`): a socket of a process, or one the kernel holds
    /// itself (`init_net.rtnl`, a netlink socket).
    ///
    /// # Errors
    /// A field the kernel's types lack; memory errors; [`Error::Corrupt`] for a UNIX name
    /// whose length is outside `sockaddr_un`.
    pub fn read_sock<B: PhysicalMemory>(&self, mem: &GuestMemory<B>, sk: Gva) -> Result<Sock> {
        self.read_sock_with(mem, &SockOffsets::resolve(self)?, sk)
    }

    fn read_sock_with<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &SockOffsets,
        sk: Gva,
    ) -> Result<Sock> {
        let ks = self.info().kernel_space;
        let read = |off: u64, buf: &mut [u8], what: &'static str| -> Result<()> {
            mem.read(ks, add(sk, off, what)?, buf)
        };
        if sk.0 == 0 {
            return Err(Error::Corrupt {
                what: "socket.sk",
                addr: sk,
                reason: "NULL: the socket has no struct sock".into(),
            });
        }
        let u16_at = |off: u64, what: &'static str| -> Result<u16> {
            let mut b = [0u8; 2];
            read(off, &mut b, what)?;
            Ok(u16::from_le_bytes(b))
        };
        let family = u16_at(o.skc_family, "sock_common.skc_family")?;
        let mut state = [0u8; 1];
        read(o.skc_state, &mut state, "sock_common.skc_state")?;
        let sock_type = u16_at(o.sk_type, "sock.sk_type")?;
        let protocol = u16_at(o.sk_protocol, "sock.sk_protocol")?;
        let (local, remote) = match family {
            AF_INET | AF_INET6 => {
                // skc_num is in host order, skc_dport in network order.
                let lport = u16_at(o.skc_num, "sock_common.skc_num")?;
                let mut d = [0u8; 2];
                read(o.skc_dport, &mut d, "sock_common.skc_dport")?;
                let rport = u16::from_be_bytes(d);
                if family == AF_INET {
                    let (mut l, mut r) = ([0u8; 4], [0u8; 4]);
                    read(o.skc_rcv_saddr, &mut l, "sock_common.skc_rcv_saddr")?;
                    read(o.skc_daddr, &mut r, "sock_common.skc_daddr")?;
                    (
                        Some(format!("{}:{lport}", Ipv4Addr::from(l))),
                        Some(format!("{}:{rport}", Ipv4Addr::from(r))),
                    )
                } else {
                    let (daddr, saddr) = o.skc_v6.ok_or_else(|| Error::MissingField {
                        type_name: "sock_common".into(),
                        field: "skc_v6_daddr".into(),
                        source_name: self.types().source_name().into(),
                        hint: "; an AF_INET6 socket in a kernel without IPv6 fields".into(),
                    })?;
                    let (mut l, mut r) = ([0u8; 16], [0u8; 16]);
                    read(saddr, &mut l, "sock_common.skc_v6_rcv_saddr")?;
                    read(daddr, &mut r, "sock_common.skc_v6_daddr")?;
                    (
                        Some(format!("[{}]:{lport}", Ipv6Addr::from(l))),
                        Some(format!("[{}]:{rport}", Ipv6Addr::from(r))),
                    )
                }
            }
            AF_UNIX => match &o.unix {
                Some(u) => {
                    let unix_sock = Gva(sk.0.wrapping_sub(u.sk));
                    let local = self.unix_path(mem, u, unix_sock)?;
                    let peer = mem.read_va(ks, add(unix_sock, u.peer, "unix_sock.peer")?)?;
                    let remote = if peer.0 == 0 {
                        None
                    } else {
                        self.unix_path(mem, u, Gva(peer.0.wrapping_sub(u.sk)))?
                    };
                    (local, remote)
                }
                None => (None, None),
            },
            _ => (None, None),
        };
        Ok(Sock {
            family,
            sock_type,
            protocol,
            proto: proto_name(family, sock_type, protocol),
            local,
            remote,
            state: match family {
                AF_INET | AF_INET6 | AF_UNIX => state_name(state[0]),
                _ => state[0].to_string(),
            },
        })
    }

    /// The name a UNIX socket is bound to (`unix_sock.addr`), `None` when unbound.
    fn unix_path<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        u: &UnixOffsets,
        unix_sock: Gva,
    ) -> Result<Option<String>> {
        let ks = self.info().kernel_space;
        let addr = mem.read_va(ks, add(unix_sock, u.addr, "unix_sock.addr")?)?;
        if addr.0 == 0 {
            return Ok(None);
        }
        // `len` counts sun_family too (the kernel's `addr_len`).
        let len = mem.read_u32(ks, add(addr, u.len, "unix_address.len")?)?;
        let path_len = u64::from(len)
            .checked_sub(u.path_in_name)
            .filter(|&n| n <= UNIX_PATH_MAX)
            .ok_or_else(|| Error::Corrupt {
                what: "unix_address.len",
                addr,
                reason: format!(
                    "{len} is not in {}..={}",
                    u.path_in_name,
                    u.path_in_name + UNIX_PATH_MAX
                ),
            })?;
        let path = mem.read_bytes(
            ks,
            add(addr, u.path, "unix_address.name")?,
            path_len as usize,
        )?;
        Ok(Some(unix_name(&path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_named_as_in_tcp_states_h() {
        assert_eq!(state_name(1), "ESTABLISHED");
        assert_eq!(state_name(7), "CLOSE");
        assert_eq!(state_name(10), "LISTEN");
        assert_eq!(state_name(13), "BOUND_INACTIVE");
        assert_eq!(state_name(0), "UNKNOWN(0)");
        assert_eq!(state_name(200), "UNKNOWN(200)");
    }

    #[test]
    fn protocols_are_named_as_netstat_names_them() {
        assert_eq!(proto_name(AF_INET, 1, 6), "tcp");
        assert_eq!(proto_name(AF_INET6, 2, 17), "udp6");
        assert_eq!(proto_name(AF_INET, 3, 1), "raw");
        assert_eq!(proto_name(AF_INET, 2, 1), "icmp");
        assert_eq!(proto_name(AF_INET6, 2, 58), "icmp6");
        assert_eq!(proto_name(AF_UNIX, 1, 0), "unix");
        assert_eq!(proto_name(AF_NETLINK, 3, 0), "netlink");
        assert_eq!(proto_name(40, 1, 0), "af40");
    }

    #[test]
    fn unix_names_are_shown_as_ss_shows_them() {
        assert_eq!(unix_name(b"/run/x.sock\0"), "/run/x.sock");
        assert_eq!(unix_name(b"/run/x.sock"), "/run/x.sock");
        assert_eq!(unix_name(b"\0abc\0d"), "@abc@d");
        assert_eq!(unix_name(b""), "");
    }
}
