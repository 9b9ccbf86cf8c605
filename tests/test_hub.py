"""Loading an exported model by Hub repository id, for real: a local HTTP
server (loopback only) answers the requests huggingface_hub makes, and
``EnhanceSpeech.from_hparams(source="someuser/cmcr-test")`` runs in a
subprocess with ``HF_ENDPOINT`` pointing at it (huggingface_hub reads the
endpoint at import time). The model makes the whole round trip: trained by
the recipe on the demo data, exported, loaded from the folder and by id;
both give the trained model's output. The exported custom_interface.py
loads the folder and the repository through SpeechBrain's ``foreign_class``
in a process where speechbrain_cmcr cannot be imported, and ``enhance_file``
fetches ``user/name/file.wav`` paths from the Hub."""

import hashlib
import os
import pathlib
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest
import torch
from test_recipe import run, tiny_args

from speechbrain_cmcr.export import (
    export_model,
    find_best_checkpoint,
    load_trained_model,
)
from speechbrain_cmcr.inference.enhancement import EnhanceSpeech

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
REPO_ID = "someuser/cmcr-test"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESOLVE = f"/{REPO_ID}/resolve/"
RESOLVE_CACHE = f"/api/resolve-cache/models/{REPO_ID}/{COMMIT}/"
LOAD_SCRIPT = """
import sys
import torch
from speechbrain_cmcr import EnhanceSpeech

savedir, probe, output = sys.argv[1:]
enhancer = EnhanceSpeech.from_hparams(
    source="someuser/cmcr-test", savedir=savedir, run_opts={"device": "cpu"}
)
try:
    enhancer.enhance_file("someuser/cmcr-test/missing.wav")
except FileNotFoundError as error:
    missing = str(error)
results = {
    "batch": enhancer.enhance_batch(torch.load(probe)),
    "hub_file": enhancer.enhance_file("someuser/cmcr-test/example.wav"),
    "missing": missing,
}
torch.save(results, output)
"""
# Makes speechbrain_cmcr unimportable (the venv has it installed editable),
# and checks that it is.
WITHOUT_PACKAGE = """
import importlib.util
import sys


class NoCMCRPackage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "speechbrain_cmcr":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoCMCRPackage())
try:
    importlib.util.find_spec("speechbrain_cmcr")
    sys.exit("speechbrain_cmcr is importable")
except ModuleNotFoundError:
    print("speechbrain_cmcr: not importable")
"""
FOREIGN_SCRIPT = """
import torch
from speechbrain.inference.interfaces import foreign_class

source, example, probe, output = sys.argv[1:]
enhancer = foreign_class(
    source=source,
    pymodule_file="custom_interface.py",
    classname="EnhanceSpeech",
    hparams_file="custom_interface.yaml",
    run_opts={"device": "cpu"},
)
results = {
    "class": type(enhancer).__module__ + "." + type(enhancer).__name__,
    "model": type(enhancer.mods.enhance_model).__module__,
    "batch": enhancer.enhance_batch(torch.load(probe)),
    "file": enhancer.enhance_file(example),
    "modules": [
        name for name in sys.modules if name.split(".")[0] == "speechbrain_cmcr"
    ],
}
torch.save(results, output)
"""


class HubHandler(BaseHTTPRequestHandler):
    """Serves ``files`` as the main branch of model repository ``REPO_ID``
    the way the Hub does: ``/resolve/`` answers a relative redirect to
    ``/api/resolve-cache/``, which answers with the file, its ETag, size and
    the commit (``X-Repo-Commit``); errors carry ``X-Error-Code``."""

    protocol_version = "HTTP/1.1"
    timeout = 60  # a stalled client cannot hold a server thread forever
    files = {}
    requests = []

    def do_HEAD(self):
        """Metadata only."""
        self._answer(with_body=False)

    def do_GET(self):
        """Metadata and content."""
        self._answer(with_body=True)

    def log_message(self, format, *args):
        """Keeps the test output clean."""

    def _answer(self, with_body):
        path = unquote(urlsplit(self.path).path)
        self.requests.append((self.command, path))
        if path.startswith(RESOLVE):
            revision, _, name = path[len(RESOLVE) :].partition("/")
            if revision not in ("main", COMMIT):
                self._send(404, {"X-Error-Code": "RevisionNotFound"})
            elif name not in self.files:
                self._send(
                    404,
                    {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT},
                )
            else:
                self._send(307, {"Location": RESOLVE_CACHE + name})
        elif path[len(RESOLVE_CACHE) :] in self.files:
            content = self.files[path[len(RESOLVE_CACHE) :]]
            headers = {
                "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
                "X-Repo-Commit": COMMIT,
            }
            self._send(200, headers, content, with_body)
        else:
            self._send(404, {"X-Error-Code": "RepoNotFound"})

    def _send(self, status, headers, content=b"", with_body=False):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if with_body:
            self.wfile.write(content)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny CMCR-Net trained by the recipe on the demo data, exported;
    returns (export folder, the trained model of its best checkpoint)."""
    root = tmp_path_factory.mktemp("hub_export")
    demo = {
        "data_folder": str(root / "voicebank_demo"),
        "teacher_source": str(root / "tiny_wav2vec2"),
    }
    trained = run(tiny_args(demo, root / "run"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    best = load_trained_model(find_best_checkpoint(root / "run").path)
    return export_model(root / "run", root / "export"), best.eval()


@pytest.fixture
def hub_endpoint(exported):
    """A fake Hub on 127.0.0.1 serving the exported folder; yields
    (endpoint URL, list of (method, path) requests)."""
    folder, _ = exported
    handler = type(
        "Handler",
        (HubHandler,),
        {
            "files": {p.name: p.read_bytes() for p in folder.iterdir()},
            "requests": [],
        },
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", handler.requests
    server.shutdown()
    server.server_close()
    thread.join()


def hub_env(endpoint, hf_home):
    """The environment of a process that must reach only ``endpoint``."""
    proxies = {"http_proxy", "https_proxy", "all_proxy"}
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in proxies and key != "HF_HUB_OFFLINE"
    }
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_PROXY="127.0.0.1",
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
    )
    return env


def run_without_package(args, env, cwd, script=FOREIGN_SCRIPT):
    """Runs ``script`` with ``args`` in a Python where speechbrain_cmcr
    cannot be imported; returns the results it saved (its last argument)."""
    env = {key: value for key, value in env.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PACKAGE + script, *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("speechbrain_cmcr: not importable\n")
    return torch.load(args[-1])


def probe_file(folder):
    """A random batch saved for a subprocess; returns (path, batch)."""
    probe = torch.randn(2, 3000, generator=torch.Generator().manual_seed(0))
    torch.save(probe, folder / "probe.pt")
    return folder / "probe.pt", probe


@pytest.mark.parametrize("route", ["folder", "hub"])
def test_foreign_class_loads_without_the_package(
    exported, hub_endpoint, tmp_path, route
):
    folder, _ = exported
    endpoint, requests = hub_endpoint
    probe_path, probe = probe_file(tmp_path)
    source, example = str(folder), str(folder / "example.wav")
    if route == "hub":
        source, example = REPO_ID, f"{REPO_ID}/example.wav"
    results = run_without_package(
        [source, example, probe_path, tmp_path / "out.pt"],
        hub_env(endpoint, tmp_path / "hf_home"),
        tmp_path,
    )
    assert results["class"] == "custom_interface.EnhanceSpeech"
    assert results["model"] == "custom_interface"
    assert results["modules"] == []
    local = EnhanceSpeech.from_hparams(
        source=str(folder), run_opts={"device": "cpu"}
    )
    torch.testing.assert_close(results["batch"], local.enhance_batch(probe))
    torch.testing.assert_close(
        results["file"], local.enhance_file(folder / "example.wav")
    )
    served = {path.rsplit("/", 1)[-1] for method, path in requests}
    if route == "hub":
        assert {"custom_interface.py", "custom_interface.yaml"} <= served
        assert "example.wav" in served
    else:
        assert not requests


def test_load_by_repo_id_from_hub(exported, hub_endpoint, tmp_path):
    folder, best = exported
    endpoint, requests = hub_endpoint
    probe = torch.randn(2, 3000, generator=torch.Generator().manual_seed(0))
    torch.save(probe, tmp_path / "probe.pt")
    savedir = tmp_path / "savedir"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_SCRIPT,
            str(savedir),
            str(tmp_path / "probe.pt"),
            str(tmp_path / "from_hub.pt"),
        ],
        env=hub_env(endpoint, tmp_path / "hf_home"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    results = torch.load(tmp_path / "from_hub.pt")
    from_hub = results["batch"]
    local = EnhanceSpeech.from_hparams(
        source=str(folder), run_opts={"device": "cpu"}
    )
    torch.testing.assert_close(from_hub, local.enhance_batch(probe))
    torch.testing.assert_close(from_hub, best.enhance(probe))
    # enhance_file fetched the Hub file "user/name/example.wav".
    torch.testing.assert_close(
        results["hub_file"], local.enhance_file(folder / "example.wav")
    )
    assert ("GET", f"{RESOLVE_CACHE}example.wav") in requests
    assert results["missing"].startswith(
        "[Errno 2] audio file not found, neither here nor in Hugging Face "
        f"Hub repository {REPO_ID} (404 Client Error"
    )
    assert results["missing"].endswith(f": '{REPO_ID}/missing.wav'")
    for name in ["hyperparams.yaml", "enhance_model.ckpt"]:
        assert ("HEAD", f"{RESOLVE}main/{name}") in requests
        assert ("GET", f"{RESOLVE_CACHE}{name}") in requests
        cached = (savedir / name).resolve()
        assert cached.is_relative_to(tmp_path / "hf_home" / "hub")
    assert all(
        path.startswith((RESOLVE, RESOLVE_CACHE)) for _, path in requests
    )
