"""Mutation score (mutmut 3) of the modules that decide the study's numbers, each against its own fast tests.

    .venv/bin/python benchmarks/mutation_score.py [MODULE ...] [--sample N] [--max-children 2] [--fresh | --retest]

(``make mutation`` runs all of them on one mutant in 10, to fit 30 minutes on 2 cores; ``SAMPLE=1`` for every
mutant.) Each module gets a work folder ``.mutation/<module>/`` holding a copy of ``synthcal/``, ``tests/`` and the
files the tests read, and a ``pyproject.toml`` whose ``[tool.mutmut]`` names that module and its tests
(``-m "not slow"``, minus the few fast tests that take minutes and test nothing of it); ``mutmut run`` works there
(``mutants/``), so a rerun of every mutant only tests those it has no result for (``--fresh`` starts over;
``--retest`` tests the last run's survivors again, after tests were added). ``--sample N`` tests one mutant in N,
always the same ones (those whose number ends in given digits, in every function), each run again. Printed per
module: mutmut's figures (killed, timeout, survived, no tests, skipped), its score (killed + timeout) / (total −
skipped) with its exact 95 % interval (the score over all mutants, when a sample was tested), the score with the
equivalent mutants below left out, and every mutant not killed with the line it changes. ``EQUIVALENT`` lists the
surviving mutants that no test can kill, each with why. Not part of CI (README, "Mutation testing").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".mutation"
MUTMUT = Path(sys.executable).with_name("mutmut")
FAST = ["-m", "not slow", "-p", "no:cacheprovider"]

# module -> (source file, its own tests, extra pytest arguments)
MODULES: dict[str, tuple[str, list[str], list[str]]] = {
    "stats": ("synthcal/evaluation/stats.py", ["tests/test_stats.py"], []),
    "evaluate": ("synthcal/evaluation/evaluate.py", ["tests/test_evaluate.py"], []),
    # the report's own tests build a whole page per run (minutes per mutant): the in-memory study instead
    "recommendation": ("synthcal/report/recommendation.py",
                       ["tests/test_recommendation.py",
                        "tests/test_report.py::test_reference_prefers_a_cifar10_set_whatever_the_order"], []),
    # GPTQ candidates are quantized in the weight-rounding tests
    "auto": ("synthcal/quantization/auto.py",
             ["tests/test_auto.py", "tests/test_weight_rounding.py::test_nncf_keeps_gptqs_integers_in_the_int8_model",
              "tests/test_weight_rounding.py::test_a_matmul_without_transpose_b_is_read_and_written_as_output_rows"],
             []),
    "weight_rounding": ("synthcal/quantization/weight_rounding.py", ["tests/test_weight_rounding.py"], []),
    "nncf_engine": ("synthcal/quantization/nncf_engine.py", ["tests/test_nncf_engine.py"], []),
    # a resnet20 inversion (1.5 min) and two compiled-step checks (C++ builds): minutes each, loss not asserted
    "datafree": ("synthcal/calibration/datafree.py", ["tests/test_datafree.py"],
                 ["--deselect", "tests/test_datafree.py::test_resnet20_images_are_classified_as_their_assigned_class",
                  "--deselect", "tests/test_datafree.py::test_compiled_bf16_step_reaches_the_eager_float32_loss",
                  "--deselect",
                  "tests/test_datafree.py::test_without_a_cxx_compiler_the_step_runs_eagerly_and_says_so"]),
    "data": ("synthcal/data.py", ["tests/test_data.py", "tests/test_imagenet_scale.py", "tests/test_hostile_inputs.py"],
             []),
    "preprocessing": ("synthcal/models/preprocessing.py", ["tests/test_preprocessing.py"], []),
}

# Files the fast tests read beside synthcal/ and tests/.
ALSO_COPY = ["schemas", "config", "config.yaml"]

# Surviving mutants no test can kill: mutmut's name -> why the mutant computes what the original does.
EQUIVALENT: dict[str, str] = {
    "synthcal.report.recommendation.x_recommend__mutmut_19":
        "pandas' groupby reads sort=None as False: groups in study order",
    "synthcal.report.recommendation.x__best__mutmut_3":
        "pandas ignores kind when sorting on several columns (a stable lexsort)",
    "synthcal.report.recommendation.x__best__mutmut_6":
        "pandas ignores kind when sorting on several columns (a stable lexsort)",
    "synthcal.report.recommendation.x__best__mutmut_12":
        "pandas ignores kind when sorting on several columns (a stable lexsort)",
    "synthcal.report.recommendation.x__best__mutmut_13":
        "pandas ignores kind when sorting on several columns (a stable lexsort)",
    "synthcal.report.recommendation.x__agrees__mutmut_10": "both sides of every McNemar pair flip: the discordant "
                                                           "counts swap and the two-sided p is symmetric",
    "synthcal.evaluation.evaluate.x_evaluate_from_files__mutmut_4": "extra = None: both branches set extra before "
                                                                    "it is read",
    "synthcal.evaluation.evaluate.x_classification_metrics__mutmut_13":
        "argsort's default axis is the last: axis 1 of the 2-D logits",
    "synthcal.evaluation.evaluate.x_throughput__mutmut_8": "float('NAN') is nan as well",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_4": "show_progress: a progress bar on stderr only",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_31":
        "warm-up of every image (images[:None]): untimed, its output unused",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_36": "warm-up size: untimed, its output unused",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_37": "warm-up size: untimed, its output unused",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_38": "warm-up size: untimed, its output unused",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_44": "warm-up batch size: untimed, its output unused",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_51": "show_progress: a progress bar on stderr only",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_52": "the progress bar's label",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_57": "show_progress: a progress bar on stderr only",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_58": "the progress bar's label",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_60": "the progress bar's label",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_61": "the progress bar's label",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_81": "batch_seconds is never empty: a test set has images",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_21":
        "uint8_images=None: OpenVINO converts the uint8 input itself (speed only)",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_24":
        "no uint8_images: OpenVINO converts the uint8 input itself (speed only)",
    "synthcal.evaluation.evaluate.x_evaluate_ir__mutmut_25":
        "uint8_images=False: OpenVINO converts the uint8 input itself (speed only)",
    "synthcal.evaluation.evaluate.x_evaluate_crossfold__mutmut_16":
        "the part's provenance is overwritten by the whole set's below",
    "synthcal.evaluation.evaluate.x_evaluate_crossfold__mutmut_46": "evaluate_ir already recorded the same test_set",
    "synthcal.evaluation.evaluate.x_evaluate_crossfold__mutmut_47": "evaluate_ir already recorded the same test_set",
    "synthcal.evaluation.evaluate.x_evaluate_crossfold__mutmut_48":
        "evaluate_ir of fold 0 already recorded the same ir",
    "synthcal.evaluation.evaluate.x_evaluate_crossfold__mutmut_49":
        "evaluate_ir of fold 0 already recorded the same ir",
    "synthcal.data.x_download__mutmut_49":
        "response.headers.get is case-insensitive (HTTPMessage): 'content-length' finds Content-Length",
    "synthcal.data.x_download__mutmut_50":
        "same: 'CONTENT-LENGTH' finds Content-Length",
    "synthcal.data.x__batch_to_arrays__mutmut_42":
        "numpy reads any negative reshape dimension as the unknown one: reshape(-2, ...) == reshape(-1, ...)",
    "synthcal.data.x__sort_key__mutmut_8":
        "float('INF') == float('inf')",
    "synthcal.data.x__to_rgb__mutmut_16":
        "float64 0..255 integers become a mode F image whose convert('RGB') gives the bytes mode L gives",
    "synthcal.data.x_crop_views__mutmut_90":
        "np.asarray of an RGB PIL image is already uint8",
    "synthcal.data.x_crop_views__mutmut_92":
        "np.asarray of an RGB PIL image is already uint8",
    "synthcal.data.x_decode_image__mutmut_30":
        "the image is RGB after _to_rgb: its array is uint8 already",
    "synthcal.data.x_decode_image__mutmut_32":
        "the image is RGB after _to_rgb: its array is uint8 already",
    "synthcal.data.x__decode_entries__mutmut_1":
        "worker count only: pool.map decodes every entry and keeps the order",
    "synthcal.data.x__decode_entries__mutmut_6":
        "worker count only",
    "synthcal.data.x__decode_entries__mutmut_11":
        "worker count only",
    "synthcal.data.x__decode_entries__mutmut_12":
        "worker count only",
    "synthcal.data.x__decode_entries__mutmut_13":
        "worker count only",
    "synthcal.data.x__decode_entries__mutmut_14":
        "worker count only",
    "synthcal.data.x__decode_entries__mutmut_18":
        "worker count only",
    "synthcal.data.x__decode_entries__mutmut_19":
        "worker count only",
    "synthcal.data.x__decode_entries__mutmut_20":
        "worker count only (the else branch is for systems without sched_getaffinity)",
    "synthcal.data.x__decode_entries__mutmut_21":
        "worker count only: the executor's default",
    "synthcal.data.xǁFolderImagesǁ__getitem____mutmut_5":
        "(start, stop) of a non-slice key are never read",
    "synthcal.data.xǁFolderImagesǁ__getitem____mutmut_6":
        "(start, stop) of a non-slice key are never read",
    "synthcal.data.xǁFolderImagesǁ__getitem____mutmut_7":
        "(start, stop) of a non-slice key are never read",
    "synthcal.data.xǁFolderImagesǁ_chunks__mutmut_32":
        "the inner decode bar is disabled: its label is never shown",
    "synthcal.data.xǁFolderImagesǁ_chunks__mutmut_33":
        "show_progress None disables the inner bar as False does",
    "synthcal.data.xǁFolderImagesǁ_chunks__mutmut_39":
        "the label of a disabled bar is never shown",
    "synthcal.data.xǁFolderImagesǁ_chunks__mutmut_48":
        "zip strict: names has exactly one entry per image",
    "synthcal.data.xǁFolderImagesǁ_chunks__mutmut_51":
        "zip strict: names has exactly one entry per image",
    "synthcal.data.xǁFolderImagesǁ_chunks__mutmut_52":
        "zip strict: names has exactly one entry per image",
    "synthcal.data.xǁFolderImagesǁ_chunks__mutmut_66":
        "astype's copy flag on a fresh uint8 array: same values",
    "synthcal.data.xǁFolderImagesǁ_chunks__mutmut_68":
        "astype's copy flag on a fresh uint8 array: same values",
    "synthcal.data.xǁFolderImagesǁ_chunks__mutmut_70":
        "astype's copy flag on a fresh uint8 array: same values",
    "synthcal.data.xǁFolderImagesǁ__array____mutmut_11":
        "numpy casts an __array__ result to the requested dtype itself",
    "synthcal.data.xǁFolderImagesǁ__array____mutmut_13":
        "astype(None) is float64, which numpy then casts to the requested dtype",
    "synthcal.data.x__folder_entries__mutmut_19":
        "inner is never read when there is no archive: the 'does not exist' error follows",
    "synthcal.data.x__folder_entries__mutmut_36":
        "inner is str(relative path): it never starts or ends with '/'",
    "synthcal.data.x_read_image_folder__mutmut_44":
        "tie-breaker never reached: the sort key already ends with the unique file name",
    "synthcal.data.x_read_image_folder__mutmut_90":
        "np.full with the Python int UNLABELLED is int64 already",
    "synthcal.data.x_read_image_folder__mutmut_93":
        "np.full with the Python int UNLABELLED is int64 already",
    "synthcal.data.x_read_image_folder__mutmut_161":
        "np.full with the Python int UNLABELLED is int64 already",
    "synthcal.data.x_read_image_folder__mutmut_164":
        "np.full with the Python int UNLABELLED is int64 already",
    "synthcal.data.x_read_image_folder__mutmut_137":
        "zip strict: entries are expanded per view exactly as decoded",
    "synthcal.data.x_read_image_folder__mutmut_140":
        "zip strict: entries are expanded per view exactly as decoded",
    "synthcal.data.x_read_image_folder__mutmut_141":
        "zip strict: entries are expanded per view exactly as decoded",
    "synthcal.data.x_dataset_classes__mutmut_8":
        "the default is only compared with 'folder'",
    "synthcal.data.x_dataset_classes__mutmut_10":
        "the default is only compared with 'folder'",
    "synthcal.data.x_dataset_classes__mutmut_13":
        "the default is only compared with 'folder'",
    "synthcal.data.x_dataset_classes__mutmut_14":
        "the default is only compared with 'folder'",
    "synthcal.data.x_load_split__mutmut_96":
        "a list size behaves as the tuple: decode_image unpacks it, the provenance stores a list",
    "synthcal.data.x_load_split__mutmut_112":
        "the {} default is only reached when source['limit'] is a dict: never used",
    "synthcal.data.x_load_split__mutmut_114":
        "the {} default is only reached when source['limit'] is a dict: never used",
    "synthcal.quantization.weight_rounding.x_rounded_layers__mutmut_35":
        "OpenVINO's Convolution always reports auto_pad: the default is never read",
    "synthcal.quantization.weight_rounding.x_rounded_layers__mutmut_37":
        "OpenVINO's Convolution always reports auto_pad: the default is never read",
    "synthcal.quantization.weight_rounding.x_rounded_layers__mutmut_41":
        "OpenVINO's Convolution always reports auto_pad: the default is never read",
    "synthcal.quantization.weight_rounding.x_rounded_layers__mutmut_45":
        "OpenVINO's PadType has no 'notset' (older name): never reported",
    "synthcal.quantization.weight_rounding.x_rounded_layers__mutmut_46":
        "OpenVINO's PadType has no 'notset' (older name): never reported",
    "synthcal.quantization.weight_rounding.x__input_rows__mutmut_97":
        "numpy reads any negative reshape dimension as the unknown one",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_1":
        "batch size only: the sums over all rows do not depend on the grouping",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_13":
        "batch size only: the sums over all rows do not depend on the grouping",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_14":
        "batch size only: the sums over all rows do not depend on the grouping",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_23":
        "add_outputs names every output it adds: the fallback name is never needed",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_24":
        "add_outputs names every output it adds: the fallback name is never needed",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_28":
        "performance hint: speed only",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_30":
        "'f32' is compile_model's default precision hint",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_31":
        "performance hint: speed only",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_35":
        "performance hint: compile_model upper-cases it",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_52":
        "zip strict: one added output per layer by construction",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_55":
        "zip strict: one added output per layer by construction",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_56":
        "zip strict: one added output per layer by construction",
    "synthcal.quantization.weight_rounding.x_input_second_moments__mutmut_64":
        "astype(None) is float64",
    "synthcal.quantization.weight_rounding.x_weight_matrix__mutmut_2":
        "astype(None) is float64",
    "synthcal.quantization.weight_rounding.x_weight_matrix__mutmut_19":
        "numpy reads any negative reshape dimension as the unknown one",
    "synthcal.quantization.weight_rounding.x_gptq_round__mutmut_10":
        "its callers pass weight_matrix's float64 matrices: np.array keeps float64",
    "synthcal.quantization.weight_rounding.x_gptq_round__mutmut_12":
        "its callers pass weight_matrix's float64 matrices: np.array keeps float64",
    "synthcal.quantization.weight_rounding.x_gptq_round__mutmut_36":
        "a dead column is zeroed and isolated in H: its diagonal value moves no error",
    "synthcal.quantization.weight_rounding.x_gptq_round__mutmut_47":
        "numpy reads argsort's kind case-insensitively",
    "synthcal.quantization.weight_rounding.x_integer_weights__mutmut_30":
        "the chain's int8 node is a Constant, which ends the walk by its type",
    "synthcal.quantization.weight_rounding.x_integer_weights__mutmut_31":
        "the chain's int8 node is a Constant, which ends the walk by its type",
    "synthcal.quantization.weight_rounding.x_integer_weights__mutmut_77":
        "numpy reads any negative reshape dimension as the unknown one",
    "synthcal.quantization.weight_rounding.x_grid_match__mutmut_20":
        "rtol=1e-5 is np.isclose's default",
    "synthcal.quantization.weight_rounding.x_grid_match__mutmut_21":
        "atol 1e-8 (the default) is far below the 1e-5 relative tolerance of any weight scale",
    "synthcal.quantization.auto.x_without_calibration_images__mutmut_4":
        "a list of Python bools is a bool array; an empty holdout returns before the mask is used",
    "synthcal.quantization.auto.x_without_calibration_images__mutmut_6":
        "a list of Python bools is a bool array; an empty holdout returns before the mask is used",
    "synthcal.quantization.auto.x_mirrored_pairs__mutmut_12":
        "numpy reads any negative reshape dimension as the unknown one",
    "synthcal.quantization.nncf_engine.x__quantize_with_accuracy_control__mutmut_48":
        "images[:None] is every image, as the else branch gives",
    "synthcal.quantization.nncf_engine.x__quantize_with_accuracy_control__mutmut_79":
        "targets has one entry per validation image by construction: zip's strictness never acts",
    "synthcal.quantization.nncf_engine.x__quantize_with_accuracy_control__mutmut_82":
        "targets has one entry per validation image by construction: zip's strictness never acts",
    "synthcal.quantization.nncf_engine.x__quantize_with_accuracy_control__mutmut_88":
        "targets has one entry per validation image by construction: zip's strictness never acts",
    "synthcal.quantization.nncf_engine.x__quantize_with_accuracy_control__mutmut_92":
        "the validation batch size: each image's result is the same in a batch of 100 or 101",
    "synthcal.quantization.nncf_engine.x__quantize_with_accuracy_control__mutmut_110":
        "astype(None) is float64, as astype(float)",
    "synthcal.quantization.nncf_engine.x__quantize_with_accuracy_control__mutmut_162":
        "validate returns a float and per-image floats: NNCF ranks in metric mode on raw "
        "items and never calls the validation set's transform",
    "synthcal.quantization.nncf_engine.x__quantize_with_accuracy_control__mutmut_164":
        "validate returns a float and per-image floats: NNCF ranks in metric mode on raw "
        "items and never calls the validation set's transform",
    "synthcal.quantization.nncf_engine.x__quantize_with_accuracy_control__mutmut_165":
        "validate returns a float and per-image floats: NNCF ranks in metric mode on raw "
        "items and never calls the validation set's transform",
    "synthcal.quantization.nncf_engine.x__quantize_with_accuracy_control__mutmut_166":
        "validate returns a float and per-image floats: NNCF ranks in metric mode on raw "
        "items and never calls the validation set's transform",
    "synthcal.quantization.nncf_engine.x_quantize_crossfold__mutmut_46":
        "fold 0's record goes to scratch, then the same dict is written to info_path right after",
    "synthcal.quantization.nncf_engine.x_quantize_crossfold__mutmut_48":
        "the other folds' records are read for their seconds only",
    "synthcal.quantization.nncf_engine.x_quantize_crossfold__mutmut_77":
        "infos has one record per fold by construction: zip's strictness never acts",
    "synthcal.quantization.nncf_engine.x_quantize_crossfold__mutmut_80":
        "infos has one record per fold by construction: zip's strictness never acts",
    "synthcal.quantization.nncf_engine.x_quantize_crossfold__mutmut_93":
        "infos has one record per fold by construction: zip's strictness never acts",
    "synthcal.quantization.nncf_engine.x_quantize_from_files__mutmut_5":
        "memory only: the same images, read whole instead of an item at a time",
    "synthcal.quantization.nncf_engine.x_quantize_from_files__mutmut_7":
        "memory only: the same images, read whole instead of an item at a time",
    "synthcal.quantization.nncf_engine.x_quantize_from_files__mutmut_8":
        "memory only: the same images, read whole instead of an item at a time",
    "synthcal.quantization.nncf_engine.x_nncf_arguments__mutmut_23":
        "'cpu'.upper() is 'CPU'",
    "synthcal.quantization.nncf_engine.x_nncf_arguments__mutmut_34":
        "_subset_size reads None as 'all'",
    "synthcal.quantization.nncf_engine.x_nncf_arguments__mutmut_36":
        "_subset_size reads None as 'all'",
    "synthcal.quantization.nncf_engine.x_calibration_items__mutmut_38":
        "_subset_size reads None as 'all'",
    "synthcal.quantization.nncf_engine.x_calibration_items__mutmut_40":
        "_subset_size reads None as 'all'",
    "synthcal.quantization.nncf_engine.x_calibration_items__mutmut_71":
        "_subset_size reads None as 'all'",
    "synthcal.quantization.nncf_engine.x_calibration_items__mutmut_73":
        "_subset_size reads None as 'all'",
    "synthcal.quantization.nncf_engine.x_quantize_model__mutmut_63":
        "subset_items is always given here: nncf_arguments never reads num_items",
    "synthcal.quantization.nncf_engine.x_quantize_model__mutmut_66":
        "subset_items is at most the method's subset_size, so _subset_size(subset_size, subset_items) is subset_items",
    "synthcal.quantization.nncf_engine.x_quantize_model__mutmut_67":
        "the items hold only the subset, so _subset_size(subset_size, len(items)) is subset_items",
    "synthcal.quantization.nncf_engine.x_quantize_model__mutmut_79":
        "batchwise statistics of one-image items are the statistics of each image",
    "synthcal.calibration.datafree.xǁ_BatchNormStatLossǁ__init____mutmut_13":
        "nn.BatchNorm2d has both running buffers or neither (track_running_stats)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_81":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_82":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_83":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_84":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_85":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_86":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_87":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_88":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_89":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_90":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_91":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_92":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_93":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_94":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_30":
        "a (3, 1, 1) view broadcasts against (N, 3, H, W) as (1, 3, 1, 1) does",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_47":
        "a (3, 1, 1) view broadcasts against (N, 3, H, W) as (1, 3, 1, 1) does",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_35":
        "the pixel space comes as Python floats or float32 tensors: as_tensor gives float32",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_37":
        "the pixel space comes as Python floats or float32 tensors: as_tensor gives float32",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_52":
        "the pixel space comes as Python floats or float32 tensors: as_tensor gives float32",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_54":
        "the pixel space comes as Python floats or float32 tensors: as_tensor gives float32",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_79":
        "num_classes is set by the first batch before it is read",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_97":
        "autograd.grad asks for z's gradient only: parameters needing gradients cost time, not results",
    "synthcal.calibration.datafree.x__image_buffer__mutmut_13":
        "uint8 is np.memmap's default dtype",
    "synthcal.calibration.datafree.x__image_buffer__mutmut_14":
        "np.memmap's default mode r+ grows the new, empty file to the shape as w+ does",
    "synthcal.calibration.datafree.x__image_buffer__mutmut_16":
        "the temporary file's name prefix only",
    "synthcal.calibration.datafree.x__image_buffer__mutmut_17":
        "the temporary file's name prefix only",
    "synthcal.calibration.datafree.x__image_buffer__mutmut_18":
        "the temporary file's name prefix only",
    "synthcal.calibration.datafree.xǁ_Compiledǁ__init____mutmut_5":
        "torch.compile's shape handling: when it recompiles, not what the step computes",
    "synthcal.calibration.datafree.xǁ_Compiledǁ__init____mutmut_7":
        "torch.compile's shape handling: when it recompiles, not what the step computes",
    "synthcal.calibration.datafree.xǁ_Compiledǁ__init____mutmut_8":
        "torch.compile's shape handling: when it recompiles, not what the step computes",
    "synthcal.calibration.datafree.x_build__mutmut_43":
        "show_progress None disables the bar as False does",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_2":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_209":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_210":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_211":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_212":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_213":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_214":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_215":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_216":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_217":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_218":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_219":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_123":
        "no C++ compiler: inductor fails after dynamo traced the hooks without running them, no terms to clear",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_125":
        "no C++ compiler: inductor fails after dynamo traced the hooks without running them, no terms to clear",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_220":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_221":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_222":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_223":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_224":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_225":
        "the progress bar (stderr only)",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_227":
        "z is clamped to the pixel range after every step: the rounded pixels are in [0, 255]",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_228":
        "z is clamped to the pixel range after every step: the rounded pixels are in [0, 255]",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_230":
        "z is clamped to the pixel range after every step: the rounded pixels are in [0, 255]",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_236":
        "z is clamped to the pixel range after every step: the rounded pixels are in [0, 255]",
    "synthcal.calibration.datafree.x_invert_batchnorm__mutmut_249":
        "a float tensor of whole values 0 to 255, cast to uint8 by numpy on assignment",
    "synthcal.calibration.datafree.x__step_loss__mutmut_2":
        "bfloat16 is CPU autocast's default dtype",
    "synthcal.calibration.datafree.x__step_loss__mutmut_5":
        "bfloat16 is CPU autocast's default dtype",
    "synthcal.calibration.datafree.x__augment__mutmut_30":
        "a uniform draw is exactly 0.5 with probability 2^-24",
    "synthcal.models.preprocessing.x_parse_size_name__mutmut_3":
        "rpartition: the names it parses come from size_name, with one 'x'",
    "synthcal.models.preprocessing.x_resize_images__mutmut_21": "the row it fills is uint8: numpy casts on assignment",
    "synthcal.models.preprocessing.x_resize_images__mutmut_23": "the row it fills is uint8: numpy casts on assignment",
    "synthcal.models.preprocessing.x_bake_into_ir__mutmut_23": "ov.Layout('nchw') == ov.Layout('NCHW')",
    "synthcal.models.preprocessing.x_bake_into_ir__mutmut_27": "ov.Layout('nchw') == ov.Layout('NCHW')",
    "synthcal.evaluation.stats.x_mcnemar_exact__mutmut_14": "drops p=0.5, which is scipy binomtest's default",
    "synthcal.evaluation.stats.x_paired_difference__mutmut_20": "astype(None) is float64: the same 0/1 differences",
    "synthcal.evaluation.stats.x_paired_difference__mutmut_21": "astype(None) is float64: the same 0/1 differences",
    # distinguishable = (low > 0 or high < 0) and p < 1 - confidence: the interval's test can only matter where
    # McNemar rejects, and there the interval never reaches 0 (every count pair of n <= 20 images, confidence
    # 0.5 to 0.95, searched): changing its bounds' comparison changes no verdict
    "synthcal.evaluation.stats.x_paired_difference__mutmut_82": "low >= 0: where McNemar rejects, low is never 0",
    "synthcal.evaluation.stats.x_paired_difference__mutmut_84": "high <= 0: where McNemar rejects, high is never 0",
    "synthcal.evaluation.stats.x_paired_difference__mutmut_85": "high < 1: where McNemar rejects, the interval "
                                                                "already excludes 0",
}


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


def prepare(module: str, fresh: bool, root: Path = WORK) -> Path:
    """The module's work folder under ``root``: sources and tests copied anew (mutmut's results kept unless
    ``fresh``)."""
    source, tests, extra = MODULES[module]
    work = root / module
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ["synthcal", "tests", *ALSO_COPY]:
        target = work / name
        if target.is_dir():
            shutil.rmtree(target)
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, target, ignore=ignore)
        else:
            shutil.copy2(REPO / name, target)
    config = (REPO / "pyproject.toml").read_text()
    config += ("\n[tool.mutmut]\n"
               'source_paths = ["synthcal"]\n'
               f"only_mutate = {_toml_list([source])}\n"
               f"also_copy = {_toml_list(ALSO_COPY)}\n"
               f"pytest_add_cli_args_test_selection = {_toml_list(tests + FAST + extra)}\n"
               'process_isolation = "forkserver"\n'  # torch and OpenVINO threads do not survive a plain fork
               "use_git_change_detection = false\n")
    (work / "pyproject.toml").write_text(config)
    return work


def _mutmut(work: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"SYNTHCAL_SHARED": str(REPO.parent / "shared"), "PYTHONDONTWRITEBYTECODE": "1"}
    command = ["nice", "-n", "10", str(MUTMUT), *args]
    if log is None:
        return subprocess.run(command, cwd=work, env=env, text=True, capture_output=True, check=False)
    with open(log, "w") as handle:
        return subprocess.run(command, cwd=work, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)


def changed_line(work: Path, name: str) -> str:
    """The mutant's changed line (mutmut show's diff): ``- old`` → ``+ new``, stripped."""
    diff = _mutmut(work, "show", name).stdout.splitlines()
    removed = [line[1:].strip() for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++")]
    return f"{' / '.join(removed)}  →  {' / '.join(added)}"


# --sample N: one mutant in N, those whose number (mutmut counts each function's mutants from 1) ends in these
# digits; a fixed, seeded-by-nothing choice spread over every function
SAMPLE_DIGITS = {1: "", 2: "13579", 5: "37", 10: "7"}
STATUSES = ("killed", "timeout", "survived", "no tests", "skipped")


def sampled(name: str, sample: int) -> bool:
    return sample == 1 or name[-1] in SAMPLE_DIGITS[sample]


def statuses(work: Path, sample: int = 1) -> dict[str, str]:
    """mutmut's status of every mutant of the module (of the sample's mutants only, with ``sample`` > 1)."""
    found = {}
    for line in _mutmut(work, "results", "--all", "true").stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name and sampled(name, sample):
            found[name] = status
    return found


def score_interval(caught: int, tested: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of the score: the whole module's, when ``tested`` is a sample of it."""
    from scipy.stats import binomtest

    if tested == 0:
        return (0.0, 1.0)
    interval = binomtest(caught, tested).proportion_ci(confidence_level=confidence, method="exact")
    return (float(interval.low), float(interval.high))


def score_module(module: str, max_children: int, fresh: bool, retest: bool = False, sample: int = 1,
                 root: Path = WORK) -> dict:
    """mutmut run on the module (``retest``: only the mutants an earlier run did not kill, against today's tests;
    ``sample``: one mutant in ``sample``, each run again)."""
    work = prepare(module, fresh and not retest, root)
    if retest:
        names = sorted(name for name, status in statuses(work, sample).items() if status == "survived")
    else:
        names = [f"*__mutmut_*{digit}" for digit in SAMPLE_DIGITS[sample]]
    what = f" of {len(names)} survivors" if retest else (f" of one mutant in {sample}" if sample > 1 else "")
    print(f"{module}: mutmut run{what} in {work} (log: {work / 'mutmut-run.log'})", flush=True)
    start = time.perf_counter()
    run = _mutmut(work, "run", "--max-children", str(max_children), *names, log=work / "mutmut-run.log")
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"{module}: mutmut run failed (exit {run.returncode}); see {work / 'mutmut-run.log'}")
    found = statuses(work, sample)
    counts = {status: sum(value == status for value in found.values()) for status in STATUSES}
    counts["total"] = len(found)
    counts["other"] = counts["total"] - sum(counts[status] for status in STATUSES)
    tested = counts["total"] - counts["skipped"]
    caught = counts["killed"] + counts["timeout"]
    equivalent = [name for name, status in found.items() if status == "survived" and name in EQUIVALENT]
    not_killed = {name: status for name, status in found.items() if status not in ("killed", "timeout")}
    return {"module": module, "source": MODULES[module][0], "seconds": seconds, "counts": counts, "sample": sample,
            "score": caught / tested if tested else 1.0, "interval": score_interval(caught, tested),
            "score_without_equivalent": caught / (tested - len(equivalent)) if tested > len(equivalent) else 1.0,
            "equivalent": len(equivalent),
            "not_killed": {name: (status, changed_line(work, name)) for name, status in not_killed.items()}}


HEADER = ("module            mutants  killed  timeout  survived  no-tests  skipped  equiv.  score  (95 % interval)  "
          "w/o equiv.  time")


def _row(result: dict) -> str:
    c = result["counts"]
    low, high = result["interval"]
    return (f"{result['module']:<17} {c['total']:>7} {c['killed']:>7} {c['timeout']:>8} {c['survived']:>9} "
            f"{c['no tests']:>9} {c['skipped']:>8} {result['equivalent']:>7} {result['score']:>6.1%} "
            f"({low:.1%}–{high:.1%})  {result['score_without_equivalent']:>10.1%}  {result['seconds']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"some of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results and test every mutant")
    parser.add_argument("--retest", action="store_true",
                        help="test again only the mutants that survived the last run (after adding tests)")
    parser.add_argument("--work", type=Path, default=WORK, help=f"where the work folders go (default {WORK})")
    parser.add_argument("--sample", type=int, choices=sorted(SAMPLE_DIGITS), default=1,
                        help="test one mutant in N, the same ones every run (default 1: all); the score then comes "
                             "with its 95 %% interval (make mutation: 10, to fit 30 min)")
    options = parser.parse_args()
    unknown = sorted(set(options.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {unknown}: choose from {', '.join(MODULES)}")
    if not MUTMUT.exists():
        raise SystemExit(f"{MUTMUT} is missing: install the dev extra (pip install -e '.[dev]')")
    results = []
    for module in options.modules or MODULES:
        results.append(score_module(module, options.max_children, options.fresh, options.retest, options.sample,
                                    options.work))
        print(HEADER + "\n" + _row(results[-1]), flush=True)
    what = f"one mutant in {options.sample} (numbers ending in {', '.join(SAMPLE_DIGITS[options.sample])})"
    print(f"\n{what if options.sample > 1 else 'every mutant'}; the interval is the score's over all mutants\n"
          + HEADER + "\n" + "\n".join(_row(result) for result in results))
    total = {key: sum(result["counts"][key] for result in results) for key in ("total", "killed", "timeout",
                                                                                "skipped")}
    tested = total["total"] - total["skipped"]
    equivalent = sum(result["equivalent"] for result in results)
    caught = total["killed"] + total["timeout"]
    low, high = score_interval(caught, tested)
    print(f"{'all':<17} {total['total']:>7}  score {caught / tested:.1%} ({low:.1%}–{high:.1%}), without the "
          f"{equivalent} equivalent {caught / (tested - equivalent):.1%}, {sum(r['seconds'] for r in results):.0f} s")
    for result in results:
        if result["not_killed"]:
            print(f"\n{result['module']} ({result['source']}): not killed")
        for name, (status, line) in result["not_killed"].items():
            reason = EQUIVALENT.get(name)
            mark = f"equivalent: {reason}" if reason and status == "survived" else status
            print(f"  {name}  [{mark}]\n      {line}")


if __name__ == "__main__":
    main()
