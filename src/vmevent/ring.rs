//! The shared vm_event ring, both ends.
//!
//! The page is shared with another party (Xen, or the simulated domain) that writes it
//! concurrently, so it is modelled as 1024 `AtomicU32` words: every access is an atomic load
//! or store, and no Rust reference to plain bytes of shared memory ever exists. Indices follow
//! `xen/io/ring.h`: free-running `u32` counters, slot = index mod 8, entry at byte
//! `64 + slot * 400`. `req_prod` is read with acquire ordering before entries are copied;
//! `rsp_prod` is published with release ordering after entries are written (the `rmb`/`wmb`
//! of the C macros).
//!
//! [`BackRing`] is the consumer xenvmi runs (what `BACK_RING_INIT`, `RING_GET_REQUEST` and
//! `RING_PUSH_RESPONSES` do in C). [`FrontRing`] is the producer side exactly as Xen's
//! `vm_event_put_request` / `vm_event_get_response` drive it; the tests and the simulated
//! domain use it to feed the real consumer.

use std::sync::atomic::{AtomicU32, Ordering};

use super::abi::{sring, ENTRY_SIZE, RING_HEADER, RING_PAGE, RING_SLOTS};

/// One 4 KiB ring page as 1024 atomic words.
#[repr(C, align(4096))]
pub struct RingPage {
    words: [AtomicU32; RING_PAGE / 4],
}

impl std::fmt::Debug for RingPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingPage")
            .field("req_prod", &self.load(sring::REQ_PROD, Ordering::Relaxed))
            .field("rsp_prod", &self.load(sring::RSP_PROD, Ordering::Relaxed))
            .finish()
    }
}

impl Default for RingPage {
    fn default() -> Self {
        RingPage {
            words: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl RingPage {
    /// A zeroed page on the heap (tests, simulated domain).
    pub fn boxed() -> Box<RingPage> {
        Box::default()
    }

    #[inline]
    fn load(&self, byte_off: usize, o: Ordering) -> u32 {
        self.words[byte_off / 4].load(o)
    }

    #[inline]
    fn store(&self, byte_off: usize, v: u32, o: Ordering) {
        self.words[byte_off / 4].store(v, o)
    }

    /// Overwrite the 32-bit word at `byte_offset` (ignored past the page), as the producer (or
    /// a hostile one) may write any index in the shared header: for fault injection.
    pub fn store_word(&self, byte_offset: usize, value: u32) {
        if let Some(w) = self.words.get(byte_offset / 4) {
            w.store(value, Ordering::Release);
        }
    }

    /// `SHARED_RING_INIT`: indices to 0, event thresholds to 1, private and padding bytes to 0.
    pub fn init(&self) {
        for w in &self.words[..RING_HEADER / 4] {
            w.store(0, Ordering::Relaxed);
        }
        self.store(sring::REQ_EVENT, 1, Ordering::Relaxed);
        self.store(sring::RSP_EVENT, 1, Ordering::Release);
    }

    #[inline]
    fn slot_word(slot: u32) -> usize {
        (RING_HEADER + (slot % RING_SLOTS) as usize * ENTRY_SIZE) / 4
    }

    /// Copy the entry in `slot` out of the page.
    #[inline]
    fn read_entry(&self, slot: u32, out: &mut [u8; ENTRY_SIZE]) {
        let base = Self::slot_word(slot);
        for (i, chunk) in out.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&self.words[base + i].load(Ordering::Relaxed).to_le_bytes());
        }
    }

    /// Copy an entry into `slot`.
    #[inline]
    fn write_entry(&self, slot: u32, e: &[u8; ENTRY_SIZE]) {
        let base = Self::slot_word(slot);
        for (i, chunk) in e.chunks_exact(4).enumerate() {
            let mut w = [0u8; 4];
            w.copy_from_slice(chunk);
            self.words[base + i].store(u32::from_le_bytes(w), Ordering::Relaxed);
        }
    }

    /// Raw header indices `(req_prod, req_event, rsp_prod, rsp_event)`, for diagnostics.
    pub fn indices(&self) -> (u32, u32, u32, u32) {
        (
            self.load(sring::REQ_PROD, Ordering::Acquire),
            self.load(sring::REQ_EVENT, Ordering::Relaxed),
            self.load(sring::RSP_PROD, Ordering::Acquire),
            self.load(sring::RSP_EVENT, Ordering::Relaxed),
        )
    }
}

/// The consumer end (xenvmi's): takes requests, gives responses. It holds only its private
/// indices; the page is passed to each call, so the owner of the page (a backend) and the
/// owner of the ring state (an event loop) can be different objects.
#[derive(Debug, Clone, Copy)]
pub struct BackRing {
    req_cons: u32,
    rsp_prod_pvt: u32,
    /// The last `rsp_prod` published: the producer cannot have more than [`RING_SLOTS`]
    /// requests beyond it.
    rsp_pushed: u32,
}

impl BackRing {
    /// `BACK_RING_INIT` over a page the producer has initialised (or that [`RingPage::init`]
    /// just set up). Private indices start from the page's current `rsp_prod`, so a consumer
    /// that re-attaches to a live ring continues where the last one stopped.
    pub fn attach(page: &RingPage) -> Self {
        let rsp = page.load(sring::RSP_PROD, Ordering::Acquire);
        BackRing {
            req_cons: rsp,
            rsp_prod_pvt: rsp,
            rsp_pushed: rsp,
        }
    }

    /// `RING_HAS_UNCONSUMED_REQUESTS`: requests waiting, never more than an honest producer
    /// can have queued. The producer sees only published responses, so it has at most
    /// [`RING_SLOTS`] requests beyond the last published `rsp_prod`: a `req_prod` that claims
    /// more is not believed, and one drain between two [`BackRing::push_responses`] takes at
    /// most [`RING_SLOTS`] requests whatever the header says (found by the `vm_event` fuzz
    /// target: counting from the private response index let a drain that answers as it goes
    /// take up to 2^32).
    #[inline]
    pub fn unconsumed(&self, page: &RingPage) -> u32 {
        let req_prod = page.load(sring::REQ_PROD, Ordering::Acquire);
        let waiting = req_prod.wrapping_sub(self.req_cons);
        let taken = self.req_cons.wrapping_sub(self.rsp_pushed);
        waiting.min(RING_SLOTS.saturating_sub(taken))
    }

    /// Take the next request (copied out of the page), if any. Sets `req_event` so the
    /// producer notifies for the next one, as xen-access does.
    #[inline]
    pub fn get_request(&mut self, page: &RingPage, out: &mut [u8; ENTRY_SIZE]) -> bool {
        if self.unconsumed(page) == 0 {
            return false;
        }
        page.read_entry(self.req_cons, out);
        self.req_cons = self.req_cons.wrapping_add(1);
        page.store(
            sring::REQ_EVENT,
            self.req_cons.wrapping_add(1),
            Ordering::Relaxed,
        );
        true
    }

    /// Queue a response (not visible to the producer until [`BackRing::push_responses`]).
    /// Returns `false` if there is no request it could answer (more responses than requests
    /// taken), which would corrupt the ring.
    #[inline]
    pub fn put_response(&mut self, page: &RingPage, rsp: &[u8; ENTRY_SIZE]) -> bool {
        if self.req_cons.wrapping_sub(self.rsp_prod_pvt) == 0 {
            return false;
        }
        page.write_entry(self.rsp_prod_pvt, rsp);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        true
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publish queued responses (release) and say
    /// whether the producer asked to be notified.
    #[inline]
    pub fn push_responses(&mut self, page: &RingPage) -> bool {
        let old = page.load(sring::RSP_PROD, Ordering::Relaxed);
        let new = self.rsp_prod_pvt;
        page.store(sring::RSP_PROD, new, Ordering::Release);
        self.rsp_pushed = new;
        let event = page.load(sring::RSP_EVENT, Ordering::Acquire);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Requests taken but not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Write a response that no request on this ring asked for, and publish it. Used only on a
    /// fresh ring that is disabled right after, to release vCPUs that a dead consumer left
    /// paused ([`Session::recover`](crate::event::session::Session::recover)): the producer consumes
    /// every response on notify, but its free-slot count is off afterwards, so nothing else may
    /// use the ring. At most [`RING_SLOTS`] between notifies.
    pub fn put_unsolicited(&mut self, page: &RingPage, rsp: &[u8; ENTRY_SIZE]) {
        page.write_entry(self.rsp_prod_pvt, rsp);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        self.req_cons = self.rsp_prod_pvt;
        self.push_responses(page);
    }
}

/// The producer end, driven as Xen drives it (tests and the simulated domain). Like
/// [`BackRing`] it holds only its private indices.
#[derive(Debug, Clone, Copy)]
pub struct FrontRing {
    req_prod_pvt: u32,
    rsp_cons: u32,
}

impl FrontRing {
    /// `SHARED_RING_INIT` + `FRONT_RING_INIT`: initialise the page and start at index 0.
    pub fn new(page: &RingPage) -> Self {
        page.init();
        FrontRing {
            req_prod_pvt: 0,
            rsp_cons: 0,
        }
    }

    /// A front ring whose indices start at `start` (to test 32-bit wrap-around): sets the
    /// page's indices too.
    pub fn starting_at(page: &RingPage, start: u32) -> Self {
        page.store(sring::REQ_PROD, start, Ordering::Relaxed);
        page.store(sring::RSP_PROD, start, Ordering::Relaxed);
        page.store(sring::REQ_EVENT, start.wrapping_add(1), Ordering::Relaxed);
        page.store(sring::RSP_EVENT, start.wrapping_add(1), Ordering::Release);
        FrontRing {
            req_prod_pvt: start,
            rsp_cons: start,
        }
    }

    /// `RING_FREE_REQUESTS` (unsigned arithmetic, as the C macro: a consumer that publishes
    /// more responses than requests makes it wrap, which is why
    /// [`BackRing::put_unsolicited`] is only used on a ring that is disabled right after).
    pub fn free_requests(&self) -> u32 {
        RING_SLOTS.wrapping_sub(self.req_prod_pvt.wrapping_sub(self.rsp_cons))
    }

    /// Write one request and publish it (`vm_event_put_request`): Xen stamps the version
    /// itself, so the caller's bytes go in as given. Returns `false` when the ring is full.
    pub fn put_request(&mut self, page: &RingPage, req: &[u8; ENTRY_SIZE]) -> bool {
        if self.free_requests() == 0 {
            return false;
        }
        page.write_entry(self.req_prod_pvt, req);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        page.store(sring::REQ_PROD, self.req_prod_pvt, Ordering::Release);
        true
    }

    /// Take one response (`vm_event_get_response`), if published.
    pub fn get_response(&mut self, page: &RingPage, out: &mut [u8; ENTRY_SIZE]) -> bool {
        let rsp_prod = page.load(sring::RSP_PROD, Ordering::Acquire);
        if rsp_prod == self.rsp_cons {
            return false;
        }
        page.read_entry(self.rsp_cons, out);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        page.store(
            sring::RSP_EVENT,
            self.rsp_cons.wrapping_add(1),
            Ordering::Release,
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: u8) -> [u8; ENTRY_SIZE] {
        let mut e = [0u8; ENTRY_SIZE];
        e[0] = 7;
        e[12] = tag;
        e[399] = tag;
        e
    }

    #[test]
    fn a_lying_req_prod_gives_at_most_one_ring_per_drain() {
        // The producer claims 2^31 requests. A drain that answers each one as it goes (as
        // the event loop does) must still stop after the ring's slots, until it publishes.
        let p = RingPage::boxed();
        p.init();
        let mut back = BackRing::attach(&p);
        p.store_word(sring::REQ_PROD, 1 << 31);
        let mut r = [0u8; ENTRY_SIZE];
        for _ in 0..3 {
            let mut taken = 0;
            while back.get_request(&p, &mut r) {
                assert!(back.put_response(&p, &r));
                taken += 1;
                assert!(taken <= RING_SLOTS, "the drain does not end");
            }
            assert_eq!(taken, RING_SLOTS);
            back.push_responses(&p);
        }
    }

    #[test]
    fn init_matches_shared_ring_init() {
        let p = RingPage::boxed();
        p.init();
        assert_eq!(p.indices(), (0, 1, 0, 1));
    }

    #[test]
    fn requests_and_responses_round_trip_across_wraparound() {
        for start in [0u32, u32::MAX - 3] {
            let p = RingPage::boxed();
            let mut front = FrontRing::starting_at(&p, start);
            let mut back = BackRing::attach(&p);
            let mut buf = [0u8; ENTRY_SIZE];
            for round in 0..5u8 {
                // Fill all 8 slots; the 9th does not fit.
                for i in 0..8u8 {
                    assert!(
                        front.put_request(&p, &entry(round * 8 + i)),
                        "start {start:#x} round {round}"
                    );
                }
                assert!(!front.put_request(&p, &entry(99)), "ring full");
                assert_eq!(back.unconsumed(&p), 8);
                for i in 0..8u8 {
                    assert!(back.get_request(&p, &mut buf));
                    assert_eq!((buf[12], buf[399]), (round * 8 + i, round * 8 + i));
                    assert!(back.put_response(&p, &buf));
                }
                assert!(!back.get_request(&p, &mut buf));
                assert!(!back.put_response(&p, &buf), "no request left to answer");
                back.push_responses(&p);
                for i in 0..8u8 {
                    assert!(front.get_response(&p, &mut buf));
                    assert_eq!(buf[12], round * 8 + i);
                }
                assert!(!front.get_response(&p, &mut buf));
            }
        }
    }

    #[test]
    fn a_producer_overclaiming_requests_is_capped_at_the_ring_size() {
        let p = RingPage::boxed();
        p.init();
        let back = BackRing::attach(&p);
        p.store(sring::REQ_PROD, 1000, Ordering::Release);
        assert_eq!(back.unconsumed(&p), RING_SLOTS);
    }
}
