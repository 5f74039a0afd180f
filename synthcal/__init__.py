"""synthcal: INT8 quantization of CIFAR-10 classifiers calibrated on real, synthetic or data-free images."""

__version__ = "0.1.0"
