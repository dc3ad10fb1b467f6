//! Shared by the examples: find the image to open (the bundled snapshot by default; `.zst`
//! images unpacked once into `target/xenvmi-fixtures/`).
#![allow(dead_code)]

#[path = "../../tests/support/fixture.rs"]
pub mod fixture;

use std::path::{Path, PathBuf};

/// The image to open: `arg`, unpacked if it ends in `.zst`, or the bundled Linux 6.1 snapshot.
pub fn image_path(arg: Option<&Path>) -> Result<PathBuf, String> {
    match arg {
        Some(p) if p.extension().is_some_and(|e| e == "zst") => {
            // One cache file per source path: "/a/b/vmcore.elf.zst" -> "_a_b_vmcore.elf".
            let abs = std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let name: String = abs
                .with_extension("")
                .to_string_lossy()
                .replace(['/', '\\'], "_");
            let out = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/xenvmi-fixtures/user")
                .join(name);
            fixture::unpack_zstd(p, &out)
                .map_err(|e| format!("cannot unpack {}: {e}", p.display()))?;
            Ok(out)
        }
        Some(p) => Ok(p.to_path_buf()),
        None => fixture::fixture_file("linux-6.1", "vmcore.elf")
            .map_err(|e| format!("cannot unpack the bundled snapshot: {e}")),
    }
}

/// The message for `--domain` in a build without the Xen backend.
pub fn no_xen(domain: &str) -> String {
    format!(
        "cannot open Xen domain `{domain}`: this example was built without the Xen backend; rebuild with \
         `--features xen` (needs libxen-dev and libclang-dev), or use --simulate IMAGE to run the same code \
         on the simulated domain"
    )
}
