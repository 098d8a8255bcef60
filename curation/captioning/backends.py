"""Captioner backends: an OpenAI-compatible chat endpoint, and a local transformers model."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal, Protocol

from .prompt import CaptionRequest, build_messages, instructions


class Captioner(Protocol):
    def caption(self, request: CaptionRequest) -> str:
        """One caption attempt (unchecked)."""
        ...


class CaptionBackendError(RuntimeError):
    """The backend could not produce any text (network, HTTP error, malformed response)."""


class OpenAIChatCaptioner:
    """POST {base_url}/chat/completions, as served by vLLM (`vllm serve Qwen/Qwen2.5-Omni-7B`), the
    OpenAI API or any compatible server. Standard library only: no client package to pin."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, timeout_s: float = 120.0,
                 max_tokens: int = 512, temperature: float = 0.2,
                 audio_mode: Literal["input_audio", "description"] = "input_audio"):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not self.api_key:
            raise ValueError(f"captions.endpoint.api_key_env names {api_key_env}, which is not set in the environment")
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.audio_mode = audio_mode

    def caption(self, request: CaptionRequest) -> str:
        body = {"model": self.model, "messages": build_messages(request, self.audio_mode),
                "max_tokens": self.max_tokens, "temperature": self.temperature}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        http = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(http, timeout=self.timeout_s) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise CaptionBackendError(f"{self.url} answered HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise CaptionBackendError(f"cannot reach the caption endpoint {self.url}: {exc}; is the server up "
                                      "(captions.endpoint.base_url)?") from exc
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise CaptionBackendError(f"{self.url} returned no choices[0].message.content: {str(payload)[:300]}") from exc
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content).strip()


def local_model_problem(model_dir: str | Path) -> str | None:
    """What is wrong with a local captioner directory (None: nothing); checked when the config loads too."""
    if not (Path(model_dir) / "config.json").is_file():
        return (f"captions.local.model_dir: {model_dir} has no config.json; give a directory saved with "
                "save_pretrained (model and tokenizer)")
    return None


class TransformersCaptioner:
    """A local causal LM directory (AutoModelForCausalLM + AutoTokenizer). Text only: it reads the
    transcript and the audio description, not the frames, so use it for audio-only rows or as a
    cheap rewriter; a vision-language model belongs behind the endpoint backend."""

    def __init__(self, model_dir: str | Path, max_new_tokens: int = 256, device: str = "cpu", seed: int = 0):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_dir)
        problem = local_model_problem(path)
        if problem:
            raise FileNotFoundError(problem)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).to(device).eval()
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.seed = seed

    def caption(self, request: CaptionRequest) -> str:
        import torch

        text = instructions(request)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        inputs = self.tokenizer(text, return_tensors="pt").to(self.device)
        torch.manual_seed(self.seed)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
