"""The batched inference loop on real OpenVINO: several infer requests at once, outputs in input order and
the same bytes as one synchronous request, no hang or crash when compiled models come and go."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from conftest import REPO

from synthcal.inference import compile_model, infer_logits, infer_outputs, to_model_input


def tiny_model(seed: int = 0, width: int = 4) -> ov.Model:
    """Dynamic-batch conv → ReLU → global mean → linear head; outputs (logits, pooled features)."""
    rng = np.random.default_rng(seed)
    image = ops.parameter([-1, 3, 8, 8], np.float32, name="image")
    weights = ops.constant(rng.normal(0, 0.05, (width, 3, 3, 3)).astype(np.float32))
    conv = ops.relu(ops.convolution(image, weights, [1, 1], [1, 1], [1, 1], [1, 1]))
    pooled = ops.reduce_mean(conv, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    logits = ops.matmul(pooled, ops.constant(rng.normal(0, 1, (width, 10)).astype(np.float32)), False, False)
    return ov.Model([logits, pooled], [image], "tiny")


def synchronous(compiled: ov.CompiledModel, images: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """One request, one batch at a time: the reference the overlapping requests must match."""
    request = compiled.create_infer_request()
    batches = [request.infer({0: to_model_input(images[start:start + batch_size])})
               for start in range(0, len(images), batch_size)]
    return [np.concatenate([batch[index] for batch in batches]) for index in range(len(compiled.outputs))]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (250, 8, 8, 3), dtype=np.uint8)


def test_requests_overlap_and_outputs_match_one_synchronous_request(images):
    compiled = compile_model(tiny_model(), num_streams="2")
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 2
    expected = synchronous(compiled, images, 40)  # 7 batches, the last one short: wraps round both requests
    latencies: list[float] = []
    first = infer_outputs(compiled, images, 40, batch_seconds=latencies)
    assert len(latencies) == 7 and all(seconds > 0 for seconds in latencies)
    for requests in (None, 1, 3, 20):
        outputs = infer_outputs(compiled, images, 40, num_requests=requests)
        assert [output.shape for output in outputs] == [(250, 10), (250, 4)]
        for output, reference, earlier in zip(outputs, expected, first, strict=True):
            assert output.dtype == np.float32 and output.tobytes() == reference.tobytes() == earlier.tobytes()
    assert infer_logits(compiled, images, 40).tobytes() == expected[0].tobytes()


def test_uint8_images_converted_in_graph_give_the_same_bytes(images):
    model = tiny_model(3)
    float_input = compile_model(model, num_streams="2")
    uint8_input = compile_model(model, num_streams="2", uint8_images=True)
    assert uint8_input.input(0).get_element_type() == ov.Type.u8
    assert list(uint8_input.input(0).get_partial_shape())[1:] == [8, 8, 3]  # NHWC, as the images are stored
    assert model.input(0).get_element_type() == ov.Type.f32  # the caller's model is left as it was
    expected = synchronous(float_input, images, 40)
    for output, reference in zip(infer_outputs(uint8_input, images, 40), expected, strict=True):
        assert output.tobytes() == reference.tobytes()
    assert not np.array_equal(expected[0][:1], synchronous(float_input, images[:, ::-1], 40)[0][:1])  # H flip shows


def test_order_follows_the_input(images):
    compiled = compile_model(tiny_model(), num_streams="2")
    logits = infer_logits(compiled, images, 16)
    assert infer_logits(compiled, images[::-1], 16).tobytes() == logits[::-1].tobytes()  # a strided view too
    assert not np.array_equal(logits[0], logits[1])  # distinct rows, so a swapped batch would show


def test_latency_and_throughput_hints_agree(images):
    throughput = compile_model(tiny_model())
    latency = compile_model(tiny_model(), performance_hint="LATENCY")
    assert str(throughput.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"
    assert str(latency.get_property("PERFORMANCE_HINT")) == "LATENCY"
    assert latency.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 1
    np.testing.assert_allclose(infer_logits(throughput, images, 50), infer_logits(latency, images, 50), rtol=1e-5,
                               atol=1e-6)


def test_no_images_gives_no_outputs():
    compiled = compile_model(tiny_model(), num_streams="2")
    assert infer_outputs(compiled, np.zeros((0, 8, 8, 3), np.uint8)) == []
    assert infer_logits(compiled, np.zeros((0, 8, 8, 3), np.uint8)).shape == (0, 10)


def test_compiled_models_come_and_go_without_hang_or_crash():
    """Models compiled, used and dropped in turn, in both hints, in a child process with a time limit."""
    script = textwrap.dedent("""
        import gc
        import numpy as np
        from tests.test_inference import tiny_model
        from synthcal.inference import compile_model, infer_logits, infer_outputs, to_model_input
        images = np.random.default_rng(2).integers(0, 256, (300, 8, 8, 3), dtype=np.uint8)
        for round in range(12):
            model = tiny_model(round % 2, 4 + 4 * (round % 2))
            throughput = compile_model(model, num_streams="2")
            latency = compile_model(model, performance_hint="LATENCY")
            outputs = infer_outputs(throughput, images, 32)
            request = throughput.create_infer_request()
            request.infer({0: to_model_input(images[:32])})
            assert np.array_equal(infer_logits(latency, images, 32).argmax(1), outputs[0].argmax(1))
            if round % 3 == 0:
                del throughput, latency, request
                gc.collect()
        print("done", flush=True)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])})
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr[-2000:]
