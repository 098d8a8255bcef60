"""Caption checker, the OpenAI-compatible endpoint backend against a local server, the local transformers
backend with a tiny random LM, and the stage's retry-then-reject rule."""
from __future__ import annotations

import csv
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import SAMPLE_MEDIA

from curation.captioning.backends import TransformersCaptioner
from curation.captioning.checker import check_caption, transcript_sentences
from curation.captioning.prompt import CaptionRequest
from curation.config import CaptionConfig
from curation.stages.captions import CaptionStage
from data_specs import speech_spans

sys.path.insert(0, str(Path(__file__).parent))
from speech_media import build_whisper_tokenizer  # noqa: E402

MEDIA = SAMPLE_MEDIA  # examples/media, shipped with the repository
GOOD = ("Two men in dark suits stand under stage lights. The man on the left says, <S>We leave tonight.<E>. "
        "He then adds, <S>Bring the map!<E> <AUDCAP>Male voice speaking, low hum of machinery.<ENDAUDCAP>")
TRANSCRIPT = {"language": "en", "segments": [
    {"text": "We leave tonight.", "start_s": 0.5, "end_s": 1.6, "speaker": "SPEAKER_00"},
    {"text": "Bring the map!", "start_s": 2.0, "end_s": 2.9, "speaker": "SPEAKER_00"}], "words": []}


def ovi_examples() -> list[str]:
    with open(MEDIA / "ovi_example_prompts_t2v.csv", newline="") as f:
        return [r["text_prompt"] for r in csv.DictReader(f)]


def test_checker_accepts_ovis_own_prompts() -> None:
    examples = ovi_examples()
    assert len(examples) >= 10
    for caption in examples:
        assert check_caption(caption, speech_spans(caption)) == [], caption[:80]


@pytest.mark.parametrize("caption,expected", [
    (GOOD.replace("map!<E>", "map!"), "unclosed <S>"),
    (GOOD.replace("tonight.<E>", "tonight."), "spans do not nest"),
    (GOOD.split("<AUDCAP>")[0], "no audio description"),
    (GOOD.replace("<ENDAUDCAP>", "<ENDAUDCAP> The end."), "must end the caption"),
    (GOOD.replace("<S>Bring the map!<E>", "<S>Bring the compass!<E>"), "'Bring the map!' is missing"),
    (GOOD.replace("<S>We leave tonight.<E>", "<S>Bring the map!<E>").replace("<S>Bring the map!<E> <AUD",
                                                                         "<S>We leave tonight.<E> <AUD"),
     "out of order"),
    (GOOD.replace("<AUDCAP>", "Audio: ").replace("<ENDAUDCAP>", ""), "this run wants <AUDCAP>"),
    (GOOD.replace("<S>", "<s>", 1), "malformed tag"),
])
def test_checker_rejects_broken_captions(caption: str, expected: str) -> None:
    problems = check_caption(caption, transcript_sentences([s["text"] for s in TRANSCRIPT["segments"]]))
    assert any(expected in p for p in problems), problems


def test_checker_style_and_no_speech_rules() -> None:
    prefix = GOOD.replace("<AUDCAP>", "Audio: ").replace("<ENDAUDCAP>", "")
    assert check_caption(prefix, ["We leave tonight.", "Bring the map!"], style="audio_prefix") == []
    assert any("transcript has none" in p for p in check_caption(GOOD, []))
    assert transcript_sentences(["Hello there. How are you?  Fine!"]) == ["Hello there.", "How are you?", "Fine!"]


class _ChatServer:
    """A local stand-in for vLLM's /v1/chat/completions that answers from a script and records requests."""

    def __init__(self, answers: list[str]):
        self.answers = list(answers)
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body})
                text = server.answers.pop(0) if server.answers else "no more answers"
                payload = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _row(tmp_path: Path) -> dict:
    return {"key": "closeup", "status": "kept", "mp4_path": str(MEDIA / "two_men_closeup_704x1280.mp4"),
            "transcript": TRANSCRIPT, "speech_spans": [(0.5, 2.9)], "scores": {"mean_volume_db": -20.0}}


def _stage(url: str, retries: int = 1, audio_mode: str = "input_audio") -> CaptionStage:
    config = CaptionConfig(enabled=True, retries=retries, frame_width=128,
                           endpoint={"base_url": url, "model": "qwen-omni-test", "audio_mode": audio_mode})
    return CaptionStage(config)


def test_endpoint_backend_good_caption_is_kept(tmp_path: Path) -> None:
    with _ChatServer([GOOD]) as server:
        [row] = _stage(server.url).process_batch([_row(tmp_path)])
    assert row["status"] == "kept" and row["caption"] == GOOD
    [req] = server.requests
    assert req["path"] == "/v1/chat/completions" and req["body"]["model"] == "qwen-omni-test"
    parts = req["body"]["messages"][-1]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 7 and all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in images)
    [audio] = [p for p in parts if p["type"] == "input_audio"]
    assert audio["input_audio"]["format"] == "wav" and len(audio["input_audio"]["data"]) > 1000
    text = parts[-1]["text"]
    assert "We leave tonight. Bring the map!" in text and "<AUDCAP>" in text


def test_endpoint_backend_bad_caption_is_retried_then_rejected(tmp_path: Path) -> None:
    bad = "Two men talk. <S>We leave tonight.<E>"  # no audio description, one sentence missing
    with _ChatServer([bad, bad, GOOD]) as server:
        [row] = _stage(server.url, retries=1).process_batch([_row(tmp_path)])
    assert len(server.requests) == 2  # first try + one retry; the good third answer is never asked for
    assert row["status"] == "rejected" and row["rejected_by"] == "captions" and row["reason"] == "bad_caption"
    assert "no audio description" in row["detail"]
    retry_text = server.requests[1]["body"]["messages"][-1]["content"][-1]["text"]
    assert "previous caption was rejected" in retry_text


def test_endpoint_retry_recovers_and_description_mode_sends_no_audio(tmp_path: Path) -> None:
    with _ChatServer(["garbage", GOOD]) as server:
        [row] = _stage(server.url, retries=2, audio_mode="description").process_batch([_row(tmp_path)])
    assert row["status"] == "kept" and len(server.requests) == 2
    parts = server.requests[0]["body"]["messages"][-1]["content"]
    assert not [p for p in parts if p["type"] == "input_audio"]
    assert "you cannot hear it" in parts[-1]["text"] and "mean volume -20 dB" in parts[-1]["text"]


def test_audio_only_segment_is_captioned_from_its_audio_and_words(tmp_path: Path) -> None:
    from ovi_pl.media.audio import load_audio, save_flac

    flac = save_flac(tmp_path / "seg.flac", load_audio(MEDIA / "two_men_closeup_704x1280.mp4"))
    segment = {"key": "seg", "status": "kept", "record_type": "audio_clip", "flac_path": str(flac),
               "path": str(MEDIA / "two_men_closeup_704x1280.mp4"), "transcript": TRANSCRIPT,
               "speech_spans": [(0.5, 2.9)], "scores": {}}
    good = "Two men speak, <S>We leave tonight.<E> <S>Bring the map!<E> <AUDCAP>Two male voices.<ENDAUDCAP>"
    with _ChatServer([good]) as server:
        [row] = _stage(server.url).process_batch([segment])
    assert row["status"] == "kept" and row["caption"] == good
    request = server.requests[0]["body"]["messages"]
    parts = request[-1]["content"]
    assert not [p for p in parts if p["type"] == "image_url"], "a segment has no frames to show"
    assert [p for p in parts if p["type"] == "input_audio"]
    assert "audio recording" in parts[-1]["text"] and "visible" not in parts[-1]["text"]
    assert "audio recordings" in request[0]["content"]


def test_unreachable_endpoint_is_a_rejection_with_the_reason(tmp_path: Path) -> None:
    [row] = _stage("http://127.0.0.1:9/v1", retries=0).process_batch([_row(tmp_path)])
    assert row["status"] == "rejected" and "cannot reach the caption endpoint" in row["detail"]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer random GPT-2 with a small byte-level BPE tokenizer, saved with save_pretrained."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny_lm")
    whisper_tok = build_whisper_tokenizer(out / "tok")  # reuse the offline BPE; any byte-level BPE works
    tok = PreTrainedTokenizerFast(tokenizer_object=whisper_tok.backend_tokenizer, eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    tok.save_pretrained(str(out / "lm"))
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=2048, n_embd=32, n_layer=1, n_head=2)
                    ).save_pretrained(str(out / "lm"))
    return out / "lm"


def test_local_transformers_backend_runs_and_checker_rejects_its_garbage(tiny_lm: Path, tmp_path: Path) -> None:
    captioner = TransformersCaptioner(tiny_lm, max_new_tokens=12)
    text = captioner.caption(CaptionRequest([], ["We leave tonight."], None, "speech", "audcap"))
    assert isinstance(text, str)
    assert check_caption(text, ["We leave tonight."])  # random weights: never a valid caption
    stage = CaptionStage(CaptionConfig(enabled=True, backend="local", retries=1,
                                       local={"model_dir": str(tiny_lm), "max_new_tokens": 8}), captioner=captioner)
    [row] = stage.process_batch([{**_row(tmp_path), "mp4_path": None, "flac_path": None}])
    assert row["status"] == "rejected" and row["reason"] == "bad_caption"


def test_caption_config_is_strict() -> None:
    with pytest.raises(ValueError, match="extra"):
        CaptionConfig(retry=3)
    with pytest.raises(ValueError, match="model_dir"):
        CaptionConfig(enabled=True, backend="local")
