//! A hostile writer interleaved with the live state machines: an spsc
//! ring or an mpmc queue, both ends in this process, driven by operations
//! decoded from bytes, and between them words of the segment overwritten
//! through a second mapping, as a peer would. Until the first hostile
//! write every result is checked against a `VecDeque`; after it, every call
//! must still return (a value or an error) with lengths in bounds: never a
//! panic, an out-of-bounds access or a hang (bounded waits only, so a hang
//! shows as libFuzzer's timeout).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::{RecvError, SendError};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// A bounded wait: long enough to take the slow paths, short enough that a
/// few hundred of them stay far below the timeout.
const WAIT: Duration = Duration::from_millis(1);

/// A second, writable mapping of the segment behind `fd`.
struct Writer {
    ptr: *mut u8,
    len: usize,
}

impl Writer {
    fn new(fd: BorrowedFd<'_>) -> Writer {
        // SAFETY: fstat into a zeroed struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open; `st` is valid storage.
        assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
        let len = st.st_size as usize;
        // SAFETY: a fresh shared mapping of the whole file.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Writer { ptr: ptr.cast(), len }
    }

    /// Overwrite the 8-byte word `at` (modulo the size) with a shape of
    /// `v`: the value itself, or a near miss of what is there.
    fn poke(&self, at: u32, shape: u8, v: u64) {
        let off = (at as usize * 8) % self.len & !7;
        // SAFETY: `off + 8 <= len`, 8-aligned in a page-aligned mapping;
        // the word is accessed atomically by ringway, so a volatile
        // read-modify-write here is what a racing peer would do.
        unsafe {
            let p = self.ptr.add(off).cast::<u64>();
            let was = std::ptr::read_volatile(p);
            let now = match shape % 5 {
                0 => v,
                1 => was.wrapping_add(v % 8 + 1),
                2 => was.wrapping_sub(v % 8 + 1),
                3 => was ^ 1 << (v % 64),
                _ => 0,
            };
            std::ptr::write_volatile(p, now);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Reads the input as operations: one byte each, plus 12 bytes for a
/// hostile write.
struct Ops<'a>(&'a [u8]);

impl Ops<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn hostile(&mut self) -> Option<(u32, u8, u64)> {
        let at = u32::from(u16::from_le_bytes([self.byte()?, self.byte()?]));
        let shape = self.byte()?;
        let mut v = [0u8; 8];
        for b in &mut v {
            *b = self.byte()?;
        }
        Some((at, shape, u64::from_le_bytes(v)))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, ops)) = data.split_first() else { return };
    if sel & 1 == 0 {
        spsc(sel >> 1, Ops(ops));
    } else {
        mpmc(sel >> 1, Ops(ops));
    }
});

/// The model: the messages in flight, until the first hostile write.
type Model = Option<VecDeque<Vec<u8>>>;

/// A send's result, checked against the model while there is one.
fn sent(r: Result<(), SendError<()>>, msg: Vec<u8>, model: &mut Model) {
    match (r, model) {
        (Ok(()), Some(m)) => m.push_back(msg),
        (Err(SendError::Full(()) | SendError::Timeout(())), _) | (_, None) => {}
        (Err(e), Some(_)) => panic!("send: {e}"),
    }
}

/// A receive's result (into `buf`), checked against the model while there
/// is one, and in bounds always.
fn received(r: Result<usize, RecvError>, buf: &[u8], max: usize, model: &mut Model) {
    match (r, model) {
        (Ok(n), Some(m)) => assert_eq!(Some(&buf[..n]), m.pop_front().as_deref()),
        (Ok(n), None) => assert!(n <= max),
        (Err(RecvError::Empty | RecvError::Timeout), Some(m)) => assert!(m.is_empty()),
        (Err(e), Some(_)) => panic!("recv: {e}"),
        (Err(_), None) => {}
    }
}

fn spsc(sel: u8, mut ops: Ops<'_>) {
    let (mut tx, mut rx) = ringway::spsc::channel(64 << (sel % 3)).unwrap();
    let w = Writer::new(tx.segment_fd());
    let max = tx.max_message_len();
    let mut model: Model = Some(VecDeque::new());
    let mut buf = vec![0u8; max];
    let mut i = 0u8;
    while let Some(op) = ops.byte() {
        i = i.wrapping_add(1);
        let len = (op >> 3) as usize % (max + 1);
        let msg = vec![i; len];
        match op & 7 {
            0 => {
                let Some((at, shape, v)) = ops.hostile() else { return };
                w.poke(at, shape, v);
                model = None;
            }
            1 | 2 => {
                let r = if op & 7 == 1 { tx.try_send(&msg) } else { tx.send_timeout(&msg, WAIT) };
                sent(r, msg, &mut model);
            }
            3 => {
                let mut b = tx.batch();
                let mut pushed = Vec::new();
                for k in 0..=(op >> 3) % 4 {
                    if b.try_push(&msg[..len.saturating_sub(k as usize)]).is_ok() {
                        pushed.push(msg[..len.saturating_sub(k as usize)].to_vec());
                    }
                }
                if b.publish().is_ok() {
                    if let Some(m) = &mut model {
                        m.extend(pushed);
                    }
                } else if model.is_some() {
                    panic!("publish failed on an intact ring");
                }
            }
            4 | 5 => {
                let r = if op & 7 == 4 { rx.try_recv(&mut buf) } else { rx.recv_timeout(&mut buf, WAIT) };
                received(r, &buf, max, &mut model);
            }
            6 => match (rx.try_read(), &mut model) {
                (Ok(g), Some(m)) => assert_eq!(Some(&g[..]), m.pop_front().as_deref()),
                (Ok(g), None) => assert!(g.len() <= max),
                (Err(RecvError::Empty), Some(m)) => assert!(m.is_empty()),
                (Err(e), Some(_)) => panic!("read: {e}"),
                (Err(_), None) => {}
            },
            _ => {
                let mut batch = rx.read_batch();
                let mut n = 0;
                while let Ok(Some(m)) = batch.next() {
                    assert!(m.len() <= max);
                    if let Some(model) = &mut model {
                        assert_eq!(Some(m), model.pop_front().as_deref());
                    }
                    n += 1;
                    if n > 4096 {
                        panic!("a batch longer than the ring can hold");
                    }
                }
            }
        }
    }
}

fn mpmc(sel: u8, mut ops: Ops<'_>) {
    use ringway::mpmc::{Receiver, Sender};
    let cap = 2usize << (sel % 4);
    let slot = 8usize << (sel / 4 % 3);
    let mut tx = Sender::create_anonymous(cap, slot).unwrap();
    let mut rx = Receiver::from_fd(tx.segment_fd()).unwrap();
    let w = Writer::new(tx.segment_fd());
    let max = tx.max_message_len();
    let mut model: Model = Some(VecDeque::new());
    let mut buf = vec![0u8; max];
    let mut i = 0u8;
    while let Some(op) = ops.byte() {
        i = i.wrapping_add(1);
        let len = (op >> 3) as usize % (max + 1);
        let msg = vec![i; len];
        match op & 7 {
            0 => {
                let Some((at, shape, v)) = ops.hostile() else { return };
                w.poke(at, shape, v);
                model = None;
            }
            1 | 2 => {
                let r = if op & 7 == 1 { tx.try_send(&msg) } else { tx.send_timeout(&msg, WAIT) };
                sent(r, msg, &mut model);
            }
            3 => {
                let batch: Vec<&[u8]> = (0..=(op >> 3) % 4).map(|_| &msg[..]).collect();
                match (tx.try_send_batch(&batch), &mut model) {
                    (Ok(n), Some(m)) => m.extend(batch[..n].iter().map(|b| b.to_vec())),
                    (Ok(n), None) => assert!(n <= batch.len()),
                    (Err(SendError::Full(())), _) | (Err(_), None) => {}
                    (Err(e), Some(_)) => panic!("batch: {e}"),
                }
            }
            4 | 5 => {
                let r = if op & 7 == 4 { rx.try_recv(&mut buf) } else { rx.recv_timeout(&mut buf, WAIT) };
                received(r, &buf, max, &mut model);
            }
            6 => match (tx.try_claim(len), &mut model) {
                (Ok(mut g), Some(m)) => {
                    g.copy_from_slice(&msg);
                    g.commit().unwrap();
                    m.push_back(msg);
                }
                (Ok(mut g), None) => {
                    g.copy_from_slice(&msg);
                    let _ = g.commit();
                }
                (Err(SendError::Full(())), _) | (Err(_), None) => {}
                (Err(e), Some(_)) => panic!("claim: {e}"),
            },
            _ => {
                let mut got = Vec::new();
                let r = rx.try_recv_batch(4, |m| got.push(m.to_vec()));
                for m in &got {
                    assert!(m.len() <= max);
                }
                match (r, &mut model) {
                    (Ok(_), Some(model)) => {
                        for m in got {
                            assert_eq!(Some(m), model.pop_front());
                        }
                    }
                    (Err(RecvError::Empty), Some(m)) => assert!(m.is_empty()),
                    (Err(e), Some(_)) => panic!("batch recv: {e}"),
                    _ => {}
                }
            }
        }
    }
}
