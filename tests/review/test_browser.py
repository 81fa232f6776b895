"""The review page in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, which `make test`
installs with apt-get), driven by Selenium: sign in, see the highlighted entities, delete one, change one's type,
add one by selecting text and pressing a key, submit; the export holds exactly the spans the reviewer left. Markup
in the model's labels or in a note is shown as text, never parsed as HTML.

``MEDNER_REVIEW_SCREENSHOT=docs/images/review-app.png`` also writes the page's screenshot there (the README's)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from review.queue import add_notes
from review.store import Store
from tests.review.server import medner, review_server

NOTE = ("Patients with severe asthma were treated with inhaled steroids , and two needed surgery after the "
        "exacerbation ; none developed pneumonia .")
OTHERS = ["Metformin lowered glucose in type 2 diabetes .", "Tamoxifen was given after breast cancer surgery ."]


def span(text: str, words: str, label: str, score: float | None = None) -> dict:
    start = text.index(words)
    entity = {"start": start, "end": start + len(words), "label": label}
    return {**entity, "score": score} if score is not None else entity


@pytest.fixture
def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.fail("chromium and chromedriver are needed (Debian packages chromium, chromium-driver: `make test` "
                    "installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,860",
                     "--disable-dev-shm-usage"):
        options.add_argument(argument)
    session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield session
    finally:
        session.quit()


def test_a_reviewer_corrects_a_note_in_the_browser_and_the_export_has_their_spans(chrome, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    db = f"sqlite:///{tmp_path / 'review.db'}"
    store = Store(db)
    with store.session() as session:
        add_notes(session, [(f"ward:{k}", t) for k, t in enumerate(OTHERS, 2)],
                  [[span(OTHERS[0], "Metformin", "T", 0.97)], [span(OTHERS[1], "Tamoxifen", "T", 0.95)]],
                  model="ner", model_version=2, random_share=1.0)
    ann, bob = (medner("review", "add-reviewer", name, "--db", db) for name in ("ann", "bob"))
    wait = WebDriverWait(chrome, 60)  # a hang fails here, not a race: each wait is for an element to appear
    with review_server(db, "--random-share", "0") as address:
        # bob has reviewed a random note already: the progress bar, the counts and the quality chart show it
        medner_api_review(address, bob)
        with store.session() as session:  # then the model's least certain note arrives: ann gets it
            predicted = [span(NOTE, "Patients", "T", 0.31), span(NOTE, "severe asthma", "D", 0.88),
                         span(NOTE, "inhaled steroids", "D", 0.52), span(NOTE, "pneumonia", "D", 0.93)]
            add_notes(session, [("ward:1", NOTE)], [predicted], model="ner", model_version=2, random_share=0.0)
        store.close()
        chrome.get(address + "/")
        wait.until(expected_conditions.presence_of_element_located((By.ID, "token"))).send_keys(ann)
        chrome.find_element(By.ID, "sign-in").click()
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#note mark")))

        def marks(label: str) -> list[str]:
            return [m.text for m in chrome.find_elements(By.CSS_SELECTOR, f"#note mark.{label}")]

        def mark(words: str):
            return next(m for m in chrome.find_elements(By.CSS_SELECTOR, "#note mark") if m.text == words)

        assert marks("D") == ["severe asthma", "inhaled steroids", "pneumonia"] and marks("T") == ["Patients"]
        assert chrome.find_element(By.ID, "progress-text").text == "1 / 3 reviewed"
        keys = ActionChains(chrome)
        mark("Patients").click()
        keys.send_keys("x").perform()  # delete the spurious treatment
        mark("inhaled steroids").click()
        keys.send_keys("t").perform()  # a treatment, not a disease
        chrome.execute_script(  # select "surgery" as a person would with the mouse, then press T
            """const note = document.getElementById("note");
               const walker = document.createTreeWalker(note, NodeFilter.SHOW_TEXT);
               while (walker.nextNode()) {
                 const at = walker.currentNode.data.indexOf("surger");
                 if (at >= 0) { const range = document.createRange();
                   range.setStart(walker.currentNode, at + 1); range.setEnd(walker.currentNode, at + 5);
                   getSelection().removeAllRanges(); getSelection().addRange(range); break; } }""")
        keys.send_keys("t").perform()  # a partial selection grows to the whole word
        assert marks("D") == ["severe asthma", "pneumonia"] and marks("T") == ["inhaled steroids", "surgery"]
        screenshot = os.environ.get("MEDNER_REVIEW_SCREENSHOT")
        chrome.save_screenshot(screenshot or str(tmp_path / "review.png"))
        keys.send_keys(Keys.ENTER).perform()
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "progress-text"), "2 / 3 reviewed"))
        assert "ann" in chrome.find_element(By.ID, "reviewers").text
    out = tmp_path / "inbox"
    exported = json.loads(medner("review", "export", "--out", str(out), "--db", db))
    records = [json.loads(line) for line in Path(exported["file"]).read_text().splitlines()]
    by_text = {r["text"]: r["entities"] for r in records}
    assert by_text[NOTE] == [span(NOTE, "severe asthma", "D"), span(NOTE, "inhaled steroids", "T"),
                             span(NOTE, "surgery", "T"), span(NOTE, "pneumonia", "D")]
    assert exported["notes"] == 2


def test_markup_in_the_model_s_labels_and_the_note_is_shown_as_text_never_parsed(chrome, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    markup = "<img src=x onerror=window.pwned=1>"
    note = f"Fever {markup} was treated with rest ."
    db = f"sqlite:///{tmp_path / 'review.db'}"
    store = Store(db)
    with store.session() as session:  # a label from a misbehaving model server, and markup in the note itself
        add_notes(session, [("ward:1", note)], [[span(note, "Fever", markup, 0.4), span(note, "<img src=x", "T", 0.6)]],
                  model="ner", model_version=1, random_share=0.0)
    store.close()
    ann = medner("review", "add-reviewer", "ann", "--db", db)
    wait = WebDriverWait(chrome, 60)
    with review_server(db) as address:
        chrome.get(address + "/")
        wait.until(expected_conditions.presence_of_element_located((By.ID, "token"))).send_keys(ann)
        chrome.find_element(By.ID, "sign-in").click()
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#entities tbody tr")))
        rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")[:2]]
                for row in chrome.find_elements(By.CSS_SELECTOR, "#entities tbody tr")]
        assert rows == [[markup, "Fever"], ["T", "<img src=x"]]
        assert chrome.find_element(By.ID, "note").text == note
        assert len(chrome.find_elements(By.CSS_SELECTOR, "#entities i.swatch")) == 2
        assert chrome.find_elements(By.TAG_NAME, "img") == [] and chrome.execute_script("return window.pwned") is None


def medner_api_review(address: str, token: str) -> None:
    """One note reviewed through the JSON API, its entities accepted as they are."""
    import urllib.request

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(f"{address}/api/next", headers=headers)) as answer:
        note = json.load(answer)
    body = json.dumps({"revision": note["revision"], "entities": note["entities"]}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{address}/api/notes/{note['id']}", data=body, headers=headers))
