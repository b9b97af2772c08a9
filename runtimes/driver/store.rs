//! The broker's store on disk: one `redb` file in the persistence directory, written by the
//! store writer (in `writer`) one transaction per group of the router's [`StoreOp`] batches,
//! and read back whole at start.
//!
//! Each table maps a record's key to its bytes in the core's format ([`RetainedRecord::encode`],
//! [`SessionRecord::encode`], [`QueuedRecord::encode`]). Every failure, at open, read or write, is
//! an `io::Error` that names the file: a store that cannot be read refuses the start instead of
//! running with part of its state.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::now;
use crate::broker::Router;
use crate::store::{
    CompletedRecord, PacketIdRecord, QueuedRecord, RemotePosition, RetainedRecord, SessionRecord,
    StoreError, StoreOp, StoreSnapshot,
};
use crate::types::{ByteStr, PacketId};

/// The file the store keeps in the persistence directory.
pub const STORE_FILE: &str = "tinymqtt.redb";

const RETAINED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("retained");
const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
/// Offline queues, keyed by (client id, sequence number): a session's messages read back in
/// order.
const QUEUED: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queued");
/// Inbound QoS 2 packet ids waiting for PUBREL, keyed by client id and packet id.
const INCOMING: TableDefinition<(&str, u16), ()> = TableDefinition::new("incoming");
/// Outbound QoS 2 flows waiting for PUBCOMP, keyed by client id and packet id.
const RELEASED: TableDefinition<(&str, u16), ()> = TableDefinition::new("released");

/// The last inbound QoS 2 packet ids of each session, keyed by client id and packet id, with
/// the digest of the message each carried (kept past PUBREL).
const COMPLETED: TableDefinition<(&str, u16), u64> = TableDefinition::new("completed");

/// The cluster positions of the other nodes' messages routed here (see
/// `Router::handle_remote_durable`), written with what routing each changed.
/// Keyed by sequence, with the stamp.
const REMOTE_ROUTED: TableDefinition<u64, u64> = TableDefinition::new("remote_routed");

/// An open store file.
pub(crate) struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch, for the records' expiry (the core never reads the clock).
#[allow(clippy::disallowed_methods)]
fn wall() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Opens the store in `dir` (if the options name one), restores `broker` from it and returns
/// it; an unreadable store fails naming its file.
pub(crate) fn start(dir: Option<&Path>, router: &mut Router) -> io::Result<Option<RedbStore>> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    let store = RedbStore::open(dir)?;
    let snapshot = guarded(&store.path, || store.load())?;
    router.restore(now(), wall(), snapshot);
    Ok(Some(store))
}

impl RedbStore {
    /// Opens (or creates) the store file in `dir`, creating `dir` if needed.
    pub(crate) fn open(dir: &Path) -> io::Result<RedbStore> {
        let path = dir.join(STORE_FILE);
        std::fs::create_dir_all(dir).map_err(|e| failed(&path, e))?;
        let db = guarded(&path, || {
            Database::create(&path).map_err(|e| failed(&path, e))
        })?;
        let store = RedbStore { db, path };
        // Every table exists from the first start on, so reading never meets a missing one.
        store.apply(&[])?;
        Ok(store)
    }

    /// Everything the store holds; a record that does not decode fails the whole load.
    pub(crate) fn load(&self) -> io::Result<StoreSnapshot> {
        let fail = |e: &dyn std::fmt::Display| failed(&self.path, e);
        let tx = self.db.begin_read().map_err(|e| fail(&e))?;
        let mut snapshot = StoreSnapshot::default();
        let table = tx.open_table(RETAINED).map_err(|e| fail(&e))?;
        for row in table.iter().map_err(|e| fail(&e))? {
            let (_, v) = row.map_err(|e| fail(&e))?;
            let r = RetainedRecord::decode(v.value()).map_err(|e| fail(&e))?;
            snapshot.retained.push(r);
        }
        let table = tx.open_table(SESSIONS).map_err(|e| fail(&e))?;
        for row in table.iter().map_err(|e| fail(&e))? {
            let (_, v) = row.map_err(|e| fail(&e))?;
            let s = SessionRecord::decode(v.value()).map_err(|e| fail(&e))?;
            snapshot.sessions.push(s);
        }
        let table = tx.open_table(QUEUED).map_err(|e| fail(&e))?;
        for row in table.iter().map_err(|e| fail(&e))? {
            let (_, v) = row.map_err(|e| fail(&e))?;
            let q = QueuedRecord::decode(v.value()).map_err(|e| fail(&e))?;
            snapshot.queued.push(q);
        }
        for (def, into) in [
            (INCOMING, &mut snapshot.incoming),
            (RELEASED, &mut snapshot.released),
        ] {
            let table = tx.open_table(def).map_err(|e| fail(&e))?;
            for row in table.iter().map_err(|e| fail(&e))? {
                let (k, _) = row.map_err(|e| fail(&e))?;
                let (client_id, id) = k.value();
                let packet_id = PacketId::new(id).ok_or_else(|| fail(&"packet id 0 in a flow"))?;
                into.push(PacketIdRecord {
                    client_id: ByteStr::try_from(client_id).map_err(|e| fail(&e))?,
                    packet_id,
                });
            }
        }
        let table = tx.open_table(COMPLETED).map_err(|e| fail(&e))?;
        for row in table.iter().map_err(|e| fail(&e))? {
            let (k, v) = row.map_err(|e| fail(&e))?;
            let (client_id, id) = k.value();
            let packet_id = PacketId::new(id).ok_or_else(|| fail(&"packet id 0 in a flow"))?;
            snapshot.completed.push(CompletedRecord {
                client_id: ByteStr::try_from(client_id).map_err(|e| fail(&e))?,
                packet_id,
                digest: v.value(),
            });
        }
        let table = tx.open_table(REMOTE_ROUTED).map_err(|e| fail(&e))?;
        for row in table.iter().map_err(|e| fail(&e))? {
            let (k, v) = row.map_err(|e| fail(&e))?;
            snapshot.remote_routed.push(RemotePosition {
                sequence: k.value(),
                stamp: v.value(),
            });
        }
        Ok(snapshot)
    }

    /// Writes `ops` in order in one transaction, durable when this returns.
    pub(crate) fn apply(&self, ops: &[StoreOp]) -> io::Result<()> {
        self.commit(ops.iter(), Durability::Immediate)
    }

    /// Writes `ops` in order in one transaction committed with `durability`: durable when
    /// this returns with `Immediate`; with `None`, once a later `Immediate` commit (or
    /// [`RedbStore::sync`]) returns, and lost if the process ends before.
    pub(crate) fn commit<'a>(
        &self,
        ops: impl Iterator<Item = &'a StoreOp>,
        durability: Durability,
    ) -> io::Result<()> {
        guarded(&self.path, || {
            self.write(ops, durability)
                .map_err(|e| failed(&self.path, e))
        })
    }

    /// Makes every earlier commit durable (an empty `Immediate` commit: redb syncs the file
    /// and points its header at the latest commit, which covers the `None` ones before it).
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.commit(std::iter::empty(), Durability::Immediate)
    }

    fn write<'a>(
        &self,
        ops: impl Iterator<Item = &'a StoreOp>,
        durability: Durability,
    ) -> Result<(), WriteError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(durability);
        {
            let mut retained = tx.open_table(RETAINED)?;
            let mut sessions = tx.open_table(SESSIONS)?;
            let mut queued = tx.open_table(QUEUED)?;
            let mut incoming = tx.open_table(INCOMING)?;
            let mut released = tx.open_table(RELEASED)?;
            let mut completed = tx.open_table(COMPLETED)?;
            let mut remote_routed = tx.open_table(REMOTE_ROUTED)?;
            for op in ops {
                match op {
                    StoreOp::PutRetained(r) => {
                        retained.insert(r.key(), r.encode()?.as_slice())?;
                    }
                    StoreOp::DeleteRetained(t) => {
                        retained.remove(&t.as_bytes()[..])?;
                    }
                    StoreOp::PutSession(s) => {
                        sessions.insert(s.key(), s.encode()?.as_slice())?;
                    }
                    StoreOp::DeleteSession(id) => {
                        sessions.remove(&id.as_bytes()[..])?;
                        // Its queue goes with it.
                        let id = id.as_str();
                        let mut seqs = Vec::new();
                        for row in queued.range((id, 0)..=(id, u64::MAX))? {
                            seqs.push(row?.0.value().1);
                        }
                        for seq in seqs {
                            queued.remove((id, seq))?;
                        }
                        for flows in [&mut incoming, &mut released] {
                            let mut ids = Vec::new();
                            for row in flows.range((id, 0)..=(id, u16::MAX))? {
                                ids.push(row?.0.value().1);
                            }
                            for pid in ids {
                                flows.remove((id, pid))?;
                            }
                        }
                        let mut ids = Vec::new();
                        for row in completed.range((id, 0)..=(id, u16::MAX))? {
                            ids.push(row?.0.value().1);
                        }
                        for pid in ids {
                            completed.remove((id, pid))?;
                        }
                    }
                    StoreOp::Enqueue(q) => {
                        queued.insert(q.key(), q.encode()?.as_slice())?;
                    }
                    StoreOp::Dequeue { client_id, seq } => {
                        queued.remove((client_id.as_str(), *seq))?;
                    }
                    StoreOp::PutIncoming(r) => {
                        incoming.insert(key(r), ())?;
                    }
                    StoreOp::DeleteIncoming(r) => {
                        incoming.remove(key(r))?;
                    }
                    StoreOp::PutReleased(r) => {
                        released.insert(key(r), ())?;
                    }
                    StoreOp::DeleteReleased(r) => {
                        released.remove(key(r))?;
                    }
                    StoreOp::PutCompleted(r) => {
                        completed.insert((r.client_id.as_str(), r.packet_id.get()), r.digest)?;
                    }
                    StoreOp::DeleteCompleted(r) => {
                        completed.remove(key(r))?;
                    }
                    StoreOp::PutRemoteRouted(p) => {
                        remote_routed.insert(p.sequence, p.stamp)?;
                    }
                    StoreOp::DeleteRemoteRouted(p) => {
                        remote_routed.remove(p.sequence)?;
                    }
                    // Nothing to write: the caller hands it back once this commits.
                    StoreOp::Durable(_) => {}
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// The key of a QoS 2 flow's row: client id and packet id.
fn key(r: &PacketIdRecord) -> (&str, u16) {
    (r.client_id.as_str(), r.packet_id.get())
}

/// Why a write failed: the database, or a record that cannot be encoded.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Db(Box<redb::Error>),
    #[error(transparent)]
    Record(#[from] StoreError),
}

macro_rules! db_error {
    ($($t:ty),*) => {$(
        impl From<$t> for WriteError {
            fn from(e: $t) -> WriteError {
                WriteError::Db(Box::new(e.into()))
            }
        }
    )*};
}
db_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Runs `f`, turning a panic into an error naming the store file: redb 2 asserts on some
/// damaged files (a truncated one, say) instead of returning an error, and a broken store must
/// refuse the start, never abort it. (The panic message still reaches standard error.)
fn guarded<T>(path: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(failed(path, "the file is damaged (the database panicked)")))
}

/// An error naming the store file.
fn failed(path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("store {}: {e}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Publish;
    use crate::{ByteStr, ProtocolVersion, TopicName};

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tinymqtt-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn session(expiry: u32) -> SessionRecord {
        SessionRecord {
            client_id: ByteStr::from_static("c"),
            protocol: ProtocolVersion::V5,
            expiry,
            disconnected_at: None,
            subscriptions: Vec::new(),
            will: None,
            owner: Default::default(),
        }
    }

    #[test]
    fn a_batch_applies_in_order_and_survives_reopening() {
        let d = dir("order");
        let store = RedbStore::open(&d).unwrap();
        let mut p = Publish::new(TopicName::from_static("t"), &b"x"[..]);
        p.retain = true;
        let kept = RetainedRecord {
            publish: Publish::new(TopicName::from_static("k"), &b"y"[..]),
            stored_at: 5,
        };
        store
            .apply(&[
                StoreOp::PutRetained(RetainedRecord {
                    publish: p,
                    stored_at: 1,
                }),
                StoreOp::PutRetained(kept.clone()),
                StoreOp::DeleteRetained(TopicName::from_static("t")),
                StoreOp::PutSession(session(10)),
                StoreOp::PutSession(session(20)),
            ])
            .unwrap();
        drop(store);
        let again = RedbStore::open(&d).unwrap();
        let snap = again.load().unwrap();
        assert_eq!(snap.retained, vec![kept]);
        assert_eq!(snap.sessions, vec![session(20)], "the later put wins");
        again
            .apply(&[StoreOp::DeleteSession(ByteStr::from_static("c"))])
            .unwrap();
        assert!(again.load().unwrap().sessions.is_empty());
        drop(again);
        let _ = std::fs::remove_dir_all(&d);
    }

    fn at(sequence: u64, stamp: u64) -> RemotePosition {
        RemotePosition { sequence, stamp }
    }

    #[test]
    fn routed_cluster_positions_survive_reopening() {
        let d = dir("remote-routed");
        let store = RedbStore::open(&d).unwrap();
        store
            .apply(&[
                StoreOp::PutRemoteRouted(at(9, 1)),
                StoreOp::PutRemoteRouted(at(3, 2)),
                StoreOp::PutRemoteRouted(at(u64::MAX, 3)),
                StoreOp::PutRemoteRouted(at(3, 4)),
                StoreOp::DeleteRemoteRouted(at(9, 1)),
            ])
            .unwrap();
        drop(store);
        let again = RedbStore::open(&d).unwrap();
        let got = again.load().unwrap().remote_routed;
        assert_eq!(got, [at(3, 4), at(u64::MAX, 3)], "the later stamp wins");
        drop(again);
        let _ = std::fs::remove_dir_all(&d);
    }

    fn queued(id: &'static str, seq: u64) -> QueuedRecord {
        QueuedRecord {
            client_id: ByteStr::from_static(id),
            seq,
            publish: Publish::new(TopicName::from_static("q"), format!("m{seq}").into_bytes()),
            packet_id: None,
            stored_at: 1,
            expires_at: None,
        }
    }

    #[test]
    fn queues_read_back_in_order_and_go_with_their_session() {
        let d = dir("queues");
        let store = RedbStore::open(&d).unwrap();
        store
            .apply(&[
                StoreOp::PutSession(session(10)),
                StoreOp::Enqueue(queued("c", 300)),
                StoreOp::Enqueue(queued("d", 1)),
                StoreOp::Enqueue(queued("c", 2)),
                StoreOp::Enqueue(queued("c", 10)),
                StoreOp::Dequeue {
                    client_id: ByteStr::from_static("c"),
                    seq: 10,
                },
            ])
            .unwrap();
        drop(store);
        let again = RedbStore::open(&d).unwrap();
        let snap = again.load().unwrap();
        assert_eq!(
            snap.queued,
            vec![queued("c", 2), queued("c", 300), queued("d", 1)]
        );
        again
            .apply(&[StoreOp::DeleteSession(ByteStr::from_static("c"))])
            .unwrap();
        assert_eq!(again.load().unwrap().queued, vec![queued("d", 1)]);
        drop(again);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_record_that_does_not_decode_fails_the_load_naming_the_file() {
        let d = dir("record");
        let store = RedbStore::open(&d).unwrap();
        let tx = store.db.begin_write().unwrap();
        tx.open_table(SESSIONS)
            .unwrap()
            .insert(&b"c"[..], &b"\x01\x05"[..])
            .unwrap();
        tx.commit().unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(
            err.contains(STORE_FILE) && err.contains("corrupt session record"),
            "{err}"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }
}
