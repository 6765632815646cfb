//! The transparency log as the archive stores it: one leaf per stored copy, appended in the
//! write transaction that files the copy, and the hash of every complete subtree, so that a
//! proof reads O(log n) rows. The hashing, proofs and notes are `crate::tlog`'s.
//!
//! On disk, beside the index: `tlog/signing-key` (the Ed25519 seed, owner-only, made on
//! first use) and `tlog/checkpoint` (the latest signed checkpoint note). Both survive a
//! rebuilt index; the leaves and nodes are rebuilt from the log in the same order.

use std::path::{Path, PathBuf};

use redb::{ReadableTable, Table, WriteTransaction};

use super::tables::{META, META_TLOG_SIZE, TLOG_LEAVES, TLOG_NODES, TLOG_UIDS};
use super::{Archive, Db, Error, get_u64, io};
use crate::tlog::{self, ConsistencyProof, Hash, InclusionProof, Leaf, Signer};

const KEY_FILE: &str = "signing-key";
const CHECKPOINT_FILE: &str = "checkpoint";
const KEY_TAG: &str = "mailjournal-tlog-ed25519-seed";

/// The leaf tables of one write transaction.
pub(super) struct TlogWriter<'t> {
    leaves: Table<'t, u64, &'static [u8]>,
    nodes: Table<'t, (u8, u64), &'static [u8]>,
    uids: Table<'t, u32, u64>,
    /// The tree's size, once read.
    size: Option<u64>,
}

struct Nodes<'a, T>(&'a T);

impl<T: ReadableTable<(u8, u64), &'static [u8]>> tlog::Nodes for Nodes<'_, T> {
    type Error = Error;
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, Error> {
        read_node(self.0, level, index)
    }
}

fn read_node(
    t: &impl ReadableTable<(u8, u64), &'static [u8]>,
    level: u8,
    index: u64,
) -> Result<Hash, Error> {
    t.get((level, index))
        .db()?
        .and_then(|g| g.value().try_into().ok())
        .ok_or_else(|| Error::Corrupt {
            uid: 0,
            reason: format!("transparency log: subtree ({level}, {index}) is missing"),
        })
}

struct NodesMut<'a, 't>(&'a mut Table<'t, (u8, u64), &'static [u8]>);

impl tlog::Nodes for NodesMut<'_, '_> {
    type Error = Error;
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, Error> {
        read_node(self.0, level, index)
    }
}

impl tlog::NodesMut for NodesMut<'_, '_> {
    fn put(&mut self, level: u8, index: u64, hash: Hash) -> Result<(), Error> {
        self.0.insert((level, index), hash.as_slice()).db()?;
        Ok(())
    }
}

impl<'t> TlogWriter<'t> {
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<Self, Error> {
        Ok(Self {
            leaves: txn.open_table(TLOG_LEAVES).db()?,
            nodes: txn.open_table(TLOG_NODES).db()?,
            uids: txn.open_table(TLOG_UIDS).db()?,
            size: None,
        })
    }

    /// Appends `leaf`; the first leaf of a UID is the one its proofs show.
    pub(super) fn append(
        &mut self,
        meta: &Table<'t, &'static str, u64>,
        uid: u32,
        leaf: &Leaf,
    ) -> Result<u64, Error> {
        let index = match self.size {
            Some(n) => n,
            None => get_u64(meta, META_TLOG_SIZE)?.unwrap_or(0),
        };
        let bytes = leaf.encode();
        self.leaves.insert(index, bytes.as_slice()).db()?;
        tlog::append(
            &mut NodesMut(&mut self.nodes),
            index,
            tlog::leaf_hash(&bytes),
        )?;
        if self.uids.get(uid).db()?.is_none() {
            self.uids.insert(uid, index).db()?;
        }
        self.size = Some(index + 1);
        Ok(index)
    }

    /// Writes the tree's size; call once, after the batch's last leaf.
    pub(super) fn finish(&mut self, meta: &mut Table<'t, &'static str, u64>) -> Result<(), Error> {
        if let Some(size) = self.size.take() {
            meta.insert(META_TLOG_SIZE, size).db()?;
        }
        Ok(())
    }
}

/// The origin line (and key name) of an archive's log: `<name>/mailjournal/<uidvalidity>`.
pub fn origin(name: &str, uidvalidity: u32) -> String {
    format!("{name}/mailjournal/{uidvalidity}")
}

/// The signing key and the latest checkpoint, behind one lock so checkpoints only grow.
pub(super) struct Signing {
    /// The configured name (`transparency.name`).
    name: String,
    signer: Option<Signer>,
}

impl Default for Signing {
    fn default() -> Self {
        Self {
            name: "localhost".into(),
            signer: None,
        }
    }
}

impl Archive {
    fn tlog_dir(&self) -> PathBuf {
        self.dir.join("tlog")
    }

    /// Gives an archive made before the transparency log (no tree size recorded) the leaves
    /// a rebuilt index would give it: one per log frame the index has filed, in order. Runs
    /// once, when such an archive is first opened (before recovery files the log's tail).
    pub(super) fn backfill_tlog(&self) -> Result<(), Error> {
        {
            let txn = self.read()?;
            let meta = txn.open_table(META).db()?;
            if get_u64(&meta, META_TLOG_SIZE)?.is_some() {
                return Ok(());
            }
        }
        let leaves = {
            let txn = self.read()?;
            let mut ignored = super::VerifyReport::default();
            let mut leaves = Vec::new();
            self.verify_log(
                &txn,
                &std::collections::BTreeMap::new(),
                &mut ignored,
                &mut leaves,
            )?;
            leaves
        };
        let txn = self.db.begin_write().db()?;
        {
            let mut meta = txn.open_table(META).db()?;
            let mut w = TlogWriter::open(&txn)?;
            for leaf in &leaves {
                let Leaf::Copy { uid, .. } = leaf;
                w.append(&meta, *uid, leaf)?;
            }
            meta.insert(META_TLOG_SIZE, leaves.len() as u64).db()?;
        }
        txn.commit().db()?;
        tracing::info!(
            leaves = leaves.len(),
            "started the transparency log with the messages archived before it"
        );
        Ok(())
    }

    /// The tree's size: how many leaves are filed.
    pub fn tlog_size(&self) -> Result<u64, Error> {
        let txn = self.read()?;
        let meta = txn.open_table(META).db()?;
        Ok(get_u64(&meta, META_TLOG_SIZE)?.unwrap_or(0))
    }

    /// The root of the tree of the first `size` leaves (`size` at most the tree's size).
    pub fn tlog_root(&self, size: u64) -> Result<Hash, Error> {
        let txn = self.read()?;
        let nodes = txn.open_table(TLOG_NODES).db()?;
        tlog::root(&mut Nodes(&nodes), size)
    }

    /// The signing key named `origin(name, uidvalidity)`, made on first use.
    fn signer<'s>(&self, signing: &'s mut Signing) -> Result<&'s Signer, Error> {
        let origin = origin(&signing.name, self.uidvalidity);
        if signing.signer.as_ref().is_none_or(|s| s.name() != origin) {
            let seed = load_or_make_seed(&self.tlog_dir())?;
            let signer = Signer::from_seed(&origin, &seed).map_err(|e| Error::Corrupt {
                uid: 0,
                reason: format!("transparency log name {origin:?}: {e}"),
            })?;
            signing.signer = Some(signer);
        }
        signing.signer.as_ref().ok_or_else(|| Error::Corrupt {
            uid: 0,
            reason: "no signing key".into(),
        })
    }

    /// Names the log (`transparency.name`): its origin is `<name>/mailjournal/<uidvalidity>`.
    /// Until called, the name is `localhost`.
    pub fn set_tlog_name(&self, name: &str) {
        let mut signing = self.signing.lock().unwrap_or_else(|e| e.into_inner());
        if signing.name != name {
            signing.name = name.to_owned();
            signing.signer = None;
        }
    }

    /// The log's origin line (and key name).
    pub fn tlog_origin(&self) -> String {
        let signing = self.signing.lock().unwrap_or_else(|e| e.into_inner());
        origin(&signing.name, self.uidvalidity)
    }

    /// The verifier key of the log (`name+keyid+base64`), making the signing key if needed.
    pub fn tlog_verifier_key(&self) -> Result<String, Error> {
        let mut signing = self.signing.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self.signer(&mut signing)?.verifier_key())
    }

    /// The latest signed checkpoint note, as written, if there is one.
    pub fn latest_checkpoint(&self) -> Result<Option<String>, Error> {
        let path = self.tlog_dir().join(CHECKPOINT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }

    /// The latest checkpoint, signing a new one first when the tree has grown past it (or
    /// its origin is another). Returns the note and the tree size it covers.
    pub fn checkpoint_log(&self) -> Result<(String, u64), Error> {
        let mut signing = self.signing.lock().unwrap_or_else(|e| e.into_inner());
        let origin = origin(&signing.name, self.uidvalidity);
        let (size, root) = {
            let txn = self.read()?;
            let meta = txn.open_table(META).db()?;
            let size = get_u64(&meta, META_TLOG_SIZE)?.unwrap_or(0);
            let nodes = txn.open_table(TLOG_NODES).db()?;
            (size, tlog::root(&mut Nodes(&nodes), size)?)
        };
        if let Some(note) = self.latest_checkpoint()?
            && let Ok(old) = tlog::Checkpoint::parse_note(&note)
            && old.origin == origin
            && old.size >= size
        {
            return Ok((note, old.size));
        }
        let signer = self.signer(&mut signing)?;
        let note = signer.sign(&tlog::Checkpoint { origin, size, root }.body());
        write_private(&self.tlog_dir(), CHECKPOINT_FILE, note.as_bytes())?;
        tracing::debug!(size, "signed a transparency-log checkpoint");
        Ok((note, size))
    }

    /// The inclusion proof of message `uid`'s first copy, in the latest checkpoint (signed
    /// now if it does not cover the leaf yet). `None` when the message has no leaf.
    pub fn prove(&self, uid: u32) -> Result<Option<InclusionProof>, Error> {
        let index = {
            let txn = self.read()?;
            let uids = txn.open_table(TLOG_UIDS).db()?;
            match uids.get(uid).db()? {
                Some(g) => g.value(),
                None => return Ok(None),
            }
        };
        let (note, size) = self.checkpoint_log()?;
        if index >= size {
            return Ok(None);
        }
        let txn = self.read()?;
        let leaves = txn.open_table(TLOG_LEAVES).db()?;
        let bytes = leaves
            .get(index)
            .db()?
            .map(|g| g.value().to_vec())
            .ok_or_else(|| corrupt(format!("leaf {index} is missing")))?;
        let leaf =
            Leaf::decode(&bytes).ok_or_else(|| corrupt(format!("leaf {index} is unreadable")))?;
        let nodes = txn.open_table(TLOG_NODES).db()?;
        let path = tlog::inclusion_proof(&mut Nodes(&nodes), index, size)?;
        Ok(Some(InclusionProof::new(index, &leaf, size, &path, note)))
    }

    /// The consistency proof from the tree of `from` leaves to that of `to` (default: the
    /// latest checkpoint's). `None` unless `1 <= from <= to <= ` the checkpoint's size.
    pub fn prove_consistency(
        &self,
        from: u64,
        to: Option<u64>,
    ) -> Result<Option<ConsistencyProof>, Error> {
        let (note, size) = self.checkpoint_log()?;
        let to = to.unwrap_or(size);
        if from == 0 || from > to || to > size {
            return Ok(None);
        }
        let txn = self.read()?;
        let nodes = txn.open_table(TLOG_NODES).db()?;
        let mut n = Nodes(&nodes);
        let old = tlog::root(&mut n, from)?;
        let new = tlog::root(&mut n, to)?;
        let proof = tlog::consistency_proof(&mut n, from, to)?;
        Ok(Some(ConsistencyProof::new(
            (from, old),
            (to, new),
            &proof,
            note,
        )))
    }

    /// Checks the stored leaves against `expected` (the leaves the archive's log and records
    /// say there must be, in order), the stored subtree hashes against the leaves, and the
    /// latest checkpoint against the recomputed tree. Each problem is a sentence.
    pub(super) fn verify_tlog(
        &self,
        txn: &redb::ReadTransaction,
        expected: &[Leaf],
        problems: &mut Vec<String>,
    ) -> Result<(), Error> {
        let meta = txn.open_table(META).db()?;
        let size = get_u64(&meta, META_TLOG_SIZE)?.unwrap_or(0);
        let leaves = txn.open_table(TLOG_LEAVES).db()?;
        let mut stored = Vec::new();
        for entry in leaves.iter().db()? {
            let (k, v) = entry.db()?;
            stored.push((k.value(), v.value().to_vec()));
        }
        let len = expected.len().max(stored.len());
        let first_differing = (0..len).find(|&i| {
            let want = expected.get(i).map(Leaf::encode);
            let got = stored
                .get(i)
                .filter(|(k, _)| *k == i as u64)
                .map(|(_, v)| v.clone());
            want != got
        });
        if let Some(i) = first_differing {
            let what = match (expected.get(i), stored.get(i)) {
                (Some(Leaf::Copy { uid, id, .. }), Some(_)) => {
                    format!("differs from what the archive holds for message {uid} ({id})")
                }
                (Some(Leaf::Copy { uid, id, .. }), None) => {
                    format!("is missing (message {uid}, {id})")
                }
                (None, _) => "names a copy the archive does not hold".to_owned(),
            };
            problems.push(format!("transparency log: leaf {i} {what}"));
        }
        if stored.len() as u64 != size {
            problems.push(format!(
                "transparency log: {} leaves stored, the tree says {size}",
                stored.len()
            ));
        }
        // The tree the archive's content makes, and the stored subtrees.
        let mut recomputed = tlog::MemoryNodes::default();
        for (i, leaf) in expected.iter().enumerate() {
            tlog::append(&mut recomputed, i as u64, leaf.hash())
                .map_err(|(l, i)| corrupt(format!("recomputing subtree ({l}, {i})")))?;
        }
        let nodes = txn.open_table(TLOG_NODES).db()?;
        let n = (expected.len() as u64).min(size);
        if n > 0 {
            let want = tlog::root(&mut recomputed, n)
                .map_err(|(l, i)| corrupt(format!("recomputing subtree ({l}, {i})")))?;
            match tlog::root(&mut Nodes(&nodes), n) {
                Ok(got) if got == want => {}
                _ => problems.push(format!(
                    "transparency log: the stored tree of {n} leaves is not the tree of the archive's messages"
                )),
            }
        }
        let Some(note) = self.latest_checkpoint()? else {
            return Ok(());
        };
        let checkpoint = match tlog::Checkpoint::parse_note(&note) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("transparency log: the latest checkpoint: {e}"));
                return Ok(());
            }
        };
        if checkpoint.size > expected.len() as u64 {
            problems.push(format!(
                "transparency log: the latest checkpoint covers {} leaves, the archive's messages make {}",
                checkpoint.size,
                expected.len()
            ));
        } else if checkpoint.size > 0 {
            let root = tlog::root(&mut recomputed, checkpoint.size)
                .map_err(|(l, i)| corrupt(format!("recomputing subtree ({l}, {i})")))?;
            if root != checkpoint.root {
                problems.push(format!(
                    "transparency log: the latest checkpoint's root (tree of {} leaves) is not the root of the archive's messages",
                    checkpoint.size
                ));
            }
        }
        Ok(())
    }
}

fn corrupt(reason: String) -> Error {
    Error::Corrupt {
        uid: 0,
        reason: format!("transparency log: {reason}"),
    }
}

fn load_or_make_seed(dir: &Path) -> Result<[u8; 32], Error> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let seed = text
                .trim()
                .strip_prefix(KEY_TAG)
                .map(str::trim)
                .and_then(|b| data_encoding::BASE64.decode(b.as_bytes()).ok())
                .and_then(|b| <[u8; 32]>::try_from(b).ok());
            seed.ok_or_else(|| corrupt(format!("{} is not a signing key", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use ring::rand::SecureRandom;
            let mut seed = [0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut seed)
                .map_err(|_| corrupt("no randomness for a signing key".into()))?;
            let text = format!("{KEY_TAG} {}\n", data_encoding::BASE64.encode(&seed));
            write_private(dir, KEY_FILE, text.as_bytes())?;
            tracing::info!(path = %path.display(), "made the transparency log's signing key");
            Ok(seed)
        }
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

/// Writes `dir/name` durably and owner-only (a new file renamed into place).
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let what = format!("writing {}", dir.join(name).display());
    std::fs::create_dir_all(dir).map_err(io(what.clone()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(what.clone()))?;
    let temp = dir.join(format!("{name}.new"));
    let mut file = super::blobs::private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(io(what.clone()))?;
    file.write_all(bytes).map_err(io(what.clone()))?;
    file.sync_all().map_err(io(what.clone()))?;
    std::fs::rename(&temp, dir.join(name)).map_err(io(what.clone()))?;
    super::blobs::sync_dir(dir).map_err(io(what))
}

#[cfg(test)]
mod tests {
    use super::super::tables::{MESSAGES, TLOG_LEAVES};
    use super::super::*;
    use crate::tlog::{self, Leaf};

    fn message(n: u32, id_of: u32, at: i64) -> NewMessage {
        let raw = format!("Subject: {n}\r\n\r\nbody {n}\r\n").into_bytes();
        let blob = BlobHash::of(&raw);
        let id = StableId::from_content(&BlobHash::of(format!("id {id_of}").as_bytes()));
        NewMessage::prepare(&raw, blob, id, Meta::arrived(at), Codec::Lz4).expect("prepare")
    }

    /// Ten messages in three batches, two of them copies of earlier ones.
    fn filled(dir: &Path) -> Archive {
        let archive = Archive::open(dir).expect("open");
        archive.set_tlog_name("mx.test");
        let batches = [
            vec![message(1, 1, 100), message(2, 2, 101), message(3, 3, 102)],
            vec![message(4, 4, 103), message(5, 1, 104), message(6, 6, 105)],
            vec![message(7, 7, 106), message(8, 8, 107), message(9, 3, 108)],
            vec![message(10, 10, 109)],
        ];
        for batch in batches {
            archive.put_batch(batch, &NoHooks).expect("put");
        }
        archive
    }

    fn problems(archive: &Archive) -> Vec<String> {
        archive
            .verify(false, |_, _| {})
            .expect("verify")
            .problems
            .into_iter()
            .filter(|p| p.starts_with("transparency log"))
            .collect()
    }

    #[test]
    fn every_copy_is_a_leaf_and_proofs_verify_against_the_signed_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = filled(dir.path());
        assert_eq!(
            archive.tlog_size().expect("size"),
            10,
            "8 messages, 2 copies"
        );
        let key = tlog::Verifier::parse(&archive.tlog_verifier_key().expect("key")).expect("vk");
        assert!(key.name.starts_with("mx.test/mailjournal/"));
        for uid in 1..=8 {
            let proof = archive.prove(uid).expect("prove").expect("a leaf");
            let (leaf, checkpoint) = proof.verify(&key).expect("verifies");
            assert_eq!(checkpoint.size, 10);
            let Leaf::Copy { uid: u, .. } = leaf;
            assert_eq!(u, uid);
        }
        // The merged copy of message 1 is leaf 4, with its own arrival time.
        let leaves: Vec<Leaf> = {
            let txn = archive.read().expect("read");
            let t = txn.open_table(TLOG_LEAVES).expect("leaves");
            (0..10)
                .map(|i| {
                    Leaf::decode(t.get(i).expect("get").expect("leaf").value()).expect("decode")
                })
                .collect()
        };
        assert!(matches!(
            leaves[4],
            Leaf::Copy {
                uid: 1,
                arrived: 104,
                ..
            }
        ));
        let old = archive
            .prove_consistency(3, Some(10))
            .expect("c")
            .expect("proof");
        let old_note = archive.latest_checkpoint().expect("read").expect("note");
        assert!(
            old.verify(&key, &old_note, None).is_err(),
            "old is not size 3"
        );
        assert!(problems(&archive).is_empty(), "{:?}", problems(&archive));
    }

    #[test]
    fn an_archive_from_before_the_log_gets_the_leaves_a_rebuild_would_give() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = {
            let archive = filled(dir.path());
            let root = archive.tlog_root(10).expect("root");
            // What an archive of format 2 looks like: no tree at all.
            let txn = archive.db.begin_write().expect("write");
            txn.delete_table(TLOG_LEAVES).expect("drop");
            txn.delete_table(super::super::tables::TLOG_NODES)
                .expect("drop");
            txn.delete_table(super::super::tables::TLOG_UIDS)
                .expect("drop");
            txn.open_table(META)
                .expect("meta")
                .remove(META_TLOG_SIZE)
                .expect("remove");
            txn.commit().expect("commit");
            root
        };
        let archive = Archive::open(dir.path()).expect("reopen");
        assert_eq!(archive.tlog_size().expect("size"), 10);
        assert_eq!(archive.tlog_root(10).expect("root"), root);
        assert!(archive.prove(8).expect("prove").is_some());
        // And it happens once: new messages append after those leaves.
        drop(archive);
        let archive = Archive::open(dir.path()).expect("reopen");
        archive
            .put_batch(vec![message(11, 11, 110)], &NoHooks)
            .expect("put");
        assert_eq!(archive.tlog_size().expect("size"), 11);
        assert!(problems(&archive).is_empty(), "{:?}", problems(&archive));
    }

    #[test]
    fn a_rebuilt_index_has_the_same_leaves_and_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, note) = {
            let archive = filled(dir.path());
            let (note, _) = archive.checkpoint_log().expect("checkpoint");
            (archive.tlog_root(10).expect("root"), note)
        };
        std::fs::remove_file(dir.path().join("archive.redb")).expect("lose the index");
        let archive = Archive::open(dir.path()).expect("reopen");
        archive.set_tlog_name("mx.test");
        archive.recover(&NoHooks).expect("rebuild");
        assert_eq!(archive.tlog_size().expect("size"), 10);
        assert_eq!(archive.tlog_root(10).expect("root"), root);
        assert_eq!(archive.checkpoint_log().expect("checkpoint").0, note);
        assert!(problems(&archive).is_empty(), "{:?}", problems(&archive));
    }

    fn tampered(edit: impl FnOnce(&WriteTransaction)) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = filled(dir.path());
        archive.checkpoint_log().expect("checkpoint");
        let txn = archive.db.begin_write().expect("write");
        edit(&txn);
        txn.commit().expect("commit");
        problems(&archive)
    }

    #[test]
    fn verify_names_the_first_leaf_of_an_edited_record() {
        let found = tampered(|txn| {
            let mut t = txn.open_table(MESSAGES).expect("messages");
            let mut record: Record =
                serde_json::from_slice(t.get(3).expect("get").expect("record 3").value())
                    .expect("decode");
            record.blob = BlobHash::of(b"other bytes").to_hex();
            let bytes = serde_json::to_vec(&record).expect("encode");
            t.insert(3, bytes.as_slice()).expect("insert");
        });
        assert!(
            found[0].starts_with(
                "transparency log: leaf 2 differs from what the archive holds for message 3 ("
            ),
            "{found:?}"
        );
        assert!(
            found.iter().any(|p| p.contains("checkpoint's root")),
            "{found:?}"
        );
    }

    #[test]
    fn verify_names_the_first_leaf_of_a_removed_or_reordered_leaf() {
        // Leaf 5 removed, the later ones moved up (and the tree's size with them).
        let removed = tampered(|txn| {
            let mut t = txn.open_table(TLOG_LEAVES).expect("leaves");
            for i in 5..9u64 {
                let next = t.get(i + 1).expect("get").expect("leaf").value().to_vec();
                t.insert(i, next.as_slice()).expect("insert");
            }
            t.remove(9).expect("remove");
        });
        assert!(
            removed[0].starts_with("transparency log: leaf 5 differs"),
            "{removed:?}"
        );
        // Leaves 6 and 7 swapped.
        let swapped = tampered(|txn| {
            let mut t = txn.open_table(TLOG_LEAVES).expect("leaves");
            let a = t.get(6).expect("get").expect("leaf").value().to_vec();
            let b = t.get(7).expect("get").expect("leaf").value().to_vec();
            t.insert(6, b.as_slice()).expect("insert");
            t.insert(7, a.as_slice()).expect("insert");
        });
        assert!(
            swapped[0].starts_with("transparency log: leaf 6 differs"),
            "{swapped:?}"
        );
    }
}
