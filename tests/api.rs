//! The blocking / `try_` / `_timeout` triplets and the `len` family, on
//! every kind: each `try_` form says `Empty`/`Full` at once, each
//! `_timeout` form says `Timeout` at its deadline (never earlier, and not
//! much later), and each moves a message when there is one or room.

use ringway::mpmc::{Receiver, Sender};
use ringway::pipe::Pipe;
use ringway::spsc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_millis(30);

/// Run `f` and check it took at least `T` and returned a timeout.
fn times_out<R: std::fmt::Debug>(
    what: &str,
    f: impl FnOnce() -> R,
    is_timeout: impl Fn(&R) -> bool,
) {
    let t0 = Instant::now();
    let r = f();
    let took = t0.elapsed();
    assert!(is_timeout(&r), "{what}: expected a timeout, got {r:?}");
    assert!(
        took >= T,
        "{what}: gave up after {took:?}, before its {T:?}"
    );
    assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
}

#[test]
fn spsc_triplets_and_len() {
    let (mut tx, mut rx) = spsc::channel(4096).unwrap();
    assert!(tx.is_empty() && rx.is_empty() && !tx.is_full());
    assert_eq!(rx.max_message_len(), tx.max_message_len());
    assert!(rx.try_recv_vec().unwrap_err().is_empty());
    assert!(rx.try_recv_pod::<u64>().unwrap_err().is_empty());
    times_out(
        "recv_vec_timeout",
        || rx.recv_vec_timeout(T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );
    times_out(
        "recv_pod_timeout",
        || rx.recv_pod_timeout::<u64>(T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );

    tx.try_send_pod(&1u64).unwrap();
    tx.send_pod_timeout(&2u64, T).unwrap();
    tx.send_pod(&3u64).unwrap();
    assert_eq!(rx.len(), 3 * 16, "three 8-byte messages, 16-byte frames");
    assert_eq!(tx.len(), rx.len());
    assert_eq!(rx.try_recv_pod::<u64>().unwrap(), 1);
    assert_eq!(rx.recv_pod_timeout::<u64>(T).unwrap(), 2);
    assert_eq!(rx.recv_vec_timeout(T).unwrap(), 3u64.to_le_bytes());
    assert!(rx.is_empty());

    // Fill it: the try_ form says Full, the timeout form Timeout.
    while tx.try_send_pod(&0u64).is_ok() {}
    assert!(tx.try_send_pod(&0u64).unwrap_err().is_full());
    times_out(
        "send_pod_timeout",
        || tx.send_pod_timeout(&0u64, T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );
    {
        let mut b = tx.batch();
        times_out(
            "push_timeout",
            || b.push_timeout(&[0; 8], T),
            |r| r.as_ref().is_err_and(|e| e.is_timeout()),
        );
    }
    assert!(!rx.is_empty());
    // Room only for empty messages is left; once they fill it too, both
    // ends say full.
    assert!(!tx.is_full());
    while tx.try_send(&[]).is_ok() {}
    assert!(tx.is_full() && rx.is_full());
    // Full: no room for one more 16-byte frame.
    assert!(
        tx.len() > tx.capacity() - 32,
        "len {} of {}",
        tx.len(),
        tx.capacity()
    );
}

#[test]
fn mpmc_triplets_and_len() {
    let mut tx = Sender::create_anonymous(4, 16).unwrap();
    let mut rx = Receiver::from_fd(tx.segment_fd()).unwrap();
    assert_eq!(rx.max_message_len(), 16);
    assert!(tx.is_empty() && rx.is_empty() && !rx.is_full());
    assert!(rx.try_recv_vec().unwrap_err().is_empty());
    assert!(rx.try_recv_pod::<u32>().unwrap_err().is_empty());
    times_out(
        "recv_vec_timeout",
        || rx.recv_vec_timeout(T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );
    times_out(
        "recv_pod_timeout",
        || rx.recv_pod_timeout::<u32>(T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );
    times_out(
        "recv_batch_timeout",
        || rx.recv_batch_timeout(4, T, |_| {}),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );

    tx.try_send_pod(&1u32).unwrap();
    tx.send_pod_timeout(&2u32, T).unwrap();
    tx.send_value_timeout(&"three", T).unwrap();
    tx.claim_timeout(4, T).unwrap().commit_len(4).unwrap();
    assert_eq!((tx.len(), rx.len()), (4, 4));
    assert!(tx.is_full());
    assert!(tx.try_send_pod(&0u32).unwrap_err().is_full());
    times_out(
        "send_pod_timeout",
        || tx.send_pod_timeout(&0u32, T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );
    times_out(
        "send_value_timeout",
        || tx.send_value_timeout(&0u8, T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );
    times_out(
        "send_batch_timeout",
        || tx.send_batch_timeout(&[b"x"], T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );
    times_out(
        "claim_timeout",
        || tx.claim_timeout(4, T).map(|_| ()),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );

    assert_eq!(rx.try_recv_pod::<u32>().unwrap(), 1);
    assert_eq!(rx.recv_pod_timeout::<u32>(T).unwrap(), 2);
    assert_eq!(rx.recv_value_timeout::<String>(T).unwrap(), "three");
    assert_eq!(rx.try_recv_vec().unwrap().len(), 4);
    assert!(rx.is_empty());
    tx.send_batch_timeout(&[b"a", b"b"], T).unwrap();
    let mut got = Vec::new();
    assert_eq!(
        rx.recv_batch_timeout(4, T, |m| got.push(m.to_vec()))
            .unwrap(),
        2
    );
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn pipe_triplets_and_len() {
    let (mut a, mut b) = Pipe::pair(true, 4096).unwrap();
    assert!(b.is_empty() && !a.is_full());
    assert!(a.max_message_len() > 0);
    assert!(b.try_recv::<u32>().unwrap_err().is_empty());
    assert!(b.try_recv_bytes(None).unwrap_err().is_empty());
    assert!(b
        .try_recv_bytes_into(&mut [0; 8], 0)
        .unwrap_err()
        .is_empty());
    times_out(
        "recv_timeout",
        || b.recv_timeout::<u32>(T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );
    times_out(
        "recv_bytes_timeout",
        || b.recv_bytes_timeout(None, T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );
    times_out(
        "recv_bytes_into_timeout",
        || b.recv_bytes_into_timeout(&mut [0; 8], 0, T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );

    a.try_send(&7u32).unwrap();
    a.send_timeout(&8u32, T).unwrap();
    a.try_send_bytes(b"..nine", 2, None).unwrap();
    a.send_bytes_timeout(b"ten", 0, Some(3), T).unwrap();
    a.send_bytes(b"eleven!", 0, None).unwrap();
    assert!(!b.is_empty() && a.is_empty());
    assert_eq!(b.try_recv::<u32>().unwrap(), 7);
    assert_eq!(b.recv_timeout::<u32>(T).unwrap(), 8);
    assert_eq!(b.try_recv_bytes(None).unwrap(), b"nine");
    // Too long for the limit: refused, and it stays.
    assert!(b
        .recv_bytes_timeout(Some(2), T)
        .unwrap_err()
        .is_buffer_too_short());
    assert_eq!(b.recv_bytes_timeout(Some(3), T).unwrap(), b"ten");
    let mut buf = [0u8; 4];
    assert!(b
        .try_recv_bytes_into(&mut buf, 0)
        .unwrap_err()
        .is_buffer_too_short());
    let mut buf = [0u8; 9];
    assert_eq!(b.recv_bytes_into_timeout(&mut buf, 2, T).unwrap(), 7);
    assert_eq!(&buf[2..], b"eleven!");
    assert!(b.is_empty());

    while a.try_send_bytes(&[0], 0, None).is_ok() {}
    assert!(a.try_send_bytes(&[0], 0, None).unwrap_err().is_full());
    times_out(
        "send_bytes_timeout",
        || a.send_bytes_timeout(&[0], 0, None, T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );
    times_out(
        "send_timeout",
        || a.send_timeout(&[0u64; 8], T),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );
}
