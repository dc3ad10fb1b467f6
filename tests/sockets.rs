//! Sockets (`Linux::sockets`, `Linux::read_sock`) on the real Linux dumps.
//!
//! The five dumps of the make-linux-guest images (6.1 in four configurations, 6.12) run
//! busybox tools that open no socket: every process's walk must succeed and find none, and
//! every descriptor it passes over must be one `/proc` would not name `socket:[ino]` (the path
//! walk decides that from the superblock's magic, independently of `f_op`). The kernel's own
//! sockets are checked against what the kernel source says it creates for every network
//! namespace (`rtnetlink_net_init`, `genl_pernet_init`, `igmp_net_init`, `ndisc_net_init`,
//! `igmp6_net_init`). `linux-6.1-net` (a guest with real TCP, UDP and UNIX sockets) is compared
//! with what that guest reported: every `/proc/PID/fd` link `socket:[ino]`, and each socket of
//! its `/proc/net/{tcp,tcp6,udp,udp6,unix}`.
//! Nothing here compares with output recorded from xenvmi.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::fixture::{fixture_file, ground_truth};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::sockets::Sock;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::Gva;

const FIXTURES: &[&str] = &[
    "linux-6.1",
    "linux-6.1-la57",
    "linux-6.1-cloud-pti",
    "linux-6.1-mem4g",
    "linux-6.12",
];

fn open(f: &str) -> (GuestMemory<Snapshot>, Linux) {
    let snap = Snapshot::open(fixture_file(f, "vmcore.elf").unwrap()).unwrap();
    let regs = snap.all_registers().to_vec();
    let mem = GuestMemory::new(snap);
    let linux =
        Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap_or_else(|e| panic!("{f}: {e}"));
    (mem, linux)
}

#[test]
fn the_five_guests_hold_no_socket_and_none_is_invented() {
    for f in FIXTURES {
        let (mem, linux) = open(f);
        let (mut processes, mut descriptors) = (0, 0);
        for p in linux.processes(&mem).map(Result::unwrap) {
            let sockets = linux
                .sockets(&mem, p.object)
                .unwrap_or_else(|e| panic!("{f}: pid {}: {e}", p.pid));
            let files = linux.open_files(&mem, p.object).unwrap();
            // A socket is reported for exactly the descriptors /proc names socket:[ino].
            let named: BTreeSet<u64> = files
                .iter()
                .filter(|of| of.path.as_deref().is_ok_and(|p| p.starts_with("socket:[")))
                .map(|of| of.fd)
                .collect();
            let found: BTreeSet<u64> = sockets.iter().map(|s| s.fd).collect();
            assert_eq!(found, named, "{f}: pid {}", p.pid);
            assert!(sockets.is_empty(), "{f}: pid {}: {sockets:?}", p.pid);
            // The detail's part is the same walk.
            if p.pid == 1 {
                let d = linux.process_detail(&mem, &p);
                assert_eq!(d.sockets.as_deref(), Ok(&[][..]), "{f}");
                // init's /dev/console (0, 1, 2) and /init are files, not sockets.
                assert!(files.iter().filter(|of| of.fd <= 2).count() == 3, "{f}");
            }
            processes += 1;
            descriptors += files.len();
        }
        eprintln!("{f}: {processes} processes, {descriptors} descriptors, no socket");
        assert!(descriptors >= 3, "{f}: nothing was examined");
    }
}

/// A `struct sock *` member of `init_net` (a dotted path inside `struct net`).
fn net_sock(linux: &Linux, mem: &GuestMemory<Snapshot>, path: &str) -> Sock {
    let off = linux
        .types()
        .field("net", path)
        .unwrap_or_else(|| panic!("net.{path}"))
        .offset;
    let at = linux.require_symbol("init_net").unwrap().0 + off;
    let sk = mem.read_va(linux.info().kernel_space, Gva(at)).unwrap();
    assert_ne!(sk.0, 0, "net.{path} is NULL");
    linux
        .read_sock(mem, sk)
        .unwrap_or_else(|e| panic!("net.{path}: {e}"))
}

#[test]
fn the_kernels_own_sockets_are_what_each_namespace_creates() {
    // From the kernel source (6.1 and 6.12 alike):
    // - rtnetlink_net_init: netlink_kernel_create(net, NETLINK_ROUTE = 0), a SOCK_DGRAM
    //   netlink socket (sock_create_lite(PF_NETLINK, SOCK_DGRAM, ...));
    // - genl_pernet_init: the same with NETLINK_GENERIC = 16;
    // - igmp_net_init: inet_ctl_sock_create(AF_INET, SOCK_DGRAM, 0): UDP (inet_create picks
    //   IPPROTO_UDP for protocol 0), never bound nor connected, in TCP_CLOSE
    //   (sock_init_data);
    // - ndisc_net_init / igmp6_net_init: inet_ctl_sock_create(PF_INET6, SOCK_RAW,
    //   IPPROTO_ICMPV6 = 58): a raw socket's local port is its protocol (inet6_create:
    //   inet_num = protocol).
    for f in FIXTURES.iter().chain([&NET]) {
        let (mem, linux) = open(f);
        let s = net_sock(&linux, &mem, "rtnl");
        assert_eq!(
            (s.family, s.sock_type, s.protocol),
            (16, 2, 0),
            "{f}: {s:?}"
        );
        assert_eq!(
            (s.proto.as_str(), &s.local, &s.remote),
            ("netlink", &None, &None)
        );
        let s = net_sock(&linux, &mem, "genl_sock");
        assert_eq!(
            (s.family, s.sock_type, s.protocol),
            (16, 2, 16),
            "{f}: {s:?}"
        );
        let s = net_sock(&linux, &mem, "ipv4.mc_autojoin_sk");
        assert_eq!(
            (s.family, s.sock_type, s.protocol),
            (2, 2, 17),
            "{f}: {s:?}"
        );
        assert_eq!(s.proto, "udp");
        assert_eq!(s.local.as_deref(), Some("0.0.0.0:0"), "{f}");
        assert_eq!(s.remote.as_deref(), Some("0.0.0.0:0"), "{f}");
        assert_eq!(s.state, "CLOSE", "{f}");
        for path in ["ipv6.ndisc_sk", "ipv6.igmp_sk"] {
            let s = net_sock(&linux, &mem, path);
            assert_eq!(
                (s.family, s.sock_type, s.protocol),
                (10, 3, 58),
                "{f}: {s:?}"
            );
            assert_eq!(s.proto, "raw6");
            assert_eq!(s.local.as_deref(), Some("[::]:58"), "{f}");
            assert_eq!(s.remote.as_deref(), Some("[::]:0"), "{f}");
            assert_eq!(s.state, "CLOSE", "{f}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// linux-6.1-net: a guest with real sockets and the guest's own list of them.

const NET: &str = "linux-6.1-net";

/// A state as `tcp_states.h` names it, from `ss`'s short names, `/proc/net/*`'s hex or the
/// ground truth's `UNCONNECTED` (what the guest's tool calls UDP's `TCP_CLOSE`).
fn state(s: &str) -> String {
    let names = [
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
    ];
    let s = s.trim().to_ascii_uppercase();
    if let Ok(n) = u8::from_str_radix(&s, 16) {
        if let Some(name) = (n as usize).checked_sub(1).and_then(|i| names.get(i)) {
            return (*name).to_owned();
        }
    }
    match s.as_str() {
        "ESTAB" => "ESTABLISHED".into(),
        "UNCONN" | "UNCONNECTED" => "CLOSE".into(),
        "SYN-SENT" | "SYN-RECV" | "FIN-WAIT-1" | "FIN-WAIT-2" | "TIME-WAIT" | "CLOSE-WAIT"
        | "LAST-ACK" => s.replace("-WAIT-", "_WAIT").replace('-', "_"),
        _ => s,
    }
}

#[test]
fn linux_6_1_net_sockets_match_the_guests_own_list() {
    let gt = ground_truth(NET);
    let (mem, linux) = open(NET);
    let procs: Vec<_> = linux.processes(&mem).map(Result::unwrap).collect();
    let mut ours = Vec::new();
    for p in &procs {
        for s in linux
            .sockets(&mem, p.object)
            .unwrap_or_else(|e| panic!("pid {}: {e}", p.pid))
        {
            ours.push((p.pid, s));
        }
    }

    // 1. Per process, exactly the descriptors whose /proc/PID/fd link is socket:[ino], with
    //    that inode.
    let mut links = 0;
    for t in gt["processes"].as_array().unwrap() {
        let Some(fds) = t.get("fds").and_then(Value::as_object) else {
            continue;
        };
        let pid = t["pid"].as_u64().unwrap();
        let want: BTreeSet<(u64, u64)> = fds
            .iter()
            .filter_map(|(fd, target)| {
                let ino = target
                    .as_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?;
                Some((fd.parse().unwrap(), ino.parse().unwrap()))
            })
            .collect();
        let got: BTreeSet<(u64, u64)> = ours
            .iter()
            .filter(|(p, _)| *p == pid)
            .map(|(_, s)| (s.fd, s.inode))
            .collect();
        assert_eq!(got, want, "pid {pid} ({})", t["comm"]);
        links += want.len();
    }
    assert!(
        links >= 10,
        "only {links} socket descriptors in the ground truth"
    );

    // 2. Each socket of /proc/net/{tcp,tcp6,udp,udp6} and /proc/net/unix that a process
    //    holds: protocol, ends and state, at every (pid, fd) that holds it.
    let inet = gt["sockets"].as_array().expect("ground truth `sockets`");
    let unix = gt["unix_sockets"].as_array().map_or(&[][..], Vec::as_slice);
    let mut compared = 0;
    for t in inet.iter().chain(unix) {
        if t["inode"].as_u64() == Some(0) {
            continue; // no file: a request or TIME_WAIT sock, no process holds it
        }
        for o in t["owners"].as_array().unwrap() {
            let (pid, fd) = (o["pid"].as_u64().unwrap(), o["fd"].as_u64().unwrap());
            let (_, s) = ours
                .iter()
                .find(|(p, s)| *p == pid && s.fd == fd)
                .unwrap_or_else(|| panic!("pid {pid} fd {fd} ({t}) not found: {ours:?}"));
            let sock = s.sock.as_ref().unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(Some(s.inode), t["inode"].as_u64(), "{t}");
            assert_eq!(Some(sock.proto.as_str()), t["proto"].as_str(), "{t}");
            if sock.proto == "unix" {
                // /proc/net/unix: the socket's own bound path; its type; CONNECTED exactly
                // when sk_state is TCP_ESTABLISHED (unix_seq_show).
                assert_eq!(sock.local.as_deref(), t["path"].as_str(), "{t}");
                let ty = match sock.sock_type {
                    1 => "STREAM",
                    2 => "DGRAM",
                    5 => "SEQPACKET",
                    _ => "?",
                };
                assert_eq!(Some(ty), t["type"].as_str(), "{t}");
                assert_eq!(
                    sock.state == "ESTABLISHED",
                    t["state"] == "CONNECTED",
                    "{t}: {sock:?}"
                );
            } else {
                assert_eq!(sock.local.as_deref(), t["local"].as_str(), "{t}");
                assert_eq!(sock.remote.as_deref(), t["remote"].as_str(), "{t}");
                assert_eq!(
                    state(&sock.state),
                    state(t["state"].as_str().unwrap()),
                    "{t}"
                );
            }
            compared += 1;
        }
    }
    // 3. Nothing more: every TCP, UDP or UNIX socket a process holds is in the guest's lists.
    let listed: BTreeSet<u64> = inet
        .iter()
        .chain(unix)
        .filter_map(|t| t["inode"].as_u64())
        .collect();
    for (pid, s) in &ours {
        if let Ok(k) = &s.sock {
            if ["tcp", "tcp6", "udp", "udp6", "unix"].contains(&k.proto.as_str()) {
                assert!(
                    listed.contains(&s.inode),
                    "pid {pid}: {s:?} not in /proc/net"
                );
            }
        }
    }
    eprintln!(
        "{NET}: {links} socket descriptors and {compared} sockets equal to the guest's own lists"
    );
    assert!(compared >= 10, "only {compared} compared");
}

#[test]
fn states_are_normalised_for_comparison() {
    assert_eq!(state("0A"), "LISTEN");
    assert_eq!(state("ESTAB"), "ESTABLISHED");
    assert_eq!(state("UNCONN"), "CLOSE");
    assert_eq!(state("UNCONNECTED"), "CLOSE");
    assert_eq!(state("TIME-WAIT"), "TIME_WAIT");
    assert_eq!(state("LISTEN"), "LISTEN");
}
