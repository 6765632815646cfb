//! FETCH: the data items of one message, from its record and (when needed) its bytes.
//! Pure functions; no I/O. (Being written: see the interface.)

use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName};
use imap_next::imap_types::flag::FlagFetch;

use crate::archive::Record;

/// One message as FETCH sees it.
pub struct FetchSource<'a> {
    /// Its UID (the archive's ingest sequence number).
    pub uid: u32,
    pub record: &'a Record,
    /// The exact original bytes; `None` when [`needs_raw`] said they are not needed.
    pub raw: Option<&'a [u8]>,
    /// The user's flags on it (`\Seen`, `\Flagged`), already decided by the session.
    pub flags: Vec<FlagFetch<'static>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the message bytes are needed but were not loaded")]
    RawMissing,
}

/// Whether any of `items` needs the message bytes (ENVELOPE, BODY[...], BODYSTRUCTURE, ...),
/// as opposed to the record alone (UID, FLAGS, INTERNALDATE, RFC822.SIZE).
pub fn needs_raw(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(|i| {
        !matches!(
            i,
            MessageDataItemName::Uid
                | MessageDataItemName::Flags
                | MessageDataItemName::InternalDate
                | MessageDataItemName::Rfc822Size
        )
    })
}

/// Whether fetching `items` sets `\Seen` (BODY[...] without PEEK, RFC822, RFC822.TEXT).
pub fn sets_seen(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(|i| match i {
        MessageDataItemName::BodyExt { peek, .. } => !peek,
        MessageDataItemName::Binary { peek, .. } => !peek,
        MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => true,
        _ => false,
    })
}

/// The data items for one message, in the order requested.
pub fn fetch_items(
    _items: &[MessageDataItemName<'_>],
    _src: &FetchSource<'_>,
) -> Result<Vec<MessageDataItem<'static>>, Error> {
    Ok(Vec::new())
}
