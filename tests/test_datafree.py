import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TinyClassifier, shared_path
from torch import nn

from synthcal.calibration import CalibrationContext, CalibrationError, build_calibration_set
from synthcal.calibration.datafree import invert_batchnorm, model_settings, resolve_precision
from synthcal.models.checkpoint import load_state_dict_file
from synthcal.models.cifar_zoo import build_model
from synthcal.models.raw_pixels import RawPixelClassifier
from synthcal.models.zoo import ZOO_INPUT


def _fit_running_stats(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand((64, 3, 4, 4), generator=generator) * 160 + 40
    images = nn.functional.interpolate(coarse, size=32, mode="nearest")
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the one batch
    model.train()
    with torch.no_grad():
        model(images)
    model.eval()


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    model = RawPixelClassifier(TinyClassifier((8, 16)), ZOO_INPUT)
    _fit_running_stats(model)
    return model


def _run(model, **overrides):
    options = {"count": 24, "seed": 1, "iterations": 40, "batch_size": 12, "show_progress": False,
               "num_threads": 1, "precision": "fp32", "compile": False, **overrides}
    return invert_batchnorm(model, **options)


def test_tiny_model_bn_loss_drops_and_output_is_well_formed(tiny_model):
    result = _run(tiny_model, model_name="tiny")
    assert result.images.shape == (24, 32, 32, 3) and result.images.dtype == np.uint8
    assert result.labels.dtype == np.int64 and result.labels.tolist() == [i % 10 for i in range(24)]
    provenance = result.provenance
    assert provenance["bn_loss_final"] < 0.5 * provenance["bn_loss_initial"]
    assert provenance["model_name"] == "tiny" and provenance["iterations"] == 40 and provenance["seed"] == 1
    assert provenance["torch_version"] == torch.__version__ and provenance["bn_layers"] == 2
    assert not tiny_model.training
    assert all(parameter.grad is None for parameter in tiny_model.parameters())


def test_tiny_model_is_deterministic(tiny_model):
    first = _run(tiny_model, iterations=5)
    again = _run(tiny_model, iterations=5)
    other = _run(tiny_model, iterations=5, seed=2)
    assert np.array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)


def test_without_class_targets_labels_are_unlabelled(tiny_model):
    tiny_model.train()
    result = _run(tiny_model, count=10, iterations=3, batch_size=4, class_targets=False, jitter=0, flip=False)
    assert (result.labels == -1).all() and len(result) == 10
    assert tiny_model.training  # the caller's mode is restored


def test_rejects_models_without_batchnorm():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    with pytest.raises(ValueError, match="BatchNorm2d"):
        invert_batchnorm(model, 4, 0, iterations=1, show_progress=False)


def test_resnet20_images_are_classified_as_their_assigned_class():
    net = build_model("resnet20")
    net.load_state_dict(load_state_dict_file(shared_path("weights", "cifar10_resnet20-4118986f.pt")))
    model = RawPixelClassifier(net, ZOO_INPUT).eval()
    result = invert_batchnorm(model, 20, seed=0, iterations=30, batch_size=20, show_progress=False, num_threads=1,
                              model_name="resnet20")
    with torch.no_grad():
        logits = model(torch.from_numpy(result.images).permute(0, 3, 1, 2).float())
    consistency = (logits.argmax(1).numpy() == result.labels).mean()
    assert consistency >= 0.8
    assert result.provenance["bn_loss_final"] < result.provenance["bn_loss_initial"] / 3


def test_compiled_bf16_step_reaches_the_eager_float32_loss(tiny_model):
    eager = _run(tiny_model, iterations=20)
    compiled = _run(tiny_model, iterations=20, precision="bf16", compile=True)
    assert compiled.provenance["compiled"] and compiled.provenance["compile_fallback"] is None
    assert compiled.provenance["precision"] == "bf16" and eager.provenance["compiled"] is False
    # the same optimisation: the loss ends close to eager float32's, far below the start
    assert compiled.provenance["bn_loss_final"] < 1.2 * eager.provenance["bn_loss_final"] + 0.05
    assert compiled.provenance["bn_loss_final"] < 0.5 * compiled.provenance["bn_loss_initial"]


def test_without_a_cxx_compiler_the_step_runs_eagerly_and_says_so(tmp_path):
    script = """
import json, torch
from conftest import TinyClassifier
from test_datafree import _fit_running_stats
from synthcal.calibration import CalibrationContext, CalibrationError, build_calibration_set
from synthcal.calibration.datafree import invert_batchnorm, model_settings, resolve_precision
from synthcal.models.raw_pixels import RawPixelClassifier
from synthcal.models.zoo import ZOO_INPUT
torch.manual_seed(0)
model = RawPixelClassifier(TinyClassifier((8,)), ZOO_INPUT)
_fit_running_stats(model)
result = invert_batchnorm(model, 8, 0, iterations=3, batch_size=8, show_progress=False, num_threads=1,
                          precision="fp32", compile=True)
print(json.dumps(result.provenance))
"""
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    provenance = json.loads(done.stdout.strip().splitlines()[-1])
    assert provenance["compiled"] is False and provenance["compile_fallback"]
    assert "running eagerly" in done.stderr


def test_precision_auto_follows_the_cpu_and_bad_values_are_refused():
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert resolve_precision("auto") == ("bf16" if native else "fp32")
    assert resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match=r"^precision must be auto, fp32 or bf16, got 'fp16'$"):
        resolve_precision("fp16")


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"), [
    (False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16"), (True, True, "bf16")])
def test_precision_auto_is_bf16_only_where_the_cpu_computes_it(monkeypatch, avx512_bf16, amx, expected):
    """Both answers of ``auto``; this CPU gives one of them, so the other CPUs' answers come from torch's own
    capability checks, set here."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert resolve_precision("auto") == expected
    assert resolve_precision("bf16") == "bf16"


def test_under_bf16_grouped_convolutions_run_in_float32_and_the_model_is_left_as_it_was():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    model = RawPixelClassifier(network, ZOO_INPUT)
    _fit_running_stats(model)
    dense, depthwise = network[0], network[3]
    dtypes = {"dense": set(), "depthwise": set()}
    hooks = [conv.register_forward_hook(lambda module, inputs, output, key=key: dtypes[key].add(output.dtype))
             for key, conv in (("dense", dense), ("depthwise", depthwise))]
    result = _run(model, count=8, batch_size=8, iterations=3, precision="bf16")
    for hook in hooks:
        hook.remove()
    # the no-grad passes that measure the loss run without autocast: float32 everywhere there
    assert dtypes == {"dense": {torch.bfloat16, torch.float32}, "depthwise": {torch.float32}}
    assert result.provenance["float32_grouped_convolutions"] == 1
    assert "forward" not in vars(depthwise)
    assert _run(model, count=8, batch_size=8, iterations=3).provenance["float32_grouped_convolutions"] == 0


def test_per_model_settings_replace_the_entrys_for_that_model_only(tiny_model):
    entry = {"kind": "datafree", "per_class": 2, "seed": 1, "iterations": 4, "lr": 0.5,
             "precision": "fp32", "compile": False, "batch_size": 10,
             "per_model": {"tiny": {"iterations": 2}, "other": {"lr": 0.1}}}
    assert model_settings(entry, "tiny") == {"iterations": 2, "lr": 0.5, "precision": "fp32", "compile": False,
                                             "batch_size": 10}
    assert model_settings(entry, "other")["iterations"] == 4 and model_settings(entry, "other")["lr"] == 0.1
    assert model_settings(entry, "neither") == model_settings({**entry, "per_model": {}}, "neither")
    context = CalibrationContext(classes=[str(index) for index in range(10)], classifier=tiny_model,
                                 model_name="tiny", show_progress=False)
    built = build_calibration_set("datafree", entry, context)
    assert built.provenance["iterations"] == 2 and built.provenance["lr"] == 0.5 and len(built) == 20
    assert built.provenance["config"]["per_model"] == entry["per_model"]  # recorded as configured


@pytest.mark.parametrize("per_model, message", [
    ({"tiny": {"iterationz": 2}}, r"calibration\.datafree\.per_model\.tiny: key\(s\) \['iterationz'\]"),
    ({"tiny": {"count": 2}}, r"\['count'\] are not inversion settings"),
    ({"tiny": 30}, r"per_model\.tiny"),
])
def test_bad_per_model_keys_are_refused_naming_them(per_model, message):
    with pytest.raises(CalibrationError, match=message):
        model_settings({"kind": "datafree", "per_model": per_model}, "tiny")


def test_the_schema_checks_per_model_settings():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    repo = Path(__file__).resolve().parents[1]
    schema = str(repo / "schemas" / "config.schema.yaml")

    def config(per_model):
        shipped = yaml.safe_load((repo / "config.yaml").read_text())
        shipped["calibration"]["datafree"]["per_model"] = per_model
        return shipped

    validate(config({"resnet56": {"iterations": 30}}), schema)
    for bad in ({"resnet56": {"iterationz": 30}}, {"resnet56": {"iterations": 0}}):
        with pytest.raises(WorkflowError, match="per_model"):
            validate(config(bad), schema)


def test_bn_loss_by_hand():
    """Σ over BN layers of ‖batch mean − running_mean‖ + ‖batch variance (biased) − running_var‖, on an input whose
    channel statistics are mean (1, 2) and variance (1, 4)."""
    from synthcal.calibration.datafree import _BatchNormStatLoss

    class TwoNorms(nn.Module):  # both layers see the same input
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.BatchNorm2d(2), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.a(x) + self.b(x)

    model = TwoNorms().eval()
    model.a.running_mean.copy_(torch.tensor([0.0, 0.0]))
    model.a.running_var.copy_(torch.tensor([1.0, 1.0]))
    model.b.running_mean.copy_(torch.tensor([1.0, 0.0]))
    model.b.running_var.copy_(torch.tensor([2.0, 4.0]))
    x = torch.tensor([[[[0.0, 2.0]], [[0.0, 4.0]]], [[[2.0, 0.0]], [[4.0, 0.0]]]])  # N=2, C=2, H=1, W=2
    loss = _BatchNormStatLoss(model)
    model(x)
    # layer a: ‖(1, 2)‖ + ‖(0, 3)‖ = √5 + 3; layer b: ‖(0, 2)‖ + ‖(−1, 0)‖ = 3
    assert loss.pop().item() == pytest.approx(5 ** 0.5 + 6, rel=1e-6)
    assert loss.terms == []
    loss.remove()
    model(x)
    assert loss.terms == []  # hooks gone


def test_gaussian_kl_bn_loss_by_hand():
    """Per layer, the mean over channels of KL(N(batch mean, batch variance) ‖ N(running_mean, running_var)),
    eps added to both variances; zero where the batch has the stored statistics."""
    from synthcal.calibration.datafree import _BatchNormStatLoss

    layer = nn.BatchNorm2d(2, eps=0.0).eval()
    layer.running_mean.copy_(torch.tensor([1.0, 0.0]))
    layer.running_var.copy_(torch.tensor([1.0, 2.0]))
    x = torch.tensor([[[[0.0, 2.0]], [[0.0, 4.0]]], [[[2.0, 0.0]], [[4.0, 0.0]]]])  # means (1, 2), variances (1, 4)
    loss = _BatchNormStatLoss(layer, "gaussian_kl")
    layer(x)
    # channel 0 matches: 0; channel 1: ratio 2, shift 4 / 2 = 2: (2 + 2 - 1 - ln 2) / 2
    expected = 0.5 * (0.5 * (2 + 2 - 1 - np.log(2)))
    assert loss.pop().item() == pytest.approx(expected, rel=1e-6)
    layer.running_mean.copy_(torch.tensor([1.0, 2.0]))
    layer.running_var.copy_(torch.tensor([1.0, 4.0]))
    layer(x)
    assert loss.pop().item() == pytest.approx(0.0, abs=1e-7)
    loss.remove()
    # eps 1 on both variances: channel 1's ratio (4 + 1) / (2 + 1), its shift 2² / (2 + 1)
    padded = nn.BatchNorm2d(2, eps=1.0).eval()
    padded.running_mean.copy_(torch.tensor([1.0, 0.0]))
    padded.running_var.copy_(torch.tensor([1.0, 2.0]))
    loss = _BatchNormStatLoss(padded, "gaussian_kl")
    padded(x)
    assert loss.pop().item() == pytest.approx(0.5 * (0.5 * (5 / 3 + 4 / 3 - 1 - np.log(5 / 3))), rel=1e-6)
    loss.remove()
    with pytest.raises(ValueError, match=r"bn_loss must be one of \['gaussian_kl', 'norm'\], got 'l1'"):
        _BatchNormStatLoss(layer, "l1")
    with pytest.raises(ValueError, match=r"^model has no nn\.BatchNorm2d layers to invert$"):
        _BatchNormStatLoss(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match=r"^every BatchNorm2d layer needs running statistics "
                                         r"\(track_running_stats=True\)$"):
        _BatchNormStatLoss(nn.Sequential(nn.BatchNorm2d(3), nn.BatchNorm2d(3, track_running_stats=False)))


def test_gaussian_kl_lowers_the_norm_loss_too_and_is_recorded(tiny_model):
    result = _run(tiny_model, bn_loss="gaussian_kl")
    assert result.provenance["bn_loss"] == "gaussian_kl"
    assert result.provenance["bn_loss_final"] < 0.5 * result.provenance["bn_loss_initial"]
    assert _run(tiny_model, iterations=2).provenance["bn_loss"] == "norm"


def test_a_set_larger_than_memory_allows_goes_to_a_file_batch_by_batch_with_the_same_bytes(tiny_model, monkeypatch,
                                                                                            tmp_path):
    import synthcal.calibration.datafree as datafree
    from synthcal.io import load_image_set, save_image_set

    in_memory = _run(tiny_model, iterations=3)
    assert not isinstance(in_memory.images, np.memmap)
    monkeypatch.setattr(datafree, "IN_MEMORY_BYTES", 24 * 32 * 32 * 3)  # exactly the limit: still in memory
    assert not isinstance(datafree._image_buffer((24, 32, 32, 3)), np.memmap)
    monkeypatch.setattr(datafree, "IN_MEMORY_BYTES", 10 * 32 * 32 * 3)  # 24 images are "larger than memory"
    on_file = _run(tiny_model, iterations=3)
    assert isinstance(on_file.images, np.memmap)
    np.testing.assert_array_equal(on_file.images, in_memory.images)
    save_image_set(tmp_path / "set.npz", on_file.images, on_file.labels, on_file.provenance)
    np.testing.assert_array_equal(load_image_set(tmp_path / "set.npz").images, in_memory.images)


def test_bad_settings_are_refused_and_every_setting_is_recorded(tiny_model):
    for options, message in [({"count": 0}, r"^count must be positive, got 0$"),
                             ({"iterations": 0}, r"^iterations and batch_size must be positive, got 0 and 12$"),
                             ({"batch_size": 0}, r"^iterations and batch_size must be positive, got 40 and 0$"),
                             ({"jitter": -1}, r"^jitter must be >= 0, got -1$")]:
        with pytest.raises(ValueError, match=message):
            _run(tiny_model, **options)
    result = _run(tiny_model, count=5, iterations=2, batch_size=3, lr=0.05, tv_weight=0.001, l2_weight=0.002,
                  ce_weight=0.003, jitter=1, flip=False, model_name="tiny", image_size=(32, 32))
    provenance = result.provenance
    assert {key: provenance[key] for key in ("count", "seed", "iterations", "lr", "batch_size", "class_targets",
                                             "num_classes", "tv_weight", "l2_weight", "ce_weight", "jitter", "flip",
                                             "image_size", "num_threads", "precision", "compiled",
                                             "compile_fallback", "method")} == {
        "count": 5, "seed": 1, "iterations": 2, "lr": 0.05, "batch_size": 3, "class_targets": True,
        "num_classes": 10, "tv_weight": 0.001, "l2_weight": 0.002, "ce_weight": 0.003, "jitter": 1, "flip": False,
        "image_size": [32, 32], "num_threads": 1, "precision": "fp32", "compiled": False, "compile_fallback": None,
        "method": "batchnorm-inversion"}
    assert result.labels.tolist() == [0, 1, 2, 3, 4]  # the second batch goes on counting classes
    # the losses are measured on the start and the uint8 output, in batches of 3 and 2: recompute the last
    from synthcal.calibration.datafree import _BatchNormStatLoss

    loss = _BatchNormStatLoss(tiny_model)
    batches = []
    for part in (result.images[:3], result.images[3:]):
        with torch.no_grad():
            tiny_model(torch.as_tensor(part).permute(0, 3, 1, 2).float())
        batches.append(loss.pop().item())
    loss.remove()
    assert provenance["bn_loss_final"] == pytest.approx(np.mean(batches), rel=1e-5)


def test_a_step_torch_cannot_compile_runs_eagerly_from_then_on_and_says_why(monkeypatch, tmp_path, caplog):
    """In process, inductor given no working C++ compiler: the first call falls back to the eager function, calls
    ``on_fallback`` once and logs why; later calls run eagerly, and an error of the eager step is raised as it is."""
    import torch._inductor.config as inductor_config

    from synthcal.calibration.datafree import _Compiled

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    fallbacks = []
    with inductor_config.patch({"cpp.cxx": ("no-such-compiler",)}), caplog.at_level(
            "WARNING", logger="synthcal.calibration.datafree"):
        step = _Compiled(lambda x: (x * 2).sum(), lambda: fallbacks.append(True))
        assert step.eager is not step.function and step.fallback_reason is None
        assert step(torch.ones(3)).item() == 6.0
        assert step(torch.ones(2)).item() == 4.0
        with pytest.raises(AttributeError, match="'str' object has no attribute 'sum'"):
            step("not a tensor")
    torch._dynamo.reset()
    assert re.fullmatch(r"InductorError: InvalidCxxCompiler: No working C\+\+ compiler found in "
                        r"torch\._inductor\.config\.cpp\.cxx: \('no-such-compiler',\)", step.fallback_reason)
    assert step.function is step.eager and fallbacks == [True]
    assert [record.getMessage() for record in caplog.records if record.name == "synthcal.calibration.datafree"] == [
        f"torch.compile failed ({step.fallback_reason}); running eagerly"]


def test_clearing_the_bn_loss_drops_a_pass_that_was_not_popped(tiny_model):
    from synthcal.calibration.datafree import _BatchNormStatLoss

    loss = _BatchNormStatLoss(tiny_model)
    with torch.no_grad():
        tiny_model(torch.full((2, 3, 32, 32), 128.0))
    assert len(loss.terms) == len(loss.layers) == 2
    loss.clear()
    assert loss.terms == []
    loss.remove()


def test_total_variation_by_hand():
    from synthcal.calibration.datafree import _total_variation

    z = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0], [2.0, 4.0, 2.0]]]])  # N=C=1, 3 rows of 3
    # across: (1, 2, 0, 0, 2, -2) squared, mean 13/6; down: (2, 1, -1, 0, 2, 0) squared, mean 10/6
    assert _total_variation(z).item() == pytest.approx(13 / 6 + 10 / 6)
    assert _total_variation(torch.full((2, 3, 4, 4), 7.0)).item() == 0.0


def test_augment_shifts_by_at_most_jitter_and_flips_from_the_generator():
    from synthcal.calibration.datafree import _augment

    pixels = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(_augment(pixels, 0, False, generator), pixels)
    assert generator.get_state().equal(torch.Generator().manual_seed(0).get_state())  # no draw without jitter
    seen = set()
    for seed in range(40):
        replay = torch.Generator().manual_seed(seed)
        shifts = torch.randint(-2, 3, (2,), generator=replay).tolist()
        flipped = torch.rand((), generator=replay).item() < 0.5
        expected = torch.roll(pixels, shifts=shifts, dims=(2, 3))
        expected = torch.flip(expected, dims=(3,)) if flipped else expected
        assert torch.equal(_augment(pixels, 2, True, torch.Generator().manual_seed(seed)), expected)
        seen.add((*shifts, flipped))
    assert {shift for shifts in seen for shift in shifts[:2]} == {-2, -1, 0, 1, 2} and {s[2] for s in seen} == {
        True, False}
    one = torch.Generator().manual_seed(5)
    assert torch.equal(_augment(pixels, 1, False, one), torch.roll(
        pixels, shifts=torch.randint(-1, 2, (2,), generator=torch.Generator().manual_seed(5)).tolist(), dims=(2, 3)))


@pytest.mark.parametrize("per_model, message", [
    ([{"tiny": {}}], r"^calibration\.df\.per_model must map model names to inversion settings$"),
    ({"tiny": 30}, r"^calibration\.df\.per_model\.tiny: key\(s\) \['\(not a map\)'\] are not inversion settings "
                   r"\(allowed: \['batch_size', "),
])
def test_per_model_that_is_not_a_map_is_refused_in_words(per_model, message):
    with pytest.raises(CalibrationError, match=message):
        model_settings({"kind": "datafree", "per_model": per_model}, "tiny", "df")


class _Shifted(nn.Module):
    """A tiny BN network whose expected input is its own pixel space, not CIFAR-10's."""

    def __init__(self):
        super().__init__()
        self.network = TinyClassifier((8,))

    def forward(self, pixels):
        return self.network(pixels / 255.0)

    def pixel_space(self):
        return torch.tensor([0.25, 0.5, 0.75]), torch.tensor([0.1, 0.2, 0.3])


def test_build_counts_classes_and_passes_the_context_on(tiny_model, capsys):
    from synthcal.calibration.datafree import CIFAR10_MEAN, build

    settings = {"kind": "datafree", "iterations": 1, "precision": "fp32", "compile": False, "num_threads": 1}
    context = CalibrationContext(size=(16, 24), classes=["a", "b", "c"], classifier=tiny_model, model_name="tiny",
                                 show_progress=False)
    built = build("df", settings | {"per_class": 2, "seed": 3}, context)
    assert len(built) == 6 and built.images.shape == (6, 16, 24, 3) and built.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert (built.provenance["seed"], built.provenance["model_name"], built.provenance["count"]) == (3, "tiny", 6)
    assert built.provenance["image_size"] == [16, 24] and capsys.readouterr().err == ""  # no progress bar
    assert build("df", settings | {"count": 4, "per_class": 2}, context).provenance["count"] == 4
    defaults = build("df", settings | {"batch_size": 300}, context).provenance  # 100 per class, seed 0
    assert (defaults["count"], defaults["seed"]) == (300, 0)
    ten = build("df", settings | {"per_class": 1}, CalibrationContext(classifier=tiny_model, show_progress=False))
    assert ten.provenance["count"] == 10  # no class list: 10 classes
    torch.manual_seed(0)
    shifted = _Shifted()
    _fit_running_stats(shifted)
    own = build("df", settings | {"per_class": 1}, CalibrationContext(classifier=shifted, show_progress=False))
    assert own.provenance["pixel_mean"] == pytest.approx([0.25, 0.5, 0.75])
    assert own.provenance["pixel_std"] == pytest.approx([0.1, 0.2, 0.3])
    plain = build("df", settings | {"per_class": 1}, CalibrationContext(classifier=shifted.network,
                                                                        show_progress=False))
    assert plain.provenance["pixel_mean"] == pytest.approx(list(CIFAR10_MEAN))
    with pytest.raises(CalibrationError, match=r"^calibration\.df: the datafree kind needs the FP32 classifier it "
                                               r"inverts$"):
        build("df", settings, CalibrationContext())
    with pytest.raises(CalibrationError, match=r"^calibration\.df\.per_model must map"):
        build("df", settings | {"per_model": [1]}, context)


def test_step_loss_by_hand(tiny_model):
    """The BN loss plus each weighted term, as computed here from its parts; bf16 autocast changes the sum."""
    import torch.nn.functional as F

    from synthcal.calibration.datafree import _BatchNormStatLoss, _step_loss, _total_variation

    z = torch.randn((4, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    pixels, targets = 128.0 + 40.0 * z, torch.tensor([0, 1, 2, 3])
    stat_loss = _BatchNormStatLoss(tiny_model)
    with torch.no_grad():
        logits = tiny_model(pixels)
        parts = {"bn": stat_loss.pop(), "ce": F.cross_entropy(logits, targets), "tv": _total_variation(z),
                 "l2": z.pow(2).mean()}
        for weights in [(0.0, 0.0, 0.0), (0.5, 0.0, 0.0), (0.0, 0.25, 0.0), (0.0, 0.0, 0.125), (0.5, 0.25, 0.125)]:
            statistics, total = _step_loss(tiny_model, stat_loss, False, *weights, pixels, z, targets)
            expected = parts["bn"] + weights[0] * parts["ce"] + weights[1] * parts["tv"] + weights[2] * parts["l2"]
            assert statistics.item() == pytest.approx(parts["bn"].item(), rel=1e-6)
            assert total.item() == pytest.approx(expected.item(), rel=1e-6), weights
        _, in_bf16 = _step_loss(tiny_model, stat_loss, True, 0.5, 0.25, 0.125, pixels, z, targets)
    assert in_bf16.item() != total.item() and in_bf16.item() == pytest.approx(total.item(), rel=0.05)
    stat_loss.remove()


def test_images_start_from_the_seeds_normal_draw_clamped_to_the_pixel_range(tiny_model):
    """lr 0 leaves the start as it is: per batch, the seed's normal draw clamped so that 255 (mean + std z) stays
    in [0, 255], rounded to uint8."""
    from synthcal.calibration.datafree import CIFAR10_MEAN, CIFAR10_STD

    result = _run(tiny_model, count=7, batch_size=3, iterations=1, lr=0.0, seed=7)
    mean, std = (torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1) for values in (CIFAR10_MEAN, CIFAR10_STD))
    generator, expected = torch.Generator().manual_seed(7), []
    for size in (3, 2, 2):
        z = torch.randn((size, 3, 32, 32), generator=generator).clamp_((0.0 - mean) / std, (1.0 - mean) / std)
        expected.append((255.0 * (mean + std * z)).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(result.images, np.concatenate(expected))
    assert (result.images == 0).any() and (result.images == 255).any()  # the clamp acted
    # the BN loss before and after is that of these images, batch by batch
    from synthcal.calibration.datafree import _BatchNormStatLoss

    loss, by_batch = _BatchNormStatLoss(tiny_model), []
    for batch in np.split(result.images, [3, 5]):
        with torch.no_grad():
            tiny_model(torch.as_tensor(batch).permute(0, 3, 1, 2).float())
        by_batch.append(loss.pop().item())
    loss.remove()
    assert result.provenance["bn_loss_initial"] == pytest.approx(np.mean(by_batch), rel=1e-5)
    assert result.provenance["bn_loss_final"] == pytest.approx(np.mean(by_batch), rel=1e-5)
    assert result.labels.tolist() == list(range(7))
    assert all(parameter.requires_grad for parameter in tiny_model.parameters())  # frozen for the call only
    assert len(_run(tiny_model, count=1, batch_size=1, iterations=1)) == 1  # one image, one a batch: allowed


def test_each_setting_changes_the_images_and_augmentation_follows_the_seed(tiny_model):
    def images(**overrides):
        return _run(tiny_model, count=8, batch_size=8, iterations=3, **overrides).images

    plain = images()
    augmented = images(jitter=1, flip=True)
    np.testing.assert_array_equal(augmented, images(jitter=1, flip=True))  # the seed's generator, not torch's
    recorded = _run(tiny_model, iterations=1, jitter=1, flip=True).provenance
    assert (recorded["flip"], recorded["jitter"], recorded["optimizer"]) == (True, 1, "adam(betas=0.5,0.9)+cosine")
    assert recorded["parameterisation"] == "255 * (pixel_mean + pixel_std * z), clamped to [0,255] pixels"
    for changed in (augmented, images(flip=True), images(precision="bf16")):
        assert not np.array_equal(changed, plain)
    for weight in ("tv_weight", "l2_weight"):
        assert not np.array_equal(images(**{weight: 1.0}), images(**{weight: 0.0})), weight
    # no class targets: the cross-entropy weight is not used
    np.testing.assert_array_equal(images(class_targets=False), images(class_targets=False, ce_weight=0.0))
    assert not np.array_equal(images(class_targets=False), plain)
    norm, kl = (_run(tiny_model, iterations=1, bn_loss=form).provenance["bn_loss_initial"]
                for form in ("norm", "gaussian_kl"))
    assert norm != kl


def test_a_step_that_cannot_be_compiled_gives_the_eager_images_and_records_why(tiny_model, monkeypatch, tmp_path):
    import torch._inductor.config as inductor_config

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    eager = _run(tiny_model, count=6, batch_size=6, iterations=2)
    with inductor_config.patch({"cpp.cxx": ("no-such-compiler",)}):
        fallen_back = _run(tiny_model, count=6, batch_size=6, iterations=2, compile=True)
    torch._dynamo.reset()
    assert fallen_back.provenance["compiled"] is False
    assert fallen_back.provenance["compile_fallback"].startswith("InductorError: InvalidCxxCompiler")
    np.testing.assert_array_equal(fallen_back.images, eager.images)
    assert fallen_back.provenance["bn_loss_final"] == eager.provenance["bn_loss_final"]


def test_a_failure_is_named_in_one_line():
    from synthcal.calibration.datafree import failure_reason

    assert failure_reason(ValueError("first line\nsecond line")) == "ValueError: first line"
    assert failure_reason(RuntimeError()) == "RuntimeError: "


def test_three_steps_by_hand_give_the_same_images(tiny_model):
    """The documented optimisation written out: z from the seed clamped to the pixel range, then per step the loss
    of 255 (mean + std z), Adam with betas (0.5, 0.9) and a cosine-decayed learning rate, z clamped again."""
    from synthcal.calibration.datafree import CIFAR10_MEAN, CIFAR10_STD, _BatchNormStatLoss, _step_loss

    result = _run(tiny_model, count=4, batch_size=4, iterations=3, lr=1.5, seed=5, tv_weight=0.5, l2_weight=0.25,
                  ce_weight=0.75)
    mean, std = (torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1) for values in (CIFAR10_MEAN, CIFAR10_STD))
    low, high = (0.0 - mean) / std, (1.0 - mean) / std
    z = torch.randn((4, 3, 32, 32), generator=torch.Generator().manual_seed(5)).clamp_(low, high).requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=1.5, betas=(0.5, 0.9))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)
    stat_loss, targets = _BatchNormStatLoss(tiny_model), torch.arange(4)
    for parameter in tiny_model.parameters():
        parameter.requires_grad_(False)
    for _ in range(3):
        _, loss = _step_loss(tiny_model, stat_loss, False, 0.75, 0.5, 0.25, 255.0 * (mean + std * z), z, targets)
        (z.grad,) = torch.autograd.grad(loss, [z])
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            z.clamp_(low, high)
    stat_loss.remove()
    for parameter in tiny_model.parameters():
        parameter.requires_grad_(True)
    expected = (255.0 * (mean + std * z)).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).detach().numpy()
    np.testing.assert_array_equal(result.images, expected)
