"""Design-space sweep speed: sampler throughput with the regime filter, and proxy-training models per hour.

1. Sampler: seconds to draw 1,000 valid models of each design space in the paper's 400MF regime (flops in
   [360, 400] M at 224 px), and in the embedded demo's regime (2-6 MF at 32 px, cifar stem); samples/s and the
   fraction of candidates the regime keeps.
2. Proxy training on the embedded digits (the `keras-regnet compare` demo setting: 3 epochs, batch 32): the same
   sampled RegNetX and AnyNetXA specs trained with our native GroupConv2D and, as the peer in the same run, with
   Keras's own grouped ``Conv2D`` (which Keras compiles with XLA on TensorFlow). Models/hour and the ratio.

    python benchmarks/sweep.py            # a few minutes on 2 cores
    python benchmarks/sweep.py --quick    # 200 samples, 2 models
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_regnet.design_space.spaces import SPACES, Regime, get_space  # noqa: E402

PAPER = Regime(flops=(360e6, 400e6))
DEMO = Regime(flops=(2e6, 6e6), resolution=32, classes=10)


def bench_sampler(n):
    """Print one row per space and regime: time for n valid samples, samples/s, acceptance rate."""
    print(f"\n## Sampler: {n} valid models per space (regime filter by rejection on the analytic complexity)\n")
    print(f"{'space':<10}{'regime':<22}{'seconds':>9}{'samples/s':>11}{'kept':>8}")
    for name in SPACES:
        for label, regime, stem in (("360-400 MF @224", PAPER, "imagenet"), ("2-6 MF @32 (demo)", DEMO, "cifar")):
            space = get_space(name, stem=stem)
            start = time.perf_counter()
            space.sample(n, seed=0, regime=regime)
            dt = time.perf_counter() - start
            # Acceptance: the fraction of raw candidates inside the regime.
            import numpy as np

            cands = space.candidates(np.random.default_rng(1))
            kept = sum(regime.contains(regime.measure(next(cands))) for _ in range(2000)) / 2000
            print(f"{name:<10}{label:<22}{dt:>9.2f}{n / dt:>11.0f}{kept:>8.1%}")


def _keras_grouped(spec, **kwargs):
    """The same model with every GroupConv2D replaced by Keras's own grouped Conv2D (same config, same weights)."""
    import keras

    from keras_regnet.layers import GroupConv2D
    from keras_regnet.models import build_model

    model = build_model(spec, **kwargs)

    def clone(layer):
        if isinstance(layer, GroupConv2D):
            return keras.layers.Conv2D.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)


def bench_training(models, epochs):
    """Train the same specs with both grouped convolutions; print per-model seconds and models/hour."""
    from keras_regnet.design_space.sweep import SweepConfig, load_proxy_data, train_proxy

    cfg = SweepConfig(space="RegNetX", samples=1, epochs=epochs, batch_size=32, lr=0.2)
    data = load_proxy_data(cfg)
    specs = []
    for name in ("RegNetX", "AnyNetXA"):
        specs += [(name, s) for s in get_space(name, stem="cifar").sample(models, seed=0, regime=DEMO)]
    print(f"\n## Proxy training on embedded digits ({data.num_train} images at 32 px, {epochs} epochs, batch 32)\n")
    print(f"{'model':<12}{'blocks':>7}{'MF':>6}{'GroupConv2D s':>15}{'Keras Conv2D s':>16}{'ratio':>8}{'error %':>9}")
    ours, peer = [], []
    for name, spec in specs:
        blocks = spec["depth"] if spec["type"] == "regnet" else sum(spec["depths"])
        mf = DEMO.measure(spec)["flops"] / 1e6
        a = train_proxy(spec, data, epochs=epochs, lr=cfg.lr, seed=0)
        b = train_proxy(spec, data, epochs=epochs, lr=cfg.lr, seed=0, build_fn=_keras_grouped)
        ours.append(a["train_time_s"])
        peer.append(b["train_time_s"])
        print(f"{name:<12}{blocks:>7}{mf:>6.1f}{a['train_time_s']:>15.1f}{b['train_time_s']:>16.1f}"
              f"{b['train_time_s'] / a['train_time_s']:>7.1f}x{a['error']:>9.2f}")
    print(f"\nmodels/hour (build + {epochs} epochs + eval): GroupConv2D {3600 / statistics.mean(ours):.0f}, "
          f"Keras grouped Conv2D {3600 / statistics.mean(peer):.0f}; median speed-up "
          f"{statistics.median(p / o for p, o in zip(peer, ours)):.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 samples, 1 model per space")
    parser.add_argument("--samples", type=int, help="valid samples per space for the sampler (default 1000)")
    parser.add_argument("--models", type=int, help="models per space for the training table (default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="proxy epochs (default 3, the demo's)")
    args = parser.parse_args()
    bench_sampler(args.samples or (200 if args.quick else 1000))
    bench_training(args.models or (1 if args.quick else 2), args.epochs)


if __name__ == "__main__":
    main()
