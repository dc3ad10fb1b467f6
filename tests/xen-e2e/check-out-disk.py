#!/usr/bin/env python3
"""check-out-disk.py LOG OUTDIR VOL SYMDIR XENVMI: the real-Xen Linux suite's attestation and
capture checks, judged on the host from what dom0 logged (LOG, the serial log) and from the
files it wrote to the out disk (OUTDIR, taken out by disk-extract.py):

- attest learn's manifest lists the guest's workers; attest enforce right after it finds
  nothing (no false positive);
- once the guest's init has started /bin/xv-gamma (its own log line gives the pid), attest
  enforce exits 3 with an unexpected_executable deviation for it;
- xenvmi guard's alerts reached a syslog listener in dom0 as RFC 5424 + CEF, one kind each
  (the rootkits' moves by insmod; xvlive's module-text write by a kworker; xvhide's
  hidden_module, reported);
- the local syslog listener in dom0 got the attestation alert: parsed here as RFC 5424 with a CEF payload
  (an independent parser, by the RFC's and CEF's rules), naming xv-gamma, its pid, the attest
  policy, the capture taken and its file;
- that capture, brought out of the emulator: Volatility3's linux.pslist and xenvmi's ps both
  list xv-gamma with the pid the guest gave;
- the paused dump (xenvmi dump), brought out too: both list xv-alpha and xv-beta with the
  pids cr3-trace saw live.

Prints ok/FAIL lines; exit status = number of FAILs."""
import json
import os
import re
import subprocess
import sys

log_path, outdir, vol, symdir, xenvmi = sys.argv[1:6]
log = open(log_path, "rb").read().decode("utf-8", "replace")
fails = 0


def check(ok, what):
    global fails
    print(("ok   - " if ok else "FAIL - ") + what)
    fails += 0 if ok else 1


def tagged(tag):
    return [l.split(tag, 1)[1] for l in log.splitlines() if tag in l]


def json_lines(tag):
    out = []
    for l in tagged(tag):
        try:
            out.append(json.loads(l.strip()))
        except ValueError:
            pass
    return out


# --- attest learn, and a clean enforce
manifest = "\n".join(tagged("ATTEST manifest: "))
check("/bin/xv-alpha" in manifest and "/bin/xv-beta" in manifest and "xv-gamma" not in manifest,
      "attest learn (live domain): the manifest lists /bin/xv-alpha and /bin/xv-beta, not xv-gamma")
clean = json_lines("ATTEST clean: ")
check("PAYLOAD: attest enforce clean exit 0" in log and clean and clean[0].get("attested") is True,
      "attest enforce right after learn: attested, exit 0 (no false positive)")

# --- xv-gamma: the guest's own word for its pid
m = re.search(r"xvguest: xv-gamma started, pid (\d+)", log)
gpid = int(m[1]) if m else None
check(gpid is not None, f"the guest started /bin/xv-gamma (pid {gpid})")
gamma = json_lines("ATTEST gamma: ")
devs = gamma[0].get("deviations", []) if gamma else []
hit = [d for d in devs if d.get("kind") == "unexpected_executable" and "/bin/xv-gamma" in json.dumps(d)]
check("PAYLOAD: attest enforce gamma exit 3" in log and hit
      and (gpid is None or str(gpid) in json.dumps(hit[0]["subject"])),
      "attest enforce: exit 3, an unexpected_executable deviation for /bin/xv-gamma with its pid")


# --- the syslog listener's messages: RFC 5424 header, CEF payload
def parse_5424(m):
    r = re.fullmatch(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*?\]) (.*)", m, re.S)
    if not r:
        return None
    return {"pri": int(r[1]), "timestamp": r[2], "host": r[3], "app": r[4], "procid": r[5],
            "msgid": r[6], "msg": r[8]}


def parse_cef(msg):
    if not msg.startswith("CEF:"):
        return None
    header, i, cur = [], 4, ""
    while len(header) < 7 and i < len(msg):
        c = msg[i]
        if c == "\\" and i + 1 < len(msg):
            cur += msg[i + 1]; i += 2; continue
        if c == "|":
            header.append(cur); cur = ""
        else:
            cur += c
        i += 1
    ext, rest = {}, msg[i:]
    # keys: an unescaped `key=` preceded by a space (or the start)
    keys = [k for k in re.finditer(r"(?:^| )([A-Za-z0-9_]+)=", rest)
            if rest[k.end() - 2] != "\\"]
    for n, k in enumerate(keys):
        end = keys[n + 1].start() if n + 1 < len(keys) else len(rest)
        v = rest[k.end():end]
        v = re.sub(r"\\(.)", lambda e: {"n": "\n", "r": "\r"}.get(e[1], e[1]), v)
        ext[k[1]] = v
    return header, ext


alerts = []
for line in tagged("SYSLOG: "):
    s = parse_5424(line)
    c = s and parse_cef(s["msg"])
    if c:
        alerts.append((s, c[0], c[1]))
mine = [a for a in alerts if a[1][4:5] == ["unexpected_executable"] and a[2].get("sproc") == "xv-gamma"]
check(bool(mine), f"syslog listener in dom0: {len(alerts)} RFC 5424/CEF alerts, one for xv-gamma's unexpected executable")
if mine:
    s, h, e = mine[0]
    check(s["app"] == "xenvmi" and s["msgid"] == "unexpected_executable" and h[0] == "0"
          and h[1:3] == ["xenvmi", "xenvmi"] and e.get("cs1Label") == "policy" and e.get("cs1") == "attest"
          and e.get("act") == "reported" and e.get("dvchost") == "xvguest"
          and (gpid is None or e.get("spid") == str(gpid)),
          "its fields: app and MSGID, CEF vendor/product, policy attest, action reported, VM xvguest, pid of xv-gamma")
    check(e.get("outcome") == "captured_paused" and e.get("filePath") == "/tmp/gamma.elf"
          and "/bin/xv-gamma" in e.get("reason", ""),
          "it says the guest was captured (outcome captured_paused, filePath) and why (reason names /bin/xv-gamma)")


# --- xenvmi guard's alerts, as the syslog listener in dom0 got them (one per kind printed):
# each a denial by its policy, of the VM, by the process that loaded the rootkit (insmod,
# run by the guest's init).
# (The guest's CR4 has SMEP but not SMAP: the CR4 alert is cr4_smep_clear there.)
POLICY = [("cr0_wp_clear", "cr0-wp"), ("cr4_smep(_smap)?_clear", "cr4"), ("msr_lstar_write", "msr"),
          ("idt_write", "descriptor-tables"), ("kernel_rodata_write", "kernel-text"),
          ("modprobe_path_write", "modprobe-path")]
guard = {}
for line in tagged("GSYSLOG: "):
    s = parse_5424(line)
    c = s and parse_cef(s["msg"])
    if c:
        guard.setdefault(c[0][4], (s, c[0], c[1]))
for what, policy in POLICY:
    got = next((g for k, g in guard.items() if re.fullmatch(what, k)), None)
    check(bool(got) and re.fullmatch(what, got[0]["msgid"]) and got[2].get("act") == "denied"
          and got[2].get("cs1") == policy and got[2].get("dvchost") == "xvguest"
          and got[2].get("sproc") == "insmod",
          f"xenvmi guard --syslog: the dom0 listener got {what} as RFC 5424/CEF (policy {policy}, denied, VM xvguest, by insmod)")
# xvlive patches its own text from a delayed work item (a kworker); xvhide is found by the
# cross-view, whichever process's address-space switch ran the check: its alert is reported.
got = guard.get("module_text_write")
check(bool(got) and got[0]["msgid"] == "module_text_write" and got[2].get("act") == "denied"
      and got[2].get("cs1") == "module-text" and got[2].get("dvchost") == "xvguest"
      and got[2].get("sproc", "").startswith("kworker"),
      "xenvmi guard --syslog: the dom0 listener got module_text_write as RFC 5424/CEF (policy module-text, denied, VM xvguest, by a kworker)")
got = guard.get("hidden_module")
check(bool(got) and got[0]["msgid"] == "hidden_module" and got[2].get("act") == "reported"
      and got[2].get("cs1") == "hidden-modules" and got[2].get("dvchost") == "xvguest"
      and ("xvhide" in got[0]["msg"] or "xvghost" in got[0]["msg"]),
      "xenvmi guard --syslog: the dom0 listener got hidden_module as RFC 5424/CEF (policy hidden-modules, reported, VM xvguest, naming xvhide or xvghost)")


# --- the files brought out of the emulator
def vol_pslist(core):
    cache = os.path.join(outdir, "vol-cache")
    os.makedirs(cache, exist_ok=True)
    r = subprocess.run([vol, "-q", "--offline", "--cache-path", cache, "-s", symdir, "-r", "json",
                        "-f", core, "linux.pslist.PsList"], capture_output=True, text=True)
    try:
        return {(p["COMM"], p["PID"]) for p in json.loads(r.stdout)}
    except ValueError:
        print(r.stderr[-1500:])
        return set()


def xenvmi_ps(core):
    r = subprocess.run([xenvmi, "ps", core, "--json"], capture_output=True, text=True)
    try:
        return {(p["comm"], p["pid"]) for p in json.loads(r.stdout)["processes"]}
    except (ValueError, KeyError):
        print(r.stderr[-1500:])
        return set()


core = os.path.join(outdir, "gamma.elf")
check(os.path.exists(core), "the capture taken on deviation came out of the emulator (out disk)")
if os.path.exists(core) and gpid is not None:
    check(("xv-gamma", gpid) in vol_pslist(core), f"Volatility3 linux.pslist on it lists xv-gamma, pid {gpid}")
    check(("xv-gamma", gpid) in xenvmi_ps(core), f"xenvmi ps on it lists xv-gamma, pid {gpid}")

core = os.path.join(outdir, "dump-paused.elf")
check(os.path.exists(core), "the paused xenvmi dump came out of the emulator (out disk)")
if os.path.exists(core):
    live = {}
    for w in ("xv-alpha", "xv-beta"):
        m = re.search(r"CR3 .* pid +(\d+)  " + w, log)
        live[w] = int(m[1]) if m else None
    v, x = vol_pslist(core), xenvmi_ps(core)
    for w, pid in live.items():
        check(pid is not None and (w, pid) in v, f"Volatility3 linux.pslist on it lists {w} with the pid cr3-trace saw live ({pid})")
        check(pid is not None and (w, pid) in x, f"xenvmi ps on it lists {w} with the pid cr3-trace saw live ({pid})")
sys.exit(fails)
