//! Line ends on the way out: IMAP wants CRLF, and some mail arrives with bare LFs (files saved
//! on Unix, some MTAs). The archive keeps every message exactly as it came; what IMAP serves
//! is that with each bare LF sent as CRLF, and every size IMAP tells counts those bytes.

/// How many LFs in `bytes` have no CR before them.
pub fn bare_lfs(bytes: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', bytes)
        .filter(|&i| i == 0 || bytes.get(i - 1) != Some(&b'\r'))
        .count()
}

/// The size of `bytes` with every bare LF made CRLF, when that differs from their own size.
pub fn converted_size(bytes: &[u8]) -> Option<u64> {
    match bare_lfs(bytes) {
        0 => None,
        n => Some((bytes.len() + n) as u64),
    }
}

/// `bytes` with every bare LF made CRLF; the same buffer when there is none.
pub fn to_crlf(bytes: Vec<u8>) -> Vec<u8> {
    let n = bare_lfs(&bytes);
    if n == 0 {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len() + n);
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', &bytes) {
        if i == 0 || bytes.get(i - 1) != Some(&b'\r') {
            out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
            out.extend_from_slice(b"\r\n");
            start = i + 1;
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_lfs_become_crlf() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a\r\nb\r\n", b"a\r\nb\r\n"),
            (b"a\nb\n", b"a\r\nb\r\n"),
            (b"\n", b"\r\n"),
            (b"\n\n", b"\r\n\r\n"),
            (b"a\r\nb\nc", b"a\r\nb\r\nc"),
            (b"lone\rcr\n", b"lone\rcr\r\n"),
            (b"\r\r\n\n", b"\r\r\n\r\n"),
        ];
        for (input, want) in cases {
            let got = to_crlf(input.to_vec());
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(input));
            let size = converted_size(input).unwrap_or(input.len() as u64);
            assert_eq!(size, want.len() as u64);
            assert_eq!(converted_size(input).is_none(), input == want);
        }
    }
}
