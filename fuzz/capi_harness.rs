//! The `capi` fuzz target's harness (shared with tests/fuzz_regressions.rs, which replays
//! the seeds and regressions in ordinary `cargo test`).
//!
//! The C ABI as a C program would call it: the input is a small guest image, vCPU registers
//! and a sequence of calls (open, read, translate, discover, walk, free, and on a simulated
//! domain: monitors, views, scripted guest actions, event loops whose callback answers with
//! arbitrary, often invalid, responses; policy sets from arbitrary specifications and guards
//! running them; manifests from arbitrary bytes, attested against and learned), made through the `extern "C"` functions with
//! arbitrary values and lengths, NULL handles included (operation 7 with an odd a[0] is
//! `xvmi_os_discover`, which tells the OS apart itself). Only valid-pointer sequences: a freed
//! handle is never used again (that is undefined behaviour for C callers too).
//!
//! Checked: no call panics (XVMI_ERR_PANIC would be a bug), every string the library writes
//! is NUL-terminated inside its buffer, and after every session is freed the simulated domain
//! has no paused vCPU, monitor, view, restriction or ring left: every event was answered (also
//! when views were destroyed before teardown). Writes read back (physical, and virtual through
//! the translations from before the write), a failed virtual write changed nothing, a snapshot
//! is never written, registers are set only while the domain handle holds a pause, and the
//! simulated domain's pause count is always the one the handle holds.
//!
//! Operation 21 with argument byte 14 = 0xfe is a policy set and a guard, 0xff a manifest.
//!
//! Input format (hand-decoded, so seeds are easy to write; fuzz/make-capi-seeds.py writes some):
//! byte 0: vCPU count (0..=3); per vCPU 8 bytes CR3 and 1 byte flags (bit 0: LA57, bit 1:
//! kernel mode); 4 bytes image length; the image; then operations, one opcode byte and 16
//! argument bytes each (zero-filled at the end of the input).
#![allow(clippy::missing_safety_doc, clippy::too_many_lines, dead_code)]

use std::ffi::{c_char, c_void, CStr};
use std::ptr::{null, null_mut};

use xenvmi::capi::*;

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Vec<u8> {
        let k = n.min(self.0.len());
        let mut v = self.0[..k].to_vec();
        self.0 = &self.0[k..];
        v.resize(n, 0);
        v
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
}

/// What the event callback answers with, and what it saw.
struct Answers {
    script: Vec<[u8; 16]>,
    next: usize,
    events: u64,
    /// Calls into the library from the callback (allowed: read memory of the domain).
    mem: *const xvmi_memory,
    session: *const xvmi_session,
    /// The last context a callback got (used after the run: must be refused).
    kept: *mut xvmi_context,
}

/// The context callback: the hook operations, chosen by the answer script, then the answer.
unsafe extern "C" fn on_context(
    userdata: *mut c_void,
    ctx: *mut xvmi_context,
    event: *const xvmi_event,
    response: *mut xvmi_response,
) -> i32 {
    let a = &mut *(userdata as *mut Answers);
    a.kept = ctx;
    let mut hit = xvmi_hit::default();
    assert_eq!(xvmi_context_hit(ctx, &mut hit), XVMI_OK);
    assert!(hit.kind <= XVMI_HIT_RETURN);
    let s = a
        .script
        .get(a.next % a.script.len().max(1))
        .copied()
        .unwrap_or([0; 16]);
    let gpa = u64::from(u32::from_le_bytes([s[8], s[9], s[10], 0])) % 0x10_0000;
    let mut id = 0u64;
    match s[7] % 8 {
        0 => ok_or_expected(xvmi_context_hook_add(ctx, gpa, &mut id)),
        1 => ok_or_expected(xvmi_context_hook_add_va(
            ctx,
            (*event).regs.rip ^ u64::from(s[11]),
            &mut id,
        )),
        2 => ok_or_expected(xvmi_context_hook_remove(ctx, hit.id ^ u64::from(s[11] & 1))),
        3 => ok_or_expected(xvmi_context_return_hook(ctx, u64::from(s[11]), &mut id)),
        4 => ok_or_expected(xvmi_context_set_mem_access(
            ctx,
            u16::from(s[11] % 3),
            gpa >> 12,
            u32::from(s[12] % 9),
        )),
        5 => ok_or_expected(xvmi_context_singlestep(
            ctx,
            u32::from(s[11] % 4),
            s[12] % 3,
        )),
        6 => ok_or_expected(xvmi_context_stop(ctx)),
        _ => {}
    }
    on_event(userdata, event, response)
}

unsafe extern "C" fn on_event(
    userdata: *mut c_void,
    event: *const xvmi_event,
    response: *mut xvmi_response,
) -> i32 {
    let a = &mut *(userdata as *mut Answers);
    a.events += 1;
    let e = &*event;
    let r = &mut *response;
    // Reading guest memory from the callback is allowed.
    if !a.mem.is_null() {
        let mut b = [0u8; 8];
        let _ =
            xvmi_memory_read_virtual(a.mem, e.regs.cr3, e.regs.rip, b.as_mut_ptr(), 8, null_mut());
    }
    // Calling into its own session is refused, not undefined.
    if !a.session.is_null() {
        assert_eq!(
            xvmi_session_switch_view(a.session, 0),
            XVMI_ERR_INVALID_ARGUMENT
        );
    }
    if a.script.is_empty() {
        return XVMI_RUN_CONTINUE;
    }
    let s = a.script[a.next % a.script.len()];
    a.next += 1;
    // Mostly valid answers, sometimes garbage.
    r.action = if s[0] & 0x80 != 0 {
        u32::from(s[1])
    } else {
        u32::from(s[1] & 3)
    };
    r.flags = if s[0] & 0x40 != 0 {
        u32::from(s[2])
    } else {
        u32::from(s[2] & 0xf)
    };
    r.view = u16::from(s[3] & 0xf);
    r.fast_singlestep_view = u16::from(s[4] & 0xf);
    r.regs.rip ^= u64::from(s[5]);
    if s[6] & 1 != 0 {
        XVMI_RUN_STOP
    } else {
        XVMI_RUN_CONTINUE
    }
}

unsafe extern "C" fn on_process(
    ud: *mut c_void,
    p: *const xvmi_process,
    status: xvmi_result,
) -> i32 {
    let left = &mut *(ud as *mut u32);
    if status == XVMI_OK {
        let p = &*p;
        assert!(p.name.contains(&0), "process name not NUL-terminated");
    } else {
        assert!(p.is_null());
    }
    if *left == 0 {
        return XVMI_WALK_STOP;
    }
    *left -= 1;
    XVMI_WALK_CONTINUE
}

unsafe extern "C" fn on_module(ud: *mut c_void, m: *const xvmi_module, status: xvmi_result) -> i32 {
    let left = &mut *(ud as *mut u32);
    if status == XVMI_OK {
        assert!((*m).name.contains(&0), "module name not NUL-terminated");
    }
    if *left == 0 {
        return XVMI_WALK_STOP;
    }
    *left -= 1;
    XVMI_WALK_CONTINUE
}

fn ok_or_expected(rc: xvmi_result) {
    assert_ne!(rc, XVMI_ERR_PANIC, "xenvmi panicked: {}", last_error());
}

fn last_error() -> String {
    let mut b = [0 as c_char; 512];
    // SAFETY: a 512-byte buffer.
    unsafe { xvmi_last_error(b.as_mut_ptr(), b.len(), null_mut()) };
    // SAFETY: NUL-terminated by xvmi_last_error.
    unsafe { CStr::from_ptr(b.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// An alert callback: the JSON is one object.
unsafe extern "C" fn on_alert(_userdata: *mut c_void, json: *const c_char) {
    let s = CStr::from_ptr(json).to_bytes();
    assert!(
        s.starts_with(b"{\"") && s.ends_with(b"}"),
        "not a JSON object"
    );
}

/// An attestation callback: a known kind, and JSON.
unsafe extern "C" fn on_finding(_userdata: *mut c_void, kind: u32, json: *const c_char) {
    assert!((XVMI_ATTEST_DEVIATION..=XVMI_ATTEST_WARNING).contains(&kind));
    assert!(!CStr::from_ptr(json).to_bytes().is_empty());
}

unsafe fn check_clean(dom: *const xvmi_domain) {
    let mut st = std::mem::zeroed::<xvmi_sim_state>();
    assert_eq!(xvmi_sim_get_state(dom, &mut st), XVMI_OK);
    assert_eq!(st.paused_vcpus, 0, "a vCPU was left paused: {st:?}");
    assert_eq!(st.monitors, 0, "{st:?}");
    assert_eq!(st.extra_views, 0, "{st:?}");
    assert_eq!(st.restrictions, 0, "{st:?}");
    assert_eq!(st.vcpus_not_clean, 0, "{st:?}");
    assert_eq!(st.extra_frames, 0, "{st:?}");
    assert!(!st.ring_enabled, "{st:?}");
    assert_eq!(st.responses_skipped, 0, "{st:?}");
}

/// Run one input.
pub fn run(data: &[u8]) {
    // SAFETY: every pointer passed below is NULL, a live handle, or a local that outlives the
    // call; handles are set to NULL when freed.
    unsafe { run_unsafe(data) }
}

unsafe fn run_unsafe(data: &[u8]) {
    let mut c = Cursor(data);
    let nvcpu = (c.u8() % 4) as usize;
    let mut regs: Vec<xvmi_registers> = Vec::new();
    for _ in 0..nvcpu {
        let cr3 = c.u64();
        let flags = c.u8();
        let mut r = std::mem::zeroed::<xvmi_registers>();
        r.cr0 = 0x8005_0033;
        r.cr3 = cr3;
        r.cr4 = if flags & 1 != 0 { 0x1020 } else { 0x20 };
        r.efer = 0xd01;
        r.cs_sel = if flags & 2 != 0 { 0x10 } else { 0x33 };
        regs.push(r);
    }
    let len = (c.u32() as usize).min(c.0.len()).min(1 << 20);
    let image = c.take(len);

    let mut mem: *mut xvmi_memory = null_mut();
    let mut dom: *mut xvmi_domain = null_mut();
    let mut dmem: *mut xvmi_memory = null_mut();
    let mut os: *mut xvmi_os = null_mut();
    let mut session: *mut xvmi_session = null_mut();
    // Whether a session was opened on `dom` (a fresh simulated domain starts with its ring on).
    let mut had_session = false;
    // A planted journal was applied with XVMI_RECOVER_IGNORE_BINDING: it may restrict what it
    // likes, so the domain is not expected to be clean.
    let mut overridden = false;
    // Whether the open session has hooks: their manager answers some events itself.
    let mut hooked = false;
    // Pauses `dom` holds (xvmi_domain_pause minus xvmi_domain_resume).
    let mut pauses = 0u32;
    // Journals go in a private directory of this process (the library creates it 0700).
    let jdir = std::env::temp_dir().join(format!("xenvmi-capi-fuzz-{}", std::process::id()));
    let jpath =
        std::ffi::CString::new(jdir.join("j.journal").display().to_string()).unwrap_or_default();
    let mut ops = 0;
    while !c.0.is_empty() && ops < 64 {
        ops += 1;
        let op = c.u8();
        let a = c.take(16);
        let a8 = |i: usize| u64::from_le_bytes(a[i..i + 8].try_into().unwrap());
        let a4 = |i: usize| u32::from_le_bytes(a[i..i + 4].try_into().unwrap());
        // The memory handle an operation uses: the image's or the domain's, or NULL.
        let m: *const xvmi_memory = match a[15] % 3 {
            0 => mem,
            1 => dmem,
            _ => null(),
        };
        match op % 32 {
            0 => {
                xvmi_memory_free(mem);
                mem = null_mut();
                ok_or_expected(xvmi_memory_open_buffer(
                    image.as_ptr(),
                    image.len(),
                    &mut mem,
                ));
            }
            1 => {
                xvmi_memory_free(mem);
                mem = null_mut();
            }
            2 if a[12] & 1 != 0 => {
                // A physical write of byte 13, read back; a snapshot or image refuses it.
                let n = (a4(8) % 9000) as usize;
                let data = vec![a[13]; n];
                let rc = xvmi_memory_write_physical(m, a8(0), data.as_ptr(), n);
                ok_or_expected(rc);
                if !m.is_null() && m == mem.cast_const() {
                    assert_eq!(rc, XVMI_ERR_UNSUPPORTED, "a snapshot was written");
                }
                if rc == XVMI_OK {
                    let mut back = vec![!a[13]; n];
                    let r = xvmi_memory_read_physical(m, a8(0), back.as_mut_ptr(), n);
                    if n > 0 {
                        assert_eq!(r, XVMI_OK, "{}", last_error());
                        assert!(back == data, "a physical write did not read back");
                    }
                }
            }
            2 => {
                let n = (a4(8) % 9000) as usize;
                let mut buf = vec![0u8; n];
                ok_or_expected(xvmi_memory_read_physical(m, a8(0), buf.as_mut_ptr(), n));
            }
            3 if a[13] & 1 != 0 => {
                // A virtual write of byte 14 (cr3, va and length as below): read back when it
                // succeeds, and nothing changed when it does not (all or nothing).
                let (cr3, va, n) = (u64::from(a4(0)), a8(4), (a[12] as usize) << 6);
                let data = vec![a[14]; n];
                let mut before = vec![0u8; n];
                let mut got = 0usize;
                let _ = xvmi_memory_read_virtual(m, cr3, va, before.as_mut_ptr(), n, &mut got);
                // Where each page goes now: the write may rewrite the page tables themselves,
                // so it is read back physically.
                let mut frames = Vec::new();
                let mut off = 0usize;
                while off < n {
                    let cur = va.wrapping_add(off as u64);
                    let k = (0x1000 - (cur & 0xfff) as usize).min(n - off);
                    let mut gpa = u64::MAX;
                    let _ = xvmi_memory_translate(m, cr3, cur, &mut gpa);
                    frames.push((gpa, off, k));
                    off += k;
                }
                let rc = xvmi_memory_write_virtual(m, cr3, va, data.as_ptr(), n);
                ok_or_expected(rc);
                if rc == XVMI_OK {
                    for (gpa, off, k) in frames {
                        let mut back = vec![!a[14]; k];
                        let r = xvmi_memory_read_physical(m, gpa, back.as_mut_ptr(), k);
                        assert_eq!(r, XVMI_OK, "{}", last_error());
                        assert!(
                            back == data[off..off + k],
                            "a virtual write did not read back"
                        );
                    }
                } else if rc == XVMI_ERR_NOT_MAPPED {
                    let mut after = vec![0u8; n];
                    let _ = xvmi_memory_read_virtual(m, cr3, va, after.as_mut_ptr(), n, &mut got);
                    assert!(after == before, "a failed virtual write changed memory");
                }
            }
            3 => {
                // cr3: bytes 0..4, va: bytes 4..12, length: byte 12 * 64.
                let n = (a[12] as usize) << 6;
                let mut buf = vec![0u8; n];
                let mut got = usize::MAX;
                let rc = xvmi_memory_read_virtual(
                    m,
                    u64::from(a4(0)),
                    a8(4),
                    buf.as_mut_ptr(),
                    n,
                    &mut got,
                );
                ok_or_expected(rc);
                if rc == XVMI_OK || rc == XVMI_ERR_NOT_MAPPED {
                    assert!(got <= n);
                }
            }
            4 => {
                let mut gpa = 0;
                ok_or_expected(xvmi_memory_translate(m, a8(0), a8(8), &mut gpa));
            }
            5 => ok_or_expected(xvmi_memory_set_paging_levels(m, u32::from(a[0] % 7))),
            6 => {
                let mut n = 0u32;
                ok_or_expected(xvmi_memory_vcpu_count(m, &mut n));
                let mut r = std::mem::zeroed::<xvmi_registers>();
                ok_or_expected(xvmi_memory_registers(m, u32::from(a[0] % 5), &mut r));
                let mut k = 0usize;
                ok_or_expected(xvmi_memory_region_count(m, &mut k));
                let mut reg = xvmi_region::default();
                ok_or_expected(xvmi_memory_region(m, usize::from(a[1] % 4), &mut reg));
                ok_or_expected(xvmi_memory_flush(m));
            }
            7 => {
                xvmi_os_free(os);
                os = null_mut();
                if a[0] & 1 == 0 {
                    ok_or_expected(xvmi_os_linux_discover(m, null(), &mut os));
                } else {
                    // Either OS, told apart by the library: Linux from the guest's own
                    // tables; Windows with no usable profile (the default place or a
                    // missing file), crash-dump-like hints when a[1] says so.
                    let hints = xvmi_windows_hints {
                        directory_table_base: a8(8),
                        ..Default::default()
                    };
                    let h = if a[1] & 1 != 0 {
                        &hints as *const _
                    } else {
                        null()
                    };
                    let windows = if a[1] & 2 != 0 {
                        c"/nonexistent/xenvmi-fuzz-windows".as_ptr()
                    } else {
                        null()
                    };
                    ok_or_expected(xvmi_os_discover(m, null(), windows, h, &mut os));
                }
            }
            8 => {
                xvmi_os_free(os);
                os = null_mut();
            }
            9 => {
                let mut info = xvmi_os_info::default();
                ok_or_expected(xvmi_os_get_info(os, &mut info));
                let n = usize::from(a[0]);
                let mut buf = vec![0x55 as c_char; n];
                let mut l = 0usize;
                let p = if n == 0 { null_mut() } else { buf.as_mut_ptr() };
                let rc = xvmi_os_release(os, p, n, &mut l);
                ok_or_expected(rc);
                if rc == XVMI_OK {
                    assert_eq!(buf[l], 0);
                }
                let rc = xvmi_os_banner(os, p, n, &mut l);
                ok_or_expected(rc);
                if rc == XVMI_OK {
                    assert_eq!(buf[l], 0);
                }
                let mut va = 0;
                ok_or_expected(xvmi_os_symbol(os, c"init_task".as_ptr(), &mut va));
            }
            10 => {
                let mut left = u32::from(a[0]);
                ok_or_expected(xvmi_os_processes(
                    os,
                    m,
                    Some(on_process),
                    &mut left as *mut u32 as *mut c_void,
                ));
            }
            11 => {
                let mut left = u32::from(a[0]);
                ok_or_expected(xvmi_os_modules(
                    os,
                    m,
                    Some(on_module),
                    &mut left as *mut u32 as *mut c_void,
                ));
            }
            12 => {
                let mut p = std::mem::zeroed::<xvmi_process>();
                let rc = xvmi_os_process_for_cr3(os, m, a8(0), &mut p);
                ok_or_expected(rc);
                if rc == XVMI_OK {
                    let mut left = 4u32;
                    ok_or_expected(xvmi_os_process_modules(
                        os,
                        m,
                        &p,
                        Some(on_module),
                        &mut left as *mut u32 as *mut c_void,
                    ));
                }
            }
            13 => {
                let n = usize::from(a[0]);
                let mut buf = vec![0x55 as c_char; n];
                let mut l = 0usize;
                let p = if n == 0 { null_mut() } else { buf.as_mut_ptr() };
                let rc = xvmi_last_error(p, n, &mut l);
                if n > 0 {
                    assert!(buf.contains(&0), "last error not NUL-terminated");
                }
                assert!(rc == XVMI_OK || rc == XVMI_ERR_BUFFER_TOO_SMALL);
            }
            14 => {
                // A new simulated domain (the old one's handles keep it alive).
                xvmi_memory_free(dmem);
                dmem = null_mut();
                xvmi_session_free(session);
                session = null_mut();
                if !dom.is_null() && had_session {
                    check_clean(dom);
                }
                xvmi_domain_free(dom);
                dom = null_mut();
                had_session = false;
                pauses = 0;
                ok_or_expected(xvmi_sim_open_buffer(
                    image.as_ptr(),
                    image.len(),
                    regs.as_ptr(),
                    regs.len(),
                    &mut dom,
                ));
                if !dom.is_null() {
                    ok_or_expected(xvmi_memory_open_domain(dom, &mut dmem));
                }
            }
            15 => {
                // Script a guest action.
                let vcpu = u32::from(a[0] % 4);
                let gpa = u64::from(a4(4)) & !0x7;
                let rc = match a[1] % 6 {
                    0 => xvmi_sim_script_write_cr(dom, vcpu, u32::from(a[2] % 5), a8(8)),
                    1 => xvmi_sim_script_write_msr(
                        dom,
                        vcpu,
                        0xc000_0080 + u32::from(a[2] % 4),
                        a8(8),
                    ),
                    2 => xvmi_sim_script_write(
                        dom,
                        vcpu,
                        gpa,
                        a[8..].as_ptr(),
                        usize::from(a[2] % 9),
                    ),
                    3 => xvmi_sim_script_read(dom, vcpu, gpa),
                    4 => xvmi_sim_script_execute(dom, vcpu, gpa),
                    _ => xvmi_sim_script_cpuid(dom, vcpu, a4(8)),
                };
                ok_or_expected(rc);
            }
            16 => {
                if session.is_null() {
                    let rc = xvmi_session_open(dom, &mut session);
                    ok_or_expected(rc);
                    had_session |= rc == XVMI_OK;
                    hooked = false;
                } else {
                    let mut other = null_mut();
                    assert_ne!(xvmi_session_open(dom, &mut other), XVMI_OK);
                }
            }
            17 => {
                xvmi_session_free(session);
                session = null_mut();
                if !dom.is_null() && had_session {
                    check_clean(dom);
                }
            }
            18 => {
                let mon = xvmi_monitor {
                    kind: u32::from(a[0] % 12),
                    control_register: u32::from(a[1] % 5),
                    msr_index: 0xc000_0080 + u32::from(a[2] % 4),
                    sync: a[3] % 3,
                    on_change_only: a[4] % 3,
                    ignore_mask: a8(8),
                    ..Default::default()
                };
                ok_or_expected(xvmi_session_monitor(session, &mon));
            }
            19 => {
                let mut v = 0u16;
                ok_or_expected(xvmi_session_create_view(
                    session,
                    u32::from(a[0] % 9),
                    &mut v,
                ));
            }
            20 => ok_or_expected(xvmi_session_set_mem_access(
                session,
                u16::from(a[0] % 4),
                u64::from(a4(4) % 0x200),
                u32::from(a[1] % 9),
            )),
            21 if a[14] == 0xfe => {
                // A policy set from input bytes (a specification), and a guard with it on the
                // domain and kernel there are (NULL included), run briefly and freed without
                // a teardown (the free tears down).
                let n = (a[0] as usize).min(c.0.len());
                let text: Vec<u8> = c.take(n).into_iter().filter(|&b| b != 0).collect();
                let spec = std::ffi::CString::new(text).unwrap_or_default();
                let mut set = null_mut();
                let rc = xvmi_policy_set_parse(spec.as_ptr(), &mut set);
                ok_or_expected(rc);
                if rc == XVMI_OK {
                    let mut count = 0usize;
                    assert_eq!(xvmi_policy_set_count(set, &mut count), XVMI_OK);
                    assert!(count > 0, "an accepted set is not empty");
                } else {
                    assert!(set.is_null(), "an output written on failure");
                }
                let mut opts = std::mem::zeroed::<xvmi_guard_options>();
                opts.view = u32::from(a[3] % 3);
                opts.run.poll_ms = 1;
                opts.run.max_idle_polls = 1;
                opts.run.max_events = 64;
                let mut g = null_mut();
                let rc = xvmi_guard_start(dom, os, set, &opts, Some(on_alert), null_mut(), &mut g);
                ok_or_expected(rc);
                if rc == XVMI_OK {
                    had_session = true;
                    let mut st = std::mem::zeroed::<xvmi_guard_stats>();
                    ok_or_expected(xvmi_guard_run(g, &mut st));
                    assert_eq!(xvmi_guard_free(g), XVMI_OK);
                }
                xvmi_policy_set_free(set);
            }
            21 if a[14] == 0xff => {
                // A manifest from input bytes: refused naming it, or written back to the same
                // text; attested against and learned from whatever memory and kernel there are.
                let n = (a4(4) as usize % 4096).min(c.0.len());
                let bytes = c.take(n);
                let mut mf = null_mut();
                let rc =
                    xvmi_manifest_parse(bytes.as_ptr(), bytes.len(), c"fuzz".as_ptr(), &mut mf);
                ok_or_expected(rc);
                if rc != XVMI_OK {
                    assert!(last_error().contains("fuzz"), "{}", last_error());
                } else {
                    let json = |h: *const xvmi_manifest| {
                        let mut len = 0usize;
                        let rc = xvmi_manifest_json(h, null_mut(), 0, &mut len);
                        assert_eq!(rc, XVMI_ERR_BUFFER_TOO_SMALL);
                        let mut buf = vec![1 as c_char; len + 1];
                        let rc = xvmi_manifest_json(h, buf.as_mut_ptr(), buf.len(), null_mut());
                        assert_eq!(rc, XVMI_OK);
                        CStr::from_ptr(buf.as_ptr()).to_bytes().to_vec()
                    };
                    let text = json(mf);
                    let mut again = null_mut();
                    let rc = xvmi_manifest_parse(text.as_ptr(), text.len(), null(), &mut again);
                    assert_eq!(rc, XVMI_OK, "a manifest's own JSON: {}", last_error());
                    assert!(
                        json(again) == text,
                        "the JSON of a manifest changed on a round trip"
                    );
                    xvmi_manifest_free(again);
                }
                let mut at = xvmi_attestation::default();
                let rc = xvmi_manifest_attest(mf, m, os, Some(on_finding), null_mut(), &mut at);
                ok_or_expected(rc);
                if rc == XVMI_OK {
                    assert_eq!(at.attested == 1, at.deviations == 0);
                }
                let mut learned = null_mut();
                ok_or_expected(xvmi_manifest_learn(m, os, &mut learned));
                xvmi_manifest_free(learned);
                xvmi_manifest_free(mf);
            }
            21 if a[1] & 1 != 0 => {
                // Destroy a view before teardown (the sessions' check_clean sees teardown
                // still leave nothing behind).
                let rc = xvmi_session_destroy_view(session, u16::from(a[0] % 4));
                ok_or_expected(rc);
                if a[0] % 4 == 0 {
                    assert_ne!(rc, XVMI_OK, "view 0 was destroyed");
                }
            }
            21 => ok_or_expected(xvmi_session_switch_view(session, u16::from(a[0] % 4))),
            22 => ok_or_expected(xvmi_session_singlestep(
                session,
                u32::from(a[0] % 4),
                a[1] % 3,
            )),
            23 => {
                let mut g = 0u64;
                ok_or_expected(xvmi_session_alloc_frame(session, &mut g));
                ok_or_expected(xvmi_session_change_gfn(
                    session,
                    u16::from(a[0] % 4),
                    u64::from(a4(4) % 0x200),
                    g,
                ));
            }
            24 => {
                // Run: the answers come from the rest of this operation's bytes.
                let first: [u8; 16] = a[..].try_into().unwrap();
                let mut second = first;
                second.reverse();
                let mut ans = Answers {
                    script: vec![first, second],
                    next: 0,
                    events: 0,
                    mem: dmem,
                    session,
                    kept: null_mut(),
                };
                // Sometimes with hooks, placed before the run and from the callback.
                let with_context = a[8] & 1 != 0;
                if a[8] & 2 != 0 {
                    let rc = xvmi_session_hooks_enable(session, u32::from(a[8] >> 2) % 4);
                    ok_or_expected(rc);
                    hooked |= rc == XVMI_OK;
                    let mut id = 0u64;
                    ok_or_expected(xvmi_session_hook_add(
                        session,
                        u64::from(a4(9) % 0x10_0000),
                        &mut id,
                    ));
                    ok_or_expected(xvmi_session_hook_remove(session, id ^ u64::from(a[13] & 1)));
                    let mut hs = xvmi_hook_stats::default();
                    ok_or_expected(xvmi_session_hook_stats(session, &mut hs));
                }
                let opts = xvmi_run_options {
                    poll_ms: 1,
                    max_idle_polls: 1,
                    max_events: u64::from(a[7] % 64) + 1,
                };
                let mut stats = xvmi_run_stats::default();
                let rc = if with_context {
                    xvmi_session_run_context(
                        session,
                        Some(on_context),
                        &mut ans as *mut Answers as *mut c_void,
                        &opts,
                        &mut stats,
                    )
                } else {
                    xvmi_session_run(
                        session,
                        Some(on_event),
                        &mut ans as *mut Answers as *mut c_void,
                        &opts,
                        &mut stats,
                    )
                };
                ok_or_expected(rc);
                if !ans.kept.is_null() {
                    // A context kept past its callback is refused, never dereferenced.
                    assert_eq!(xvmi_context_stop(ans.kept), XVMI_ERR_INVALID_HANDLE);
                }
                if rc == XVMI_OK && !hooked {
                    assert_eq!(stats.events, ans.events + stats.bad_requests);
                }
                if rc == XVMI_ERR_HANDLER {
                    // The callback's garbage: answered, torn down.
                    check_clean(dom);
                }
            }
            25 => ok_or_expected(xvmi_session_teardown(session)),
            26 => {
                if !session.is_null() {
                    assert_eq!(xvmi_session_stop(session), XVMI_OK);
                }
            }
            27 => {
                let mut st = xvmi_sim_state::default();
                ok_or_expected(xvmi_sim_get_state(dom, &mut st));
                let mut v = 0;
                ok_or_expected(xvmi_sim_msr(
                    dom,
                    u32::from(a[0] % 4),
                    0xc000_0080 + u32::from(a[1] % 4),
                    &mut v,
                ));
                // Pauses, resumes and registers; the domain's pause count is always the
                // handle's.
                match a[2] % 4 {
                    1 => {
                        let rc = xvmi_domain_pause(dom);
                        ok_or_expected(rc);
                        pauses += u32::from(rc == XVMI_OK);
                    }
                    2 => {
                        let rc = xvmi_domain_resume(dom);
                        ok_or_expected(rc);
                        if rc == XVMI_OK {
                            pauses -= 1;
                        } else if !dom.is_null() {
                            assert_eq!(pauses, 0, "a held pause was not resumed");
                        }
                    }
                    3 => {
                        let vcpu = u32::from(a[0] % 5);
                        let mut r = std::mem::zeroed::<xvmi_registers>();
                        let _ = xvmi_memory_registers(dmem, vcpu, &mut r);
                        r.rip = a8(8);
                        r.rax = u64::from(a4(3));
                        if a[3] & 0x10 != 0 {
                            r.fs_base ^= 1; // not settable: refused
                        }
                        let rc = xvmi_domain_set_registers(dom, vcpu, &r);
                        ok_or_expected(rc);
                        if rc == XVMI_OK {
                            assert!(pauses > 0, "registers set on a running domain");
                            let mut back = std::mem::zeroed::<xvmi_registers>();
                            assert_eq!(xvmi_memory_registers(dmem, vcpu, &mut back), XVMI_OK);
                            assert_eq!(back, r);
                        }
                    }
                    _ => {}
                }
                if !dom.is_null() {
                    let mut n = u32::MAX;
                    assert_eq!(xvmi_sim_pause_count(dom, &mut n), XVMI_OK);
                    assert_eq!(n, pauses);
                }
            }
            28 => {
                // The domain handle may go before its memory handle and session (its pauses
                // are resumed).
                xvmi_domain_free(dom);
                dom = null_mut();
                had_session = false;
                pauses = 0;
            }
            29 => {
                // Windows discovery on whatever this is, with hints and no usable profile.
                let hints = xvmi_windows_hints {
                    kernel_base: a8(0),
                    directory_table_base: a8(8),
                    ..Default::default()
                };
                let mut o = null_mut();
                let rc = xvmi_os_windows_discover(
                    m,
                    c"/nonexistent/ntkrnlmp.json".as_ptr(),
                    &hints,
                    &mut o,
                );
                ok_or_expected(rc);
                xvmi_os_free(o);
            }
            30 => {
                // Keep the session's journal on disk (refused if one exists already).
                ok_or_expected(xvmi_session_persist_journal(
                    session,
                    jpath.as_ptr(),
                    c"sim".as_ptr(),
                ));
            }
            31 => {
                // A journal planted for recovery: a header naming some process, boot and
                // domain, then lines from the input. Without XVMI_RECOVER_IGNORE_BINDING it
                // can never be applied (its domain is not this one).
                let n = (a[0] as usize).min(c.0.len());
                let body = String::from_utf8_lossy(&c.take(n)).into_owned();
                let text = format!(
                    "xenvmi-journal 2 pid={} start=1 boot={:x} domain={:x} target=fuzz\n{body}",
                    a4(4),
                    a8(8),
                    a4(0)
                );
                let _ = std::fs::remove_file(jdir.join("j.journal"));
                let planted = {
                    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
                    let _ = std::fs::DirBuilder::new().mode(0o700).create(&jdir);
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(jdir.join("j.journal"))
                        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
                        .is_ok()
                };
                let flags = u32::from(a[1] % 8);
                let mut out = xvmi_recovery::default();
                let rc = xvmi_domain_recover_with(dom, jpath.as_ptr(), flags, &mut out);
                ok_or_expected(rc);
                if flags > 3 {
                    assert_ne!(rc, XVMI_OK, "unknown flags accepted");
                } else if planted && rc == XVMI_OK && out.found {
                    assert_ne!(
                        flags & XVMI_RECOVER_IGNORE_BINDING,
                        0,
                        "a journal for another domain was applied without the override"
                    );
                    overridden = true;
                }
            }
            _ => {
                // NULL everywhere.
                assert_eq!(
                    xvmi_memory_open_snapshot(null(), null_mut()),
                    XVMI_ERR_NULL_POINTER
                );
                assert_eq!(
                    xvmi_os_processes(os, m, None, null_mut()),
                    XVMI_ERR_NULL_POINTER
                );
                assert_eq!(xvmi_session_stop(null()), XVMI_ERR_NULL_POINTER);
            }
        }
    }
    xvmi_session_free(session);
    if !dom.is_null() && had_session && !overridden {
        check_clean(dom);
    }
    let _ = std::fs::remove_dir_all(&jdir);
    xvmi_os_free(os);
    xvmi_memory_free(dmem);
    xvmi_memory_free(mem);
    xvmi_domain_free(dom);
}
