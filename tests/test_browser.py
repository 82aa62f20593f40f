"""The published page in a real browser: headless Chromium, driven by selenium, opens leaderboards/index.html,
sorts a table by clicking a column, follows every report link, checks that every figure loads, and that a board
as wide as the published one reads in a 1400 px window."""

import shutil
from pathlib import Path

import pytest
from fakes import make_finished_run

from benchmark.diagnostics import FLAGS
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
    assert sorted(src for src, _ in images) == [f"figures/mnist/quick/{n}.png"
                                                         for n in ("detection", "eps", "noise", "tradeoff")]
    assert all(loaded for _, loaded in images), images


#: the published board's plugins, and two flags on one row as the published MNIST board has them
MODELS = ("vdp-unscented", "stf-bnn", "vdp", "ensemble", "laplace", "swag", "kap-2d", "bbb", "ibp-bnn", "vd", "kap",
          "mc-dropout", "baseline", "endp", "snn", "snn-noise")
TWO_FLAGS = "short-attack-not-converged;blackbox-beats-whitebox"


@pytest.fixture(scope="module")
def wide_board(tmp_path_factory) -> Path:
    """A board as wide as the published one: 16 models, the robust accuracy at three eps with intervals, and
    flagged rows, some with two flags."""
    tmp_path = tmp_path_factory.mktemp("wide-board")
    for i, model in enumerate(MODELS):
        flags = TWO_FLAGS if i % 3 == 0 else "shattered-gradients" if i % 4 == 0 else ""
        make_finished_run(tmp_path, model, robust=i / 100, robust_auc=0.3 + i / 100, flags=flags)
    publish(tmp_path, "mnist")
    return tmp_path / "leaderboards" / "index.html"


def test_a_wide_board_reads_in_a_1400_px_window_without_scrolling_sideways(browser, wide_board):
    browser.set_window_size(1400, 900)
    browser.get(wide_board.as_uri())
    width = browser.execute_script("return window.innerWidth")
    assert width == 1400
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    shown = browser.execute_script(
        "return [...document.querySelectorAll('thead th')].filter(th => th.offsetWidth > 0).map(th => th.textContent)")
    assert {"robust_acc@0.025", "robust_acc@0.05", "robust_acc", "flags"} <= set(shown)
    assert "attacks" not in shown and "date" not in shown  # on demand only
    intervals = browser.execute_script(
        "return [...document.querySelectorAll('.interval')].map(e => [e.textContent, e.getClientRects().length])")
    assert intervals and all(text.startswith("[") and lines == 1 for text, lines in intervals), intervals[:3]


def test_every_flag_shows_whole_as_a_badge_with_its_definition_on_hover(browser, wide_board):
    browser.set_window_size(1400, 900)
    browser.get(wide_board.as_uri())
    badges = browser.execute_script(
        "return [...document.querySelectorAll('.badge')].map(b => ({text: b.textContent, title: b.title, "
        "clipped: b.scrollWidth > b.clientWidth, right: b.getBoundingClientRect().right}))")
    fired = [flag for i in range(len(MODELS)) for flag in
             (TWO_FLAGS.split(";") if i % 3 == 0 else ["shattered-gradients"] if i % 4 == 0 else [])]
    assert sorted(b["text"] for b in badges) == sorted(fired)
    meanings = {flag.name: flag.meaning for flag in FLAGS}
    for badge in badges:
        assert badge["title"] == meanings[badge["text"]]
        assert not badge["clipped"] and badge["right"] <= 1400, badge


def test_show_all_columns_shows_the_rest_and_the_table_scrolls_not_the_page(browser, wide_board):
    from selenium.webdriver.common.by import By

    browser.set_window_size(1400, 900)
    browser.get(wide_board.as_uri())
    ranked = browser.find_elements(By.TAG_NAME, "table")[0]
    attacks = next(th for th in ranked.find_elements(By.CSS_SELECTOR, "thead th")
                   if th.get_attribute("textContent") == "attacks")
    assert attacks.get_property("offsetWidth") == 0  # a collapsed column has no width
    ranked.find_element(By.CSS_SELECTOR, "caption input").click()
    assert attacks.get_property("offsetWidth") > 0 and attacks.text == "attacks"
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1400
