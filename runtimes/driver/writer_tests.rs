//! The store writer on a real store file: group commit, tickets in order, ticket-only
//! batches, and what an interval policy leaves in the file before and after its sync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::*;
use crate::broker::{Broker, BrokerConfig};
use crate::codec::{encode, Connect, Packet, Publish};
use crate::store::{RetainedRecord, StoreSnapshot};
use crate::{ByteStr, PacketId, ProtocolVersion, QoS, TopicName};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tinymqtt-writer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `n` tickets from a real router: one QoS 1 publish on each of `n` connections (so each
/// ticket names its own connection, in the order made).
fn tickets(n: usize) -> Vec<Ticket> {
    let mut b = Broker::new(BrokerConfig::default());
    b.restore(now(), 0, StoreSnapshot::default());
    let mut out = Vec::new();
    for i in 0..n {
        let conn = b.accept(now());
        let v = ProtocolVersion::V5;
        let mut buf = BytesMut::new();
        let id = ByteStr::try_from(format!("c{i}")).unwrap();
        encode(&Packet::Connect(Box::new(Connect::new(v, id))), v, &mut buf).unwrap();
        let mut p = Publish::new(TopicName::from_static("t"), &b"x"[..]);
        p.qos = QoS::AtLeastOnce;
        p.packet_id = PacketId::new(1);
        encode(&Packet::Publish(p), v, &mut buf).unwrap();
        b.handle_input(now(), conn, &buf);
        while let Some(op) = b.poll_store() {
            if let StoreOp::Durable(t) = op {
                out.push(t);
            }
        }
    }
    assert_eq!(out.len(), n, "one ticket per publish");
    out
}

fn retained(topic: &'static str) -> StoreOp {
    let mut p = Publish::new(TopicName::from_static(topic), &b"r"[..]);
    p.retain = true;
    StoreOp::PutRetained(RetainedRecord {
        publish: p,
        stored_at: 1,
    })
}

fn topics(store: &RedbStore) -> Vec<String> {
    let snap = store.load().unwrap();
    snap.retained
        .iter()
        .map(|r| r.publish.topic.as_str().to_owned())
        .collect()
}

/// The retained topics in a copy of the store file as it is on disk now (what a restart
/// after a crash at this instant would find).
fn topics_on_disk(d: &Path, name: &str) -> Vec<String> {
    let copy = dir(&format!("{name}-copy"));
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(
        d.join(crate::runtimes::driver::STORE_FILE),
        copy.join(crate::runtimes::driver::STORE_FILE),
    )
    .unwrap();
    let t = topics(&RedbStore::open(&copy).unwrap());
    let _ = std::fs::remove_dir_all(&copy);
    t
}

#[test]
fn several_waiting_batches_become_one_commit_with_their_tickets_in_order() {
    let d = dir("group");
    let store = RedbStore::open(&d).unwrap();
    let t = tickets(3);
    let (tx, rx) = sync_channel(STORE_BATCHES);
    let (done_tx, done) = async_channel::bounded(STORE_BATCHES);
    tx.send(vec![retained("a"), StoreOp::Durable(t[0])])
        .unwrap();
    tx.send(vec![StoreOp::Durable(t[1])]).unwrap();
    tx.send(vec![retained("b"), StoreOp::Durable(t[2])])
        .unwrap();
    drop(tx);
    let stats = WriterStats::default();
    let wakes = std::cell::Cell::new(0);
    write_loop(
        &store,
        &rx,
        &done_tx,
        &|| wakes.set(wakes.get() + 1),
        Fsync::Always,
        &stats,
    )
    .unwrap();
    let got = done.try_recv().unwrap();
    assert_eq!(got.tickets, t, "every ticket, in order");
    assert_eq!(got.batches, 3);
    assert!(done.try_recv().is_err(), "one hand-back for the group");
    assert_eq!(wakes.get(), 1);
    assert_eq!(
        stats.commits.load(Ordering::Relaxed),
        1,
        "one commit for three batches"
    );
    assert_eq!(stats.batches.load(Ordering::Relaxed), 3);
    assert_eq!(topics(&store), ["a", "b"]);
    drop(store);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_ticket_only_batch_comes_back_after_the_write_before_it_and_commits_nothing() {
    let d = dir("tickets");
    let store = RedbStore::open(&d).unwrap();
    let t = tickets(4);
    let (tx, rx) = sync_channel(STORE_BATCHES);
    let (done_tx, done) = async_channel::bounded(STORE_BATCHES);
    let stats = WriterStats::default();
    std::thread::scope(|s| {
        let (store, done_tx, stats) = (&store, &done_tx, &stats);
        s.spawn(move || write_loop(store, &rx, done_tx, &|| {}, Fsync::Always, stats).unwrap());
        // One at a time: the write is committed when its ticket is back.
        tx.send(vec![retained("a"), StoreOp::Durable(t[0])])
            .unwrap();
        assert_eq!(done.recv_blocking().unwrap().tickets, [t[0]]);
        assert_eq!(topics(store), ["a"]);
        tx.send(vec![StoreOp::Durable(t[1])]).unwrap();
        assert_eq!(done.recv_blocking().unwrap().tickets, [t[1]]);
        assert_eq!(
            stats.commits.load(Ordering::Relaxed),
            1,
            "no commit for tickets alone"
        );
        // Back to back, a write then tickets alone: whether one group or two, the tickets
        // come back in order and the tickets alone add no commit.
        tx.send(vec![retained("b"), StoreOp::Durable(t[2])])
            .unwrap();
        tx.send(vec![StoreOp::Durable(t[3])]).unwrap();
        let mut back = Vec::new();
        while back.len() < 2 {
            back.extend(done.recv_blocking().unwrap().tickets);
        }
        assert_eq!(back, [t[2], t[3]]);
        assert_eq!(stats.commits.load(Ordering::Relaxed), 2);
        assert_eq!(topics(store), ["a", "b"]);
        drop(tx);
    });
    drop(store);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn interval_commits_reach_the_file_only_at_a_sync() {
    let d = dir("interval");
    let store = RedbStore::open(&d).unwrap();
    let (tx, rx) = sync_channel(STORE_BATCHES);
    let (done_tx, done) = async_channel::bounded(STORE_BATCHES);
    let stats = WriterStats::default();
    std::thread::scope(|s| {
        let fsync = Fsync::Interval(Duration::from_secs(3600));
        let (store, done_tx, stats) = (&store, &done_tx, &stats);
        s.spawn(move || write_loop(store, &rx, done_tx, &|| {}, fsync, stats).unwrap());
        tx.send(vec![retained("a")]).unwrap();
        done.recv_blocking().unwrap();
        assert_eq!(topics(store), ["a"], "committed: readers see it");
        assert!(
            topics_on_disk(&d, "interval-before").is_empty(),
            "not synced yet"
        );
        assert_eq!(stats.syncs.load(Ordering::Relaxed), 0);
        // The router's end goes away (a graceful shutdown): the last sync.
        drop(tx);
    });
    assert_eq!(stats.syncs.load(Ordering::Relaxed), 1);
    assert_eq!(topics_on_disk(&d, "interval-after"), ["a"]);
    drop(store);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn interval_syncs_within_its_interval_and_only_after_a_write() {
    let d = dir("period");
    let store = RedbStore::open(&d).unwrap();
    let (tx, rx) = sync_channel(STORE_BATCHES);
    let (done_tx, done) = async_channel::bounded(STORE_BATCHES);
    let stats = WriterStats::default();
    let syncs = || stats.syncs.load(Ordering::Relaxed);
    std::thread::scope(|s| {
        let fsync = Fsync::Interval(Duration::from_millis(30));
        let (store, done_tx, stats) = (&store, &done_tx, &stats);
        s.spawn(move || write_loop(store, &rx, done_tx, &|| {}, fsync, stats).unwrap());
        tx.send(vec![retained("a")]).unwrap();
        done.recv_blocking().unwrap();
        let end = now() + Duration::from_secs(5);
        while syncs() == 0 {
            assert!(now() < end, "no sync within 5 s");
            std::thread::yield_now();
        }
        assert_eq!(topics_on_disk(&d, "period"), ["a"]);
        // Nothing written since: no more syncs, however long it waits.
        let idle = now() + Duration::from_millis(150);
        while now() < idle {
            std::thread::yield_now();
        }
        assert_eq!(syncs(), 1);
        drop(tx);
    });
    assert_eq!(syncs(), 1, "nothing left to sync at the end");
    drop(store);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_writer_takes_at_most_store_batches_in_flight_and_each_hand_back_frees_what_it_covers() {
    let d = dir("flight");
    let store = RedbStore::open(&d).unwrap();
    let woken = Arc::new(AtomicU64::new(0));
    let w = woken.clone();
    let wake = Box::new(move || {
        w.fetch_add(1, Ordering::Relaxed);
    });
    let mut writer = StoreWriter::spawn(store, Fsync::Always, wake).unwrap();
    let t = tickets(STORE_BATCHES);
    for (i, t) in t.iter().enumerate() {
        assert!(writer.has_room(), "batch {i}");
        writer
            .send(vec![retained("f"), StoreOp::Durable(*t)])
            .unwrap();
    }
    assert!(!writer.has_room(), "full at STORE_BATCHES");
    let mut back = Vec::new();
    while back.len() < STORE_BATCHES {
        let done = writer.wait_done().unwrap();
        assert!(done.batches >= 1);
        back.extend(done.tickets);
        assert!(writer.has_room());
    }
    assert_eq!(back, t, "every ticket, in order, across the commits");
    assert!(writer.try_done().is_none());
    let commits = writer.stats.commits.load(Ordering::Relaxed);
    assert!((1..=STORE_BATCHES as u64).contains(&commits), "{commits}");
    // Closing waits for the thread, so the file can be opened again at once (and the wake
    // that follows each hand-back has run).
    writer.close();
    assert!(woken.load(Ordering::Relaxed) >= 1);
    assert_eq!(topics(&RedbStore::open(&d).unwrap()), ["f"]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_fsync_policy_sets_the_brokers_durable_acks_when_the_store_opens() {
    // Each policy against a config that says the opposite: the policy wins, nothing fails.
    for (configured, fsync) in [
        (true, Fsync::Interval(Duration::from_secs(1))),
        (false, Fsync::Always),
    ] {
        let d = dir(&format!("derived-{configured}"));
        let mut router = Router::new(BrokerConfig::default().with_durable_acks(configured));
        let options = BrokerOptions::default()
            .with_persistence(Some(d.clone()))
            .with_fsync(fsync);
        let writer = start(&options, &mut router, Box::new(|| {}))
            .expect("the store opens")
            .expect("a writer, with persistence");
        assert_eq!(router.config().durable_acks, !configured, "{fsync:?}");
        assert_eq!(router.config().durable_acks, fsync.durable_acks());
        drop(writer);
        let _ = std::fs::remove_dir_all(&d);
    }
}
