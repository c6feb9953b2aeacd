#!/usr/bin/env python3
"""The lab in a real browser: start `scripts/lab.sh` on a free localhost port, drive Debian's
Chromium through WebDriver (chromium-driver and selenium, which setup installs), open two
chapters in two tabs, run all cells of both at the same time, and check in each page's DOM that
every cell ran, that the chapter shows a rendered HTML table and an SVG figure, and that no cell
wrote an error. The lab serves a copy of the chapters (OUT/notebooks), since it saves what it runs. Then edit the parameter cell of the second chapter (fewer sentences), run it and
the code cell after it, and check that both ran again and the second shows a new output. Prints the time from
"run" to the last output of each step (a figure for docs/timings.md, not an assertion) and keeps a
screenshot of each tab in OUT.

The lab runs the chapters in the quick profile (ISOLAB_PROFILE=quick, inherited by the kernels)
unless ISOLAB_PROFILE is set.

--slow-start SECONDS makes every kernel's start that much slower (the copy's prelude sleeps), as a
loaded machine or a cold dependency build could: evcxr answers Jupyter only once its prelude has
run, and with jupyter_server's default 60 s timeouts a start over about two minutes broke the tab's
connection (its Run All never ran). Setup writes a 30-minute timeout for the server instead
(environment.md, "The lab").

Usage: .venv/bin/python scripts/check_lab.py [--out DIR] [--slow-start SECONDS] [FIRST.ipynb SECOND.ipynb]
Exit status 1 when a check fails, with what was found (and, for a tab that never finished, what
its page and the lab's log showed).
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "isotropy-lab-browser-test"
# The line added to the second chapter's parameter cell, and what the next code cell (which
# embeds that many sentences) then prints.
EDIT = "let sentences: usize = 48;"
EDITED_OUTPUT = "tokens"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_dir():
    """JupyterLab settings for a test: every cell rendered (no windowing, so the DOM holds every
    output), no news or update checks."""
    folder = Path(tempfile.mkdtemp(prefix="isolab-lab-settings-"))
    for plugin, values in {
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        path = folder / (plugin + ".jupyterlab-settings")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return folder


def copy_of_notebooks(out, slow_start):
    """The chapters copied into OUT/notebooks, which the lab serves instead of notebooks/: the lab
    saves the notebooks it runs (with their outputs and the test's edit), and the repository's must
    stay as they are. Its evcxr.toml names its path dependencies (the support crate and the
    kernel's library) by absolute paths, and its prelude ends with a sleep of `slow_start` seconds
    when that is not zero."""
    folder = out / "notebooks"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy2(notebook, folder)
    config = (ROOT / "notebooks" / "evcxr.toml").read_text()
    for dependency in ('path = ".."', 'path = "kernel"'):
        if dependency not in config:
            sys.exit(f"notebooks/evcxr.toml no longer has {dependency}; update check_lab.py")
    # evcxr resolves a relative path against the folder the kernel starts in: the copy's
    relative = re.compile(r'path = "([^"/][^"]*)"')
    config = relative.sub(
        lambda m: f"path = {json.dumps(str((ROOT / 'notebooks' / m.group(1)).resolve()))}", config)
    if slow_start:
        prelude = re.compile(r'^prelude = "(.*)"$', re.MULTILINE)
        if not prelude.search(config):
            sys.exit("notebooks/evcxr.toml has no one-line prelude = \"...\"; update check_lab.py")
        sleep = f"std::thread::sleep(std::time::Duration::from_secs({slow_start}));"
        config = prelude.sub(lambda m: f'prelude = "{m.group(1)} {sleep}"', config)
    (folder / "evcxr.toml").write_text(config)
    return folder


def start_lab(port, log, folder):
    env = dict(os.environ, ISOLAB_LAB_PORT=str(port), ISOLAB_LAB_DIR=str(folder.resolve()),
               JUPYTERLAB_SETTINGS_DIR=str(settings_dir()))
    env.setdefault("ISOLAB_PROFILE", "quick")
    lab = subprocess.Popen(["bash", str(ROOT / "scripts/lab.sh"), f"--IdentityProvider.token={TOKEN}",
                            "--ServerApp.port_retries=0"],
                           env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if lab.poll() is not None:
            sys.exit(f"the lab exited with status {lab.returncode}; {log_tail(log)}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={TOKEN}", timeout=2)
            return lab
        except OSError:
            time.sleep(0.5)
    sys.exit(f"the lab did not answer on port {port} within 120 s; {log_tail(log)}")


def log_tail(log, lines=30):
    """The last lines of the lab's log, for a failure message (a CI log shows only the output)."""
    log.flush()
    tail = Path(log.name).read_text(errors="replace").splitlines()[-lines:]
    return f"the end of {log.name}:\n" + "\n".join(tail)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService("/usr/bin/chromedriver"))


def cells(driver):
    return driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")


def code_cells(driver):
    return [c for c in cells(driver) if "jp-CodeCell" in c.get_attribute("class")]


def prompt(cell):
    return cell.find_element(By.CSS_SELECTOR, ".jp-InputPrompt").text.strip()


def wait_for_notebook(driver, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if code_cells(driver) and driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator"):
                # The kernel is up once the toolbar's kernel name shows it.
                names = driver.find_elements(By.CSS_SELECTOR, ".jp-KernelName")
                if names and "isotropy-lab" in names[0].text:
                    return
        except StaleElementReferenceException:
            pass  # the notebook re-rendered a cell while we read it: it is still loading
        time.sleep(0.5)
    raise AssertionError("the notebook and its isotropy-lab kernel did not appear")


def wait_for_idle(port, name, timeout=900):
    """Waits until the kernel of notebook `name` reports idle through the server's REST API: a
    Run All sent while the kernel still starts (it seeds its build folder first) can be lost."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/sessions?token={TOKEN}", timeout=5) as r:
            sessions = json.load(r)
        states = [s["kernel"]["execution_state"] for s in sessions if s.get("path", "").endswith(name)]
        if states == ["idle"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"the kernel of {name} did not become idle within {timeout} s")


def indicator(driver):
    """The kernel status the visible tab's toolbar shows ("idle", "busy", "unknown", ...). The
    toolbar starts at "idle" before the tab hears from its kernel, so this is read only once the
    server has seen the kernel idle."""
    try:
        found = driver.find_elements(By.CSS_SELECTOR,
                                     ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator")
        return found[0].get_attribute("data-status") if found else None
    except StaleElementReferenceException:
        return None  # the toolbar re-rendered while we read it: ask again


def wait_for_browser_idle(driver, name, timeout=300):
    """Waits until the tab itself shows its kernel idle: the server can see an idle kernel while
    the tab's connection to it is broken, and then the tab's Run All never reaches the kernel."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if indicator(driver) == "idle":
            return None
        time.sleep(0.5)
    return f"{name}: the tab does not show its kernel idle {timeout} s after the server does (it shows {indicator(driver)!r})"


def diagnosis(driver, port, name, out, log_path):
    """What a tab that never finished shows: its prompts, its kernel status, any dialog, the
    server's view of its kernel, and the lab log's last warnings, errors and restarts. Keeps a
    screenshot of the tab in OUT. Whatever cannot be read is said, and the rest still returned."""
    lines = []
    try:
        driver.save_screenshot(str(out / f"{Path(name).stem}-stuck.png"))
        prompts = [prompt(c) for c in code_cells(driver)]
        lines.append(f"{name}: prompts {prompts}, toolbar kernel status {indicator(driver)!r}")
        for dialog in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog"):
            lines.append(f"{name}: a dialog is open: {dialog.text[:300]!r}")
    except Exception as error:  # a page that changes under us must not hide the rest
        lines.append(f"{name}: the page could not be read: {type(error).__name__}: {str(error)[:200]}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/sessions?token={TOKEN}", timeout=5) as r:
            states = {s["path"]: s["kernel"]["execution_state"] for s in json.load(r)}
        lines.append(f"the server's kernels: {states}")
    except OSError as error:
        lines.append(f"the server did not list its sessions: {error}")
    log = Path(log_path).read_text(errors="replace").splitlines()
    notable = [line[:200] for line in log
               if (re.match(r"\[[WEC] ", line) or "Error" in line or "restart" in line.lower())
               and "Nudge: attempt" not in line]
    lines.append(f"the lab log's last warnings, errors and restarts ({log_path}):")
    lines += ["  " + line for line in notable[-15:]]
    return lines


def non_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"--slow-start must be 0 or more seconds, not {value}")
    return value


def menu(driver, top, item):
    for label in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel"):
        if label.text == top:
            label.click()
            break
    else:
        raise AssertionError(f"no menu {top!r}")
    time.sleep(0.3)
    for label in driver.find_elements(By.CSS_SELECTOR, ".lm-Menu-itemLabel"):
        if label.text == item:
            label.click()
            return
    raise AssertionError(f"no menu item {item!r} under {top!r}")


def running(driver):
    return any(prompt(c) == "[*]:" for c in code_cells(driver))


def outputs_text(cell):
    return "\n".join(o.text for o in cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))


def problems(driver, name):
    found = []
    code = code_cells(driver)
    unrun = [i for i, c in enumerate(code) if not re.fullmatch(r"\[\d+\]:", prompt(c))]
    if unrun:
        found.append(f"{name}: code cells {unrun} did not run")
    errors = driver.find_elements(By.CSS_SELECTOR, '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    if errors:
        found.append(f"{name}: {len(errors)} error outputs, the first: {errors[0].text[:500]}")
    if not driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output.jp-RenderedHTMLCommon table"):
        found.append(f"{name}: no rendered HTML table")
    if not driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output.jp-RenderedSVG img, .jp-OutputArea-output.jp-RenderedSVG svg"):
        found.append(f"{name}: no rendered SVG figure")
    # JupyterLab typesets formulas with the MathJax it bundles: no delimiters left in the text.
    raw = [m.text[:120] for m in driver.find_elements(By.CSS_SELECTOR, ".jp-MarkdownCell .jp-RenderedMarkdown")
           if "$$" in m.text]
    if raw:
        found.append(f"{name}: formulas left as raw TeX: {raw}")
    paths = [c.text for c in driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output table td")
             if re.search(r"(^|[\s(])/[^\s/]+/", c.text)]
    if paths:
        found.append(f"{name}: absolute paths in tables: {paths[:3]}")
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "target" / "lab-test"))
    ap.add_argument("--slow-start", type=non_negative, default=0, metavar="SECONDS",
                    help="make every kernel's start this much slower (default 0)")
    ap.add_argument("notebooks", nargs="*", default=["00_tour.ipynb", "01_isotropy_by_layer.ipynb"])
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # screenshots of an earlier run
        old.unlink()
    first, second = [Path(n).name for n in args.notebooks]
    port = free_port()
    log = open(out / "lab.log", "w")
    lab = start_lab(port, log, copy_of_notebooks(out, args.slow_start))
    driver = None
    found = []
    try:
        driver = browser()
        tabs = {}
        for i, name in enumerate([first, second]):
            if i:
                driver.switch_to.new_window("tab")
            # A workspace per tab, reset, so the two tabs do not restore each other's layout.
            driver.get(f"http://127.0.0.1:{port}/lab/workspaces/tab{i}/tree/{name}?reset&token={TOKEN}")
            tabs[name] = driver.current_window_handle
            wait_for_notebook(driver)
        for name, handle in tabs.items():
            driver.switch_to.window(handle)
            try:
                wait_for_idle(port, name, timeout=900 + args.slow_start)
                problem = wait_for_browser_idle(driver, name)
            except (AssertionError, OSError) as error:
                problem = f"{name}: {error}"
            if problem:
                found += [problem] + diagnosis(driver, port, name, out, log.name)
        if found:
            print("\n".join(found))
            sys.exit(1)
        started = {}
        for name, handle in tabs.items():
            driver.switch_to.window(handle)
            menu(driver, "Run", "Run All Cells")
            started[name] = time.monotonic()
        done = {}
        deadline = time.monotonic() + 1800
        while len(done) < len(tabs) and time.monotonic() < deadline:
            for name, handle in tabs.items():
                if name in done:
                    continue
                driver.switch_to.window(handle)
                if not running(driver) and all(re.fullmatch(r"\[\d+\]:", prompt(c)) for c in code_cells(driver)):
                    done[name] = time.monotonic() - started[name]
                    print(f"{name}: every cell ran, {done[name]:.0f} s from Run All", flush=True)
            time.sleep(2)
        for name, handle in tabs.items():
            driver.switch_to.window(handle)
            driver.save_screenshot(str(out / f"{Path(name).stem}.png"))
            if name not in done:
                found.append(f"{name}: still running after 30 minutes")
                found += diagnosis(driver, port, name, out, log.name)
            found += problems(driver, name)
        if not found:
            found += edit_and_rerun(driver, tabs[second], second, out)
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
    if found:
        print("\n".join(found))
        sys.exit(1)
    print("the lab: both chapters ran side by side in the browser, and the edited cells answered")


def edit_and_rerun(driver, handle, name, out):
    """Adds a line to the end of the parameter cell (the first that reads ISOLAB_SENTENCES) that
    sets fewer sentences, runs it and the next code cell (Ctrl+Enter in each), and checks that
    both ran again and that the next cell, which embeds the sentences, shows a new output."""
    driver.switch_to.window(handle)
    code = code_cells(driver)
    index = next((i for i, c in enumerate(code) if "ISOLAB_SENTENCES" in c.text), None)
    if index is None or index + 1 >= len(code):
        return [f"{name}: no parameter cell reading ISOLAB_SENTENCES with a code cell after it"]
    prompts = [prompt(c) for c in code[index:index + 2]]
    before = outputs_text(code[index + 1])
    start = time.monotonic()
    editor = code[index].find_element(By.CSS_SELECTOR, ".cm-content")
    editor.click()
    editor.send_keys(Keys.CONTROL, Keys.END)
    editor.send_keys(Keys.ENTER, EDIT)
    editor.send_keys(Keys.CONTROL, Keys.ENTER)
    after_editor = code[index + 1].find_element(By.CSS_SELECTOR, ".cm-content")
    after_editor.click()
    after_editor.send_keys(Keys.CONTROL, Keys.ENTER)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        code = code_cells(driver)
        now = [prompt(c) for c in code[index:index + 2]]
        if not running(driver) and all(re.fullmatch(r"\[\d+\]:", p) and p != q for p, q in zip(now, prompts)):
            break
        time.sleep(0.5)
    took = time.monotonic() - start
    driver.save_screenshot(str(out / f"{Path(name).stem}-edited.png"))
    code = code_cells(driver)
    found = []
    now = [prompt(c) for c in code[index:index + 2]]
    if any(p == q for p, q in zip(now, prompts)):
        found.append(f"{name}: the edited cells did not run again (prompts {prompts} then {now})")
    after = outputs_text(code[index + 1])
    if after == before or EDITED_OUTPUT not in after:
        found.append(f"{name}: the cell after the edited parameter cell shows no new output: {after[:300]!r}")
    found += problems(driver, name)
    if not found:
        print(f"{name}: the edited parameter cell and the next code cell ran again and answered "
              f"{took:.1f} s after the edit began", flush=True)
    return found


if __name__ == "__main__":
    main()
