//! With the `xen` feature: generate Xen 4.17 type and constant bindings with bindgen (the
//! functions themselves are loaded at run time). Without it: nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    soname();
    #[cfg(feature = "xen")]
    xen::generate();
}

/// The shared library's SONAME, `libxenvmi.so.<ABI>`: the major version, or for 0.x releases
/// `0.<minor>` (a 0.x minor release may change the ABI), as cargo-c names them. `scripts/install.sh`
/// installs the file under that name.
fn soname() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libxenvmi.so.{abi}");
}

#[cfg(feature = "xen")]
mod xen {
    use std::path::{Path, PathBuf};

    const HEADER: &str = "src/backend/xen/wrapper.h";

    fn fail(msg: &str) -> ! {
        eprintln!("\nerror: xenvmi's `xen` feature: {msg}\n");
        panic!("xenvmi build: {msg}");
    }

    pub fn generate() {
        println!("cargo:rerun-if-changed={HEADER}");
        for h in ["/usr/include/xenctrl.h", "/usr/include/xen/vm_event.h"] {
            if !Path::new(h).exists() {
                fail(&format!(
                    "{h} is missing: install the Xen development headers (Debian/Ubuntu: `apt-get install libxen-dev`), \
                     or build without `--features xen`"
                ));
            }
        }
        let bindings = std::panic::catch_unwind(|| {
            bindgen::Builder::default()
                .header(HEADER)
                .clang_arg("-D__XEN_TOOLS__")
                .allowlist_type("xc_domaininfo_t|xen_domctl_getdomaininfo|xen_domctl|xen_domctl_monitor_op|hvm_hw_cpu|hvm_save_descriptor|xenmem_access_t|xen_pfn_t|domid_t|evtchn_port_t")
                .allowlist_var("XEN_DOMINF_.*|HVM_PARAM_ALTP2M|HVM_PARAM_MONITOR_RING_PFN|XEN_ALTP2M_.*|XEN_DOMCTL_MONITOR_EVENT_.*|XEN_DOMCTL_MONITOR_OP_.*|XEN_DOMCTL_monitor_op|XEN_DOMCTL_DEBUG_OP_.*|VM_EVENT_INTERFACE_VERSION|XENVER_version|XENMEM_access_.*")
                .layout_tests(true)
                .derive_default(true)
                .generate()
        });
        let bindings = match bindings {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => fail(&format!("bindgen could not parse the Xen headers ({e})")),
            Err(_) => fail(
                "bindgen could not run: it needs libclang (Debian/Ubuntu: `apt-get install libclang-dev`), \
                 or build without `--features xen`",
            ),
        };
        let out =
            PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| fail("OUT_DIR is not set")))
                .join("xen_sys.rs");
        bindings
            .write_to_file(&out)
            .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", out.display())));
    }
}
