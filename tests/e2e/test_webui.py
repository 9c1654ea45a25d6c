"""The web chat page at `/`, driven in a real headless Chromium through Playwright.

The browser is Debian's `chromium` (/usr/bin/chromium, or HEARTH_CHROMIUM), never one that
Playwright downloads; scripts/e2e installs the package with apt when it can. Without it,
or without the `playwright` package, every test here is skipped with the reason.
"""

import json
import os
import re

import pytest

from conftest import MODEL, REPO, Server, wait_for

CHROMIUM = os.environ.get("HEARTH_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "target" / "e2e-artifacts"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"web UI tests skipped: no Chromium at {CHROMIUM} (install Debian's "
                    "`chromium` package, which scripts/e2e does with apt when it can, or point "
                    "HEARTH_CHROMIUM at a Chromium binary)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.skip(f"web UI tests skipped: the playwright package is missing ({e}); "
                    "scripts/e2e installs it from tests/e2e/requirements.txt")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        except Exception as e:  # a browser that is there but cannot start is a failure
            pytest.fail(f"cannot launch {CHROMIUM}: {e}", pytrace=False)
        yield b
        b.close()


class Page:
    """A fresh browser context (its own localStorage) on one server's page, collecting
    dialogs, console errors and page errors, which every test expects to be none."""

    def __init__(self, browser, server):
        self.server = server
        self.context = browser.new_context(viewport={"width": 1100, "height": 760})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.dialogs, self.errors = [], []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("console", self._console)
        self.response = self.page.goto(server.url + "/")

    def _console(self, m):
        # HTTP errors the tests provoke (401 without a key, 400 for a bad setting) are
        # logged as "Failed to load resource"; the tests check those answers themselves.
        # Anything else, a policy violation above all, is an error.
        if m.type == "error" and not m.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {m.text}")

    def _dialog(self, d):
        self.dialogs.append(d.message)
        d.dismiss()

    def close(self):
        self.context.close()

    def messages(self):
        return self.page.locator("#messages .msg")

    def answers(self):
        return self.page.locator("#messages .msg.assistant")

    def settings(self, **values):
        if self.page.locator("#settings").is_hidden():
            self.page.click("#settings-toggle")
        for k, v in values.items():
            self.page.fill(f"#{k}", str(v))

    def send(self, text):
        n = self.answers().count()
        self.page.fill("#prompt", text)
        self.page.press("#prompt", "Enter")
        self.page.wait_for_function("n => document.querySelectorAll('#messages .msg.assistant').length > n", arg=n)
        return self.answers().nth(n)

    def wait_done(self, answer):
        """Until the answer's stream has ended."""
        from playwright.sync_api import expect
        expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=TIMEOUT_MS)

    def stored(self):
        return self.page.evaluate("() => JSON.parse(localStorage.getItem('hearth.conversations'))")


@pytest.fixture
def page(browser, server):
    p = Page(browser, server)
    yield p
    errors, dialogs = p.errors, p.dialogs
    p.close()
    assert not dialogs, f"the page opened dialogs: {dialogs}"
    assert not errors, "\n".join(errors)


def test_page_and_plain_text_by_accept(server):
    status, body = server.request("GET", "/", headers={"Accept": "text/html"})
    assert status == 200 and body.lstrip().lower().startswith("<!doctype html>")
    status, body = server.request("GET", "/")
    assert status == 200 and body == "Hearth is running"


def test_page_loads_with_a_strict_policy_and_lists_the_model(page):
    r = page.response
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    for part in ("default-src 'self'", "connect-src 'self'", "script-src 'sha256-"):
        assert part in csp, csp
    assert "unsafe-eval" not in csp
    options = page.page.locator("#model option")
    options.first.wait_for(state="attached")
    ids = options.evaluate_all("os => os.map(o => o.value)")
    assert MODEL in ids, ids


def test_streamed_answer(page, oai):
    pg = page.page
    pg.locator("#model option").first.wait_for(state="attached")
    page.settings(temperature=0, max_tokens=40, top_p=1)
    # Count the distinct texts the answer shows while it streams.
    pg.evaluate("""() => {
        window.__seen = new Set();
        new MutationObserver(() => {
            const a = document.querySelector('#messages .msg.assistant .body');
            if (a) window.__seen.add(a.textContent);
        }).observe(document.querySelector('#messages'), {subtree: true, childList: true, characterData: true});
    }""")
    question = "Tell me about the sea in three sentences."
    answer = page.send(question)
    # The text appears while the answer is still being written, then the stream ends.
    pg.wait_for_function("() => { const a = document.querySelector('#messages .msg.assistant .body');"
                         " return a && a.textContent.trim().length > 0; }")
    page.wait_done(answer)
    text = answer.locator(".body").inner_text()
    assert text.strip()
    seen = pg.evaluate("() => [...window.__seen].filter(t => t.trim()).length")
    assert seen >= 2, "the answer did not appear in steps"
    stats = answer.locator(".stats").inner_text()
    assert "first token" in stats and "tokens/s" in stats and "tokens" in stats, stats
    assert answer.locator(".role").inner_text() == MODEL

    # What the page stored is what the API answers to the same greedy request.
    conv = page.stored()[0]
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant"]
    assert conv["messages"][0]["content"] == question
    want = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": question}],
        temperature=0, top_p=1, max_tokens=40).choices[0].message.content
    assert conv["messages"][1]["content"] == want

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "webui.png"
    pg.screenshot(path=str(shot))
    assert shot.stat().st_size > 1000


def test_conversations_kept_listed_and_deleted(page):
    pg = page.page
    pg.locator("#model option").first.wait_for(state="attached")
    page.settings(temperature=0, max_tokens=8)
    page.wait_done(page.send("Say hello."))
    page.wait_done(page.send("Say goodbye."))
    pg.click("#new-chat")
    assert page.messages().count() == 0
    page.wait_done(page.send("Name a fruit."))
    titles = pg.locator("#conversations .open").all_inner_texts()
    assert titles == ["Name a fruit.", "Say hello."], titles

    # A reload keeps them, and the settings.
    pg.reload()
    assert pg.locator("#conversations .open").count() == 2
    assert pg.input_value("#max_tokens") == "8"
    pg.locator("#conversations .open", has_text="Say hello.").click()
    assert page.messages().count() == 4
    assert page.messages().nth(2).inner_text().endswith("Say goodbye.")
    pg.get_by_label("Delete Say hello.").click()
    assert pg.locator("#conversations .open").all_inner_texts() == ["Name a fruit."]
    assert page.messages().count() == 0
    assert [c["title"] for c in page.stored()] == ["Name a fruit."]


def test_stop_cancels_the_request_on_the_server(page, server):
    pg = page.page
    pg.locator("#model option").first.wait_for(state="attached")
    page.settings(temperature=0.8, max_tokens=2000)
    before = server.metrics()
    answer = page.send("Write a very long story about a dragon who learns to cook, "
                       "with many chapters.")
    pg.wait_for_function("() => { const a = document.querySelectorAll('#messages .msg.assistant .body');"
                         " return a.length && a[a.length - 1].textContent.length > 20; }")
    pg.click("#stop")
    page.wait_done(answer)
    assert "stopped" in answer.locator(".stats").inner_text()
    assert pg.is_enabled("#send") and pg.is_disabled("#stop")

    def settled():
        m = server.metrics()
        return m if (m["hearth_requests_running"] == 0
                     and m["hearth_requests_cancelled_total"] > before["hearth_requests_cancelled_total"]) else None
    after = wait_for(settled, timeout=30)
    assert after, f"the server did not cancel the stopped request: {server.metrics()}"
    made = after["hearth_generation_tokens_total"] - before["hearth_generation_tokens_total"]
    assert 0 < made < 2000, made
    # The cut answer is kept, marked, and the page goes on working.
    assert page.stored()[0]["messages"][1]["stats"].endswith("stopped")
    page.settings(max_tokens=8)
    page.wait_done(page.send("Say hi."))


def test_model_picker_switches_models(page):
    """Each model picked (the served one and up to two more, when the server lists more)
    is the one the request names; the served model answers. (Embedding models are not
    listed: test_model_picker_lists_only_chat_models.)"""
    pg = page.page
    pg.locator("#model option").first.wait_for(state="attached")
    ids = pg.locator("#model option").evaluate_all("os => os.map(o => o.value)")
    assert MODEL in ids, ids
    page.settings(temperature=0, max_tokens=8)
    picks = [MODEL] + [i for i in ids if i != MODEL][:2]
    for model in picks:
        pg.select_option("#model", model)
        with pg.expect_request(lambda r: r.url.endswith("/v1/chat/completions")) as req:
            answer = page.send("Say hi.")
        assert req.value.post_data_json["model"] == model
        page.wait_done(answer)
        assert answer.locator(".role").inner_text() == model
        errors = answer.locator(".error")
        if model == MODEL:
            assert not errors.count(), errors.inner_text()
            assert answer.locator(".body").inner_text().strip()
        else:
            assert errors.count() or answer.locator(".body").inner_text().strip(), model
    # The choice is remembered across a reload.
    pg.reload()
    pg.locator("#model option").first.wait_for(state="attached")
    assert pg.input_value("#model") == picks[-1]


def test_api_errors_are_shown_inline(page):
    pg = page.page
    pg.locator("#model option").first.wait_for(state="attached")
    page.settings(temperature=5)  # out of range: the server's 400 names the field
    answer = page.send("Hi")
    page.wait_done(answer)
    err = answer.locator(".error").inner_text()
    assert "temperature" in err, err
    assert not err.lstrip().startswith("{"), f"the raw JSON, not its message: {err}"


HOSTILE = (
    "<img src=x onerror=alert(1)> and <script>alert(2)</script>\n"
    "<b>not bold</b> [click](javascript:alert(3)) [fine](https://example.com/a?b=1)\n"
    "[js](javascript:alert%283%29) [data](data:text/html,hi) [rel](/v1/models)\n"
    "**bold** and *italic* and `<i>code</i>`\n"
    "# Title\n"
    "- one <iframe src=x></iframe>\n"
    "- two\n"
    "\n"
    "```html\n<script>alert(4)</script>\n```\n"
)


def test_model_output_is_never_markup(page):
    pg = page.page
    pg.evaluate("text => { hearth.showMessage('assistant', text); }", HOSTILE)
    box = pg.locator("#messages .msg.assistant").last
    md = box.locator(".md")
    for tag in ("img", "script", "iframe", "b", "i"):
        assert md.locator(tag).count() == 0, tag
    text = md.inner_text()
    for literal in ("<img src=x onerror=alert(1)>", "<script>alert(2)</script>", "<b>not bold</b>",
                    "[click](javascript:alert(3))", "<iframe src=x></iframe>",
                    "[js](javascript:alert%283%29)", "[data](data:text/html,hi)", "[rel](/v1/models)"):
        assert literal in text, literal
    links = md.locator("a")
    assert links.count() == 1
    assert links.first.get_attribute("href") == "https://example.com/a?b=1"
    assert links.first.inner_text() == "fine"
    assert md.locator("strong").inner_text() == "bold"
    assert md.locator("em").inner_text() == "italic"
    assert md.locator("p code").inner_text() == "<i>code</i>"
    assert md.locator("h1").inner_text() == "Title"
    assert md.locator("ul > li").count() == 2
    assert md.locator("pre code").inner_text() == "<script>alert(4)</script>"
    # An answer still streaming has an open fence: the rest is code, as text.
    frag = pg.evaluate("() => { const d = hearth.renderMarkdown('x\\n```\\n<b>y'); "
                       "return [d.querySelectorAll('b').length, d.querySelector('pre code').textContent]; }")
    assert frag == [0, "<b>y"]
    pg.wait_for_timeout(200)  # an onerror handler, were there one, would have run by now


def test_api_key_asked_for_kept_and_sent(browser):
    s = Server(["--parallel", "2"], api_key="k")
    p = Page(browser, s)
    try:
        pg = p.page
        assert p.response.status == 200  # the page itself needs no key
        pg.locator("#key-panel").wait_for(state="visible")
        pg.fill("#api-key", "wrong")
        pg.click("#key-form button[type=submit]")
        pg.locator("#key-note", has_text="refused").wait_for()
        assert pg.locator("#model option").count() == 0
        pg.fill("#api-key", "k")
        pg.click("#key-form button[type=submit]")
        pg.locator("#model option").first.wait_for(state="attached")
        assert pg.locator("#key-panel").is_hidden()
        p.settings(temperature=0, max_tokens=8)
        answer = p.send("Say hi.")
        p.wait_done(answer)
        assert answer.locator(".body").inner_text().strip()
        assert not answer.locator(".error").count()
        # Kept for the next visit: a reload lists the model without asking again.
        assert pg.evaluate("() => JSON.parse(localStorage.getItem('hearth.apiKey'))") == "k"
        pg.reload()
        pg.locator("#model option").first.wait_for(state="attached")
        assert pg.locator("#key-panel").is_hidden()
        # The 401s the page saw while it had no key are console errors; nothing else is.
        others = [e for e in p.errors if "401" not in e]
        assert not others, others
        assert not p.dialogs, p.dialogs
    finally:
        p.close()
        s.stop()


def test_model_picker_lists_only_chat_models(browser):
    """An embedding model (all-minilm, a BERT file) is served and listed by /v1/models with
    its capabilities, but the page's picker offers only the models that can chat."""
    s = Server(["-m", MODEL, "-m", "all-minilm", "--parallel", "2"])
    try:
        status, body = s.request("GET", "/v1/models")
        caps = {m["id"]: m["capabilities"] for m in json.loads(body)["data"]}
        assert caps["all-minilm-l6-v2"] == ["embedding"], caps
        assert "completion" in caps[MODEL], caps
        chat_models = sorted(i for i, c in caps.items() if "completion" in c)
        p = Page(browser, s)
        try:
            p.page.locator("#model option").first.wait_for(state="attached")
            ids = p.page.locator("#model option").evaluate_all("os => os.map(o => o.value)")
            assert sorted(ids) == chat_models, (ids, caps)
            assert "all-minilm-l6-v2" not in ids
            assert not p.errors, p.errors
        finally:
            p.close()
    finally:
        s.stop()
