#!/usr/bin/env python3
"""Compare Volatility3's view of a Linux memory image with xenvmi's `pslist --json --detail`.

usage: scripts/vol_compare.py --vol-dir DIR --xenvmi PSLIST.json [--truth ground-truth.json]
                              [--summary-json OUT.json] [--max-diffs N]

DIR holds `vol -r json` outputs named after the plugin (as scripts/vol-compare.sh writes them,
`.json` or `.json.xz`): linux.psaux.PsAux, linux.envars.Envars, linux.lsof.Lsof,
linux.proc.Maps, linux.sockstat.Sockstat. Missing ones are skipped. PSLIST.json is the output of
`cargo run --release --example pslist -- --json --detail IMAGE` for the same image.

Per plugin it prints how many processes agree, then each difference item by item (an item is
one process's cmdline, comm, ppid or environment, one fd, one VMA by start address, one socket
by (pid, fd)), and a count of the differences by kind:

  psaux    cmdline: vol ARGS (argv joined by spaces; kernel threads "[comm]") vs xenvmi
           `cmdline` joined by spaces (kernel threads: empty, counted equal to "[comm]");
           also comm and ppid.
  envars   environment: vol KEY=VALUE rows vs xenvmi `environ`.
  lsof     open files: vol (FD, Path) of each process's leader thread vs xenvmi `files`
           (`fd`, `path`).
  maps     VMAs: vol (Start, End, Flags, PgOff, File Path) vs xenvmi `maps` (`start`, `end`,
           `perms` minus its p/s letter, which vol does not print, `offset`, `path`).
           vol names anonymous memory "Anonymous Mapping", xenvmi null: both mean
           "no name" here; vol's "[vdso]" etc. are kept (xenvmi gives them no name).
  sockstat sockets: vol rows keyed by (pid, fd) vs xenvmi per-process `sockets` (fields
           `proto` tcp/udp/tcp6/udp6/unix, `local`, `remote` as "a.b.c.d:port", "[v6]:port"
           or separate `local_addr`/`local_port`..., `state`, `fd`, `inode` assumed; inode is
           not compared, vol does not print it). While xenvmi has no `sockets` field, vol
           is compared with the ground truth alone.

With --truth (a fixture's ground-truth.json, i.e. what the guest's own /proc said) an item is
also a difference when vol and xenvmi agree but the guest said otherwise, and each difference
shows the guest's value and a verdict: vol=truth, xenvmi=truth, neither=truth, or 'both differ
from truth' (vol and xenvmi agree with each other, not with the guest). The ground truth has
cmdline for every fixture; environ, fds, maps and sockets only where the fixture recorded them
(linux-6.1-net).
"""
import argparse, collections, ipaddress, json, lzma, os, re, sys


def load(path):
    op = lzma.open if path.endswith('.xz') else open
    with op(path, 'rt') as f:
        return json.load(f)


def flat(rows):
    for r in rows:
        yield r
        yield from flat(r.get('__children', []))


def vol_rows(d, plugin):
    for name in (plugin + '.json', plugin + '.json.xz'):
        p = os.path.join(d, name)
        if os.path.exists(p) and os.path.getsize(p) > 0:
            try:
                return list(flat(load(p)))
            except json.JSONDecodeError as e:
                print(f'{plugin}: cannot parse {p}: {e}')
                return None
    return None


NO_TRUTH = object()
NOT_READ = object()     # xenvmi does not output this part (yet): compare vol with the truth only


class Report:
    """Per plugin: items (pid, what) with vol's, xenvmi's and (if known) the guest's value.

    An item is a difference when vol and xenvmi disagree, or when the guest's own value is
    known and either side disagrees with it (so 'both wrong the same way' is shown too)."""

    def __init__(self, name, max_diffs):
        self.name, self.max_diffs = name, max_diffs
        self.pids_ok, self.pids_bad = set(), set()
        self.items, self.diffs, self.only_vol, self.only_x = 0, [], [], []
        self.verdicts = collections.Counter()
        self.notes = []

    def item(self, pid, comm, what, vol, xen, truth=NO_TRUTH):
        self.items += 1
        has = truth is not NO_TRUTH
        if xen is NOT_READ:
            if not has or vol == truth:
                self.pids_ok.add(pid)
                return
            xen = 'n/a'
        elif vol == xen and (not has or vol == truth):
            self.pids_ok.add(pid)
            return
        self.pids_bad.add(pid)
        d = {'pid': pid, 'comm': comm, 'what': what, 'vol': vol, 'xenvmi': xen}
        if has:
            d['truth'] = truth
            d['verdict'] = ('vol differs from truth (xenvmi n/a)' if xen == 'n/a' else
                            'vol=truth' if vol == truth and xen != truth else
                            'xenvmi=truth' if xen == truth and vol != truth else
                            'both differ from truth' if vol == xen else 'neither=truth')
            self.verdicts[d['verdict']] += 1
        self.diffs.append(d)

    def print(self):
        ok = len(self.pids_ok - self.pids_bad)
        print(f'== {self.name}: {ok} processes agree, {len(self.pids_bad)} with differences '
              f'({len(self.diffs)} of {self.items} items), {len(self.only_vol)} pids only in vol, '
              f'{len(self.only_x)} only in xenvmi'
              + (f'; verdicts {dict(self.verdicts)}' if self.verdicts else ''))
        kinds = collections.Counter(
            (re.sub(r'\b(0x[0-9a-f]+|\d+)\b', 'N', d['what']), d.get('verdict', 'vol!=xenvmi'))
            for d in self.diffs)
        for (k, v), n in sorted(kinds.items()):
            print(f'   kind: {k} [{v}]: {n}')
        for n in self.notes:
            print(f'   note: {n}')
        for d in self.diffs[:self.max_diffs]:
            line = f'   pid {d["pid"]} {d["comm"]}: {d["what"]}: vol {fmt(d["vol"])} | xenvmi {fmt(d["xenvmi"])}'
            if 'truth' in d:
                line += f' | truth {fmt(d["truth"])} -> {d["verdict"]}'
            print(line)
        if len(self.diffs) > self.max_diffs:
            print(f'   ... {len(self.diffs) - self.max_diffs} more')
        for what, lst in (('only in vol', self.only_vol), ('only in xenvmi', self.only_x)):
            if lst:
                print(f'   pids {what}: {lst[:20]}{" ..." if len(lst) > 20 else ""}')

    def summary(self):
        return {'processes_agree': len(self.pids_ok - self.pids_bad),
                'processes_with_differences': len(self.pids_bad), 'items': self.items,
                'differences': self.diffs, 'only_vol': self.only_vol, 'only_xenvmi': self.only_x,
                'verdicts': dict(self.verdicts), 'notes': self.notes}


def fmt(v):
    s = json.dumps(v)
    return s if len(s) < 300 else s[:300] + '...'


def split_pids(r, vol, xp):
    for pid in sorted(set(vol) - set(xp)):
        r.only_vol.append(pid)


# ------------------------------------------------------------------ psaux --
def cmp_psaux(rows, xp, gt, r):
    vol = {x['PID']: x for x in rows}
    for pid in sorted(set(xp) - set(vol)):
        r.only_x.append(pid)
    split_pids(r, vol, xp)
    for pid in sorted(set(vol) & set(xp)):
        v, x, g = vol[pid], xp[pid], gt.get(pid)
        xargs = x.get('cmdline')
        if xargs is None:
            xs = None
        elif not xargs and x.get('kernel_thread'):
            xs = f'[{x["comm"]}]'              # vol's notation for "no user arguments"
        else:
            xs = ' '.join(xargs)
        t = NO_TRUTH
        if g and g.get('kthread'):
            t = f'[{g["comm"]}]'
        elif g and 'cmdline' in g:
            t = ' '.join(g['cmdline'])
        r.item(pid, x['comm'], 'cmdline', v['ARGS'], xs, t)
        r.item(pid, x['comm'], 'comm', v['COMM'], x['comm'], g['comm'] if g else NO_TRUTH)
        r.item(pid, x['comm'], 'ppid', v['PPID'], x['ppid'], g['ppid'] if g else NO_TRUTH)


# ----------------------------------------------------------------- envars --
def cmp_envars(rows, xp, gt, r):
    vol = collections.defaultdict(list)
    for x in rows:
        vol[x['PID']].append(f'{x["KEY"]}={x["VALUE"]}')
    split_pids(r, vol, xp)
    for pid, x in sorted(xp.items()):
        g = gt.get(pid)
        xe = x.get('environ')
        if x.get('kernel_thread') and not xe and pid not in vol:
            continue                          # kernel threads: nothing on either side
        t = g['environ'] if g and 'environ' in g else NO_TRUTH
        r.item(pid, x['comm'], 'environ', vol.get(pid, []), xe, t)


# ------------------------------------------------------------------- lsof --
def cmp_lsof(rows, xp, gt, r):
    vol = collections.defaultdict(dict)
    for x in rows:
        if x.get('TID', x['PID']) == x['PID']:          # the leader's table (threads share it)
            vol[x['PID']][str(x['FD'])] = x['Path']
    split_pids(r, vol, xp)
    for pid, x in sorted(xp.items()):
        g = gt.get(pid)
        xf = x.get('files')
        if xf is None:
            r.item(pid, x['comm'], 'files', vol.get(pid), None)
            continue
        xd = {str(f['fd']): f.get('path') for f in xf}
        vd = vol.get(pid, {})
        has = g is not None and 'fds' in g
        fds = set(vd) | set(xd) | (set(g['fds']) if has else set())
        for fd in sorted(fds, key=int):
            r.item(pid, x['comm'], f'fd {fd}', vd.get(fd), xd.get(fd),
                   g['fds'].get(fd) if has else NO_TRUTH)


# ------------------------------------------------------------------- maps --
def cmp_maps(rows, xp, gt, r):
    vol = collections.defaultdict(dict)
    for x in rows:
        p = x['File Path']
        vol[x['PID']][hex(x['Start'])] = (hex(x['End']), x['Flags'], hex(x['PgOff']),
                                          None if p == 'Anonymous Mapping' else p)
    split_pids(r, vol, xp)
    names = ('end', 'perms', 'offset', 'path')
    for pid, x in sorted(xp.items()):
        xm = x.get('maps')
        if x.get('kernel_thread') and pid not in vol and not xm:
            continue
        if xm is None:
            r.item(pid, x['comm'], 'maps', len(vol.get(pid, {})), None)
            continue
        xd = {m['start']: (m['end'], m['perms'][:3], m['offset'], m.get('path')) for m in xm}
        vd = vol.get(pid, {})
        g = gt.get(pid)
        has = g is not None and 'maps' in g
        gd = ({m['start']: (m['end'], m['perms'][:3], m['pgoff'], m['path'] or None)
               for m in g['maps']} if has else {})
        for st in sorted(set(vd) | set(xd) | set(gd), key=lambda k: int(k, 16)):
            a, b, t = vd.get(st), xd.get(st), gd.get(st) if has else NO_TRUTH
            what = f'vma {st}'
            if a and b and a != b:
                what += ' ' + ','.join(n for n, p, q in zip(names, a, b) if p != q)
            elif a and b and t not in (NO_TRUTH, None) and a != t:
                what += ' ' + ','.join(n for n, p, q in zip(names, a, t) if p != q)
            r.item(pid, x['comm'], what, a and list(a), b and list(b),
                   t if t is NO_TRUTH or t is None else list(t))


# --------------------------------------------------------------- sockstat --
def norm_ep(addr, port=None):
    """'a.b.c.d:p', '[v6]:p', ('addr', port) -> [canonical addr, int port]."""
    if addr is None:
        return None
    if isinstance(addr, dict):
        addr, port = addr.get('addr', addr.get('address')), addr.get('port')
    addr = str(addr)
    if port is None:
        if addr.startswith('['):
            a, _, p = addr[1:].partition(']:')
        else:
            a, _, p = addr.rpartition(':')
        addr, port = a, p
    try:
        ip = ipaddress.ip_address(addr.strip('[]'))
        if ip.version == 6 and ip.ipv4_mapped:
            addr = '::ffff:' + str(ip.ipv4_mapped)
        else:
            addr = str(ip)
    except ValueError:
        pass
    try:
        port = int(port)
    except (TypeError, ValueError):
        pass
    return [addr, port]


def norm_state(proto, s):
    if s is None:
        return None
    s = str(s).upper().replace('TCP_', '')
    if proto and proto.startswith('udp') and s in ('CLOSE', 'UNCONNECTED', '7'):
        return 'UNCONNECTED'
    return s


def vol_sock(x):
    fam, proto = x.get('Family', ''), (x.get('Proto') or '').lower()
    if fam == 'AF_UNIX':
        p = 'unix'
    elif fam in ('AF_INET', 'AF_INET6'):
        p = proto + ('6' if fam == 'AF_INET6' else '')
    else:
        p = f'{fam}/{proto}'
    ent = {'proto': p, 'state': norm_state(p, x.get('State'))}
    if p == 'unix':
        ent['local'] = x.get('Source Addr')
        ent['remote'] = x.get('Destination Addr')
    else:
        ent['local'] = norm_ep(x.get('Source Addr'), x.get('Source Port'))
        ent['remote'] = norm_ep(x.get('Destination Addr'), x.get('Destination Port'))
    return ent


def x_sock(s):
    p = (s.get('proto') or '').lower()
    ent = {'proto': p, 'state': norm_state(p, s.get('state'))}
    for side in ('local', 'remote'):
        v = s.get(side)
        if v is None and f'{side}_addr' in s:
            v = (s[f'{side}_addr'], s.get(f'{side}_port'))
        ent[side] = v if p == 'unix' else (norm_ep(*v) if isinstance(v, (tuple, list)) else norm_ep(v))
    return ent


def cmp_sockstat(rows, xp, gt, gt_socks, r):
    vol = collections.defaultdict(dict)
    for x in rows:
        if x.get('TID', x['PID']) == x['PID']:
            vol[x['PID']][int(x['FD'])] = vol_sock(x)
    truth = {}
    for s in gt_socks:
        for o in s.get('owners', []):
            t = {'proto': s['proto'], 'state': norm_state(s['proto'], s['state'])}
            if s['proto'] == 'unix':
                t['local'], t['remote'] = s.get('path'), None
            else:
                t['local'], t['remote'] = norm_ep(s['local']), norm_ep(s['remote'])
            truth[(o['pid'], o['fd'])] = t
    have_x = any('sockets' in x for x in xp.values())
    if not have_x:
        r.notes.append('xenvmi output has no "sockets" field yet: vol compared with the '
                       'ground truth only' if gt_socks else
                       'xenvmi output has no "sockets" field yet: vol rows listed as differences')
    if gt_socks and any(s['proto'] == 'unix' for s in gt_socks):
        r.notes.append("unix 'state' in the ground truth is /proc/net/unix's St column: "
                       "CONNECTED there means sk_state == TCP_ESTABLISHED (a bound datagram "
                       "socket shows it too); vol prints the socket's own state")
    pids = set(vol) | {p for p, _ in truth} | {p for p, x in xp.items() if x.get('sockets')}
    for pid in sorted(pids):
        x = xp.get(pid, {})
        xs = {int(s['fd']): x_sock(s) for s in (x.get('sockets') or []) if s.get('fd') is not None}
        vs = vol.get(pid, {})
        for fd in sorted(set(vs) | set(xs) | {f for p, f in truth if p == pid}):
            r.item(pid, x.get('comm', '?'), f'fd {fd}', vs.get(fd),
                   xs.get(fd) if have_x or not gt_socks else NOT_READ,
                   truth.get((pid, fd)) if gt_socks else NO_TRUTH)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--vol-dir', required=True)
    ap.add_argument('--xenvmi', required=True, help='pslist --json --detail output')
    ap.add_argument('--truth', help="fixture's ground-truth.json")
    ap.add_argument('--summary-json', help='write all results as JSON here')
    ap.add_argument('--max-diffs', type=int, default=40)
    a = ap.parse_args()
    xj = load(a.xenvmi)
    xp = {p['pid']: p for p in xj['processes']}
    gtj = load(a.truth) if a.truth else {}
    gt = {p['pid']: p for p in gtj.get('processes', [])}
    out = {}
    plugins = [
        ('linux.psaux.PsAux', 'psaux (cmdline, comm, ppid)', lambda rows, r: cmp_psaux(rows, xp, gt, r)),
        ('linux.envars.Envars', 'envars (environ)', lambda rows, r: cmp_envars(rows, xp, gt, r)),
        ('linux.lsof.Lsof', 'lsof (files)', lambda rows, r: cmp_lsof(rows, xp, gt, r)),
        ('linux.proc.Maps', 'proc.Maps (maps)', lambda rows, r: cmp_maps(rows, xp, gt, r)),
        ('linux.sockstat.Sockstat', 'sockstat (sockets)',
         lambda rows, r: cmp_sockstat(rows, xp, gt, gtj.get('sockets', []) + gtj.get('unix_sockets', []), r)),
    ]
    print(f'xenvmi: {len(xp)} processes ({sum(not p.get("kernel_thread") for p in xp.values())} user)'
          + (f'; ground truth: {len(gt)} processes' if gt else ''))
    ps = vol_rows(a.vol_dir, 'linux.psaux.PsAux') or vol_rows(a.vol_dir, 'linux.pslist.PsList')
    if ps is not None and not ps:
        print('vol found no processes at all (an empty table: it could not build the kernel layer; '
              'e.g. Volatility3 2.28 has no layer for 5-level paging): nothing to compare')
        out['error'] = 'vol found no processes'
        plugins = []
    for plugin, title, fn in plugins:
        rows = vol_rows(a.vol_dir, plugin)
        if rows is None:
            print(f'== {title}: no {plugin} output in {a.vol_dir}, skipped')
            continue
        r = Report(f'{title} [{plugin}, {len(rows)} rows]', a.max_diffs)
        fn(rows, r)
        r.print()
        out[plugin] = r.summary()
    if a.summary_json:
        with open(a.summary_json, 'w') as f:
            json.dump(out, f, indent=1)


if __name__ == '__main__':
    sys.exit(main())
