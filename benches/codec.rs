//! Codec benchmarks: tinymqtt against rumqttc's `mqttbytes` on the same packets, in one run.
//!
//! Every group holds a `tinymqtt` and a `rumqttc` function measured on byte-identical wire data
//! (checked before the run), so their medians can be compared even on a noisy machine:
//!
//! - `publish_decode/{64B,1KiB,64KiB}` and `publish_encode/..`: MQTT 3.1.1 PUBLISH, QoS 1,
//!   against `rumqttc::mqttbytes::v4`;
//! - `publish_v5_decode/..` and `publish_v5_encode/..`: the same PUBLISH in MQTT 5 (no
//!   properties), against `rumqttc::v5::mqttbytes::v5`;
//! - `connect_v5_{decode,encode}`: a CONNECT with properties, user name and password;
//! - `subscribe_v5_{decode,encode}`: a SUBSCRIBE with 10 filters.
//!
//! Decoding is measured the way a connection streams: one `BytesMut` holds a batch of
//! [`BATCH`] identical packets and the routine takes them all off its front
//! (`Throughput::Elements(BATCH)`). The batch is copied in outside the timed region, and the
//! buffer is freed outside it too. Encoding appends one packet to a reused, cleared `BytesMut`.
//!
//! Before criterion starts, the run checks that a decoded tinymqtt PUBLISH shares the received
//! buffer (topic and payload are slices of it, no property list is allocated) and prints the heap
//! allocations per decoded packet for both libraries when a counting allocator is installed (see
//! [`alloc_count`]).
//!
//! Criterion measures one library's function, then the other's: on a shared machine a burst of
//! load can land on one side only. So the run first prints an interleaved comparison of the
//! PUBLISH cases ([`report_interleaved`]): the two libraries alternate in short rounds and the
//! median of the per-round ratios is reported, which such bursts barely move.
//!
//! Run with `cargo bench --bench codec`; `cargo bench --bench codec -- --test` runs each
//! function once (and skips the interleaved comparison).

use std::hint::black_box;
use std::mem::size_of;
use std::num::{NonZeroU16, NonZeroU32};
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput};
use rumqttc::mqttbytes::v4 as rv4;
use rumqttc::v5::mqttbytes::v5 as rv5;
use rumqttc::v5::mqttbytes::QoS as RQoS5;
use rumqttc::QoS as RQoS4;
use tinymqtt::codec::{
    ConnectProperties, Decoder, Encoder, Packet, Publish, Subscribe, Subscription,
};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, QoS, TopicFilter, TopicName};

/// Packets per decode iteration.
const BATCH: usize = 64;
/// Packets per allocation-count run.
const ALLOC_BATCH: usize = 1000;
const TOPIC: &str = "sensors/building-1/floor-3/temperature";
const PACKET_ID: u16 = 42;
const PAYLOADS: [(&str, usize); 3] = [("64B", 64), ("1KiB", 1024), ("64KiB", 64 * 1024)];
/// rumqttc's v4 incoming size limit: the protocol's own, like tinymqtt's default.
const RUMQTTC_V4_MAX: usize = 268_435_455;

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// Heap allocation counting: a `#[global_allocator]` that forwards to `std::alloc::System`
/// and counts calls while counting is switched on.
///
/// A global allocator is an `unsafe impl GlobalAlloc`: the one `unsafe` of the project, here in
/// a bench and nowhere in the library (`src/lib.rs` keeps `#![forbid(unsafe_code)]`;
/// `Cargo.toml` denies unsafe code in every other target). When counting is off, the
/// allocator's only extra work is one relaxed atomic load per call, for both libraries alike.
#[allow(unsafe_code)]
mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

    static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
    static COUNTING: AtomicBool = AtomicBool::new(false);

    struct Counting;

    fn count() {
        if COUNTING.load(Relaxed) {
            ALLOCATIONS.fetch_add(1, Relaxed);
        }
    }

    // SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
    // `GlobalAlloc` contract; counting touches only atomics and never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: the caller's guarantees for `alloc` are passed on as they are.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            // SAFETY: `ptr` and `layout` come from this allocator, which is `System`'s.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` and `layout` come from this allocator, which is `System`'s.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Heap allocations counted so far.
    pub(crate) fn allocations() -> Option<usize> {
        Some(ALLOCATIONS.load(Relaxed))
    }

    /// Starts or stops counting.
    pub(crate) fn set_counting(on: bool) {
        COUNTING.store(on, Relaxed);
    }
}

fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn tiny_publish(len: usize) -> Packet {
    let mut p = Publish::new(TopicName::from_static(TOPIC), payload(len));
    p.qos = QoS::AtLeastOnce;
    p.packet_id = PacketId::new(PACKET_ID);
    Packet::Publish(p)
}

fn rumq_v4_publish(len: usize) -> rv4::Publish {
    let mut p = rv4::Publish::from_bytes(TOPIC, RQoS4::AtLeastOnce, payload(len));
    p.pkid = PACKET_ID;
    p
}

fn rumq_v5_publish(len: usize) -> rv5::Publish {
    let mut p = rv5::Publish::new(TOPIC, RQoS5::AtLeastOnce, payload(len), None);
    p.pkid = PACKET_ID;
    p
}

const CLIENT_ID: &str = "bench-client-0001";
const USERNAME: &str = "sensor-gateway";
const PASSWORD: &str = "correct-horse-battery-staple";
const USER_PROPS: [(&str, &str); 2] = [("region", "eu-west-1"), ("firmware", "4.2.0-rc1")];

fn tiny_connect() -> Packet {
    let mut c = tinymqtt::codec::Connect::new(V5, ByteStr::from_static(CLIENT_ID));
    c.keep_alive = 30;
    c.username = Some(ByteStr::from_static(USERNAME));
    c.password = Some(Bytes::from_static(PASSWORD.as_bytes()));
    c.properties = ConnectProperties {
        session_expiry_interval: Some(3600),
        receive_maximum: NonZeroU16::new(100),
        maximum_packet_size: NonZeroU32::new(1 << 20),
        topic_alias_maximum: Some(16),
        request_response_information: Some(true),
        request_problem_information: Some(true),
        user_properties: USER_PROPS
            .iter()
            .map(|(k, v)| (ByteStr::from_static(k), ByteStr::from_static(v)))
            .collect(),
        ..ConnectProperties::default()
    };
    Packet::from(c)
}

type RumqConnect = (rv5::Connect, Option<rv5::LastWill>, Option<rv5::Login>);

fn rumq_connect() -> RumqConnect {
    let mut p = rv5::ConnectProperties::new();
    p.session_expiry_interval = Some(3600);
    p.receive_maximum = Some(100);
    p.max_packet_size = Some(1 << 20);
    p.topic_alias_max = Some(16);
    p.request_response_info = Some(1);
    p.request_problem_info = Some(1);
    p.user_properties = USER_PROPS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let connect = rv5::Connect {
        keep_alive: 30,
        client_id: CLIENT_ID.to_string(),
        clean_start: true,
        properties: Some(p),
    };
    (connect, None, Some(rv5::Login::new(USERNAME, PASSWORD)))
}

fn filters() -> Vec<String> {
    (0..10)
        .map(|i| match i % 3 {
            0 => format!("sensors/building-{i}/+/temperature"),
            1 => format!("alerts/site-{i}/#"),
            _ => format!("devices/dev-{i:04}/status"),
        })
        .collect()
}

fn tiny_subscribe() -> Packet {
    let filters = filters()
        .iter()
        .map(|f| Subscription::new(TopicFilter::new(f).unwrap(), QoS::AtLeastOnce))
        .collect();
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(PACKET_ID).unwrap(),
        properties: Default::default(),
        filters,
    })
}

fn rumq_subscribe() -> rv5::Subscribe {
    let mut s = rv5::Subscribe::new_many(
        filters()
            .into_iter()
            .map(|f| rv5::Filter::new(f, RQoS5::AtLeastOnce)),
        None,
    );
    s.pkid = PACKET_ID;
    s
}

fn encode_tiny(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    Encoder::new(version).encode(packet, &mut buf).unwrap();
    buf
}

/// `count` copies of `packet` back to back, in a buffer of exactly that size.
fn repeat(packet: &[u8], count: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(packet.len() * count);
    for _ in 0..count {
        buf.extend_from_slice(packet);
    }
    buf
}

fn decode_tiny(decoder: &Decoder, buf: &mut BytesMut, count: usize) {
    for _ in 0..count {
        match decoder.decode(buf) {
            Ok(Some(packet)) => {
                black_box(&packet);
            }
            other => panic!("tinymqtt: {other:?}"),
        }
    }
}

fn decode_rumq_v4(buf: &mut BytesMut, count: usize) {
    for _ in 0..count {
        match rv4::Packet::read(buf, RUMQTTC_V4_MAX) {
            Ok(packet) => {
                black_box(&packet);
            }
            Err(e) => panic!("rumqttc v4: {e:?}"),
        }
    }
}

fn decode_rumq_v5(buf: &mut BytesMut, count: usize) {
    for _ in 0..count {
        match rv5::Packet::read(buf, None) {
            Ok(packet) => {
                black_box(&packet);
            }
            Err(e) => panic!("rumqttc v5: {e:?}"),
        }
    }
}

/// Checks that both libraries put the same bytes on the wire and read each other's.
fn check_equivalence() {
    for (name, len) in PAYLOADS {
        let tiny = tiny_publish(len);
        let ours = encode_tiny(&tiny, V311);
        let mut theirs = BytesMut::new();
        rumq_v4_publish(len).write(&mut theirs).unwrap();
        assert_eq!(ours, theirs, "v3.1.1 PUBLISH {name}: wire bytes differ");
        let mut b = ours.clone();
        assert_eq!(
            rv4::Packet::read(&mut b, RUMQTTC_V4_MAX).unwrap(),
            rv4::Packet::Publish(rumq_v4_publish(len))
        );

        let ours = encode_tiny(&tiny, V5);
        let mut theirs = BytesMut::new();
        rumq_v5_publish(len).write(&mut theirs).unwrap();
        assert_eq!(ours, theirs, "v5 PUBLISH {name}: wire bytes differ");
        let mut b = ours.clone();
        assert_eq!(
            rv5::Packet::read(&mut b, None).unwrap(),
            rv5::Packet::Publish(rumq_v5_publish(len))
        );
        assert_eq!(Decoder::new(V5).decode(&mut theirs).unwrap(), Some(tiny));
    }

    // Property order may differ between encoders: compare sizes and cross-decode.
    let tiny = tiny_connect();
    let ours = encode_tiny(&tiny, V5);
    let (c, w, l) = rumq_connect();
    let mut theirs = BytesMut::new();
    c.write(&w, &l, &mut theirs).unwrap();
    assert_eq!(ours.len(), theirs.len(), "v5 CONNECT: sizes differ");
    let mut b = ours.clone();
    assert_eq!(
        rv5::Packet::read(&mut b, None).unwrap(),
        rv5::Packet::Connect(c, w, l)
    );
    assert_eq!(Decoder::new(V5).decode(&mut theirs).unwrap(), Some(tiny));

    let tiny = tiny_subscribe();
    let ours = encode_tiny(&tiny, V5);
    let mut theirs = BytesMut::new();
    rumq_subscribe().write(&mut theirs).unwrap();
    assert_eq!(ours, theirs, "v5 SUBSCRIBE: wire bytes differ");
    let mut b = ours.clone();
    assert_eq!(
        rv5::Packet::read(&mut b, None).unwrap(),
        rv5::Packet::Subscribe(rumq_subscribe())
    );
}

fn contains(range: &Range<usize>, bytes: &[u8]) -> bool {
    let start = bytes.as_ptr() as usize;
    range.contains(&start) && start + bytes.len() <= range.end
}

/// Fails the run if decoding a tinymqtt PUBLISH copies its topic or payload or allocates a
/// property list: everything must be a slice of the received buffer.
fn check_zero_copy() {
    for version in [V311, V5] {
        for (name, len) in PAYLOADS {
            let mut buf = encode_tiny(&tiny_publish(len), version);
            let range = buf.as_ptr_range();
            let range = range.start as usize..range.end as usize;
            let Ok(Some(Packet::Publish(p))) = Decoder::new(version).decode(&mut buf) else {
                panic!("{version} PUBLISH {name}: not decoded");
            };
            assert!(
                contains(&range, p.topic.as_byte_str().as_bytes()),
                "{version} PUBLISH {name}: the topic was copied out of the received buffer"
            );
            assert!(
                contains(&range, &p.payload),
                "{version} PUBLISH {name}: the payload was copied out of the received buffer"
            );
            // Empty, and no buffer behind it.
            assert_eq!(
                p.properties.user_properties.encoded_len(),
                0,
                "{version} {name}"
            );
            assert_eq!(
                p.properties.subscription_identifiers.capacity(),
                0,
                "{version} {name}"
            );
        }
    }
}

/// Allocations made by `f`, or `None` without a counting allocator.
fn count_allocations(f: impl FnOnce()) -> Option<usize> {
    alloc_count::set_counting(true);
    let before = alloc_count::allocations();
    f();
    let after = alloc_count::allocations();
    alloc_count::set_counting(false);
    Some(after? - before?)
}

fn per_packet(count: Option<usize>, packets: usize) -> String {
    match count {
        Some(n) => format!("{n:>5} ({:.3}/packet)", n as f64 / packets as f64),
        None => "    n/a".to_string(),
    }
}

/// Decodes [`ALLOC_BATCH`] packets from a fresh buffer (whose first split turns it into a shared
/// buffer: one allocation per batch), then again from the same buffer refilled in place (steady
/// state). Returns both counts.
fn decode_allocations(
    template: &BytesMut,
    mut decode: impl FnMut(&mut BytesMut, usize),
) -> (Option<usize>, Option<usize>) {
    let mut buf = template.clone();
    let fresh = count_allocations(|| decode(&mut buf, ALLOC_BATCH));
    assert!(buf.is_empty());
    // Every decoded packet is gone, so the buffer is unique again and takes its space back.
    assert!(buf.try_reclaim(template.len()), "buffer not reclaimed");
    buf.extend_from_slice(template);
    let steady = count_allocations(|| decode(&mut buf, ALLOC_BATCH));
    (fresh, steady)
}

/// Prints heap allocations per decoded and encoded PUBLISH and asserts tinymqtt makes none
/// beyond the buffer's own one-time promotion.
fn report_allocations() {
    println!(
        "size_of: tinymqtt Packet {} B, Publish {} B; rumqttc v4 Packet {} B; v5 Packet {} B",
        size_of::<Packet>(),
        size_of::<Publish>(),
        size_of::<rv4::Packet>(),
        size_of::<rv5::Packet>()
    );
    if alloc_count::allocations().is_none() {
        println!("heap allocations: not counted (no counting allocator); zero-copy check passed");
        return;
    }
    println!(
        "heap allocations decoding {ALLOC_BATCH} PUBLISH from one buffer \
         (fresh buffer | refilled buffer):"
    );
    for (version, label) in [(V311, "v3.1.1"), (V5, "v5")] {
        for (name, len) in PAYLOADS {
            let template = repeat(&encode_tiny(&tiny_publish(len), version), ALLOC_BATCH);
            let decoder = Decoder::new(version);
            let (tiny_fresh, tiny_steady) =
                decode_allocations(&template, |b, n| decode_tiny(&decoder, b, n));
            let (rumq_fresh, rumq_steady) = if version == V5 {
                decode_allocations(&template, decode_rumq_v5)
            } else {
                decode_allocations(&template, decode_rumq_v4)
            };
            println!(
                "  {label:<6} {name:<5}  tinymqtt {} | {}   rumqttc {} | {}",
                per_packet(tiny_fresh, ALLOC_BATCH),
                per_packet(tiny_steady, ALLOC_BATCH),
                per_packet(rumq_fresh, ALLOC_BATCH),
                per_packet(rumq_steady, ALLOC_BATCH),
            );
            assert!(
                tiny_fresh.unwrap_or(0) <= 1 && tiny_steady.unwrap_or(0) == 0,
                "tinymqtt allocates while decoding a {label} PUBLISH {name}: \
                 {tiny_fresh:?} then {tiny_steady:?} allocations for {ALLOC_BATCH} packets"
            );
        }
    }
    println!("heap allocations encoding {ALLOC_BATCH} PUBLISH into a reserved buffer:");
    for (name, len) in PAYLOADS {
        let tiny = tiny_publish(len);
        let rumq = rumq_v4_publish(len);
        let encoder = Encoder::new(V311);
        let mut buf = BytesMut::with_capacity(encoder.encoded_len(&tiny).unwrap() * 2);
        let ours = count_allocations(|| {
            for _ in 0..ALLOC_BATCH {
                buf.clear();
                encoder.encode(&tiny, &mut buf).unwrap();
            }
        });
        let theirs = count_allocations(|| {
            for _ in 0..ALLOC_BATCH {
                buf.clear();
                rumq.write(&mut buf).unwrap();
            }
        });
        println!(
            "  v3.1.1 {name:<5}  tinymqtt {}   rumqttc {}",
            per_packet(ours, ALLOC_BATCH),
            per_packet(theirs, ALLOC_BATCH)
        );
    }
}

/// Rounds of the interleaved comparison, and batches of [`BATCH`] packets per side per round.
const AB_ROUNDS: usize = 101;
const AB_BATCHES: usize = 16;

/// The time `work` takes on a fresh copy of `template`; the copy is made and freed untimed.
#[allow(clippy::disallowed_methods)] // a benchmark reads the clock: that is what it is for
fn timed_decode(template: &BytesMut, mut work: impl FnMut(&mut BytesMut)) -> Duration {
    let mut buf = template.clone();
    let start = Instant::now();
    work(&mut buf);
    let took = start.elapsed();
    drop(buf);
    took
}

/// The time [`BATCH`] calls of `work` take.
#[allow(clippy::disallowed_methods)] // a benchmark reads the clock: that is what it is for
fn timed_encode(mut work: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..BATCH {
        work();
    }
    start.elapsed()
}

/// Runs `tiny` and `rumq` (each timing one batch of [`BATCH`] packets) in alternating rounds;
/// returns the median nanoseconds per packet of each and the median per-round ratio.
fn interleave(
    mut tiny: impl FnMut() -> Duration,
    mut rumq: impl FnMut() -> Duration,
) -> (f64, f64, f64) {
    let per_packet = |d: Duration| d.as_nanos() as f64 / (AB_BATCHES * BATCH) as f64;
    let (mut t, mut r, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..AB_ROUNDS {
        let a = per_packet((0..AB_BATCHES).map(|_| tiny()).sum());
        let b = per_packet((0..AB_BATCHES).map(|_| rumq()).sum());
        t.push(a);
        r.push(b);
        ratio.push(b / a);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut t), median(&mut r), median(&mut ratio))
}

/// Prints the interleaved comparison of every PUBLISH case (see the module docs).
fn report_interleaved() {
    println!(
        "interleaved comparison, ns per packet (median of {AB_ROUNDS} alternating rounds of \
         {AB_BATCHES}x{BATCH} packets; ratio = median of per-round rumqttc/tinymqtt):"
    );
    let line = |group: &str, (t, r, x): (f64, f64, f64)| {
        println!("  {group:<24} tinymqtt {t:>8.1}   rumqttc {r:>8.1}   ratio {x:.2}x");
    };
    for (version, label) in [(V311, ""), (V5, "_v5")] {
        for (name, len) in PAYLOADS {
            let tiny = tiny_publish(len);
            let template = repeat(&encode_tiny(&tiny, version), BATCH);
            let decoder = Decoder::new(version);
            let rumq_decode = if version == V5 {
                decode_rumq_v5
            } else {
                decode_rumq_v4
            };
            line(
                &format!("publish{label}_decode/{name}"),
                interleave(
                    || timed_decode(&template, |b| decode_tiny(&decoder, b, BATCH)),
                    || timed_decode(&template, |b| rumq_decode(b, BATCH)),
                ),
            );
            let group = format!("publish{label}_encode/{name}");
            if version == V5 {
                let rumq = rumq_v5_publish(len);
                line(
                    &group,
                    interleave_encode(&tiny, version, |b| {
                        black_box(&rumq).write(b).unwrap();
                    }),
                );
            } else {
                let rumq = rumq_v4_publish(len);
                line(
                    &group,
                    interleave_encode(&tiny, version, |b| {
                        black_box(&rumq).write(b).unwrap();
                    }),
                );
            }
        }
    }
    let template = repeat(&encode_tiny(&tiny_subscribe(), V5), BATCH);
    let decoder = Decoder::new(V5);
    line(
        "subscribe_v5_decode",
        interleave(
            || timed_decode(&template, |b| decode_tiny(&decoder, b, BATCH)),
            || timed_decode(&template, |b| decode_rumq_v5(b, BATCH)),
        ),
    );
}

/// [`interleave`] for encoding: each library appends to its own reused, cleared buffer.
fn interleave_encode(
    tiny: &Packet,
    version: ProtocolVersion,
    mut rumq: impl FnMut(&mut BytesMut),
) -> (f64, f64, f64) {
    let encoder = Encoder::new(version);
    let capacity = encoder.encoded_len(tiny).unwrap() * 2;
    let (mut ours, mut theirs) = (
        BytesMut::with_capacity(capacity),
        BytesMut::with_capacity(capacity),
    );
    interleave(
        || {
            timed_encode(|| {
                ours.clear();
                encoder.encode(black_box(tiny), &mut ours).unwrap();
                black_box(&mut ours);
            })
        },
        || {
            timed_encode(|| {
                theirs.clear();
                rumq(&mut theirs);
                black_box(&mut theirs);
            })
        },
    )
}

/// A decode group: both libraries take [`BATCH`] packets off a buffer holding `wire` repeated.
fn bench_decode(
    c: &mut Criterion,
    group: &str,
    wire: &[u8],
    version: ProtocolVersion,
    rumq: fn(&mut BytesMut, usize),
) {
    let template = repeat(wire, BATCH);
    let decoder = Decoder::new(version);
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("tinymqtt", |b| {
        b.iter_batched(
            || template.clone(),
            |mut buf| {
                decode_tiny(&decoder, &mut buf, BATCH);
                buf
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("rumqttc", |b| {
        b.iter_batched(
            || template.clone(),
            |mut buf| {
                rumq(&mut buf, BATCH);
                buf
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// An encode group: each library appends one packet to a reused, cleared buffer.
fn bench_encode(
    c: &mut Criterion,
    group: &str,
    tiny: &Packet,
    version: ProtocolVersion,
    mut rumq: impl FnMut(&mut BytesMut),
) {
    let encoder = Encoder::new(version);
    let mut buf = BytesMut::with_capacity(encoder.encoded_len(tiny).unwrap() * 2);
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    g.bench_function("tinymqtt", |b| {
        b.iter(|| {
            buf.clear();
            encoder.encode(black_box(tiny), &mut buf).unwrap();
            black_box(&mut buf);
        })
    });
    g.bench_function("rumqttc", |b| {
        b.iter(|| {
            buf.clear();
            rumq(&mut buf);
            black_box(&mut buf);
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    for (name, len) in PAYLOADS {
        let tiny = tiny_publish(len);
        bench_decode(
            c,
            &format!("publish_decode/{name}"),
            &encode_tiny(&tiny, V311),
            V311,
            decode_rumq_v4,
        );
        let rumq = rumq_v4_publish(len);
        bench_encode(c, &format!("publish_encode/{name}"), &tiny, V311, |buf| {
            black_box(&rumq).write(buf).unwrap();
        });
    }
    for (name, len) in PAYLOADS {
        let tiny = tiny_publish(len);
        bench_decode(
            c,
            &format!("publish_v5_decode/{name}"),
            &encode_tiny(&tiny, V5),
            V5,
            decode_rumq_v5,
        );
        let rumq = rumq_v5_publish(len);
        bench_encode(c, &format!("publish_v5_encode/{name}"), &tiny, V5, |buf| {
            black_box(&rumq).write(buf).unwrap();
        });
    }

    let tiny = tiny_connect();
    bench_decode(
        c,
        "connect_v5_decode",
        &encode_tiny(&tiny, V5),
        V5,
        decode_rumq_v5,
    );
    let (connect, will, login) = rumq_connect();
    bench_encode(c, "connect_v5_encode", &tiny, V5, |buf| {
        black_box(&connect).write(&will, &login, buf).unwrap();
    });

    let tiny = tiny_subscribe();
    bench_decode(
        c,
        "subscribe_v5_decode",
        &encode_tiny(&tiny, V5),
        V5,
        decode_rumq_v5,
    );
    let rumq = rumq_subscribe();
    bench_encode(c, "subscribe_v5_encode", &tiny, V5, |buf| {
        black_box(&rumq).write(buf).unwrap();
    });
}

fn main() {
    check_equivalence();
    check_zero_copy();
    report_allocations();
    if !std::env::args().any(|a| a == "--test") {
        report_interleaved();
    }

    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
}
