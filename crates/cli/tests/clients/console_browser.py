"""The web console in a real browser: Debian's Chromium driven by Selenium through
chromium-driver. Signs in, runs a query and reads its rows and its chart, completes a table
name in the editor, opens the query history, a table's columns, constraints, partitions and
lineage, and a materialized view's staleness; keeps screenshots of the pages it saw.

    console_browser.py URL PASSWORD SCREENSHOT_DIR

Prints one JSON object of what it found; the Rust test checks it.
"""
import json
import os
import shutil
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

url, password, shots = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(shots, exist_ok=True)

options = webdriver.ChromeOptions()
options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
             "--window-size=1280,1000"):
    options.add_argument(flag)
driver = webdriver.Chrome(
    service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options
)
wait = WebDriverWait(driver, 30)
found = {}


def texts(selector):
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, selector)]


try:
    driver.get(url + "/")
    # A wrong password is refused on the page, without the browser's own dialog.
    driver.find_element(By.ID, "password").send_keys("wrong")
    driver.find_element(By.ID, "login").click()
    wait.until(lambda d: d.find_element(By.ID, "login-error").text)
    found["wrong_password"] = driver.find_element(By.ID, "login-error").text
    field = driver.find_element(By.ID, "password")
    field.clear()
    field.send_keys(password)
    driver.find_element(By.ID, "login").click()
    editor = wait.until(ready.visibility_of_element_located((By.ID, "editor")))

    # Completion: "custo" offers the customers table.
    wait.until(lambda d: d.execute_script("return state.names.length") > 50)
    editor.send_keys("SELECT city, count(*) AS n FROM custo")
    wait.until(ready.visibility_of_element_located((By.ID, "complete")))
    found["completions"] = texts("#complete div")
    editor.send_keys(Keys.TAB)
    editor.send_keys(" GROUP BY city ORDER BY city")
    found["editor"] = editor.get_attribute("value")
    driver.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#grid tbody tr"))
    found["status"] = driver.find_element(By.ID, "status").text
    found["header"] = texts("#grid th")
    found["rows"] = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                     for tr in driver.find_elements(By.CSS_SELECTOR, "#grid tbody tr")]
    chart = driver.find_element(By.CSS_SELECTOR, "#chart svg")
    found["chart_kind"] = chart.get_attribute("data-kind")
    found["chart_bars"] = len(chart.find_elements(By.TAG_NAME, "rect"))
    driver.save_screenshot(os.path.join(shots, "console-query.png"))

    # Paging: 120 rows are three pages of 50.
    editor.clear()
    editor.send_keys("SELECT value AS n, value * value AS square FROM generate_series(1, 120)")
    editor.send_keys(Keys.CONTROL, Keys.ENTER)
    wait.until(lambda d: "120 rows" in d.find_element(By.ID, "status").text)
    found["page"] = driver.find_element(By.ID, "page").text
    driver.find_element(By.ID, "next").click()
    found["page_after_next"] = driver.find_element(By.ID, "page").text
    found["first_on_page_2"] = driver.find_element(By.CSS_SELECTOR, "#grid tbody td").text
    found["line_chart"] = driver.find_element(By.CSS_SELECTOR, "#chart svg").get_attribute("data-kind")

    # A failing statement shows its error.
    editor.clear()
    editor.send_keys("SELECT * FROM no_such_table")
    driver.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_element(By.ID, "query-error").text)
    found["error"] = driver.find_element(By.ID, "query-error").text

    # History from system.query_log.
    driver.find_element(By.CSS_SELECTOR, "#tabs button[data-tab=history]").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#history-grid tbody tr"))
    found["history_header"] = texts("#history-grid th")
    found["history_has_query"] = any("GROUP BY city" in t for t in texts("#history-grid td"))

    # The table browser: sales with its columns, keys, partitions and lineage.
    driver.find_element(By.CSS_SELECTOR, "#tabs button[data-tab=tables]").click()
    sales = wait.until(ready.element_to_be_clickable(
        (By.CSS_SELECTOR, "#tree .table[data-name='main.public.sales']")))
    found["tree"] = texts("#tree .table")
    sales.click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#partitions tbody tr"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#lineage svg, #lineage p"))
    found["summary"] = driver.find_element(By.ID, "table-summary").text
    found["columns"] = [tr.find_element(By.TAG_NAME, "td").text
                        for tr in driver.find_elements(By.CSS_SELECTOR, "#columns tbody tr")]
    found["constraints"] = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                            for tr in driver.find_elements(By.CSS_SELECTOR, "#constraints tbody tr")]
    found["partitions"] = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                           for tr in driver.find_elements(By.CSS_SELECTOR, "#partitions tbody tr")]
    found["lineage_nodes"] = texts("#lineage svg text.node")
    driver.save_screenshot(os.path.join(shots, "console-table.png"))

    # Materialized views with their staleness.
    driver.find_element(By.CSS_SELECTOR, "#tabs button[data-tab=views]").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#views-grid tbody tr"))
    found["views_header"] = texts("#views-grid th")
    found["views"] = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                      for tr in driver.find_elements(By.CSS_SELECTOR, "#views-grid tbody tr")]
    driver.find_element(By.CSS_SELECTOR, "#views-grid tbody tr").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#view-lineage svg"))
    found["view_lineage_nodes"] = texts("#view-lineage svg text.node")
    driver.save_screenshot(os.path.join(shots, "console-views.png"))
    found["console_errors"] = [
        # Statements that fail answer 4xx on purpose; anything else is the page's own error.
        entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
        and "Failed to load resource" not in entry["message"]
    ]
finally:
    driver.quit()

print(json.dumps(found))
