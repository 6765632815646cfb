//! The transparency log's pure parts: RFC 6962/9162 Merkle tree hashing and proofs, the
//! leaf encoding, and C2SP signed-note checkpoints. No storage: the archive keeps the leaves
//! and the hashes of complete subtrees (see `archive::tlog`) and asks this module to hash,
//! prove and sign.
//!
//! - leaf hash: `SHA-256(0x00 || leaf bytes)`; node hash: `SHA-256(0x01 || left || right)`
//!   (RFC 6962 section 2.1, RFC 9162 section 2.1.1).
//! - a tree of `n` leaves is the RFC's MTH: split at the largest power of two below `n`.
//! - a complete subtree is named by (level, index): the `2^level` leaves from
//!   `index * 2^level`. The archive stores every complete subtree, so any subtree hash the
//!   proofs need costs O(log n) stored hashes.

pub mod note;
pub mod proof;

pub use note::{Checkpoint, NoteError, Signer, Verifier};
pub use proof::{ConsistencyProof, InclusionProof, ProofError};

use ring::digest;

/// A SHA-256 hash: a leaf's, a node's, a root.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    sha256(&[&[]])
}

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// RFC 6962: the hash of a leaf's bytes.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    sha256(&[&[0x00], leaf])
}

/// RFC 6962: the hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// The leaf kinds. The first byte of every leaf; a new kind (an erasure tombstone) gets a
/// new byte, and a changed layout of a kind a new byte too, so old leaves keep their hash.
pub const KIND_COPY_V1: u8 = 0x01;

/// What a leaf says. Its bytes ([`Leaf::encode`]) are what the tree hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    /// A stored copy of a message: the message's UID and stable id, the BLAKE3 hash of the
    /// copy's exact bytes, and when it arrived (Unix seconds).
    ///
    /// Bytes: `0x01`, uid (u32 big-endian), arrival (i64 big-endian), blob hash (32 bytes),
    /// the id's length (1 byte) and the id (ASCII).
    Copy {
        uid: u32,
        arrived: i64,
        blob: [u8; 32],
        id: String,
    },
}

impl Leaf {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Leaf::Copy {
                uid,
                arrived,
                blob,
                id,
            } => {
                let id = id.as_bytes();
                let id = &id[..id.len().min(255)];
                let mut out = Vec::with_capacity(1 + 4 + 8 + 32 + 1 + id.len());
                out.push(KIND_COPY_V1);
                out.extend_from_slice(&uid.to_be_bytes());
                out.extend_from_slice(&arrived.to_be_bytes());
                out.extend_from_slice(blob);
                out.push(id.len() as u8);
                out.extend_from_slice(id);
                out
            }
        }
    }

    /// Reads a leaf's bytes; `None` for an unknown kind or a malformed leaf.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&kind, rest) = bytes.split_first()?;
        match kind {
            KIND_COPY_V1 => {
                let uid = u32::from_be_bytes(rest.get(0..4)?.try_into().ok()?);
                let arrived = i64::from_be_bytes(rest.get(4..12)?.try_into().ok()?);
                let blob: [u8; 32] = rest.get(12..44)?.try_into().ok()?;
                let len = usize::from(*rest.get(44)?);
                let id = rest.get(45..)?;
                if id.len() != len {
                    return None;
                }
                let id = std::str::from_utf8(id).ok()?.to_owned();
                Some(Leaf::Copy {
                    uid,
                    arrived,
                    blob,
                    id,
                })
            }
            _ => None,
        }
    }

    pub fn hash(&self) -> Hash {
        leaf_hash(&self.encode())
    }
}

/// Where the hashes of complete subtrees come from (and go to, for [`append`]).
pub trait Nodes {
    type Error;
    /// The hash of complete subtree (level, index); it must exist.
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Stores the hashes of complete subtrees.
pub trait NodesMut: Nodes {
    fn put(&mut self, level: u8, index: u64, hash: Hash) -> Result<(), Self::Error>;
}

/// Adds leaf number `index` (the tree had `index` leaves) with hash `leaf`: stores it at
/// level 0 and every subtree it completes.
pub fn append<N: NodesMut>(nodes: &mut N, index: u64, leaf: Hash) -> Result<(), N::Error> {
    nodes.put(0, index, leaf)?;
    let (mut level, mut i, mut hash) = (0u8, index, leaf);
    while i & 1 == 1 {
        let left = nodes.node(level, i - 1)?;
        hash = node_hash(&left, &hash);
        level += 1;
        i >>= 1;
        nodes.put(level, i, hash)?;
    }
    Ok(())
}

/// The largest power of two below `n` (n >= 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaves `lo..hi` (non-empty), from the stored complete subtrees.
pub fn subtree<N: Nodes>(nodes: &mut N, lo: u64, hi: u64) -> Result<Hash, N::Error> {
    let size = hi - lo;
    if size.is_power_of_two() {
        let level = size.trailing_zeros() as u8;
        return nodes.node(level, lo >> level);
    }
    let k = split(size);
    let left = subtree(nodes, lo, lo + k)?;
    let right = subtree(nodes, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of the first `size` leaves.
pub fn root<N: Nodes>(nodes: &mut N, size: u64) -> Result<Hash, N::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree(nodes, 0, size)
}

/// RFC 6962 section 2.1.1: the inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<N: Nodes>(
    nodes: &mut N,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, N::Error> {
    let mut path = Vec::new();
    // Walk down from the root, collecting the sibling subtrees, then reverse (leaf first).
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            path.push(subtree(nodes, lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(subtree(nodes, lo, lo + k)?);
            lo += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// RFC 6962 section 2.1.2: the consistency proof between the trees of `old` and `new`
/// leaves (0 < old <= new).
pub fn consistency_proof<N: Nodes>(
    nodes: &mut N,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, N::Error> {
    let mut proof = Vec::new();
    if old == 0 || old >= new {
        return Ok(proof);
    }
    // SUBPROOF(m, D[lo:hi], b), iteratively; siblings collected top-down, reversed at the end.
    let (mut lo, mut hi, mut complete) = (0u64, new, true);
    let m = old;
    loop {
        let n = hi - lo;
        let mm = m - lo;
        if mm == n {
            if !complete {
                proof.push(subtree(nodes, lo, hi)?);
            }
            break;
        }
        let k = split(n);
        if mm <= k {
            proof.push(subtree(nodes, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(subtree(nodes, lo, lo + k)?);
            lo += k;
            complete = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 9162 section 2.1.3.2: whether `proof` shows leaf `index` with hash `leaf` in the tree
/// of `size` leaves whose root is `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// RFC 9162 section 2.1.4.2: whether `proof` shows that the tree of `old` leaves with root
/// `old_root` is a prefix of the tree of `new` leaves with root `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    &fr == old_root && &sr == new_root && s == 0
}

/// MTH over a list of leaf hashes, straight from RFC 6962's definition (for `verify`, which
/// recomputes the tree, and for tests).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// Complete-subtree hashes kept in memory (tests, and `verify`'s recomputed tree).
#[derive(Default)]
pub struct MemoryNodes(pub std::collections::HashMap<(u8, u64), Hash>);

impl Nodes for MemoryNodes {
    type Error = (u8, u64);
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        self.0.get(&(level, index)).copied().ok_or((level, index))
    }
}

impl NodesMut for MemoryNodes {
    fn put(&mut self, level: u8, index: u64, hash: Hash) -> Result<(), Self::Error> {
        self.0.insert((level, index), hash);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn tree(n: u64) -> MemoryNodes {
        let mut nodes = MemoryNodes::default();
        for (i, l) in leaves(n).into_iter().enumerate() {
            append(&mut nodes, i as u64, l).expect("append");
        }
        nodes
    }

    /// RFC 6962's PATH and SUBPROOF, recursively over the leaves, as the RFC writes them.
    fn rfc_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split(n as u64) as usize;
        if m < k {
            let mut p = rfc_path(m, &d[..k]);
            p.push(root_of(&d[k..]));
            p
        } else {
            let mut p = rfc_path(m - k, &d[k..]);
            p.push(root_of(&d[..k]));
            p
        }
    }

    fn rfc_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { Vec::new() } else { vec![root_of(d)] };
        }
        let k = split(n as u64) as usize;
        if m <= k {
            let mut p = rfc_subproof(m, &d[..k], b);
            p.push(root_of(&d[k..]));
            p
        } else {
            let mut p = rfc_subproof(m - k, &d[k..], false);
            p.push(root_of(&d[..k]));
            p
        }
    }

    #[test]
    fn the_empty_root_is_the_hash_of_nothing() {
        assert_eq!(
            data_encoding::HEXLOWER.encode(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn stored_subtrees_give_the_rfc_root_and_proofs_for_every_size_up_to_70() {
        let all = leaves(70);
        let mut nodes = tree(70);
        for n in 1..=70u64 {
            let d = &all[..n as usize];
            let want = root_of(d);
            assert_eq!(root(&mut nodes, n).expect("root"), want, "root of {n}");
            for m in 0..n {
                let proof = inclusion_proof(&mut nodes, m, n).expect("proof");
                assert_eq!(proof, rfc_path(m as usize, d), "path {m} of {n}");
                assert!(verify_inclusion(&all[m as usize], m, n, &proof, &want));
                // Every other leaf, index or size fails.
                let other = all[((m + 1) % 70) as usize];
                assert!(!verify_inclusion(&other, m, n, &proof, &want));
                if n > 1 {
                    let wrong = (m + 1) % n;
                    assert!(!verify_inclusion(&all[m as usize], wrong, n, &proof, &want));
                }
            }
            for m in 1..=n {
                let proof = consistency_proof(&mut nodes, m, n).expect("consistency");
                if m < n {
                    assert_eq!(proof, rfc_subproof(m as usize, d, true), "{m} -> {n}");
                }
                let old = root_of(&all[..m as usize]);
                assert!(verify_consistency(m, n, &old, &want, &proof), "{m} -> {n}");
                let bad = leaf_hash(b"not the old root");
                assert!(!verify_consistency(m, n, &bad, &want, &proof), "{m} -> {n}");
                if m < n {
                    assert!(!verify_consistency(m, n, &old, &bad, &proof), "{m} -> {n}");
                    let mut flipped = proof.clone();
                    flipped[0][0] ^= 1;
                    assert!(!verify_consistency(m, n, &old, &want, &flipped));
                }
            }
        }
    }

    #[test]
    fn a_proof_reads_few_stored_hashes_in_a_big_tree() {
        struct Counting(MemoryNodes, usize);
        impl Nodes for Counting {
            type Error = (u8, u64);
            fn node(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error> {
                self.1 += 1;
                self.0.node(level, index)
            }
        }
        let n = 5_000u64;
        let mut nodes = Counting(tree(n), 0);
        let proof = inclusion_proof(&mut nodes, 1234, n).expect("proof");
        assert!(proof.len() <= 13);
        assert!(nodes.1 < 13 * 13, "read {} hashes", nodes.1);
    }

    #[test]
    fn leaves_round_trip_and_unknown_kinds_are_refused() {
        let leaf = Leaf::Copy {
            uid: 7,
            arrived: 1_795_248_000,
            blob: [9; 32],
            id: "abcdefghijklmnopqrstuvwx".into(),
        };
        let bytes = leaf.encode();
        assert_eq!(bytes[0], KIND_COPY_V1);
        assert_eq!(bytes.len(), 1 + 4 + 8 + 32 + 1 + 24);
        assert_eq!(Leaf::decode(&bytes), Some(leaf));
        let mut other = bytes.clone();
        other[0] = 0x7f;
        assert_eq!(Leaf::decode(&other), None);
        assert_eq!(Leaf::decode(&bytes[..bytes.len() - 1]), None);
    }
}
