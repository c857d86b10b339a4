"""bpdip: BP-DIP (Zukerman, Tirer, Giryes 2020) deblurring with Deep Image Prior.

Modules: ``data`` (images), ``physics`` (kernels, blur, degradation), ``losses`` (LS, BP,
TV), ``models`` (the DIP skip U-Net), ``metrics`` (PSNR, SSIM), ``loop`` (optimisation).
"""

__version__ = "0.1.0"
