//! A snapshot file that shrinks while it is open (another process truncates it) must give
//! read errors, not kill the process: the mapped snapshot raised SIGBUS here, through the Rust
//! API and the C ABI alike.

use std::ffi::CString;

use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::PhysicalMemory;
use xenvmi::capi::*;
use xenvmi::{Error, Gpa};

const LEN: usize = 16 << 20;

fn image(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("xenvmi-shrink-{}-{name}.raw", std::process::id()));
    let bytes: Vec<u8> = (0..LEN).map(|i| (i / 4096) as u8).collect();
    std::fs::write(&p, bytes).expect("write");
    p
}

#[test]
fn reads_past_the_new_end_are_errors() {
    let p = image("rust");
    let s = Snapshot::open(&p).expect("open");
    let mut b = [0u8; 8];
    s.read_physical(Gpa(8 << 20), &mut b).expect("before");
    assert_eq!(b, [(8 << 20) / 4096 % 256; 8].map(|v| v as u8));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open for write")
        .set_len(4096)
        .expect("truncate");
    // (Pages read before the file shrank may still be served from the read cache; these
    // were never read.)
    match s.read_physical(Gpa(10 << 20), &mut b) {
        Err(Error::PhysicalUnmapped { .. }) => {}
        other => panic!("expected PhysicalUnmapped, got {other:?}"),
    }
    assert!(s.read_physical_u64(Gpa(12 << 20)).is_err());
    // What is still there reads as before.
    s.read_physical(Gpa(0), &mut b).expect("first page");
    assert_eq!(b, [0; 8]);
    std::fs::remove_file(&p).expect("cleanup");
}

#[test]
fn the_c_abi_returns_not_mapped() {
    let p = image("c");
    let c = CString::new(p.to_str().expect("utf-8")).expect("path");
    let mut m = std::ptr::null_mut();
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    assert_eq!(
        unsafe { xvmi_memory_open_snapshot(c.as_ptr(), &mut m) },
        XVMI_OK
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open for write")
        .set_len(0)
        .expect("truncate");
    let mut buf = [0xaau8; 64];
    // SAFETY: a live handle and a 64-byte buffer.
    let rc = unsafe { xvmi_memory_read_physical(m, 8 << 20, buf.as_mut_ptr(), buf.len()) };
    assert_eq!(rc, XVMI_ERR_NOT_MAPPED);
    assert_eq!(buf, [0xaa; 64], "the caller's buffer is untouched");
    // SAFETY: a live handle, freed once.
    assert_eq!(unsafe { xvmi_memory_free(m) }, XVMI_OK);
    std::fs::remove_file(&p).expect("cleanup");
}
