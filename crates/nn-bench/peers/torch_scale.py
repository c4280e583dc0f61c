"""The PyTorch side of `cargo xtask bench scale`.

W1's protocol (784 -> H -> ReLU -> 10, He-uniform weights, zero biases, plain SGD lr 0.1,
a fresh seeded permutation each epoch, the last partial batch kept, 2 threads) at the hidden
width H and batch size B of each point, trained by the shared PyTorch peer's own loop
(`torch_peer.train`), so the only thing that changes from W1 is the shape.

usage: python torch_scale.py --bench-dir ../shared/bench --points 64x64,128x16 [--epochs 3]
prints one JSON line per point (the peer's record) and nothing else on lines starting '{'.
"""
import argparse
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-dir", required=True)
    ap.add_argument("--points", required=True, help="HIDDENxBATCH,...")
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    sys.path.insert(0, os.path.abspath(a.bench_dir))
    import torch
    import torch_peer
    from bench_common import load_fmnist

    torch.set_num_threads(torch_peer.THREADS)
    data = tuple(torch.from_numpy(v) for v in load_fmnist())
    for point in a.points.split(","):
        hidden, batch = (int(v) for v in point.split("x"))
        name = f"scale-h{hidden}-b{batch}"
        torch_peer.CFG[name] = dict(kind="mlp", sizes=[784, hidden, 10], batch=batch,
                                    lr=0.1, momentum=0.0, epochs=a.epochs)
        torch_peer.train(name, data, 1)  # prints the record as a JSON line


if __name__ == "__main__":
    main()
