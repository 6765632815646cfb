//! Independent IMAP clients against the IMAP view: Python's imaplib (every message fetched
//! and compared byte for byte with the archived original, ENVELOPE and BODYSTRUCTURE parsed by
//! the script) and mbsync (Debian's `isync`) pulling every folder into Maildirs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mailjournal::archive::{Filter, Record};
use mailjournal::server::Server;
use serde_json::Value;

use crate::imap::{PASSWORD, server_with};

/// Inbound, plain text.
const INBOUND: &str = "From: Marta <marta@fabrikam.com>\r\n\
To: alice@contoso.com\r\n\
Subject: Quote\r\n\
Date: Fri, 20 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <interop-1@fabrikam.com>\r\n\
\r\n\
Hello Alice.\r\n";

/// Outbound, multipart/alternative.
const ALTERNATIVE: &str = "From: Alice <alice@contoso.com>\r\n\
To: Marta <marta@fabrikam.com>\r\n\
Cc: bob@contoso.com\r\n\
Subject: Offer\r\n\
Date: Sat, 21 Nov 2026 09:00:00 +0000\r\n\
Message-ID: <alt-1@contoso.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"alt-b\"\r\n\
\r\n\
--alt-b\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
The offer is attached.\r\n\
--alt-b\r\n\
Content-Type: text/html; charset=us-ascii\r\n\
\r\n\
<p>The offer is attached.</p>\r\n\
--alt-b--\r\n";

/// Inbound, multipart/mixed: a text part, a base64 attachment, a nested message/rfc822; a
/// folded Content-Type header.
const MIXED: &str = "From: Kim <kim@fabrikam.com>\r\n\
To: bob@contoso.com\r\n\
Subject: Signed contract\r\n\
Date: Thu, 15 Oct 2026 16:30:00 +0200\r\n\
Message-ID: <mixed-1@fabrikam.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed;\r\n\
\tboundary=\"mixed-b\"\r\n\
\r\n\
This is a multi-part message in MIME format.\r\n\
--mixed-b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
Bob, the contract is attached,\r\n\
and my forwarded note below.\r\n\
--mixed-b\r\n\
Content-Type: application/pdf; name=\"contract.pdf\"\r\n\
Content-Disposition: attachment; filename=\"contract.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKdHJhaWxlcgo8\r\n\
PC9Sb290IDEgMCBSPj4KJSVFT0YK\r\n\
--mixed-b\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: Marta <marta@fabrikam.com>\r\n\
To: kim@fabrikam.com\r\n\
Subject: Note\r\n\
Date: Wed, 14 Oct 2026 08:00:00 +0000\r\n\
Message-ID: <note-1@fabrikam.com>\r\n\
\r\n\
Send Bob the contract.\r\n\
--mixed-b--\r\n";

/// Internal, an 8-bit UTF-8 body and encoded words in the header.
const UTF8: &str = "From: =?UTF-8?Q?J=C3=BCrgen?= <juergen@contoso.com>\r\n\
To: bob@sales.contoso.eu\r\n\
Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n\
Date: Mon, 05 Oct 2026 07:00:00 +0000\r\n\
Message-ID: <utf8-1@contoso.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Grüße aus Zürich — 東京の会議は月曜日です。\r\n\
Ça va ?\r\n";

/// External, with a lone-dot line and lines starting with dots (SMTP dot-stuffing).
const DOTS: &str = "From: marta@fabrikam.com\r\n\
To: kim@northwind.test\r\n\
Subject: Dots\r\n\
Date: Tue, 08 Sep 2026 12:00:00 +0000\r\n\
Message-ID: <dots-1@fabrikam.com>\r\n\
\r\n\
A lone dot follows:\r\n\
.\r\n\
..two dots\r\n\
.leading dot\r\n\
end\r\n";

/// Quarantined junk: in `Junk` only.
const JUNK: &str = "From: promo@spam.test\r\n\
To: alice@contoso.com\r\n\
Subject: You won\r\n\
Date: Fri, 20 Nov 2026 11:00:00 +0000\r\n\
Message-ID: <junk-1@spam.test>\r\n\
X-Spam-Flag: YES\r\n\
\r\n\
Click.\r\n";

const ALL: [&str; 6] = [INBOUND, ALTERNATIVE, MIXED, UTF8, DOTS, JUNK];

/// Every selectable folder and the Message-IDs it must hold.
const FOLDERS: [(&str, &[&str]); 9] = [
    (
        "INBOX",
        &[
            "interop-1@fabrikam.com",
            "alt-1@contoso.com",
            "mixed-1@fabrikam.com",
            "utf8-1@contoso.com",
            "dots-1@fabrikam.com",
        ],
    ),
    (
        "Inbound",
        &["interop-1@fabrikam.com", "mixed-1@fabrikam.com"],
    ),
    ("Outbound", &["alt-1@contoso.com"]),
    ("Internal", &["utf8-1@contoso.com"]),
    ("External", &["dots-1@fabrikam.com"]),
    ("Junk", &["junk-1@spam.test"]),
    ("By month/2026/09", &["dots-1@fabrikam.com"]),
    (
        "By month/2026/10",
        &["mixed-1@fabrikam.com", "utf8-1@contoso.com"],
    ),
    (
        "By month/2026/11",
        &["interop-1@fabrikam.com", "alt-1@contoso.com"],
    ),
];

/// A server with [`ALL`] sent to it over SMTP.
async fn server() -> (tempfile::TempDir, Server) {
    let messages: Vec<&[u8]> = ALL.iter().map(|m| m.as_bytes()).collect();
    server_with(&messages).await
}

/// A message as archived: its record and exact original bytes.
struct Archived {
    record: Record,
    raw: Vec<u8>,
}

impl Archived {
    fn message_id(&self) -> &str {
        self.record.meta.message_id.as_deref().unwrap_or_default()
    }
}

/// Every archived message (logged and junk) by UID; checks the archive holds exactly the
/// bytes that were sent.
fn archived(server: &Server) -> BTreeMap<u32, Archived> {
    let archive = server.archive().expect("archive");
    let mut out = BTreeMap::new();
    for junk in [false, true] {
        let filter = Filter {
            junk,
            ..Filter::default()
        };
        for record in archive.list(&filter).expect("list") {
            let raw = archive.raw(&record).expect("raw");
            out.insert(record.uid, Archived { record, raw });
        }
    }
    let mut stored: Vec<&[u8]> = out.values().map(|a| a.raw.as_slice()).collect();
    let mut sent: Vec<&[u8]> = ALL.iter().map(|m| m.as_bytes()).collect();
    stored.sort();
    sent.sort();
    assert_eq!(stored, sent, "the archive holds exactly the messages sent");
    out
}

/// Runs `cmd` with no input and its output in `log`, killing it after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration, log: &Path) -> (ExitStatus, String) {
    let out = std::fs::File::create(log).expect("create log");
    let err = out.try_clone().expect("clone log");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{cmd:?} did not finish within {limit:?}; its output:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = String::from_utf8_lossy(&std::fs::read(log).expect("read log")).into_owned();
    (status, text)
}

/// The imaplib client: LOGIN, LIST, SELECT INBOX, UID SEARCH ALL, one UID FETCH
/// BODY.PEEK[] per message, UID FETCH ENVELOPE BODYSTRUCTURE of all, EXAMINE Junk and the
/// same there, LOGOUT. Prints one JSON object; bodies in base64.
const IMAPLIB_SCRIPT: &str = r#"
import base64, imaplib, json, sys

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def ok(reply, what):
    typ, data = reply
    if typ != "OK":
        raise SystemExit(f"{what}: {typ} {data!r}")
    return data

def tokenize(text, out):
    i = 0
    while i < len(text):
        c = text[i:i + 1]
        if c in b" \r\n":
            i += 1
        elif c in b"()":
            out.append(c.decode())
            i += 1
        elif c == b'"':
            i += 1
            s = bytearray()
            while text[i:i + 1] != b'"':
                if text[i:i + 1] == b"\\":
                    i += 1
                s += text[i:i + 1]
                i += 1
            i += 1
            out.append(("string", bytes(s)))
        else:
            j = i
            while j < len(text) and text[j:j + 1] not in b' ()"\r\n':
                j += 1
            out.append(("atom", text[i:j]))
            i = j

def parse(pieces):
    """One response as imaplib hands it over ([(text, literal or None)]) as nested lists;
    strings and atoms as bytes, NIL as None."""
    toks = []
    for text, literal in pieces:
        if literal is not None:
            text = text[:text.rindex(b"{")]
        tokenize(text, toks)
        if literal is not None:
            toks.append(("string", literal))
    stack = [[]]
    for t in toks:
        if t == "(":
            stack.append([])
        elif t == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            kind, value = t
            stack[-1].append(None if kind == "atom" and value.upper() == b"NIL" else value)
    assert len(stack) == 1, stack
    return stack[0]

def responses(data):
    """Groups imaplib's data list into responses: tuples (with a literal) up to the next
    bytes item (the rest of the line)."""
    out, cur = [], []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            cur.append(item)
        else:
            cur.append((item, None))
            out.append(parse(cur))
            cur = []
    if cur:
        out.append(parse(cur))
    return out

def text(v):
    if isinstance(v, list):
        return [text(x) for x in v]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v

def fetch_items(resp):
    """[seq, [NAME, value, ...]] -> (seq, {NAME: value})"""
    seq, items = resp
    pairs = {}
    for k in range(0, len(items), 2):
        pairs[items[k].decode().upper()] = items[k + 1]
    return int(seq), pairs

def need(items, name):
    if name not in items:
        raise SystemExit(f"no {name} in a FETCH response: {list(items)}")
    return items[name]

def folder(m, name, readonly):
    exists = int(ok(m.select(name, readonly=readonly), "select " + name)[0])
    uids = [int(u) for u in ok(m.uid("SEARCH", None, "ALL"), "uid search")[0].split()]
    bodies = {}
    for uid in uids:
        data = ok(m.uid("FETCH", str(uid), "(BODY.PEEK[])"), "uid fetch body")
        resps = responses(data)
        if len(resps) != 1:
            raise SystemExit(f"UID FETCH {uid} (BODY.PEEK[]): {len(resps)} FETCH responses: {data!r}")
        seq, items = fetch_items(resps[0])
        if int(need(items, "UID")) != uid or "BODY[]" not in items:
            raise SystemExit(f"UID FETCH {uid} (BODY.PEEK[]) answered {data!r}")
        bodies[uid] = base64.b64encode(items["BODY[]"]).decode()
    structure = {}
    data = ok(m.uid("FETCH", "1:*", "(UID ENVELOPE BODYSTRUCTURE)"), "uid fetch structure")
    for resp in responses(data):
        seq, items = fetch_items(resp)
        structure[int(need(items, "UID"))] = {
            "envelope": text(need(items, "ENVELOPE")),
            "bodystructure": text(need(items, "BODYSTRUCTURE")),
        }
    flags = [int(u) for u in ok(m.uid("SEARCH", None, "UNSEEN"), "uid search unseen")[0].split()]
    return {"exists": exists, "uids": uids, "bodies": bodies, "structure": structure,
            "unseen": flags}

m = imaplib.IMAP4("127.0.0.1", port, timeout=30)
ok(m.login(user, password), "login")
listed = [text(parse([(line, None)])) for line in ok(m.list(), "list")]
out = {
    "list": listed,
    "INBOX": folder(m, "INBOX", False),
    "Junk": folder(m, "Junk", True),
}
m.logout()
print(json.dumps(out))
"#;

fn as_str(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("a string, not {v}"))
}

fn items(v: &Value) -> &[Value] {
    v.as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("a list, not {v}"))
}

/// The length of the part of `msg` between `after` and the next `before`.
fn section_len(msg: &str, after: &str, before: &str) -> usize {
    let start = msg.find(after).expect("start marker") + after.len();
    msg[start..].find(before).expect("end marker")
}

#[tokio::test]
async fn python_imaplib_reads_every_message_byte_for_byte() {
    let (_dir, server) = server().await;
    let archived = archived(&server);
    let port = server.imap_addr.expect("imap").port();
    let work = tempfile::tempdir().expect("tempdir");
    let log = work.path().join("imaplib.out");
    let (status, output) = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(IMAPLIB_SCRIPT)
            .arg(port.to_string())
            .arg("auditor")
            .arg(PASSWORD);
        run_bounded(cmd, Duration::from_secs(60), &log)
    })
    .await
    .expect("join");
    assert!(status.success(), "imaplib failed:\n{output}");
    let got = last_json(&output);

    // LIST: every folder, "By month" only as a parent.
    let listed: BTreeMap<String, Vec<String>> = items(&got["list"])
        .iter()
        .map(|l| {
            let l = items(l);
            let flags = items(&l[0]).iter().map(|f| as_str(f).to_owned()).collect();
            (as_str(&l[2]).to_owned(), flags)
        })
        .collect();
    for (name, _) in FOLDERS {
        let flags = listed
            .get(name)
            .unwrap_or_else(|| panic!("{name} not listed: {listed:?}"));
        assert!(!flags.iter().any(|f| f.eq_ignore_ascii_case("\\Noselect")));
    }
    for parent in ["By month", "By month/2026"] {
        let flags = listed.get(parent).expect("parent listed");
        assert!(
            flags.iter().any(|f| f.eq_ignore_ascii_case("\\Noselect")),
            "{parent}: {flags:?}"
        );
    }

    // Every message, byte for byte, in the folder it belongs to.
    for (name, want_junk) in [("INBOX", false), ("Junk", true)] {
        let folder = &got[name];
        let want: Vec<u32> = archived
            .iter()
            .filter(|(_, a)| a.record.is_junk() == want_junk)
            .map(|(uid, _)| *uid)
            .collect();
        let uids: Vec<u32> = items(&folder["uids"])
            .iter()
            .map(|u| u32::try_from(u.as_u64().expect("uid")).expect("u32"))
            .collect();
        assert_eq!(uids, want, "{name}: UID SEARCH ALL");
        assert_eq!(folder["exists"].as_u64(), Some(want.len() as u64), "{name}");
        for uid in &uids {
            let b64 = as_str(&folder["bodies"][uid.to_string()]);
            let body = data_encoding::BASE64
                .decode(b64.as_bytes())
                .expect("base64");
            let original = &archived[uid].raw;
            assert!(
                body == *original,
                "{name} UID {uid}: BODY[] differs from the original\n--- fetched\n{}\n--- original\n{}",
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(original)
            );
        }
        // BODY.PEEK[] left them unseen.
        assert_eq!(
            items(&folder["unseen"]).len(),
            uids.len(),
            "{name}: PEEK set \\Seen"
        );
    }

    let uid_of = |id: &str| {
        archived
            .iter()
            .find(|(_, a)| a.message_id() == id)
            .map(|(uid, _)| uid.to_string())
            .unwrap_or_else(|| panic!("{id} not archived"))
    };
    let structure = |id: &str| got["INBOX"]["structure"][uid_of(id)].clone();
    let lower = |v: &Value| as_str(v).to_ascii_lowercase();

    // The multipart/mixed message: ENVELOPE.
    let mixed = structure("mixed-1@fabrikam.com");
    let env = items(&mixed["envelope"]);
    assert_eq!(as_str(&env[0]), "Thu, 15 Oct 2026 16:30:00 +0200", "date");
    assert_eq!(as_str(&env[1]), "Signed contract", "subject");
    let from = items(&env[2]);
    assert_eq!(from.len(), 1);
    let from = items(&from[0]);
    assert_eq!(as_str(&from[0]), "Kim", "from name");
    assert!(from[1].is_null(), "from adl");
    assert_eq!(as_str(&from[2]), "kim", "from mailbox");
    assert_eq!(as_str(&from[3]), "fabrikam.com", "from host");
    // RFC 3501: sender and reply-to default to from.
    assert_eq!(env[3], env[2], "sender");
    assert_eq!(env[4], env[2], "reply-to");
    let to = items(&items(&env[5])[0]);
    assert!(to[0].is_null(), "to name");
    assert_eq!((as_str(&to[2]), as_str(&to[3])), ("bob", "contoso.com"));
    assert!(env[6].is_null() && env[7].is_null() && env[8].is_null());
    assert_eq!(as_str(&env[9]), "<mixed-1@fabrikam.com>", "message-id");

    // BODYSTRUCTURE: three parts, then the subtype.
    let bs = items(&mixed["bodystructure"]);
    assert!(bs.len() >= 4, "{bs:?}");
    assert_eq!(lower(&bs[3]), "mixed");
    let text = items(&bs[0]);
    assert_eq!(
        (lower(&text[0]), lower(&text[1])),
        ("text".into(), "plain".into())
    );
    let params: Vec<String> = items(&text[2]).iter().map(lower).collect();
    assert_eq!(params, ["charset", "utf-8"]);
    assert_eq!(lower(&text[5]), "7bit");
    let text_body = "Bob, the contract is attached,\r\nand my forwarded note below.";
    assert_eq!(text[6].as_str(), Some(text_body.len().to_string().as_str()));
    // Two lines, the last without its own line end (the CRLF before a boundary belongs to
    // the boundary): RFC 3501 leaves open whether that last line counts; Dovecot says 1.
    assert!(
        matches!(text[7].as_str(), Some("1" | "2")),
        "text lines: {}",
        text[7]
    );
    let pdf = items(&bs[1]);
    assert_eq!(
        (lower(&pdf[0]), lower(&pdf[1])),
        ("application".into(), "pdf".into())
    );
    let params: Vec<String> = items(&pdf[2])
        .iter()
        .map(|p| as_str(p).to_owned())
        .collect();
    assert_eq!(params[0].to_ascii_lowercase(), "name");
    assert_eq!(params[1], "contract.pdf");
    assert_eq!(lower(&pdf[5]), "base64");
    let pdf_len = section_len(MIXED, "base64\r\n\r\n", "\r\n--mixed-b");
    assert_eq!(
        pdf[6].as_str(),
        Some(pdf_len.to_string().as_str()),
        "pdf size"
    );
    let nested = items(&bs[2]);
    assert_eq!(
        (lower(&nested[0]), lower(&nested[1])),
        ("message".into(), "rfc822".into())
    );
    let nested_len = section_len(MIXED, "message/rfc822\r\n\r\n", "\r\n--mixed-b--");
    assert_eq!(
        nested[6].as_str(),
        Some(nested_len.to_string().as_str()),
        "message/rfc822 size"
    );
    let nested_env = items(&nested[7]);
    assert_eq!(as_str(&nested_env[1]), "Note");
    assert_eq!(as_str(&nested_env[9]), "<note-1@fabrikam.com>");
    let nested_body = items(&nested[8]);
    assert_eq!(
        (lower(&nested_body[0]), lower(&nested_body[1])),
        ("text".into(), "plain".into())
    );
    assert_eq!(nested_body[6].as_str(), Some("22"), "nested body size");

    // The multipart/alternative message.
    let alt = structure("alt-1@contoso.com");
    let bs = items(&alt["bodystructure"]);
    assert_eq!(lower(&bs[2]), "alternative", "{bs:?}");
    assert_eq!(lower(&items(&bs[0])[1]), "plain");
    assert_eq!(lower(&items(&bs[1])[1]), "html");
    let env = items(&alt["envelope"]);
    let cc = items(&items(&env[6])[0]);
    assert_eq!((as_str(&cc[2]), as_str(&cc[3])), ("bob", "contoso.com"));

    // The 8-bit message: encoded words stay encoded in ENVELOPE; sizes count bytes.
    let utf8 = structure("utf8-1@contoso.com");
    let env = items(&utf8["envelope"]);
    assert_eq!(as_str(&env[1]), "=?UTF-8?B?R3LDvMOfZQ==?=");
    assert_eq!(
        as_str(&items(&items(&env[2])[0])[0]),
        "=?UTF-8?Q?J=C3=BCrgen?="
    );
    let bs = items(&utf8["bodystructure"]);
    assert_eq!(
        (lower(&bs[0]), lower(&bs[1])),
        ("text".into(), "plain".into())
    );
    assert_eq!(lower(&bs[5]), "8bit");
    let body_len = UTF8.len() - UTF8.find("\r\n\r\n").expect("header end") - 4;
    assert_eq!(
        bs[6].as_str(),
        Some(body_len.to_string().as_str()),
        "size in bytes"
    );
    assert_eq!(bs[7].as_str(), Some("2"), "lines");
    server.stop().await;
}

/// mbsync's version (major, minor); `None` when it is missing and the test is skipped.
fn mbsync_version() -> Option<(u32, u32)> {
    let out = match Command::new("mbsync").arg("--version").output() {
        Ok(out) if out.status.success() => out,
        _ => {
            assert!(
                std::env::var_os("MAILJOURNAL_REQUIRE_INTEROP").is_none(),
                "mbsync is not installed, and MAILJOURNAL_REQUIRE_INTEROP is set: install \
                 Debian's isync package (apt-get install -y isync)"
            );
            eprintln!(
                "skipped: mbsync is not installed (Debian package isync: apt-get install -y \
                 isync; set MAILJOURNAL_REQUIRE_INTEROP=1 to make this a failure)"
            );
            return None;
        }
    };
    // "isync 1.4.4"
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text.split_whitespace().nth(1).unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    Some((parts.next().unwrap_or(0), parts.next().unwrap_or(0)))
}

/// What mbsync changes in a message it stores into a Maildir, undone, so the rest can be
/// compared byte for byte: (1) its Maildir store writes LF line ends (it converts CRLF to LF
/// on the way in); (2) it inserts a header `X-TUID: <12 characters>` as the last header line
/// of every message it propagates (its transaction id, to find the message again after an
/// interrupted run). Returns the file with the X-TUID line removed and LF turned back into
/// CRLF, and whether an X-TUID line was there.
fn undo_mbsync(file: &[u8]) -> (Vec<u8>, bool) {
    let crlf = file.windows(2).any(|w| w == b"\r\n");
    let lines: Vec<&[u8]> = file.split_inclusive(|b| *b == b'\n').collect();
    let header_end = lines
        .iter()
        .position(|l| *l == b"\n" || *l == b"\r\n")
        .unwrap_or(lines.len());
    let mut tuid = false;
    let mut out = Vec::with_capacity(file.len() + lines.len());
    for (i, line) in lines.iter().enumerate() {
        if i < header_end && line.starts_with(b"X-TUID: ") && !tuid {
            tuid = true;
            continue;
        }
        match line.strip_suffix(b"\n") {
            Some(l) if !crlf => {
                out.extend_from_slice(l);
                out.extend_from_slice(b"\r\n");
            }
            _ => out.extend_from_slice(line),
        }
    }
    (out, tuid)
}

/// Every Maildir under `root` (a directory with `cur/`), by its path relative to `root`.
fn maildirs(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        if dir.join("cur").is_dir() {
            let name = dir
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            out.insert(name, dir.clone());
        }
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            let leaf = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() && !["cur", "new", "tmp"].contains(&leaf) {
                todo.push(path);
            }
        }
    }
    out
}

/// The message files of a Maildir (`cur/` and `new/`).
fn message_files(maildir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for entry in entries {
            out.push(entry.expect("entry").path());
        }
    }
    out.sort();
    out
}

/// A `sync(round)` that runs `mbsync -a` (as `auditor`, every folder, pull only, Maildirs
/// under `local`) against `server`, its configuration and logs in `work`.
fn mbsync(
    server: &Server,
    version: (u32, u32),
    work: &Path,
    local: &Path,
) -> impl Fn(u32) -> tokio::task::JoinHandle<(ExitStatus, String)> + use<> {
    let port = server.imap_addr.expect("imap").port();
    std::fs::create_dir(local).expect("mkdir");
    // isync 1.5 renamed SSLType to TLSType.
    let tls = if version >= (1, 5) {
        "TLSType"
    } else {
        "SSLType"
    };
    let rc = work.join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount mailjournal\n\
             Host 127.0.0.1\n\
             Port {port}\n\
             User auditor\n\
             Pass \"{PASSWORD}\"\n\
             {tls} None\n\
             AuthMechs LOGIN\n\
             Timeout 30\n\
             \n\
             IMAPStore remote\n\
             Account mailjournal\n\
             \n\
             MaildirStore local\n\
             SubFolders Verbatim\n\
             Path {local}/\n\
             Inbox {local}/INBOX\n\
             \n\
             Channel archive\n\
             Far :remote:\n\
             Near :local:\n\
             Patterns *\n\
             Sync Pull\n\
             Create Near\n\
             SyncState *\n",
            local = local.display()
        ),
    )
    .expect("write rc");
    let work = work.to_path_buf();
    move |round: u32| {
        let rc = rc.clone();
        let log = work.join(format!("mbsync-{round}.log"));
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new("mbsync");
            cmd.arg("-c").arg(&rc).arg("-a");
            run_bounded(cmd, Duration::from_secs(120), &log)
        })
    }
}

#[tokio::test]
async fn mbsync_pulls_every_folder_byte_for_byte() {
    let Some(version) = mbsync_version() else {
        return;
    };
    let (_dir, server) = server().await;
    let archived = archived(&server);
    for a in archived.values() {
        assert!(
            !a.raw
                .iter()
                .enumerate()
                .any(|(i, b)| *b == b'\n' && (i == 0 || a.raw[i - 1] != b'\r')),
            "the originals are CRLF only, so undoing mbsync's LF conversion is exact"
        );
    }
    let work = tempfile::tempdir().expect("tempdir");
    let local = work.path().join("local");
    let sync = mbsync(&server, version, work.path(), &local);
    let (status, output) = sync(1).await.expect("join");
    assert!(status.success(), "mbsync failed ({status}):\n{output}");

    let by_id: BTreeMap<&str, &Archived> = archived.values().map(|a| (a.message_id(), a)).collect();
    let boxes = maildirs(&local);
    let names: BTreeSet<&str> = boxes.keys().map(String::as_str).collect();
    let want_names: BTreeSet<&str> = FOLDERS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, want_names, "the Maildirs mbsync made");
    let mut with_tuid = 0;
    let mut files = 0;
    for (name, want_ids) in FOLDERS {
        let mut got_ids = Vec::new();
        for path in message_files(&boxes[name]) {
            let bytes = std::fs::read(&path).expect("read message");
            let (restored, tuid) = undo_mbsync(&bytes);
            with_tuid += usize::from(tuid);
            files += 1;
            let found = archived.values().find(|a| a.raw == restored);
            let Some(found) = found else {
                panic!(
                    "{name}: {} matches no archived original (even with mbsync's LF and \
                     X-TUID changes undone):\n{}",
                    path.display(),
                    String::from_utf8_lossy(&bytes)
                );
            };
            got_ids.push(found.message_id());
        }
        got_ids.sort_unstable();
        let mut want: Vec<&str> = want_ids.to_vec();
        want.sort_unstable();
        assert_eq!(got_ids, want, "{name}: the messages mbsync pulled");
        for id in want_ids {
            assert!(by_id.contains_key(id), "{id} is archived");
        }
    }
    let logged = archived.values().filter(|a| !a.record.is_junk()).count();
    assert_eq!(
        message_files(&boxes["INBOX"]).len(),
        logged,
        "INBOX has every logged message"
    );
    eprintln!(
        "mbsync {}.{}: {files} files, {with_tuid} with an X-TUID header added by mbsync",
        version.0, version.1
    );

    // A second run finds nothing new: UIDs and UIDVALIDITY are stable.
    let (status, output) = sync(2).await.expect("join");
    assert!(status.success(), "second mbsync run failed:\n{output}");
    let again: usize = maildirs(&local)
        .values()
        .map(|d| message_files(d).len())
        .sum();
    assert_eq!(again, files, "the second run pulled nothing:\n{output}");
    server.stop().await;
}

/// imaplib's `myrights` and `getacl` for one account: LOGIN, MYRIGHTS of each folder named
/// (quoted), GETACL INBOX, LOGOUT. Prints one JSON object: the capabilities before login,
/// and each reply as [status, [lines]].
const ACL_SCRIPT: &str = r#"
import imaplib, json, sys

port, user, password, folders = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]

def lines(data):
    return [d.decode() if isinstance(d, bytes) else None for d in data]

m = imaplib.IMAP4("127.0.0.1", port, timeout=30)
out = {"capabilities": list(m.capabilities), "myrights": {}}
typ, data = m.login(user, password)
if typ != "OK":
    raise SystemExit(f"login: {typ} {data!r}")
for f in folders:
    typ, data = m.myrights('"' + f + '"')
    out["myrights"][f] = [typ, lines(data)]
typ, data = m.getacl("INBOX")
out["getacl"] = [typ, lines(data)]
m.logout()
print(json.dumps(out))
"#;

/// Runs [`ACL_SCRIPT`] as `user`; its JSON.
async fn imaplib_acl(server: &Server, user: &str, folders: &[&str]) -> Value {
    let port = server.imap_addr.expect("imap").port();
    let work = tempfile::tempdir().expect("tempdir");
    let log = work.path().join("acl.out");
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(ACL_SCRIPT)
        .arg(port.to_string())
        .arg(user)
        .arg(PASSWORD)
        .args(folders);
    let (status, output) =
        tokio::task::spawn_blocking(move || run_bounded(cmd, Duration::from_secs(60), &log))
            .await
            .expect("join");
    assert!(status.success(), "imaplib failed:\n{output}");
    last_json(&output)
}

#[tokio::test]
async fn python_imaplib_myrights_tell_admin_and_salesperson_what_they_may_do() {
    const TO_ALICE: &str = "From: Marta <marta@fabrikam.com>\r\nTo: alice@contoso.com\r\nSubject: for alice\r\nMessage-ID: <py-acl-1@fabrikam.com>\r\n\r\nalice only\r\n";
    const FROM_BOB: &str = "From: bob@contoso.com\r\nTo: buyer@fabrikam.com\r\nSubject: from bob\r\nMessage-ID: <py-acl-2@contoso.com>\r\n\r\nbob only\r\n";
    let (_dir, server) = crate::imap::server_with_people(
        &[TO_ALICE.as_bytes(), FROM_BOB.as_bytes()],
        &[
            ("admin", mailjournal::archive::Role::Admin, None),
            ("alice", mailjournal::archive::Role::Salesperson, Some("AS")),
        ],
    )
    .await;
    let folders = [
        "INBOX",
        "Junk",
        "By month",
        "Salespeople/Alice Seller",
        "Contacts/Fabrikam/Buyer",
        "Nowhere",
    ];
    let rights = |got: &Value, folder: &str| -> (String, Vec<String>) {
        let reply = items(&got["myrights"][folder]);
        let lines = items(&reply[1])
            .iter()
            .map(|l| as_str(l).to_owned())
            .collect();
        (as_str(&reply[0]).to_owned(), lines)
    };

    let admin = imaplib_acl(&server, "admin", &folders).await;
    let caps: Vec<&str> = items(&admin["capabilities"]).iter().map(as_str).collect();
    // imaplib upper-cases them.
    assert!(
        caps.contains(&"ACL") && caps.contains(&"RIGHTS=TEXK"),
        "{caps:?}"
    );
    for folder in [
        "INBOX",
        "Junk",
        "Salespeople/Alice Seller",
        "Contacts/Fabrikam/Buyer",
    ] {
        assert_eq!(
            rights(&admin, folder),
            ("OK".to_owned(), vec![format!("\"{folder}\" lrsw")]),
            "admin, {folder}"
        );
    }
    assert_eq!(
        rights(&admin, "By month"),
        ("OK".to_owned(), vec!["\"By month\" l".to_owned()])
    );
    let (status, lines) = rights(&admin, "Nowhere");
    assert_eq!(status, "NO");
    assert!(lines[0].starts_with("[NONEXISTENT]"), "{lines:?}");
    let getacl = items(&admin["getacl"]);
    assert_eq!(as_str(&getacl[0]), "NO", "nobody may read ACLs: {getacl:?}");
    assert!(as_str(&items(&getacl[1])[0]).starts_with("[NOPERM]"));

    let alice = imaplib_acl(&server, "alice", &folders).await;
    for folder in ["INBOX", "Salespeople/Alice Seller"] {
        assert_eq!(
            rights(&alice, folder),
            ("OK".to_owned(), vec![format!("\"{folder}\" lrsw")]),
            "alice, {folder}"
        );
    }
    for folder in ["Junk", "Contacts/Fabrikam/Buyer", "Nowhere"] {
        let (status, lines) = rights(&alice, folder);
        assert_eq!(status, "NO", "alice, {folder}");
        assert!(
            lines[0].starts_with("[NONEXISTENT]"),
            "alice, {folder}: {lines:?}"
        );
    }
    let getacl = items(&alice["getacl"]);
    assert_eq!(as_str(&getacl[0]), "NO");
    assert!(as_str(&items(&getacl[1])[0]).starts_with("[NOPERM]"));
    server.stop().await;
}

/// Issue 17: a contact whose company and name changed in the directory got a new folder
/// path, and every `mbsync -a` after that failed on the old one. The old path keeps opening
/// (the same messages), the new one is pulled as a new folder.
///
/// Open: mbsync (1.4.4 here) never sends SELECT for a far-side box that LIST did not show:
/// it reports "far side box ... cannot be opened" by itself, so with LIST showing only
/// today's paths run 2 still exits 1. It passes only if LIST also shows renamed paths,
/// which is a decision about every client's folder list (see the README's IMAP section).
#[tokio::test]
#[ignore = "mbsync never opens a box LIST does not show: needs renamed paths in LIST"]
async fn mbsync_keeps_syncing_a_contact_folder_the_directory_renamed() {
    use crate::imap::{
        FROM_BOB_MUELLER, FROM_DAN, RENAME_AFTER, RENAME_BEFORE, RENAME_SALESPEOPLE,
        TO_BOB_MUELLER, import_directory,
    };
    let Some(version) = mbsync_version() else {
        return;
    };
    let (dir, server) = server_with(&[FROM_BOB_MUELLER, TO_BOB_MUELLER, FROM_DAN]).await;
    import_directory(dir.path(), RENAME_SALESPEOPLE, RENAME_BEFORE).await;
    let work = tempfile::tempdir().expect("tempdir");
    let local = work.path().join("local");
    let sync = mbsync(&server, version, work.path(), &local);
    let (status, output) = sync(1).await.expect("join");
    assert!(status.success(), "mbsync failed ({status}):\n{output}");
    // This mbsync names the Maildir as the server does, in modified UTF-7 (ü is "&APw-").
    const OLD: &str = "Contacts/Example Net/Bob M&APw-ller";
    const NEW: &str = "Contacts/Example Net GmbH/Bob Mueller";
    let count = |name: &str| maildirs(&local).get(name).map(|d| message_files(d).len());
    assert_eq!(count(OLD), Some(2), "{:?}", maildirs(&local).keys());

    import_directory(dir.path(), RENAME_SALESPEOPLE, RENAME_AFTER).await;
    for round in [2, 3] {
        let (status, output) = sync(round).await.expect("join");
        assert!(
            status.success(),
            "mbsync run {round} after the rename failed ({status}):\n{output}"
        );
        assert_eq!(count(OLD), Some(2), "the old folder keeps its messages");
        assert_eq!(count(NEW), Some(2), "the new folder is pulled");
        assert_eq!(count("Contacts/Example Net GmbH/Dan Dealer"), Some(1));
    }
    server.stop().await;
}

/// The last line of a script's output that is a JSON object.
fn last_json(output: &str) -> Value {
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from the script:\n{output}"));
    serde_json::from_str(line).expect("JSON")
}
