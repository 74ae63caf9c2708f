"""`clarify-jax export --push-to-hub`: the model card, and the upload over real HTTP to a fake Hub.

The fake Hub on 127.0.0.1 implements what huggingface_hub 2.4.0 calls for `create_repo` and
`upload_folder` of small files: POST /api/repos/create, POST /api/validate-yaml (README.md front
matter), POST /api/models/{repo}/preupload/{revision} (answering "regular" for every file, so the
files travel inline) and POST /api/models/{repo}/commit/{revision} (NDJSON: a header line, then one
line per file, base64). Anything else is answered 404 and recorded, so an unexpected call shows.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import threading
from pathlib import Path

import pytest
import yaml

from clarify_jax.commands.model_card import build_model_card, load_eval_summary
from clarify_jax.evaluate.metrics import humanevalcomm_metrics, pass_at_k_metrics
from tests.support.cli import run_cli
from tests.support.http_servers import LocalServer

REPO = "alice/clarify-tiny"


class FakeHub(LocalServer):
    def __init__(self):
        self.requests: list[dict] = []
        # repo id -> {"create": its payload, "files": {path: bytes}, "commits": [...]}
        self.repos: dict[str, dict] = {}
        self.lock = threading.Lock()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status: int, payload: dict):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self, method: str, body: bytes = b""):
                headers = {k.lower(): v for k, v in self.headers.items()}
                hub.requests.append({"method": method, "path": self.path, "headers": headers, "body": body})

            def do_GET(self):
                with hub.lock:
                    self._record("GET")
                self._reply(404, {"error": f"fake hub: GET {self.path} not implemented"})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hub.lock:
                    self._record("POST", raw)
                    status, payload = hub.handle(self.path.split("?")[0], raw)
                self._reply(status, payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def handle(self, path: str, raw: bytes) -> tuple[int, dict]:
        if path == "/api/repos/create":
            body = json.loads(raw)
            repo_id = f"{body['organization']}/{body['name']}"
            if repo_id in self.repos:
                return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
            self.repos[repo_id] = {"create": body, "files": {}, "commits": []}
            return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}
        if path == "/api/validate-yaml":
            content = json.loads(raw)["content"]
            match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
            try:
                meta = yaml.safe_load(match.group(1)) if match else None
            except yaml.YAMLError as e:
                return 400, {"errors": [{"message": str(e)}]}
            if not isinstance(meta, dict):
                return 400, {"errors": [{"message": "no YAML front matter"}]}
            return 200, {"warnings": []}
        match = re.match(r"^/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)$", path)
        if not match or match.group(1) not in self.repos:
            return 404, {"error": f"fake hub: POST {path} not found"}
        repo = self.repos[match.group(1)]
        if match.group(2) == "preupload":
            files = json.loads(raw)["files"]
            return 200, {
                "files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                    for f in files
                ]
            }
        lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        for line in lines:
            if line["key"] == "file":
                assert line["value"]["encoding"] == "base64"
                repo["files"][line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            elif line["key"] != "header":
                return 400, {"error": f"fake hub: commit line {line['key']} not supported"}
        oid = hashlib.sha1(raw).hexdigest()
        repo["commits"].append({"revision": match.group(3), "header": header})
        return 200, {"commitUrl": f"{self.url}/{match.group(1)}/commit/{oid}", "commitOid": oid}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Evaluation summaries as `clarify-jax evaluate` writes them (metrics from the real functions)


def comm_summary(model: str) -> dict:
    records = []
    # 1a: 4 items, 3 asked (2 good questions), 2 passed; original: 2 items, both code, 1 passed.
    for i, (asked, quality, passed, rate) in enumerate(
        [(True, 3, True, 1.0), (True, 3, False, 0.5), (True, 2, True, 1.0), (False, None, False, 0.0)]
    ):
        records.append(
            {
                "category": "1a",
                "round1_is_code": not asked,
                "communicated": asked,
                "question_quality": quality,
                "passed": passed,
                "test_pass_rate": rate,
            }
        )
    for passed in (True, False):
        records.append(
            {
                "category": "original",
                "round1_is_code": True,
                "communicated": False,
                "question_quality": None,
                "passed": passed,
                "test_pass_rate": 1.0 if passed else 0.25,
            }
        )
    return {
        "benchmark": "humanevalcomm",
        "model": model,
        "evaluator": "rules",
        "items": 6,
        "done": 6,
        "failed": 0,
        "complete": True,
        "errors": [],
        "wall_s": 1.0,
        "metrics": humanevalcomm_metrics(records),
        "settings": {},
    }


def humaneval_summary(model: str) -> dict:
    records = [
        {"problem_id": f"HumanEval/{p}", "passed": ok, "test_pass_rate": 1.0 if ok else 0.0}
        for p, ok in [(0, True), (1, False), (2, True), (3, True)]
    ]
    return {
        "benchmark": "humaneval",
        "model": model,
        "evaluator": None,
        "items": 4,
        "done": 4,
        "failed": 0,
        "complete": True,
        "metrics": pass_at_k_metrics(records, ks=(1,)),
        "settings": {},
    }


# --------------------------------------------------------------------------------------------
# A hand-made training run: the files export and the card read, without training anything


def make_run(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for p in range(3):
        for kind in ("original", "ambiguous", "inconsistent", "incomplete"):
            rows.append(
                {
                    "id": f"mbpp/{p}/{kind}",
                    "problem_id": f"mbpp/{p}",
                    "type": kind,
                    "problem": "...",
                    "answer": "...",
                    "source": "mbpp",
                    "backend": "rules",
                    "dialogue": [],
                }
            )
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = tmp_path / "models" / "deepseek-coder-6.7b-instruct"
    base.mkdir(parents=True)
    (base / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    config = {
        "model": str(base),
        "out": str(tmp_path / "run"),
        "stages": [
            {
                "steps": 2,
                "name": "clarify",
                "mixture": "clear=1,clarify=4",
                "clarify_weight": 1.0,
                "code_weight": 0.5,
                "learning_rate": 1e-5,
                "warmup_steps": 1,
            },
            {
                "steps": 3,
                "name": "joint",
                "mixture": "",
                "clarify_weight": 1.0,
                "code_weight": 1.0,
                "learning_rate": 5e-6,
                "warmup_steps": 0,
            },
        ],
        "data": {
            "sources": [
                f"clear={data / 'train.jsonl'}:original",
                f"clarify={data / 'train.jsonl'}:ambiguous,inconsistent,incomplete",
                f"gone={tmp_path / 'missing.jsonl'}",
            ],
            "validation": [f"val={data / 'validation.jsonl'}"],
            "seq_len": 128,
            "batch_size": 8,
            "round1_instruction": True,
            "answer_prefix": True,
        },
        "optimizer": {
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "clip_norm": 1.0,
            "schedule": "linear",
            "final_lr_ratio": 0.0,
        },
        "lora": {
            "rank": 8,
            "alpha": 16.0,
            "dropout": 0.05,
            "targets": ["q_proj", "k_proj", "v_proj", "o_proj"],
        },
        "grad_accum": 2,
        "param_dtype": "float32",
        "compute_dtype": "bfloat16",
    }
    run = tmp_path / "run"
    (run / "checkpoints" / "3" / "meta").mkdir(parents=True)
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "architectures": ["LlamaForCausalLM"],
                "num_hidden_layers": 2,
                "hidden_size": 64,
            }
        )
    )
    (run / "train_config.json").write_text(json.dumps(config, indent=2))
    (run / "checkpoints" / "3" / "meta" / "metadata").write_text(
        json.dumps(
            {
                "stage": 1,
                "model": str(base),
                "lora": config["lora"],
                "param_dtype": "float32",
                "config": config,
            }
        )
    )
    metrics = [
        {"split": "train", "step": 1, "loss": 2.5, "loss/clarify": 2.25, "loss/code": 0.5, "stage": 0},
        {"split": "train", "step": 3, "loss": 1.625, "loss/clarify": 1.125, "loss/code": 0.5, "stage": 1},
        {"split": "validation", "step": 3, "loss": 1.75, "loss/clarify": 1.3125, "loss/code": 0.4375},
        {"split": "train", "step": 5, "loss": 9.0, "loss/clarify": 9.5, "loss/code": 9.25, "stage": 1},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    return run


def front_matter(card: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", card, re.S)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


def test_card_of_a_training_run(tmp_path):
    run = make_run(tmp_path)
    summary_path = tmp_path / "eval" / "summary.json"
    summary_path.parent.mkdir()
    summary_path.write_text(json.dumps(comm_summary("runs/x/hf")))
    card = build_model_card(
        run,
        None,
        repo_id=REPO,
        eval_summaries=[load_eval_summary(summary_path.parent), humaneval_summary("runs/x/hf")],
    )

    meta = front_matter(card)
    assert meta["library_name"] == "transformers"
    assert meta["base_model"] == "deepseek-ai/deepseek-coder-6.7b-instruct"
    assert set(meta["tags"]) == {"clarifycoder", "code", "clarification", "lora"}
    assert "arxiv.org/abs/2504.16331" in card
    # Training data: sources with their counts per type, the unreadable one said so.
    assert "| `clear` | `train.jsonl` | original 3 | 3 (3 problems) | mbpp (backend: rules) |" in card
    assert (
        "| `clarify` | `train.jsonl` | ambiguous 3, inconsistent 3, incomplete 3 | 9 (3 problems) |" in card
    )
    assert "| `gone` | `missing.jsonl` | all | not readable at export |" in card
    # The stages table.
    assert "| Stage | Name | Steps | Mixture | Clarify weight | Code weight | Peak LR | Warmup |" in card
    assert "| 1 | clarify | 2 | clear 20%, clarify 80% | 1 | 0.5 | 1e-05 | 1 |" in card
    assert "| 2 | joint | 3 | all sources equally | 1 | 1 | 5e-06 | 0 |" in card
    assert "LoRA, rank 8, alpha 16, dropout 0.05, on q_proj, k_proj, v_proj, o_proj" in card
    assert "| Steps | 3 of 5 |" in card
    # Losses up to the exported step (3), not the later record of step 5.
    assert "| train, first | 1 | 2.25 | 0.5 | 2.5 |" in card
    assert "| train, final | 3 | 1.125 | 0.5 | 1.625 |" in card
    assert "| validation, final | 3 | 1.312 | 0.4375 | 1.75 |" in card
    assert "9.25" not in card
    # Evaluation, as the leaderboard lays it out: pass@1 original 50%, modified 50%; test pass rate
    # original 62.5%, modified 62.5%; comm. rate 75%; good question rate 50%.
    assert (f"| {REPO} | 50.00% | 50.00% | 62.50% | 62.50% | 75.00% | 50.00% |") in card
    assert "| DeepSeek Coder (published) | 71.78% |" in card
    assert "#### Category 1a (4 items)" in card
    assert "### HumanEval" in card and f"| {REPO} | 4 | 4 | 75.00% | 75.00% |" in card


def test_card_of_a_plain_source_says_only_what_is_known(tiny_models):
    source = tiny_models("llama")
    card = build_model_card(source, source)
    meta = front_matter(card)
    assert "base_model" not in meta and "lora" not in meta["tags"]
    assert "LlamaForCausalLM" in card and "not a training run" in card
    for absent in ("## Training stages", "## Training data", "## Evaluation", "## Training losses"):
        assert absent not in card


@pytest.mark.slow
def test_push_to_hub_uploads_the_export_and_its_card(tiny_models, tmp_path):
    source = tiny_models("llama")
    # HF_HOME: huggingface_hub caches things there; not in the user's home.
    env = {
        "HF_TOKEN": "hf_test_token",
        "HF_ENDPOINT": None,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf_home"),
    }
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(comm_summary("hf")))
    out = tmp_path / "hf"
    with FakeHub() as hub:
        env["HF_ENDPOINT"] = hub.url
        result = run_cli(
            "export",
            "--source",
            source,
            "--out",
            out,
            "--push-to-hub",
            REPO,
            "--private",
            "--eval-summary",
            summary,
            "--commit-message",
            "first upload",
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert f"uploaded to {REPO}: {hub.url}/{REPO}/commit/" in result.stdout

        local = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert "README.md" in local and "model.safetensors" in local and "config.json" in local
        repo = hub.repos[REPO]
        assert set(repo["files"]) == set(local)  # the exported files plus README.md, nothing else
        for name, data in local.items():
            assert sha256(repo["files"][name]) == sha256(data), name
        assert repo["create"]["visibility"] == "private" and repo["create"]["type"] == "model"
        assert repo["commits"] == [
            {"revision": "main", "header": {"summary": "first upload", "description": ""}}
        ]
        posts = [r for r in hub.requests if r["method"] == "POST"]
        assert [r["path"] for r in posts] == [
            "/api/repos/create",
            "/api/validate-yaml",
            f"/api/models/{REPO}/preupload/main",
            f"/api/models/{REPO}/commit/main",
        ]
        assert all(r["headers"].get("authorization") == "Bearer hf_test_token" for r in posts)
        # huggingface_hub's own best-effort telemetry (the agent registry; a 404 is ignored): no other GET.
        assert {r["path"] for r in hub.requests if r["method"] == "GET"} <= {"/api/agent-harnesses"}
        card = repo["files"]["README.md"].decode()
        assert f"| {REPO} | 50.00% | 50.00% | 62.50% | 62.50% | 75.00% | 50.00% |" in card

        # A second push to the same repository (now existing: 409 on create) commits again.
        again = run_cli("export", "--source", source, "--out", out, "--push-to-hub", REPO, env=env)
        assert again.returncode == 0, again.stderr
        assert len(repo["commits"]) == 2
        assert "## Evaluation" not in repo["files"]["README.md"].decode()


@pytest.mark.slow
def test_push_without_token_fails_before_any_work(tiny_models, tmp_path):
    out = tmp_path / "hf"
    with FakeHub() as hub:
        result = run_cli(
            "export",
            "--source",
            tiny_models("llama"),
            "--out",
            out,
            "--push-to-hub",
            REPO,
            env={
                "HF_TOKEN": None,
                "HF_ENDPOINT": hub.url,
                "HF_HUB_OFFLINE": "0",
                "HF_HOME": str(tmp_path / "hf_home"),
            },
        )
        assert result.returncode == 2
        assert "HF_TOKEN" in result.stderr and "Traceback" not in result.stderr
        assert hub.requests == []
    assert not out.exists()


def test_push_checks_repo_id_and_offline_mode(monkeypatch):
    from huggingface_hub import constants

    from clarify_jax.hf.hub import HubError, check_push

    monkeypatch.setenv("HF_TOKEN", "hf_x")
    with pytest.raises(HubError, match="user/name"):
        check_push("just-a-name")
    with pytest.raises(HubError, match="--push-to-hub"):
        check_push("alice/bad name!")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        check_push(REPO)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert check_push(REPO) == "hf_x"
