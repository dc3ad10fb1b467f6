//! Session journal parsing (the file a killed monitor leaves for the next one to recover
//! from): every line of an accepted journal must parse back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenvmi::event::journal;

fuzz_target!(|data: &[u8]| {
    let Ok((owner, lines)) = journal::inspect(data) else {
        return;
    };
    let mut again = owner.header();
    again.push('\n');
    for l in &lines {
        again.push_str(l);
        again.push('\n');
    }
    let (o2, l2) = journal::inspect(again.as_bytes()).expect("a journal's own lines parse");
    assert_eq!(o2, owner);
    assert_eq!(l2, lines);
});
