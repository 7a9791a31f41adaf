//! BENCH.md's memory target: no heap allocation per message on the hot
//! path of the byte API. A counting global allocator watches a loop of
//! sends and receives through each structure (after a warm-up, which may
//! allocate once: the wait machinery, a doorbell, thread-locals).

use ringway::mpmc::{Receiver, Sender};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the count is thread-local, so
// other test threads do not disturb a measurement.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Allocations made by this thread while running `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

const N: u64 = 10_000;

#[test]
fn spsc_send_and_receive_do_not_allocate() {
    let (mut tx, mut rx) = ringway::spsc::channel(4096).unwrap();
    let msg = [7u8; 64];
    let mut buf = [0u8; 64];
    let mut round = || {
        tx.send(&msg).unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), 64);
        tx.try_send(&msg).unwrap();
        assert_eq!(&*rx.try_read().unwrap(), &msg[..]);
        let mut b = tx.batch();
        for _ in 0..4 {
            b.try_claim(64).unwrap().copy_from_slice(&msg);
        }
        b.publish().unwrap();
        let mut rb = rx.read_batch();
        let mut got = 0;
        while let Some(m) = rb.next().unwrap() {
            got += m.len();
        }
        assert_eq!(got, 256);
    };
    round();
    assert_eq!(allocations(|| (0..N).for_each(|_| round())), 0);
    // And the check can fail: a Vec per message is seen.
    assert!(allocations(|| drop(std::hint::black_box(vec![0u8; 64]))) > 0);
}

#[test]
fn mpmc_send_and_receive_do_not_allocate() {
    let mut tx = Sender::create_anonymous(64, 64).unwrap();
    let mut rx = Receiver::from_fd(tx.segment_fd()).unwrap();
    let msg = [9u8; 64];
    let refs: [&[u8]; 4] = [&msg; 4];
    let mut buf = [0u8; 64];
    let mut round = || {
        tx.send(&msg).unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), 64);
        assert_eq!(tx.try_send_batch(&refs).unwrap(), 4);
        let mut n = 0;
        rx.try_recv_batch(4, |m| n += m.len()).unwrap();
        assert_eq!(n, 256);
    };
    round();
    assert_eq!(allocations(|| (0..N).for_each(|_| round())), 0);
}

#[test]
fn pipe_send_bytes_and_recv_bytes_into_do_not_allocate() {
    let (mut a, mut b) = ringway::pipe::Pipe::pair(true, 4096).unwrap();
    let msg = [3u8; 100];
    let mut buf = [0u8; 128];
    let mut round = || {
        a.send_bytes(&msg, 0, None).unwrap();
        assert_eq!(b.recv_bytes_into(&mut buf, 0).unwrap(), 100);
        b.send_bytes(&msg, 10, Some(50)).unwrap();
        assert_eq!(a.recv_bytes_into(&mut buf, 28).unwrap(), 50);
    };
    round();
    assert_eq!(allocations(|| (0..N).for_each(|_| round())), 0);
}
