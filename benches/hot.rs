//! Single-process microbenchmarks of the hot operations: a send/receive
//! pair through each structure (the cost of one hand-off without the
//! cross-core transfer), batches of several sizes, the typed codec path,
//! and the counters. Every benchmark checks its result before timing.
//!
//! `cargo bench --bench hot` (criterion; `-- <filter>` to pick some).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::measurement::WallTime;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringway::counters::CounterMap;
use ringway::mpmc::{Receiver, Sender};
use ringway::spsc;
use serde::{Deserialize, Serialize};

fn spsc_pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc send+recv");
    for size in [8usize, 64, 512] {
        let (mut tx, mut rx) = spsc::channel(1 << 16).unwrap();
        let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut buf = vec![0u8; size];
        // Correctness first: what goes in comes out.
        tx.send(&msg).unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), size);
        assert_eq!(buf, msg);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                tx.try_send(black_box(&msg)).unwrap();
                rx.try_recv(black_box(&mut buf)).unwrap()
            })
        });
    }
    g.finish();
}

/// The same-core pair target of issue 13: ringway's try_send + try_recv of
/// a message <= 2x rtrb's push + pop of a value of the same size, both
/// rings 1024 messages, in one criterion group so they run side by side.
fn spsc_vs_rtrb(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair vs rtrb");
    g.throughput(Throughput::Elements(1));
    fn rtrb_pair<const N: usize>(g: &mut criterion::BenchmarkGroup<'_, WallTime>) {
        let (mut p, mut q) = rtrb::RingBuffer::<[u8; N]>::new(1024);
        let msg = [5u8; N];
        p.push(msg).unwrap();
        assert_eq!(q.pop().unwrap(), msg);
        g.bench_function(format!("rtrb push+pop {N} B"), |b| {
            b.iter(|| {
                p.push(black_box(msg)).unwrap();
                q.pop().unwrap()
            })
        });
    }
    fn ringway_pair<const N: usize>(g: &mut criterion::BenchmarkGroup<'_, WallTime>) {
        // 1024 frames of N bytes and their headers.
        let (mut tx, mut rx) = spsc::channel((1024 * (N + 8)).next_power_of_two()).unwrap();
        let msg = [5u8; N];
        let mut buf = [0u8; N];
        tx.try_send(&msg).unwrap();
        assert_eq!(rx.try_recv(&mut buf).unwrap(), N);
        assert_eq!(buf, msg);
        g.bench_function(format!("ringway try_send+try_recv {N} B"), |b| {
            b.iter(|| {
                tx.try_send(black_box(&msg)).unwrap();
                rx.try_recv(black_box(&mut buf)).unwrap()
            })
        });
    }
    rtrb_pair::<8>(&mut g);
    ringway_pair::<8>(&mut g);
    rtrb_pair::<64>(&mut g);
    ringway_pair::<64>(&mut g);
    g.finish();
}

fn spsc_batches(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc batch of N x 64 B");
    for n in [1usize, 8, 32, 128] {
        let (mut tx, mut rx) = spsc::channel(1 << 16).unwrap();
        let msg = [7u8; 64];
        let round = |tx: &mut spsc::Producer, rx: &mut spsc::Consumer| -> usize {
            let mut b = tx.batch();
            for _ in 0..n {
                b.try_claim(64).unwrap().copy_from_slice(&msg);
            }
            b.publish().unwrap();
            let mut got = 0;
            let mut rb = rx.read_batch();
            while let Some(m) = rb.next().unwrap() {
                got += m.len();
            }
            got
        };
        assert_eq!(round(&mut tx, &mut rx), n * 64);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| round(&mut tx, &mut rx))
        });
    }
    g.finish();
}

fn mpmc_pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc batch of N x 64 B");
    for n in [1usize, 8, 32] {
        let mut tx = Sender::create_anonymous(1024, 64).unwrap();
        let mut rx = Receiver::from_fd(tx.segment_fd()).unwrap();
        let msgs: Vec<[u8; 64]> = (0..n).map(|i| [i as u8; 64]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
        let mut round = || -> u64 {
            if n == 1 {
                tx.try_send(refs[0]).unwrap();
                let mut buf = [0u8; 64];
                rx.try_recv(&mut buf).unwrap();
                return buf[0] as u64;
            }
            assert_eq!(tx.try_send_batch(&refs).unwrap(), n);
            let mut sum = 0u64;
            let got = rx.try_recv_batch(n, |m| sum += m[0] as u64).unwrap();
            sum + got as u64
        };
        let want = if n == 1 {
            0
        } else {
            (0..n as u64).sum::<u64>() + n as u64
        };
        assert_eq!(round(), want);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(&mut round)
        });
    }
    g.finish();
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Order {
    id: u64,
    symbol: String,
    qty: i32,
    price: f64,
    tags: Vec<u16>,
}

fn typed(c: &mut Criterion) {
    let order = Order {
        id: 42,
        symbol: "RWAY".into(),
        qty: -100,
        price: 101.25,
        tags: vec![1, 2, 3],
    };
    let (mut tx, mut rx) = spsc::channel(1 << 16).unwrap();
    tx.send_value(&order).unwrap();
    assert_eq!(rx.recv_value::<Order>().unwrap(), order);
    let mut g = c.benchmark_group("typed");
    g.throughput(Throughput::Elements(1));
    g.bench_function("spsc send_value+recv_value (Order)", |b| {
        b.iter(|| {
            tx.send_value(black_box(&order)).unwrap();
            rx.recv_value::<Order>().unwrap()
        })
    });
    let bytes = postcard_bytes(&mut tx, &mut rx, &order);
    assert_eq!(ringway::codec::decode::<Order>(&bytes).unwrap(), order);
    g.bench_function("codec decode (Order)", |b| {
        b.iter(|| ringway::codec::decode::<Order>(black_box(&bytes)).unwrap())
    });
    let pod = [7u64; 8];
    tx.send_pod(&pod).unwrap();
    assert_eq!(rx.recv_pod::<[u64; 8]>().unwrap(), pod);
    g.bench_function("spsc send_pod+recv_pod ([u64; 8])", |b| {
        b.iter(|| {
            tx.send_pod(black_box(&pod)).unwrap();
            rx.recv_pod::<[u64; 8]>().unwrap()
        })
    });
    g.finish();
}

/// The bytes `send_value` puts on the ring for `v` (read back raw).
fn postcard_bytes(tx: &mut spsc::Producer, rx: &mut spsc::Consumer, v: &Order) -> Vec<u8> {
    tx.send_value(v).unwrap();
    let mut buf = vec![0u8; 256];
    let n = rx.recv(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn counters(c: &mut Criterion) {
    let map = CounterMap::create_anonymous(64).unwrap();
    map.set("count", 0).unwrap();
    assert_eq!(map.add("count", 5).unwrap(), 5);
    let counter = map.counter("count").unwrap();
    assert_eq!(counter.add(1), 6);
    let mut g = c.benchmark_group("counters");
    g.throughput(Throughput::Elements(1));
    g.bench_function("map add (lookup)", |b| {
        b.iter(|| map.add(black_box("count"), 1).unwrap())
    });
    g.bench_function("Counter handle add", |b| {
        b.iter(|| counter.add(black_box(1)))
    });
    g.bench_function("add under the map's lock", |b| {
        b.iter(|| {
            let guard = map.lock().unwrap();
            guard.add(black_box("count"), 1).unwrap()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    spsc_pair,
    spsc_vs_rtrb,
    spsc_batches,
    mpmc_pairs,
    typed,
    counters
);
criterion_main!(benches);
