//! The vm_event ring path, single consumer: a producer (as Xen) queues a full ring of 8 real
//! requests; the consumer takes each, decodes it, runs a handler, encodes the response and
//! publishes. Results: `docs/performance.md`.
//!
//! `cargo bench --bench event`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xenvmi::vmevent::abi::{ENTRY_SIZE, RING_SLOTS};
use xenvmi::vmevent::codec::{
    decode_request, encode_response, encode_safe_response, EventKind, Response,
};
use xenvmi::vmevent::ring::{BackRing, FrontRing, RingPage};

fn request(i: u32) -> [u8; ENTRY_SIZE] {
    let mut e = [0u8; ENTRY_SIZE];
    e[0..4].copy_from_slice(&7u32.to_le_bytes());
    e[4..8].copy_from_slice(&1u32.to_le_bytes()); // VCPU_PAUSED
    let (reason, index) = if i.is_multiple_of(2) {
        (4u32, 1u32)
    } else {
        (5, 0)
    }; // CR3 write / MSR write
    e[8..12].copy_from_slice(&reason.to_le_bytes());
    e[12..16].copy_from_slice(&(i % 4).to_le_bytes());
    e[24..28].copy_from_slice(&index.to_le_bytes());
    e[32..40].copy_from_slice(&(0x1000u64 * i as u64).to_le_bytes());
    e[56 + 152..56 + 160].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes());
    e
}

fn ring_path(c: &mut Criterion) {
    let page = RingPage::boxed();
    let mut front = FrontRing::new(&page);
    let mut back = BackRing::attach(&page);
    let reqs: Vec<[u8; ENTRY_SIZE]> = (0..RING_SLOTS).map(request).collect();
    let mut req = [0u8; ENTRY_SIZE];
    let mut out = [0u8; ENTRY_SIZE];
    let mut rsp = [0u8; ENTRY_SIZE];
    let mut denied = 0u64;
    let mut g = c.benchmark_group("vm_event");
    g.throughput(Throughput::Elements(RING_SLOTS as u64));
    g.bench_function("decode_dispatch_respond_8", |b| {
        b.iter(|| {
            for r in &reqs {
                front.put_request(&page, r);
            }
            while back.get_request(&page, &mut req) {
                match decode_request(&req) {
                    Ok(e) => {
                        let answer = match e.kind {
                            EventKind::Msr { new, .. } if new != 0 => {
                                denied += 1;
                                Response::deny()
                            }
                            _ => Response::proceed(),
                        };
                        encode_response(&req, &e, &answer, &mut out);
                    }
                    Err(_) => encode_safe_response(&req, &mut out),
                }
                back.put_response(&page, &out);
            }
            back.push_responses(&page);
            // The producer consumes the responses (Xen's side, part of the round trip).
            while front.get_response(&page, &mut rsp) {}
            black_box(&rsp);
        })
    });
    g.finish();
    black_box(denied);
}

criterion_group!(benches, ring_path);
criterion_main!(benches);
