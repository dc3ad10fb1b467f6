//! Sockets (`Linux::sockets`, `Linux::read_sock`) on the real Linux dumps.
//!
//! The five dumps of the make-linux-guest images (6.1 in four configurations, 6.12) run
//! busybox tools that open no socket: every process's walk must succeed and find none, and
//! every descriptor it passes over must be one `/proc` would not name `socket:[ino]` (the path
//! walk decides that from the superblock's magic, independently of `f_op`). The kernel's own
//! sockets are checked against what the kernel source says it creates for every network
//! namespace (`rtnetlink_net_init`, `genl_pernet_init`, `igmp_net_init`, `ndisc_net_init`,
//! `igmp6_net_init`). `linux-6.1-net` (a guest with real TCP, UDP and UNIX sockets, and the
//! guest's own list of them in `ground-truth.json`) is compared socket by socket when present.
//! Nothing here compares with output recorded from xenvmi.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::fixture::{fixture_dir, fixture_file, ground_truth};
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
    for f in FIXTURES {
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

/// An endpoint as a comparable value: IP addresses parsed (so `::1` and `0:0::1` agree),
/// an unspecified one (`0.0.0.0:0`, `[::]:0`, `*:*`, empty, `null`) as `None`, anything else
/// (a UNIX path) as it is.
fn endpoint(v: Option<&str>) -> Option<String> {
    let s = v?.trim();
    if matches!(
        s,
        "" | "*" | "*:*" | "0.0.0.0:0" | "[::]:0" | ":::0" | "::0"
    ) {
        return None;
    }
    if let Ok(a) = s.parse::<std::net::SocketAddr>() {
        if a.ip().is_unspecified() && a.port() == 0 {
            return None;
        }
        return Some(format!("{}:{}", a.ip(), a.port()));
    }
    // netstat's IPv6 form without brackets: the port after the last colon.
    if let Some((ip, port)) = s.rsplit_once(':') {
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let ip = if ip == "*" { "0.0.0.0" } else { ip };
        if let (Ok(ip), Ok(port)) = (ip.parse::<std::net::IpAddr>(), port.parse::<u16>()) {
            if ip.is_unspecified() && port == 0 {
                return None;
            }
            return Some(format!("{ip}:{port}"));
        }
    }
    Some(s.to_owned())
}

/// A state as `tcp_states.h` names it, from `ss`'s short names or `/proc/net/*`'s hex.
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
        "UNCONN" => "CLOSE".into(),
        "SYN-SENT" | "SYN-RECV" | "FIN-WAIT-1" | "FIN-WAIT-2" | "TIME-WAIT" | "CLOSE-WAIT"
        | "LAST-ACK" => s.replace("-WAIT-", "_WAIT").replace('-', "_"),
        _ => s,
    }
}

#[test]
fn linux_6_1_net_sockets_match_the_guests_own_list() {
    if !fixture_dir(NET).join("ground-truth.json").exists() {
        eprintln!("{NET}: not in fixtures/ yet; skipped");
        return;
    }
    let gt = ground_truth(NET);
    let truth = gt["sockets"].as_array().expect("ground truth `sockets`");
    assert!(!truth.is_empty(), "{NET}: no socket in the ground truth");
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
    let num = |t: &Value, k: &str| t.get(k).and_then(Value::as_u64);
    let text = |t: &Value, k: &str| t.get(k).and_then(Value::as_str).map(str::to_owned);
    for t in truth {
        let pid = num(t, "pid").expect("pid");
        let fd = num(t, "fd").expect("fd");
        let (_, s) = ours
            .iter()
            .find(|(p, s)| *p == pid && s.fd == fd)
            .unwrap_or_else(|| panic!("pid {pid} fd {fd} ({t}) not found: {ours:?}"));
        let sock = s.sock.as_ref().unwrap_or_else(|e| panic!("{t}: {e}"));
        if let Some(ino) = num(t, "inode") {
            assert_eq!(s.inode, ino, "{t}");
        }
        if let Some(proto) = text(t, "proto") {
            assert_eq!(sock.proto, proto, "{t}");
        }
        if t.get("local").is_some() {
            assert_eq!(
                endpoint(sock.local.as_deref()),
                endpoint(t["local"].as_str()),
                "{t}"
            );
        }
        if t.get("remote").is_some() {
            assert_eq!(
                endpoint(sock.remote.as_deref()),
                endpoint(t["remote"].as_str()),
                "{t}"
            );
        }
        if let Some(st) = text(t, "state") {
            assert_eq!(state(&sock.state), state(&st), "{t}");
        }
    }
    eprintln!(
        "{NET}: {} sockets equal to the guest's own list",
        truth.len()
    );
}

#[test]
fn endpoints_and_states_are_normalised_for_comparison() {
    assert_eq!(endpoint(Some("127.0.0.1:22")), Some("127.0.0.1:22".into()));
    assert_eq!(endpoint(Some("[::1]:22")), Some("::1:22".into()));
    assert_eq!(endpoint(Some("::1:22")), Some("::1:22".into()));
    assert_eq!(endpoint(Some("0.0.0.0:0")), None);
    assert_eq!(endpoint(Some("*:*")), None);
    assert_eq!(endpoint(None), None);
    assert_eq!(endpoint(Some("/run/x.sock")), Some("/run/x.sock".into()));
    assert_eq!(state("0A"), "LISTEN");
    assert_eq!(state("ESTAB"), "ESTABLISHED");
    assert_eq!(state("UNCONN"), "CLOSE");
    assert_eq!(state("TIME-WAIT"), "TIME_WAIT");
}
