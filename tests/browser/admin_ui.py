"""Browser test of the Prism admin UI.

Starts the real target/debug/prism-proxy (authentication on, HS256 dev
secret, a temporary namespaces directory, free ports), drives headless
Chromium through the UI with selenium and asserts on the page at every
step. A screenshot of every step is saved as target/browser/NN-step.png.

Run from the repository root, after `cargo build --workspace --bins`:

    uv run --group browser python tests/browser/admin_ui.py

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian's chromium and
chromium-driver; tooling/test installs them when missing). Nothing is
fetched from the network: the UI's assets are compiled into the proxy.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "target" / "debug"
SHOTS = ROOT / "target" / "browser"
CHROMIUM = os.environ.get("PRISM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PRISM_CHROMEDRIVER", "/usr/bin/chromedriver")
ISSUER = "https://issuer.browser-test/"
AUDIENCE = "prism"
WAIT = 30  # seconds for any condition in the page

ORDERS = """\
name: orders
description: Customer orders (browser test)
dal: keyvalue
backend:
  kind: memstore
policy:
  read: ["group:ops"]
  write: ["group:ops"]
  admin: ["group:ops"]
"""

PROFILES = """\
name: profiles
description: User profiles typed by an annotated schema (browser test)
dal: keyvalue
backend:
  kind: memstore
schema:
  proto: user_profile.proto
  message: acme.users.v1.UserProfile
  encoding: json
policy:
  read: ["group:ops"]
  write: ["group:ops"]
  admin: ["group:ops"]
  pii_read: ["group:support"]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(secret, subject, groups, ttl=3600):
    """An HS256 JWT, signed with the proxy's development secret."""
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "groups": groups,
        "iat": int(time.time()),
        "exp": int(time.time()) + ttl,
    }
    signing_input = (
        b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    )
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def wait_for(what, condition, timeout=WAIT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as e:  # the condition may not be checkable yet
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last})" if last else ""))


class Proxy:
    """The real prism-proxy with auth on, in a temporary directory."""

    def __init__(self, workdir, auth=True):
        self.dir = Path(workdir)
        self.secret = secrets.token_hex(32)
        (self.dir / "hs256.secret").write_text(self.secret)
        ns = self.dir / "namespaces"
        ns.mkdir()
        (ns / "orders.yaml").write_text(ORDERS)
        (ns / "profiles.yaml").write_text(PROFILES)
        shutil.copy(ROOT / "examples" / "profiles" / "user_profile.proto", ns / "user_profile.proto")
        self.grpc = free_port()
        self.admin = free_port()
        (self.dir / "prism.yaml").write_text(
            f"""\
listeners:
  grpc: 127.0.0.1:{self.grpc}
  admin: 127.0.0.1:{self.admin}
namespaces:
  dir: namespaces
data_dir: data
shutdown_grace_secs: 5
auth:
  enabled: {str(auth).lower()}
  jwt:
    issuer: {ISSUER}
    audience: {AUDIENCE}
    hs256_secret_file: hs256.secret
  admins: ["group:ops"]
"""
        )
        self.log = open(self.dir / "proxy.log", "wb")
        self.process = subprocess.Popen(
            [str(TARGET / "prism-proxy"), "--config", str(self.dir / "prism.yaml")],
            cwd=self.dir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.admin}"
        wait_for("the proxy to be ready", self.ready, timeout=60)

    def ready(self):
        if self.process.poll() is not None:
            raise SystemExit(f"prism-proxy exited with {self.process.returncode}:\n{self.logs()}")
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def logs(self):
        self.log.flush()
        return (self.dir / "proxy.log").read_text(errors="replace")[-4000:]

    def prismctl(self, token, *args):
        out = subprocess.run(
            [str(TARGET / "prismctl"), "--addr", f"127.0.0.1:{self.grpc}", "--token", token, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, f"prismctl {' '.join(args)} failed: {out.stderr}"
        return out.stdout

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Ui:
    """Headless Chromium on the proxy's admin UI."""

    def __init__(self, url):
        options = Options()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1360,1000", "--no-first-run", "--disable-extensions"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.url = url
        self.step = 0

    def go(self, hash_path):
        self.driver.get(f"{self.url}/{hash_path}")

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, what, condition, timeout=WAIT):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda d: condition())
        except TimeoutException:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; the page says:\n{self.text()[:3000]}")

    def wait_css(self, css, timeout=WAIT):
        def visible():
            els = [e for e in self.all(css) if e.is_displayed()]
            return els[0] if els else None
        return self.wait(f"an element {css}", visible, timeout)

    def wait_text(self, text, css="body", timeout=WAIT):
        return self.wait(f"'{text}' in {css}", lambda: any(text in e.text for e in self.all(css)), timeout)

    def text(self, css="body"):
        try:
            return self.find(css).text
        except WebDriverException:
            return ""

    def type(self, css, text):
        el = self.find(css)
        # Set the value directly (typing a long YAML key by key is slow
        # and auto-indents nothing here), then tell the page it changed.
        self.driver.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
            el, text)

    def shot(self, name):
        self.step += 1
        path = SHOTS / f"{self.step:02d}-{name}.png"
        # The whole page, not only the viewport.
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1360, min(max(1000, height + 140), 4000))
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(1360, 1000)
        print(f"  screenshot {path.relative_to(ROOT)}")

    def console_errors(self):
        try:
            return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        except WebDriverException:
            return []

    def quit(self):
        self.driver.quit()


def step_signin(proxy, ui, ops):
    print("step: sign in")
    ui.go("")
    ui.wait_css("#signin-form")
    assert "Sign in" in ui.text("main")
    # A wrong token is refused with the proxy's reason.
    ui.type("#token", mint_token("x" * 64, "mallory", ["ops"]))
    ui.find("#signin").click()
    ui.wait_text("bad token signature", "#signin-result")
    ui.shot("signin-refused")
    ui.type("#token", ops)
    ui.find("#signin").click()
    ui.wait_css("#namespaces table")
    ui.wait_text("olivia", "#signed-in-as")
    assert ui.driver.execute_script("return sessionStorage.getItem('prism.admin.token')") == ops



def step_list(proxy, ui, ops):
    print("step: list namespaces")
    rows = ui.wait("both namespaces listed", lambda: [r for r in ui.all("#namespaces tbody tr")] if len(ui.all("#namespaces tbody tr")) == 2 else None)
    names = [r.get_attribute("data-namespace") for r in rows]
    assert names == ["orders", "profiles"], names
    assert all("healthy" in r.text for r in rows), [r.text for r in rows]
    assert "memstore" in rows[0].text and "keyvalue" in rows[0].text, rows[0].text
    ui.wait("request rates measured", lambda: all("req/s" in r.text for r in ui.all("#namespaces tbody tr")))
    ui.shot("namespaces")



def step_detail(proxy, ui, ops):
    print("step: namespace detail (schema, policy, live charts)")
    # Some traffic first, so the charts have something to show.
    for i in range(6):
        proxy.prismctl(ops, "kv", "put", "--namespace", "profiles", "--id", f"user-{i}", "--key", "profile",
                       "--value", json.dumps({"user_id": f"u{i}", "email": f"u{i}@example.com", "full_name": "Jane Doe", "plan": "pro"}))
    ui.find('tr[data-namespace="profiles"] a').click()
    ui.wait_css("#schema table.fields")
    schema = ui.text("#schema")
    assert "acme.users.v1.UserProfile" in schema, schema
    assert "PII: email" in schema and "PII: ssn" in schema, schema
    pii_rows = [r.text for r in ui.all("#schema tr.pii")]
    assert any(r.startswith("email") for r in pii_rows) and not any(r.startswith("plan") for r in pii_rows), pii_rows
    policy = ui.text("#policy")
    assert "group:ops" in policy and "group:support" in policy, policy
    assert "healthy" in ui.text("#backend") and "memstore" in ui.text("#backend"), ui.text("#backend")
    assert "Served inside the proxy" in ui.text("#backend")
    assert "name: profiles" in ui.text("#config")
    ui.wait_text("explicitly", "#explain")
    ui.wait("three charts", lambda: len(ui.all("#charts figure.chart svg")) == 3)
    # Steady traffic while the page polls /metrics: the rate chart draws it.
    stop = threading.Event()

    def traffic():
        i = 0
        while not stop.wait(0.4):
            proxy.prismctl(ops, "kv", "get", "--namespace", "profiles", "--id", f"user-{i % 6}")
            i += 1

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        ui.wait("a rate line with a non-zero latest rate",
                lambda: len(ui.all("#charts figure:first-child polyline")) > 0
                and any(line.startswith("now:") and not line.startswith("now: 0 ") and "—" not in line
                        for line in ui.text("#charts figure:first-child").splitlines()))
        ui.wait("latency percentiles", lambda: "p99: —" not in ui.text("#charts") and "p99:" in ui.text("#charts"))
    finally:
        stop.set()
        worker.join()
    ui.wait_text("requests since the proxy started", "#charts")
    ui.shot("namespace-detail")



def step_create(proxy, ui, ops):
    print("step: create a namespace")
    ui.go("#/namespaces/new")
    ui.wait_css("#yaml")
    assert "name: my-namespace" in ui.find("#yaml").get_attribute("value")
    ui.type("#yaml", ORDERS.replace("name: orders", "name: inventory").replace("Customer orders", "Stock levels"))
    assert not ui.find("#apply").is_enabled(), "Apply waits for a successful validation"
    ui.find("#validate").click()
    ui.wait_text("Applying creates namespace inventory", "#result")
    ui.wait_css("#diff")
    assert "+name: inventory" in ui.text("#diff"), ui.text("#diff")
    ui.shot("create-validated")
    ui.find("#apply").click()
    ui.wait_text("Namespace inventory created", "main")
    ui.wait_css("#overview")
    assert "Stock levels" in ui.text("main")
    ui.shot("namespace-created")
    ui.go("#/namespaces")
    ui.wait("three namespaces listed", lambda: len(ui.all("#namespaces tbody tr")) == 3)



def step_validation(proxy, ui, ops):
    print("step: a validation error next to its field")
    ui.go("#/namespaces/new")
    ui.wait_css("#yaml")
    bad = ORDERS.replace("name: orders", "name: broken").replace("kind: memstore", "kind: nosuchdb")
    ui.type("#yaml", bad)
    ui.find("#validate").click()
    ui.wait_css("#validation-errors")
    error = ui.wait_css('.field-error[data-field^="backend"]')
    assert "nosuchdb" in error.text or "kind" in error.text, error.text
    # The message sits right after the line of the field it names.
    line = error.find_element(By.XPATH, "preceding-sibling::div[contains(@class,'yline')][1]")
    assert "kind: nosuchdb" in line.text and "has-error" in line.get_attribute("class"), line.text
    assert not ui.find("#apply").is_enabled()
    ui.shot("validation-error")



def step_audit(proxy, ui, ops):
    print("step: a KeyValue call appears in the live audit view")
    ui.go("#/audit?namespace=orders")
    ui.wait_text("live", "#stream-state")
    # No data call has reached orders yet.
    assert not [r for r in ui.all("#audit-rows tr") if "keyvalue.Put" in r.text]
    proxy.prismctl(ops, "kv", "put", "--namespace", "orders", "--id", "order-1001", "--key", "status", "--value", "shipped")
    row = ui.wait("the Put's audit record",
                  lambda: next((r for r in ui.all("#audit-rows tr") if "keyvalue.Put" in r.text), None))
    assert "olivia" in row.text and "orders" in row.text and "keyvalue.Put" in row.text and "OK" in row.text, row.text
    assert "hmac:" in row.text, "keys are hashed: " + row.text
    assert not ui.find("#audit-empty").is_displayed()
    ui.shot("audit-live")



def step_filters(proxy, ui, ops):
    print("step: filters")
    ui.go("#/audit?principal=nobody")
    ui.wait_text("live", "#stream-state")
    assert ui.find("#audit-empty").is_displayed() and not ui.all("#audit-rows tr")
    assert ui.find("#filter-principal").get_attribute("value") == "nobody"



def step_patterns(proxy, ui, ops):
    print("step: pattern processes")
    ui.go("#/patterns")
    ui.wait_css("#no-patterns")
    assert "served inside the proxy" in ui.text("#no-patterns")
    ui.shot("patterns")



def step_migration(proxy, ui, ops):
    print("step: move a namespace to another backend, phase by phase")
    ui.go("#/namespaces/inventory")

    # The card re-renders every 2 s: read and click inside the page, in one
    # script each, so no element goes stale between finding and using it.
    def text(css):
        return ui.driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css)

    def wait_text(needle, css):
        ui.wait(f"'{needle}' in {css}", lambda: needle in text(css))

    def click(css):
        ui.wait(f"a clickable {css}", lambda: ui.driver.execute_script(
            "const e = document.querySelector(arguments[0]); if (!e) return false; e.click(); return true;", css))

    wait_text("Not migrating", "#migration")
    click("#migration-start summary")
    ui.type("#migration-to", "{kind: sqlite}")
    # memstore reads snapshots across pages and SQLite does not: the
    # pre-flight check refuses the loss unless forced.
    click("#migration-start-button")
    wait_text("snapshot_reads", "#migration-result")
    click("#migration-force")
    click("#migration-start-button")
    wait_text("now in dual-write", "#view")
    assert "Forced past" in text("#view"), text("#view")
    click("#migration-advance")
    wait_text("now in backfill", "#view")
    wait_text("Nothing blocks the next step", "#migration")
    assert "done:" in text("#migration"), text("#migration")
    ui.shot("migration-backfilled")
    click("#migration-advance")
    wait_text("now in shadow-read", "#view")
    click("#migration-advance")
    wait_text("now in promoted", "#view")
    wait_text("memstore → sqlite", "#migration")
    ui.shot("migration-promoted")
    click("#migration-finalize")
    wait_text("the migration ended", "#view")
    wait_text("Not migrating: sqlite serves this namespace", "#migration")
    status = json.loads(proxy.prismctl(ops, "migrate", "status", "inventory", "-o", "json"))
    assert status["phase"] == "" and status["source"] == "sqlite", status


def step_delete(proxy, ui, ops):
    print("step: delete with confirmation")
    ui.go("#/namespaces/inventory")
    ui.wait_css("#overview")
    ui.find("#delete-namespace").click()
    ui.wait_css("#confirm-name")
    ui.find("#confirm-name").send_keys("wrong")
    ui.find("#confirm-delete").click()
    ui.wait_text("Type the namespace's name, inventory", "#confirm")
    ui.find("#confirm-name").clear()
    ui.find("#confirm-name").send_keys("inventory")
    ui.shot("delete-confirm")
    ui.find("#confirm-delete").click()
    ui.wait_text("Namespace inventory deleted", "main")
    ui.wait("two namespaces listed", lambda: len(ui.all("#namespaces tbody tr")) == 2)
    assert "inventory" not in ui.text("#namespaces")
    ui.shot("deleted")



def step_signout(proxy, ui, ops):
    print("step: who am I, sign out")
    ui.find("#signed-in-as").click()
    ui.wait_text("olivia", "#whoami-subject")
    assert "jwt" in ui.text("main") and "ops" in ui.text("main")
    ui.find("#signout").click()
    ui.wait_css("#signin-form")
    ui.wait_text("You signed out", "main")
    assert ui.driver.execute_script("return sessionStorage.getItem('prism.admin.token')") is None
    ui.shot("signed-out")



STEPS = [step_signin, step_list, step_detail, step_create, step_validation, step_audit,
         step_filters, step_patterns, step_migration, step_delete, step_signout]


def scenario(proxy, ui):
    ops = mint_token(proxy.secret, "olivia", ["ops"])
    # PRISM_BROWSER_STEPS=signin,list,audit runs a subset while debugging.
    only = [x for x in os.environ.get("PRISM_BROWSER_STEPS", "").split(",") if x]
    for step in STEPS:
        if not only or step.__name__[len("step_"):] in only:
            step(proxy, ui, ops)
    errors = ui.console_errors()
    # 401s while signed out are expected network errors, and so is the 412
    # of the migration start its pre-flight check refuses; anything else is
    # a bug.
    unexpected = [e for e in errors if "401" not in e["message"]
                  and not ("/migration" in e["message"] and "412" in e["message"])]
    assert not unexpected, f"errors in the browser console: {unexpected}"


def auth_off_check(workdir):
    """With authentication off the UI says so and needs no sign-in."""
    print("step: authentication disabled")
    proxy = Proxy(workdir, auth=False)
    ui = None
    try:
        ui = Ui(proxy.url)
        ui.go("")
        ui.wait_css("#namespaces table")
        ui.wait_text("Authentication is disabled on this proxy", "#banner")
        assert "authentication is disabled on this proxy" in ui.text("#user")
        ui.go("#/signin")
        ui.wait_css("#auth-off")
        assert "no token is needed" in ui.text("#auth-off"), ui.text("#auth-off")
        ui.step = 90
        ui.shot("auth-disabled")
    finally:
        if ui is not None:
            ui.quit()
        proxy.stop()


def main():
    for path in (TARGET / "prism-proxy", TARGET / "prismctl", Path(CHROMIUM), Path(CHROMEDRIVER)):
        if not path.exists():
            raise SystemExit(f"{path} is missing: build with `cargo build --workspace --bins`; "
                             "install Chromium with `apt-get install -y chromium chromium-driver`")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="prism-browser-") as workdir:
        proxy = Proxy(workdir)
        ui = None
        try:
            ui = Ui(proxy.url)
            scenario(proxy, ui)
        except BaseException:
            traceback.print_exc()
            if ui is not None:
                ui.shot("failure")
                (SHOTS / "failure.html").write_text(ui.driver.page_source)
                print("browser console:", ui.console_errors(), file=sys.stderr)
            print("proxy log (tail):\n" + proxy.logs(), file=sys.stderr)
            raise SystemExit(1)
        finally:
            if ui is not None:
                ui.quit()
            proxy.stop()
    with tempfile.TemporaryDirectory(prefix="prism-browser-") as workdir:
        auth_off_check(workdir)
    print(f"admin UI browser test passed; screenshots in {SHOTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
