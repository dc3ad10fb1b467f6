//! An independent reader of what a SIEM receives: RFC 5424 syslog messages (the header
//! grammar of §6) whose MSG is a CEF record, parsed by the CEF specification's rules (header
//! fields split at unescaped `|`, `\|` and `\\` unescaped; extension `key=value` pairs split
//! before each unescaped `=`'s key, `\=`, `\\`, `\n`, `\r` unescaped). It panics on anything
//! that does not follow them. Written from the specifications, not from xenvmi's encoder.

#![allow(dead_code)]

use std::collections::HashMap;

/// RFC 5424 §6: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`.
pub struct Syslog5424 {
    pub pri: u32,
    pub timestamp: String,
    pub hostname: String,
    pub app: String,
    pub procid: String,
    pub msgid: String,
    pub msg: String,
}

pub fn parse_5424(m: &str) -> Syslog5424 {
    let rest = m.strip_prefix('<').expect("PRI starts with <");
    let (pri, rest) = rest.split_once('>').unwrap();
    assert!(pri.len() <= 3 && pri.chars().all(|c| c.is_ascii_digit()));
    let rest = rest.strip_prefix("1 ").expect("VERSION 1");
    let mut parts = rest.splitn(7, ' ');
    let mut next = |max: usize| {
        let f = parts.next().unwrap().to_owned();
        assert!(!f.is_empty() && f.len() <= max, "{f:?}");
        assert!(
            f.bytes().all(|b| (33..=126).contains(&b)),
            "PRINTUSASCII: {f:?}"
        );
        f
    };
    let timestamp = next(64);
    let hostname = next(255);
    let app = next(48);
    let procid = next(128);
    let msgid = next(32);
    let sd = next(usize::MAX);
    assert_eq!(sd, "-", "no structured data");
    let msg = parts.next().unwrap_or("").to_owned();
    Syslog5424 {
        pri: pri.parse().unwrap(),
        timestamp,
        hostname,
        app,
        procid,
        msgid,
        msg,
    }
}

/// A CEF record: the seven header fields and the extension.
pub fn parse_cef(s: &str) -> (Vec<String>, HashMap<String, String>) {
    let s = s.strip_prefix("CEF:").expect("CEF:");
    let mut header = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while header.len() < 7 {
        match chars.next().expect("7 header fields") {
            '\\' => match chars.next().unwrap() {
                c @ ('\\' | '|') => cur.push(c),
                c => panic!("bad header escape \\{c}"),
            },
            '|' => header.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    let ext: Vec<char> = chars.collect();
    // Unescaped '=' positions; each key is the word before it.
    let eqs: Vec<usize> = (0..ext.len())
        .filter(|&i| {
            ext[i] == '=' && (i == 0 || ext[i - 1] != '\\' || (i >= 2 && ext[i - 2] == '\\'))
        })
        .collect();
    let mut map = HashMap::new();
    for (k, &eq) in eqs.iter().enumerate() {
        let key_start = ext[..eq]
            .iter()
            .rposition(|&c| c == ' ')
            .map_or(0, |p| p + 1);
        let key: String = ext[key_start..eq].iter().collect();
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric()),
            "key {key:?}"
        );
        let end = match eqs.get(k + 1) {
            Some(&next) => ext[..next].iter().rposition(|&c| c == ' ').unwrap(),
            None => ext.len(),
        };
        let raw = &ext[eq + 1..end];
        let mut v = String::new();
        let mut it = raw.iter();
        while let Some(&c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('\\') => v.push('\\'),
                    Some('=') => v.push('='),
                    Some('n') => v.push('\n'),
                    Some('r') => v.push('\r'),
                    o => panic!("bad extension escape {o:?}"),
                }
            } else {
                v.push(c);
            }
        }
        assert!(map.insert(key.clone(), v).is_none(), "{key} twice");
    }
    (header, map)
}
