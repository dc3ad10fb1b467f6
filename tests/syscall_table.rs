//! System call declarations read from each real Linux dump's own `syscalls_metadata`, checked
//! against the x86-64 syscall ABI (`arch/x86/entry/syscalls/syscall_64.tbl`) and the
//! `SYSCALL_DEFINE` declarations in the kernel's sources (`fs/read_write.c`, `fs/open.c`,
//! `fs/exec.c`, `kernel/exit.c`; the metadata holds the types as preprocessed, without
//! `__user`), and one call decoded with a string read from a real
//! process's memory.

mod support;

use xenvmi::mem::AddressSpace;
use xenvmi::os::linux::syscalls::{ArgValue, SyscallTable};

use support::linux::FIXTURES;

fn decl(t: &SyscallTable, nr: u64) -> (String, Vec<(String, String)>) {
    let s = t.get(nr).unwrap_or_else(|| panic!("no syscall {nr}"));
    (
        s.name.clone(),
        s.args
            .iter()
            .map(|a| (a.type_name.clone(), a.name.clone()))
            .collect(),
    )
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn declarations_come_from_the_kernels_own_metadata() {
    for f in FIXTURES {
        let (mem, linux) = support::linux::open(f);
        let t = SyscallTable::read(&linux, &mem).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(t.len() > 330 && t.len() <= 1024, "{f}: {} numbers", t.len());
        assert!(
            t.iter().count() > 300,
            "{f}: {} described",
            t.iter().count()
        );
        let read = pairs(&[
            ("unsigned int", "fd"),
            ("char *", "buf"),
            ("size_t", "count"),
        ]);
        assert_eq!(decl(&t, 0), ("read".into(), read), "{f}");
        assert_eq!(decl(&t, 1).0, "write", "{f}");
        assert_eq!(
            decl(&t, 59),
            (
                "execve".into(),
                pairs(&[
                    ("const char *", "filename"),
                    ("const char *const *", "argv"),
                    ("const char *const *", "envp"),
                ])
            ),
            "{f}"
        );
        assert_eq!(
            decl(&t, 257),
            (
                "openat".into(),
                pairs(&[
                    ("int", "dfd"),
                    ("const char *", "filename"),
                    ("int", "flags"),
                    ("umode_t", "mode"),
                ])
            ),
            "{f}"
        );
        assert_eq!(
            decl(&t, 60),
            ("exit".into(), pairs(&[("int", "error_code")])),
            "{f}"
        );
        assert_eq!(t.by_name("getppid").map(|s| s.nr), Some(110), "{f}");
        // Decoding: openat(AT_FDCWD, <init's argv[0]>, O_RDONLY|O_CLOEXEC, 0) in init's space.
        let init = linux
            .processes(&mem)
            .map(Result::unwrap)
            .find(|p| p.pid == 1)
            .unwrap();
        let space = AddressSpace {
            root: init.dtb.unwrap(),
            mode: linux.info().kernel_space.mode,
        };
        let d = linux.process_detail(&mem, &init);
        let argv0 = d.cmdline.unwrap()[0].clone();
        // Where argv[0] is: mm->arg_start, from the ground truth.
        let gt = support::fixture::ground_truth(f);
        let p1 = gt["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == 1)
            .unwrap();
        let arg_start = support::fixture::hex(&p1["arg_start"]);
        let args = t
            .decode(&mem, space, 257, [0xffff_ff9c, arg_start, 0x80000, 0, 0, 0])
            .unwrap();
        let values: Vec<&ArgValue> = args.iter().map(|(_, v)| v).collect();
        assert_eq!(
            values,
            [
                &ArgValue::Int(-100),
                &ArgValue::Str(argv0),
                &ArgValue::Int(0x80000),
                &ArgValue::Uint(0)
            ],
            "{f}"
        );
    }
}
