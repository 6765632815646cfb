"""The rounds of scripts/bench-memory: one gateway process per round, its memory sampled
from /proc while it is loaded, then while it is idle.

    python3 bench_memory.py WORK ROUNDS MESSAGES LOGIN_SECONDS IDLE_SECONDS NAME=BINARY...

Each round starts every binary in turn (the order alternates) on a fresh data directory and
measures, in its /proc/PID/status:
  fresh        VmRSS 3 s after it greets;
  logins peak  the highest VmRSS while 10 clients log in and out again and again for
               LOGIN_SECONDS with logins.remember = "0s" (every login an argon2 check);
  after logins VmRSS 10 s after those clients stop;
  load peak    the highest VmRSS while MESSAGES messages arrive over SMTP, then three full
               mbsync runs of every folder, then searches and FETCH ENVELOPE BODYSTRUCTURE
               of every folder;
  idle         VmRSS IDLE_SECONDS after that load.
Prints each round, then the medians per binary and the ratio of each to the first one named.
"""

import imaplib
import json
import os
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_imap  # noqa: E402

PASSWORD = "bench-memory-password"
USER = "bench"
HELPERS = os.path.dirname(os.path.abspath(__file__))


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {key} in /proc/{pid}/status")


class Peak(threading.Thread):
    """Samples VmRSS every 20 ms until stopped; keeps the highest."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.high, self.done = pid, 0, threading.Event()
        self.start()

    def run(self):
        while not self.done.is_set():
            try:
                self.high = max(self.high, status_kib(self.pid, "VmRSS"))
            except (OSError, SystemExit):
                return
            self.done.wait(0.02)

    def stop(self):
        self.done.set()
        self.join()
        return self.high


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def greets(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(64).startswith(b"* OK")
    except OSError:
        return False


def start(binary, work, name):
    """A gateway on a fresh data dir with one auditor account: (process, IMAP, SMTP port)."""
    data = os.path.join(work, "data")
    imap, smtp = free_port(), free_port()
    config = os.path.join(work, "mailjournal.toml")
    # The embedded default configuration, with every login an argon2 check.
    with open(os.path.join(HELPERS, "..", "..", "config", "mailjournal.toml")) as f:
        text = f.read()
    if '\nremember = "5m"\n' not in text:
        raise SystemExit("config/mailjournal.toml has no logins.remember = \"5m\"")
    with open(config, "w") as f:
        f.write(text.replace('\nremember = "5m"\n', '\nremember = "0s"\n'))
    env = dict(os.environ, MAILJOURNAL_DATA_DIR=data, MAILJOURNAL_LOG="warn",
               MAILJOURNAL_IMAP_LISTEN=f"127.0.0.1:{imap}", MAILJOURNAL_IMAPS_LISTEN="",
               MAILJOURNAL_SMTP_LISTEN=f"127.0.0.1:{smtp}", MAILJOURNAL_SMTPS_LISTEN="",
               MAILJOURNAL_HTTP_LISTEN="")
    log = open(os.path.join(work, "serve.log"), "w")
    proc = subprocess.Popen([binary, "--config", config, "serve"], env=env,
                            stdout=log, stderr=log)
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited before it greeted (log: {log.name})")
        if greets(imap):
            # Through the running gateway's admin socket.
            subprocess.run([binary, "--config", config, "user", "add", USER, "--role",
                            "auditor"], input=PASSWORD + "\n", text=True, env=env,
                           check=True, stdout=subprocess.DEVNULL, timeout=120)
            return proc, imap, smtp
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{name} did not greet within 30 s (log: {log.name})")


def send_all(port, msg_dir):
    files = sorted(os.listdir(msg_dir))
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as s:
        for name in files:
            with open(os.path.join(msg_dir, name), "rb") as f:
                body = f.read()
            s.sendmail("postmaster@example.com", ["journal@example.com"], body)
    return len(files)


def mbsync(work, port, round_no):
    for i in range(3):
        local = os.path.join(work, f"mbsync-{round_no}-{i}")
        os.makedirs(local)
        rc = os.path.join(local, "mbsyncrc")
        bench_imap_fill(os.path.join(HELPERS, "mbsyncrc.in"), rc,
                        PORT=port, USER=USER, PASS=PASSWORD, LOCAL=local, TLS_KEY=tls_key())
        subprocess.run(["mbsync", "-c", rc, "-a", "-q"], check=True, timeout=900,
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(local)


def bench_imap_fill(template, out, **values):
    with open(template) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    with open(out, "w") as f:
        f.write(text)


def tls_key():
    out = subprocess.run(["mbsync", "--version"], capture_output=True, text=True).stdout
    parts = (out.split()[1].split(".") + ["0", "0"])[:2]
    return "TLSType" if tuple(int(p) for p in parts) >= (1, 5) else "SSLType"


def searches(port):
    m = imaplib.IMAP4("127.0.0.1", port, timeout=600)
    m.login(USER, PASSWORD)
    _, boxes = m.list()
    for line in boxes:
        name = line.decode().rsplit(' "/" ', 1)[-1]
        typ, data = m.select(name, readonly=True)
        if typ != "OK" or int(data[0]) == 0:
            continue
        for criteria in ('TEXT "invoice"', 'FROM "example"', "SINCE 1-Jan-2020", "LARGER 10000"):
            m.search(None, criteria)
        m.fetch("1:*", "(ENVELOPE BODYSTRUCTURE)")
        m.close()
    m.logout()


def one_round(name, binary, work, msg_dir, round_no, login_seconds, idle_seconds):
    os.makedirs(work)
    proc, imap, smtp = start(binary, work, name)
    try:
        time.sleep(3)
        r = {"fresh": status_kib(proc.pid, "VmRSS")}
        peak = Peak(proc.pid)
        done = bench_imap.logins(imap, USER, PASSWORD, 10, login_seconds)
        r["logins_peak"] = peak.stop()
        r["logins_per_s"] = done["logins_per_s"]
        time.sleep(10)
        r["after_logins"] = status_kib(proc.pid, "VmRSS")
        peak = Peak(proc.pid)
        sent = send_all(smtp, msg_dir)
        mbsync(work, imap, round_no)
        searches(imap)
        r["load_peak"] = peak.stop()
        time.sleep(idle_seconds)
        r["idle"] = status_kib(proc.pid, "VmRSS")
        r["messages"] = sent
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, -15):
        raise SystemExit(f"{name} exited with {proc.returncode} (log: {work}/serve.log)")
    return r


def main():
    work, rounds, messages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    login_seconds, idle_seconds = float(sys.argv[4]), float(sys.argv[5])
    binaries = [a.split("=", 1) for a in sys.argv[6:]]
    msg_dir = os.path.join(work, "msgs")
    bench_imap.generate(msg_dir, messages, "realistic", 1)
    keys = ["fresh", "logins_peak", "after_logins", "load_peak", "idle"]
    results = {n: [] for n, _ in binaries}
    for round_no in range(1, rounds + 1):
        order = binaries if round_no % 2 else list(reversed(binaries))
        for name, binary in order:
            r = one_round(name, binary, os.path.join(work, f"{name}-{round_no}"), msg_dir,
                          round_no, login_seconds, idle_seconds)
            results[name].append(r)
            print(f"round {round_no}: {name}: " + ", ".join(
                f"{k} {r[k] / 1024:.1f} MiB" for k in keys)
                + f", {r['logins_per_s']:.1f} logins/s", file=sys.stderr, flush=True)
    base = binaries[0][0]
    print()
    print(f"== bench-memory: {messages} messages, {rounds} round(s), {os.cpu_count()} cores;"
          f" VmRSS in MiB, medians")
    print(f"{'':14}" + "".join(f"{n:>12}" for n, _ in binaries)
          + "".join(f"{n + '/' + base:>18}" for n, _ in binaries[1:]))
    for k in keys + ["logins_per_s"]:
        meds = [statistics.median(r[k] for r in results[n]) for n, _ in binaries]
        scale = 1 if k == "logins_per_s" else 1024
        print(f"{k:14}" + "".join(f"{m / scale:12.1f}" for m in meds)
              + "".join(f"{m / meds[0]:18.2f}" for m in meds[1:]))
    print("every round: " + json.dumps(results))


if __name__ == "__main__":
    main()
