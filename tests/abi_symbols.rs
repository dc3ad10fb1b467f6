//! The C ABI's exported functions are a committed list (`abi/xenvmi.symbols`): this test reads
//! the symbols `libxenvmi.so` exports (`nm -D --defined-only`) and fails when they differ from
//! the list, so an ABI change is deliberate and visible in review.
//! `XENVMI_BLESS=1 cargo test --test abi_symbols` rewrites the list.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `libxenvmi.so` cargo built for this test run (the library unit with every crate type:
/// `target/<profile>/deps/libxenvmi.so`, or the copy `cargo build` puts one level up; the
/// newer is this run's).
fn shared_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    [dir.join("deps/libxenvmi.so"), dir.join("libxenvmi.so")]
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| {
            panic!(
                "no libxenvmi.so in {}: crate-type cdylib builds it",
                dir.display()
            )
        })
}

#[test]
fn exported_functions_are_the_committed_list() {
    let so = shared_lib();
    let out = match Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "nm -D {}: {}",
            so.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "nm (binutils) is needed to list {}'s exports: {e}",
            so.display()
        ),
    };
    let mut exported: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
            (kind == "T" && name.starts_with("xvmi_")).then(|| name.to_owned())
        })
        .collect();
    exported.sort();
    assert!(exported.len() > 50, "{}: only {exported:?}", so.display());
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("abi/xenvmi.symbols");
    let want = format!("{}\n", exported.join("\n"));
    let committed = std::fs::read_to_string(&list).unwrap_or_default();
    if committed == want {
        return;
    }
    if std::env::var_os("XENVMI_BLESS").is_some() {
        std::fs::write(&list, &want).unwrap_or_else(|e| panic!("{}: {e}", list.display()));
        return;
    }
    let c: Vec<&str> = committed.lines().collect();
    let added: Vec<&String> = exported
        .iter()
        .filter(|s| !c.contains(&s.as_str()))
        .collect();
    let removed: Vec<&&str> = c
        .iter()
        .filter(|s| !exported.iter().any(|e| e == **s))
        .collect();
    panic!(
        "the C ABI's exports changed: added {added:?}, removed {removed:?}. If that is \
         intended, run `XENVMI_BLESS=1 cargo test --test abi_symbols` and commit abi/xenvmi.symbols \
         (and say so in the change: removing or changing a function breaks C programs built \
         against this version)"
    );
}
