"""The dashboard in headless Chromium (driven by tests/e2e/dashboard.rs).

Signs in, watches the Quarantines page while a signal arrives and is approved (the row and the
approver appear without a reload), checks that countdowns move, visits every page, runs axe-core
on each (no serious or critical violation, light and dark), fails on any console error, and keeps
a screenshot of each page in $SCREENSHOTS.
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.support.ui import WebDriverWait

DASH = os.environ["DASH_URL"]
GATE = os.environ["GATE_URL"]
TOKEN = os.environ["DASH_TOKEN"]
SHOTS = os.environ["SCREENSHOTS"]
NS = os.environ["NAMESPACE"]
AXE = open(os.environ["AXE_JS"], encoding="utf-8").read()
# The live-update fallback polls every 30 s; the events stream is faster. Allow both plus margin.
LIVE_WAIT = 45
# A live update replaces <main>: an element found just before it is stale, so look again.
LIVE_REPLACED = (StaleElementReferenceException,)
problems = []


def check(condition, message):
    if not condition:
        problems.append(message)
        print("FAIL:", message)


def console_errors(driver, page):
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            check(False, f"{page}: console error: {entry.get('message')}")


def axe(driver, page):
    driver.execute_script(AXE)
    result = driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(function (r) { done(r.violations); })"
        ".catch(function (e) { done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]); });"
    )
    serious = [v for v in result if v.get("impact") in ("serious", "critical")]
    for v in serious:
        targets = [n.get("target") for n in v.get("nodes", [])][:5]
        check(False, f"{page}: axe {v['impact']} {v['id']}: {v.get('help')} at {targets}")
    with open(os.path.join(SHOTS, f"{page}.axe.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"{page}: axe found {len(result)} violations, {len(serious)} serious or critical")


def shot(driver, page):
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(max(height + 120, 700), 4000))
    driver.save_screenshot(os.path.join(SHOTS, f"{page}.png"))
    driver.set_window_size(width, 900)


def visit(driver, url, page, wanted):
    driver.get(url)
    WebDriverWait(driver, 20, ignored_exceptions=LIVE_REPLACED).until(lambda d: d.find_elements(By.CSS_SELECTOR, wanted))
    console_errors(driver, page)
    axe(driver, page)
    console_errors(driver, page)
    shot(driver, page)


def kubectl(*args):
    out = subprocess.run(
        [os.environ["KUBECTL"], "--kubeconfig", os.environ["KUBECONFIG"], *args],
        capture_output=True, text=True, check=True,
    )
    return out.stdout


def main():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(60)
    try:
        run(driver)
    finally:
        driver.quit()
    if problems:
        print(f"{len(problems)} problem(s)")
        sys.exit(1)
    print("all browser checks passed")


def run(driver):
    # Sign in through the form (the page redirected to it).
    driver.get(f"{DASH}/dashboard/quarantines")
    WebDriverWait(driver, 20, ignored_exceptions=LIVE_REPLACED).until(lambda d: d.find_elements(By.ID, "token"))
    check("/dashboard/login" in driver.current_url, f"not sent to sign-in: {driver.current_url}")
    axe(driver, "login")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    WebDriverWait(driver, 20, ignored_exceptions=LIVE_REPLACED).until(lambda d: d.find_elements(By.ID, "quarantines"))
    check(not driver.find_elements(By.CSS_SELECTOR, "tr[data-quarantine]"), "a quarantine before any signal")
    WebDriverWait(driver, 20, ignored_exceptions=LIVE_REPLACED).until(
        lambda d: d.find_element(By.ID, "live-status").text.strip() == "Live")
    driver.execute_script("window.__notReloaded = true;")

    # A signal arrives: the row appears without a reload.
    request = urllib.request.Request(
        os.environ["EVENTS_URL"], data=open(os.environ["EVENT_FILE"], "rb").read(),
        headers={"x-api-key": os.environ["EVENTS_KEY"], "content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        check(answer.status == 200, f"/events answered {answer.status}")
    WebDriverWait(driver, LIVE_WAIT, ignored_exceptions=LIVE_REPLACED).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-quarantine] a"))
    check(driver.execute_script("return window.__notReloaded === true;"), "the page was reloaded")
    name = driver.find_element(By.CSS_SELECTOR, "tr[data-quarantine]").get_attribute("data-quarantine").split("/")[1]
    WebDriverWait(driver, LIVE_WAIT, ignored_exceptions=LIVE_REPLACED).until(
        lambda d: "PendingApproval" in d.find_element(By.CSS_SELECTOR, "tr[data-quarantine]").text)

    # The countdown moves.
    first = driver.find_element(By.CSS_SELECTOR, "tr[data-quarantine] time[data-countdown]").text
    time.sleep(2.5)
    second = driver.find_element(By.CSS_SELECTOR, "tr[data-quarantine] time[data-countdown]").text
    check(first != second and second.startswith("in "), f"countdown did not move: {first!r} -> {second!r}")

    # Approved with kubectl: the approver appears, still without a reload.
    kubectl("annotate", "-n", NS, f"quarantine/{name}", "autoguardrails.io/approve=alice: ticket OPS-9")
    WebDriverWait(driver, LIVE_WAIT, ignored_exceptions=LIVE_REPLACED).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-quarantine] td.approver").text.strip() == "alice (unverified)")
    WebDriverWait(driver, LIVE_WAIT, ignored_exceptions=LIVE_REPLACED).until(
        lambda d: "Active" in d.find_element(By.CSS_SELECTOR, "tr[data-quarantine]").text)
    check(driver.execute_script("return window.__notReloaded === true;"), "the page was reloaded")
    console_errors(driver, "quarantines")
    axe(driver, "quarantines")
    shot(driver, "quarantines")

    # Dark, and a phone.
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                           {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    axe(driver, "quarantines-dark")
    shot(driver, "quarantines-dark")
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                           {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
    driver.set_window_size(390, 844)
    driver.save_screenshot(os.path.join(SHOTS, "quarantines-phone.png"))
    driver.set_window_size(1280, 900)

    # The quarantine's page: approver, commands, history, Events; keyboard reaches the copy button.
    visit(driver, f"{DASH}/dashboard/quarantines/{NS}/{name}", "quarantine", "#commands")
    check("alice" in driver.find_element(By.CSS_SELECTOR, "p.approver").text, "approver not shown")
    check(bool(driver.find_elements(By.CSS_SELECTOR, "ol.timeline li")), "no history timeline")
    check("kubectl annotate quarantine" in driver.find_element(By.CSS_SELECTOR, "pre.cmd").text, "no command")
    check(driver.find_element(By.CSS_SELECTOR, "button[data-copy]").is_displayed(), "copy button hidden")

    visit(driver, f"{DASH}/dashboard/policies", "policies", "tr[data-policy]")
    visit(driver, f"{DASH}/dashboard/signals", "signals", "#signals tbody tr")
    visit(driver, f"{DASH}/dashboard/analysis", "analysis", "#kept")
    # The gate's dashboard is on another port of the same host: the sign-in cookie is shared.
    driver.get(f"{GATE}/dashboard/gate")
    if driver.find_elements(By.ID, "token"):
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    visit(driver, f"{GATE}/dashboard/gate", "gate", "#cost-chart")
    check(bool(driver.find_elements(By.CSS_SELECTOR, "#decision strong")), "no decision banner")
    axe_dark = driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                      {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    del axe_dark
    axe(driver, "gate-dark")
    shot(driver, "gate-dark")


if __name__ == "__main__":
    main()
