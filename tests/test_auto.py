"""Method ``auto``: candidate recipes chosen by a proxy on held-out synthetic images, checked against the oracle."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import quantizer_ranges, run_snakemake, shared_path

from synthcal.io import ImageSet, read_json, save_npz_deterministic, write_json
from synthcal.quantization.auto import (
    AutoMethodError,
    candidates_of,
    check_auto_method,
    check_holdout_content,
    choose,
    holdout_of,
    proxy_scores,
    without_calibration_images,
)
from synthcal.report.auto_oracle import auto_oracle_html, auto_oracle_section, write_auto_vs_oracle

CALIBRATION = {"datafree": {"kind": "datafree"}, "datafree_holdout": {"kind": "datafree", "seed": 1},
               "cifar10": {"kind": "cifar10"}, "cifar10_holdout": {"kind": "cifar10", "seed": 1},
               "datafree_copy": {"kind": "datafree"}, "cifar10_copy": {"kind": "cifar10"}}


def test_proxy_prefers_the_candidate_closer_to_fp32():
    rng = np.random.default_rng(0)
    fp32 = rng.normal(size=(200, 10)) * 3
    close, far = fp32 + rng.normal(size=fp32.shape) * 0.05, fp32 + rng.normal(size=fp32.shape) * 1.0
    scores = [proxy_scores(fp32, far), proxy_scores(fp32, close)]
    assert scores[1]["kl"] < scores[0]["kl"] and scores[1]["agreement"] >= scores[0]["agreement"]
    assert proxy_scores(fp32, fp32) == {"agreement": 1.0, "kl": pytest.approx(0.0, abs=1e-12), "logit_mse": 0.0}
    assert choose(scores, "kl") == 1 and choose(scores, "agreement") == 1
    # agreement ties break on KL, then on order
    tied = [{"agreement": 0.9, "kl": 0.2}, {"agreement": 0.9, "kl": 0.1}, {"agreement": 0.9, "kl": 0.1}]
    assert choose(tied, "agreement") == 1
    # where the two proxies disagree, each picks by its own; KL is the default, its ties break on agreement
    split = [{"agreement": 0.90, "kl": 0.1}, {"agreement": 0.95, "kl": 0.2}]
    assert (choose(split), choose(split, "kl"), choose(split, "agreement")) == (0, 0, 1)
    assert choose([{"agreement": 0.8, "kl": 0.1}, {"agreement": 0.9, "kl": 0.1}, {"agreement": 0.9, "kl": 0.1}]) == 1


def test_proxy_kl_is_fp32_against_int8_as_scipy_computes_it():
    """KL(FP32‖INT8) of the softmaxes, row by row as scipy.stats.entropy(p, q) gives it, then the mean; on
    asymmetric logits the other direction differs, so it cannot stand in."""
    from scipy.special import softmax
    from scipy.stats import entropy

    rng = np.random.default_rng(1)
    fp32 = rng.normal(size=(50, 10)) * 4
    int8 = fp32 * 0.5 + rng.gamma(2.0, size=fp32.shape)  # flatter and skewed: KL is far from symmetric here
    expected = entropy(softmax(fp32, axis=1), softmax(int8, axis=1), axis=1).mean()
    reverse = entropy(softmax(int8, axis=1), softmax(fp32, axis=1), axis=1).mean()
    scores = proxy_scores(fp32, int8)
    assert scores["kl"] == pytest.approx(expected, rel=1e-9) and abs(expected - reverse) > 0.1 * expected
    assert scores["agreement"] == (fp32.argmax(1) == int8.argmax(1)).mean() < 1.0
    assert scores["logit_mse"] == pytest.approx(((fp32 - int8) ** 2).mean(), rel=1e-12)
    # OpenVINO's float32 logits are scored in float64
    low = proxy_scores(fp32.astype(np.float32), int8.astype(np.float32))
    exact = entropy(softmax(fp32.astype(np.float32).astype(np.float64), axis=1),
                    softmax(int8.astype(np.float32).astype(np.float64), axis=1), axis=1).mean()
    assert low["kl"] == pytest.approx(exact, rel=1e-12)
    # shifting a row's logits leaves its softmax, and so the KL, as it was
    assert proxy_scores(fp32 + 7.0, int8 - 3.0)["kl"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("method", "message"), [
    ({"algorithm": "auto"}, r"^methods\.auto\.holdout must name a calibration entry: the held-out synthetic images "
                            r"the proxy scores candidates on \(e\.g\. a second datafree set, another seed\)$"),
    ({"algorithm": "auto", "holdout": "nope"}, r"^methods\.auto\.holdout names 'nope', which is not defined under "
                                               r"`calibration:` \(defined: \['cifar10', 'cifar10_copy', "),
    ({"algorithm": "auto", "holdout": "cifar10"}, r"^methods\.auto\.holdout 'cifar10' is kind cifar10: real images; "
                                                  r"the proxy must need no real image \(use a datafree, gan, fractal "
                                                  r"or noise set\)$"),
    ({"algorithm": "auto", "holdout": "datafree"}, r"^methods\.auto\.holdout 'datafree' is also a calibration set of "
                                                   r"the study: the proxy needs images no candidate was calibrated "
                                                   r"on$"),
    ({"algorithm": "auto", "holdout": "datafree_holdout", "candidates": [{"id": "a", "fast_bias": True}]},
     r"^methods\.auto\.candidates\[0\] has unknown key\(s\) \['fast_bias'\]"),
    ({"algorithm": "auto", "holdout": "datafree_holdout", "candidates": [{"id": "a"}, {"id": "a"}]}, "used twice"),
    ({"algorithm": "auto", "holdout": "datafree_holdout",
      "candidates": [{"id": "a", "activations_range": "max"}]}, r"candidates\[0\]\.activations_range"),
    # issue 33: real_holdout names real images outside the study
    ({"algorithm": "auto", "holdout": "datafree_holdout", "real_holdout": "datafree_holdout"},
     r"^methods\.auto\.real_holdout 'datafree_holdout' is kind datafree, not real images \(kinds cifar10, folder, "
     r"crossfold\); real-data entries outside the study: \['cifar10_copy', 'cifar10_holdout'\]$"),
    ({"algorithm": "auto", "holdout": "datafree_holdout", "real_holdout": "cifar10"},
     r"^methods\.auto\.real_holdout 'cifar10' is also a calibration set of the study: the proxy needs images no "
     r"candidate was calibrated on$"),
    ({"algorithm": "auto", "holdout": "datafree_holdout", "real_holdout": "cifar9"},
     "real_holdout names 'cifar9', which is not defined"),
    # issue 34: the study's set under another name
    ({"algorithm": "auto", "holdout": "datafree_copy"},
     r"^methods\.auto\.holdout 'datafree_copy' has the same settings as calibration\.datafree, a calibration set "
     r"of the study \(settings sha256 [0-9a-f]{12}\): the same images under another name; the proxy needs images no "
     r"candidate was calibrated on \(change its seed\)$"),
    ({"algorithm": "auto", "holdout": "datafree_holdout", "real_holdout": "cifar10_copy"},
     r"^methods\.auto\.real_holdout 'cifar10_copy' has the same settings as calibration\.cifar10, "),
])
def test_bad_auto_entries_are_refused_naming_the_key(method, message):
    with pytest.raises(AutoMethodError, match=message):
        check_auto_method("auto", method, CALIBRATION, ["datafree", "cifar10"])


def test_entry_digest_is_of_the_settings_whatever_their_order_or_types():
    from pathlib import Path

    from synthcal.quantization.auto import entry_digest

    assert entry_digest({"kind": "datafree", "seed": 1}) == entry_digest({"seed": 1, "kind": "datafree"})
    assert entry_digest({"kind": "datafree", "seed": 1}) != entry_digest({"kind": "datafree", "seed": 2})
    assert entry_digest({"path": Path("/a")}) == entry_digest({"path": "/a"}) == entry_digest({"path": Path("/a")})
    assert entry_digest(None) == entry_digest({})


def test_real_holdout_scores_cells_on_real_images_without_their_calibration_images():
    method = {"algorithm": "auto", "holdout": "datafree_holdout", "real_holdout": "cifar10_holdout"}
    check_auto_method("auto", method, CALIBRATION, ["datafree", "cifar10"])
    assert holdout_of(method, "cifar10") == holdout_of(method, "folder") == "cifar10_holdout"
    assert holdout_of(method, "datafree") == holdout_of(method, "noise") == "datafree_holdout"
    assert holdout_of({"holdout": "datafree_holdout"}, "cifar10") == "datafree_holdout"  # no real_holdout given
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (12, 4, 4, 3), dtype=np.uint8)
    calibration = ImageSet(pool[:8], np.arange(8), {"seed": 0})
    holdout = ImageSet(pool[5:], np.arange(5, 12), {"seed": 1})  # images 5, 6, 7 are in both
    kept, left_out = without_calibration_images(holdout, calibration)
    assert left_out == 3 and kept.labels.tolist() == [8, 9, 10, 11]
    assert np.array_equal(kept.images, pool[8:]) and kept.provenance == {"seed": 1}
    assert without_calibration_images(calibration, ImageSet(pool[8:], np.arange(4), {}))[1] == 0


@pytest.mark.parametrize("holdout_images, message", [
    (slice(0, 8), r"holds the same images as calibration\.datafree \(sha256 [0-9a-f]{12}\)"),
    (slice(2, 6), r"holds only images that are also in calibration\.datafree \(4 of 4\)"),
])
def test_a_holdout_with_the_calibration_images_is_refused_by_content(holdout_images, message):
    """Settings can differ (compile: false, another name) and still give the same pixels: the job checks them."""
    pool = np.random.default_rng(0).integers(0, 256, (8, 4, 4, 3), dtype=np.uint8)
    calibration = ImageSet(pool, np.arange(8), {"name": "datafree"})
    holdout = ImageSet(pool[holdout_images], np.arange(8)[holdout_images], {"name": "datafree_holdout"})
    method = {"algorithm": "auto", "holdout": "datafree_holdout"}
    _, shared = without_calibration_images(holdout, calibration)
    with pytest.raises(AutoMethodError, match=r"^methods\.auto\.holdout 'datafree_holdout' " + message):
        check_holdout_content("auto", method, calibration, holdout, shared)
    partly = ImageSet(np.concatenate([pool[:2], pool[:1] // 2 + 1]), np.arange(3), {"name": "datafree_holdout"})
    check_holdout_content("auto", method, calibration, partly, without_calibration_images(partly, calibration)[1])


def test_a_real_holdout_with_the_calibration_images_is_refused_under_its_own_key():
    pool = np.random.default_rng(1).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    calibration = ImageSet(pool, np.arange(6), {"name": "cifar10"})
    holdout = ImageSet(pool[:3], np.arange(3), {"name": "cifar10_holdout"})
    method = {"algorithm": "auto", "holdout": "datafree_holdout", "real_holdout": "cifar10_holdout"}
    with pytest.raises(AutoMethodError, match=r"^methods\.auto\.real_holdout 'cifar10_holdout' holds only images "
                                              r"that are also in calibration\.cifar10 \(3 of 3\), the cell's "
                                              r"calibration set: the proxy needs images no candidate was calibrated "
                                              r"on \(another seed or other files\)$"):
        check_holdout_content("auto", method, calibration, holdout, 3)
    # the synthetic holdout of the same method is named under holdout
    with pytest.raises(AutoMethodError, match=r"^methods\.auto\.holdout 'datafree_holdout' "):
        check_holdout_content("auto", method, calibration, ImageSet(pool[:3], np.arange(3),
                                                                     {"name": "datafree_holdout"}), 3)


def test_default_candidates_are_valid_and_few():
    candidates = candidates_of("auto", {"algorithm": "auto"})
    assert 2 <= len(candidates) <= 6  # each one is a full NNCF run: the method's cost
    check_auto_method("auto", {"algorithm": "auto", "holdout": "datafree_holdout"}, CALIBRATION, ["datafree"])


def _oracle_files(tmp_path, rng, n=2000):
    """Three candidates whose real agreement is 0.99 (fast), 0.95 (full), 0.97 (mq); the proxy ranks them the same."""
    labels = rng.integers(0, 10, n)
    fp32 = np.where(rng.random(n) < 0.9, labels, (labels + 1) % 10)
    rows = []
    for rate in (0.99, 0.95, 0.97):
        prediction = fp32.copy()
        flip = rng.random(n) > rate
        prediction[flip] = (fp32[flip] + 3) % 10
        rows.append(prediction)
    save_npz_deterministic(tmp_path / "candidates.npz", candidates=np.array(["fast", "full", "mq"]),
                           predictions=np.stack(rows), labels=labels)
    save_npz_deterministic(tmp_path / "fp32.npz", predictions=fp32, labels=labels)
    save_npz_deterministic(tmp_path / "baseline.npz", predictions=rows[1], labels=labels)
    candidates = [{"id": name, "proxy": {"agreement": agreement, "kl": kl, "logit_mse": 0.0}, "float_layers": []}
                  for name, agreement, kl in (("fast", 0.99, 0.01), ("full", 0.95, 0.05), ("mq", 0.97, 0.03))]
    return {"candidates": candidates, "proxy": "kl", "quantization_seconds": 12.0, "holdout_images": 400}, rows, fp32


def test_auto_vs_oracle_csv(tmp_path):
    rng = np.random.default_rng(1)
    info, rows, fp32 = _oracle_files(tmp_path, rng)
    record = {"model": "m", "calibration": "datafree", "method": "auto", "test_set": "test",
              "quantize": str(tmp_path / "quantize.json"), "candidates": str(tmp_path / "candidates.npz"),
              "fp32": str(tmp_path / "fp32.npz"), "baseline": str(tmp_path / "baseline.npz")}
    rows_out = []
    for chosen in ("fast", "full"):
        write_json(tmp_path / "quantize.json", {**info, "chosen": chosen})
        table = write_auto_vs_oracle([record], tmp_path / "auto_vs_oracle.csv", {"bootstrap_resamples": 999})
        assert pd.read_csv(tmp_path / "auto_vs_oracle.csv").shape == table.shape
        rows_out.append(table.iloc[0])
    good, bad = rows_out
    real = [(row == fp32).mean() for row in rows]
    assert good.oracle == bad.oracle == "fast" and good.pick == "fast" and bad.pick == "full"
    assert good.pick_agreement == pytest.approx(real[0]) and bad.pick_agreement == pytest.approx(real[1])
    assert good.pick_minus_oracle == 0 and good.pick_vs_oracle_mcnemar_p == 1.0
    assert not good.pick_vs_oracle_distinguishable
    assert bad.pick_minus_oracle == pytest.approx(real[1] - real[0])  # 4 pp on 2,000 images: clearly apart
    assert bad.pick_vs_oracle_mcnemar_p < 0.001 and bad.pick_vs_oracle_distinguishable
    assert bad.pick_minus_oracle_ci_low <= bad.pick_minus_oracle <= bad.pick_minus_oracle_ci_high < 0
    assert good.kendall_tau == pytest.approx(1.0)  # the proxy ranks the three as the real images do
    assert good.pick_minus_baseline == pytest.approx(real[0] - real[1]) and bad.pick_minus_baseline == 0
    page = auto_oracle_html(pd.DataFrame(rows_out))
    assert "oracle" in page and page.count("<tr>") == 3
    assert re.search(r"<td>\+[34]\.\d\d pp <small>\[", page)  # fast vs default_full_bc: about +4 pp
    anchor, title, _ = auto_oracle_section(str(tmp_path / "auto_vs_oracle.csv"))
    assert anchor == "auto" and "oracle" in title


def test_the_choice_reads_no_test_image(tmp_path):
    """A tiny model, no test split anywhere: the choice opens only the FP32 IR, the calibration and holdout sets (an
    audit hook records every file the process opens while it runs) and writes every candidate, its proxy score and
    the pick."""
    import sys
    from types import SimpleNamespace

    import openvino as ov
    from conftest import tiny_classifier_model

    from synthcal.io import save_image_set
    from synthcal.quantization.auto import quantize_auto_from_files

    ov.save_model(tiny_classifier_model((8, 16)), tmp_path / "fp32.xml")
    rng = np.random.default_rng(0)
    for name, count in (("calib", 60), ("holdout", 40)):
        save_image_set(tmp_path / f"{name}.npz", rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8), None,
                       {"name": name})
    inputs = SimpleNamespace(xml=str(tmp_path / "fp32.xml"), calibration=str(tmp_path / "calib.npz"),
                             holdout=str(tmp_path / "holdout.npz"))
    outputs = SimpleNamespace(xml=str(tmp_path / "out/int8.xml"), info=str(tmp_path / "out/quantize.json"),
                              candidates=str(tmp_path / "out/candidates"))
    method = {"algorithm": "auto", "holdout": "h", "candidates": [{"id": "fast"}, {
        "id": "full_hist", "fast_bias_correction": False, "activations_range": "histogram", "overflow_fix": "disable",
        "weight_rounding": "gptq"}]}
    opened, recording = [], [True]
    # an audit hook cannot be removed: it stops recording when the choice returns
    sys.addaudithook(lambda event, args: opened.append(str(args[0]))
                     if recording[0] and event == "open" and args else None)
    try:
        returned = quantize_auto_from_files("auto", method, inputs, outputs)
    finally:
        recording[0] = False
    read = {path for path in opened if path.startswith(str(tmp_path)) and "/out/" not in path}
    # Python opens the two image sets (OpenVINO reads the IR in C++, unseen by the hook) and nothing else of ours
    assert read == {str(tmp_path / name) for name in ("calib.npz", "holdout.npz")}, read
    info = read_json(tmp_path / "out/quantize.json")
    assert returned == info
    assert [c["id"] for c in info["candidates"]] == ["fast", "full_hist"] and info["reads_test_images"] is False
    assert info["holdout_images"] == 40 and info["calibration_samples_used"] == 60
    kl = [c["proxy"]["kl"] for c in info["candidates"]]
    assert kl[0] != kl[1] and info["chosen"] == ["fast", "full_hist"][int(np.argmin(kl))]
    assert all(c["float_layers"] == [] and c["fake_quantize_count"] > 0 for c in info["candidates"])
    chosen = tmp_path / "out/candidates" / info["chosen"]
    assert (tmp_path / "out/int8.bin").read_bytes() == (chosen / "int8.bin").read_bytes()
    # the record: what ran, with what, and how long each step took (seconds of this run, not clock readings)
    from synthcal.quantization.nncf_engine import nncf

    assert (info["method"], info["engine"], info["algorithm"], info["config"], info["proxy"]) == (
        "auto", "nncf", "auto", method, "kl")  # kl: the default proxy
    assert (info["nncf_version"], info["openvino_version"]) == (nncf.__version__, ov.get_version())
    for candidate, recipe in zip(info["candidates"], method["candidates"], strict=True):
        assert candidate["recipe"] == recipe
        assert candidate["ir"] == str(tmp_path / "out/candidates" / recipe["id"] / "int8.xml")
        assert 0 < candidate["quantization_seconds"] < 600 and 0 < candidate["proxy_seconds"] < 600
    assert 0 < info["reference_seconds"] < 600


def test_the_choice_refuses_empty_sets_and_the_calibration_images_as_holdout_and_clears_old_candidates(tmp_path):
    import openvino as ov
    from conftest import tiny_classifier_model

    from synthcal.quantization.auto import quantize_auto

    ov.save_model(tiny_classifier_model((8, 16)), tmp_path / "fp32.xml")
    pool = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    method = {"algorithm": "auto", "holdout": "h", "candidates": [{"id": "fast"}]}
    outputs = (tmp_path / "out/int8.xml", tmp_path / "out/quantize.json", tmp_path / "out/candidates")
    empty = ImageSet(pool[:0], np.zeros(0, np.int64), {"name": "c"})
    with pytest.raises(AutoMethodError, match=r"^methods\.auto: the calibration set and the holdout set need images "
                                              r"\(got 0 and 4\)$"):
        quantize_auto(tmp_path / "fp32.xml", empty, ImageSet(pool[4:], np.arange(4), {}), "auto", method, *outputs)
    same = ImageSet(pool[:4], np.arange(4), {"name": "c"})
    with pytest.raises(AutoMethodError, match=r"^methods\.auto\.holdout 'h' holds the same images as"):
        quantize_auto(tmp_path / "fp32.xml", same, ImageSet(pool[:4], np.arange(4), {"name": "h"}), "auto", method,
                      *outputs)
    stale = tmp_path / "out/candidates/old/int8.xml"
    stale.parent.mkdir(parents=True)
    stale.write_text("an earlier run's candidate")
    with pytest.raises(AutoMethodError, match=r"^methods\.mine\.candidates\[0\]\.id must be a non-empty name"):
        quantize_auto(tmp_path / "fp32.xml", same, ImageSet(pool[4:], np.arange(4), {}), "mine",
                      {"algorithm": "auto", "holdout": "h", "candidates": [{"id": ""}]}, *outputs)
    one = ImageSet(pool[:1], np.arange(1), {"name": "c"})  # one image each is enough
    info = quantize_auto(tmp_path / "fp32.xml", one, ImageSet(pool[1:2], np.arange(1), {}), "auto", method, *outputs)
    assert info["chosen"] == "fast" and not stale.exists() and (tmp_path / "out/candidates/fast/int8.xml").exists()


@pytest.mark.slow
def test_auto_cell_and_its_oracle_through_snakemake(tmp_path):
    """The three rules of an auto cell in a real Snakemake run: the choice, the oracle on the real test split and
    auto_vs_oracle.csv with the default_full_bc comparison."""
    lossless = shared_path("data", "cifar10-lossless")
    weights = shared_path("weights", "cifar10_resnet20-4118986f.pt")
    config = {
        "study": {"models": ["resnet20"], "calibration": ["noise"], "methods": ["auto", "default_full_bc"],
                  "test_sets": []},
        "data": {"source": "folder", "folders": {"train": str(lossless / "train"), "test": str(lossless / "test")},
                 "limit": {"test": 200}},
        "models": {"resnet20": {"weights": {"source": "path", "path": str(weights)}}},
        "calibration": {"noise": {"kind": "noise", "count": 60, "seed": 0},
                        "noise_holdout": {"kind": "noise", "count": 40, "seed": 1}},
        "methods": {"auto": {"algorithm": "auto", "holdout": "noise_holdout",
                             "candidates": [{"id": "fast"}, {"id": "gptq_mq", "fast_bias_correction": False,
                                                              "activations_range": "mean_quantile",
                                                              "overflow_fix": "disable", "weight_rounding": "gptq"}]}},
        "report": {"bootstrap_resamples": 999},
    }
    config_path = tmp_path / "auto.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = run_snakemake(tmp_path, config_path, args=("results/report/auto_vs_oracle.csv",))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    cell = tmp_path / "results/quantized/resnet20/noise/auto"
    info = read_json(cell / "quantize.json")
    assert info["holdout_set"]["seed"] == 1 and info["holdout_images"] == 40
    rounding = info["candidates"][1]["nncf_arguments"]["weight_rounding"]  # 21 convolutions and the classifier
    assert rounding["method"] == "gptq" and rounding["layers"] == 22 and rounding["grid_match"]["share"] >= 0.999
    assert (cell / "int8.xml").read_bytes() == (cell / "candidates" / info["chosen"] / "int8.xml").read_bytes()
    table = pd.read_csv(tmp_path / "results/report/auto_vs_oracle.csv")
    assert len(table) == 1 and table.pick[0] == info["chosen"] and table.images[0] == 200
    assert table.oracle_agreement[0] >= table.pick_agreement[0] and table.baseline[0] == "default_full_bc"


def test_each_candidates_recipe_reaches_nncf_and_the_proxy_picks(tmp_path):
    """In process (the audited test above runs in a child): each candidate's settings are in the arguments NNCF got,
    the pick is ``choose`` over the recorded proxy scores, and holdout images identical to calibration images go."""
    import openvino as ov
    from conftest import tiny_classifier_model

    from synthcal.quantization.auto import quantize_auto
    from synthcal.quantization.nncf_engine import nncf

    RangeEstimatorParametersSet = nncf.quantization.range_estimator.RangeEstimatorParametersSet  # noqa: N806
    ov.save_model(tiny_classifier_model((8, 16)), tmp_path / "fp32.xml")
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (170, 32, 32, 3), dtype=np.uint8)
    calibration = ImageSet(pool[:150], np.full(150, -1), {"name": "calib"})
    holdout = ImageSet(pool[140:], np.full(30, -1), {"name": "hold"})  # 10 images shared with the calibration set
    method = {"algorithm": "auto", "holdout": "hold", "proxy": "agreement", "candidates": [
        {"id": "fast", "subset_size": 90},
        {"id": "full", "fast_bias_correction": False, "preset": "mixed", "activations_range": "mean_minmax",
         "overflow_fix": "disable", "augment": "flip"},
        {"id": "fifth", "fast_bias_correction": False, "bias_correction_images": "fifth", "subset_size": 1000}]}
    info = quantize_auto(tmp_path / "fp32.xml", calibration, holdout, "auto", method, tmp_path / "out/int8.xml",
                         tmp_path / "out/quantize.json", tmp_path / "out/candidates")
    fast, full, fifth = info["candidates"]
    assert fast["nncf_arguments"] == {"preset": "performance", "target_device": "CPU", "subset_size": "1",
                                      "fast_bias_correction": "True", "statistics_images": 90,
                                      "statistics_batch": 100, "advanced": {}}
    # 300 images (150 and their mirror images) in 3 items; full bias correction over every item: 3 × 5
    assert full["nncf_arguments"] == {"preset": "mixed", "target_device": "CPU", "subset_size": "15",
                                      "fast_bias_correction": "False", "statistics_images": 300,
                                      "statistics_batch": 100, "advanced": {
                                          "activations_range_estimator_params": str(
                                              RangeEstimatorParametersSet.MEAN_MINMAX),
                                          "overflow_fix": "disable"}}
    assert fifth["nncf_arguments"]["subset_size"] == "2" and fifth["nncf_arguments"]["statistics_images"] == 150
    # what NNCF made of them: the ranges of one image per item, given the same settings by hand
    from synthcal.quantization.auto import mirrored_pairs
    from synthcal.quantization.nncf_engine import per_image_items

    items = per_image_items(mirrored_pairs(calibration.images), 300, statistics_batch=1)
    by_hand = nncf.quantize(ov.Core().read_model(tmp_path / "fp32.xml"), nncf.Dataset(items),
                            preset=nncf.QuantizationPreset.MIXED, subset_size=len(items), fast_bias_correction=False,
                            advanced_parameters=nncf.AdvancedQuantizationParameters(
                                activations_range_estimator_params=RangeEstimatorParametersSet.MEAN_MINMAX,
                                overflow_fix=nncf.OverflowFix.DISABLE))
    expected = quantizer_ranges(by_hand)
    assert len(expected) == len(quantizer_ranges(tmp_path / "out/candidates/full/int8.xml")) > 0
    for got, want in zip(quantizer_ranges(tmp_path / "out/candidates/full/int8.xml"), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert info["holdout_images"] == 20 and info["holdout_images_left_out"] == 10
    assert info["proxy"] == "agreement" and info["reads_test_images"] is False
    assert info["chosen"] == ["fast", "full", "fifth"][choose([c["proxy"] for c in info["candidates"]], "agreement")]
    chosen = next(c for c in info["candidates"] if c["id"] == info["chosen"])
    assert (tmp_path / "out/int8.xml").read_bytes() == (tmp_path / "out/candidates" / info["chosen"] /
                                                       "int8.xml").read_bytes()
    assert info["float_layers"] == chosen["float_layers"] and info["fake_quantize_count"] == chosen[
        "fake_quantize_count"] > 0
    assert info["quantization_seconds"] == pytest.approx(info["reference_seconds"] + sum(
        c["quantization_seconds"] + c["proxy_seconds"] for c in info["candidates"]))
    assert read_json(tmp_path / "out/quantize.json")["chosen"] == info["chosen"]
    assert info["calibration_samples_used"] == info["calibration_images_available"] == 150
    assert info["calibration_set"] == {"name": "calib"} and info["holdout_set"] == {"name": "hold"}
    with pytest.raises(AutoMethodError, match=r"methods.auto.holdout None holds only images that are also in "
                                              r"calibration.calib \(5 of 5\)"):  # nothing left held out
        quantize_auto(tmp_path / "fp32.xml", calibration, ImageSet(pool[:5], np.full(5, -1), {}), "auto", method,
                      tmp_path / "x/int8.xml", tmp_path / "x/quantize.json", tmp_path / "x/candidates")


@pytest.mark.parametrize("precision_hint", ["f32", "bf16"])
def test_the_proxy_scores_logits_computed_at_the_precision_asked_for(tmp_path, precision_hint):
    """FP32 and every candidate are compiled with the study's precision hint (this CPU would run "FP32" in bf16
    without one): the recorded scores are those of logits computed so, through the workflow entry."""
    from types import SimpleNamespace

    import openvino as ov
    from conftest import tiny_classifier_model

    from synthcal.inference import compile_model, infer_logits
    from synthcal.io import save_image_set
    from synthcal.quantization.auto import quantize_auto_from_files

    ov.save_model(tiny_classifier_model((8, 16)), tmp_path / "fp32.xml")
    pool = np.random.default_rng(3).integers(0, 256, (90, 32, 32, 3), dtype=np.uint8)
    save_image_set(tmp_path / "calib.npz", pool[:60], None, {"name": "calib"})
    save_image_set(tmp_path / "holdout.npz", pool[60:], None, {"name": "h"})
    inputs = SimpleNamespace(xml=str(tmp_path / "fp32.xml"), calibration=str(tmp_path / "calib.npz"),
                             holdout=str(tmp_path / "holdout.npz"))
    outputs = SimpleNamespace(xml=str(tmp_path / "out/int8.xml"), info=str(tmp_path / "out/quantize.json"),
                              candidates=str(tmp_path / "out/candidates"))
    info = quantize_auto_from_files("auto", {"algorithm": "auto", "holdout": "h", "candidates": [{"id": "only"}]},
                                    inputs, outputs, precision_hint=precision_hint)
    fp32, int8 = (infer_logits(compile_model(str(xml), precision_hint), pool[60:])
                  for xml in (tmp_path / "fp32.xml", tmp_path / "out/int8.xml"))
    assert info["candidates"][0]["proxy"] == proxy_scores(fp32, int8)


def test_mirrored_pairs_put_each_images_left_right_mirror_right_after_it():
    from synthcal.quantization.auto import mirrored_pairs

    images = np.random.default_rng(2).integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    pairs = mirrored_pairs(images)
    assert pairs.shape == (6, 4, 5, 3)
    for index, image in enumerate(images):
        np.testing.assert_array_equal(pairs[2 * index], image)
        np.testing.assert_array_equal(pairs[2 * index + 1], np.fliplr(image))  # columns (W) reversed


ALLOWED = {"preset": ["performance", "mixed"], "overflow_fix": ["enable", "disable", "first_layer_only"],
           "bias_correction_images": ["all", "fifth"], "fast_bias_correction": [True, False], "augment": ["flip"],
           "weight_rounding": ["gptq"]}


@pytest.mark.parametrize("key", sorted(ALLOWED))
def test_each_candidate_setting_takes_exactly_its_values(key):
    for value in ALLOWED[key]:
        candidate = {"id": "a", key: value} | ({"overflow_fix": "disable"} if key == "weight_rounding" else {})
        assert candidates_of("auto", {"candidates": [candidate]}) == [candidate]
    wrong = {"id": "a", key: "other"} | ({"overflow_fix": "disable"} if key == "weight_rounding" else {})
    with pytest.raises(AutoMethodError, match=rf"^methods\.auto\.candidates\[0\]\.{key} is 'other', not one of "
                                              rf"{re.escape(str(ALLOWED[key]))}$"):
        candidates_of("auto", {"candidates": [wrong]})


@pytest.mark.parametrize(("candidates", "message"), [
    (["fast"], "methods.auto.candidates[0] must be a mapping of ['activations_range', 'augment', "),
    ([{"subset_size": 3}], "methods.auto.candidates[0].id must be a non-empty name of letters, digits, '_' or '-'"),
    ([{"id": "a b"}], "methods.auto.candidates[0].id must be a non-empty name of letters, digits, '_' or '-'"),
    ([{"id": "a"}, {"id": "a"}], "methods.auto.candidates[1].id 'a' is used twice"),
    ([{"id": "g", "weight_rounding": "gptq"}], "methods.auto.candidates[0].weight_rounding needs overflow_fix: "
                                               "disable (NNCF's default 7-bit first layer would round the weights "
                                               "again on another grid)"),
    ([{"id": "g", "gptq_damp": 0.5}], "methods.auto.candidates[0].gptq_damp is set without weight_rounding: gptq"),
    ([{"id": "a", "subset_size": 0}], "methods.auto.candidates[0].subset_size must be 'all' or a positive number, "
                                      "got 0"),
    *[([{"id": "g", "weight_rounding": "gptq", "overflow_fix": "disable", "gptq_damp": damp}],
       f"methods.auto.candidates[0].gptq_damp must be a positive number, got {damp!r}")
      for damp in (0, -0.1, True, "1")],
])
def test_bad_candidates_are_refused_in_one_line(candidates, message):
    with pytest.raises(AutoMethodError, match="^" + re.escape(message)):
        candidates_of("auto", {"candidates": candidates})


def test_an_unknown_proxy_is_refused_naming_the_method():
    assert candidates_of("auto", {"candidates": [{"id": "a"}], "proxy": "kl"}) == [{"id": "a"}]
    with pytest.raises(AutoMethodError, match=r"^methods\.auto\.proxy 'l2' is not one of "):
        candidates_of("auto", {"candidates": [{"id": "a"}], "proxy": "l2"})


def test_candidate_names_may_hold_underscores_and_dashes():
    named = [{"id": "full_bc-hist"}, {"id": "g", "weight_rounding": "gptq", "overflow_fix": "disable",
                                       "gptq_damp": 0.5}]
    assert candidates_of("auto", {"candidates": named}) == named
    assert candidates_of("auto", {"candidates": [{"id": "_"}, {"id": "-"}, {"id": "été_2"}]})[0] == {"id": "_"}
    for bad in ("a b", "a/b", "a.b", "-\n"):
        with pytest.raises(AutoMethodError, match=r"candidates\[0\]\.id must be a non-empty name"):
            candidates_of("auto", {"candidates": [{"id": bad}]})
