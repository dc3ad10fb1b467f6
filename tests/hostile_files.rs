//! Files the library is given are read with caps and never block: a profile that is
//! `/dev/zero` (once read until memory ran out), a 1 GiB sparse file (once read whole), a FIFO
//! as an image or profile (once blocked forever in `open`), a directory as an image (once
//! "No such device (os error 19)").

use std::path::{Path, PathBuf};

use xenvmi::backend::snapshot::Snapshot;
use xenvmi::os::profile::{Profile, SymbolTable};
use xenvmi::Error;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xenvmi-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn fifo(d: &Path) -> PathBuf {
    let f = d.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&f)
        .status()
        .expect("mkfifo")
        .success());
    f
}

fn says(r: Result<(), Error>, what: &str) {
    match r {
        Err(e) => assert!(e.to_string().contains(what), "expected `{what}` in: {e}"),
        Ok(()) => panic!("expected an error with `{what}`"),
    }
}

#[test]
fn devices_are_refused_before_reading() {
    let zero = Path::new("/dev/zero");
    says(Profile::from_isf(zero).map(drop), "a character device");
    says(
        Profile::from_btf_and_symbols(zero, zero).map(drop),
        "a character device",
    );
    says(SymbolTable::from_file(zero).map(drop), "a character device");
    says(Snapshot::open(zero).map(drop), "a character device");
}

#[test]
fn a_fifo_never_blocks_open() {
    let d = dir("fifo");
    let f = fifo(&d);
    says(Snapshot::open(&f).map(drop), "a FIFO");
    says(Profile::from_isf(&f).map(drop), "a FIFO");
    says(SymbolTable::from_file(&f).map(drop), "a FIFO");
    std::fs::remove_dir_all(&d).expect("cleanup");
}

#[test]
fn a_directory_as_an_image_says_so() {
    let d = dir("dir");
    says(
        Snapshot::open(&d).map(drop),
        "a directory, not a regular file",
    );
    std::fs::remove_dir_all(&d).expect("cleanup");
}

#[test]
fn oversized_profiles_are_refused_by_length() {
    let d = dir("big");
    let big = d.join("big.json");
    let f = std::fs::File::create(&big).expect("create");
    f.set_len(1 << 30).expect("1 GiB hole");
    drop(f);
    says(
        Profile::from_isf(&big).map(drop),
        "more than the 536870912 allowed",
    );
    says(
        SymbolTable::from_file(&big).map(drop),
        "more than the 268435456 allowed",
    );
    says(
        Profile::from_btf_and_symbols(&big, &big).map(drop),
        "more than the 67108864 allowed",
    );
    std::fs::remove_dir_all(&d).expect("cleanup");
}
