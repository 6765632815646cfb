//! The proofs the gateway hands out, as JSON, and their verification (what
//! `mailjournal verify-proof` and `scripts/verify-proof.py` do).

use data_encoding::{BASE64, HEXLOWER};
use serde::{Deserialize, Serialize};

use super::note::{Checkpoint, NoteError, Verifier};
use super::{Hash, Leaf, leaf_hash, verify_consistency, verify_inclusion};

pub const INCLUSION_FORMAT: &str = "mailjournal-inclusion-proof/1";
pub const CONSISTENCY_FORMAT: &str = "mailjournal-consistency-proof/1";

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("not a proof: {0}")]
    Malformed(String),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] NoteError),
    #[error("the proof does not lead to the checkpoint's root: {0}")]
    Mismatch(&'static str),
}

/// What a leaf says, spelled out (the `leaf` bytes are what counts; this is for reading).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafView {
    pub kind: String,
    pub uid: u32,
    pub id: String,
    /// BLAKE3 of the copy's exact bytes, hex.
    pub blob: String,
    /// Unix seconds.
    pub arrived: i64,
}

impl LeafView {
    pub fn of(leaf: &Leaf) -> Self {
        match leaf {
            Leaf::Copy {
                uid,
                arrived,
                blob,
                id,
            } => Self {
                kind: "copy".into(),
                uid: *uid,
                id: id.clone(),
                blob: HEXLOWER.encode(blob),
                arrived: *arrived,
            },
        }
    }
}

/// An inclusion proof: leaf `leaf_index` of the tree of `tree_size` leaves, whose signed
/// checkpoint is `checkpoint`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InclusionProof {
    pub format: String,
    pub leaf_index: u64,
    /// The leaf's bytes, base64.
    pub leaf: String,
    pub leaf_fields: LeafView,
    pub tree_size: u64,
    /// Sibling hashes from the leaf up, base64.
    pub inclusion: Vec<String>,
    /// The signed checkpoint note of a tree of `tree_size` leaves.
    pub checkpoint: String,
}

impl InclusionProof {
    pub fn new(
        leaf_index: u64,
        leaf: &Leaf,
        tree_size: u64,
        path: &[Hash],
        checkpoint: String,
    ) -> Self {
        Self {
            format: INCLUSION_FORMAT.into(),
            leaf_index,
            leaf: BASE64.encode(&leaf.encode()),
            leaf_fields: LeafView::of(leaf),
            tree_size,
            inclusion: path.iter().map(|h| BASE64.encode(h)).collect(),
            checkpoint,
        }
    }

    /// Checks the checkpoint's signature, that the leaf's fields are its bytes, and the
    /// path; returns the leaf and the checkpoint.
    pub fn verify(&self, key: &Verifier) -> Result<(Leaf, Checkpoint), ProofError> {
        if self.format != INCLUSION_FORMAT {
            return Err(ProofError::Malformed(format!("format {:?}", self.format)));
        }
        let checkpoint = Checkpoint::open(&self.checkpoint, key)?;
        if checkpoint.size != self.tree_size {
            return Err(ProofError::Mismatch(
                "the checkpoint is of another tree size",
            ));
        }
        let bytes = BASE64
            .decode(self.leaf.as_bytes())
            .map_err(|_| ProofError::Malformed("the leaf is not base64".into()))?;
        let leaf = Leaf::decode(&bytes)
            .ok_or_else(|| ProofError::Malformed("the leaf is of an unknown kind".into()))?;
        if LeafView::of(&leaf) != self.leaf_fields {
            return Err(ProofError::Mismatch(
                "leaf_fields say something else than the leaf",
            ));
        }
        let path = hashes(&self.inclusion)?;
        if !verify_inclusion(
            &leaf_hash(&bytes),
            self.leaf_index,
            self.tree_size,
            &path,
            &checkpoint.root,
        ) {
            return Err(ProofError::Mismatch("the inclusion path"));
        }
        Ok((leaf, checkpoint))
    }
}

/// A consistency proof between the trees of `old_size` and `new_size` leaves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub format: String,
    pub old_size: u64,
    pub new_size: u64,
    /// The roots of both trees, base64 (the verifier takes them from checkpoints it trusts).
    pub old_root: String,
    pub new_root: String,
    /// RFC 6962 consistency proof, base64.
    pub consistency: Vec<String>,
    /// The latest signed checkpoint (of `new_size` leaves when `to` was not given).
    pub checkpoint: String,
}

impl ConsistencyProof {
    pub fn new(old: (u64, Hash), new: (u64, Hash), proof: &[Hash], checkpoint: String) -> Self {
        Self {
            format: CONSISTENCY_FORMAT.into(),
            old_size: old.0,
            new_size: new.0,
            old_root: BASE64.encode(&old.1),
            new_root: BASE64.encode(&new.1),
            consistency: proof.iter().map(|h| BASE64.encode(h)).collect(),
            checkpoint,
        }
    }

    /// Checks that `old` (a signed checkpoint note) is a prefix of `new` (another, or the
    /// proof's own checkpoint when `None`), both signed by `key`.
    pub fn verify(
        &self,
        key: &Verifier,
        old: &str,
        new: Option<&str>,
    ) -> Result<(Checkpoint, Checkpoint), ProofError> {
        if self.format != CONSISTENCY_FORMAT {
            return Err(ProofError::Malformed(format!("format {:?}", self.format)));
        }
        let old = Checkpoint::open(old, key)?;
        let new = Checkpoint::open(new.unwrap_or(&self.checkpoint), key)?;
        if old.size != self.old_size || new.size != self.new_size {
            return Err(ProofError::Mismatch(
                "the proof is between other tree sizes than the checkpoints",
            ));
        }
        let path = hashes(&self.consistency)?;
        if !verify_consistency(old.size, new.size, &old.root, &new.root, &path) {
            return Err(ProofError::Mismatch("the consistency proof"));
        }
        Ok((old, new))
    }
}

fn hashes(list: &[String]) -> Result<Vec<Hash>, ProofError> {
    list.iter()
        .map(|h| {
            BASE64
                .decode(h.as_bytes())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| ProofError::Malformed(format!("{h:?} is not a base64 hash")))
        })
        .collect()
}
