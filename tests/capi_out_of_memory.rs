//! A C caller may hand `xvmi_memory_open_buffer` more bytes than this process can copy: the
//! call must return `XVMI_ERR_NO_MEMORY`, not abort the host (it used to `to_vec` and die with
//! exit 134). Run in a child process under an address-space limit (`ulimit -v`), which this
//! test binary re-executes.

use xenvmi::capi::*;

const CHILD: &str = "XENVMI_OOM_CHILD";
/// The child's address-space limit.
const LIMIT_KIB: u64 = 4 << 20;
/// The caller's buffer: fits under the limit once, not twice.
const BUFFER: usize = 5 << 29;

fn child() -> ! {
    // Zeroed pages are only reserved, not touched: the buffer costs address space, not RAM.
    let data = vec![0u8; BUFFER];
    let mut m = std::ptr::null_mut();
    // SAFETY: `data` is valid for its length; `m` is a valid out-pointer.
    let rc = unsafe { xvmi_memory_open_buffer(data.as_ptr(), data.len(), &mut m) };
    if rc == XVMI_ERR_NO_MEMORY && m.is_null() {
        std::process::exit(0);
    }
    eprintln!("xvmi_memory_open_buffer returned {rc}");
    std::process::exit(3);
}

#[test]
fn a_buffer_too_large_to_copy_is_an_error_not_an_abort() {
    if std::env::var_os(CHILD).is_some() {
        child();
    }
    let exe = std::env::current_exe().expect("exe");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {LIMIT_KIB} && exec \"$0\" a_buffer_too_large_to_copy_is_an_error_not_an_abort --exact --nocapture --test-threads 1"
        ))
        .arg(exe)
        .env(CHILD, "1")
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
