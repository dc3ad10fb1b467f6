//! The `pslist` example as a user runs it: JSON on the bundled snapshot, and clear failures.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::fixture::{fixture_file, ground_truth, hex};

fn pslist() -> PathBuf {
    support::fixture::example_binary("pslist")
}

#[test]
fn json_output_matches_ground_truth() {
    let image = fixture_file("linux-6.1", "vmcore.elf").unwrap();
    let out = Command::new(pslist())
        .arg("--json")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gt = ground_truth("linux-6.1");
    assert_eq!(v["kernel"]["release"], gt["kernel_release"]);
    assert_eq!(
        hex(&v["kernel"]["kaslr_offset"]),
        hex(&gt["kaslr"]["virt_offset"])
    );
    assert_eq!(hex(&v["kernel"]["text_va"]), hex(&gt["kaslr"]["text_va"]));
    assert_eq!(hex(&v["kernel"]["text_pa"]), hex(&gt["kaslr"]["text_pa"]));
    assert_eq!(
        hex(&v["kernel"]["page_offset_base"]),
        hex(&gt["kaslr"]["page_offset_base"])
    );
    assert_eq!(v["kernel"]["paging_levels"], 4);
    assert_eq!(
        v["processes"].as_array().unwrap().len() as u64,
        gt["process_count"].as_u64().unwrap()
    );
    for p in v["processes"].as_array().unwrap() {
        let t = gt["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["pid"] == p["pid"])
            .unwrap();
        assert_eq!(p["comm"], t["comm"]);
        assert_eq!(p["ppid"], t["ppid"]);
        assert_eq!(p["kernel_thread"], t["kthread"]);
        assert_eq!(p["dtb"].is_null(), p["kernel_thread"].as_bool().unwrap());
    }
    let names: Vec<&serde_json::Value> = v["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["name"])
        .collect();
    let want: Vec<&serde_json::Value> = gt["module_names_list_order"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(names, want);
    for o in gt["vcpu_owners"].as_array().unwrap() {
        let c = &v["vcpus"][o["index"].as_u64().unwrap() as usize];
        assert_eq!(hex(&c["cr3"]), hex(&o["cr3"]));
        assert_eq!(c["pid"], o["pid"]);
    }
}

#[test]
fn not_linux_and_unreadable_images_fail_clearly() {
    let dir = std::env::temp_dir().join(format!("xenvmi-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let zeros = dir.join("zeros.raw");
    std::fs::write(&zeros, vec![0u8; 4 << 20]).unwrap();
    let out = Command::new(pslist()).arg(&zeros).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("could not find a Linux kernel"), "{err}");

    let out = Command::new(pslist())
        .arg(dir.join("nope.elf"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("nope.elf") && err.contains("No such file"),
        "{err}"
    );

    let out = Command::new(pslist()).arg("--bogus").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
    std::fs::remove_dir_all(&dir).unwrap();
}
