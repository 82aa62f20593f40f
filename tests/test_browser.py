"""The published page in a real browser: headless Chromium, driven by selenium, opens leaderboards/index.html,
sorts a table by clicking a column, follows every report link and checks that every figure loads."""

import shutil
from pathlib import Path

import pytest
from fakes import make_finished_run

from benchmark.leaderboard import publish

BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(name)), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    BROWSER is None or DRIVER is None,
    reason="no headless browser here: install Debian's chromium and chromium-driver (.ci/run does) to run it")


@pytest.fixture(scope="module")
def browser():
    """One browser for the module: starting Chromium costs seconds, and no test changes its settings."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--allow-file-access-from-files"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> Path:
    """One published board for the module (rendering its figures costs seconds); the tests only read it."""
    tmp_path = tmp_path_factory.mktemp("board")
    for model, auc, robust in (("baseline", 0.30, 0.0), ("endp", 0.50, 0.1), ("vdp", 0.40, 0.05)):
        make_finished_run(tmp_path, model, robust=robust, robust_auc=auc)
    make_finished_run(tmp_path, "snn", robust=0.2, robust_auc=0.6, flags="shattered-gradients")
    publish(tmp_path, "mnist")
    return tmp_path / "leaderboards" / "index.html"


def _column(driver, table, name: str) -> list[str]:
    from selenium.webdriver.common.by import By

    headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    i = headers.index(name)
    return [row.find_elements(By.TAG_NAME, "td")[i].text for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]


def test_clicking_a_column_sorts_the_table(browser, board):
    from selenium.webdriver.common.by import By

    browser.get(board.as_uri())
    ranked = browser.find_elements(By.TAG_NAME, "table")[0]
    assert _column(browser, ranked, "model") == ["endp", "vdp", "baseline"]  # the page's own rank: robust_auc
    header = next(th for th in ranked.find_elements(By.CSS_SELECTOR, "thead th") if th.text == "robust_auc")
    header.click()
    assert _column(browser, ranked, "robust_auc") == ["0.3000", "0.4000", "0.5000"]
    header.click()
    assert _column(browser, ranked, "robust_auc") == ["0.5000", "0.4000", "0.3000"]
    flagged = browser.find_elements(By.TAG_NAME, "table")[1]  # ranked apart
    assert _column(browser, flagged, "model") == ["snn"]


def test_every_report_link_opens_that_models_report(browser, board):
    from selenium.webdriver.common.by import By

    browser.get(board.as_uri())
    links = {a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "td a")}
    assert sorted(links) == ["baseline", "endp", "snn", "vdp"]
    for model, href in links.items():
        browser.get(href)
        assert model in browser.title, href
        assert browser.find_elements(By.TAG_NAME, "h1"), href


def test_every_figure_loads(browser, board):
    browser.get(board.as_uri())
    images = browser.execute_script(
        "return [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
    assert sorted(src for src, _ in images) == [f"figures/mnist/quick/{n}.png" for n in ("eps", "noise", "tradeoff")]
    assert all(loaded for _, loaded in images), images
