"""A tiny, randomly initialised Parakeet TDT model in the exact file layout onnx-asr loads.

Same graph interfaces as istupakov/parakeet-tdt-0.6b-v2-onnx: ``encoder-model.onnx``
(audio_signal [B, 128, T], length [B] -> outputs [B, D, T/8], encoded_lengths [B]),
``decoder_joint-model.onnx`` (encoder_outputs [B, D, 1], targets [B, 1] int32, target_length
[B] int32, two LSTM-like state tensors -> token + duration logits and the new states),
``vocab.txt`` ("token id" lines, blank last) and ``config.json``. The weights are random, so
the transcript is gibberish, but every byte of onnx-asr's and the adapter's code path runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = 128
HIDDEN = 16  # encoder output width
STATE = 8  # decoder state width
LAYERS = 2
DURATIONS = 5  # TDT durations 0..4
TOKENS = ["<unk>", "▁the", "▁a", "▁cat", "s", "▁sat", "▁on", "▁mat", ".", "▁dog", "ing", "<blk>"]
OPSET = 17
IR_VERSION = 8  # onnxruntime 1.16+ loads it


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    # The onnx package writes its newest IR version; onnxruntime reads only up to its own.
    model.ir_version = IR_VERSION
    return model


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


def _encoder(rng: np.random.Generator) -> onnx.ModelProto:
    # A 1x1 convolution with stride 8 stands in for the conformer's 8x subsampling.
    weight = rng.normal(0, 0.5, (HIDDEN, FEATURES, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["audio_signal", "w"], ["conv"], strides=[8], kernel_shape=[1]),
        helper.make_node("Tanh", ["conv"], ["outputs"]),
        # encoded_lengths = (length - 1) // 8 + 1, as the convolution computes its frames
        helper.make_node("Sub", ["length", "one"], ["l1"]),
        helper.make_node("Div", ["l1", "eight"], ["l2"]),
        helper.make_node("Add", ["l2", "one"], ["encoded_lengths"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_encoder",
        [
            helper.make_tensor_value_info("audio_signal", TensorProto.FLOAT, ["B", FEATURES, "T"]),
            helper.make_tensor_value_info("length", TensorProto.INT64, ["B"]),
        ],
        [
            helper.make_tensor_value_info("outputs", TensorProto.FLOAT, ["B", HIDDEN, "T8"]),
            helper.make_tensor_value_info("encoded_lengths", TensorProto.INT64, ["B"]),
        ],
        [
            _init("w", weight),
            _init("one", np.array(1, dtype=np.int64)),
            _init("eight", np.array(8, dtype=np.int64)),
        ],
    )
    return _model(graph)


def _decoder_joint(rng: np.random.Generator) -> onnx.ModelProto:
    out = len(TOKENS) + DURATIONS
    w_enc = rng.normal(0, 2.0, (HIDDEN, out)).astype(np.float32)
    embed = rng.normal(0, 1.0, (len(TOKENS), STATE)).astype(np.float32)
    w_pred = rng.normal(0, 1.0, (STATE, out)).astype(np.float32)
    bias = np.zeros(out, dtype=np.float32)
    bias[len(TOKENS) - 1] = -1.0  # fewer blanks, so random weights still emit words
    bias[len(TOKENS) + 1] = 1.0  # mostly advance one frame per step
    nodes = [
        # encoder_outputs [B, D, 1] -> [B, D]
        helper.make_node("Squeeze", ["encoder_outputs", "axis2"], ["enc"]),
        helper.make_node("MatMul", ["enc", "w_enc"], ["from_enc"]),
        # targets [B, 1] int32 -> embedding [B, 1, S] -> [B, S]
        helper.make_node("Cast", ["targets"], ["targets64"], to=TensorProto.INT64),
        helper.make_node("Gather", ["embed", "targets64"], ["emb3"], axis=0),
        helper.make_node("Squeeze", ["emb3", "axis1"], ["emb"]),
        helper.make_node("MatMul", ["emb", "w_pred"], ["from_pred"]),
        helper.make_node("Add", ["from_enc", "from_pred"], ["sum"]),
        helper.make_node("Add", ["sum", "bias"], ["logits"]),
        # outputs [B, 1, 1, V + durations], as the real joint network returns them
        helper.make_node("Unsqueeze", ["logits", "axes12"], ["outputs"]),
        helper.make_node("Add", ["input_states_1", "emb"], ["s1"]),
        helper.make_node("Tanh", ["s1"], ["output_states_1"]),
        helper.make_node("Mul", ["input_states_2", "half"], ["output_states_2"]),
        helper.make_node("Identity", ["target_length"], ["prednet_lengths"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_decoder_joint",
        [
            helper.make_tensor_value_info("encoder_outputs", TensorProto.FLOAT, ["B", HIDDEN, 1]),
            helper.make_tensor_value_info("targets", TensorProto.INT32, ["B", 1]),
            helper.make_tensor_value_info("target_length", TensorProto.INT32, ["B"]),
            helper.make_tensor_value_info(
                "input_states_1", TensorProto.FLOAT, [LAYERS, "B", STATE]
            ),
            helper.make_tensor_value_info(
                "input_states_2", TensorProto.FLOAT, [LAYERS, "B", STATE]
            ),
        ],
        [
            helper.make_tensor_value_info("outputs", TensorProto.FLOAT, ["B", 1, 1, out]),
            helper.make_tensor_value_info("prednet_lengths", TensorProto.INT32, ["B"]),
            helper.make_tensor_value_info(
                "output_states_1", TensorProto.FLOAT, [LAYERS, "B", STATE]
            ),
            helper.make_tensor_value_info(
                "output_states_2", TensorProto.FLOAT, [LAYERS, "B", STATE]
            ),
        ],
        [
            _init("w_enc", w_enc),
            _init("embed", embed),
            _init("w_pred", w_pred),
            _init("bias", bias),
            _init("axis1", np.array([1], dtype=np.int64)),
            _init("axis2", np.array([2], dtype=np.int64)),
            _init("axes12", np.array([1, 2], dtype=np.int64)),
            _init("half", np.array(0.5, dtype=np.float32)),
        ],
    )
    return _model(graph)


def build(directory: Path, *, seed: int = 0, quantization: str | None = None) -> Path:
    """Write the tiny model into ``directory`` (``*.int8.onnx`` names with quantization)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = f".{quantization}" if quantization else ""
    for name, model in (
        ("encoder-model", _encoder(rng)),
        ("decoder_joint-model", _decoder_joint(rng)),
    ):
        onnx.checker.check_model(model)
        onnx.save(model, directory / f"{name}{suffix}.onnx")
    (directory / "vocab.txt").write_text(
        "".join(f"{token} {index}\n" for index, token in enumerate(TOKENS)), encoding="utf-8"
    )
    config = {
        "model_type": "nemo-conformer-tdt",
        "features_size": FEATURES,
        "subsampling_factor": 8,
    }
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory
