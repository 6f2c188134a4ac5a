"""The arwandb SDK served by the server (``/sdk/``): a valid, reproducible wheel, shipped
inside the server package, public, and installable by both of the seed's recipes with the
real pip, curl and unzip against a real ``arwx server``; the installed SDK then logs to it."""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from arwx.sdkdist.wheel import build_wheel, sdk_source_dir, served_wheel
from tests.helpers import ROOT, Api, ServerProcess

SDK = ROOT / "sdk"
WHEEL = served_wheel()
WHEEL_PATH = f"/sdk/{WHEEL.filename}"
# The seed's quickstart, with a run id and system metrics off so the point count is exact.
TRAIN = """
import json, sys
import arwandb
from arwandb import autoresearch  # the research loop ships in the same wheel
run = arwandb.init(project="char-lm", config={"lr": 3e-4}, id=sys.argv[1], system_metrics=False)
for step in range(50):
    arwandb.log({"loss": 2.0 / (step + 1), "val_bpb": 3.0 - step * 0.01})
arwandb.finish()
print(json.dumps({"file": arwandb.__file__, "version": arwandb.__version__}))
"""
POINTS = 100


def _sdk_version() -> tuple[str, str]:
    """(sdk/pyproject.toml's version, arwandb.__version__), read from this checkout's files."""
    toml = re.search(r'^version = "([^"]+)"', (SDK / "pyproject.toml").read_text(), re.M)
    tree = ast.parse((SDK / "arwandb" / "__init__.py").read_text())
    dunder = next(
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__version__" for t in node.targets)
    )
    assert toml is not None
    return toml.group(1), dunder


# -- the wheel itself ----------------------------------------------------------------------------


def test_sdk_version_is_the_seeds_and_names_the_wheel() -> None:
    pyproject, dunder = _sdk_version()
    assert pyproject == dunder == "1.3.1"
    assert WHEEL.version == pyproject and WHEEL.filename == f"arwandb-{pyproject}-py3-none-any.whl"


def test_wheel_is_valid_record_hashes_match_and_only_the_package_ships() -> None:
    zf = zipfile.ZipFile(io.BytesIO(WHEEL.data))
    assert zf.testzip() is None
    info = f"arwandb-{WHEEL.version}.dist-info"
    names = zf.namelist()
    sources = sorted(p.relative_to(SDK).as_posix() for p in (SDK / "arwandb").rglob("*.py") if "__pycache__" not in p.parts)
    assert sorted(n for n in names if not n.startswith(info)) == sources
    assert "arwandb/autoresearch.py" in sources
    assert {f"{info}/METADATA", f"{info}/WHEEL", f"{info}/RECORD", f"{info}/entry_points.txt"} <= set(names)
    for name in sources:  # the bytes are the checkout's
        assert zf.read(name) == (SDK / name).read_bytes(), name

    wheel_meta = zf.read(f"{info}/WHEEL").decode()
    assert "Root-Is-Purelib: true" in wheel_meta and "Tag: py3-none-any" in wheel_meta
    meta = zf.read(f"{info}/METADATA").decode()
    assert f"Name: arwandb\nVersion: {WHEEL.version}\n" in meta and "Requires-Python: >=3.10" in meta
    assert "Requires-Dist" not in meta  # zero dependencies
    assert "arwandb = arwandb.__main__:main" in zf.read(f"{info}/entry_points.txt").decode()

    rows = [line.split(",") for line in zf.read(f"{info}/RECORD").decode().splitlines()]
    assert sorted(r[0] for r in rows) == sorted(names)
    for path, digest, size in rows:
        if path == f"{info}/RECORD":
            assert digest == size == ""
            continue
        data = zf.read(path)
        want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert digest == f"sha256={want}" and int(size) == len(data), path
    assert WHEEL.sha256 == hashlib.sha256(WHEEL.data).hexdigest()


def test_wheel_bytes_depend_on_file_contents_only(tmp_path: Path) -> None:
    """Another copy of the sources, with other mtimes, modes, a bytecode cache, an editor's
    swap file and files created in another order, builds the same bytes; a changed source
    builds other bytes."""
    copy = tmp_path / "sdk"
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(SDK / name, copy / name)
    files = sorted((SDK / "arwandb").rglob("*.py"), reverse=True)
    for src in files:
        if "__pycache__" in src.parts:
            continue
        dst = copy / src.relative_to(SDK)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        os.utime(dst, (1_000_000_000, 1_000_000_000))
        dst.chmod(0o600)
    (copy / "arwandb" / "__pycache__").mkdir(exist_ok=True)
    (copy / "arwandb" / "__pycache__" / "run.cpython-311.pyc").write_bytes(b"not shipped")
    (copy / "arwandb" / ".run.py.swp").write_bytes(b"not shipped either")
    assert build_wheel(copy).data == WHEEL.data == build_wheel(SDK).data
    for entry in zipfile.ZipFile(io.BytesIO(WHEEL.data)).infolist():
        assert entry.date_time == (1980, 1, 1, 0, 0, 0) and entry.external_attr >> 16 == 0o100644

    (copy / "arwandb" / "encode.py").write_text((copy / "arwandb" / "encode.py").read_text() + "\n# changed\n")
    changed = build_wheel(copy)
    assert changed.data != WHEEL.data and changed.sha256 != WHEEL.sha256


def test_the_server_package_ships_the_sdk_sources(tmp_path: Path) -> None:
    """The arwx wheel hatchling builds carries the SDK sources, and the server running from
    that installed package serves the same wheel as the checkout does; the Dockerfile
    copies everything the package force-includes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--isolated", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (arwx_wheel,) = (tmp_path / "dist").glob("arwx-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(arwx_wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    assert "arwx/sdkdist/wheel.py" in names and "arwx/_sdk/pyproject.toml" in names and "arwx/_sdk/README.md" in names
    assert {n for n in names if n.startswith("arwx/_sdk/arwandb/")} == {
        f"arwx/_sdk/{p.relative_to(SDK).as_posix()}" for p in (SDK / "arwandb").rglob("*.py") if "__pycache__" not in p.parts
    }
    probe = "from arwx.sdkdist.wheel import sdk_source_dir, served_wheel; print(sdk_source_dir()); print(served_wheel().sha256)"
    out = subprocess.run(
        [sys.executable, "-s", "-c", probe], capture_output=True, text=True, timeout=60,
        env={**env, "PYTHONPATH": str(site)}, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    where, sha = out.stdout.split()
    assert Path(where) == site / "arwx" / "_sdk" and sdk_source_dir() == SDK
    assert sha == WHEEL.sha256

    force = re.search(r"\[tool\.hatch\.build\.targets\.wheel\.force-include\]\n((?:.+\n)+)", (ROOT / "pyproject.toml").read_text())
    assert force is not None
    shipped = re.findall(r'^"([^"]+)" = ', force.group(1), re.M)
    copied = " ".join(line for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines() if line.startswith("COPY "))
    assert {"sdk/arwandb", "sdk/pyproject.toml", "sdk/README.md"} <= set(shipped)
    for source in shipped:
        assert source in copied, f"deploy/Dockerfile does not copy {source}, which pyproject.toml ships"


def test_the_docs_name_the_wheel_the_server_serves() -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {(p.name, n) for p in docs for n in re.findall(r"arwandb-[0-9][^/\s'\"<>]*?-py3-none-any\.whl", p.read_text())}
    assert {"README.md", "sdk.md"} <= {doc for doc, _ in named}
    assert all(n == WHEEL.filename for _, n in named), named


# -- the routes (in-process server) --------------------------------------------------------------


def _raw(api: Api, method: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = api._conn()
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def test_index_and_wheel_are_public_with_length_etag_and_revalidation(embedded) -> None:
    anon = Api(embedded.url, None)
    status, headers, body = _raw(anon, "GET", "/sdk/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert int(headers["content-length"]) == len(body)
    link = f'href="{WHEEL.filename}#sha256={WHEEL.sha256}" data-requires-python="&gt;=3.10"'
    assert link in body.decode()

    status, headers, body = _raw(anon, "GET", WHEEL_PATH)
    assert status == 200 and body == WHEEL.data
    assert headers["content-type"] == "application/zip" and int(headers["content-length"]) == len(WHEEL.data)
    assert headers["cache-control"] == "public, no-cache" and WHEEL.filename in headers["content-disposition"]
    etag = headers["etag"]
    assert etag.startswith('"') and WHEEL.sha256[:32] in etag

    status, head_headers, body = _raw(anon, "HEAD", WHEEL_PATH)
    assert status == 200 and body == b""
    assert head_headers["content-length"] == str(len(WHEEL.data)) and head_headers["etag"] == etag

    for given in (etag, f'"other", {etag}', "*"):
        status, h304, body = _raw(anon, "GET", WHEEL_PATH, {"If-None-Match": given})
        assert status == 304 and body == b"" and h304["etag"] == etag, given
    status, _, body = _raw(anon, "GET", WHEEL_PATH, {"If-None-Match": '"stale"'})
    assert status == 200 and body == WHEEL.data

    status, headers, _ = _raw(anon, "GET", "/sdk")
    assert status == 301 and headers["location"] == "/sdk/"


@pytest.mark.parametrize(
    "path",
    [
        "/sdk/nope", "/sdk/arwandb-0.0.1-py3-none-any.whl", f"{WHEEL_PATH}/", f"/sdk/x/{WHEEL.filename}",
        "/sdk/../v1/keys", "/sdk/%2e%2e/v1/keys", "/sdk/..%2fv1%2fkeys", "/sdk//", "/sdk/../../etc/passwd",
        "/sdk/arwandb/__init__.py", "/sdk/%00", "/sdk/" + "a" * 3000,
    ],
)
def test_any_other_name_under_sdk_is_a_json_404_and_serves_nothing(embedded, path: str) -> None:
    for key in (None, "arwx_live_wrong"):
        status, headers, body = _raw(Api(embedded.url, key), "GET", path)
        assert status == 404 and headers["content-type"].startswith("application/json"), (path, status)
        assert json.loads(body) == {"error": f"no such file under /sdk/; the SDK is {WHEEL_PATH}"}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/sdk", "/sdk/", WHEEL_PATH, "/sdk/nope"])
def test_only_reading_the_sdk_is_public(embedded, method: str, path: str) -> None:
    status, body = Api(embedded.url, None).request(method, path, body={})
    assert status == 401 and body == {"error": "missing, invalid or revoked API key"}, (method, path, status)


# -- both install recipes, real tools, real `arwx server` ----------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = ServerProcess(tmp_path_factory.mktemp("sdk-served-data")).start()
    assert srv.key, srv.output
    yield srv
    srv.terminate()


def _clean_env(**extra: str) -> dict[str, str]:
    """No pip configuration, no PYTHONPATH, no SDK settings of the developer's shell."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "ARWANDB_", "WANDB_", "VIRTUAL_ENV"))}
    return {**keep, **extra}


def _fresh_venv(where: Path) -> Path:
    """A new virtual environment with nothing installed (pip is driven from outside with --python)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    probe = subprocess.run([str(python), "-I", "-c", "import arwandb"], capture_output=True, env=_clean_env())
    assert probe.returncode != 0, "the fresh venv must not see any arwandb"
    return python


def _train(python: Path, args: list[str], cwd: Path, server: ServerProcess, run_id: str) -> dict:
    env = _clean_env(ARWANDB_BASE_URL=server.url, ARWANDB_API_KEY=server.key or "", ARWANDB_PROJECT="char-lm")
    out = subprocess.run([str(python), *args, run_id], capture_output=True, text=True, cwd=cwd, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _check_receipt(server: ServerProcess, run_id: str) -> None:
    receipt = server.api().wait_intact(run_id, POINTS)
    assert receipt["points_stored"] == POINTS and receipt["lost"] == 0 and receipt["intact"] is True, receipt
    run = server.api().ok("GET", f"/v1/runs/{run_id}")
    assert run["project"] == "char-lm" and run["status"] == "finished", run


@pytest.mark.parametrize("recipe", ["find-links", "wheel-url"])
def test_pip_installs_the_served_sdk_into_a_fresh_venv_and_it_logs(server: ServerProcess, tmp_path: Path, recipe: str) -> None:
    """``pip install arwandb --find-links <server>/sdk/ --no-deps`` (and the pinned wheel URL),
    with PyPI out of reach (--no-index), then the installed SDK logs a run to the same server."""
    python = _fresh_venv(tmp_path / "venv")
    what = ["arwandb", "--find-links", f"{server.url}/sdk/"] if recipe == "find-links" else [server.url + WHEEL_PATH]
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--isolated", "--no-index",
         "--no-cache-dir", "--disable-pip-version-check", "--no-deps", *what],
        capture_output=True, text=True, env=_clean_env(), timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert f"Successfully installed arwandb-{WHEEL.version}" in pip.stdout, pip.stdout
    assert (tmp_path / "venv" / "bin" / "arwandb").exists()  # the console script from entry_points.txt

    work = tmp_path / "work"
    work.mkdir()
    got = _train(python, ["-I", "-c", TRAIN], work, server, f"pip-{recipe}")
    site = tmp_path / "venv" / "lib"
    assert Path(got["file"]).is_relative_to(site) and "site-packages" in got["file"], got
    assert got["version"] == WHEEL.version
    _check_receipt(server, f"pip-{recipe}")


def test_curl_and_unzip_leave_an_importable_package_that_logs(server: ServerProcess, tmp_path: Path) -> None:
    """The seed's ``curl -L …/sdk/arwandb-<v>-py3-none-any.whl -o arwandb.whl &&
    unzip -o arwandb.whl 'arwandb/*'``: an ./arwandb package next to the training script."""
    url = server.url + WHEEL_PATH
    work = tmp_path / "work"
    work.mkdir()
    if shutil.which("curl") and shutil.which("unzip"):
        cmd = f"curl -fsSL {url} -o arwandb.whl && unzip -o arwandb.whl 'arwandb/*'"
        done = subprocess.run(["bash", "-c", cmd], cwd=work, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    else:  # the same two steps where curl or unzip is not installed
        print("curl or unzip missing: fetching with urllib and extracting with zipfile")
        with urllib.request.urlopen(url, timeout=60) as resp:
            (work / "arwandb.whl").write_bytes(resp.read())
        with zipfile.ZipFile(work / "arwandb.whl") as zf:
            zf.extractall(work, [n for n in zf.namelist() if n.startswith("arwandb/")])
    assert (work / "arwandb.whl").read_bytes() == WHEEL.data
    assert sorted(p.name for p in work.iterdir()) == ["arwandb", "arwandb.whl"]  # no dist-info left behind
    (work / "train.py").write_text(TRAIN)

    python = _fresh_venv(tmp_path / "venv")
    # -E -s: no PYTHONPATH, no user site; the script's directory is on the path, as for a user.
    got = _train(python, ["-E", "-s", "train.py"], work, server, "curl-unzip")
    assert Path(got["file"]) == work / "arwandb" / "__init__.py" and got["version"] == WHEEL.version
    _check_receipt(server, "curl-unzip")
