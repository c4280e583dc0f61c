"""Checks an ONNX model exported by `nn export` and runs it in ONNX Runtime.

usage: onnx_check.py MODEL.onnx INPUTS.json

INPUTS.json holds {"shape": [n, ...], "values": [...]} (row-major floats). The model is
checked with onnx.checker (full check, with shape inference), then run on the CPU; the
script prints one JSON object mapping each output's name to its values as nested lists.
"""

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    model_path, inputs_path = sys.argv[1], sys.argv[2]
    onnx.checker.check_model(onnx.load(model_path), full_check=True)
    spec = json.load(open(inputs_path))
    x = np.asarray(spec["values"], dtype=np.float32).reshape(spec["shape"])
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {session.get_inputs()[0].name: x})
    print(json.dumps({n: v.tolist() for n, v in zip(names, values)}))


if __name__ == "__main__":
    main()
