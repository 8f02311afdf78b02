//! The persistent score store: one [redb](https://docs.rs/redb) file, `DIR/scores.redb`.
//!
//! Tables (redb keeps them in one copy-on-write B-tree file; a commit is atomic and durable):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `"format"` | [`FORMAT`] |
//! | `teachers` | teacher fingerprint | (teacher id `u32`, entries `u64`) |
//! | `scores` | teacher id (4 bytes, big-endian) ‖ [`PairKey`] (16 bytes, big-endian) | (score `f32`, text id `u64`, check `u32`) |
//! | `texts` | text id `u64` (0, 1, 2, ... in insertion order) | (query, passage) |
//!
//! Scores of one teacher are contiguous (the key starts with its id), so per-teacher counts,
//! exports and merges are range scans. The texts, most of the bytes, are appended in id order,
//! so a commit writes them to fresh pages at the end of their B-tree instead of rewriting pages
//! all over it; they are stored once however many teachers scored them. Lookups go to an
//! in-memory index of the teacher's scores (built on first use from one range scan, kept in
//! step with every insert; the file lock guarantees no other process changes the file) and touch
//! the file only for teachers with more than [`INDEX_LIMIT`] entries.
//!
//! # Damage
//!
//! redb checksums its pages, but it verifies the checksums only when it repairs a file after a
//! crash, not when it reads: a page overwritten on disk is read as it is. So every score
//! carries its own check, [`entry_check`] (XXH3-128 of the teacher id, the pair key, the score
//! and the text id), verified on every read; a text read back must hash to its pair key. A
//! damaged entry, a read past the end of a truncated file and a panic inside redb on a damaged
//! page are all reported as one error naming the file and what to do ([`damage_hint`]); after a
//! panic the cache refuses further use. `cache export --skip-damaged` saves the entries that
//! still verify.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use redb::{
    Database, DatabaseError, ReadableTable, ReadableTableMetadata, StorageError, TableDefinition,
    WriteTransaction,
};

use super::file_backend::{is_locked, CacheFile};
use super::guard;
use super::key::PairKey;
use crate::error::{Error, Result};
use crate::fingerprint::stable_hash;

/// The cache's file inside its directory.
pub const FILE_NAME: &str = "scores.redb";

/// A cache file being created: this prefix and the creating process's id.
const PARTIAL_PREFIX: &str = "scores.redb.creating-";

/// Remove the half-created cache files of processes that were killed while creating one: a
/// partial file nobody holds locked. One a live process is creating stays.
fn remove_abandoned_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(PARTIAL_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        // Taking the lock proves its creator is gone; the lock is released when dropped.
        if CacheFile::writable(file).is_ok() {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// What `meta.format` holds: the layout above and the [`PairKey`] hash. A cache with another
/// value is refused rather than misread.
pub const FORMAT: &str = "crossdistill score cache v2; pair key xxh3-128(le64 len(query) | query | passage); entry check xxh3-128(be32 teacher id | be128 pair key | le32 score | le64 text id) low 32 bits";

/// The format of caches written before entries were checked (refused with a hint to convert).
const FORMAT_V1: &str =
    "crossdistill score cache v1; pair key xxh3-128(le64 len(query) | query | passage)";

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const TEACHERS: TableDefinition<&str, (u32, u64)> = TableDefinition::new("teachers");
const SCORES: TableDefinition<&[u8; 20], (f32, u64, u32)> = TableDefinition::new("scores");
const TEXTS: TableDefinition<u64, (&str, &str)> = TableDefinition::new("texts");

/// A teacher with more cached scores than this is looked up in the file, not in memory (the
/// in-memory index takes about 24 to 48 bytes per entry).
pub const INDEX_LIMIT: u64 = 16 << 20;

/// Entries an [`insert`](ScoreCache::insert) commits at most in one transaction when merging or
/// importing (bounds the memory a large merge needs).
pub const MERGE_CHUNK: usize = 50_000;

/// redb's read cache for one open cache.
const READ_CACHE_BYTES: usize = 256 << 20;

/// The key of one score: teacher id then pair key, both big-endian so byte order is numeric order.
fn score_key(teacher_id: u32, key: PairKey) -> [u8; 20] {
    let mut bytes = [0u8; 20];
    bytes[..4].copy_from_slice(&teacher_id.to_be_bytes());
    bytes[4..].copy_from_slice(&key.0.to_be_bytes());
    bytes
}

/// The check stored with a score: the low 32 bits of XXH3-128 over the teacher id, the pair key
/// (both big-endian, as in the table key), the score's bits and the text id (little-endian).
/// A score, text id or key changed on disk no longer matches it (missed with odds 2^-32).
pub fn entry_check(teacher_id: u32, key: PairKey, score: f32, text_id: u64) -> u32 {
    let mut bytes = [0u8; 32];
    bytes[..20].copy_from_slice(&score_key(teacher_id, key));
    bytes[20..24].copy_from_slice(&score.to_bits().to_le_bytes());
    bytes[24..].copy_from_slice(&text_id.to_le_bytes());
    stable_hash(&bytes) as u32
}

/// What to do about a damaged cache in `dir`.
pub fn damage_hint(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "rebuild it: move {dir} away and score again into a new [cache] dir (crossdistill score, or train); \
         to keep what is still readable first, `crossdistill cache export {dir} --output scores.parquet --skip-damaged` \
         and `crossdistill cache import NEW_DIR --input scores.parquet`"
    )
}

fn split_score_key(bytes: &[u8; 20]) -> (u32, PairKey) {
    let mut id = [0u8; 4];
    id.copy_from_slice(&bytes[..4]);
    let mut key = [0u8; 16];
    key.copy_from_slice(&bytes[4..]);
    (u32::from_be_bytes(id), PairKey(u128::from_be_bytes(key)))
}

/// Hashes [`PairKey`]s, which are uniformly distributed already, by folding their halves.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ byte as u64;
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = self.0.rotate_left(32) ^ value;
    }
}

type IndexMap = HashMap<(u64, u64), f32, BuildHasherDefault<KeyHasher>>;

fn index_key(key: PairKey) -> (u64, u64) {
    ((key.0 >> 64) as u64, key.0 as u64)
}

/// The scores of one teacher in memory, or the note that it has too many for that.
#[derive(Debug)]
struct MemoryIndex {
    teacher: String,
    scores: Option<IndexMap>,
}

/// One cached score, as [`ScoreCache::for_each`] visits it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheEntry<'a> {
    /// The teacher's fingerprint.
    pub teacher: &'a str,
    /// Column 0 of the pair.
    pub query: &'a str,
    /// The document.
    pub passage: &'a str,
    /// The teacher's score (after its activation).
    pub score: f32,
}

/// What an [`insert`](ScoreCache::insert) did with each entry it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsertReport {
    /// New entries, now committed.
    pub added: u64,
    /// Already cached with the same score (bit for bit).
    pub present: u64,
    /// Already cached with another score; the cached one was kept.
    pub conflicts: u64,
}

impl InsertReport {
    /// Sum of two reports.
    pub fn add(&mut self, other: InsertReport) {
        self.added += other.added;
        self.present += other.present;
        self.conflicts += other.conflicts;
    }
}

/// Entries of one teacher.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TeacherStats {
    /// The teacher's fingerprint.
    pub teacher: String,
    /// Cached scores.
    pub entries: u64,
}

/// What a cache holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// The cache file.
    pub path: PathBuf,
    /// Its size on disk in bytes.
    pub bytes: u64,
    /// Stored (query, passage) texts: the distinct pairs over all teachers.
    pub pairs: u64,
    /// Entries per teacher, in the order the teachers first wrote to the cache.
    pub teachers: Vec<TeacherStats>,
}

/// A persistent `(teacher fingerprint, query, passage) → score` map.
///
/// Every [`insert`](Self::insert) is one redb transaction, committed durably (fsync) before it
/// returns: a process killed at any moment leaves the cache as of its last completed insert, and
/// the next [`open`](Self::open) finds it so. Scores are keyed by the teacher's
/// [`fingerprint`](crate::teacher::Teacher::fingerprint), so one teacher never reads another's
/// scores. One process holds a cache at a time (a file lock); a second gets a clear error.
pub struct ScoreCache {
    /// Not dropped after a panic inside redb (its drop could panic again); see [`Drop`].
    db: ManuallyDrop<Database>,
    dir: PathBuf,
    path: PathBuf,
    index: Mutex<Option<MemoryIndex>>,
    /// Set when redb panicked on this file: every later call fails at once.
    broken: AtomicBool,
    /// False when opened with [`open_existing`](Self::open_existing).
    writable: bool,
}

impl std::fmt::Debug for ScoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreCache")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for ScoreCache {
    fn drop(&mut self) {
        if !self.broken.load(Ordering::Relaxed) {
            // SAFETY: `db` is taken once, here, and never used again.
            let db = unsafe { ManuallyDrop::take(&mut self.db) };
            // Closing writes the file's header; a panic there on a damaged file is ignored
            // (the error that matters has been reported).
            let _ = guard::catch(move || drop(db));
        }
    }
}

/// How [`ScoreCache::open_file`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    /// Create the file when missing; read and write.
    Create,
    /// The file must exist; read only (the file is never written).
    ReadOnly,
}

impl ScoreCache {
    /// Open the cache in `dir`, creating the directory and an empty cache when there is none.
    pub fn open(dir: &Path) -> Result<Self> {
        crate::fsutil::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            Self::create_file(dir, &path)?;
        }
        Self::open_file(dir, &path, OpenMode::Create)
    }

    /// Create an empty cache file whole: built under a temporary name (its format table
    /// committed, which syncs it), then linked into place while still locked, and the directory
    /// synced. A kill during creation leaves no cache file or a complete empty one, never a
    /// half-written file that cannot be opened; the temporary file of a killed process is
    /// removed by the next creation.
    fn create_file(dir: &Path, path: &Path) -> Result<()> {
        remove_abandoned_partials(dir);
        let partial = dir.join(format!("{PARTIAL_PREFIX}{}", std::process::id()));
        // A leftover of this very process id (an earlier process that was killed) is stale.
        let _ = std::fs::remove_file(&partial);
        let created = Self::open_file(dir, &partial, OpenMode::Create)?;
        // `hard_link` fails when another process created the cache meanwhile: theirs is kept.
        // File systems without hard links get a rename instead.
        let placed = match std::fs::hard_link(&partial, path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(_) => std::fs::rename(&partial, path),
        };
        drop(created);
        let _ = std::fs::remove_file(&partial);
        placed.map_err(|e| Error::io("cannot put the new score cache in place", path, e))?;
        crate::fsutil::sync_dir(dir)
    }

    /// Open the cache in `dir`, which must exist, for reading only (`cache stats`, `export`,
    /// `merge` inputs): the file is never written, so a cache on a read-only file system or
    /// without write permission opens too. [`insert`](Self::insert) then fails.
    pub fn open_existing(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE_NAME);
        if !path.is_file() {
            return Err(Error::input(
                dir,
                None,
                format!("no score cache here: expected the file {FILE_NAME}, found none"),
            )
            .with_hint(
                "pass the directory a recipe's [cache] dir names (crossdistill score fills it)",
            ));
        }
        Self::open_file(dir, &path, OpenMode::ReadOnly)
    }

    fn open_file(dir: &Path, path: &Path, mode: OpenMode) -> Result<Self> {
        let path = path.to_path_buf();
        let file = match mode {
            OpenMode::Create => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path),
            OpenMode::ReadOnly => std::fs::File::open(&path),
        }
        .map_err(|e| Error::io("cannot open the score cache", &path, e))?;
        let backend = match mode {
            OpenMode::Create => CacheFile::writable(file),
            OpenMode::ReadOnly => CacheFile::read_only(file),
        }
        .map_err(|error| {
            if is_locked(&error) {
                open_error(dir, &path, DatabaseError::DatabaseAlreadyOpen)
            } else {
                Error::io("cannot lock the score cache", &path, error)
            }
        })?;
        let opened = guard::catch(|| {
            let mut builder = Database::builder();
            builder.set_cache_size(READ_CACHE_BYTES);
            builder.create_with_backend(backend)
        })
        .map_err(|panic| {
            damaged(
                dir,
                &path,
                &format!("the storage library stopped on it: {panic}"),
            )
        })?;
        let db = opened.map_err(|error| open_error(dir, &path, error))?;
        let cache = ScoreCache {
            db: ManuallyDrop::new(db),
            dir: dir.to_path_buf(),
            path,
            index: Mutex::new(None),
            broken: AtomicBool::new(false),
            writable: mode == OpenMode::Create,
        };
        match mode {
            OpenMode::Create => cache.guarded(|| cache.check_format())?,
            OpenMode::ReadOnly => cache.guarded(|| cache.check_format_read_only())?,
        }
        Ok(cache)
    }

    /// Run `work` (which calls redb) with a panic inside it reported as damage; refuse at once
    /// once that has happened.
    fn guarded<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(self.damaged("an earlier read stopped on damage"));
        }
        match guard::catch(work) {
            Ok(result) => result,
            Err(panic) => {
                self.broken.store(true, Ordering::Relaxed);
                Err(self.damaged(&format!("the storage library stopped on it: {panic}")))
            }
        }
    }

    fn damaged(&self, what: &str) -> Error {
        damaged(&self.dir, &self.path, what)
    }

    fn format_error(&self, format: &str) -> Error {
        if format == FORMAT_V1 {
            return Error::input(
                &self.path,
                None,
                "a score cache of format v1, written by a crossdistill before entries were checksummed",
            )
            .with_hint(format!(
                "export it with that version (crossdistill cache export {} --output scores.parquet) and import the file into a new cache dir with this one, or score into a new dir",
                self.dir.display()
            ));
        }
        Error::input(
            &self.path,
            None,
            format!("score cache format `{format}`, expected `{FORMAT}`"),
        )
        .with_hint("it was written by another crossdistill version: use another cache dir, or export it with that version and import it here")
    }

    /// Create the tables of a new cache; refuse a file of another format.
    fn check_format(&self) -> Result<()> {
        let write = self.begin_write()?;
        {
            let mut meta = write.open_table(META).map_err(|e| self.write_error(e))?;
            let found = meta
                .get("format")
                .map_err(|e| self.write_error(e))?
                .map(|value| value.value().to_string());
            match found {
                Some(format) if format == FORMAT => {}
                Some(format) => return Err(self.format_error(&format)),
                None => {
                    let scores = write.open_table(SCORES).map_err(|e| self.write_error(e))?;
                    if scores.len().map_err(|e| self.write_error(e))? > 0 {
                        return Err(self.damaged("it holds scores but no format record"));
                    }
                    drop(scores);
                    meta.insert("format", FORMAT)
                        .map_err(|e| self.write_error(e))?;
                }
            }
            write
                .open_table(TEACHERS)
                .map_err(|e| self.write_error(e))?;
            write.open_table(SCORES).map_err(|e| self.write_error(e))?;
            write.open_table(TEXTS).map_err(|e| self.write_error(e))?;
        }
        self.commit(write)
    }

    /// Refuse a file of another format, or one without the tables.
    fn check_format_read_only(&self) -> Result<()> {
        let read = self.db.begin_read().map_err(|e| self.read_error(e))?;
        let found = match read.open_table(META) {
            Ok(meta) => meta
                .get("format")
                .map_err(|e| self.read_error(e))?
                .map(|value| value.value().to_string()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(self.read_error(error)),
        };
        match found {
            Some(format) if format == FORMAT => {}
            Some(format) => return Err(self.format_error(&format)),
            None => {
                return Err(Error::input(
                    &self.path,
                    None,
                    "not a crossdistill score cache: it has no format record",
                )
                .with_hint("point the command at a directory `crossdistill score` filled"))
            }
        }
        read.open_table(TEACHERS).map_err(|e| self.read_error(e))?;
        read.open_table(SCORES).map_err(|e| self.read_error(e))?;
        read.open_table(TEXTS).map_err(|e| self.read_error(e))?;
        Ok(())
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cache file (`dir/scores.redb`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached scores of `teacher` for `pairs`, in order; `None` where there is none.
    pub fn lookup(&self, teacher: &str, pairs: &[(&str, &str)]) -> Result<Vec<Option<f32>>> {
        self.lookup_keys(teacher, &PairKey::of_pairs(pairs))
    }

    /// [`lookup`](Self::lookup) by pair keys (computed with [`PairKey::of`]).
    pub fn lookup_keys(&self, teacher: &str, keys: &[PairKey]) -> Result<Vec<Option<f32>>> {
        self.guarded(|| self.lookup_keys_unguarded(teacher, keys))
    }

    fn lookup_keys_unguarded(&self, teacher: &str, keys: &[PairKey]) -> Result<Vec<Option<f32>>> {
        let mut index = self
            .index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if index.as_ref().is_none_or(|index| index.teacher != teacher) {
            *index = None;
            *index = Some(self.build_index(teacher)?);
        }
        if let Some(Some(scores)) = index.as_ref().map(|index| &index.scores) {
            return Ok(keys
                .iter()
                .map(|&key| scores.get(&index_key(key)).copied())
                .collect());
        }
        drop(index);
        self.lookup_in_file(teacher, keys)
    }

    /// The score of a stored value, or the damage error when its check fails.
    fn checked_score(&self, id: u32, key: PairKey, value: (f32, u64, u32)) -> Result<f32> {
        let (score, text_id, check) = value;
        if entry_check(id, key, score, text_id) != check {
            return Err(self.damaged(&format!(
                "the entry of pair key {:032x} (teacher {id}) fails its check: its score or text id was changed on disk",
                key.0
            )));
        }
        Ok(score)
    }

    /// The in-memory index of `teacher` (one range scan), or none above [`INDEX_LIMIT`].
    fn build_index(&self, teacher: &str) -> Result<MemoryIndex> {
        let read = self.db.begin_read().map_err(|e| self.read_error(e))?;
        let teachers = read.open_table(TEACHERS).map_err(|e| self.read_error(e))?;
        let found = teachers
            .get(teacher)
            .map_err(|e| self.read_error(e))?
            .map(|value| value.value());
        let mut scores = IndexMap::default();
        match found {
            None => {}
            Some((_, entries)) if entries > INDEX_LIMIT => {
                return Ok(MemoryIndex {
                    teacher: teacher.to_string(),
                    scores: None,
                });
            }
            Some((id, entries)) => {
                // The count comes from the file: a hint for the map's size, capped.
                scores.reserve((entries as usize).min(1 << 20));
                let table = read.open_table(SCORES).map_err(|e| self.read_error(e))?;
                let (start, end) = (score_key(id, PairKey(0)), score_key(id, PairKey(u128::MAX)));
                for item in table
                    .range::<&[u8; 20]>(&start..=&end)
                    .map_err(|e| self.read_error(e))?
                {
                    let (key, value) = item.map_err(|e| self.read_error(e))?;
                    let (_, pair_key) = split_score_key(key.value());
                    let score = self.checked_score(id, pair_key, value.value())?;
                    scores.insert(index_key(pair_key), score);
                }
            }
        }
        Ok(MemoryIndex {
            teacher: teacher.to_string(),
            scores: Some(scores),
        })
    }

    fn lookup_in_file(&self, teacher: &str, keys: &[PairKey]) -> Result<Vec<Option<f32>>> {
        let read = self.db.begin_read().map_err(|e| self.read_error(e))?;
        let teachers = read.open_table(TEACHERS).map_err(|e| self.read_error(e))?;
        let Some(id) = teachers
            .get(teacher)
            .map_err(|e| self.read_error(e))?
            .map(|value| value.value().0)
        else {
            return Ok(vec![None; keys.len()]);
        };
        let scores = read.open_table(SCORES).map_err(|e| self.read_error(e))?;
        keys.iter()
            .map(|&key| {
                scores
                    .get(&score_key(id, key))
                    .map_err(|e| self.read_error(e))?
                    .map(|value| self.checked_score(id, key, value.value()))
                    .transpose()
            })
            .collect()
    }

    /// Add `(query, passage, score)` entries of `teacher` in one durable transaction. Entries
    /// already cached are kept as they are (counted as present or, with another score, as
    /// conflicts). Errors leave the cache as it was, including on a 128-bit key collision
    /// noticed when another teacher's texts are reused, which is reported rather than stored.
    pub fn insert(&mut self, teacher: &str, entries: &[(&str, &str, f32)]) -> Result<InsertReport> {
        if !self.writable {
            return Err(Error::invalid(format!(
                "the score cache {} was opened read-only",
                self.dir.display()
            ))
            .with_hint("open it with ScoreCache::open to add scores"));
        }
        if self.broken.load(Ordering::Relaxed) {
            return Err(self.damaged("an earlier read stopped on damage"));
        }
        match guard::catch(|| self.insert_unguarded(teacher, entries)) {
            Ok(result) => result,
            Err(panic) => {
                self.broken.store(true, Ordering::Relaxed);
                Err(self.damaged(&format!("the storage library stopped on it: {panic}")))
            }
        }
    }

    fn insert_unguarded(
        &mut self,
        teacher: &str,
        entries: &[(&str, &str, f32)],
    ) -> Result<InsertReport> {
        let mut report = InsertReport::default();
        if teacher.is_empty() {
            return Err(
                Error::invalid("cannot cache scores under an empty teacher fingerprint").with_hint(
                    "use the teacher's fingerprint (see `crossdistill cache stats DIR`)",
                ),
            );
        }
        if entries.is_empty() {
            return Ok(report);
        }
        let mut added: Vec<(PairKey, f32)> = Vec::new();
        let write = self.begin_write()?;
        let total = {
            let mut teachers = write
                .open_table(TEACHERS)
                .map_err(|e| self.write_error(e))?;
            let mut others = Vec::new();
            let mut existing = None;
            for item in teachers.iter().map_err(|e| self.write_error(e))? {
                let (name, value) = item.map_err(|e| self.write_error(e))?;
                if name.value() == teacher {
                    existing = Some(value.value());
                } else {
                    others.push(value.value().0);
                }
            }
            let (id, count) =
                existing.unwrap_or((others.iter().map(|id| id + 1).max().unwrap_or(0), 0));
            let mut scores = write.open_table(SCORES).map_err(|e| self.write_error(e))?;
            let mut texts = write.open_table(TEXTS).map_err(|e| self.write_error(e))?;
            let mut next_text = texts
                .last()
                .map_err(|e| self.write_error(e))?
                .map_or(0, |(key, _)| key.value() + 1);
            let mut buffer = Vec::new();
            for &(query, passage, score) in entries {
                let key = PairKey::of_with(&mut buffer, query, passage);
                let full = score_key(id, key);
                let cached = scores
                    .get(&full)
                    .map_err(|e| self.write_error(e))?
                    .map(|value| self.checked_score(id, key, value.value()))
                    .transpose()?;
                match cached {
                    Some(cached) if cached.to_bits() == score.to_bits() => {
                        report.present += 1;
                        continue;
                    }
                    Some(_) => {
                        report.conflicts += 1;
                        continue;
                    }
                    None => {}
                }
                // Texts another teacher stored for this pair are shared, not stored again.
                let mut shared = None;
                for &other in &others {
                    if let Some(value) = scores
                        .get(&score_key(other, key))
                        .map_err(|e| self.write_error(e))?
                    {
                        let value = value.value();
                        self.checked_score(other, key, value)?;
                        shared = Some(value.1);
                        break;
                    }
                }
                let text_id = match shared {
                    Some(text_id) => {
                        let same = texts
                            .get(text_id)
                            .map_err(|e| self.write_error(e))?
                            .is_some_and(|value| value.value() == (query, passage));
                        if !same {
                            return Err(Error::invalid(format!(
                                "score cache {}: the pair ({query:?}, {passage:?}) has the same 128-bit key {:032x} as another cached pair",
                                self.dir.display(),
                                key.0
                            ))
                            .with_hint("this is a hash collision (expected about once in 10^19 pairs): please report it; meanwhile use another cache dir"));
                        }
                        text_id
                    }
                    None => {
                        texts
                            .insert(next_text, (query, passage))
                            .map_err(|e| self.write_error(e))?;
                        next_text += 1;
                        next_text - 1
                    }
                };
                scores
                    .insert(
                        &full,
                        (score, text_id, entry_check(id, key, score, text_id)),
                    )
                    .map_err(|e| self.write_error(e))?;
                added.push((key, score));
                report.added += 1;
            }
            let total = count + report.added;
            teachers
                .insert(teacher, (id, total))
                .map_err(|e| self.write_error(e))?;
            total
        };
        self.commit(write)?;
        tracing::debug!(
            "score cache {}: committed {} new scores, {total} entries for this teacher",
            self.dir.display(),
            report.added
        );
        // Keep the in-memory index in step (the file lock means nobody else writes).
        let index = self.index.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(index) = index.as_mut().filter(|index| index.teacher == teacher) {
            if total > INDEX_LIMIT {
                index.scores = None;
            } else if let Some(scores) = index.scores.as_mut() {
                scores.extend(
                    added
                        .into_iter()
                        .map(|(key, score)| (index_key(key), score)),
                );
            }
        }
        Ok(report)
    }

    /// Cached scores of `teacher` (0 for a teacher the cache has never seen).
    pub fn entries(&self, teacher: &str) -> Result<u64> {
        self.guarded(|| {
            let read = self.db.begin_read().map_err(|e| self.read_error(e))?;
            let teachers = read.open_table(TEACHERS).map_err(|e| self.read_error(e))?;
            let found = teachers
                .get(teacher)
                .map_err(|e| self.read_error(e))?
                .map_or(0, |value| value.value().1);
            Ok(found)
        })
    }

    /// What the cache holds: size, distinct pairs, entries per teacher (as the file records
    /// them; [`verify`](Self::verify) reads every entry).
    pub fn stats(&self) -> Result<CacheStats> {
        self.guarded(|| self.stats_unguarded())
    }

    fn stats_unguarded(&self) -> Result<CacheStats> {
        let read = self.db.begin_read().map_err(|e| self.read_error(e))?;
        let teachers = read.open_table(TEACHERS).map_err(|e| self.read_error(e))?;
        let mut listed = Vec::new();
        for item in teachers.iter().map_err(|e| self.read_error(e))? {
            let (fingerprint, value) = item.map_err(|e| self.read_error(e))?;
            let (id, entries) = value.value();
            listed.push((
                id,
                TeacherStats {
                    teacher: fingerprint.value().to_string(),
                    entries,
                },
            ));
        }
        listed.sort_by_key(|(id, _)| *id);
        let pairs = read
            .open_table(TEXTS)
            .and_then(|table| Ok(table.len()?))
            .map_err(|e| self.read_error(e))?;
        let bytes = std::fs::metadata(&self.path)
            .map_err(|e| Error::io("cannot read", &self.path, e))?
            .len();
        Ok(CacheStats {
            path: self.path.clone(),
            bytes,
            pairs,
            teachers: listed.into_iter().map(|(_, stats)| stats).collect(),
        })
    }

    /// Read every entry and check it (its check value, its text hashing to its key, each
    /// teacher's recorded count). Returns the number of entries; the first damage is an error.
    pub fn verify(&self) -> Result<u64> {
        let stats = self.stats()?;
        let mut counted: HashMap<String, u64> = HashMap::new();
        self.for_each(None, |entry| {
            *counted.entry(entry.teacher.to_string()).or_default() += 1;
            Ok(())
        })?;
        for teacher in &stats.teachers {
            let found = counted.get(&teacher.teacher).copied().unwrap_or(0);
            if found != teacher.entries {
                return Err(self.damaged(&format!(
                    "teacher `{}` is recorded with {} entries, but {found} are stored",
                    teacher.teacher, teacher.entries
                )));
            }
        }
        Ok(counted.values().sum())
    }

    /// Call `visit` with every cached score (of `teacher` only, when given), teacher by teacher
    /// in the order they first wrote, pairs in key order. Stops at the first error `visit` returns,
    /// and at the first damaged entry (an error naming the file).
    pub fn for_each(
        &self,
        teacher: Option<&str>,
        visit: impl FnMut(CacheEntry<'_>) -> Result<()>,
    ) -> Result<()> {
        self.guarded(|| self.scan(teacher, false, visit).map(|_| ()))
    }

    /// [`for_each`](Self::for_each) over the entries that pass their checks; returns how many
    /// were skipped as damaged. Damage to the file's structure (a truncated file, a damaged
    /// page) still ends the scan with an error.
    pub fn for_each_readable(
        &self,
        teacher: Option<&str>,
        visit: impl FnMut(CacheEntry<'_>) -> Result<()>,
    ) -> Result<u64> {
        self.guarded(|| self.scan(teacher, true, visit))
    }

    fn scan(
        &self,
        teacher: Option<&str>,
        skip_damaged: bool,
        mut visit: impl FnMut(CacheEntry<'_>) -> Result<()>,
    ) -> Result<u64> {
        let read = self.db.begin_read().map_err(|e| self.read_error(e))?;
        let teachers = read.open_table(TEACHERS).map_err(|e| self.read_error(e))?;
        let mut names: Vec<(u32, String)> = Vec::new();
        for item in teachers.iter().map_err(|e| self.read_error(e))? {
            let (fingerprint, value) = item.map_err(|e| self.read_error(e))?;
            let fingerprint = fingerprint.value();
            if teacher.is_none_or(|wanted| wanted == fingerprint) {
                names.push((value.value().0, fingerprint.to_string()));
            }
        }
        names.sort();
        let scores = read.open_table(SCORES).map_err(|e| self.read_error(e))?;
        let texts = read.open_table(TEXTS).map_err(|e| self.read_error(e))?;
        let mut buffer = Vec::new();
        let mut skipped = 0;
        for (id, fingerprint) in &names {
            let start = score_key(*id, PairKey(0));
            let end = score_key(*id, PairKey(u128::MAX));
            for item in scores
                .range::<&[u8; 20]>(&start..=&end)
                .map_err(|e| self.read_error(e))?
            {
                let (key, value) = item.map_err(|e| self.read_error(e))?;
                let (_, pair_key) = split_score_key(key.value());
                let value = value.value();
                let checked = self.checked_score(*id, pair_key, value).and_then(|score| {
                    let text_id = value.1;
                    let stored = texts
                        .get(text_id)
                        .map_err(|e| self.read_error(e))?
                        .ok_or_else(|| {
                            self.damaged(&format!(
                                "the score of pair key {:032x} names text {text_id}, which is missing",
                                pair_key.0
                            ))
                        })?;
                    let (query, passage) = stored.value();
                    if PairKey::of_with(&mut buffer, query, passage) != pair_key {
                        return Err(self.damaged(&format!(
                            "text {text_id} does not hash to the pair key {:032x} that names it: the text was changed on disk",
                            pair_key.0
                        )));
                    }
                    Ok((stored, score))
                });
                let (stored, score) = match checked {
                    Ok(found) => found,
                    Err(error) if skip_damaged && is_damage(&error) => {
                        skipped += 1;
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                let (query, passage) = stored.value();
                visit(CacheEntry {
                    teacher: fingerprint,
                    query,
                    passage,
                    score,
                })?;
            }
        }
        Ok(skipped)
    }

    /// Add every score of `other` (all its teachers) to this cache, [`MERGE_CHUNK`] entries per
    /// transaction. Scores this cache already has are kept (see [`InsertReport`]); a merge that
    /// stops half-way can simply be run again.
    pub fn merge_from(&mut self, other: &ScoreCache) -> Result<InsertReport> {
        let mut report = InsertReport::default();
        let mut batch = EntryBatch::default();
        other.for_each(None, |entry| {
            if batch.teacher != entry.teacher || batch.entries.len() >= MERGE_CHUNK {
                report.add(batch.flush(self)?);
                batch.teacher = entry.teacher.to_string();
            }
            batch.entries.push((
                entry.query.to_string(),
                entry.passage.to_string(),
                entry.score,
            ));
            Ok(())
        })?;
        report.add(batch.flush(self)?);
        Ok(report)
    }

    fn begin_write(&self) -> Result<WriteTransaction> {
        let mut write = self.db.begin_write().map_err(|e| self.write_error(e))?;
        // Commits store the allocator state, so reopening after a crash needs no full scan.
        write.set_quick_repair(true);
        Ok(write)
    }

    fn commit(&self, write: WriteTransaction) -> Result<()> {
        write.commit().map_err(|e| self.write_error(e))
    }

    fn read_error(&self, error: impl Into<redb::Error>) -> Error {
        storage_error(
            "cannot read the score cache",
            &self.dir,
            &self.path,
            error.into(),
        )
    }

    fn write_error(&self, error: impl Into<redb::Error>) -> Error {
        storage_error(
            "cannot write the score cache",
            &self.dir,
            &self.path,
            error.into(),
        )
    }
}

/// Entries of one teacher waiting to be inserted (merge, import).
#[derive(Debug, Default)]
pub struct EntryBatch {
    /// The teacher's fingerprint.
    pub teacher: String,
    /// (query, passage, score).
    pub entries: Vec<(String, String, f32)>,
}

impl EntryBatch {
    /// Insert the entries into `cache` (one transaction) and empty the batch.
    pub fn flush(&mut self, cache: &mut ScoreCache) -> Result<InsertReport> {
        if self.entries.is_empty() {
            return Ok(InsertReport::default());
        }
        let refs: Vec<(&str, &str, f32)> = self
            .entries
            .iter()
            .map(|(q, p, s)| (q.as_str(), p.as_str(), *s))
            .collect();
        let report = cache.insert(&self.teacher, &refs)?;
        self.entries.clear();
        Ok(report)
    }
}

/// The prefix of every damage message (see [`is_damage`]).
const DAMAGED: &str = "damaged score cache: ";

/// The error for a damaged cache file: what was found, and [`damage_hint`].
fn damaged(dir: &Path, path: &Path, what: &str) -> Error {
    Error::input(path, None, format!("{DAMAGED}{what}")).with_hint(damage_hint(dir))
}

/// True for the errors [`damaged`] makes.
fn is_damage(error: &Error) -> bool {
    matches!(error, Error::Input { message, .. } if message.starts_with(DAMAGED))
}

fn storage_error(action: &'static str, dir: &Path, path: &Path, error: redb::Error) -> Error {
    match error {
        // A read past the end: the file was truncated (or a page pointer is damaged).
        redb::Error::Io(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            damaged(dir, path, &source.to_string())
        }
        redb::Error::Io(source) => Error::io(action, path, source),
        redb::Error::Corrupted(message) => damaged(dir, path, &message),
        other => Error::io(action, path, std::io::Error::other(other)),
    }
}

fn open_error(dir: &Path, path: &Path, error: DatabaseError) -> Error {
    match error {
        DatabaseError::DatabaseAlreadyOpen => Error::invalid(format!(
            "the score cache {} is open in another process",
            dir.display()
        ))
        .with_hint("wait for the other crossdistill command to finish, or use another cache dir"),
        DatabaseError::UpgradeRequired(version) => Error::input(
            path,
            None,
            format!(
                "the cache file has redb format {version}, which this crossdistill cannot read"
            ),
        )
        .with_hint("open it with the crossdistill version that wrote it and export it"),
        DatabaseError::Storage(StorageError::Corrupted(message)) => damaged(
            dir,
            path,
            &format!("not a crossdistill score cache, or a damaged one: {message}"),
        ),
        DatabaseError::Storage(StorageError::Io(source))
            if source.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            damaged(dir, path, &source.to_string())
        }
        DatabaseError::Storage(StorageError::Io(source)) => {
            Error::io("cannot open the score cache", path, source)
        }
        other => Error::io(
            "cannot open the score cache",
            path,
            std::io::Error::other(other),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_index_and_the_file_agree() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = ScoreCache::open(dir.path()).unwrap();
        let pairs: Vec<(String, String)> = (0..500)
            .map(|i| (format!("q{}", i % 9), format!("p{i}")))
            .collect();
        let rows: Vec<(&str, &str, f32)> = pairs
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(i, (q, p))| (q.as_str(), p.as_str(), i as f32 * 0.5))
            .collect();
        cache.insert("t", &rows[..100]).unwrap();
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(q, p)| (q.as_str(), p.as_str()))
            .collect();
        let keys = PairKey::of_pairs(&refs);
        // The index is built here, then kept in step by the next insert.
        assert_eq!(
            cache
                .lookup_keys("t", &keys)
                .unwrap()
                .iter()
                .flatten()
                .count(),
            100
        );
        cache.insert("t", &rows[100..]).unwrap();
        let from_memory = cache.lookup_keys("t", &keys).unwrap();
        assert_eq!(from_memory, cache.lookup_in_file("t", &keys).unwrap());
        for (i, score) in from_memory.iter().enumerate() {
            let expected = (i % 3 != 0).then_some(i as f32 * 0.5);
            assert_eq!(*score, expected, "pair {i}");
        }
        assert_eq!(
            cache.lookup_in_file("other", &keys).unwrap(),
            vec![None; 500]
        );
    }
}
