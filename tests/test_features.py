"""Per-parameter features against a plain reference computation."""
import torch

from l2o_graphs import features


def _reference(p, g, m, v, step):
    rms = lambda x: (x.square().mean() + features.EPS ** 2).sqrt()  # noqa: E731
    v_hat = v / (1 - features.BETA2 ** step)
    cols = [p / rms(p), g / rms(g)] + [m[..., k] / rms(m[..., k]) for k in range(5)]
    denom = (v_hat + features.EPS ** 2).sqrt()
    cols.append((g / denom).clamp(-features.RATIO_CLIP, features.RATIO_CLIP))
    for k, b in enumerate(features.BETAS):
        cols.append((m[..., k] / (1 - b ** step) / denom).clamp(-features.RATIO_CLIP, features.RATIO_CLIP))
    return torch.stack(cols, -1)


def test_moments_are_exponential_moving_averages():
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(4, 3, generator=gen) for _ in range(4)]
    m, v = features.init_moments({"w": grads[0]})
    m, v = m["w"], v["w"]
    for g in grads:
        m, v = features.accumulate(g, m, v)
    for k, b in enumerate(features.BETAS):
        expected = sum((1 - b) * b ** (len(grads) - 1 - i) * g for i, g in enumerate(grads))
        torch.testing.assert_close(m[..., k], expected)
    expected_v = sum((1 - features.BETA2) * features.BETA2 ** (len(grads) - 1 - i) * g * g for i, g in enumerate(grads))
    torch.testing.assert_close(v, expected_v)


def test_element_features_match_reference_and_ignore_layer_scale():
    gen = torch.Generator().manual_seed(1)
    p, g = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen) * 1e-3
    m, v = features.accumulate(g, torch.zeros(5, 7, 5), torch.zeros(5, 7))
    m, v = features.accumulate(g * 0.5, m, v)
    feats = features.element_features(p, g, m, v, step=2)
    assert feats.shape == (5, 7, features.NUM_FEATURES)
    torch.testing.assert_close(feats, _reference(p, g, m, v, 2))
    # a layer 100x larger with 100x larger gradients has the same features (away from the
    # EPS floor: gradients of order one here)
    g = g * 1000
    m, v = features.accumulate(g, torch.zeros(5, 7, 5), torch.zeros(5, 7))
    m, v = features.accumulate(g * 0.5, m, v)
    feats = features.element_features(p, g, m, v, step=2)
    m_big, v_big = features.accumulate(g * 100, torch.zeros(5, 7, 5), torch.zeros(5, 7))
    m_big, v_big = features.accumulate(g * 50, m_big, v_big)
    torch.testing.assert_close(features.element_features(p * 100, g * 100, m_big, v_big, 2), feats, rtol=1e-4, atol=1e-4)
    # writing into a strided view gives the same values
    out = torch.zeros(35, 3, features.NUM_FEATURES)[:, 1:2]  # a strided [35, 1, F] view
    features.element_features(p.reshape(35, 1), g.reshape(35, 1), m.reshape(35, 1, 5), v.reshape(35, 1), 2, out=out)
    torch.testing.assert_close(out.reshape(5, 7, features.NUM_FEATURES), feats)


def test_time_features_saturate_per_timescale():
    t = features.time_features(10)
    assert t.shape == (features.NUM_TIME_FEATURES,)
    assert float(t[0]) > 0.99 and float(t[-1]) < 0.01 and bool((t[:-1] >= t[1:]).all())
