#!/usr/bin/env python3
"""Helpers of scripts/bench-imap: generate mail, mirror mailjournal's folders into a Dovecot
Maildir, time IMAP commands, summarize. Standard library only; loopback only.

  bench_imap.py generate DIR COUNT MIX SEED     realistic | small messages, one file each
  bench_imap.py mirror LIST_JSON MSG_DIR MAILDIR
  bench_imap.py fetch PORT USER PASSWORD        imaplib: UID FETCH 1:* (BODY.PEEK[]) of INBOX
  bench_imap.py fetch-lean PORT USER PASSWORD   the same on a bare socket (lean client)
  bench_imap.py big PORT USER PASSWORD          raw socket: SELECT INBOX, UID FETCH 1:* (UID FLAGS)
  bench_imap.py count-maildirs ROOT             message files per Maildir (JSON)
  bench_imap.py check-ingest SUMMARY_JSON COUNT
  bench_imap.py check-mbsync ROOT FOLDERS_JSON  every folder's file count as the server's
  bench_imap.py check-fetch FETCH_JSON GENERATE_JSON
  bench_imap.py check-big BIG_JSON COUNT
  bench_imap.py report RESULTS_TSV
"""

import base64
import email.utils
import imaplib
import json
import os
import random
import re
import socket
import statistics
import sys
import time

# ---------------------------------------------------------------------------------------------
# Generating mail.

WORDS = """
the of and to in is that for it as with was on be by this are at from or have an which you
not we all were can been has their more will one would there if about when so what up out
them into some other time only could new these two may first then do any like my now over
such our man me even most made after also did many before must through back years where
much your way well down should because each just those people how too little state good very
make world still own see men work long get here between both life being under never day same
another know while last might us great old year off come since against go came right used
take three offer price contract delivery invoice meeting quarter budget forecast customer
order shipment schedule proposal agreement renewal discount pricing review approval draft
attached please find regards thanks team project update status report sales account region
pipeline opportunity revenue margin target deadline call follow next week monday tuesday
wednesday thursday friday confirm request question answer support ticket issue resolved
warehouse logistics supplier terms conditions payment due net thirty signed legal counsel
""".split()

FIRST = "alice bob carol dave erin frank grace heidi ivan judy kim lena marta nadia oscar " \
    "paul quinn rosa sam tara ugo vera walt xena yusuf zoe".split()
LAST = "smith jones garcia miller davis lopez wilson anderson thomas moore martin lee " \
    "walker hall young king wright scott green baker".split()
INSIDE = ["example.com", "example.com", "sales.example.com", "eu.example.com"]
OUTSIDE = ["fabrikam.com", "northwind.com", "contoso.net", "adatum.org", "tailspin.io",
           "wingtip.co.uk", "litware.de", "proseware.fr"]


def person(rng, domains):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return (f"{first.title()} {last.title()}", f"{first}.{last}@{rng.choice(domains)}")


def fmt(p):
    return f'"{p[0]}" <{p[1]}>'


def line_pool(rng, n=20000):
    pool = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(6, 13))
        words[0] = words[0].title()
        pool.append((" ".join(words) + rng.choice([".", ".", ",", "?", ""])).encode())
    return pool


def text_body(rng, pool, size):
    lines, n = [], 0
    while n < size:
        if rng.random() < 0.12:
            line = b""
        else:
            line = rng.choice(pool)
        lines.append(line)
        n += len(line) + 2
    return b"\r\n".join(lines) + b"\r\n"


def message(rng, pool, i, mix, seed, now):
    kind = rng.random()
    if kind < 0.40:  # inbound
        sender, rcpt_domains = OUTSIDE, INSIDE
    elif kind < 0.75:  # outbound
        sender, rcpt_domains = INSIDE, OUTSIDE
    elif kind < 0.90:  # internal
        sender, rcpt_domains = INSIDE, INSIDE
    else:  # external
        sender, rcpt_domains = OUTSIDE, OUTSIDE
    frm = person(rng, sender)
    to = [person(rng, rcpt_domains) for _ in range(rng.randint(1, 3))]
    cc = [person(rng, INSIDE + OUTSIDE) for _ in range(rng.randint(0, 2))]
    when = now - rng.uniform(0, 365 * 86400)
    date = email.utils.formatdate(when, localtime=False)
    domain = frm[1].split("@")[1]
    mid = f"<bench.{seed}.{i:07d}.{rng.getrandbits(40):010x}@{domain}>"
    subject = " ".join(rng.choices(WORDS, k=rng.randint(2, 7))).capitalize()
    h = []
    if mix == "realistic":
        for hop in range(rng.randint(1, 3)):
            h.append(f"Received: from mx{hop}.{domain} (mx{hop}.{domain} [192.0.2.{hop + 1}])\r\n"
                     f"\tby mail.example.com with ESMTPS id {rng.getrandbits(48):012X};\r\n"
                     f"\t{date}")
    h += [f"From: {fmt(frm)}", "To: " + ", ".join(fmt(p) for p in to)]
    if cc:
        h.append("Cc: " + ", ".join(fmt(p) for p in cc))
    h += [f"Subject: {subject}", f"Date: {date}", f"Message-ID: {mid}", "MIME-Version: 1.0"]
    if mix == "small":
        body = text_body(rng, pool, rng.randint(700, 1500))
        h += ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"]
        return ("\r\n".join(h) + "\r\n\r\n").encode() + body
    # Mostly 2 to 20 KB of text (log-uniform), one in ten with a base64 attachment up to
    # about 200 KB.
    size = int(2000 * 10 ** rng.uniform(0, 1))
    body = text_body(rng, pool, size)
    if rng.random() >= 0.10:
        h += ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"]
        return ("\r\n".join(h) + "\r\n\r\n").encode() + body
    boundary = f"=_bench_{rng.getrandbits(64):016x}"
    h.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    raw = rng.randbytes(rng.randint(8_000, 148_000))
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    name = f"document-{i}.pdf"
    parts = [
        b"This is a multi-part message in MIME format.\r\n",
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n"
        f"Content-Transfer-Encoding: 7bit\r\n\r\n".encode() + body,
        f"--{boundary}\r\nContent-Type: application/pdf; name=\"{name}\"\r\n"
        f"Content-Disposition: attachment; filename=\"{name}\"\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n".encode() + b64,
        f"--{boundary}--\r\n".encode(),
    ]
    return ("\r\n".join(h) + "\r\n\r\n").encode() + b"".join(parts)


def generate(out_dir, count, mix, seed):
    rng = random.Random(seed)
    pool = line_pool(rng)
    os.makedirs(out_dir, exist_ok=True)
    now = 1_790_000_000  # fixed: the same messages on every run
    total = 0
    for i in range(1, count + 1):
        data = message(rng, pool, i, mix, seed, now)
        assert b"\n" not in data.replace(b"\r\n", b""), "CRLF only"
        with open(os.path.join(out_dir, f"{i:07d}.eml"), "wb") as f:
            f.write(data)
        total += len(data)
    print(json.dumps({"messages": count, "bytes": total}))


# ---------------------------------------------------------------------------------------------
# Dovecot's copy of mailjournal's folders.

def mirror(list_json, msg_dir, maildir):
    """Hard-links every generated file into the Dovecot Maildir (LAYOUT=fs) folders that
    mailjournal shows it in: INBOX, its direction's folder, and By month/YYYY/MM. The order of
    the file names is mailjournal's UID order, so Dovecot numbers them the same way."""
    by_mid = {}
    for name in sorted(os.listdir(msg_dir)):
        with open(os.path.join(msg_dir, name), "rb") as f:
            head = f.read(8192)
        m = re.search(rb"\r\nMessage-ID: <([^>]+)>", head)
        by_mid[m.group(1).decode()] = name
    folders = {}
    records = 0
    with open(list_json) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            records += 1
            src = os.path.join(msg_dir, by_mid[r["message_id"]])
            size = os.path.getsize(src)
            year, month = r["date"][0:4], r["date"][5:7]
            for folder in ["", r["direction"].title(), f"By month/{year}/{month}"]:
                d = os.path.join(maildir, folder)
                if folder not in folders:
                    for sub in ("cur", "new", "tmp"):
                        os.makedirs(os.path.join(d, sub), exist_ok=True)
                    folders[folder] = 0
                folders[folder] += 1
                # <time>.M<n>P<pid>.<host>,S=<size>,W=<size with CRLF>:2, (the files are CRLF)
                base = f"{1_700_000_000 + r['uid']}.M{r['uid']}P1.bench,S={size},W={size}:2,"
                os.link(src, os.path.join(d, "cur", base))
    # mailjournal also shows an (empty) Junk folder.
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, "Junk", sub), exist_ok=True)
    folders["Junk"] = 0
    if records != len(by_mid):
        sys.exit(f"mailjournal lists {records} messages, {len(by_mid)} were generated")
    print(json.dumps({("INBOX" if k == "" else k): v for k, v in sorted(folders.items())}))


def maildir_counts(root):
    out = {}
    for d, subdirs, _ in os.walk(root):
        if "cur" in subdirs:
            n = sum(len(os.listdir(os.path.join(d, s))) for s in ("cur", "new")
                    if os.path.isdir(os.path.join(d, s)))
            out[os.path.relpath(d, root)] = n
        subdirs[:] = [s for s in subdirs if s not in ("cur", "new", "tmp")]
    return out


def last_json(path):
    """The last line of a file that is a JSON object."""
    with open(path) as f:
        lines = [line for line in f if line.startswith("{")]
    if not lines:
        sys.exit(f"no JSON in {path}")
    return json.loads(lines[-1])


def check_ingest(path, count):
    s = last_json(path)
    print(f"stored {s['stored']}, duplicates {s['duplicates']}, junk {s['junk']}, "
          f"errors {len(s['errors'])}")
    if s["stored"] != count or s["errors"] or s["junk"]:
        sys.exit(1)


def check_mbsync(root, folders_json):
    """mbsync made a Maildir for every non-empty folder with all its messages (empty and
    \\Noselect folders may or may not get an empty Maildir)."""
    got = {k: v for k, v in maildir_counts(root).items() if v}
    want = {k: v for k, v in last_json(folders_json).items() if v}
    if got != want:
        sys.exit(f"mbsync pulled {got}, the server holds {want}")


def check_fetch(path, generate_json):
    r, want = last_json(path), last_json(generate_json)
    if (r["messages"], r["bytes"]) != (want["messages"], want["bytes"]):
        sys.exit(f"fetched {r['messages']} messages, {r['bytes']} bytes; generated {want}")
    print(f"{r['seconds']:.3f}")


def check_big(path, count):
    r = last_json(path)
    if (r["exists"], r["fetch_lines"]) != (count, count):
        sys.exit(f"EXISTS {r['exists']}, {r['fetch_lines']} FETCH lines, want {count}")
    print(f"{r['select_s']:.4f} {r['flags_s']:.4f}")


# ---------------------------------------------------------------------------------------------
# Timed clients.

def fetch(port, user, password):
    """UID FETCH 1:* (BODY.PEEK[]) of INBOX with imaplib, timed from the command to its OK."""
    m = imaplib.IMAP4("127.0.0.1", port, timeout=600)
    m.login(user, password)
    typ, data = m.select("INBOX", readonly=True)
    if typ != "OK":
        sys.exit(f"SELECT INBOX: {typ} {data!r}")
    exists = int(data[0])
    t0 = time.perf_counter()
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
    secs = time.perf_counter() - t0
    if typ != "OK":
        sys.exit(f"UID FETCH: {typ} {data!r}")
    total = count = 0
    for item in data:
        if isinstance(item, tuple) and b"BODY[]" in item[0].upper():
            total += len(item[1])
            count += 1
    m.logout()
    print(json.dumps({"seconds": secs, "bytes": total, "messages": count, "exists": exists}))


class Raw:
    """A minimal IMAP client on a socket, for timing commands with large untagged answers
    without imaplib's per-line Python work."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.buf = bytearray()
        self.n = 0
        while b"\r\n" not in self.buf:  # the greeting
            chunk = self.s.recv(4096)
            if not chunk:
                raise SystemExit("the server closed the connection")
            self.buf += chunk
        del self.buf[: self.buf.index(b"\r\n") + 2]

    def command(self, text):
        """Sends a command and returns (seconds to its tagged reply, everything before it);
        the answers this is used for hold no literals."""
        self.n += 1
        tag = f"b{self.n}".encode()
        needle = b"\r\n" + tag + b" "
        t0 = time.perf_counter()
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        # A CRLF in front, so a tagged reply on the first line is found like any other.
        acc = bytearray(b"\r\n") + self.buf
        self.buf = bytearray()
        scan = 0
        while True:
            i = acc.find(needle, scan)
            if i >= 0:
                end = acc.find(b"\r\n", i + 2)
                if end >= 0:
                    secs = time.perf_counter() - t0
                    status = bytes(acc[i + 2:end])
                    self.buf = acc[end + 2:]
                    if status.split(b" ")[1:2] != [b"OK"]:
                        raise SystemExit(f"{text}: {status!r}")
                    return secs, bytes(acc[2:i + 2])
            else:
                scan = max(0, len(acc) - len(needle))
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise SystemExit("the server closed the connection")
            acc += chunk


def one_login(port, user, password):
    """Connects, logs in and out on a bare socket; the seconds from LOGIN to its OK."""
    r = Raw(port)
    try:
        secs, _ = r.command(f'LOGIN "{user}" "{password}"')
        r.s.sendall(b"z LOGOUT\r\n")
        while r.s.recv(4096):
            pass
    finally:
        r.s.close()
    return secs


def logins(port, user, password, clients, seconds):
    """`clients` threads, each connecting, logging in and out again and again for `seconds`
    (as imaptest's stress mode does with a login per session). Returns the logins done and
    the mean wall time per login (elapsed / logins: the figure that sets the throughput)."""
    import threading
    deadline = time.perf_counter() + seconds
    counts, latencies, errors = [0] * clients, [[] for _ in range(clients)], []

    def loop(i):
        try:
            while time.perf_counter() < deadline:
                latencies[i].append(one_login(port, user, password))
                counts[i] += 1
        except BaseException as e:  # SystemExit from Raw included: report, do not hang
            errors.append(repr(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    done = sum(counts)
    if errors or not done:
        sys.exit(f"logins: {done} done, errors: {errors[:3]}")
    every = sorted(x for l in latencies for x in l)
    return {"logins": done, "elapsed": elapsed, "per_login": elapsed / done,
            "login_rtt_median": every[len(every) // 2], "logins_per_s": done / elapsed}


def client_waits():
    """This process's voluntary context switches so far: how often it waited (for data)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def fetch_lean(port, user, password):
    """UID FETCH 1:* (BODY.PEEK[]) of INBOX on a bare socket, timed from the command to its
    OK. It reads the answer into one buffer and steps over each literal without copying or
    parsing it, so it needs a fraction of the CPU imaplib does: the server, not the client,
    sets the pace. Counts the BODY[] literals and their bytes (checked like `fetch`'s), and
    how often the client waited for data."""
    c = Raw(port)
    c.command(f'LOGIN "{user}" "{password}"')
    _, data = c.command("SELECT INBOX")
    exists = int(re.search(rb"\* (\d+) EXISTS", data).group(1))
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    pending = bytes(c.buf)
    buf[: len(pending)] = pending
    start, end = 0, len(pending)
    skip = total = count = 0
    waits0 = client_waits()
    t0 = time.perf_counter()
    c.s.sendall(b"f1 UID FETCH 1:* (BODY.PEEK[])\r\n")
    while True:
        if skip:
            if end - start >= skip:
                start += skip
                skip = 0
                continue
            skip -= end - start
            start = end = 0
        else:
            eol = buf.find(b"\r\n", start, end)
            if eol >= 0:
                line = bytes(view[start:eol])
                start = eol + 2
                if line.endswith(b"}") and b"{" in line:
                    n = int(line[line.rindex(b"{") + 1:-1])
                    if b"BODY[]" in line.upper():
                        total += n
                        count += 1
                    skip = n
                elif line.startswith(b"f1 "):
                    secs = time.perf_counter() - t0
                    if line.split(b" ")[1:2] != [b"OK"]:
                        sys.exit(f"UID FETCH: {line!r}")
                    break
                continue
            # An incomplete line: keep it at the front and read more.
            rest = bytes(view[start:end])
            buf[: len(rest)] = rest
            start, end = 0, len(rest)
        n = c.s.recv_into(view[end:])
        if not n:
            sys.exit("the server closed the connection")
        end += n
    waits = client_waits() - waits0
    c.s.close()
    print(json.dumps({"seconds": secs, "bytes": total, "messages": count, "exists": exists,
                      "client_waits": waits}))


def big(port, user, password):
    c = Raw(port)
    c.command(f'LOGIN "{user}" "{password}"')
    select_s, data = c.command("SELECT INBOX")
    exists = int(re.search(rb"\* (\d+) EXISTS", data).group(1))
    flags_s, data = c.command("UID FETCH 1:* (UID FLAGS)")
    lines = data.count(b" FETCH (")
    c.command("LOGOUT")
    print(json.dumps({"select_s": select_s, "flags_s": flags_s, "exists": exists,
                      "fetch_lines": lines}))


# ---------------------------------------------------------------------------------------------
# The summary.

def report(path):
    rows = {}
    with open(path) as f:
        for line in f:
            what, server, _round, value = line.rstrip("\n").split("\t")[:4]
            rows.setdefault(what, {}).setdefault(server, []).append(float(value))
    # (label, the target)
    labels = {
        "mbsync": ("full mbsync, every folder (s)", "ratio <= 1"),
        "mbsync_cpu": ("  server CPU during it (s)", None),
        "fetch": ("UID FETCH 1:* (BODY.PEEK[]) of INBOX (s)", "ratio <= 1"),
        "fetch_cpu": ("  server CPU during that session (s)", None),
        "lean": ("the same, lean socket client (s)", "ratio <= 1"),
        "lean_cpu": ("  server CPU during that session (s)", None),
        "lean_waits": ("  times the client waited for data", None),
        "logins": ("time per login, 10 clients looping (s)", "ratio <= 1"),
        "login_rtt": ("  median LOGIN round trip (s)", None),
        "logins_nocache": ("  the same, logins.remember = 0s (s)", None),
        "big_select": ("SELECT INBOX, big folder (s)", "< 1 s"),
        "big_flags": ("UID FETCH 1:* (UID FLAGS), big folder (s)", "< 1 s"),
    }
    print()
    print(f"{'measurement':42} {'mailjournal':>11} {'dovecot':>9} {'mj/dv':>6}  target")
    details = []
    for what, (label, target) in labels.items():
        if what not in rows:
            continue
        mj = rows[what].get("mailjournal", [])
        dv = rows[what].get("dovecot", [])
        m = statistics.median(mj) if mj else float("nan")
        d = statistics.median(dv) if dv else float("nan")
        ratio = m / d if mj and dv and d > 0 else float("nan")
        if target is None:
            verdict = ""
        else:
            met = ratio <= 1 if target.startswith("ratio") else m < 1
            verdict = f"{target}: {'met' if met else 'MISSED'}"
        digits = 0 if what.endswith("_waits") else 4
        print(f"{label:42} {m:11.{digits}f} {d:9.{digits}f} {ratio:6.2f}  {verdict}")
        details.append(f"  {label.strip()}: mailjournal "
                       + " ".join(f"{v:.{digits}f}" for v in mj)
                       + "; dovecot " + " ".join(f"{v:.{digits}f}" for v in dv))
    print("(medians of the rounds; mj/dv below 1: mailjournal took less time than Dovecot)")
    print("every round:")
    print("\n".join(details))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "generate":
        generate(args[0], int(args[1]), args[2], int(args[3]))
    elif cmd == "mirror":
        mirror(*args)
    elif cmd == "count-maildirs":
        print(json.dumps(maildir_counts(args[0]), sort_keys=True))
    elif cmd == "check-ingest":
        check_ingest(args[0], int(args[1]))
    elif cmd == "check-mbsync":
        check_mbsync(args[0], args[1])
    elif cmd == "check-fetch":
        check_fetch(args[0], args[1])
    elif cmd == "check-big":
        check_big(args[0], int(args[1]))
    elif cmd == "fetch":
        fetch(int(args[0]), args[1], args[2])
    elif cmd == "fetch-lean":
        fetch_lean(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif cmd == "logins":
        print(json.dumps(logins(int(args[0]), args[1], args[2], int(args[3]), float(args[4]))))
    elif cmd == "big":
        big(int(args[0]), args[1], args[2])
    elif cmd == "report":
        report(args[0])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
