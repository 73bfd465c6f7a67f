//! Snapshot metadata in an embedded transactional database (redb): key to
//! layer, kind, parent, labels, times, committed usage. Every snapshot
//! operation is one transaction, so a crash leaves the old state or the
//! new one, never a mix.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{
    Database, MultimapTableDefinition, ReadableMultimapTable, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SnapshotError, db};

/// The database's file name in the home. Docker's layout has only
/// directories and `l/` there, so a file cannot be taken for a layer.
pub const DB_FILE: &str = "snapshots.redb";

/// key -> [`Record`] (JSON).
const SNAPSHOTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("snapshots");
/// parent key -> child keys.
const CHILDREN: MultimapTableDefinition<'_, &str, &str> = MultimapTableDefinition::new("children");
/// layer id -> key: which layers of the home are snapshots.
const LAYERS: TableDefinition<'_, &str, &str> = TableDefinition::new("layers");

/// What a snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Read-only, from a committed parent; cannot be committed.
    View,
    /// Writable; committing it makes a committed snapshot.
    Active,
    /// Immutable; a parent for others.
    Committed,
}

impl Kind {
    /// containerd's name in filters (`kind==active`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Active => "active",
            Self::Committed => "committed",
        }
    }
}

/// A time as containerd sends it: seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Time {
    /// Seconds since 1970.
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

impl Time {
    /// Now.
    pub fn now() -> Self {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: d.subsec_nanos(),
        }
    }
}

/// Space a snapshot's own files take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes allocated.
    pub size: u64,
    /// Inodes.
    pub inodes: u64,
}

/// What the database keeps of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The layer in the home holding its files.
    pub layer: String,
    /// Its kind.
    pub kind: Kind,
    /// Its parent's key.
    pub parent: Option<String>,
    /// Labels, as given.
    pub labels: BTreeMap<String, String>,
    /// Created.
    pub created: Time,
    /// Last changed.
    pub updated: Time,
    /// Usage, measured when it was committed.
    pub usage: Option<Usage>,
    /// The mounts of an active snapshot or view, worked out (and its
    /// layer chain checked) when it was made: a layer's stack never
    /// changes, so Mounts answers from the record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<crate::mounts::Mount>,
}

/// The metadata database.
pub struct Store {
    db: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes).map_err(|e| SnapshotError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

fn encode(rec: &Record) -> Vec<u8> {
    // A struct of strings, maps and numbers always serialises.
    serde_json::to_vec(rec).unwrap_or_default()
}

/// A write transaction: reads and changes that commit together.
pub struct Txn {
    txn: redb::WriteTransaction,
}

impl Txn {
    /// The record of `key`.
    pub fn get(&self, key: &str) -> Result<Option<Record>> {
        let t = self.txn.open_table(SNAPSHOTS).map_err(db)?;
        let v = t.get(key).map_err(db)?;
        v.map(|v| decode(key, v.value())).transpose()
    }

    /// The record of `key`, or NotFound.
    pub fn require(&self, key: &str) -> Result<Record> {
        self.get(key)?.ok_or_else(|| SnapshotError::NotFound(key.to_owned()))
    }

    /// Does `key` have children?
    pub fn has_children(&self, key: &str) -> Result<bool> {
        let t = self.txn.open_multimap_table(CHILDREN).map_err(db)?;
        let mut it = t.get(key).map_err(db)?;
        Ok(it.next().is_some())
    }

    /// Stores `rec` under `key` (new, or replacing one with the same
    /// layer and parent).
    pub fn put(&mut self, key: &str, rec: &Record) -> Result<()> {
        let mut t = self.txn.open_table(SNAPSHOTS).map_err(db)?;
        let old = t.insert(key, encode(rec).as_slice()).map_err(db)?;
        let fresh = old.is_none();
        drop(old);
        drop(t);
        if fresh {
            if let Some(p) = &rec.parent {
                let mut c = self.txn.open_multimap_table(CHILDREN).map_err(db)?;
                c.insert(p.as_str(), key).map_err(db)?;
            }
            let mut l = self.txn.open_table(LAYERS).map_err(db)?;
            l.insert(rec.layer.as_str(), key).map_err(db)?;
        }
        Ok(())
    }

    /// Deletes `key`'s record, its place among its parent's children and
    /// its layer's entry.
    pub fn delete(&mut self, key: &str, rec: &Record) -> Result<()> {
        let mut t = self.txn.open_table(SNAPSHOTS).map_err(db)?;
        t.remove(key).map_err(db)?;
        drop(t);
        if let Some(p) = &rec.parent {
            let mut c = self.txn.open_multimap_table(CHILDREN).map_err(db)?;
            c.remove(p.as_str(), key).map_err(db)?;
        }
        let mut l = self.txn.open_table(LAYERS).map_err(db)?;
        l.remove(rec.layer.as_str()).map_err(db)?;
        Ok(())
    }

    /// Makes the changes durable.
    pub fn commit(self) -> Result<()> {
        self.txn.commit().map_err(db)
    }
}

impl Store {
    /// Opens (creating it) the database file `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened: another process has it open (a running
    /// snapshotter), or it is not a redb database.
    pub fn open(path: &Path) -> Result<Self> {
        // Made 0600 before redb opens it: labels are nobody else's business.
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| db(redb::StorageError::Io(e)))?;
        match Database::create(path) {
            Ok(database) => Self::init(database),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(SnapshotError::FailedPrecondition(format!(
                "{}: in use by another process (a snapshotter already serves this home)",
                path.display()
            ))),
            Err(e) => Err(db(e)),
        }
    }

    /// A database in memory (the fake backend's tests).
    ///
    /// # Errors
    ///
    /// Never in practice; redb's in-memory backend can fail only as a file would.
    pub fn in_memory() -> Result<Self> {
        let database = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db)?;
        Self::init(database)
    }

    fn init(database: Database) -> Result<Self> {
        let txn = database.begin_write().map_err(db)?;
        txn.open_table(SNAPSHOTS).map_err(db)?;
        txn.open_multimap_table(CHILDREN).map_err(db)?;
        txn.open_table(LAYERS).map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(Self { db: database })
    }

    /// Starts a write transaction (one at a time; others wait).
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn write(&self) -> Result<Txn> {
        Ok(Txn {
            txn: self.db.begin_write().map_err(db)?,
        })
    }

    /// The record of `key` if there is one, from a read transaction (which
    /// never waits for a writer).
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn lookup(&self, key: &str) -> Result<Option<Record>> {
        let r = self.db.begin_read().map_err(db)?;
        let t = r.open_table(SNAPSHOTS).map_err(db)?;
        let v = t.get(key).map_err(db)?;
        v.map(|v| decode(key, v.value())).transpose()
    }

    /// The record of `key`.
    ///
    /// # Errors
    ///
    /// NotFound, or the database fails.
    pub fn get(&self, key: &str) -> Result<Record> {
        self.lookup(key)?.ok_or_else(|| SnapshotError::NotFound(key.to_owned()))
    }

    /// Every snapshot, sorted by key, from one consistent read.
    ///
    /// # Errors
    ///
    /// The database fails or a record is corrupt.
    pub fn all(&self) -> Result<Vec<(String, Record)>> {
        let r = self.db.begin_read().map_err(db)?;
        let t = r.open_table(SNAPSHOTS).map_err(db)?;
        let mut out = Vec::with_capacity(usize::try_from(t.len().map_err(db)?).unwrap_or(0));
        for entry in t.iter().map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            out.push((k.value().to_owned(), decode(k.value(), v.value())?));
        }
        Ok(out)
    }

    /// The layers the database knows, each with its key.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn layers(&self) -> Result<BTreeMap<String, String>> {
        let r = self.db.begin_read().map_err(db)?;
        let t = r.open_table(LAYERS).map_err(db)?;
        let mut out = BTreeMap::new();
        for entry in t.iter().map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            out.insert(k.value().to_owned(), v.value().to_owned());
        }
        Ok(out)
    }
}
