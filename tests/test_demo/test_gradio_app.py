"""demo/gradio_app.py served on 127.0.0.1 with a tiny untrained model: called through its API with
gradio_client, and used in a real headless Chromium driven by Selenium (upload an image, type the classes,
press Segment, find the result image on the page).

Without gradio, gradio_client, selenium or Debian's chromium + chromedriver these tests skip, except under
CI=true, where they fail: `bash tools/install_demo.sh` installs them.
"""
import glob
import importlib.util
import os
import os.path as osp
import shutil
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from mmseg_digseg.apis import init_digseg
from ..conftest import REPO_ROOT, TINY_CONFIG

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--window-size=1400,1000')
CLASSES = ('background', 'disc', 'square', 'triangle', 'cross', 'ring')
PROMPTS = 'disc, ring, background'


def require(available: bool, what: str):
    """Skip without ``what``, but fail under CI=true: there the demo must be tested."""
    if available:
        return
    message = f'{what}; install it with `bash tools/install_demo.sh`'
    if os.environ.get('CI') == 'true':
        pytest.fail(f'CI=true and {message}', pytrace=False)
    pytest.skip(message)


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def load_app():
    """demo/gradio_app.py as a module (demo/ is a folder of scripts, not a package)."""
    os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'
    spec = importlib.util.spec_from_file_location('digseg_gradio_app', osp.join(REPO_ROOT, 'demo/gradio_app.py'))
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def app():
    require(has_module('gradio') and has_module('gradio_client'), 'gradio or gradio_client is not installed')
    return load_app()


@pytest.fixture(scope='module')
def demo_url(app, tmp_path_factory):
    """The app on 127.0.0.1, loaded by its own argument parsing from a checkpoint saved as train.py does."""
    checkpoint = str(tmp_path_factory.mktemp('demo_ckpt') / 'tiny.pth')
    torch.manual_seed(0)
    model = init_digseg(TINY_CONFIG)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=CLASSES))), checkpoint)
    demo = app.build_demo(app.load_model(app.parse_args(['--config', TINY_CONFIG, '--checkpoint', checkpoint])))
    port = free_port()
    demo.launch(server_name='127.0.0.1', server_port=port, share=False, prevent_thread_lock=True, quiet=True)
    yield f'http://127.0.0.1:{port}/'
    demo.close()


@pytest.fixture(scope='module')
def image_path(synth_root):
    return sorted(glob.glob(osp.join(synth_root, 'img_dir/val/*.png')))[0]


def test_quickstart_default_says_how_to_make_it(app, monkeypatch, tmp_path):
    monkeypatch.setattr(app, 'QUICKSTART_POINTER', str(tmp_path / 'last_checkpoint'))
    with pytest.raises(SystemExit, match='bash tools/quickstart.sh'):
        app.load_model(app.parse_args([]))
    with pytest.raises(SystemExit, match='--config needs --checkpoint'):
        app.load_model(app.parse_args(['--config', TINY_CONFIG]))


def test_segment_through_the_api(demo_url, image_path):
    from gradio_client import Client, handle_file
    client = Client(demo_url, verbose=False)
    overlay, maps, summary = client.predict(handle_file(image_path), PROMPTS, '1x1', 'vae', api_name='/segment')
    overlay = np.asarray(Image.open(overlay))
    assert overlay.ndim == 3 and overlay.shape[1] > 64 + 20  # the image, enlarged, and the legend beside it
    assert [m['caption'] for m in maps] == ['disc', 'ring', 'background']  # one score map per class, in order
    vae_maps = [np.asarray(Image.open(m['image'])) for m in maps]
    assert all(m.shape == (64, 64, 3) for m in vae_maps)
    assert 'preset 1x1, readout vae' in summary and 'labels present' in summary

    # the readout choice takes effect (random readout weights give other maps) and does not stick
    learned = client.predict(handle_file(image_path), PROMPTS, '1x1', 'learned', api_name='/segment')[1]
    assert any(not np.array_equal(np.asarray(Image.open(m['image'])), v) for m, v in zip(learned, vae_maps))
    again = client.predict(handle_file(image_path), PROMPTS, 'config default', 'vae', api_name='/segment')[1]
    assert all(np.array_equal(np.asarray(Image.open(m['image'])), v) for m, v in zip(again, vae_maps))

    with pytest.raises(Exception, match='empty name'):  # the app's message reaches the client
        client.predict(handle_file(image_path), 'disc,,ring', '1x1', 'vae', api_name='/segment')


def segment_in_browser(url: str, image: str, classes: str, screenshot: str, profile_dir: str) -> dict:
    """Open the app in headless Chromium, upload ``image``, type ``classes``, press Segment, wait for the
    overlay and the score maps; save a screenshot. Returns what the page shows."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f'--user-data-dir={profile_dir}'):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, '#input-image input[type=file]'))).send_keys(image)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, '#input-image img')))  # the upload arrived
        box = driver.find_element(By.CSS_SELECTOR, '#classes textarea')
        box.clear()
        box.send_keys(classes)
        driver.find_element(By.CSS_SELECTOR, '#segment').click()
        overlay = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, '#overlay img')))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#score-maps img')) >= len(classes.split(',')))
        wait.until(lambda d: 'labels present' in d.find_element(By.ID, 'summary').text)
        wait.until(lambda d: d.execute_script('return arguments[0].complete && arguments[0].naturalWidth', overlay))
        shown = dict(overlay_width=driver.execute_script('return arguments[0].naturalWidth', overlay),
                     score_maps=len(driver.find_elements(By.CSS_SELECTOR, '#score-maps img')),
                     summary=driver.find_element(By.ID, 'summary').text)
        driver.save_screenshot(screenshot)
        return shown
    finally:
        driver.quit()


def test_segment_in_a_headless_browser(demo_url, image_path, tmp_path):
    require(osp.isfile(CHROMIUM) and osp.isfile(CHROMEDRIVER), f'{CHROMIUM} or {CHROMEDRIVER} is missing '
            '(Debian: apt-get install -y chromium chromium-driver)')
    require(has_module('selenium'), 'selenium is not installed')
    screenshot = str(tmp_path / 'demo_gradio.png')
    shown = segment_in_browser(demo_url, image_path, PROMPTS, screenshot, str(tmp_path / 'chromium-profile'))
    assert shown['overlay_width'] > 64 + 20  # the result image, with its legend, is on the page
    assert shown['score_maps'] >= 3
    assert 'preset config default, readout vae' in shown['summary']
    assert Image.open(screenshot).size[0] >= 1000
    if os.environ.get('DIGSEG_DEMO_SCREENSHOT'):  # where to keep it, e.g. docs/images/demo_gradio.png
        shutil.copy(screenshot, os.environ['DIGSEG_DEMO_SCREENSHOT'])
