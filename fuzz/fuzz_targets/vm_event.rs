//! vm_event request decoding and response encoding on arbitrary 400-byte requests, and the
//! ring consumer on an arbitrary ring page (hostile indices included).
#![no_main]

use libfuzzer_sys::{arbitrary, fuzz_target};
use xenvmi::vmevent::abi::ENTRY_SIZE;
use xenvmi::vmevent::codec::{decode_request, encode_response, encode_safe_response, Response};
use xenvmi::vmevent::ring::{BackRing, FrontRing, RingPage};
use xenvmi::ViewId;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    requests: Vec<[u8; 64]>,
    tails: Vec<u8>,
    start: u32,
    answer: u8,
    /// Words the producer writes into the ring header (req_prod, req_event, rsp_prod,
    /// rsp_event, private bytes) before a drain: hostile indices.
    hostile: Vec<(u8, u32)>,
}

fuzz_target!(|inp: Input| {
    let page = RingPage::boxed();
    let mut front = FrontRing::starting_at(&page, inp.start);
    let mut back = BackRing::attach(&page);
    let mut out = [0u8; ENTRY_SIZE];
    for (i, head) in inp.requests.iter().take(64).enumerate() {
        let mut req = [0u8; ENTRY_SIZE];
        req[..64].copy_from_slice(head);
        for (j, b) in inp.tails.iter().take(ENTRY_SIZE - 64).enumerate() {
            req[64 + j] = b.wrapping_add(i as u8);
        }
        if !front.put_request(&page, &req) {
            // Ring full: the consumer drains, as it would on the next notification. A hostile
            // producer may first rewrite the header's indices.
            if let Some(&(off, v)) = inp.hostile.get(i) {
                page.store_word((off as usize % 16) * 4, v);
            }
            let mut r = [0u8; ENTRY_SIZE];
            let mut taken = 0u32;
            while back.get_request(&page, &mut r) {
                // However the indices lie, one drain takes at most the ring's slots.
                taken += 1;
                assert!(taken <= 8, "a drain took more requests than the ring has slots");
                match decode_request(&r) {
                    Ok(e) => {
                        let rsp = match inp.answer % 5 {
                            0 => Response::proceed(),
                            1 => Response::deny(),
                            2 => Response::emulate().toggle_singlestep(),
                            3 => Response::proceed().switch_view(ViewId(inp.answer as u16)),
                            _ => Response::proceed()
                                .fast_singlestep(ViewId(1))
                                .set_registers(e.regs),
                        };
                        encode_response(&r, &e, &rsp, &mut out);
                        // Every response is version 7 and unpauses a paused vCPU.
                        assert_eq!(u32::from_le_bytes(out[0..4].try_into().unwrap()), 7);
                        if e.paused {
                            assert_eq!(out[4] & 1, 1);
                        }
                    }
                    Err(_) => encode_safe_response(&r, &mut out),
                }
                assert!(back.put_response(&page, &out));
            }
            back.push_responses(&page);
            while front.get_response(&page, &mut out) {}
        }
    }
    assert!(back.outstanding() <= 8);
});
