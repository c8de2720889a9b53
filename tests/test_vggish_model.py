"""VGGish model, postprocessor and extractor, driven through the real weight-loading path with generated weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rbl.vggish import (
    CNN_FILENAME,
    CPU_CNN_BATCH,
    PCA_FILENAME,
    PCA_SHAPES,
    Postprocessor,
    VGGish,
    VGGishExtractor,
    load_extractor,
    load_state_dicts,
    official_state_dict_shapes,
)

# Keys and shapes of harritaylor/torchvggish v0.1 vggish-10086976.pth, written out independently of rbl.
OFFICIAL_SHAPES = {
    "features.0.weight": (64, 1, 3, 3),
    "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3),
    "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3),
    "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3),
    "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3),
    "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3),
    "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 12288),
    "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096),
    "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096),
    "embeddings.4.bias": (128,),
}


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Official keys/shapes with He-scaled random weights, so activations stay O(1) through the net."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in OFFICIAL_SHAPES.items():
        if key.endswith("weight"):
            fan_in = int(np.prod(shape[1:]))
            out[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            out[key] = torch.randn(shape, generator=g) * 0.1
    return out


def random_pca(seed: int = 1) -> dict[str, np.ndarray]:
    """PCA params as numpy arrays, pca_means as (128, 1) like the published file's source."""
    rng = np.random.default_rng(seed)
    return {
        "pca_eigen_vectors": (rng.standard_normal((128, 128)) / np.sqrt(128) * 3).astype(np.float32),
        "pca_means": (rng.standard_normal((128, 1)) * 0.3).astype(np.float32),
    }


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vggish_weights")
    torch.save(random_state_dict(), folder / CNN_FILENAME)
    torch.save(random_pca(), folder / PCA_FILENAME)
    return folder


@pytest.fixture(scope="module")
def examples():
    return torch.randn(5, 96, 64, generator=torch.Generator().manual_seed(3)) * 2 - 3


def ref_postprocess(embeddings: np.ndarray, pca: dict[str, np.ndarray]) -> np.ndarray:
    """vggish_postprocess.Postprocessor.postprocess in numpy, with torchvggish's rounding.

    (The TensorFlow original truncates with .astype(np.uint8); torchvggish rounds. rbl follows torchvggish.)
    """
    pca_applied = np.dot(pca["pca_eigen_vectors"], (embeddings.T - pca["pca_means"].reshape(-1, 1))).T
    clipped = np.clip(pca_applied, -2.0, 2.0)
    return np.round((clipped - -2.0) * (255.0 / (2.0 - -2.0)))


def test_official_shapes():
    assert official_state_dict_shapes() == OFFICIAL_SHAPES
    assert PCA_SHAPES == {"pca_eigen_vectors": (128, 128), "pca_means": (128,)}
    assert {k: tuple(v.shape) for k, v in VGGish(final_relu=False).state_dict().items()} == OFFICIAL_SHAPES


def test_generated_weights_load_strictly(weights_dir):
    cnn, pca = load_state_dicts(weights_dir / CNN_FILENAME, weights_dir / PCA_FILENAME)
    VGGish().load_state_dict(cnn, strict=True)
    assert pca["pca_means"].shape == (128,) and pca["pca_means"].dtype == torch.float32
    assert pca["pca_eigen_vectors"].dtype == torch.float32


def test_extractor_output_is_quantised(weights_dir, examples):
    extractor = load_extractor(weights_dir, download=False, verify=False)
    assert not extractor.training
    with torch.no_grad():
        out = extractor(examples)
    assert out.shape == (5, 128) and out.dtype == torch.float32
    assert torch.all(out == out.round()) and out.min() >= 0 and out.max() <= 255
    assert len(out.unique()) > 10  # not all saturated


def test_extractor_matches_manual_pipeline(weights_dir, examples):
    extractor = load_extractor(weights_dir, download=False, verify=False)
    state, pca = random_state_dict(), random_pca()
    with torch.no_grad():
        raw = extractor.vggish(examples).numpy()
        out = extractor(examples).numpy()
    np.testing.assert_array_equal(extractor.vggish.state_dict()["embeddings.4.bias"], state["embeddings.4.bias"])
    ref = ref_postprocess(raw.astype(np.float64), {k: v.astype(np.float64) for k, v in pca.items()})
    assert np.all(np.abs(out - ref) <= 1)
    assert np.mean(out == ref) > 0.99  # only float32-vs-float64 ties at .5 may round differently


def test_final_relu_only_clamps_negatives(weights_dir, examples):
    with_relu = load_extractor(weights_dir, download=False, final_relu=True, verify=False).vggish
    without = load_extractor(weights_dir, download=False, final_relu=False, verify=False).vggish
    with torch.no_grad():
        # torchvggish's forward, step by step through the submodules.
        x = with_relu.features(examples[:, None])
        x = torch.transpose(x, 1, 3)
        x = torch.transpose(x, 1, 2)
        x = x.contiguous().view(x.size(0), -1)
        pre = with_relu.embeddings[:5](x)
        a, b = with_relu(examples), without(examples)
        a4 = with_relu(examples[:, None])
    torch.testing.assert_close(b, pre)
    torch.testing.assert_close(a, torch.relu(pre))
    torch.testing.assert_close(a4, a)
    negative = pre < 0
    assert negative.any() and (~negative).any()
    assert torch.equal(a[~negative], b[~negative])
    assert torch.all(a[negative] == 0)


@pytest.mark.parametrize("means_shape", [(128,), (128, 1)])
def test_postprocessor_matches_numpy(means_shape):
    rng = np.random.default_rng(7)
    pca = {
        "pca_eigen_vectors": rng.standard_normal((128, 128)) / 4,
        "pca_means": rng.standard_normal(means_shape),
    }
    emb = rng.standard_normal((9, 128)).astype(np.float32)
    post = Postprocessor({k: torch.from_numpy(v) for k, v in pca.items()})
    out = post(torch.from_numpy(emb)).numpy()
    ref = ref_postprocess(emb.astype(np.float64), pca)
    assert np.all(np.abs(out - ref) <= 1) and np.mean(out == ref) > 0.99
    unq = Postprocessor(pca, quantize=False)(torch.from_numpy(emb)).numpy()
    ref_pca = np.dot(pca["pca_eigen_vectors"], emb.T - pca["pca_means"].reshape(-1, 1)).T
    np.testing.assert_allclose(unq, ref_pca, atol=1e-4, rtol=1e-5)
    # Rounding (torchvggish) vs truncation (TensorFlow) differ by at most one step.
    truncated = ((np.clip(ref_pca, -2, 2) + 2) * 255 / 4).astype(np.uint8)
    assert np.all((out - truncated >= 0) & (out - truncated <= 1))


def test_pool_is_per_clip_mean():
    rng = np.random.default_rng(5)
    emb = rng.integers(0, 256, (7, 128)).astype(np.float32)
    clip_index = np.array([0, 0, 1, 3, 3, 3, 1])
    pooled = VGGishExtractor.pool(torch.from_numpy(emb), torch.from_numpy(clip_index), 4).numpy()
    assert pooled.shape == (4, 128)
    for c in range(4):
        rows = emb[clip_index == c]
        np.testing.assert_allclose(pooled[c], rows.mean(axis=0) if len(rows) else 0.0, rtol=1e-6)


def test_cnn_batches_give_the_whole_batch_result(weights_dir, examples):
    extractor = load_extractor(weights_dir, download=False, verify=False)
    with torch.no_grad():
        extractor.cnn_batch = None
        whole = extractor(examples)
        extractor.cnn_batch = 2  # 5 examples: calls of 2, 2 and 1
        batched = extractor(examples)
        raw = extractor.embed_raw(examples)
    assert raw.shape == (5, 128)
    torch.testing.assert_close(raw, extractor.vggish(examples), rtol=1e-4, atol=1e-4)  # other GEMM blocking
    assert torch.all((batched - whole).abs() <= 1)  # quantised: float rounding may move a .5 tie


def test_loaded_extractor_is_channels_last_in_cpu_batches_and_matches_nchw(weights_dir, examples):
    extractor = load_extractor(weights_dir, download=False, verify=False)
    assert extractor.cnn_batch == CPU_CNN_BATCH
    convs = [m for m in extractor.vggish.features if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    nchw = VGGish()
    nchw.load_state_dict(random_state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(extractor.vggish(examples), nchw.eval()(examples), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_reduced_precision_cnn_stays_close_to_float32(weights_dir, examples, precision):
    full = load_extractor(weights_dir, download=False, verify=False)
    reduced = load_extractor(weights_dir, download=False, verify=False, precision=precision)
    with torch.no_grad():
        exact, approx = full.embed_raw(examples), reduced.embed_raw(examples)
        pooled = reduced(examples)
    assert approx.dtype == torch.float32 and pooled.dtype == torch.float32
    assert not torch.equal(approx, exact)  # the autocast took effect
    relative = (approx - exact).norm(dim=1) / exact.norm(dim=1)
    assert relative.max() < 1e-2  # the bound for reduced precision


def test_unknown_precision_is_refused(weights_dir):
    with pytest.raises(ValueError, match="precision"):
        load_extractor(weights_dir, download=False, verify=False, precision="int8")
