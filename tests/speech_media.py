"""Synthetic media with known content for the speech, sync and caption tests (seconds to build).

Video frames and audio are made with numpy and encoded with ffmpeg, so event times are exact;
speech comes from espeak-ng (real, intelligible speech without any download).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


def _encode(frames: np.ndarray, fps: int, audio: np.ndarray | None, out: Path) -> Path:
    """Encode [T, H, W] grey uint8 frames (and mono float audio at 16 kHz) to H.264/AAC mp4."""
    t, h, w = frames.shape
    args = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}",
            "-r", str(fps), "-i", "pipe:0"]
    wav = out.with_suffix(".input.wav")
    if audio is not None:
        import soundfile

        soundfile.write(str(wav), audio.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        args += ["-i", str(wav), "-c:a", "aac", "-b:a", "128k"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", "-shortest", str(out)]
    subprocess.run(args, input=frames.tobytes(), check=True)
    wav.unlink(missing_ok=True)
    return out


def flash_events(num_frames: int, seed: int = 0, min_gap: int = 9, max_gap: int = 17) -> list[int]:
    """Irregularly spaced event frames, so no lag but the true one lines them all up."""
    rng = np.random.default_rng(seed)
    events, t = [], 6
    while t < num_frames - 8:
        events.append(t)
        t += int(rng.integers(min_gap, max_gap + 1))
    return events


def make_flash_clip(out: Path, audio_shift_frames: int, fps: int = 25, seconds: float = 6.0,
                    size: tuple[int, int] = (160, 120)) -> tuple[Path, list[int]]:
    """A white square flashes on black (appears at once, fades over 6 frames); a click sounds at each
    flash, delayed by `audio_shift_frames` frames (negative: the click comes early)."""
    w, h = size
    n = int(round(fps * seconds))
    events = flash_events(n)
    level = np.zeros(n)
    for e in events:
        for k in range(6):
            if e + k < n:
                level[e + k] = max(level[e + k], 1.0 - k / 6)
    frames = np.zeros((n, h, w), np.uint8)
    frames[:, h // 4:3 * h // 4, w // 3:2 * w // 3] = (255 * level)[:, None, None].astype(np.uint8)
    audio = np.zeros(int(round(seconds * SAMPLE_RATE)), np.float32)
    rng = np.random.default_rng(1)
    click = (rng.standard_normal(480) * np.exp(-np.arange(480) / 80.0) * 0.8).astype(np.float32)
    for e in events:
        start = int(round((e + audio_shift_frames) * SAMPLE_RATE / fps))
        if 0 <= start < len(audio) - len(click):
            audio[start:start + len(click)] += click
    audio += 1e-3 * rng.standard_normal(len(audio)).astype(np.float32)  # room noise, not digital silence
    return _encode(frames, fps, audio, out), events


def espeak(text: str, out: Path, speed: int = 150) -> Path:
    """Real speech at 16 kHz mono from espeak-ng."""
    raw = out.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(raw), text], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(raw), "-ac", "1", "-ar", str(SAMPLE_RATE),
                    str(out)], check=True)
    raw.unlink(missing_ok=True)
    return out


def speech_with_silence(out: Path, text: str, lead_s: float = 1.0, tail_s: float = 1.5) -> tuple[Path, float, float]:
    """espeak speech padded with quiet noise; returns the file and where the speech starts and ends (s)."""
    import soundfile

    speech_path = espeak(text, out.with_suffix(".speech.wav"))
    speech, _ = soundfile.read(str(speech_path), dtype="float32")
    speech_path.unlink(missing_ok=True)
    rng = np.random.default_rng(2)
    pad = lambda s: 1e-3 * rng.standard_normal(int(s * SAMPLE_RATE)).astype(np.float32)  # noqa: E731
    audio = np.concatenate([pad(lead_s), speech, pad(tail_s)])
    soundfile.write(str(out), audio, SAMPLE_RATE, subtype="PCM_16")
    return out, lead_s, lead_s + len(speech) / SAMPLE_RATE


def silent_clip(out: Path, seconds: float = 4.0, fps: int = 24) -> Path:
    """A grey clip with a digitally silent track."""
    frames = np.full((int(seconds * fps), 64, 96), 128, np.uint8)
    return _encode(frames, fps, np.zeros(int(seconds * SAMPLE_RATE), np.float32), out)


# ---- tiny models in their real formats (random weights; nothing downloaded) ----

# Whisper's token layout: 50257 text tokens, then these, then 99 language tokens in between, then
# 1501 timestamps (added by ctranslate2's converter): Whisper large-v3's layout (100 languages, 128 mel
# bins, 51866 tokens). ctranslate2 decides multilingual (needed for language detection) from the
# vocabulary size, so the text part is padded to 50257.
_WHISPER_LANGS = ("en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur "
                  "hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si "
                  "km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha "
                  "ba jw su yue").split()
_TEXT_VOCAB = 50257
_CORPUS = ["the quick brown fox jumps over the lazy dog", "hello world, this is a test of speech",
           "she says we are going to the kitchen now", "a man speaks quietly on a stage"] * 20


def build_whisper_tokenizer(out_dir: Path) -> object:
    """A byte-level BPE tokenizer with Whisper's special tokens, as a transformers WhisperTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import WhisperTokenizerFast

    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    probe = Tokenizer(models.BPE())
    probe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    probe.train_from_iterator(_CORPUS, trainer)
    vocab = dict(probe.get_vocab())
    merges = [tuple(m) for m in __import__("json").loads(probe.to_str())["model"]["merges"]]
    for i in range(_TEXT_VOCAB - len(vocab)):  # unreachable fillers: no merge produces them
        vocab[f"\u0120\u0120fill{i}"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    langs = [f"<|{code}|>" for code in _WHISPER_LANGS]
    specials = ["<|endoftext|>", "<|startoftranscript|>", *langs, "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    hf = WhisperTokenizerFast(tokenizer_object=tok, unk_token="<|endoftext|>", bos_token="<|endoftext|>",
                              eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    hf.add_special_tokens({"additional_special_tokens": specials[1:]})
    assert hf.convert_tokens_to_ids("<|endoftext|>") == _TEXT_VOCAB
    hf.save_pretrained(str(out_dir))
    return hf


def build_tiny_whisper(out_dir: Path, ct2_dir: Path) -> Path:
    """A 1-layer random Whisper saved by transformers, converted to the ctranslate2 directory that
    faster-whisper and whisperx load (model.bin, config.json, vocabulary, tokenizer.json)."""
    import json
    import shutil

    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    out_dir, ct2_dir = Path(out_dir), Path(ct2_dir)
    tok = build_whisper_tokenizer(out_dir)
    vocab_size = _TEXT_VOCAB + 2 + len(_WHISPER_LANGS) + 6 + 1501
    sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
    config = WhisperConfig(vocab_size=vocab_size, num_mel_bins=128, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, d_model=32,
                           encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=1500,
                           max_target_positions=448, decoder_start_token_id=sot, bos_token_id=_TEXT_VOCAB,
                           eos_token_id=_TEXT_VOCAB, pad_token_id=_TEXT_VOCAB, suppress_tokens=[],
                           begin_suppress_tokens=[220, _TEXT_VOCAB])
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    # Random decoders babble up to the length limit (slow, and too many characters for alignment to
    # place). A constant final hidden state pointing at <|endoftext|> makes every step prefer it;
    # the first step cannot end (begin_suppress_tokens), so each window decodes one random token.
    with torch.no_grad():
        eot = torch.randn(config.d_model)  # its row starts at zero: <|endoftext|> doubles as the padding id
        model.model.decoder.embed_tokens.weight[_TEXT_VOCAB] = eot / eot.norm()
        model.model.decoder.layer_norm.weight.zero_()
        model.model.decoder.layer_norm.bias.copy_(10 * eot / eot.norm())
    model.generation_config.lang_to_id = {f"<|{c}|>": tok.convert_tokens_to_ids(f"<|{c}|>") for c in _WHISPER_LANGS}
    model.save_pretrained(str(out_dir))
    WhisperFeatureExtractor(feature_size=128).save_pretrained(str(out_dir))
    TransformersConverter(str(out_dir)).convert(str(ct2_dir), force=True)
    for name in ("tokenizer.json", "preprocessor_config.json"):
        shutil.copy(out_dir / name, ct2_dir / name)
    json.loads((ct2_dir / "config.json").read_text())  # the converter wrote a readable config
    return ct2_dir


def build_tiny_wav2vec2(out_dir: Path) -> Path:
    """A 1-layer random Wav2Vec2ForCTC with a character vocabulary and its processor, the directory
    layout whisperx.load_align_model reads (config.json, weights, vocab.json, preprocessor_config.json)."""
    import json

    import torch
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz'"])}
    (out_dir / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(out_dir / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=False)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(out_dir))
    config = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, pad_token_id=0)
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).eval().save_pretrained(str(out_dir))
    return out_dir


def build_tiny_diarization_pipeline(out_dir: Path) -> Path:
    """A pyannote speaker-diarization pipeline directory in the layout of speaker-diarization-community-1
    (config.yaml naming `$model/segmentation`, `$model/embedding`, `$model/plda`), built offline.

    Segmentation is the real PyanNet model whisperx ships for its VAD (3 speakers, 5 s windows), so
    speech turns are where the speech is; the WeSpeaker ResNet34 embedding has random weights and the
    PLDA is an identity-like transform, so speaker labels are consistent but not meaningful.
    """
    import shutil

    import lightning
    import torch
    import whisperx
    import yaml
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    out_dir = Path(out_dir)
    for sub in ("segmentation", "embedding", "plda"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(whisperx.__file__).parent / "assets" / "pytorch_model.bin",
                out_dir / "segmentation" / "pytorch_model.bin")

    torch.manual_seed(0)
    embedding = WeSpeakerResNet34().eval()
    # pyannote's own WeSpeaker conversion gives embedding checkpoints these specifications.
    embedding.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK,
                                              duration=5.0)
    checkpoint = {"state_dict": embedding.state_dict(), "pytorch-lightning_version": lightning.__version__}
    embedding.on_save_checkpoint(checkpoint)  # adds pyannote.audio's versions/architecture/specifications
    torch.save(checkpoint, out_dir / "embedding" / "pytorch_model.bin")

    dim, lda_dim = 256, 128  # WeSpeaker ResNet34 embeddings; community-1's PLDA space
    rng = np.random.default_rng(0)
    lda = np.linalg.qr(rng.standard_normal((dim, dim)))[0][:, :lda_dim]
    np.savez(out_dir / "plda" / "xvec_transform.npz", mean1=np.zeros(dim), mean2=np.zeros(lda_dim), lda=lda)
    np.savez(out_dir / "plda" / "plda.npz", mu=np.zeros(lda_dim), tr=np.eye(lda_dim),
             psi=np.linspace(5.0, 0.5, lda_dim))

    config = {"pipeline": {"name": "pyannote.audio.pipelines.SpeakerDiarization",
                           "params": {"segmentation": "$model/segmentation", "embedding": "$model/embedding",
                                      "plda": "$model/plda", "clustering": "VBxClustering",
                                      "segmentation_step": 0.1, "embedding_exclude_overlap": True,
                                      "segmentation_batch_size": 32, "embedding_batch_size": 32}},
              "params": {"segmentation": {"threshold": 0.5, "min_duration_off": 0.0},
                         "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8}}}
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return out_dir
