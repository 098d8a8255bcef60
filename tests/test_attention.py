import pytest
import torch

from ovi_pl.models.attention import attention, attention_backend, sdpa_attention


def softmax_reference(q, k, v, k_lens=None):
    """Plain attention written out: scores, additive mask, softmax, weighted sum."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) / q.shape[-1] ** 0.5
    if k_lens is not None:
        masked = torch.arange(k.shape[1])[None, :] >= k_lens[:, None]
        scores = scores.masked_fill(masked[:, None, None, :], float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v.double()).to(q.dtype)


@pytest.mark.parametrize("k_lens", [None, torch.tensor([11, 4, 1])])
def test_sdpa_path_equals_softmax_reference(k_lens):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 7, 4, 16, generator=gen)
    k, v = torch.randn(2, 3, 11, 4, 16, generator=gen)
    torch.testing.assert_close(sdpa_attention(q, k, v, k_lens), softmax_reference(q, k, v, k_lens), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attention(q, k, v, k_lens), softmax_reference(q, k, v, k_lens), rtol=1e-5, atol=1e-5)


def test_masked_keys_do_not_influence_the_output():
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(1, 5, 2, 8, generator=gen)
    k, v = torch.randn(2, 1, 9, 2, 8, generator=gen)
    k_lens = torch.tensor([6])
    changed_k, changed_v = k.clone(), v.clone()
    changed_k[:, 6:] += 100
    changed_v[:, 6:] -= 100
    torch.testing.assert_close(attention(q, k, v, k_lens), attention(q, changed_k, changed_v, k_lens))
    assert not torch.allclose(attention(q, k, v), attention(q, changed_k, changed_v))


def test_backend_is_sdpa_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the CUDA test below covers the backend choice")
    assert attention_backend() == "sdpa"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (flash-attn path)")
@pytest.mark.parametrize("k_lens", [None, [9, 3]])
def test_cuda_backend_matches_softmax_reference_in_bf16(k_lens):
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(2, 6, 4, 64, generator=gen)
    k, v = torch.randn(2, 2, 9, 4, 64, generator=gen)
    lens = None if k_lens is None else torch.tensor(k_lens)
    expected = softmax_reference(q, k, v, lens)
    out = attention(*(x.cuda().bfloat16() for x in (q, k, v)), None if lens is None else lens.cuda())
    torch.testing.assert_close(out.float().cpu(), expected, rtol=2e-2, atol=2e-2)
