"""The web demo in a real browser: `python tools/demo.py` (the README's command: the shipped tiny
checkpoint, or RANDOM tiny weights without it) is started on a free port, headless Chromium types a
prompt and runs it; the page shows a <video> whose mp4 has the model's frame count and duration,
and an empty prompt shows the pipeline's error in the page. Several clients at once queue and all
get their answer. Then the server is stopped with Ctrl-C.

Slow (a server start-up with its warm-up generation; CI installs no browser). Needs the `demo`
extra, selenium and Debian's chromium + chromium-driver; skipped, saying which is missing, without:

    apt-get install -y chromium chromium-driver && pip install -e '.[demo]' selenium
    JAX_PLATFORMS=cpu python -m pytest -q -m slow tests/tools/test_demo_browser.py

DEMO_SCREENSHOT=docs/demo.png also saves the page after the run there (the README's picture).
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from landiff_jax import cli
from landiff_jax.video_io import count_frames

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PROMPT = "a blue square moves up on a white background"
STARTUP_S = 600  # loading, compiling and the warm-up generation on a busy 2-core CPU
RUN_S = 300


def missing() -> str | None:
    for module, install in (("gradio", "pip install -e '.[demo]'"), ("selenium", "pip install selenium")):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed ({install})"
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return f"no {program} on PATH (apt-get install -y chromium chromium-driver)"
    return None


if missing():
    pytest.skip(missing(), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The URL of `python tools/demo.py` on a free port, stopped (Ctrl-C) after the module's tests."""
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "tools/demo.py", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP_S
    while True:
        assert proc.poll() is None, f"the demo exited with {proc.returncode}:\n{proc.stdout.read()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=5) as page:
                if page.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, f"the demo did not serve {url} within {STARTUP_S} s"
        time.sleep(1)
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"the demo did not stop on Ctrl-C:\n{output[-3000:]}")
    assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]  # Gradio closes on Ctrl-C


@pytest.fixture(scope="module")
def video_frames() -> int:
    """The served model's frame count, from its config (what tools/demo.py chooses without flags)."""
    cfg = cli.choose_model().cfg
    return cfg.video_frames(cfg.max_latent_frames)


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")),
                              options=options)
    yield driver
    driver.quit()


def submit(browser, prompt: str) -> None:
    box = browser.find_element(By.CSS_SELECTOR, "#prompt textarea")
    box.send_keys(Keys.CONTROL, "a")  # typed, not clear(): the page sees an input event
    box.send_keys(Keys.DELETE, prompt)
    browser.find_element(By.CSS_SELECTOR, "#generate").click()


def test_page_generates_a_video_and_shows_errors(server, browser, video_frames, tmp_path):
    browser.get(server)
    WebDriverWait(browser, 60).until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#generate")))
    submit(browser, PROMPT)
    video = WebDriverWait(browser, RUN_S).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "#video video[src]")))
    WebDriverWait(browser, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#plan img[src]")))
    path = tmp_path / "served.mp4"
    with urllib.request.urlopen(video.get_attribute("src"), timeout=60) as response:
        path.write_bytes(response.read())
    assert count_frames(path) == video_frames
    duration = WebDriverWait(browser, 60).until(lambda b: b.execute_script(
        "const v = document.querySelector('#video video'); return v.readyState >= 1 ? v.duration : null;"))
    assert duration == pytest.approx(video_frames / 8, abs=0.05)  # 8 fps
    if os.environ.get("DEMO_SCREENSHOT"):
        bottom, chrome = browser.execute_script(  # the page's end (Gradio's footer), the window's own rows
            "return [document.querySelector('footer').getBoundingClientRect().bottom + window.scrollY,"
            " window.outerHeight - window.innerHeight];")
        browser.set_window_size(1280, round(bottom + chrome) + 16)
        browser.save_screenshot(os.environ["DEMO_SCREENSHOT"])  # the whole page, down to Gradio's footer

    submit(browser, "")
    message = "empty prompt(s) at position(s) [0]"
    WebDriverWait(browser, RUN_S).until(
        EC.visibility_of_element_located((By.XPATH, f"//*[contains(text(), '{message}')]")))
    assert "Traceback" not in browser.page_source


def test_concurrent_clients_queue_and_all_get_answers(server, video_frames):
    from gradio_client import Client

    client = Client(server, verbose=False)
    settings = (video_frames, None, 7.5, 6.0, 0.1)  # frames, steps (default), LM / DiT guidance, motion score
    requests = [(PROMPT, 1), ("a red circle moves left on a black background", 2), ("", 3), (PROMPT, 4)]
    jobs = [client.submit(prompt, seed, *settings, api_name="/generate") for prompt, seed in requests]
    outcomes = []
    for job in jobs:  # all submitted at once: the server runs them one after the other
        try:
            outcomes.append(job.result(timeout=RUN_S * len(jobs)))
        except concurrent.futures.TimeoutError:
            raise
        except Exception as e:  # noqa: BLE001 (the error Gradio sends back for the empty prompt)
            outcomes.append(e)
    assert "empty prompt" in str(outcomes[2])
    for video, _ in (outcomes[k] for k in (0, 1, 3)):
        assert count_frames(Path(video["video"] if isinstance(video, dict) else video)) == video_frames
    with urllib.request.urlopen(server, timeout=30) as page:  # still serving
        assert page.status == 200
