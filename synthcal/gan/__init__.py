"""GANs that make calibration images: DiStyleGAN (``distylegan``, trained here by ``gan_train``) and NVIDIA's
StyleGAN2-ADA pickles (``stylegan``). The calibration kind ``gan`` samples them."""
