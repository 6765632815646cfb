//! SEARCH: evaluating search keys against one message, and resolving sequence sets against
//! a folder's UID list. Pure functions; no I/O. (Being written: see the interface.)

use imap_next::imap_types::search::SearchKey;
use imap_next::imap_types::sequence::SequenceSet;

use crate::archive::Record;

/// One message as SEARCH sees it.
pub struct SearchSource<'a> {
    /// Its sequence number in the selected folder (from 1).
    pub seq: u32,
    pub uid: u32,
    pub record: &'a Record,
    /// The exact original bytes; `None` when [`needs_raw`] said they are not needed.
    pub raw: Option<&'a [u8]>,
    pub seen: bool,
    pub flagged: bool,
}

/// The selected folder's dimensions, for `*` in sequence sets.
#[derive(Debug, Clone, Copy)]
pub struct Folder {
    /// Number of messages (the largest sequence number).
    pub exists: u32,
    /// The largest UID in the folder (0 when empty).
    pub max_uid: u32,
}

/// Whether evaluating `key` needs the message bytes (BODY, TEXT, HEADER of a field the
/// record does not keep).
pub fn needs_raw(_key: &SearchKey<'_>) -> bool {
    false
}

/// Whether the message matches `key`.
pub fn matches(_key: &SearchKey<'_>, _src: &SearchSource<'_>, _folder: Folder) -> bool {
    false
}

/// The positions (0-based indexes into `uids`) that `set` names, in ascending order, each
/// once. `uids` is the folder's sorted UID list; with `by_uid` the set holds UIDs, else
/// sequence numbers. Costs O(ranges × log n + matches), never O(range width): `1:4294967295`
/// is as cheap as `1:*`.
pub fn resolve(_set: &SequenceSet, _uids: &[u32], _by_uid: bool) -> Vec<usize> {
    Vec::new()
}
