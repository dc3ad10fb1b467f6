#!/usr/bin/env python3
"""The real-Xen Linux suite's `trace` checks: what `trace --json` reported from outside the
guest (lines tagged `TRACE <mode>: {...}`) against what the guest itself logged (`GUEST
trace-<mode>: ... xv-probe: pid P ppid Q open F enoent E mkdir M chdir C`).

xv-probe (tests/xen-e2e/linux-guest/xv-probe.c) runs as `/bin/xv-probe first "two words"`,
opens /etc/xv-known (the guest logs the fd it got) and /xv-missing/none (the errno), calls
mkdir("/xv-made", 0750) and chdir("/xv-made"), and exits with status 7. For each placement
at least one run of it that the guest logged must be reported in full: its start (pid, ppid,
comm, exe, argv), both opens with the guest's own results, both system calls with their
decoded arguments, and its exit status; the test rootkit's module must be seen loading and
going (its init refuses); and the system call filter (mkdir, chdir) must hold.

Prints one ok/FAIL line per check; the exit status is the number of FAIL lines.
usage: check-trace.py SERIAL_LOG"""
import json
import re
import sys

ARGV = ["/bin/xv-probe", "first", "two words"]


def main(path):
    text = open(path, "rb").read().decode("utf-8", "replace")
    fails = 0

    def check(desc, ok):
        nonlocal fails
        print(("ok   - " if ok else "FAIL - ") + desc)
        fails += 0 if ok else 1

    for mode in ("stealth", "in-place"):
        events = []
        for m in re.finditer(r"TRACE %s: (\{.*\})" % re.escape(mode), text):
            try:
                events.append(json.loads(m.group(1)))
            except ValueError:
                pass  # a line the serial console cut
        runs = [
            dict(zip(("pid", "ppid", "open", "enoent", "mkdir", "chdir"), map(int, g)))
            for g in re.findall(
                r"GUEST trace-%s: .*xv-probe: pid (\d+) ppid (\d+) open (-?\d+) enoent (\d+) mkdir (-?\d+) chdir (-?\d+)"
                % re.escape(mode),
                text,
            )
        ]
        t = "trace %s: " % mode
        check(t + "JSON events were reported (%d) and the guest logged xv-probe runs (%d)" % (len(events), len(runs)),
              events and runs)

        def of(pid, typ):
            return [e for e in events if e.get("pid") == pid and e.get("type") == typ]

        def findings(r):
            pid = r["pid"]
            starts = of(pid, "process_start")
            opens = of(pid, "file_open")
            calls = of(pid, "syscall")
            exits = of(pid, "process_exit")
            return {
                "its start with pid, ppid, comm, exe and argv": any(
                    e.get("ppid") == r["ppid"] and e.get("comm") == "xv-probe"
                    and e.get("exe") == "/bin/xv-probe" and e.get("argv") == ARGV
                    for e in starts),
                "its open of /etc/xv-known with the fd the guest got": any(
                    e.get("path") == "/etc/xv-known" and e.get("fd") == r["open"] for e in opens),
                "its failed open of /xv-missing/none with the guest's errno": any(
                    e.get("path") == "/xv-missing/none" and e.get("errno") == r["enoent"] for e in opens),
                "mkdir with pathname /xv-made and mode 0750": any(
                    e.get("name") == "mkdir" and e.get("args", {}).get("pathname") == "/xv-made"
                    and e.get("args", {}).get("mode") == 0o750 and e.get("comm") == "xv-probe"
                    for e in calls),
                "chdir with filename /xv-made": any(
                    e.get("name") == "chdir" and e.get("args", {}).get("filename") == "/xv-made"
                    for e in calls),
                "its exit with status 7": any(e.get("status") == 7 for e in exits),
            }

        results = [findings(r) for r in runs]
        names = list(findings({"pid": -1, "ppid": -1, "open": 0, "enoent": 0}).keys()) if not runs else list(results[0])
        for name in names:
            check(t + "xv-probe: " + name, any(res[name] for res in results))
        check(t + "one xv-probe run reported in full (all of the above for one pid)",
              any(all(res.values()) for res in results))
        check(t + "the rootkit module's load is reported (module_load attack)",
              any(e.get("type") == "module_load" and e.get("name") == "attack" for e in events))
        check(t + "and its unload after its init refused (module_unload attack)",
              any(e.get("type") == "module_unload" and e.get("name") == "attack" for e in events))
        calls = [e for e in events if e.get("type") == "syscall"]
        check(t + "the system call filter holds (only mkdir and chdir among %d)" % len(calls),
              calls and all(e.get("name") in ("mkdir", "chdir") for e in calls))
    return fails


if __name__ == "__main__":
    sys.exit(min(main(sys.argv[1]), 100))
