"""Helpers of the cluster tests: the local stack (cluster/local/*.sh) as an object, /proc and
Ray state API look-ups, a sweep driver process. Used by conftest.py and the tests; patches nothing."""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "cluster" / "local"
VENV = Path(sys.prefix)
RAY = str(VENV / "bin" / "ray")


# ------------------------------------------------------------------------------------------- skipping

def pg_bindir() -> str | None:
    dirs = sorted(glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(x) for x in d.split("/")[4].split(".")])
    for d in reversed(dirs):
        if os.access(f"{d}/initdb", os.X_OK):
            return d
    found = shutil.which("initdb")
    return str(Path(found).parent) if found else None


def stack_skip_reason() -> str | None:
    if not pg_bindir():
        return "PostgreSQL binaries (initdb/pg_ctl) are not installed: run cluster/local/install.sh"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' system user to run PostgreSQL as"
    for tool in ("ray", "mlflow"):
        if not (VENV / "bin" / tool).exists():
            return f"{VENV}/bin/{tool} not found (run the tests from the project venv)"
    for mod, pkg in (("psycopg2", "psycopg2-binary"), ("flask_wtf", "Flask-WTF")):
        try:
            __import__(mod)
        except ImportError:
            return f"{pkg} is not installed in the venv: run cluster/local/install.sh"
    return None


# ------------------------------------------------------------------------------------------- /proc

def proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live, non-zombie process."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            out[int(pid)] = (int(fields[1]), cmd)
    return out


def descendants(root: int, table: dict | None = None) -> set[int]:
    table = table if table is not None else proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listeners() -> dict[str, tuple[str, int]]:
    """socket inode -> (address, port) of every TCP LISTEN socket (IPv6 addresses in full)."""
    import socket
    import struct

    out = {}
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] != "0A":
                continue
            addr, _, port = cols[1].rpartition(":")
            if v6:
                raw = b"".join(struct.pack("<I", int(addr[i:i + 8], 16)) for i in range(0, 32, 8))
                host = socket.inet_ntop(socket.AF_INET6, raw)
            else:
                host = socket.inet_ntoa(struct.pack("<I", int(addr, 16)))
            out[cols[9]] = (host, int(port, 16))
    return out


def stack_leftovers(ports: set[int], base) -> tuple[set[int], list[str]]:
    """After down.sh: which of the stack's `ports` still listen, and which processes still name its `base` dir."""
    left_ports = {p for _, (_, p) in listeners().items() if p in ports}
    left_procs = [f"{pid}: {cmd[:200]}" for pid, (_, cmd) in proc_table().items() if str(base) in cmd]
    return left_ports, left_procs


def assert_nothing_left(left_ports: set[int], left_procs: list[str]) -> None:
    assert not left_ports, f"still listening after down.sh: {sorted(left_ports)}"
    assert not left_procs, "processes of the stack survived down.sh:\n" + "\n".join(left_procs)


def listening_sockets_of(pids: set[int]) -> list[tuple[int, str, str, int]]:
    """(pid, command line, address, port) of each LISTEN socket held by one of `pids`."""
    socks, table, out = listeners(), proc_table(), []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in socks:
                host, port = socks[target[8:-1]]
                out.append((pid, table.get(pid, (0, ""))[1], host, port))
    return sorted(set(out))


# ------------------------------------------------------------------------------------------- the stack

@dataclass
class Stack:
    base: Path  # parent of the state dir (0711, under /tmp)
    state: Path
    script_env: dict  # environment for cluster/local/*.sh
    client: dict = field(default_factory=dict)  # what `. env.sh` exports
    ports: dict = field(default_factory=dict)
    reused: bool = False

    # -- lifecycle
    def up(self, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run(["bash", str(LOCAL / "up.sh")], env=self.script_env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"up.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        self.ports = {}
        for line in (self.state / "ports.env").read_text().splitlines():
            key, sep, val = line.partition("=")
            if sep and not key.startswith("#"):
                self.ports[key] = val
        self.client = read_env_sh(self.state / "env.sh")
        return proc

    def down(self) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(LOCAL / "down.sh"), "--purge"], env=self.script_env, capture_output=True,
                              text=True, timeout=240)

    def script(self, snippet: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run bash with cluster/local/_common.sh sourced (its helpers: pid_of, stop_pid, ...)."""
        return subprocess.run(["bash", "-c", f'. "{LOCAL}/_common.sh"; load_ports; {snippet}'], env=self.script_env,
                              capture_output=True, text=True, timeout=timeout)

    # -- environments
    @property
    def env(self) -> dict:
        """A client's environment: `. env.sh` on top of ours (Jobs API address in RAY_ADDRESS)."""
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "SEEDLAB_RAY"))}
        return {**keep, **self.client, "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"}

    @property
    def driver_env(self) -> dict:
        """For a sweep driver started directly on this machine: RAY_ADDRESS is the GCS address."""
        return {**self.env, "RAY_ADDRESS": self.client["SEEDLAB_RAY_GCS_ADDRESS"]}

    @property
    def mlflow_uri(self) -> str:
        return self.client["MLFLOW_TRACKING_URI"]

    @property
    def password(self) -> str:
        return self.client["MLFLOW_TRACKING_PASSWORD"]

    @property
    def ray_token(self) -> str:
        return (self.state / "secrets" / "ray_auth_token").read_text().strip()

    @property
    def ray_temp_dir(self) -> Path:
        return Path(self.ports["RAY_TEMP_DIR"])

    def pid(self, name: str) -> int | None:
        f = self.state / "pids" / f"{name}.pid"
        return int(f.read_text().strip()) if f.exists() else None

    # -- MLflow REST (stdlib only: what the server holds, independent of seedlab's own client code)
    def rest(self, method: str, endpoint: str, body: dict | None = None, auth: bool = True, timeout: float = 30):
        url = self.mlflow_uri.rstrip("/") + endpoint
        data = None
        if method == "GET" and body:
            url += "?" + urllib.parse.urlencode(body)
        elif body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            token = base64.b64encode(f"{self.client['MLFLOW_TRACKING_USERNAME']}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (loopback)
            return json.loads(resp.read() or b"{}")

    def mlflow_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.mlflow_uri + "/health", timeout=3) as resp:  # noqa: S310
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def runs(self, experiment: str, kind: str | None = "trial") -> list[dict]:
        """Every run of `experiment` (of seedlab.kind `kind`), as the REST API returns them."""
        try:
            exp = self.rest("GET", "/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": experiment})
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return []
            raise
        body = {"experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 1000, "run_view_type": "ALL"}
        if kind:
            body["filter"] = f"tags.`seedlab.kind` = '{kind}'"
        runs, token = [], None
        while True:
            page = self.rest("POST", "/api/2.0/mlflow/runs/search", {**body, **({"page_token": token} if token else {})})
            runs += page.get("runs", [])
            token = page.get("next_page_token")
            if not token:
                return runs

    # -- Ray state API (through the CLI, with the client's token settings)
    def ray_list(self, what: str, *filters: str) -> list[dict]:
        args = [RAY, "list", what, "--format", "json", "--detail", "--limit", "10000"]
        for f in filters:
            args += ["--filter", f]
        proc = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        if proc.stdout.strip() == "No resource in the cluster":  # what `ray list` prints instead of []
            return []
        return json.loads(proc.stdout)

    def nodes(self) -> dict[str, dict]:
        """'head' / 'worker' -> the node record of the ALIVE node of that role."""
        out = {}
        for n in self.ray_list("nodes"):
            if n["state"] != "ALIVE":
                continue
            out["head" if n["is_head_node"] else "worker"] = n
        return out

    def worker_log(self, pid: int, stream: str = "err") -> str:
        """The log Ray keeps of worker process `pid` (stdout: 'out', stderr: 'err'), on whichever node."""
        for path in glob(f"{self.ray_temp_dir}/**/session_latest/logs/worker-*-{pid}.{stream}", recursive=True):
            return Path(path).read_text(errors="replace")
        return ""

    def stack_pids(self) -> set[int]:
        """Every live process of this stack: the recorded ones and their descendants."""
        table = proc_table()
        roots = {self.pid(n) for n in ("postgres", "mlflow", "ray-head")} | {
            int(p.read_text()) for p in (self.state / "pids").glob("ray-worker-*.pid")}
        out = set()
        for root in filter(None, roots):
            if root in table:
                out |= {root} | descendants(root, table)
        return out


def read_env_sh(path: Path) -> dict[str, str]:
    """What a client gets by sourcing env.sh."""
    out = subprocess.run(["bash", "-c", f'set -a; . "{path}"; env -0'], capture_output=True, check=True,
                         env={"PATH": os.environ["PATH"]}).stdout.decode()
    return {k: v for k, v in (item.split("=", 1) for item in out.split("\0") if "=" in item)
            if k.startswith(("RAY_", "MLFLOW_", "SEEDLAB_"))}


# ------------------------------------------------------------------------------------------- sweep drivers

class Driver:
    """`python sweeps/bert_sizes.py ...` started directly on this machine against the stack (its own
    session, output in a file), as a user would run it with RAY_ADDRESS set to the GCS address."""

    def __init__(self, stack: Stack, args: list[str], log: Path):
        self.log = log
        self.args = [sys.executable, "sweeps/bert_sizes.py", *args]
        self.started = time.time()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(self.args, cwd=REPO, env=stack.driver_env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"sweep driver still running after {timeout:.0f}s:\n{_tail(self.output)}") from None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=30)


def _tail(text: str, n: int = 4000) -> str:
    return "\n".join(ln for ln in text.splitlines() if "Map:" not in ln)[-n:]


def wait_for(what: str, check, timeout: float, every: float = 1.0):
    """Poll `check()` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def stack_of(pid: int) -> str:
    """The Python stack of process `pid` now (py-spy, a dependency of ray[default]; it does not stop it)."""
    proc = subprocess.run([str(VENV / "bin" / "py-spy"), "dump", "--pid", str(pid), "--nonblocking"],
                          capture_output=True, text=True, timeout=30)
    return proc.stdout if proc.returncode == 0 else ""


def in_function(pid: int, function: str, module: str) -> bool:
    """Is process `pid` inside `function` of seedlab's `module` (e.g. 'finetune', 'seedlab/train/finetune.py')?"""
    return bool(re.search(rf"^\s+{function} \(\S*{re.escape(module)}:\d+\)", stack_of(pid), re.M))


def trial_processes(node_root: int) -> list[int]:
    """Live Tune trial processes (`ray::ImplicitFunc...`) of the Ray node started as process `node_root`,
    read from /proc: immediate, where Ray's state API (`ray list actors`) missed live trials in a loaded run."""
    table = proc_table()
    return sorted(p for p in descendants(node_root, table) if table[p][1].startswith("ray::ImplicitFunc"))


def training(pid: int) -> bool:
    """Is the trial in process `pid` inside seedlab's training loop (`seedlab.train.finetune.finetune`)?"""
    return in_function(pid, "finetune", "seedlab/train/finetune.py")


def trial_cell(pid: int) -> str:
    """The grid cell (run name) of the Tune trial in worker process `pid`. Tune runs a function trainable
    in its trial directory, whose name carries the cell: `..._cell=task_sst2_model_tiny_pretrain_seed_0_
    finetune_seed_1_...` (a grid over cell dicts) or `<trial id>_sst2_tiny_p0_f1` (a grid over cell indices
    with seedlab's directory names)."""
    name = Path(os.readlink(f"/proc/{pid}/cwd")).name
    m = re.search(r"cell=task_(.+?)_model_(.+?)_(?:method_(.+?)_)?pretrain_seed_(\d+)_finetune_seed_(\d+)", name)
    if m:
        task, model, method, pseed, fseed = m.groups()
    else:
        m = re.search(r"^[0-9a-f]+_\d+_([a-z0-9]+)_(.+?)_p(\d+)_f(\d+)(?:_(.+))?$", name)
        assert m, f"no cell in the trial directory name {name!r}"
        task, model, pseed, fseed, method = m.groups()
    return f"{task}/{model}/p{pseed}/f{fseed}" + ("" if method in (None, "standard") else f"/{method}")


def summarize_runs(runs: list[dict]) -> dict:
    """run name -> [status, ...] and trial key -> [run name, ...] of FINISHED runs."""
    by_name, finished_keys = {}, {}
    for r in runs:
        tags = {t["key"]: t["value"] for t in r["data"].get("tags", [])}
        name = tags.get("mlflow.runName", r["info"]["run_id"])
        by_name.setdefault(name, []).append(r["info"]["status"])
        if r["info"]["status"] == "FINISHED":
            finished_keys.setdefault(tags.get("seedlab.trial_key"), []).append(name)
    return {"by_name": by_name, "finished_keys": finished_keys}


def job_of(stack: Stack, driver_pid: int) -> str | None:
    """The Ray job id of the driver process `driver_pid` (once it has connected)."""
    for job in stack.ray_list("jobs"):
        if str((job.get("driver_info") or {}).get("pid")) == str(driver_pid):
            return job["job_id"]
    return None


def smoke_cells(finetune_seeds: tuple[int, ...], model: str = "tiny") -> dict[str, str]:
    """run name -> trial key of `sweeps/bert_sizes.py --profile smoke --models <model> --pretrain-seeds 0
    --finetune-seeds ...`, computed with seedlab's own functions from the sweep file's profile."""
    import runpy
    from dataclasses import replace

    from seedlab.run.trial import run_name, trial_key

    profiles = runpy.run_path(str(REPO / "sweeps" / "bert_sizes.py"), run_name="bert_sizes")["PROFILES"]
    spec = replace(profiles["smoke"], models=(model,), pretrain_seeds=(0,), finetune_seeds=finetune_seeds)
    return {run_name(c): trial_key(c) for c in spec.cells()}


def kept_results(key: str, since: float) -> list[Path]:
    """Prediction files a trial of trial key `key` wrote locally (after time `since`) before logging them:
    seedlab.run.trial keeps them in a `seedlab-<key>-*` temporary directory, and never removes it."""
    import tempfile

    roots = {tempfile.gettempdir(), "/tmp"}
    found = [Path(p) for root in roots for p in glob(f"{root}/seedlab-{key}-*/*.parquet")]
    return [p for p in found if p.stat().st_mtime >= since]


def unique(name: str) -> str:
    """An experiment name no earlier run used (matters when a stack is reused between test runs)."""
    import uuid

    return f"{name}-{uuid.uuid4().hex[:8]}"
