"""Reference values for nn-layers' forward and backward passes, computed by PyTorch in
float64 (`tests/torch_reference.rs` reads `layers.json`).

    python3 layers.py > layers.json      # PyTorch 2.15, CPU

Every input is a formula of its index, so the Rust test reads the inputs from the JSON too
and nothing is random. Each case stores the inputs (x, weights, dy), the forward output y,
and the gradients of E = Σ dy ⊙ y with respect to the input and every parameter.
"""

import json
import math

import torch

torch.set_default_dtype(torch.float64)


def values(shape, a, b, scale=1.0):
    """Entry i of a tensor of `shape`: scale · sin(a·i + b)."""
    n = math.prod(shape)
    return torch.tensor([scale * math.sin(a * i + b) for i in range(n)]).reshape(shape)


def distinct(shape, seed):
    """Distinct values, at least 0.01 apart, in a fixed shuffled order (pooling inputs)."""
    n = math.prod(shape)
    order = sorted(range(n), key=lambda i: math.sin(12.9898 * i + seed) * 43758.5453 % 1)
    v = [0.0] * n
    for rank, i in enumerate(order):
        v[i] = -1.0 + 0.01 * rank
    return torch.tensor(v).reshape(shape)


def flat(t):
    return {"shape": list(t.shape), "data": [float(v) for v in t.detach().flatten()]}


def conv_case(name, x_shape, c_out, k, s, p, bias=True):
    x = values(x_shape, 0.37, 0.1).requires_grad_()
    conv = torch.nn.Conv2d(x_shape[1], c_out, k, stride=s, padding=p, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(values(conv.weight.shape, 0.53, 0.7, 0.4))
        if bias:
            conv.bias.copy_(values(conv.bias.shape, 1.1, 0.2, 0.3))
    y = conv(x)
    dy = values(y.shape, 0.29, 0.5)
    (y * dy).sum().backward()
    case = {
        "kind": "conv2d", "name": name, "kernel": list(conv.kernel_size), "stride": list(conv.stride),
        "padding": list(conv.padding), "x": flat(x), "weight": flat(conv.weight), "y": flat(y),
        "dy": flat(dy), "dx": flat(x.grad), "dweight": flat(conv.weight.grad),
    }
    if bias:
        case["bias"] = flat(conv.bias)
        case["dbias"] = flat(conv.bias.grad)
    return case


def pool_case(name, kind, x_shape, k, s):
    x = distinct(x_shape, 3.0).requires_grad_()
    pool = torch.nn.MaxPool2d(k, s) if kind == "maxpool2d" else torch.nn.AvgPool2d(k, s)
    y = pool(x)
    dy = values(y.shape, 0.41, 0.9)
    (y * dy).sum().backward()
    return {"kind": kind, "name": name, "kernel": k, "stride": s, "x": flat(x), "y": flat(y),
            "dy": flat(dy), "dx": flat(x.grad)}


def batchnorm_case(name, x_shape):
    f = x_shape[1]
    bn = torch.nn.BatchNorm1d(f) if len(x_shape) == 2 else torch.nn.BatchNorm2d(f)
    with torch.no_grad():
        bn.weight.copy_(values([f], 0.9, 0.3, 0.5) + 1.0)
        bn.bias.copy_(values([f], 1.3, 0.1, 0.4))
        bn.running_mean.copy_(values([f], 0.7, 0.2, 0.2))
        bn.running_var.copy_(values([f], 0.6, 0.4, 0.3) + 1.0)
    start = {"running_mean": flat(bn.running_mean.clone()), "running_var": flat(bn.running_var.clone())}
    x = values(x_shape, 0.61, 0.3, 2.0).requires_grad_()
    bn.train()
    y = bn(x)
    dy = values(y.shape, 0.33, 0.8)
    (y * dy).sum().backward()
    bn.eval()
    x_eval = values(x_shape, 0.23, 1.1, 1.5)
    y_eval = bn(x_eval)
    return {"kind": "batchnorm", "name": name, "x": flat(x), "weight": flat(bn.weight), "bias": flat(bn.bias),
            "start": start, "y": flat(y), "dy": flat(dy), "dx": flat(x.grad), "dweight": flat(bn.weight.grad),
            "dbias": flat(bn.bias.grad), "running_mean": flat(bn.running_mean), "running_var": flat(bn.running_var),
            "x_eval": flat(x_eval), "y_eval": flat(y_eval)}


def leaky_case():
    x = torch.tensor([[-2.0, -0.5, 0.0, 0.5, 2.0], [0.0, -1e-3, 1e-3, 3.0, -3.0]]).requires_grad_()
    y = torch.nn.functional.leaky_relu(x, 0.1)
    dy = values(y.shape, 0.7, 0.2) + 2.0
    (y * dy).sum().backward()
    return {"kind": "leaky_relu", "name": "leaky_relu at and around 0", "alpha": 0.1, "x": flat(x), "y": flat(y),
            "dy": flat(dy), "dx": flat(x.grad)}


def soft_ce_case():
    z = values([3, 4], 0.9, 0.1, 3.0).requires_grad_()
    t = torch.tensor([[0.1, 0.2, 0.3, 0.1], [0.5, 0.0, 0.5, 0.3], [0.0, 0.0, 0.0, 1.0]])  # sums 0.7, 1.3, 1
    loss = torch.nn.functional.cross_entropy(z, t)
    loss.backward()
    return {"kind": "softmax_cross_entropy", "name": "soft targets not summing to 1", "z": flat(z),
            "t": flat(t), "loss": float(loss.detach()), "dz": flat(z.grad)}


cases = [
    conv_case("3x3 stride 1 padding 1, width 11", [2, 3, 7, 11], 4, 3, 1, 1),
    conv_case("3x5 stride 2 padding 2, width 13", [2, 2, 9, 13], 3, (3, 5), 2, 2),
    conv_case("5x5 padding 2 (W6), width 12", [1, 1, 12, 12], 3, 5, 1, 2),
    conv_case("2x2 stride 2, no bias", [2, 2, 6, 10], 2, 2, 2, 0, bias=False),
    conv_case("1x1 on 20 channels", [3, 20, 3, 4], 5, 1, 1, 0),
    pool_case("max 3x3 stride 2", "maxpool2d", [2, 2, 9, 10], 3, 2),
    pool_case("max 2x2 stride 1 (overlapping)", "maxpool2d", [1, 3, 5, 6], 2, 1),
    pool_case("max 2x2 stride 2", "maxpool2d", [2, 2, 8, 8], 2, 2),
    pool_case("max 3x3 stride 3 on 7x7 (rows left over)", "maxpool2d", [1, 1, 7, 7], 3, 3),
    pool_case("avg 3x3 stride 2", "avgpool2d", [2, 2, 9, 10], 3, 2),
    pool_case("avg 2x2 stride 2", "avgpool2d", [2, 2, 8, 8], 2, 2),
    batchnorm_case("rows [6, 4]", [6, 4]),
    batchnorm_case("images [3, 2, 4, 5]", [3, 2, 4, 5]),
    leaky_case(),
    soft_ce_case(),
]
print(json.dumps({"torch": torch.__version__, "cases": cases}, indent=None))
