//! Block-reference summaries: which blocks of which relation forks changed in a range of WAL,
//! the information an incremental backup needs (PostgreSQL 17 keeps the same in its WAL
//! summaries).
//!
//! ```
//! use pgmoneta_wire::wal::summary::{BlockRefTable, RelFork};
//!
//! let mut table = BlockRefTable::default();
//! table.mark_block(RelFork { spc: 1663, db: 5, rel: 16384, fork: 0 }, 7);
//! table.truncate(RelFork { spc: 1663, db: 5, rel: 16384, fork: 0 }, 3);
//! let entry = table.get(&RelFork { spc: 1663, db: 5, rel: 16384, fork: 0 }).unwrap();
//! assert_eq!(entry.limit_block, Some(3));
//! assert!(entry.blocks.contains(&7));
//! table.mark_database(1663, 5);
//! assert!(table.database_recreated(1663, 5));
//! ```

use std::collections::{BTreeMap, BTreeSet};

use super::desc::{rmid, Fields};
use super::record::DecodedRecord;

/// A relation fork: tablespace, database, relation file number, fork.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelFork {
    /// Tablespace OID.
    pub spc: u32,
    /// Database OID.
    pub db: u32,
    /// Relation file number.
    pub rel: u32,
    /// Fork: 0 main, 1 fsm, 2 vm, 3 init.
    pub fork: u8,
}

/// What changed in one relation fork.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelChanges {
    /// The fork was created, truncated or dropped in the range: blocks at or past this number
    /// cannot be taken from an earlier backup (0: nothing can).
    pub limit_block: Option<u32>,
    /// Blocks modified in the range.
    pub blocks: BTreeSet<u32>,
}

/// Changed blocks per relation fork.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockRefTable {
    entries: BTreeMap<RelFork, RelChanges>,
}

const SMGR_TRUNCATE_HEAP: u32 = 0x0001;
const SMGR_TRUNCATE_VM: u32 = 0x0002;
const SMGR_TRUNCATE_FSM: u32 = 0x0004;

impl BlockRefTable {
    /// Records that `block` of `fork` changed.
    pub fn mark_block(&mut self, fork: RelFork, block: u32) {
        self.entries.entry(fork).or_default().blocks.insert(block);
    }

    /// Records that `fork` was cut to `blocks` blocks (0: created or dropped).
    pub fn truncate(&mut self, fork: RelFork, blocks: u32) {
        let e = self.entries.entry(fork).or_default();
        e.limit_block = Some(e.limit_block.map_or(blocks, |l| l.min(blocks)));
    }

    /// Adds what one record changes: its block references, and relation creations,
    /// truncations and drops (storage records, commits and aborts that drop relations).
    pub fn add_record(&mut self, rec: &DecodedRecord) {
        for b in &rec.blocks {
            let (spc, db, rel) = b.locator;
            self.mark_block(RelFork { spc, db, rel, fork: b.fork }, b.block);
        }
        let f = Fields(rec.main_data());
        match (rec.rmid, rec.record_info()) {
            (rmid::SMGR, 0x10) => {
                let fork = RelFork { spc: f.u32(0), db: f.u32(4), rel: f.u32(8), fork: f.u32(12) as u8 };
                self.truncate(fork, 0);
            }
            (rmid::SMGR, 0x20) => {
                let (blocks, flags) = (f.u32(0), f.u32(16));
                let base = RelFork { spc: f.u32(4), db: f.u32(8), rel: f.u32(12), fork: 0 };
                if flags & SMGR_TRUNCATE_HEAP != 0 {
                    self.truncate(base, blocks);
                }
                // The free space and visibility maps are cut to match; mark them wholly.
                if flags & SMGR_TRUNCATE_FSM != 0 {
                    self.truncate(RelFork { fork: 1, ..base }, 0);
                }
                if flags & SMGR_TRUNCATE_VM != 0 {
                    self.truncate(RelFork { fork: 2, ..base }, 0);
                }
            }
            // A database created or dropped: its files were copied or removed whole, with no
            // block references. The whole database is marked, as PostgreSQL 17's summaries do
            // (relation number 0).
            (rmid::DBASE, op) => {
                let v15 = rec.version >= pgmoneta_core::PgVersion::V15;
                match (v15, op) {
                    // CREATE (FILE_COPY from 15): db_id, tablespace_id, ...; 15+ WAL_LOG: the same.
                    (_, 0x00) | (true, 0x10) => self.mark_database(f.u32(4), f.u32(0)),
                    // DROP: db_id, ntablespaces, tablespace_ids[].
                    (false, 0x10) | (true, 0x20) => {
                        let n = f.i32(4).clamp(0, 1024) as usize;
                        for i in 0..n {
                            self.mark_database(f.u32(8 + 4 * i), f.u32(0));
                        }
                    }
                    _ => {}
                }
            }
            (rmid::XACT, op) if op & 0x70 == 0x00 || op & 0x70 == 0x20 || op & 0x70 == 0x30 || op & 0x70 == 0x40 => {
                for (spc, db, rel) in dropped_relations(rec) {
                    for fork in 0..4 {
                        self.truncate(RelFork { spc, db, rel, fork }, 0);
                    }
                }
            }
            _ => {}
        }
    }

    /// Records that database `db` in tablespace `spc` was created or dropped: none of its files
    /// can be taken from an earlier backup.
    pub fn mark_database(&mut self, spc: u32, db: u32) {
        self.truncate(RelFork { spc, db, rel: 0, fork: 0 }, 0);
    }

    /// Whether database `db` in tablespace `spc` was created or dropped in the range.
    pub fn database_recreated(&self, spc: u32, db: u32) -> bool {
        self.get(&RelFork { spc, db, rel: 0, fork: 0 }).is_some_and(|c| c.limit_block == Some(0))
    }

    /// What changed in `fork`.
    pub fn get(&self, fork: &RelFork) -> Option<&RelChanges> {
        self.entries.get(fork)
    }

    /// Every changed fork, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&RelFork, &RelChanges)> {
        self.entries.iter()
    }

    /// Number of forks with changes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No changes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds another table's changes (a later range).
    pub fn merge(&mut self, other: &BlockRefTable) {
        for (k, v) in &other.entries {
            let e = self.entries.entry(*k).or_default();
            if let Some(l) = v.limit_block {
                e.limit_block = Some(e.limit_block.map_or(l, |x| x.min(l)));
            }
            e.blocks.extend(v.blocks.iter().copied());
        }
    }
}

/// Relations a commit or abort record drops.
fn dropped_relations(rec: &DecodedRecord) -> Vec<(u32, u32, u32)> {
    let f = Fields(rec.main_data());
    let mut o = 8;
    let mut xinfo = 0;
    if rec.info & 0x80 != 0 {
        xinfo = f.u32(o);
        o += 4;
    }
    if xinfo & 0x01 != 0 {
        o += 8;
    }
    if xinfo & 0x02 != 0 {
        let n = f.i32(o).max(0) as usize;
        o += 4 + 4 * n;
    }
    if xinfo & 0x04 == 0 {
        return Vec::new();
    }
    let n = f.i32(o).max(0) as usize;
    o += 4;
    (0..n).map(|i| (f.u32(o + 12 * i), f.u32(o + 12 * i + 4), f.u32(o + 12 * i + 8))).collect()
}
